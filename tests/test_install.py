"""A plain `pip install` of the wheel into a fresh environment, outside the Makefile: no extras, no OMP_NUM_THREADS,
no data/ folders made beforehand. It must import, train with tracking and registry, and run the training notebook."""
import os
import subprocess
import sys
import venv
from pathlib import Path

import pytest

from conftest import all_gone, children_of, warning_lines

ROOT = Path(__file__).resolve().parent.parent
pytestmark = pytest.mark.slow
_MAKEFILE_ENV = ("OMP_", "MPLBACKEND", "PYTHONHASHSEED", "IN_TEST", "VIRTUAL_ENV", "JUPYTER", "PYTHONPATH")


@pytest.fixture(scope="module")
def wheel(tmp_path_factory):
    "The project's wheel, built as pip builds it, with the build's own output."
    out = tmp_path_factory.mktemp("dist")
    build = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-v", "-w", str(out), str(ROOT)],
                           capture_output=True, text=True)
    assert build.returncode == 0, build.stdout[-3000:] + build.stderr[-3000:]
    (found,) = out.glob("ml_workflow_training-*.whl")
    return found, build.stdout + build.stderr


@pytest.fixture(scope="module")
def fresh(wheel, tmp_path_factory):
    "A new virtual environment with only the wheel installed (its runtime requirements, no extras)."
    env_dir = tmp_path_factory.mktemp("env") / "venv"
    venv.create(env_dir, with_pip=True)
    pip = subprocess.run([str(env_dir / "bin" / "python"), "-m", "pip", "install", "-q", str(wheel[0])], capture_output=True, text=True)
    assert pip.returncode == 0, pip.stderr[-3000:]
    return env_dir / "bin"


def plain_env(bin_dir: Path, home: Path) -> dict[str, str]:
    "A new user's environment: the fresh environment's PATH, none of the Makefile's settings, an empty home."
    env = {k: v for k, v in os.environ.items() if not k.startswith(_MAKEFILE_ENV)}
    env.update(PATH=f"{bin_dir}:/usr/bin:/bin", HOME=str(home))
    return env


def run_plain(bin_dir: Path, args: list, cwd: Path, home: Path) -> subprocess.CompletedProcess:
    "Run a command as a new user would (`plain_env`)."
    return subprocess.run([str(bin_dir / args[0]), *args[1:]], cwd=cwd, env=plain_env(bin_dir, home), capture_output=True, text=True, timeout=900)


def test_the_wheel_builds_without_warnings_and_ships_the_template(wheel):
    import zipfile
    path, log = wheel
    # byte-compiling is off when PYTHONDONTWRITEBYTECODE is set: the machine's choice, not the project's
    warnings = [l for l in log.splitlines() if ("Warning" in l or "warning:" in l.lower()) and "byte-compiling is disabled" not in l]
    assert not warnings, warnings
    names = zipfile.ZipFile(path).namelist()
    assert zipfile.ZipFile(path).read("ml_workflow_training/templates/train.ipynb") == (ROOT / "nbs" / "pipelines" / "train.ipynb").read_bytes()
    meta = zipfile.ZipFile(path).read(next(n for n in names if n.endswith("METADATA"))).decode()
    assert "Classifier: Development Status :: 3 - Alpha" in meta and "License: MIT" in meta and "License ::" not in meta


