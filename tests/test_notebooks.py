"""Parameterized training notebooks: papermill CLI and API, package CLI, bad input, concurrent sweeps, kernels."""
import base64
import json
import subprocess
import sys
from pathlib import Path

import mlflow
import nbformat
import pytest
import yaml

from conftest import BIN
from ml_workflow_training.notebook import NotebookError, read_result, run_notebook, sweep, template_path

ROOT = Path(__file__).resolve().parent.parent
TINY = ["-p", "tuning", "False", "-p", "n_estimators", "20", "-p", "calibration", "False"]


def papermill(*args, cwd):
    return subprocess.run([str(BIN / "papermill"), str(template_path()), *args], cwd=cwd, capture_output=True, text=True)


def runs(uri, experiment="production_models"):
    client = mlflow.MlflowClient(uri)
    exp = client.get_experiment_by_name(experiment)
    return client, (client.search_runs([exp.experiment_id]) if exp else [])


def test_shipped_template_equals_the_nbs_source():
    assert template_path().read_bytes() == (ROOT / "nbs" / "pipelines" / "train.ipynb").read_bytes()
    assert "IN_TEST" not in template_path().read_text()  # no test-only branch in what users receive


def test_template_plumbing_is_hidden_in_jupyterlab_and_left_out_of_the_html():
    cells = nbformat.read(str(template_path()), as_version=4).cells
    plumbing = [c for c in cells if c.source.startswith("_baseline = set(globals())") or "emit_record" in c.source]
    assert len(plumbing) == 2
    for c in plumbing:  # collapsed when a user opens the notebook, absent from the logged HTML
        assert c.metadata.get("jupyter", {}).get("source_hidden") is True and "remove-input" in c.metadata.get("tags", [])
    hidden = [c for c in cells if c.metadata.get("jupyter", {}).get("source_hidden")]
    assert hidden == plumbing  # the rest reads as the report


def test_papermill_cli_run_records_and_logs_the_notebook(workdir):
    uri = f"sqlite:///{workdir}/mlflow.db"
    out = papermill("data/runs/out.ipynb", *TINY, "-p", "tracking_uri", uri, "-p", "model_type", "hist_gradient_boosting",
                    "-p", "output_notebook", "data/runs/out.ipynb", cwd=workdir)
    assert out.returncode == 0, out.stderr[-2000:]
    result = read_result(workdir / "data/runs/out.ipynb")
    client, (run,) = runs(uri)
    assert result["mlflow_run_id"] == run.info.run_id and run.info.status == "FINISHED"
    assert run.data.params["model.model_type"] == "hist_gradient_boosting" and run.data.tags["notebook"] == "train.ipynb"
    assert {a.path for a in client.list_artifacts(run.info.run_id, "notebook")} == {"notebook/out.ipynb", "notebook/out.html"}


def test_papermill_parameters_file_and_python_api(workdir):
    import papermill as pm
    uri = f"sqlite:///{workdir}/mlflow.db"
    params = workdir / "params.yaml"
    params.write_text(yaml.safe_dump({"tuning": False, "calibration": False, "n_estimators": 15, "tracking_uri": uri,
                                      "experiment": "from_yaml"}))
    assert papermill("data/runs/a.ipynb", "-f", str(params), cwd=workdir).returncode == 0
    pm.execute_notebook(str(template_path()), str(workdir / "data/runs/b.ipynb"), progress_bar=False, cwd=str(workdir),
                        parameters=dict(tuning=False, calibration=False, n_estimators=15, tracking_uri=uri, experiment="from_yaml"))
    _, found = runs(uri, "from_yaml")
    assert len(found) == 2 and all(r.data.params["model.hyperparameters.n_estimators"] == "15" for r in found)


