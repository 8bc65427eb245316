"""Every console command's error paths, run as installed: one `error:` line on stderr, no traceback, the right exit code."""
import subprocess

import pytest

from conftest import BIN
from ml_workflow_training import default_training_spec


def run(args, cwd):
    return subprocess.run([str(BIN / args[0]), *args[1:]], cwd=cwd, capture_output=True, text=True, timeout=600)


@pytest.fixture
def small_spec(workdir):
    from ml_workflow_training import default_training_spec
    spec = default_training_spec()
    small = spec.model_copy(update={"tuning": None, "calibration": None,
                                    "model": spec.model.model_copy(update={"hyperparameters": {"n_estimators": 10}})})
    small.save(workdir / "small.yaml")
    small.model_copy(update={"data": small.data.model_copy(update={"table": "nope"})}).save(workdir / "no_table.yaml")
    small.model_copy(update={"mlflow": small.mlflow.model_copy(update={"tracking_uri": "http://127.0.0.1:9"})}).save(workdir / "no_server.yaml")
    (workdir / "notdb.txt").write_text("not a database\n")
    for name, uri in [("notdb", "sqlite:///notdb.txt"), ("underfile", "sqlite:///notdb.txt/sub/mlflow.db")]:
        small.model_copy(update={"mlflow": small.mlflow.model_copy(update={"tracking_uri": uri})}).save(workdir / f"{name}.yaml")
    import yaml
    unensembled = small.to_dict() | {"calibration": {"method": "sigmoid", "cv_folds": 3, "ensemble": False}}
    unensembled["validation"] |= {"split": "time_series", "shuffle": False, "stratified": False}
    (workdir / "time_series_unensembled.yaml").write_text(yaml.safe_dump(unensembled))
    from ml_workflow_training import FeatureSpecBuilder, ModelSpec, generate_database
    generate_database(workdir / "data" / "gappy.db", n_samples=300, missing_rate=0.05)
    small.model_copy(update={"data": small.data.model_copy(update={"db": "data/gappy.db"}), "model": ModelSpec(model_type="logistic_regression"),
                             "features": FeatureSpecBuilder().add_numeric_group([f"feature_{i}" for i in range(20)], imputer_strategy=None).build()}
                     ).save(workdir / "gaps_unimputed.yaml")
    (workdir / "sweep_empty.yaml").write_text("base: {}\n")
    (workdir / "dated.yaml").write_text((workdir / "small.yaml").read_text().replace("experiment_name: production_models", "experiment_name: 2024-12-05"))
    (workdir / "sweep_mixed.yaml").write_text("runs:\n  - {experiment: a}\n  - {experiment: b}\n")
    grid = "tuning:\n  param_grid:\n    classifier__learning_rate: [1e-1, 2.5e-1]\n    classifier__n_estimators: [1e1]\n  cv_folds: 2"
    (workdir / "exponent_grid.yaml").write_text((workdir / "small.yaml").read_text().replace("tuning: null", grid))
    (workdir / "preprocessor_grid.yaml").write_text((workdir / "small.yaml").read_text().replace(
        "tuning: null", "tuning:\n  param_grid:\n    preprocessor__numeric__imputer__strategy: [mean, median]"))
    (workdir / "float_depths.yaml").write_text((workdir / "small.yaml").read_text().replace(
        "tuning: null", "tuning:\n  strategy: random\n  param_grid:\n    classifier__max_depth: {dist: uniform, low: 2, high: 8}"))
    (workdir / "quoted_grid.yaml").write_text((workdir / "small.yaml").read_text().replace("tuning: null", grid.replace("2.5e-1", "'2.5e-1'")))
    together = small.to_dict() | {"model": {"name": "lr", "model_type": "logistic_regression"},
                                  "tuning": {"param_grid": {"classifier__solver": ["saga", "lbfgs"], "classifier__l1_ratio": [0.0, 1.0]}}}
    (workdir / "refused_together.yaml").write_text(yaml.safe_dump(together))
    return workdir