def test_plain_install_imports_trains_and_runs_the_notebook(fresh, tmp_path):
    home, work = tmp_path / "home", tmp_path / "work"
    home.mkdir(); work.mkdir()
    r = run_plain(fresh, ["python", "-c", "import ml_workflow_training as m; print(m.__version__); print(m.__doc__)"], work, home)
    assert r.returncode == 0 and r.stdout.split()[0][0].isdigit() and "top level" in r.stdout, r.stderr
    assert run_plain(fresh, ["mlwt-generate-database", "--n-samples", "400"], work, home).returncode == 0
    assert (work / "data" / "ml_workflow.db").exists()
    assert run_plain(fresh, ["mlwt-train", "--write-default", "spec.yaml"], work, home).returncode == 0
    spec = (work / "spec.yaml").read_text()
    small = subprocess.run([str(fresh / "python"), "-c", (
        "import yaml; d = yaml.safe_load(open('spec.yaml')); d['tuning'] = None; d['calibration'] = None;"
        "d['model']['hyperparameters'] = {'n_estimators': 15}; d['validation']['n_jobs'] = 1; yaml.safe_dump(d, open('small.yaml', 'w'))")], cwd=work)
    assert small.returncode == 0 and "production_models" in spec
    train = run_plain(fresh, ["mlwt-train", "--spec", "small.yaml", "--quiet"], work, home)
    assert train.returncode == 0 and "registered gradient_boost_v1 version 1 as @staging" in train.stdout, train.stdout + train.stderr
    nb = run_plain(fresh, ["mlwt-notebook", "run", "-p", "tuning", "false", "-p", "calibration", "false", "-p", "n_estimators", "10",
                           "-p", "threshold", "balanced_accuracy", "-o", "data/runs/plain.ipynb"], work, home)
    assert nb.returncode == 0, nb.stderr[-3000:]
    assert (work / "data" / "runs" / "plain.ipynb").exists() and "model version 2" in nb.stdout
    # no warning line from a dependency (MLflow's integer hint, urllib3's SOCKS line, ...) on a plain install either
    assert warning_lines(train.stdout, train.stderr, nb.stdout, nb.stderr, notebooks=[work / "data" / "runs" / "plain.ipynb"]) == [], train.stderr + nb.stderr
    check = run_plain(fresh, ["python", "-c", (
        "import mlflow; c = mlflow.MlflowClient('sqlite:///mlflow.db'); e = c.get_experiment_by_name('production_models');"
        "runs = c.search_runs([e.experiment_id]); print(sorted(r.info.status for r in runs));"
        "print(sorted(r.data.tags['model.saved_by'] for r in runs));"
        "print(sorted(a.path for r in runs for a in c.list_artifacts(r.info.run_id, 'notebook')));"
        "print(sorted(k for r in runs for k in r.data.metrics if k.startswith('threshold_')))")], work, home)
    assert check.returncode == 0 and "['FINISHED', 'FINISHED']" in check.stdout and "notebook/plain.html" in check.stdout, check.stderr
    # the notebook's threshold, a papermill string, chose the decision the model it registered labels with (its own cell checks
    # the model loaded back labels as the trained one does), on the plain install too
    assert "['threshold_balanced_accuracy', 'threshold_balanced_accuracy_at_0_5']" in check.stdout, check.stdout
    # mlwt-train's run was recorded, its model written, by a process of the plain install's Python; the notebook's (a kernel) by itself
    assert "['a thread, beside the run', 'the process recording the run']" in check.stdout, check.stdout


def test_plain_install_commands_answer_version_and_errors(fresh, tmp_path):
    for command in ("mlwt-train", "mlwt-reproduce", "mlwt-notebook", "mlwt-sweep", "mlwt-validate-spec", "mlwt-generate-database"):
        r = run_plain(fresh, [command, "--version"], tmp_path, tmp_path)
        assert r.returncode == 0 and r.stdout.startswith(command), (command, r.stdout, r.stderr)
    bad = run_plain(fresh, ["mlwt-train", "--spec", "nope.yaml"], tmp_path, tmp_path)
    assert (bad.returncode, bad.stderr) == (2, "error: invalid TrainingSpec: spec file not found: nope.yaml\n")


def test_plain_install_without_the_distributed_extra_says_what_to_install(fresh, tmp_path):
    assert run_plain(fresh, ["mlwt-generate-database", "--n-samples", "200"], tmp_path, tmp_path).returncode == 0
    assert run_plain(fresh, ["mlwt-train", "--write-default", "spec.yaml"], tmp_path, tmp_path).returncode == 0
    edit = subprocess.run([str(fresh / "python"), "-c", (
        "import yaml; d = yaml.safe_load(open('spec.yaml')); d['compute'] = {'backend': 'dask', 'address': 'tcp://127.0.0.1:8786'};"
        "yaml.safe_dump(d, open('spec.yaml', 'w'))")], cwd=tmp_path)
    assert edit.returncode == 0
    r = run_plain(fresh, ["mlwt-train", "--spec", "spec.yaml"], tmp_path, tmp_path)
    assert r.returncode == 1 and r.stderr == ("error: compute.backend 'dask' needs the distributed extra: "
                                              "pip install 'ml-workflow-training[distributed]'\n"), r.stderr


def test_plain_install_without_the_optuna_extra_says_what_to_install(fresh, tmp_path):
    assert run_plain(fresh, ["mlwt-generate-database", "--n-samples", "200"], tmp_path, tmp_path).returncode == 0
    r = run_plain(fresh, ["mlwt-notebook", "run", "-p", "search", "optuna", "-o", "out.ipynb"], tmp_path, tmp_path)
    assert r.returncode != 0 and "strategy 'optuna' needs the optional package 'optuna': pip install 'ml-workflow-training[optuna]'" in r.stderr, r.stderr
    assert not (tmp_path / "mlflow.db").exists()  # refused before any run was opened


