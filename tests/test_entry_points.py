"""The README's promises, each through every entry point that offers it: the Python API, `mlwt-train`,
`mlwt-notebook run`, plain `papermill` and `mlwt-sweep`, as real processes on real SQLite files.

A failure after the run opened (a 3-class table with a binary-only loss fails at refit) must end FAILED, say
where and why, and register nothing; `mlwt-reproduce` must tell a notebook run's unchanged data from changed data.
Crash safety (signals, kill -9, many at once) is in test_crash_safety.py; typed parameters in test_notebooks.py."""
import sqlite3
import subprocess

import mlflow
import pytest
import yaml

from conftest import BIN
from ml_workflow_training import default_training_spec, generate_database, run_training
from ml_workflow_training.core import WorkflowError
from ml_workflow_training.notebook import template_path

pytestmark = pytest.mark.slow
BAD = {"table": "multi", "hyperparameters": {"loss": "exponential"}, "tuning": False, "calibration": False}


def bad_spec(uri: str):
    spec = default_training_spec()
    return spec.model_copy(update={"tuning": None, "calibration": None,
                                   "data": spec.data.model_copy(update={"table": "multi"}),
                                   "model": spec.model.model_copy(update={"hyperparameters": {"loss": "exponential", "n_estimators": 10}}),
                                   "mlflow": spec.mlflow.model_copy(update={"tracking_uri": uri})})


def run_entry(entry: str, workdir, uri: str) -> int:
    "Train the failing spec through `entry`; the exit code (0 for the API when it raised as it should)."
    if entry == "api":
        with pytest.raises(WorkflowError, match="during step 'refit'"):
            run_training(bad_spec(uri), verbose=False)
        return 1
    if entry == "mlwt-train":
        bad_spec(uri).save(workdir / "bad.yaml")
        cmd = [BIN / "mlwt-train", "--spec", "bad.yaml", "--quiet"]
    elif entry == "mlwt-notebook":
        cmd = [BIN / "mlwt-notebook", "run", "-o", "data/runs/bad.ipynb", "-p", "tracking_uri", uri,
               *[x for k, v in BAD.items() for x in ("-p", k, yaml.safe_dump(v, default_flow_style=True).strip())]]
    elif entry == "papermill":
        cmd = [BIN / "papermill", template_path(), "data/runs/bad.ipynb", "-p", "tracking_uri", uri, "-y", yaml.safe_dump(BAD)]
    else:
        (workdir / "sweep.yaml").write_text(yaml.safe_dump({"base": {"tracking_uri": uri}, "runs": [BAD]}))
        cmd = [BIN / "mlwt-sweep", "sweep.yaml", "--max-parallel", "1"]
    p = subprocess.run([str(c) for c in cmd], cwd=workdir, capture_output=True, text=True)
    if entry != "papermill":  # papermill is not ours: its output is its own; a sweep reports failed runs in its table
        said = p.stdout if entry == "mlwt-sweep" else p.stderr
        assert "Traceback" not in said and "loss='exponential'" in said, p.stdout[-2000:] + p.stderr[-2000:]
    return p.returncode


@pytest.mark.parametrize("entry", ["api", "mlwt-train", "mlwt-notebook", "papermill", "mlwt-sweep"])
def test_a_failure_after_the_run_opened_is_failed_with_its_step_and_registers_nothing(workdir, entry):
    generate_database("data/ml_workflow.db", table="multi", n_classes=3)
    uri = f"sqlite:///{workdir}/mlflow.db"
    assert run_entry(entry, workdir, uri) == 1
    client = mlflow.MlflowClient(uri)
    exp = client.get_experiment_by_name("production_models")
    trainings = [r for r in client.search_runs([exp.experiment_id]) if r.data.tags.get("failed_step") or r.data.tags.get("registered")]
    assert len(trainings) == 1, [(r.info.status, r.data.tags) for r in trainings]
    run = trainings[0]
    assert run.info.status == "FAILED" and run.data.tags["failed_step"] == "refit" and run.data.tags["registered"] == "false"
    assert "loss='exponential'" in run.data.tags["error"]
    assert client.search_registered_models() == []


def test_reproduce_tells_a_notebook_runs_unchanged_data_from_changed_data(workdir):
    uri = f"sqlite:///{workdir}/mlflow.db"
    p = subprocess.run([str(BIN / "papermill"), str(template_path()), "data/runs/ok.ipynb", "-p", "tracking_uri", uri,
                        "-p", "tuning", "false", "-p", "calibration", "false", "-p", "n_estimators", "10"],
                       cwd=workdir, capture_output=True, text=True)
    assert p.returncode == 0, p.stderr[-2000:]
    (run,) = mlflow.MlflowClient(uri).search_runs([mlflow.MlflowClient(uri).get_experiment_by_name("production_models").experiment_id])
    reproduce = lambda: subprocess.run([str(BIN / "mlwt-reproduce"), run.info.run_id, "--tracking-uri", uri, "--quiet"],
                                       cwd=workdir, capture_output=True, text=True)
    same = reproduce()
    assert same.returncode == 0 and f"reproduced: run {run.info.run_id}, data unchanged" in same.stdout, same.stdout + same.stderr
    with sqlite3.connect(workdir / "data" / "ml_workflow.db") as c:
        c.execute("UPDATE classification_data SET feature_0 = feature_0 + 1 WHERE rowid <= 50")
    changed = reproduce()
    assert changed.returncode == 1 and "data CHANGED" in changed.stdout, changed.stdout + changed.stderr


@pytest.mark.parametrize("entry", ["mlwt-notebook", "papermill"])
def test_notebook_runs_choose_a_threshold_within_a_time_budget(workdir, entry):
    uri = f"sqlite:///{workdir}/mlflow.db"
    params = {"tracking_uri": uri, "calibration": False, "time_budget_s": 0.5, "threshold": "balanced_accuracy",
              "n_estimators": 20}
    if entry == "mlwt-notebook":
        cmd = [BIN / "mlwt-notebook", "run", "-o", "data/runs/t.ipynb",
               *[x for k, v in params.items() for x in ("-p", k, yaml.safe_dump(v, default_flow_style=True).strip())]]
    else:
        cmd = [BIN / "papermill", template_path(), "data/runs/t.ipynb", "-y", yaml.safe_dump(params)]
    p = subprocess.run([str(c) for c in cmd], cwd=workdir, capture_output=True, text=True)
    assert p.returncode == 0, p.stderr[-3000:]
    client = mlflow.MlflowClient(uri)
    exp = client.get_experiment_by_name("production_models")
    run = next(r for r in client.search_runs([exp.experiment_id]) if "mlflow.parentRunId" not in r.data.tags)
    m = run.data.metrics
    assert 0 < m["decision_threshold"] < 1 and m["threshold_balanced_accuracy"] >= m["threshold_balanced_accuracy_at_0_5"]
    assert m["tuning_candidates_planned"] == 2 and 1 <= m["tuning_candidates"] <= 2  # the seed's grid without n_estimators
    assert run.data.params["tuning.time_budget_s"] == "0.5"
