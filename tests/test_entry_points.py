"""The README's promises, each through every entry point that offers it: the Python API, `mlwt-train`,
`mlwt-notebook run`, plain `papermill` and `mlwt-sweep`, as real processes on real SQLite files.

A holdout run (its table read in the split's order, its importance on a sample) must log, from every entry point,
the rows and test metrics that scikit-learn's `train_test_split` gives, and a class too rare to split is said before
any run is recorded. A spec file's decision threshold must be the one the API chooses, through every entry point, and the
registered model must label with it, also when the table is read through a view. A failure after the run opened (a 3-class table with a binary-only loss fails at refit) must end FAILED, say
where and why, and register nothing; `mlwt-reproduce` must tell a notebook run's unchanged data from changed data.
A logistic regression tuned by halving on a rare class with gaps must register and score a one-row request with gaps as the
API's does; a spec no fit could finish (gaps to a model that refuses them, one calibrated model on a time series) must be
refused before a run opens.
Crash safety (signals, kill -9, many at once) is in test_crash_safety.py; typed parameters in test_notebooks.py."""
import io
import re
import sqlite3
import subprocess

import mlflow
import numpy as np
import pandas as pd
import pytest
import yaml
from sklearn.model_selection import train_test_split

from conftest import BIN, warning_lines
from ml_workflow_training import (TrainingSpec, build_pipeline, compute_metrics, dataset_fingerprint, default_training_spec,
                                  ModelSpec, generate_database, load_data, run_training)
from ml_workflow_training.specs import TuningSpec
from ml_workflow_training.tracking import load_model
from ml_workflow_training.core import InputError, TrackingError, WorkflowError
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


def holdout_spec(uri: str):
    "The seed's spec as a quick holdout run: 25% held out, so the table is read in the split's order; serial, so a process of its own writes the model."
    spec = default_training_spec()
    return spec.model_copy(update={"tuning": None, "calibration": None,
                                   "model": spec.model.model_copy(update={"hyperparameters": {"n_estimators": 20}}),
                                   "validation": spec.validation.model_copy(update={"strategy": "holdout", "test_size": 0.25, "n_jobs": 1}),
                                   "mlflow": spec.mlflow.model_copy(update={"tracking_uri": uri})})