def test_package_cli_logs_executed_notebook_and_html(workdir):
    uri = f"sqlite:///{workdir}/mlflow.db"
    out = subprocess.run([str(BIN / "mlwt-notebook"), "run", "-p", "tuning", "false", "-p", "calibration", "false",
                          "-p", "n_estimators", "10", "-p", "tracking_uri", uri, "-o", "data/runs/cli.ipynb"],
                         cwd=workdir, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr[-2000:]
    client, (run,) = runs(uri)
    arts = {a.path for a in client.list_artifacts(run.info.run_id, "notebook")}
    assert arts == {"notebook/cli.ipynb", "notebook/cli.html"}
    logged = Path(mlflow.artifacts.download_artifacts(run_id=run.info.run_id, artifact_path="notebook/cli.ipynb", tracking_uri=uri))
    assert read_result(logged)["mlflow_run_id"] == run.info.run_id  # the logged copy is the complete, final notebook
    report = nbformat.read(str(workdir / "data/runs/cli.ipynb"), as_version=4)  # it reads as a report
    outputs = [o for c in report.cells if c.cell_type == "code" for o in c.outputs]
    assert not [o.text for o in outputs if o.output_type == "stream" and o.name == "stderr"]  # nothing a user can do nothing about
    assert not [o.text for o in outputs if o.output_type == "stream" and "\r" in o.text]  # no live progress line in a notebook's record
    summary = next(o for o in outputs if o.output_type == "display_data").data["text/markdown"]  # the first screen, filled in
    assert "**Cross-validated**" in summary and "accuracy 0." in summary and "±" in summary and "**Registry**" in summary
    assert sum("image/png" in o.get("data", {}) for o in outputs) == 5  # all five figures
    plots = Path(mlflow.artifacts.download_artifacts(run_id=run.info.run_id, artifact_path="plots", tracking_uri=uri))
    shown = {base64.b64decode(o["data"]["image/png"]) for o in outputs if "image/png" in o.get("data", {})}
    assert shown == {p.read_bytes() for p in plots.iterdir()}  # the notebook shows the very PNGs the run logged
    html = Path(mlflow.artifacts.download_artifacts(run_id=run.info.run_id, artifact_path="notebook/cli.html", tracking_uri=uri)).read_text()
    assert "**Registry**" not in html and "Registry" in html and "_baseline" not in html and "spec_from_notebook" not in html
    copied = subprocess.run([str(BIN / "mlwt-notebook"), "copy", "mine.ipynb"], cwd=workdir, capture_output=True, text=True)
    assert copied.returncode == 0 and (workdir / "mine.ipynb").read_bytes() == template_path().read_bytes()


def test_with_mlflow_off_a_jupyter_kernel_shows_each_figure_once_where_the_report_shows_it(workdir):
    "In the kernel JupyterLab gives (matplotlib's inline backend, no MPLBACKEND): the run's cell shows no figure, the Figures section each one once."
    import os
    out = subprocess.run([str(BIN / "mlwt-train"), "--write-default", "spec.yaml"], cwd=workdir, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    spec = yaml.safe_load((workdir / "spec.yaml").read_text())
    spec["mlflow"]["enabled"], spec["tuning"], spec["calibration"] = False, None, None
    (workdir / "spec.yaml").write_text(yaml.safe_dump(spec))
    env = {k: v for k, v in os.environ.items() if k != "MPLBACKEND"}
    run = subprocess.run([str(BIN / "papermill"), str(template_path()), "data/runs/off.ipynb", "-p", "spec_file", "spec.yaml"],
                         cwd=workdir, capture_output=True, text=True, env=env)
    assert run.returncode == 0, run.stderr[-2000:]
    report = nbformat.read(str(workdir / "data/runs/off.ipynb"), as_version=4)
    images = {c.source.splitlines()[0]: sum("image/png" in o.get("data", {}) for o in c.outputs) for c in report.cells if c.cell_type == "code"}
    assert {line: n for line, n in images.items() if n} == {"_nb.show_figures(results.figures, results.figure_png)  # the PNGs the run logged, not drawn again": 5}


@pytest.mark.parametrize("args, message, code", [  # 2: refused before any kernel starts; 1: the run itself failed
    (["-p", "n_estimator", "20"], "unknown notebook parameter 'n_estimator'. Did you mean 'n_estimators'?", 2),
    (["-p", "n_estimators", "many"], "n_estimators: Input should be a valid integer", 2),
    (["-p", "spec_file", "missing.yaml"], "spec file not found: missing.yaml", 2),
    (["-p", "table", "nope"], "unknown table 'nope'", 1),
    (["-p", "model_type", "random_forest", "-p", "search", "halving_random"],  # the new model drops the grid: no search would run
     "search: 'halving_random' asks for a hyperparameter search, but this run has none: model_type 'random_forest' drops the spec's grid", 2),
    (["-p", "hyperparameters", "{max_depth: [3}"], "hyperparameters: is not a mapping in YAML or JSON", 2),  # mlwt-notebook: no traceback
    (["-p", "tuning", "False", "-p", "search", "bayes"],  # moot without tuning, but no search takes it: a sweep's typo shows on every run
     "search: Input should be 'grid', 'random', 'halving_grid', 'halving_random' or 'optuna' (got 'bayes')", 2),
    (["-p", "threshold", "0.7"], "threshold.objective: Input should be 'f1', 'balanced_accuracy', 'mcc' or 'cost' (got '0.7')", 2),  # not a cut-off
])
def test_bad_parameters_fail_with_a_clear_message(workdir, args, message, code):
    uri = f"sqlite:///{workdir}/mlflow.db"
    out = papermill("data/runs/bad.ipynb", "-p", "tracking_uri", uri, *args, cwd=workdir)
    assert out.returncode != 0 and message in out.stderr
    cli = subprocess.run([str(BIN / "mlwt-notebook"), "run", "-p", "tracking_uri", uri, *args], cwd=workdir, capture_output=True, text=True)
    lines = cli.stderr.strip().splitlines()
    assert cli.returncode == code and len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0], cli.stderr
    _, found = runs(uri)
    assert found == []  # every one of these is refused before a run opens: nothing is left RUNNING because nothing started


def test_notebook_without_parameters_cell_is_refused(workdir):
    nb = nbformat.read(str(template_path()), as_version=4)
    for c in nb.cells: c.metadata.pop("tags", None)
    nbformat.write(nb, str(workdir / "plain.ipynb"))
    with pytest.raises(NotebookError, match="has no cell tagged 'parameters'"):
        run_notebook({}, template=workdir / "plain.ipynb")
    out = subprocess.run([str(BIN / "mlwt-notebook"), "run", "--template", "plain.ipynb"], cwd=workdir, capture_output=True, text=True)
    assert out.returncode == 1 and "has no cell tagged 'parameters'" in out.stderr


def test_six_concurrent_runs_on_one_sqlite_store_lose_nothing(workdir):
    uri = f"sqlite:///{workdir}/mlflow.db"
    base = dict(tuning=False, calibration=False, register=False, tracking_uri=uri, experiment="sweep")
    sets = [dict(n_estimators=n, max_depth=d) for n in (10, 20, 30) for d in (2, 3)] + [dict(n_estimators=-1)]
    table = sweep(sets, base=base, max_parallel=7)
    assert list(table["status"]) == ["FINISHED"] * 6 + ["FAILED"]
    assert "must be an int in the range [1, inf)" in table["error"].iloc[-1]
    client, found = runs(uri, "sweep")
    parent = table.attrs["parent_run_id"]
    children = [r for r in found if r.data.tags.get("mlflow.parentRunId") == parent]
    assert len(children) == 6 and all(r.info.status == "FINISHED" for r in children)
    assert {r.info.run_id for r in children} == set(table["mlflow_run_id"].dropna())
    counts = {len(r.data.metrics) for r in children}
    assert len(counts) == 1 and counts.pop() >= 25  # every run holds every metric
    for r in children: assert len(client.get_metric_history(r.info.run_id, "cv_accuracy_fold")) == 5
    parent_run = client.get_run(parent)
    assert parent_run.data.tags["sweep.failed"] == "1" and parent_run.data.tags["sweep.ranked_by"] == "cv_score"
    best = table.iloc[0]  # the leaderboard's first row names the parent's best run, score and parameters
    assert parent_run.data.tags["sweep.best_run_id"] == best["mlflow_run_id"] and best["cv_score"] == table["cv_score"].max()
    assert parent_run.data.metrics["best_cv_score"] == pytest.approx(best["cv_score"], rel=1e-12)
    assert parent_run.data.params["best.n_estimators"] == str(best["n_estimators"])


def test_sweep_cli_with_a_grid(workdir):
    uri = f"sqlite:///{workdir}/mlflow.db"
    (workdir / "grid.yaml").write_text(yaml.safe_dump({"base": dict(tuning=False, calibration=False, register=False,
                                                                     tracking_uri=uri, n_estimators=10),
                                                       "grid": {"max_depth": [2, 3]}}))
    out = subprocess.run([str(BIN / "mlwt-sweep"), "grid.yaml", "--max-parallel", "2"], cwd=workdir, capture_output=True, text=True)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-2000:]  # the table names a failed run's error
    parent = out.stdout.split("parent MLflow run")[1].split()[0]
    client, found = runs(uri)
    children = [r for r in found if r.data.tags.get("mlflow.parentRunId") == parent]
    assert len(children) == 2 and all(r.info.status == "FINISHED" for r in children)
    assert sorted(r.data.params["model.hyperparameters.max_depth"] for r in children) == ["2", "3"]
    assert client.get_run(parent).info.status == "FINISHED"


