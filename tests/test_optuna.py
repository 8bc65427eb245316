"""Optuna search end to end: every trial a child run of its training run with its state (complete, pruned, failed), the
study's history logged, the same trials from another process at another n_jobs, and each entry point that runs it."""
import json
import subprocess

import mlflow
import pandas as pd
import pytest

pytest.importorskip("optuna", reason="the optuna extra is not installed: pip install -e '.[optuna]'")

from conftest import BIN, entry_point_command
from ml_workflow_training import FeatureSpecBuilder, MLflowSpecBuilder, ModelSpecBuilder, TrainingSpec, TuningSpec, run_ml_workflow
from ml_workflow_training.specs import ValidationSpec
from ml_workflow_training.tracking import TRIAL_STATUS

FEATURES = [f"feature_{i}" for i in range(20)]
# strong regularisation loses to the median and is pruned; l1_ratio 1 is a valid value that the default lbfgs solver cannot fit (a value
# the estimator refuses outright, such as max_depth -1, the spec refuses before any fit): every state appears
SPACE = {"classifier__C": {"dist": "loguniform", "low": 1e-4, "high": 10.0}, "classifier__l1_ratio": [0.0, 1.0]}


def optuna_spec(uri: str, experiment: str, n_jobs: int) -> TrainingSpec:
    return TrainingSpec(features=FeatureSpecBuilder().add_numeric_group(FEATURES).build(),
                        model=ModelSpecBuilder().add_classifier("optuna_lr", "logistic_regression").build()[0],
                        tuning=TuningSpec(strategy="optuna", n_iter=16, cv_folds=3, n_jobs=n_jobs, param_grid=SPACE),
                        validation=ValidationSpec(cv_folds=3),
                        mlflow=MLflowSpecBuilder().enable().set_tracking_uri(uri).set_experiment(experiment).build())


def trials(client, run_id: str) -> list:
    "The child runs of `run_id`, by trial number."
    children = client.search_runs([client.get_run(run_id).info.experiment_id], f"tags.mlflow.parentRunId = '{run_id}'", max_results=500)
    return sorted(children, key=lambda r: int(r.data.tags["trial_number"]))


def test_every_trial_is_a_child_run_with_its_state_and_the_study_is_logged(workdir):
    uri = f"sqlite:///{workdir}/mlflow.db"
    s = optuna_spec(uri, "opt", 2)
    result = run_ml_workflow(s.features, s.model, tuning_spec=s.tuning, validation_spec=s.validation, mlflow_spec=s.mlflow, verbose=False)
    client = mlflow.MlflowClient(uri)
    run = client.get_run(result.mlflow_run_id)
    assert run.info.status == "FINISHED"
    children = trials(client, run.info.run_id)
    assert [c.info.run_name for c in children] == [f"trial-{i:03d}" for i in range(16)]  # two trials at a time, all under this run
    states = [c.data.tags["trial_state"] for c in children]
    assert {"COMPLETE", "PRUNED", "FAIL"} <= set(states), states
    for child, state in zip(children, states):
        assert child.info.status == TRIAL_STATUS[state]  # a pruned trial is not shown as finished
        folds = client.get_metric_history(child.info.run_id, "fold_accuracy")
        assert [m.step for m in folds] == list(range(3 if state == "COMPLETE" else len(folds)))
        if state == "PRUNED": assert 1 <= len(folds) < 3 and "mean_accuracy" not in child.data.metrics
        if state == "COMPLETE": assert child.data.metrics["mean_accuracy"] == pytest.approx(sum(m.value for m in folds) / 3)
        if state == "FAIL": assert child.data.params["l1_ratio"] == "1.0" and "lbfgs" in child.data.tags["error"] and not folds
    m = run.data.metrics
    assert (m["tuning_trials_complete"], m["tuning_trials_pruned"], m["tuning_trials_fail"]) == \
        (states.count("COMPLETE"), states.count("PRUNED"), states.count("FAIL"))
    best = max((c for c in children if c.data.tags["trial_state"] == "COMPLETE"), key=lambda c: c.data.metrics["mean_accuracy"])
    assert m["tuning_best_score"] == pytest.approx(best.data.metrics["mean_accuracy"])
    assert result.pipeline.get_params()["classifier__l1_ratio"] == float(best.data.params["l1_ratio"]) == 0.0
    table = pd.read_csv(mlflow.artifacts.download_artifacts(run_id=run.info.run_id, artifact_path="tuning/trials.csv", tracking_uri=uri))
    assert list(table["number"]) == list(range(16)) and list(table["state"]) == states
    plots = {a.path for a in client.list_artifacts(run.info.run_id, "plots")}
    assert {"plots/optimization_history.png", "plots/parameter_importance.png"} <= plots

    # the same seeded study from another process, serial, through the command line: the same trials, the same best
    spec = optuna_spec(uri, "opt-cli", 1)
    spec.save(workdir / "optuna.yaml")
    cli = subprocess.run([str(BIN / "mlwt-train"), "--spec", "optuna.yaml", "--quiet"], cwd=workdir, capture_output=True, text=True, timeout=600)
    assert cli.returncode == 0, cli.stdout[-2000:] + cli.stderr[-2000:]
    (other,) = client.search_runs([client.get_experiment_by_name("opt-cli").experiment_id], "tags.mlflow.parentRunId IS NULL")
    again = trials(client, other.info.run_id)
    assert [(c.data.params, c.data.tags["trial_state"]) for c in again] == [(c.data.params, c.data.tags["trial_state"]) for c in children]
    assert [c.data.metrics.get("mean_accuracy") for c in again] == [c.data.metrics.get("mean_accuracy") for c in children]


@pytest.mark.parametrize("entry", ["mlwt-notebook", "papermill", "mlwt-sweep"])
def test_the_training_notebook_runs_an_optuna_search_and_shows_its_history(workdir, entry):
    # the seed's spec with search optuna: its grid's lists become the trials' choices
    params = {"search": "optuna", "n_estimators": 30, "calibration": False, "experiment": f"nb-{entry}", "time_budget_s": 600}
    out = workdir / "data" / "runs" / "optuna.ipynb"
    cmd = entry_point_command(entry, params, out, [{"max_depth": 2}, {"max_depth": 3}], workdir)
    r = subprocess.run(cmd, cwd=workdir, capture_output=True, text=True, timeout=900)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-3000:]
    client = mlflow.MlflowClient(f"sqlite:///{workdir}/mlflow.db")
    experiment = client.get_experiment_by_name(f"nb-{entry}").experiment_id
    runs = [run for run in client.search_runs([experiment]) if "spec_hash" in run.data.tags]
    assert len(runs) == (2 if entry == "mlwt-sweep" else 1)
    for run in runs:
        assert run.info.status == "FINISHED" and run.data.params["tuning.strategy"] == "optuna", run.data.params.get("tuning.strategy")
        children = trials(client, run.info.run_id)
        assert len(children) == run.data.metrics["tuning_candidates"] == 10
        assert all(c.info.status == TRIAL_STATUS[c.data.tags["trial_state"]] for c in children)
    if entry != "mlwt-sweep":
        nb = json.loads(out.read_text())
        outputs = [o for c in nb["cells"] if c["cell_type"] == "code" for o in c.get("outputs", [])]
        html = "".join("".join(o.get("data", {}).get("text/html", "")) for o in outputs)
        assert "PRUNED" in html or "COMPLETE" in html  # the trial table
        assert sum("image/png" in o.get("data", {}) for o in outputs) == 6  # five evaluation figures and the study's history