def train_through(entry: str, workdir, uri: str, params: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    "Train holdout.yaml (already written) through `entry`, a console command or papermill, on the store at `uri`; `params`: notebook parameters (notebook entries only)."
    given = [x for k, v in (params or {}).items() for x in ("-p", k, v)]
    if params and entry not in ("mlwt-notebook", "papermill", "mlwt-sweep"): raise ValueError(f"{entry} takes no notebook parameters")
    if entry == "python": cmd = [BIN / "python", "-c", "from ml_workflow_training import TrainingSpec, run_training; run_training(TrainingSpec.load('holdout.yaml'))"]
    elif entry == "mlwt-train": cmd = [BIN / "mlwt-train", "--spec", "holdout.yaml", "--quiet"]
    elif entry == "mlwt-train --notebook": cmd = [BIN / "mlwt-train", "--notebook", "--spec", "holdout.yaml", "--quiet"]
    elif entry == "mlwt-notebook": cmd = [BIN / "mlwt-notebook", "run", "-p", "spec_file", "holdout.yaml", "-p", "tracking_uri", uri, "-o", "data/runs/h.ipynb", *given]
    elif entry == "papermill": cmd = [BIN / "papermill", template_path(), "data/runs/h.ipynb", "-p", "spec_file", "holdout.yaml", "-p", "tracking_uri", uri, *given]
    else:
        (workdir / "sweep.yaml").write_text(yaml.safe_dump({"base": {"tracking_uri": uri}, "runs": [{"spec_file": "holdout.yaml", **(params or {})}]}))
        cmd = [BIN / "mlwt-sweep", "sweep.yaml", "--max-parallel", "1"]
    return subprocess.run([str(c) for c in cmd], cwd=workdir, capture_output=True, text=True)


def trainings(uri: str, experiment: str = "production_models") -> list:
    "The runs on the store that trained (a sweep's parent run does not)."
    client = mlflow.MlflowClient(uri)
    exp = client.get_experiment_by_name(experiment)
    return [r for r in (client.search_runs([exp.experiment_id]) if exp else []) if "registered" in r.data.tags]


@pytest.mark.parametrize("entry", ["python", "mlwt-train", "mlwt-train --notebook", "mlwt-notebook", "papermill", "mlwt-sweep"])
def test_a_holdout_run_logs_train_test_splits_rows_and_the_apis_results_through_every_entry_point(workdir, entry):
    spec = holdout_spec(f"sqlite:///{workdir}/api.db")
    X, y = load_data(db="data/ml_workflow.db")
    X_train, X_test, y_train, y_test = train_test_split(X, y, test_size=0.25, random_state=42, stratify=y)
    plain = build_pipeline(spec.features, spec.model).fit(X_train, y_train)  # scikit-learn alone, on train_test_split's rows
    expected = compute_metrics(y_test, plain.predict_proba(X_test), plain.classes_, ["roc_auc", "log_loss"])
    api = run_training(spec, verbose=False)
    assert api.data_fingerprint["content_hash"] == dataset_fingerprint(X_train, y_train)["content_hash"]
    assert {k: api.test_metrics[k] for k in expected} == pytest.approx(expected, rel=1e-12)

    uri = f"sqlite:///{workdir}/mlflow.db"
    holdout_spec(uri).save(workdir / "holdout.yaml")
    p = train_through(entry, workdir, uri)
    assert p.returncode == 0, p.stdout[-2000:] + p.stderr[-2000:]
    # progress, not noise: no warning line from a dependency on the console or in an executed notebook's stderr
    assert warning_lines(p.stdout, p.stderr, notebooks=workdir.glob("data/runs/**/*.ipynb")) == [], p.stdout[-2000:] + p.stderr[-2000:]
    if entry == "mlwt-sweep": assert "on its test set): no registration gate; registered gradient_boost_v1 version 1" in p.stdout, p.stdout  # ranked by the test score: no cv_score
    elif entry in ("mlwt-train --notebook", "mlwt-notebook"): assert f"test_score {api.test_metrics['accuracy']:.4f}" in p.stdout, p.stdout
    (run,) = trainings(uri)
    assert run.info.status == "FINISHED" and run.data.tags["registered"] == "true"
    # serial: the model was written by a process of its own (a failed one would say so here), and it serves as the API's model;
    # a new Python process (a console command, a script) has its whole run recorded by that process, a notebook kernel by itself
    apart = entry in ("python", "mlwt-train")
    assert (run.data.tags["model.saved_by"], run.data.tags["mlwt.recorded_by"]) == (
        ("the process recording the run", "a process of its own") if apart else ("a process of its own", "the training process")), run.data.tags
    served = load_model("models:/gradient_boost_v1@staging", tracking_uri=uri)
    np.testing.assert_allclose(served.predict_proba(X_test), api.pipeline.predict_proba(X_test), rtol=1e-12)
    assert run.data.tags["dataset.training.content_hash"] == api.data_fingerprint["content_hash"]
    assert run.data.params["dataset.training.n_rows"] == str(len(y_train))
    assert {k: run.data.metrics[f"test_{k}"] for k in api.test_metrics} == pytest.approx(api.test_metrics, rel=1e-12)
    logged = pd.read_csv(mlflow.artifacts.download_artifacts(run_id=run.info.run_id, artifact_path="feature_importance.csv", tracking_uri=uri))
    pd.testing.assert_frame_equal(logged, pd.read_csv(io.StringIO(api.feature_importance.to_csv(index=False))))
    if entry == "mlwt-sweep":  # the sweep's parent run names its best run and that run's test score
        client = mlflow.MlflowClient(uri)
        (parent,) = [r for r in client.search_runs([run.info.experiment_id]) if "sweep.size" in r.data.tags]
        assert parent.data.tags["sweep.ranked_by"] == "test_score" and parent.data.tags["sweep.best_run_id"] == run.info.run_id
        assert parent.data.metrics["best_test_score"] == pytest.approx(api.test_metrics["accuracy"], rel=1e-12)
    again = subprocess.run([str(BIN / "mlwt-reproduce"), run.info.run_id, "--tracking-uri", uri, "--quiet"], cwd=workdir,
                           capture_output=True, text=True)  # a new process reads the table in the same order again
    assert again.returncode == 0 and f"reproduced: run {run.info.run_id}, data unchanged" in again.stdout, again.stdout + again.stderr


def threshold_spec(uri: str):
    "The seed's spec, untuned and uncalibrated, choosing the threshold of least cost (a missed positive costs 5 false alarms) out of 3 folds."
    from ml_workflow_training import ThresholdSpec
    spec = holdout_spec(uri)
    return spec.model_copy(update={"threshold": ThresholdSpec(objective="cost", costs={"false_positive": 1, "false_negative": 5}),
                                   "validation": spec.validation.model_copy(update={"strategy": "both", "cv_folds": 3})})


@pytest.fixture(scope="module")
def threshold_by_api(tmp_path_factory):
    "The API's run of `threshold_spec` on the seed's database: its chosen threshold (a dict) and its labels for every row."
    folder = tmp_path_factory.mktemp("threshold_api")
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(folder)
        generate_database("data/ml_workflow.db")
        api = run_training(threshold_spec(f"sqlite:///{folder}/api.db"), verbose=False)
        X, _ = load_data(db="data/ml_workflow.db")
        t = api.threshold["threshold"]
        assert 0 < t < 0.5 and ((api.pipeline.predict_proba(X)[:, 1] >= 0.5) != api.pipeline.predict(X)).any()  # it moves decisions
        mlflow.set_tracking_uri(None)
        return api.threshold, api.pipeline.predict(X)


def seed_view(db: str = "data/ml_workflow.db") -> str:
    "A view of the seed's table whose first column is computed (`feature_0 + 0`: SQLite gives it no type), holding the same values; its name."
    X, y = load_data(db=db)
    columns = ", ".join(["feature_0 + 0 AS feature_0", *X.columns[1:], y.name])
    with sqlite3.connect(db) as con: con.execute(f"CREATE VIEW seed_view AS SELECT {columns} FROM classification_data")
    return "seed_view"


@pytest.mark.parametrize("entry", ["mlwt-train", "mlwt-train --notebook", "mlwt-notebook", "papermill", "mlwt-sweep"])
def test_a_spec_files_threshold_is_the_apis_through_every_entry_point_and_the_registered_model_decides_with_it(workdir, entry, threshold_by_api):
    "Through every entry point, read from a view of the API's table (a computed column typed by its values): the same threshold and labels."
    chosen, labels = threshold_by_api
    uri = f"sqlite:///{workdir}/mlflow.db"
    spec = threshold_spec(uri)
    spec.model_copy(update={"data": spec.data.model_copy(update={"table": seed_view()})}).save(workdir / "holdout.yaml")
    p = train_through(entry, workdir, uri)
    assert p.returncode == 0, p.stdout[-2000:] + p.stderr[-2000:]
    assert warning_lines(p.stdout, p.stderr, notebooks=workdir.glob("data/runs/**/*.ipynb")) == [], p.stdout[-2000:] + p.stderr[-2000:]
    (run,) = trainings(uri)
    m = run.data.metrics
    assert m["decision_threshold"] == chosen["threshold"] and m["threshold_cost_per_row"] == pytest.approx(-chosen["value"], rel=1e-12)
    assert m["threshold_cost_per_row"] < m["threshold_cost_per_row_at_0_5"] and "threshold_test_cost_per_row" in m
    served = load_model("models:/gradient_boost_v1@staging", tracking_uri=uri)
    X, _ = load_data(db="data/ml_workflow.db")
    np.testing.assert_array_equal(served.predict(X), labels)  # the registered model labels with the threshold


@pytest.mark.parametrize("entry", ["api", "mlwt-train", "mlwt-train --notebook", "mlwt-notebook", "papermill", "mlwt-sweep"])
def test_a_class_too_rare_for_the_holdout_is_said_through_every_entry_point_and_records_nothing(workdir, entry):
    X, y = load_data(db="data/ml_workflow.db")
    rare = pd.concat([X, y], axis=1)
    rare.loc[rare.index[0], "target"] = 7  # one row of a third class: no stratified split keeps it on both sides
    with sqlite3.connect("data/ml_workflow.db") as con: rare.to_sql("rare", con, index=False)
    uri = f"sqlite:///{workdir}/mlflow.db"
    spec = holdout_spec(uri)
    spec = spec.model_copy(update={"data": spec.data.model_copy(update={"table": "rare"})})
    said = "class(es) [7] have a single row"
    if entry == "api":
        with pytest.raises(InputError, match=re.escape(said)): run_training(spec, verbose=False)
    else:
        spec.save(workdir / "holdout.yaml")
        p = train_through(entry, workdir, uri)
        assert p.returncode != 0 and said in p.stdout + p.stderr, p.stdout[-2000:] + p.stderr[-2000:]
        if entry != "papermill": assert "Traceback" not in (p.stdout if entry == "mlwt-sweep" else p.stderr)
    assert trainings(uri) == []  # said before the run opened: nothing to sweep, nothing registered


def unlabeled_table() -> None:
    "Table `unlabeled`: the seed's, its newest 50 rows without a label (their outcome not known yet)."
    with sqlite3.connect("data/ml_workflow.db") as con:
        con.execute("CREATE TABLE unlabeled AS SELECT * FROM classification_data")
        con.execute("UPDATE unlabeled SET target = NULL WHERE rowid > 950")


@pytest.mark.parametrize("policy", ["refuse", "drop"])
@pytest.mark.parametrize("entry", ["python", "mlwt-train", "mlwt-train --notebook", "mlwt-notebook", "papermill", "mlwt-sweep"])
def test_rows_with_no_label_are_refused_or_left_out_as_the_spec_says_through_every_entry_point(workdir, entry, policy):
    "Refused: one message naming the remedy, nothing recorded. Dropped (by the spec, or the notebook parameter): train_test_split's run on the labeled rows, the count logged."
    unlabeled_table()
    uri = f"sqlite:///{workdir}/mlflow.db"
    spec = holdout_spec(uri)
    by_parameter = policy == "drop" and entry in ("mlwt-notebook", "papermill", "mlwt-sweep")  # the parameter overrides a spec that refuses
    data = {"table": "unlabeled", **({"missing_labels": "drop"} if policy == "drop" and not by_parameter else {})}
    spec = spec.model_copy(update={"data": spec.data.model_copy(update=data)})
    spec.save(workdir / "holdout.yaml")
    p = train_through(entry, workdir, uri, {"missing_labels": "drop"} if by_parameter else None)
    out = p.stdout + p.stderr
    if policy == "refuse":
        said = "the target 'target' has 50 missing labels (NaN): set data.missing_labels: drop to train on the labeled rows, or fill them"
        assert p.returncode != 0 and said in out, out[-3000:]
        if entry == "python": assert "ml_workflow_training.core.InputError: " + said in p.stderr, p.stderr[-3000:]  # the API raises it
        elif entry != "papermill": assert "Traceback" not in (p.stdout if entry == "mlwt-sweep" else p.stderr), out[-3000:]
        assert trainings(uri) == []  # said before the run opened
        return
    assert p.returncode == 0, out[-3000:]
    X, y = load_data("unlabeled", db="data/ml_workflow.db")
    labeled = y.notna()
    X_train, X_test, y_train, y_test = train_test_split(X[labeled], y[labeled].astype(np.int64), test_size=0.25, random_state=42,
                                                        stratify=y[labeled])
    plain = build_pipeline(spec.features, spec.model).fit(X_train, y_train)  # scikit-learn alone, on the labeled rows
    expected = compute_metrics(y_test, plain.predict_proba(X_test), plain.classes_, ["roc_auc", "log_loss"])
    (run,) = trainings(uri)
    assert run.info.status == "FINISHED" and run.data.tags["registered"] == "true"
    assert run.data.tags["dataset.training.unlabeled_rows_left_out"] == "50" and run.data.params["data.missing_labels"] == "drop"
    assert run.data.params["dataset.training.n_rows"] == str(len(y_train))
    assert {k: run.data.metrics[f"test_{k}"] for k in expected} == pytest.approx(expected, rel=1e-12)
    served = load_model("models:/gradient_boost_v1@staging", tracking_uri=uri)
    np.testing.assert_array_equal(served.predict(X_test), plain.predict(X_test))  # labels as the table's whole numbers
    again = subprocess.run([str(BIN / "mlwt-reproduce"), run.info.run_id, "--tracking-uri", uri, "--quiet"], cwd=workdir,
                           capture_output=True, text=True)  # the logged spec leaves the same rows out again
    assert again.returncode == 0 and f"reproduced: run {run.info.run_id}, data unchanged" in again.stdout, again.stdout + again.stderr


def customers_table() -> pd.DataFrame:
    "Table `customers` in data/ml_workflow.db: 3,000 rows whose `zip` holds 1,319 codes (many seen once), as a real customer table has."
    rng = np.random.default_rng(0)
    n = 3000
    frame = pd.DataFrame({"age": rng.integers(18, 80, n), "spend": rng.gamma(2.0, 50.0, n),
                          "zip": rng.integers(10000, 11552, n).astype(str), "plan": rng.choice(["basic", "plus", "pro"], n)})
    frame["churn"] = ((frame["spend"] < 80) ^ (rng.random(n) < 0.2)).astype(int)
    with sqlite3.connect("data/ml_workflow.db") as con: frame.to_sql("customers", con, index=False)
    return frame


@pytest.mark.parametrize("entry", ["python", "mlwt-train", "mlwt-train --notebook", "mlwt-notebook", "papermill", "mlwt-sweep"])
def test_the_default_spec_of_a_table_with_thousands_of_categories_trains_registers_and_serves_through_every_entry_point(workdir, entry):
    "The blend's trees take categories natively, at most 255 (HistGradientBoosting refused the 1,319 zip codes at refit): the rest pool into one."
    frame = customers_table()
    uri = f"sqlite:///{workdir}/mlflow.db"
    wrote = subprocess.run([str(BIN / "mlwt-train"), "--write-default", "customers.yaml", "--db", "data/ml_workflow.db", "--table", "customers",
                            "--target", "churn"], cwd=workdir, capture_output=True, text=True)
    assert wrote.returncode == 0, wrote.stderr
    spec = TrainingSpec.load(workdir / "customers.yaml")
    assert spec.model.model_type == "blend" and "zip" in next(g for g in spec.features.groups if g.kind == "categorical").columns
    spec = spec.model_copy(update={"validation": spec.validation.model_copy(update={"strategy": "holdout", "test_size": 0.25, "n_jobs": 1}),
                                   "mlflow": spec.mlflow.model_copy(update={"tracking_uri": uri})})
    spec.save(workdir / "holdout.yaml")
    p = train_through(entry, workdir, uri)
    assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-3000:]
    X, y = load_data("customers", db="data/ml_workflow.db", target="churn")
    X_train, X_test, y_train, y_test = train_test_split(X, y, test_size=0.25, random_state=spec.validation.random_state, stratify=y)
    plain = build_pipeline(spec.features, spec.model).fit(X_train, y_train)  # scikit-learn alone on the same rows
    expected = compute_metrics(y_test, plain.predict_proba(X_test), plain.classes_, ["roc_auc", "log_loss"])
    (run,) = trainings(uri, spec.mlflow.experiment_name)
    assert run.info.status == "FINISHED" and run.data.tags["registered"] == "true"
    assert {k: run.data.metrics[f"test_{k}"] for k in expected} == pytest.approx(expected, rel=1e-12)
    served = load_model(f"models:/{spec.model.name}@staging", tracking_uri=uri)
    assert len(served[0].column_transformer_.named_transformers_["categorical_1"].categories_["zip"]) == 255
    unseen = X_test.head(3).assign(zip=["99999", None, frame["zip"].value_counts().index[-1]])  # a new code, none, one seen once
    np.testing.assert_allclose(served.predict_proba(unseen), plain.predict_proba(unseen), rtol=1e-12)