CASES = [  # command line, exit code, text the one error line holds
    (["mlwt-generate-database", "--n-samples", "0"], 2, "n_samples must be at least 1, got 0"),
    (["mlwt-generate-database", "--table", "x;drop"], 2, "table 'x;drop' is not a plain identifier"),
    (["mlwt-validate-spec", "missing.yaml"], 2, "spec file not found: missing.yaml"),
    (["mlwt-train", "--spec", "missing.yaml"], 2, "spec file not found: missing.yaml"),
    (["mlwt-validate-spec", "time_series_unensembled.yaml"], 2, "calibration.ensemble: False calibrates one model on an out-of-fold"),
    (["mlwt-train", "--spec", "time_series_unensembled.yaml", "--quiet"], 2, "validation.split 'time_series' cannot give"),
    (["mlwt-train", "--spec", "gaps_unimputed.yaml", "--quiet"], 2, "features.groups[0].imputer_strategy: column 'feature_"),
    (["mlwt-train", "--spec", "no_table.yaml", "--quiet"], 2, "unknown table 'nope'"),
    (["mlwt-validate-spec", "dated.yaml"], 2, "experiment_name: Input should be a valid string (got datetime.date(2024, 12, 5)): YAML reads yes, no"),
    (["mlwt-validate-spec", "quoted_grid.yaml"], 2, "tuning.param_grid.classifier__learning_rate: The 'learning_rate' parameter of "
                                                   "GradientBoostingClassifier must be a float in the range [0.0, inf). Got '2.5e-1' instead."),
    (["mlwt-train", "--spec", "quoted_grid.yaml", "--quiet"], 2, "tuning.param_grid.classifier__learning_rate: The 'learning_rate' parameter"),
    (["mlwt-train", "--spec", "float_depths.yaml", "--quiet"], 2, "tuning.param_grid.classifier__max_depth: The 'max_depth' parameter of "
                                                                  "GradientBoostingClassifier must be an int in the range [1, inf) or None. Got 2.06"),
    (["mlwt-validate-spec", "preprocessor_grid.yaml"], 2, "tuning.param_grid: 'preprocessor__numeric__imputer__strategy' is not a parameter "
                                                         "a grid can set on the preprocessor (preprocessor__native_categorical)"),
    (["mlwt-validate-spec", "refused_together.yaml"], 2, "tuning.param_grid: the search would fit classifier__l1_ratio=1.0, "
                                                        "classifier__solver='lbfgs', which LogisticRegression refuses together"),
    (["mlwt-train", "--spec", "no_server.yaml", "--quiet"], 1, "cannot reach the MLflow tracking server at http://127.0.0.1:9"),
    (["mlwt-train", "--spec", "notdb.yaml", "--quiet"], 1, "cannot be used: DatabaseError: file is not a database"),
    (["mlwt-train", "--spec", "underfile.yaml", "--quiet"], 1, "cannot be used: NotADirectoryError"),
    (["mlwt-generate-database", "--db", "notdb.txt", "--if-missing"], 2, "cannot read database sqlite:///"),
    (["mlwt-reproduce", "0" * 32, "--tracking-uri", "sqlite:///missing.db"], 1, "no MLflow store at sqlite:///"),
    (["mlwt-notebook", "run", "-p", "n_estimator", "5"], 2, "unknown notebook parameter 'n_estimator'. Did you mean 'n_estimators'?"),
    (["mlwt-notebook", "run", "-p", "tuning", "maybe"], 2, "tuning: Input should be a valid boolean"),
    (["mlwt-notebook", "run", "-f", "missing.yaml"], 2, "parameters file not found: missing.yaml"),
    (["mlwt-notebook", "copy", "small.yaml"], 1, "small.yaml exists: choose another path"),
    (["mlwt-sweep", "missing.yaml"], 2, "sweep file not found or empty: missing.yaml"),
    (["mlwt-sweep", "sweep_empty.yaml"], 2, "the sweep file needs `runs:`"),
    (["mlwt-sweep", "sweep_mixed.yaml"], 2, "a sweep's runs go under one parent run, so to one store and experiment"),
]


@pytest.mark.parametrize("args, code, text", CASES, ids=[" ".join(c[0][:3]) for c in CASES])
def test_errors_are_one_line_with_the_right_exit_code(small_spec, args, code, text):
    out = run(args, small_spec)
    lines = out.stderr.strip().splitlines()
    assert out.returncode == code, (out.returncode, out.stderr)
    assert len(lines) == 1 and lines[0].startswith("error: ") and text in lines[0], out.stderr
    assert not (small_spec / "missing.db").exists()  # a failed read creates no store


def test_reproduce_without_its_data_says_so_in_one_line(small_spec):
    ok = run(["mlwt-train", "--spec", "small.yaml", "--quiet"], small_spec)
    assert ok.returncode == 0 and "registered gradient_boost_v1 version 1" in ok.stdout, ok.stderr
    run_id = ok.stdout.split("MLflow run")[1].split()[0]
    (small_spec / "data" / "ml_workflow.db").unlink()  # the data the run was trained on is gone
    again = run(["mlwt-reproduce", run_id, "--quiet"], small_spec)
    assert again.returncode == 2 and again.stderr.startswith("error: database file not found"), again.stderr


@pytest.mark.parametrize("command", ["mlwt-generate-database", "mlwt-validate-spec", "mlwt-train", "mlwt-reproduce", "mlwt-notebook", "mlwt-sweep"])
def test_every_command_has_version_and_hyphenated_help(tmp_path, command):
    version = run([command, "--version"], tmp_path)
    assert version.returncode == 0 and version.stdout.startswith(f"{command} 0.")
    help_text = run([command, "--help"], tmp_path).stdout
    long_flags = [w for w in help_text.replace(",", " ").split() if w.startswith("--")]
    assert "--version" in long_flags and not [f for f in long_flags if "_" in f], long_flags
    if command in ("mlwt-generate-database", "mlwt-train"): assert "(default:" in help_text