def test_project_kernel_runs_notebooks_with_the_package(tmp_path):
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("import sys, ml_workflow_training; print(sys.executable)")],
                                  metadata={"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}})
    nbformat.write(nb, str(tmp_path / "k.ipynb"))
    out = subprocess.run([str(BIN / "papermill"), str(tmp_path / "k.ipynb"), str(tmp_path / "o.ipynb")], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    printed = nbformat.read(str(tmp_path / "o.ipynb"), as_version=4).cells[0].outputs[0]["text"].strip()
    assert Path(printed).parent == BIN
    specs = json.loads(subprocess.run([str(BIN / "jupyter"), "kernelspec", "list", "--json"], capture_output=True, text=True).stdout)
    assert "python3" in specs["kernelspecs"]


@pytest.mark.slow
def test_full_default_through_papermill(workdir):
    out = subprocess.run([str(BIN / "mlwt-train"), "--notebook", "--quiet"], cwd=workdir, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr[-3000:]
    client, found = runs(f"sqlite:///{workdir}/mlflow.db")
    (run,) = [r for r in found if "mlflow.parentRunId" not in r.data.tags]
    assert run.data.metrics["cv_accuracy_mean"] >= 0.921 and run.data.tags["registered"] == "true"
    assert len(client.search_runs([run.info.experiment_id], f"tags.mlflow.parentRunId = '{run.info.run_id}'")) == 6
    assert "model version 1" in out.stdout


COST = "{objective: cost, costs: {false_positive: 1, false_negative: 5}}"


@pytest.mark.parametrize("entry", ["papermill", "mlwt-notebook"])
def test_mappings_given_as_text_reach_the_spec_and_the_run(workdir, entry):
    "papermill's -p leaves '{...}' as text (only numbers, True, False and None are typed): hyperparameters, tags and a cost threshold so written reach the run."
    uri = f"sqlite:///{workdir}/mlflow.db"
    args = [*TINY, "-p", "tracking_uri", uri, "-p", "hyperparameters", '{"min_samples_leaf": 3}', "-p", "tags", "{team: ml}", "-p", "threshold", COST]
    if entry == "papermill": out = papermill("data/runs/m.ipynb", *args, cwd=workdir)
    else: out = subprocess.run([str(BIN / "mlwt-notebook"), "run", *args, "-o", "data/runs/m.ipynb"], cwd=workdir, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr[-2000:]
    _, (run,) = runs(uri)
    assert run.data.params["model.hyperparameters.min_samples_leaf"] == "3" and run.data.tags["team"] == "ml"
    assert run.data.params["threshold.objective"] == "cost" and "threshold_cost_per_row" in run.data.metrics, (run.data.params, run.data.metrics)


@pytest.mark.parametrize("entry", ["papermill", "mlwt-notebook"])
def test_register_false_as_text_registers_nothing(workdir, entry):
    "Parameters arrive as text ('-r register false', '-p register no'): they are parsed by type, never taken as truthy strings."
    uri = f"sqlite:///{workdir}/mlflow.db"
    if entry == "papermill":
        out = papermill("data/runs/r.ipynb", *TINY, "-p", "tracking_uri", uri, "-r", "register", "false", "-r", "tuning", "no", cwd=workdir)
    else:
        out = subprocess.run([str(BIN / "mlwt-notebook"), "run", *TINY, "-p", "tracking_uri", uri, "-p", "register", "no",
                              "-o", "data/runs/r.ipynb"], cwd=workdir, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr[-2000:]
    client, (run,) = runs(uri)
    assert run.info.status == "FINISHED" and run.data.tags["registered"] == "false"
    assert run.data.tags["registration"] == "registry disabled in the spec" and client.search_registered_models() == []


@pytest.mark.parametrize("entry", ["papermill", "mlwt-notebook", "mlwt-sweep"])
def test_names_typed_as_numbers_dates_or_yaml_stay_the_text_given(workdir, entry):
    "A run or experiment named by a date or a number (`-p run_name 20241205`, `experiment: 2024-12-05` in YAML) or with a colon is that text, not refused."
    uri = f"sqlite:///{workdir}/mlflow.db"
    if entry == "papermill":  # papermill's -p types 20241205 and 2024 as ints
        out = papermill("data/runs/n.ipynb", *TINY, "-p", "tracking_uri", uri, "-p", "run_name", "20241205", "-p", "experiment", "2024", cwd=workdir)
        names, experiment = ["20241205"], "2024"
    elif entry == "mlwt-notebook":  # YAML would read -p's text as a mapping, and the file's as a date
        (workdir / "p.yaml").write_text("experiment: 2024-12-05\n")
        out = subprocess.run([str(BIN / "mlwt-notebook"), "run", *TINY, "-p", "tracking_uri", uri, "-p", "run_name", "v2: draft",
                              "--parameters-file", "p.yaml", "-o", "data/runs/n.ipynb"], cwd=workdir, capture_output=True, text=True)
        names, experiment = ["v2: draft"], "2024-12-05"
    else:  # unquoted in the sweep file: a date and an int
        (workdir / "names.yaml").write_text(f"base: {{tuning: false, calibration: false, n_estimators: 20, tracking_uri: '{uri}', experiment: 2024-12-05}}\n"
                                            "runs: [{run_name: 20241205}, {run_name: 2024-12-06}]\n")
        out = subprocess.run([str(BIN / "mlwt-sweep"), "names.yaml"], cwd=workdir, capture_output=True, text=True)
        names, experiment = ["20241205", "2024-12-06"], "2024-12-05"
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-2000:]
    _, found = runs(uri, experiment)
    named = [r for r in found if r.info.run_name in names]
    assert sorted(r.info.run_name for r in named) == sorted(names), [r.info.run_name for r in found]
    assert all(r.info.status == "FINISHED" for r in named)


@pytest.mark.parametrize("entry", ["papermill", "papermill -f", "mlwt-notebook", "mlwt-sweep"])
def test_numbers_written_with_an_exponent_are_those_numbers(workdir, entry):
    "`limit 2e2` is 200 rows and a learning rate of `2e-1` is 0.2 on every entry point, where PyYAML alone (mlwt-notebook, sweep files) reads text."
    uri = f"sqlite:///{workdir}/mlflow.db"
    hyper = "{learning_rate: 2e-1}"  # papermill's -p leaves a mapping as text: the template reads it as YAML
    if entry == "papermill":
        out = papermill("data/runs/n.ipynb", *TINY, "-p", "tracking_uri", uri, "-p", "limit", "2e2", "-p", "hyperparameters", hyper, cwd=workdir)
        limits = ["200"]
    elif entry == "papermill -f":  # papermill reads the file as YAML 1.1: '2e-1' is text inside the mapping it hands over
        (workdir / "p.yaml").write_text(f"limit: 2e2\nhyperparameters: {hyper}\ntracking_uri: '{uri}'\n")
        out = papermill("data/runs/n.ipynb", *TINY, "-f", "p.yaml", cwd=workdir)
        limits = ["200"]
    elif entry == "mlwt-notebook":
        out = subprocess.run([str(BIN / "mlwt-notebook"), "run", *TINY, "-p", "tracking_uri", uri, "-p", "limit", "2e2", "-p", "hyperparameters", hyper,
                              "-o", "data/runs/n.ipynb"], cwd=workdir, capture_output=True, text=True)
        limits = ["200"]
    else:
        (workdir / "limits.yaml").write_text(f"base: {{tuning: false, calibration: false, n_estimators: 20, tracking_uri: '{uri}', hyperparameters: {hyper}}}\n"
                                             "runs: [{limit: 2e2}, {limit: 3.5E2}]\n")
        out = subprocess.run([str(BIN / "mlwt-sweep"), "limits.yaml"], cwd=workdir, capture_output=True, text=True)
        limits = ["200", "350"]
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-2000:]
    found = [r for r in runs(uri)[1] if entry != "mlwt-sweep" or "mlflow.parentRunId" in r.data.tags]  # not the sweep's parent run
    assert sorted(r.data.params["data.limit"] for r in found) == limits
    assert all(r.data.params["dataset.training.n_rows"] == r.data.params["data.limit"] and r.info.status == "FINISHED" for r in found)
    assert [r.data.params["model.hyperparameters.learning_rate"] for r in found] == ["0.2"] * len(limits)

@pytest.mark.parametrize("entry", ["papermill", "mlwt-notebook"])
def test_tag_values_given_as_text_are_logged_as_written_and_reproduce(workdir, entry):
    "`-p tags '{model_version: 1.10, reviewed: yes}'` tags the run 1.10 and yes, where YAML would read 1.1 and True; a run named 1e5 reproduces."
    uri = f"sqlite:///{workdir}/mlflow.db"
    tags = "{model_version: 1.10, reviewed: yes, build: 1e3}"
    if entry == "papermill":  # -r: papermill's -p would read 1e5 as a float
        out = papermill("data/runs/n.ipynb", *TINY, "-p", "tracking_uri", uri, "-p", "tags", tags, "-r", "run_name", "1e5", cwd=workdir)
    else:
        out = subprocess.run([str(BIN / "mlwt-notebook"), "run", *TINY, "-p", "tracking_uri", uri, "-p", "tags", tags, "-p", "run_name", "1e5",
                              "-o", "data/runs/n.ipynb"], cwd=workdir, capture_output=True, text=True)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-2000:]
    (run,) = runs(uri)[1]
    assert {k: run.data.tags.get(k) for k in ("model_version", "reviewed", "build")} == {"model_version": "1.10", "reviewed": "yes", "build": "1e3"}
    assert run.info.run_name == "1e5"
    # the logged spec.yaml holds that text quoted, so it reads back as text: reproduction reloads it
    again = subprocess.run([str(BIN / "mlwt-reproduce"), run.info.run_id, "--tracking-uri", uri, "--quiet"], cwd=workdir, capture_output=True, text=True)
    assert again.returncode == 0 and f"reproduced: run {run.info.run_id}, data unchanged" in again.stdout, again.stdout + again.stderr

def test_a_boolean_given_for_a_name_is_refused_naming_papermills_raw_flag(workdir):
    "papermill's -p reads True as a boolean: a run name so given is refused before a run opens, saying how to pass the text."
    uri = f"sqlite:///{workdir}/mlflow.db"
    out = papermill("data/runs/b.ipynb", *TINY, "-p", "tracking_uri", uri, "-p", "run_name", "True", cwd=workdir)
    assert out.returncode != 0
    assert "run_name: is True, not text" in out.stderr and "papermill's -r" in out.stderr, out.stderr[-2000:]
    assert runs(uri)[1] == []
    out = papermill("data/runs/r.ipynb", *TINY, "-p", "tracking_uri", uri, "-r", "run_name", "True", cwd=workdir)
    assert out.returncode == 0, out.stderr[-2000:]
    assert [r.info.run_name for r in runs(uri)[1]] == ["True"]