@pytest.mark.parametrize("entry", ["python", "mlwt-train", "mlwt-train --notebook", "mlwt-notebook", "papermill", "mlwt-sweep"])
def test_hist_gradient_boosting_searched_over_max_bins_takes_a_column_with_more_categories_through_every_entry_point(workdir, entry):
    "HistGradientBoosting refuses a categorical column with more categories than its max_bins: native columns keep at most the smallest max_bins the search tries."
    customers_table()
    uri = f"sqlite:///{workdir}/mlflow.db"
    wrote = subprocess.run([str(BIN / "mlwt-train"), "--write-default", "customers.yaml", "--db", "data/ml_workflow.db", "--table", "customers",
                            "--target", "churn"], cwd=workdir, capture_output=True, text=True)
    assert wrote.returncode == 0, wrote.stderr
    spec = TrainingSpec.load(workdir / "customers.yaml")
    spec = spec.model_copy(update={
        "model": ModelSpec(name="hgb_bins", model_type="hist_gradient_boosting", hyperparameters={"max_bins": 63, "max_iter": 30}),
        "tuning": TuningSpec(param_grid={"classifier__max_bins": [31, 63]}, cv_folds=3, n_jobs=1),
        "validation": spec.validation.model_copy(update={"strategy": "holdout", "test_size": 0.25, "n_jobs": 1}),
        "mlflow": spec.mlflow.model_copy(update={"tracking_uri": uri})})
    spec.save(workdir / "holdout.yaml")
    p = train_through(entry, workdir, uri)
    assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-3000:]
    (run,) = trainings(uri, spec.mlflow.experiment_name)
    assert run.info.status == "FINISHED" and run.data.tags["registered"] == "true"
    served = load_model(f"models:/{spec.model.name}@staging", tracking_uri=uri)
    best = served[-1].max_bins  # the search's choice, refitted
    assert best in (31, 63)
    X, y = load_data("customers", db="data/ml_workflow.db", target="churn")
    X_train, X_test, y_train, y_test = train_test_split(X, y, test_size=0.25, random_state=spec.validation.random_state, stratify=y)
    plain = build_pipeline(spec.features, spec.model, spec.tuning).set_params(classifier__max_bins=best).fit(X_train, y_train)
    kept = [c for name, t in served[0].column_transformer_.named_transformers_.items() if name.startswith("categorical")
            for col, c in t.categories_.items() if col == "zip"]
    assert [len(c) for c in kept] == [31]  # the smallest max_bins searched, whichever won
    np.testing.assert_allclose(served.predict_proba(X_test), plain.predict_proba(X_test), rtol=1e-12)