def test_plain_install_sweeps_reproduces_and_stops_a_run_cleanly(fresh, tmp_path):
    "The record's guarantees without the Makefile's settings: a sweep names its best run, a run reproduces, SIGTERM leaves a KILLED run and no worker."
    import signal
    import time
    import mlflow
    import yaml
    home, work = tmp_path / "home", tmp_path / "work"
    home.mkdir(); work.mkdir()
    assert run_plain(fresh, ["mlwt-generate-database", "--n-samples", "400"], work, home).returncode == 0
    assert run_plain(fresh, ["mlwt-train", "--write-default", "spec.yaml"], work, home).returncode == 0
    spec = yaml.safe_load((work / "spec.yaml").read_text())
    spec["calibration"] = None
    spec["tuning"]["param_grid"] = {"classifier__n_estimators": [100, 200, 300, 400], "classifier__learning_rate": [0.01, 0.05, 0.1]}
    (work / "long.yaml").write_text(yaml.safe_dump(spec))
    uri = f"sqlite:///{work}/mlflow.db"
    (work / "sweep.yaml").write_text(yaml.safe_dump({"base": {"tuning": False, "calibration": False, "tracking_uri": uri},
                                                     "runs": [{"n_estimators": 5}, {"n_estimators": 30}]}))
    sweep = run_plain(fresh, ["mlwt-sweep", "sweep.yaml", "--max-parallel", "2"], work, home)
    assert sweep.returncode == 0, sweep.stdout[-2000:] + sweep.stderr[-2000:]
    client = mlflow.MlflowClient(uri)
    runs = client.search_runs([client.get_experiment_by_name("production_models").experiment_id])
    (parent,) = [r for r in runs if "sweep.size" in r.data.tags]
    trained = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == parent.info.run_id]
    assert parent.info.status == "FINISHED" and {r.info.status for r in trained} == {"FINISHED"} and len(trained) == 2
    score = f"cv_{spec['validation']['primary_metric']}_mean"
    best = max(trained, key=lambda r: r.data.metrics[score])
    assert parent.data.metrics["best_cv_score"] == best.data.metrics[score] and parent.data.tags["sweep.ranked_by"] == "cv_score"
    again = run_plain(fresh, ["mlwt-reproduce", best.info.run_id, "--tracking-uri", uri, "--quiet"], work, home)
    assert again.returncode == 0 and "reproduced" in again.stdout, again.stdout + again.stderr

    p = subprocess.Popen([str(fresh / "mlwt-train"), "--spec", "long.yaml"], cwd=work, env=plain_env(fresh, home),
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline, opened = time.time() + 300, None
    while opened is None and time.time() < deadline:  # the run is open and the tune's workers have started
        assert p.poll() is None, p.communicate()
        time.sleep(0.5)
        now = [r for r in client.search_runs([client.get_experiment_by_name("production_models").experiment_id])
               if r.info.status == "RUNNING"]
        workers = children_of(p.pid)
        if now and len(workers) >= 2: opened = now[0]
    assert opened is not None, "the long run did not start tuning in time"
    p.send_signal(signal.SIGTERM)
    _, err = p.communicate(timeout=120)
    assert p.returncode == 143 and err.strip().splitlines()[-1] == "error: interrupted by SIGTERM", err[-2000:]
    killed = client.get_run(opened.info.run_id)
    assert killed.info.status == "KILLED" and killed.data.tags["failed_step"] == "tune" and killed.data.tags["registered"] == "false"
    assert {"spec.yaml", "versions.json"} <= {a.path for a in client.list_artifacts(opened.info.run_id)}
    assert all_gone(workers, 30) == []  # a worker checks its parent once a second (one still importing, later); without it, 300 s


def test_plain_install_trains_the_default_spec_of_a_table_with_thousands_of_codes_and_rows_not_labeled_yet(fresh, tmp_path):
    """A customer table as it comes: a zip code with 1,319 values, and the newest 150 rows with no outcome yet; `mlwt-train --write-default`'s spec trains and registers as is.
    Then that spec edited by hand: a search over max_bins below 255 and tags written unquoted, through the Python API and mlwt-train."""
    table = subprocess.run([str(fresh / "python"), "-c", (
        "import sqlite3, numpy as np, pandas as pd; rng = np.random.default_rng(0); n = 3000;"
        "f = pd.DataFrame({'age': rng.integers(18, 80, n), 'spend': rng.gamma(2.0, 50.0, n), 'zip': rng.integers(10000, 11552, n).astype(str)});"
        "f['churn'] = ((f['spend'] < 80) ^ (rng.random(n) < 0.2)).astype(float); f.loc[n - 150:, 'churn'] = np.nan;"
        "con = sqlite3.connect('customers.db'); f.to_sql('customers', con, index=False); con.close()")], cwd=tmp_path)
    assert table.returncode == 0
    wrote = run_plain(fresh, ["mlwt-train", "--write-default", "customers.yaml", "--db", "customers.db", "--table", "customers",
                              "--target", "churn"], tmp_path, tmp_path)
    assert wrote.returncode == 0, wrote.stderr
    quick = subprocess.run([str(fresh / "python"), "-c", (
        "import yaml; d = yaml.safe_load(open('customers.yaml')); assert d['data']['missing_labels'] == 'drop', d['data'];"
        "d['tuning'] = None; d['calibration'] = None; d['validation'].update(strategy='holdout', test_size=0.25);"
        "yaml.safe_dump(d, open('quick.yaml', 'w')); print(d['model']['name'], d['model']['model_type'])")], cwd=tmp_path, capture_output=True, text=True)
    assert quick.returncode == 0, quick.stderr
    name, model_type = quick.stdout.split()
    assert model_type == "blend"  # its trees take the zip code natively
    train = run_plain(fresh, ["mlwt-train", "quick.yaml"], tmp_path, tmp_path)
    assert train.returncode == 0 and f"registered {name} version 1 as @staging" in train.stdout, train.stdout[-3000:] + train.stderr[-3000:]
    assert "150 rows with no label left out (data.missing_labels: drop)" in train.stdout, train.stdout
    served = run_plain(fresh, ["python", "-c", (
        "import mlflow; from ml_workflow_training.tracking import load_model;"
        f"m = load_model('models:/{name}@staging', tracking_uri='sqlite:///mlflow.db');"
        "print([len(t.categories_['zip']) for t in m[0].column_transformer_.named_transformers_.values() if 'zip' in getattr(t, 'categories_', {})]);"
        "c = mlflow.MlflowClient('sqlite:///mlflow.db'); (r,) = c.search_runs([e.experiment_id for e in c.search_experiments()]);"
        "print(r.data.tags['dataset.training.unlabeled_rows_left_out'])")], tmp_path, tmp_path)
    assert served.returncode == 0 and served.stdout.split("\n")[:2] == ["[255]", "150"], served.stdout + served.stderr[-3000:]
    # the same table, as a person edits that spec: a search over max_bins below the zip code's 1,319 values, and tags written
    # unquoted; through the Python API (whose process never builds MLflow's map of installed packages) and through mlwt-train
    edit = subprocess.run([str(fresh / "python"), "-c", (
        "import yaml; d = yaml.safe_load(open('quick.yaml'));"
        "d['model'] = {'name': 'hgb_bins', 'model_type': 'hist_gradient_boosting', 'hyperparameters': {'max_bins': 63, 'max_iter': 30}};"
        "d['tuning'] = {'param_grid': {'classifier__max_bins': [31, 63]}, 'cv_folds': 3}; d['mlflow']['tags'] = 'TAGS';"
        "open('bins.yaml', 'w').write(yaml.safe_dump(d).replace('TAGS', '{model_version: 1.10, reviewed: yes, ticket: 0042}'))")], cwd=tmp_path)
    assert edit.returncode == 0 and "model_version: 1.10," in (tmp_path / "bins.yaml").read_text()
    api = run_plain(fresh, ["python", "-c", (
        "from mlflow.utils import requirements_utils; from ml_workflow_training import run_training;"
        "r = run_training('bins.yaml', verbose=False); print(r.registered, r.model_version, requirements_utils._MODULES_TO_PACKAGES is None)")],
        tmp_path, tmp_path)
    assert api.returncode == 0 and api.stdout.split() == ["True", "1", "True"], api.stdout[-3000:] + api.stderr[-3000:]  # True: never built
    cli = run_plain(fresh, ["mlwt-train", "bins.yaml", "--quiet"], tmp_path, tmp_path)
    assert cli.returncode == 0 and "hgb_bins version 2" in cli.stdout, cli.stdout[-3000:] + cli.stderr[-3000:]
    record = run_plain(fresh, ["python", "-c", (
        "import mlflow; from ml_workflow_training.tracking import load_model; c = mlflow.MlflowClient('sqlite:///mlflow.db');"
        "runs = c.search_runs([e.experiment_id for e in c.search_experiments()], \"tags.model_type = 'hist_gradient_boosting'\");"
        "print(sorted((r.data.tags['model_version'], r.data.tags['reviewed'], r.data.tags['ticket'], r.info.status) for r in runs));"
        "m = load_model('models:/hgb_bins/1', tracking_uri='sqlite:///mlflow.db');"
        "print([len(t.categories_['zip']) for t in m[0].column_transformer_.named_transformers_.values() if 'zip' in getattr(t, 'categories_', {})])")],
        tmp_path, tmp_path)
    assert record.returncode == 0, record.stderr[-3000:]
    assert record.stdout.splitlines()[:2] == ["[('1.10', 'yes', '0042', 'FINISHED'), ('1.10', 'yes', '0042', 'FINISHED')]", "[31]"], record.stdout