@pytest.mark.parametrize("command", ["mlwt-runs", "mlwt-notebook"])
def test_each_subcommands_help_opens_with_what_its_command_lists_it_as(tmp_path, command):
    "`mlwt-runs sweep --help` and the like say what the subcommand does, as the command's own listing does, and name their defaults."
    import re
    listing = run([command, "--help"], tmp_path).stdout.split("positional arguments:")[1].split("options:")[0]
    subs = dict(re.findall(r"^    (\w+) +(.+)$", listing, flags=re.M))
    assert subs, listing
    helps = {sub: " ".join(run([command, sub, "--help"], tmp_path).stdout.split()) for sub in subs}
    for sub, what in subs.items():
        assert f"{what[0].upper()}{what[1:]}." in helps[sub], (sub, helps[sub])
        assert "(default: None)" not in helps[sub] and "(default: False)" not in helps[sub], helps[sub]
    if command == "mlwt-runs": assert "(default: sqlite:///mlflow.db)" in helps["sweep"]


def test_underscored_flags_still_work_but_are_hidden(workdir):
    out = run(["mlwt-generate-database", "--if_missing"], workdir)
    assert out.returncode == 0 and "already exists" in out.stdout
    assert "--if_missing" not in run(["mlwt-generate-database", "--help"], workdir).stdout


def test_a_row_count_written_with_an_exponent_is_that_many_rows(tmp_path):
    "`--n-samples 2e2` is 200 rows, as 1e6 is a million; a count that is not whole is refused as argparse refuses any bad int."
    out = run(["mlwt-generate-database", "--db", "e.db", "--n-samples", "2e2"], tmp_path)
    assert out.returncode == 0 and "wrote 200 rows" in out.stdout, out.stderr
    import sqlite3
    with sqlite3.connect(tmp_path / "e.db") as con: assert con.execute("SELECT count(*) FROM classification_data").fetchone() == (200,)
    bad = run(["mlwt-generate-database", "--db", "f.db", "--n-samples", "2.5e0"], tmp_path)
    assert bad.returncode == 2 and "argument --n-samples: invalid int value: '2.5e0'" in bad.stderr and not (tmp_path / "f.db").exists()


def test_numbers_in_exponent_form_in_a_spec_file_are_numbers(small_spec):
    "A spec file's grid `[1e-1, 2.5e-1]` searches 0.1 and 0.25, as YAML 1.2 reads it; PyYAML alone reads the text '1e-1', which every fit refuses."
    import mlflow
    out = run(["mlwt-train", "--spec", "exponent_grid.yaml", "--quiet"], small_spec)
    assert out.returncode == 0, out.stderr
    client = mlflow.MlflowClient(f"sqlite:///{small_spec}/mlflow.db")
    found = client.search_runs([client.get_experiment_by_name("production_models").experiment_id])
    candidates = sorted((r.data.params["learning_rate"], r.data.params["n_estimators"]) for r in found if r.info.run_name.startswith("candidate-"))
    assert candidates == [("0.1", "10"), ("0.25", "10")], candidates
    assert [r.info.status for r in found] == ["FINISHED"] * 3


def test_notebook_run_help_lists_its_parameters(tmp_path):
    from ml_workflow_training.notebook import PARAMETERS
    text = run(["mlwt-notebook", "run", "--help"], tmp_path).stdout
    assert all(name in text for name in PARAMETERS)


def test_a_terminal_sees_live_progress_and_a_pipe_only_the_step_lines(workdir):
    "Progress, not noise: on a terminal each long step redraws a live line (fits done of planned); piped output has none."
    import os
    import pty
    import re
    spec = default_training_spec()  # its tune step, with smaller models: 30 fits still, the rest of the run left out
    grid = {"classifier__n_estimators": [30, 60, 90], "classifier__learning_rate": [0.01, 0.1]}
    spec.model_copy(update={"calibration": None, "tuning": spec.tuning.model_copy(update={"param_grid": grid})}).save(workdir / "quick.yaml")
    master, slave = pty.openpty()
    proc = subprocess.Popen([str(BIN / "mlwt-train"), "--spec", "quick.yaml"], cwd=workdir, stdout=slave, stderr=slave, close_fds=True)
    os.close(slave)
    seen = bytearray()
    while True:
        try: chunk = os.read(master, 65536)
        except OSError: break  # the terminal closed: the process is done
        if not chunk: break
        seen += chunk
    os.close(master)
    assert proc.wait(timeout=60) == 0, seen.decode(errors="replace")[-2000:]
    text = seen.decode(errors="replace")
    frames = [f for f in text.split("\r\x1b[K") if f.startswith("[tune")]
    assert any(re.search(r"\] +\d+\.\d s  \d+/30 fits, about \d+ s left", f) for f in frames), frames[-5:]
    assert len(frames) > 2 and "candidates, best accuracy" in frames[-1]  # live frames, then the step's own line

    piped = subprocess.run([str(BIN / "mlwt-train"), "--spec", "quick.yaml"], cwd=workdir, capture_output=True, text=True, timeout=600)
    assert piped.returncode == 0 and "\r" not in piped.stdout and piped.stdout.count("[tune          ]") == 1