@pytest.mark.parametrize("entry", ["python", "mlwt-train", "mlwt-train --notebook", "mlwt-notebook", "papermill", "mlwt-sweep"])
def test_tag_values_in_a_spec_file_are_logged_as_written_through_every_entry_point(workdir, entry):
    "`tags: {model_version: 1.10, reviewed: yes, ticket: 0042}` in a spec file tags the run 1.10, yes and 0042, where YAML would read 1.1, True and 34."
    uri = f"sqlite:///{workdir}/mlflow.db"
    d = yaml.safe_load(holdout_spec(uri).to_yaml())
    d["mlflow"]["tags"] = "TAGS"
    (workdir / "holdout.yaml").write_text(yaml.safe_dump(d).replace("TAGS", "{model_version: 1.10, reviewed: yes, ticket: 0042, build: 1e3}"))
    assert "model_version: 1.10," in (workdir / "holdout.yaml").read_text()  # unquoted, as a person writes it
    p = train_through(entry, workdir, uri)
    assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-3000:]
    (run,) = trainings(uri)
    assert {k: run.data.tags.get(k) for k in ("model_version", "reviewed", "ticket", "build")} == \
        {"model_version": "1.10", "reviewed": "yes", "ticket": "0042", "build": "1e3"}

STORES_THAT_CANNOT_BE_USED = {  # what each is, and what the one message about it must say
    "a file that is no database": ("sqlite:///{workdir}/notdb.txt", "cannot be used: DatabaseError: file is not a database"),
    "a server that does not answer": ("http://127.0.0.1:{port}", "cannot reach the MLflow tracking server at http://127.0.0.1:{port}"),
}


@pytest.mark.parametrize("store", list(STORES_THAT_CANNOT_BE_USED))
@pytest.mark.parametrize("entry", ["api", "mlwt-train", "mlwt-train --notebook", "mlwt-notebook", "papermill", "mlwt-sweep"])
def test_a_store_that_cannot_be_used_is_said_before_any_data_is_read_through_every_entry_point(workdir, entry, store):
    "The spec's table does not exist either: the store's message, not the table's, shows it was checked first."
    from conftest import free_port
    (workdir / "notdb.txt").write_text("not a database\n")
    template, said = STORES_THAT_CANNOT_BE_USED[store]
    port = free_port()  # nothing listens on it
    uri, said = template.format(workdir=workdir, port=port), said.format(port=port)
    spec = holdout_spec(uri)
    spec = spec.model_copy(update={"data": spec.data.model_copy(update={"table": "nope"})})
    if entry == "api":
        with pytest.raises(TrackingError, match=re.escape(said)): run_training(spec, verbose=False)
    else:
        spec.save(workdir / "holdout.yaml")
        p = train_through(entry, workdir, uri)
        out = p.stdout + p.stderr
        assert p.returncode != 0 and said in out, out[-3000:]
        assert "unknown table" not in out, out[-3000:]  # the data was never read
        if entry != "papermill": assert "Traceback" not in (p.stdout if entry == "mlwt-sweep" else p.stderr), out[-3000:]
    assert (workdir / "notdb.txt").read_text() == "not a database\n"  # left as it was


def rare_lr_spec(uri: str):
    "A logistic regression tuned by halving on a 15% class with gaps in its numbers (imputed): three defects fixed in 03/05/02 met at once."
    from ml_workflow_training import FeatureSpecBuilder, ModelSpec, TrainingSpec, ValidationSpec
    from ml_workflow_training.specs import DataSpec, TuningSpec
    return TrainingSpec(data=DataSpec(db="data/rare.db"),
                        features=FeatureSpecBuilder().add_numeric_group([f"feature_{i}" for i in range(20)]).build(),
                        model=ModelSpec(name="rare_lr", model_type="logistic_regression"),
                        tuning=TuningSpec(strategy="halving_random", param_grid={"classifier__C": [0.01, 0.1, 1.0, 10.0]}, cv_folds=3,
                                          factor=2, scoring="balanced_accuracy"),
                        validation=ValidationSpec(cv_folds=3, primary_metric="balanced_accuracy", n_jobs=1),
                        mlflow=holdout_spec(uri).mlflow)


def rare_gappy_database() -> None:
    from ml_workflow_training import generate_database
    generate_database("data/rare.db", n_samples=700, class_balance=[0.85, 0.15], missing_rate=0.03)


def one_gap_row() -> pd.DataFrame:
    "A single request row with two values missing: each of its columns wholly missing, as a served model meets it."
    X, _ = load_data(db="data/rare.db")
    return X.iloc[[5]].assign(feature_0=np.nan, feature_7=np.nan)


@pytest.fixture(scope="module")
def rare_lr_by_api(tmp_path_factory):
    "The API's run of `rare_lr_spec`: its cross-validated score and its probabilities for `one_gap_row`."
    folder = tmp_path_factory.mktemp("rare_api")
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(folder)
        rare_gappy_database()
        api = run_training(rare_lr_spec(f"sqlite:///{folder}/api.db"), verbose=False)
        assert api.registered and api.tuning_summary["n_candidates"] >= 2
        mlflow.set_tracking_uri(None)
        return api.cv_score, api.pipeline.predict_proba(one_gap_row())


@pytest.mark.parametrize("entry", ["python", "mlwt-train", "mlwt-train --notebook", "mlwt-notebook", "papermill", "mlwt-sweep"])
def test_a_halved_logistic_regression_on_a_rare_class_registers_and_scores_a_gappy_row_through_every_entry_point(workdir, entry, rare_lr_by_api):
    "Each of the three failed before its fix (refit of a logistic regression; a first halving round without the rare class; a one-row request with gaps)."
    cv_score, proba = rare_lr_by_api
    rare_gappy_database()
    uri = f"sqlite:///{workdir}/mlflow.db"
    rare_lr_spec(uri).save(workdir / "holdout.yaml")
    p = train_through(entry, workdir, uri)
    assert p.returncode == 0, p.stdout[-2000:] + p.stderr[-2000:]
    (run,) = trainings(uri)
    assert run.info.status == "FINISHED" and run.data.tags["registered"] == "true"
    assert run.data.params["tuning.strategy"] == "halving_random" and run.data.metrics["cv_balanced_accuracy_mean"] == pytest.approx(cv_score, rel=1e-12)
    served = load_model("models:/rare_lr@staging", tracking_uri=uri)
    np.testing.assert_allclose(served.predict_proba(one_gap_row()), proba, rtol=0, atol=1e-12)


SPECS_REFUSED = {  # spec, then what the one message must say: both are said before a run opens, from every entry point
    "gaps handed to a model that refuses them": "features.groups[0].imputer_strategy: column 'feature_",
    "one calibrated model on a time series": "calibration.ensemble: False",
    "grid values each valid but refused together": "the search would fit classifier__l1_ratio=1.0, classifier__solver='lbfgs', which "
                                                   "LogisticRegression refuses together: Solver lbfgs supports only 'l2' or None penalties",
}


def write_refused_spec(case: str, workdir, uri: str) -> None:
    "holdout.yaml holding the case's spec (the second one cannot be built, so it is written as a file would be)."
    spec = holdout_spec(uri)
    if case == "gaps handed to a model that refuses them":
        rare_gappy_database()
        from ml_workflow_training import FeatureSpecBuilder
        spec.model_copy(update={"data": spec.data.model_copy(update={"db": "data/rare.db"}),
                                "features": FeatureSpecBuilder().add_numeric_group([f"feature_{i}" for i in range(20)], imputer_strategy=None).build()}
                        ).save(workdir / "holdout.yaml")
    elif case == "grid values each valid but refused together":
        d = spec.to_dict() | {"model": {"name": "lr", "model_type": "logistic_regression"},
                              "tuning": {"param_grid": {"classifier__l1_ratio": [0.0, 1.0], "classifier__solver": ["saga", "lbfgs"]}, "cv_folds": 3}}
        (workdir / "holdout.yaml").write_text(yaml.safe_dump(d))
    else:
        d = spec.to_dict() | {"calibration": {"method": "sigmoid", "cv_folds": 3, "ensemble": False}}
        d["validation"] |= {"split": "time_series", "shuffle": False, "stratified": False}
        (workdir / "holdout.yaml").write_text(yaml.safe_dump(d))


@pytest.mark.parametrize("case", list(SPECS_REFUSED))
@pytest.mark.parametrize("entry", ["python", "mlwt-train", "mlwt-train --notebook", "mlwt-notebook", "papermill", "mlwt-sweep"])
def test_a_spec_no_fit_could_finish_is_refused_before_any_run_opens_through_every_entry_point(workdir, entry, case):
    "Before their fixes, the first failed at the first fit with scikit-learn's 'Input X contains NaN', the second after every calibration fit, the third at tune."
    uri = f"sqlite:///{workdir}/mlflow.db"
    write_refused_spec(case, workdir, uri)
    p = train_through(entry, workdir, uri)
    out = p.stdout + p.stderr
    assert p.returncode != 0 and SPECS_REFUSED[case] in out, out[-3000:]
    if entry == "mlwt-train": assert p.returncode == 2, (p.returncode, out[-3000:])  # a spec error, not a failed run
    if entry == "mlwt-sweep": assert p.returncode == 1 and "FAILED" in p.stdout, p.stdout  # a sweep's bad set fails alone, in its row
    if entry == "python": assert "ml_workflow_training.core.SpecError: " in p.stderr, p.stderr[-3000:]  # the API raises; python prints it
    elif entry != "papermill": assert "Traceback" not in (p.stdout if entry == "mlwt-sweep" else p.stderr), out[-3000:]
    assert "Input X contains NaN" not in out and trainings(uri) == []
