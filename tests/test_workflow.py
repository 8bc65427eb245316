"""Tracked training end to end, on real MLflow stores: SQLite, a real server, a real model server."""
import json
import os
import re
import tempfile
import time
import urllib.request
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pytest
from sklearn.model_selection import cross_validate

from conftest import BIN, free_port, start_process, stop_process, wait_http
from seed_readme import workflow_example
from ml_workflow_training import (CalibrationSpecBuilder, FeatureSpecBuilder, MLflowSpecBuilder,
                                  ModelSpec, ModelSpecBuilder, TrackingError, TrainingSpec, ValidationSpec, WorkflowError, load_data,
                                  reproduce_run, run_training)
from ml_workflow_training.specs import MODEL_TYPES
from ml_workflow_training.tracking import load_model, log_model, model_input_frame

FEATURES = [f"feature_{i}" for i in range(20)]


def small_spec(uri, experiment="e2e", **registry):
    return TrainingSpec(features=FeatureSpecBuilder().add_numeric_group(FEATURES).build(),
                        model=ModelSpecBuilder().add_classifier("small_gb", hyperparameters={"n_estimators": 20}).build()[0],
                        calibration=CalibrationSpecBuilder().set_cv_strategy(3).build(),
                        mlflow=MLflowSpecBuilder().enable().set_tracking_uri(uri).set_experiment(experiment)
                        .enable_model_registry(**registry).build())


def test_seed_workflow_example_end_to_end(workdir, capsys):
    X, y, results = workflow_example()
    out = capsys.readouterr().out
    acc, std = map(float, re.search(r"CV Accuracy: (0\.\d{3}) ± (0\.\d{3})", out).groups())
    assert acc >= 0.921 and std < 0.05  # the seed's baseline: 92.1% ± 2.2%
    assert "Best params: {'classifier__learning_rate': 0.1, 'classifier__n_estimators': 200}" in out
    run_id = re.search(r"MLflow Run: ([0-9a-f]{32})", out).group(1)
    assert (workdir / "mlflow.db").exists()  # the embedded default store, in the working folder

    client = mlflow.MlflowClient()
    run = client.get_run(run_id)
    assert run.info.status == "FINISHED"
    tags, params, metrics = run.data.tags, run.data.params, run.data.metrics
    assert tags["version"] == "1.0" and tags["team"] == "ml-eng" and tags["spec_hash"] == results["spec_hash"]
    assert tags["registered"] == "true" and tags["dataset.training.content_hash"] == results["data_fingerprint"]["content_hash"]
    assert params["tuning.param_grid.classifier__n_estimators"] == "[50, 100, 200]"
    assert params["calibration.method"] == "sigmoid" and not any(v in ("None", "[]", "{}") for v in params.values())
    assert params["features.0.numeric"].startswith("20 columns: feature_0, feature_1") and not any(k.startswith("versions.") for k in params)
    run = client.get_run(run_id)
    assert "scikit-learn" in run.data.tags["versions"] and run.info.run_name.startswith("gradient_boost_v1-gradient_boosting-")
    assert metrics["cv_accuracy_mean"] == pytest.approx(results["cv_score"])
    assert {"cv_roc_auc_std", "calibration_log_loss_after", "duration_tune_s", "duration_log_s"} <= set(metrics)
    folds = client.get_metric_history(run_id, "cv_accuracy_fold")
    assert [m.step for m in folds] == [0, 1, 2, 3, 4]
    artifacts = {a.path for a in client.list_artifacts(run_id)} | {a.path for a in client.list_artifacts(run_id, "plots")}
    assert {"spec.yaml", "feature_importance.csv", "plots/roc.png", "plots/precision_recall.png", "plots/calibration.png",
            "plots/confusion_matrix.png", "plots/feature_importance.png", "model_card.md", "versions.json"} <= artifacts
    plots = Path(mlflow.artifacts.download_artifacts(run_id=run_id, artifact_path="plots"))
    assert sorted(results.figure_png) == sorted(results["figures"])  # each figure rendered during the run, once
    assert {p.stem: p.read_bytes() for p in plots.iterdir()} == results.figure_png  # and logged as those very bytes
    assert TrainingSpec.from_yaml(mlflow.artifacts.load_text(f"runs:/{run_id}/spec.yaml")).spec_hash() == results["spec_hash"]
    children = client.search_runs([run.info.experiment_id], f"tags.mlflow.parentRunId = '{run_id}'")
    assert len(children) == 6
    assert len(run.inputs.dataset_inputs) == 1

    version = client.get_model_version_by_alias("gradient_boost_v1", "staging")
    assert str(version.version) == results["model_version"] == "1" and version.run_id == run_id
    loaded = mlflow.pyfunc.load_model("models:/gradient_boost_v1@staging")
    np.testing.assert_array_equal(loaded.predict(model_input_frame(X))["label"], results["pipeline"].predict(X))
    flavor = mlflow.models.get_model_info("models:/gradient_boost_v1@staging").flavors["sklearn"]
    assert flavor["serialization_format"] == "skops" and "sklearn.tree._tree.Tree" in flavor["skops_trusted_types"]


def test_same_spec_and_data_give_same_metrics_and_reproduce(workdir):
    spec = small_spec("sqlite:///mlflow.db")
    first, second = run_training(spec, verbose=False), run_training(spec, verbose=False)
    scores = lambda r: {k: v for k, v in r["cv_metrics"].items() if k != "fit_time"}
    assert scores(first) == scores(second) and len(scores(first)) == 10
    report = reproduce_run(first["mlflow_run_id"], verbose=False)
    assert report["match"] and report["same_data"] and len(report["metrics"]) >= 10
    from ml_workflow_training import generate_database
    generate_database("data/ml_workflow.db", seed=7)  # the data changed under the run
    changed = reproduce_run(first["mlflow_run_id"], verbose=False)
    assert changed["same_data"] is False and not changed["match"]
    import subprocess
    cli = subprocess.run([str(BIN / "mlwt-reproduce"), first["mlflow_run_id"], "--quiet"], cwd=workdir, capture_output=True, text=True)
    assert cli.returncode == 1 and f"NOT reproduced: run {first['mlflow_run_id']}, data CHANGED" in cli.stdout


def test_reproduce_without_a_logged_fingerprint_does_not_claim_the_same_data(workdir):
    spec = small_spec("sqlite:///mlflow.db")
    spec = spec.model_copy(update={"mlflow": spec.mlflow.model_copy(update={"log_dataset": False})})
    run_id = run_training(spec, verbose=False)["mlflow_run_id"]
    report = reproduce_run(run_id, verbose=False)
    assert report["same_data"] is None and not report["match"]
    import subprocess
    cli = subprocess.run([str(BIN / "mlwt-reproduce"), run_id, "--quiet"], cwd=workdir, capture_output=True, text=True)
    assert cli.returncode == 1 and "data UNKNOWN (the run logged no data fingerprint)" in cli.stdout


def model_folders_left(temporary, wait: float = 30) -> list[str]:
    "The model folders still in `temporary` once any saving still under way has had `wait` seconds to end."
    deadline = time.monotonic() + wait
    while (left := sorted(p.name for p in temporary.glob("mlwt-model-*"))) and time.monotonic() < deadline: time.sleep(0.2)
    return left


def test_a_finished_run_leaves_no_model_files_behind(workdir, monkeypatch):
    temporary = workdir / "tmp"
    temporary.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(temporary))
    results = run_training(small_spec("sqlite:///mlflow.db"), verbose=False)
    assert results["registered"] and model_folders_left(temporary, wait=0) == []  # removed as the run ends, not later
    mlflow.set_tracking_uri("sqlite:///mlflow.db")
    with mlflow.start_run():  # the module's function, outside a run's recorder
        log_model(results["pipeline"], load_data()[0], model_type="gradient_boosting")
    assert model_folders_left(temporary, wait=0) == []


@pytest.mark.parametrize("where, step", [("describe", "connect"), ("cross-validate", "cross-validate"), ("log_model", "log"),
                                         ("alias", "register"), ("after_register", "register")])
def test_exception_mid_run_marks_failed_and_registers_nothing(workdir, monkeypatch, where, step):
    "A fault anywhere, while the run is opened, before, during or after registration: the run is FAILED with its step, and no version is left registered."
    import ml_workflow_training.tracking as tr
    import ml_workflow_training.workflow as wf
    import matplotlib.pyplot as plt
    def broken(*a, **k): raise RuntimeError("disk on fire")
    held_before = set(plt.get_fignums())
    temporary = workdir / "tmp"
    temporary.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(temporary))  # where the model is saved before it is logged
    if where == "describe": monkeypatch.setattr(tr, "log_dataset", broken)  # in the thread that opens the run, during the fits
    if where == "cross-validate": monkeypatch.setattr(wf, "cross_validate_model", broken)
    if where == "log_model": monkeypatch.setattr(tr, "log_model", broken)
    if where == "alias": monkeypatch.setattr(mlflow.MlflowClient, "set_registered_model_alias", broken)
    if where == "after_register": monkeypatch.setattr(tr.RunRecorder, "log_durations", broken)
    with pytest.raises(WorkflowError, match=f"training failed during step '{step}': RuntimeError: disk on fire"):
        run_training(small_spec("sqlite:///mlflow.db"), verbose=False)
    client = mlflow.MlflowClient(f"sqlite:///{workdir}/mlflow.db")
    (run,) = client.search_runs([client.get_experiment_by_name("e2e").experiment_id])
    assert run.info.status == "FAILED"
    assert run.data.tags["error"] == "RuntimeError: disk on fire" and run.data.tags["failed_step"] == step
    assert "disk on fire" in mlflow.artifacts.load_text(f"runs:/{run.info.run_id}/error.txt")
    assert client.search_model_versions("name = 'small_gb'") == []
    assert model_folders_left(temporary) == []  # the model saved for the log is not left behind
    assert set(plt.get_fignums()) == held_before  # nor a figure held open by pyplot
    if where != "describe":  # what the run was is logged as it opens, before any fit: a failed run still says it
        spec = TrainingSpec.from_yaml(mlflow.artifacts.load_text(f"runs:/{run.info.run_id}/spec.yaml"))
        assert spec.spec_hash() == run.data.tags["spec_hash"] == small_spec("sqlite:///mlflow.db").spec_hash()
        assert run.data.params["model.model_type"] == "gradient_boosting" and run.data.params["dataset.training.n_rows"] == "1000"
        assert len(run.data.tags["dataset.training.content_hash"]) == 64 and run.inputs.dataset_inputs
    if where == "cross-validate":  # a failed run has a spec but no results: said before anything is retrained
        with pytest.raises(WorkflowError, match="failed during step 'cross-validate' .RuntimeError: disk on fire.: it has no results to reproduce"):
            reproduce_run(run.info.run_id, f"sqlite:///{workdir}/mlflow.db", verbose=False)
        import subprocess
        cli = subprocess.run([str(BIN / "mlwt-reproduce"), run.info.run_id, "--quiet"], cwd=workdir, capture_output=True, text=True)
        assert cli.returncode == 1 and "it has no results to reproduce" in cli.stderr and "Traceback" not in cli.stderr, cli.stderr[-2000:]


def test_failing_gate_registers_nothing_and_says_why(workdir):
    spec = small_spec("sqlite:///mlflow.db")
    spec = spec.model_copy(update={"mlflow": MLflowSpecBuilder().enable().set_tracking_uri("sqlite:///mlflow.db")
                                   .set_experiment("e2e").enable_model_registry(alias="champion")
                                   .set_registration_gate("roc_auc", 0.9999).build()})
    results = run_training(spec, verbose=False)
    assert results["registered"] is False and results["model_version"] is None
    assert re.fullmatch(r"roc_auc = 0\.\d{4} >= 0\.9999: failed", results["registration"])
    client = mlflow.MlflowClient()
    run = client.get_run(results["mlflow_run_id"])
    assert run.info.status == "FINISHED" and run.data.tags["registration"] == results["registration"]
    assert client.search_model_versions("name = 'small_gb'") == []
    passing = spec.model_copy(update={"mlflow": spec.mlflow.model_copy(update={"registry": spec.mlflow.registry.model_copy(
        update={"gate_threshold": 0.9})})})
    assert run_training(passing, verbose=False)["model_version"] == "1"
    assert str(client.get_model_version_by_alias("small_gb", "champion").version) == "1"


def test_mlflow_disabled_does_no_mlflow_io(workdir):
    spec = small_spec("sqlite:///mlflow.db")
    spec = spec.model_copy(update={"mlflow": spec.mlflow.model_copy(update={"enabled": False})})
    results = run_training(spec, verbose=False)
    assert results["mlflow_run_id"] is None and results["cv_score"] > 0.85
    assert not (workdir / "mlflow.db").exists() and not (workdir / "mlruns").exists()


def test_unreachable_server_fails_fast_before_training(workdir, monkeypatch):
    import ml_workflow_training.workflow as wf
    monkeypatch.setattr(wf, "load_data", lambda *a, **k: pytest.fail("data was loaded before the server was checked"))
    port = free_port()
    with pytest.raises(TrackingError, match=f"cannot reach the MLflow tracking server at http://127.0.0.1:{port}"):
        run_training(small_spec(f"http://127.0.0.1:{port}"), verbose=False)  # the patched loader proves nothing ran before


def test_remote_tracking_server(workdir, mlflow_server):
    results = run_training(small_spec(mlflow_server, experiment="remote"), verbose=False)
    client = mlflow.MlflowClient(mlflow_server)
    run = client.get_run(results["mlflow_run_id"])
    assert run.info.status == "FINISHED" and run.data.metrics["cv_accuracy_mean"] == pytest.approx(results["cv_score"])
    assert "plots/roc.png" in {a.path for a in client.list_artifacts(run.info.run_id, "plots")}
    mlflow.set_tracking_uri(mlflow_server)
    X, _ = load_data()
    loaded = mlflow.pyfunc.load_model("models:/small_gb@staging")  # the served face: labels and probabilities
    np.testing.assert_array_equal(loaded.predict(model_input_frame(X))["label"], results["pipeline"].predict(X))
    checked = load_model("models:/small_gb@staging", tracking_uri=mlflow_server)  # the project's loader, over HTTP
    np.testing.assert_allclose(checked.predict_proba(X), results["pipeline"].predict_proba(X))
    # the registry asked is the server's, not the process's current one (here a local store that has no such model)
    mlflow.set_tracking_uri(f"sqlite:///{workdir / 'elsewhere.db'}")
    latest = load_model("models:/small_gb/latest", tracking_uri=mlflow_server)
    np.testing.assert_allclose(latest.predict_proba(X), results["pipeline"].predict_proba(X))
    with pytest.raises(TrackingError, match="MLflow 3 deprecates stages.*models:/small_gb@<alias>"):
        load_model("models:/small_gb/Production", tracking_uri=mlflow_server)


def served_predictions(workdir, model_uri: str, sample, *more) -> pd.DataFrame | list[pd.DataFrame]:
    "Predictions of `model_uri` from a real `mlflow models serve` over HTTP: a label and a probability per class, each row; one request per sample."
    port = free_port()
    proc = start_process([str(BIN / "mlflow"), "models", "serve", "-m", model_uri, "--env-manager", "local",
                          "--host", "127.0.0.1", "--port", str(port)], workdir / "serve.log",
                         env={"MLFLOW_TRACKING_URI": f"sqlite:///{workdir}/mlflow.db", "PATH": f"{BIN}:/usr/bin:/bin"})
    try:
        wait_http(f"http://127.0.0.1:{port}/ping", proc, timeout=120)
        answers = []
        for one in (sample, *more):
            frame = model_input_frame(one)  # exact floats (pandas' to_json keeps 10 digits: enough to move a row across a tree's split)
            rows = frame.astype(object).where(frame.notna(), None).to_numpy().tolist()  # a missing value travels as JSON null
            body = json.dumps({"dataframe_split": {"columns": list(frame.columns), "data": rows}}).encode()
            req = urllib.request.Request(f"http://127.0.0.1:{port}/invocations", data=body, headers={"Content-Type": "application/json"})
            try:
                with urllib.request.urlopen(req, timeout=60) as r: answers.append(pd.DataFrame(json.loads(r.read())["predictions"]))
            except urllib.error.HTTPError as e:
                raise AssertionError(f"the server refused a request of {len(frame)} row(s): {e.read().decode()[:2000]}") from None
        return answers[0] if not more else answers
    finally:
        stop_process(proc)


def test_registered_model_served_over_http(workdir):
    results = run_training(small_spec("sqlite:///mlflow.db"), verbose=False)
    X, _ = load_data()
    one = X.iloc[[7]].copy()
    one.loc[:, ["feature_0", "feature_3"]] = np.nan  # the usual single request with gaps: each of its columns wholly missing
    served, served_one = served_predictions(workdir, "models:/small_gb@staging", X.head(50), one)
    np.testing.assert_allclose(served_one[["proba_0", "proba_1"]].to_numpy(), results.pipeline.predict_proba(one), rtol=0, atol=1e-12)
    assert served_one["label"].tolist() == results.pipeline.predict(one).tolist()
    assert list(served.columns) == ["label", "proba_0", "proba_1"]
    np.testing.assert_array_equal(served["label"], results["pipeline"].predict(X.head(50)))
    np.testing.assert_allclose(served[["proba_0", "proba_1"]].to_numpy(), results["pipeline"].predict_proba(X.head(50)), rtol=0, atol=1e-12)
    signature = mlflow.models.get_model_info("models:/small_gb@staging").signature  # the documented output schema
    assert [c.name for c in signature.outputs.inputs] == ["label", "proba_0", "proba_1"]


def test_multiclass_blend_with_string_labels_served_over_http(workdir):
    "A 3-class table with text labels and a categorical column, the default spec for a table, through a real server."
    from ml_workflow_training import DataSpec, generate_database
    from ml_workflow_training.builders import spec_for_table
    generate_database("data/multi.db", n_classes=3, n_samples=500, n_informative=6, n_categorical=1, missing_rate=0.02)
    X, y = load_data(db="data/multi.db")
    labels = pd.Series(np.array(["ant", "bee", "cat"])[y.to_numpy()], name="target")
    spec = spec_for_table(X, DataSpec(db="data/multi.db"))
    results = run_training(spec.model_copy(update={"mlflow": spec.mlflow.model_copy(update={"tracking_uri": "sqlite:///mlflow.db"})}),
                           X=X, y=labels, verbose=False)
    assert results.registered and set(results.pipeline.classes_) == {"ant", "bee", "cat"}
    one = X.iloc[[3]].copy()
    one.loc[:, ["feature_0", "category_0"]] = np.nan  # one request row missing a number and a category
    served, served_one = served_predictions(workdir, f"models:/{spec.model.name}@staging", X.head(60), one)
    assert served_one["label"].tolist() == results.pipeline.predict(one).tolist()
    np.testing.assert_allclose(served_one[["proba_ant", "proba_bee", "proba_cat"]].to_numpy(), results.pipeline.predict_proba(one), rtol=0, atol=1e-12)
    np.testing.assert_array_equal(served["label"], results.pipeline.predict(X.head(60)))
    assert set(served["label"]) <= {"ant", "bee", "cat"} and list(served.columns) == ["label", "proba_ant", "proba_bee", "proba_cat"]
    np.testing.assert_allclose(served[["proba_ant", "proba_bee", "proba_cat"]].to_numpy(), results.pipeline.predict_proba(X.head(60)), rtol=0, atol=1e-12)


@pytest.mark.parametrize("model_type, calibration", [
    ("hist_gradient_boosting", CalibrationSpecBuilder().set_method("isotonic").set_cv_strategy(3).build()),
    ("random_forest", CalibrationSpecBuilder().set_cv_strategy(0.3).build()),
    ("extra_trees", None), ("logistic_regression", CalibrationSpecBuilder().set_cv_strategy(3).set_ensemble(False).build()),
    ("lightgbm", CalibrationSpecBuilder().set_cv_strategy(3).build()),
    ("xgboost", CalibrationSpecBuilder().set_cv_strategy(3).build()),
])
def test_every_model_type_saves_with_skops_and_reloads(tmp_path, model_type, calibration):
    if model_type in ("lightgbm", "xgboost"): pytest.importorskip(model_type, reason=f'needs the {model_type} extra')
    from ml_workflow_training import ClassifierCalibration, ModelSpec, build_pipeline, generate_database
    from ml_workflow_training.tracking import log_model
    generate_database(tmp_path / "d.db", n_samples=600, n_categorical=2, missing_rate=0.03, n_classes=3)
    X, y = load_data(db=tmp_path / "d.db")
    features = FeatureSpecBuilder().add_numeric_group(FEATURES).add_categorical_group(["category_0", "category_1"]).build()
    model = build_pipeline(features, ModelSpec(model_type=model_type)).fit(X, y)
    if calibration: model = ClassifierCalibration(calibration).fit(model, X, y).get_calibrated_model()
    mlflow.set_tracking_uri(f"sqlite:///{tmp_path}/mlflow.db")
    with mlflow.start_run():
        info = log_model(model, X)
    flavor = mlflow.models.get_model_info(info.model_uri).flavors["sklearn"]
    assert flavor["serialization_format"] == "skops"
    served = mlflow.pyfunc.load_model(info.model_uri).predict(model_input_frame(X))
    np.testing.assert_array_equal(served["label"], model.predict(X))
    np.testing.assert_allclose(served[[f"proba_{c}" for c in model.classes_]].to_numpy(), model.predict_proba(X), rtol=0, atol=1e-12)
    mlflow.set_tracking_uri(None)


@pytest.mark.parametrize("model_type", list(MODEL_TYPES))
def test_every_model_type_trains_registers_and_loads_by_alias_through_run_training(workdir, model_type):
    "Each model type a spec allows, from the table to a registered model loaded back (a logistic regression's per-class n_iter_ once failed the refit)."
    if model_type in ("lightgbm", "xgboost"): pytest.importorskip(model_type, reason=f'needs the {model_type} extra')
    import matplotlib.pyplot as plt
    held_before = set(plt.get_fignums())
    spec = TrainingSpec(features=FeatureSpecBuilder().add_numeric_group(FEATURES).build(),
                        model=ModelSpec(name=f"every_{model_type}", model_type=model_type),
                        validation=ValidationSpec(strategy="holdout", test_size=0.25),
                        mlflow=MLflowSpecBuilder().enable().set_tracking_uri("sqlite:///mlflow.db").set_experiment("types")
                        .enable_model_registry().build())
    results = run_training(spec, verbose=False)
    assert results.registered and results.test_metrics["accuracy"] > 0.75
    boosted = model_type in ("gradient_boosting", "hist_gradient_boosting", "lightgbm", "xgboost")
    assert (results.iterations_used is not None) == boosted  # only boosting counts iterations
    X = load_data()[0].head(100)
    loaded = load_model(f"models:/every_{model_type}@staging", tracking_uri="sqlite:///mlflow.db")
    np.testing.assert_allclose(loaded.predict_proba(X), results.pipeline.predict_proba(X), rtol=0, atol=1e-12)
    one_gap = X.head(1).assign(feature_3=np.nan)  # one row to score with one value missing, as a request to a served model
    np.testing.assert_allclose(loaded.predict_proba(one_gap), results.pipeline.predict_proba(one_gap), rtol=0, atol=1e-12)
    mlflow.set_tracking_uri(f"sqlite:///{workdir}/mlflow.db")  # absolute: MLflow keeps a store per URI text
    served = mlflow.pyfunc.load_model(f"models:/every_{model_type}@staging").predict(model_input_frame(one_gap))
    np.testing.assert_array_equal(served["label"], results.pipeline.predict(one_gap))
    assert set(plt.get_fignums()) == held_before  # the run's figures are its own: pyplot holds none open


@pytest.mark.parametrize("model_type", ["gradient_boosting", "hist_gradient_boosting", "lightgbm", "xgboost"])
def test_a_halving_search_over_a_model_that_stops_early_trains_and_registers(workdir, model_type):
    "scikit-learn's halving starts on 2 x folds x classes rows, too few for early stopping to hold out a row of each class."
    if model_type in ("lightgbm", "xgboost"): pytest.importorskip(model_type, reason=f'needs the {model_type} extra')
    from ml_workflow_training.specs import EarlyStoppingSpec, TuningSpec
    size = "max_iter" if model_type == "hist_gradient_boosting" else "n_estimators"
    spec = TrainingSpec(features=FeatureSpecBuilder().add_numeric_group(FEATURES).build(),
                        model=ModelSpec(name=f"raced_{model_type}", model_type=model_type, hyperparameters={size: 30},
                                        early_stopping=EarlyStoppingSpec(patience=3)),
                        tuning=TuningSpec(strategy="halving_random", param_grid={"classifier__max_depth": [2, 3, 4, 5]}, cv_folds=3, factor=2),
                        validation=ValidationSpec(cv_folds=3),
                        mlflow=MLflowSpecBuilder().enable().set_tracking_uri("sqlite:///mlflow.db").set_experiment("raced")
                        .enable_model_registry().build())
    results = run_training(spec, verbose=False)
    assert results.registered and results.cv_score > 0.75
    assert results.tuning_summary["n_candidates"] >= 2, results.tuning_summary


def test_a_halving_search_on_a_rare_class_keeps_it_in_every_first_round_fold(workdir):
    "scikit-learn's first halving round (12 rows here) holds one or two rows of a 15% class: a training fold without it failed the logistic regression."
    from ml_workflow_training import generate_database
    from ml_workflow_training.specs import DataSpec, TuningSpec
    generate_database("data/rare.db", n_samples=700, class_balance=[0.85, 0.15])
    spec = TrainingSpec(data=DataSpec(db="data/rare.db"), features=FeatureSpecBuilder().add_numeric_group(FEATURES).build(),
                        model=ModelSpec(name="rare_lr", model_type="logistic_regression"),
                        tuning=TuningSpec(strategy="halving_random", param_grid={"classifier__C": [0.01, 0.1, 1.0, 10.0]}, cv_folds=3,
                                          factor=2, scoring="balanced_accuracy"),
                        validation=ValidationSpec(cv_folds=3, primary_metric="balanced_accuracy"), mlflow={"enabled": False})
    results = run_training(spec, verbose=False)
    assert results.cv_score > 0.6 and results.tuning_summary["n_candidates"] >= 2


@pytest.mark.parametrize("model_type, split, balance", [("blend", "kfold", [0.7, 0.2, 0.1]), ("random_forest", "time_series", None)])
def test_a_halving_search_scores_log_loss_on_three_classes_whatever_its_samples_hold(workdir, model_type, split, balance):
    "Each halving round samples every fold's rows at random: a fold's model may miss a class that its test rows hold (log loss refused it)."
    from ml_workflow_training import generate_database
    from ml_workflow_training.specs import DataSpec, TuningSpec
    generate_database("data/three.db", n_samples=700, n_classes=3, class_balance=balance, n_categorical=2)
    in_order = split == "time_series"
    grid = {"classifier__weights": [[1, 1], [1, 2], [2, 1]]} if model_type == "blend" else {"classifier__max_depth": [2, 4, 8]}
    spec = TrainingSpec(data=DataSpec(db="data/three.db"),
                        features=FeatureSpecBuilder().add_numeric_group(FEATURES).add_categorical_group(["category_0", "category_1"]).build(),
                        model=ModelSpec(model_type=model_type, hyperparameters={} if model_type == "blend" else {"n_estimators": 20}),
                        tuning=TuningSpec(strategy="halving_random", param_grid=grid, cv_folds=3, factor=2, scoring="log_loss"),
                        validation=ValidationSpec(cv_folds=3, split=split, shuffle=not in_order, stratified=not in_order, primary_metric="log_loss"),
                        mlflow={"enabled": False})
    results = run_training(spec, verbose=False)
    assert 0 < results.tuning_summary["best_score"] < 1.1 and results.cv_score < 1.1


def test_workflow_without_tracking_never_imports_mlflow(workdir):
    "With MLflow disabled the orchestration runs on its own: no MLflow module is even imported."
    import subprocess, sys
    code = ("import sys\n"
            "from ml_workflow_training import FeatureSpecBuilder, ModelSpecBuilder, load_data, run_ml_workflow\n"
            "X, y = load_data(db='data/ml_workflow.db')\n"
            "fs = FeatureSpecBuilder().add_numeric_group([f'feature_{i}' for i in range(20)]).build()\n"
            "r = run_ml_workflow(fs, ModelSpecBuilder().add_classifier('m', hyperparameters={'n_estimators': 10}).build()[0], X=X, y=y, verbose=False)\n"
            "assert r.cv_score == r['cv_score'] > 0.8 and r.mlflow_run_id is None and r.registration == 'MLflow disabled'\n"
            "import matplotlib.pyplot as plt; assert plt.get_fignums() == [] and len(r.figures) == 5  # kept on the result, not by pyplot\n"
            "print(sorted(m for m in sys.modules if m == 'mlflow' or m.startswith('mlflow.')))\n")
    out = subprocess.run([sys.executable, "-c", code], cwd=workdir, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip() == "[]"


def test_a_run_in_a_new_process_is_recorded_by_a_process_of_its_own_and_never_imports_mlflow_or_skops(workdir):
    "A script (a console command, a worker) that has not imported MLflow: a process of its own opens, writes, registers and ends the run; the training process imports neither MLflow nor skops."
    import subprocess, sys
    code = ("import sys\n"
            "from ml_workflow_training import FeatureSpecBuilder, MLflowSpecBuilder, ModelSpecBuilder, TrainingSpec, ValidationSpec, run_training\n"
            "spec = TrainingSpec(features=FeatureSpecBuilder().add_numeric_group([f'feature_{i}' for i in range(20)]).build(),\n"
            "    model=ModelSpecBuilder().add_classifier('serial', hyperparameters={'n_estimators': 10}).build()[0],\n"
            "    validation=ValidationSpec(strategy='holdout', n_jobs=1),\n"
            "    mlflow=MLflowSpecBuilder().enable().set_experiment('serial').enable_model_registry().build())\n"
            "r = run_training(spec, verbose=False)\n"
            "print(r.model_version, sorted(m for m in sys.modules if m.split('.')[0] in ('skops', 'mlflow')))\n")
    out = subprocess.run([sys.executable, "-c", code], cwd=workdir, capture_output=True, text=True)  # a new process: nothing imported yet
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.split("\n")[-2] == "1 []", out.stdout
    client = mlflow.MlflowClient(f"sqlite:///{workdir}/mlflow.db")
    (run,) = client.search_runs([client.get_experiment_by_name("serial").experiment_id])
    assert (run.data.tags["model.saved_by"], run.data.tags["mlwt.recorded_by"]) == ("the process recording the run", "a process of its own")
    assert run.data.tags["mlflow.source.name"].endswith("-c") or run.data.tags["mlflow.source.name"] == "", run.data.tags["mlflow.source.name"]
    assert run.inputs.dataset_inputs and run.data.params["dataset.training.n_rows"] == "800"
    served = load_model("models:/serial@staging", tracking_uri=f"sqlite:///{workdir}/mlflow.db")
    X, _ = load_data(db=str(workdir / "data" / "ml_workflow.db"))
    assert served.predict_proba(X.head(50)).shape == (50, 2)


def test_a_run_recorded_apart_that_fails_in_its_fits_is_failed_with_its_step_lineage_and_traceback(workdir):
    "In a new process, a fault in the fits: the process recording the run marks it FAILED with the step, the error, the training process's traceback and the lineage logged as it opened; nothing registered, nothing left behind."
    import subprocess, sys
    small_spec("sqlite:///mlflow.db").save(workdir / "small.yaml")
    (workdir / "tmp").mkdir()
    code = ("import ml_workflow_training.workflow as wf\n"
            "from ml_workflow_training import run_training\n"
            "def broken(*a, **k): raise RuntimeError('disk on fire')\n"
            "wf.cross_validate_model = broken\n"
            "try: run_training('small.yaml', verbose=False)\n"
            "except Exception as e: print(type(e).__name__, e)\n")
    out = subprocess.run([sys.executable, "-c", code], cwd=workdir, capture_output=True, text=True, env={**os.environ, "TMPDIR": str(workdir / "tmp")})
    assert out.returncode == 0 and "training failed during step 'cross-validate': RuntimeError: disk on fire" in out.stdout, out.stdout + out.stderr[-2000:]
    client = mlflow.MlflowClient(f"sqlite:///{workdir}/mlflow.db")
    (run,) = client.search_runs([client.get_experiment_by_name("e2e").experiment_id])
    assert (run.info.status, run.data.tags["failed_step"], run.data.tags["error"], run.data.tags["mlwt.recorded_by"]) == (
        "FAILED", "cross-validate", "RuntimeError: disk on fire", "a process of its own")
    assert "in broken" in mlflow.artifacts.load_text(f"runs:/{run.info.run_id}/error.txt")  # the traceback as the training process had it
    assert run.inputs.dataset_inputs and len(run.data.tags["dataset.training.content_hash"]) == 64
    assert run.data.params["dataset.training.n_rows"] == "1000" and "spec.yaml" in {a.path for a in client.list_artifacts(run.info.run_id)}
    assert client.search_model_versions("name = 'small_gb'") == []
    assert list((workdir / "tmp").iterdir()) == []  # the keeper's folder (and any model in it) is removed with it


def test_two_trainings_started_together_in_threads_of_one_process_each_log_and_register(workdir):
    "A second run's start must not meet MLflow half imported by the first run's opening thread (it raised AttributeError)."
    import subprocess, sys
    code = ("import concurrent.futures\n"
            "from ml_workflow_training import FeatureSpecBuilder, MLflowSpecBuilder, ModelSpecBuilder, TrainingSpec, ValidationSpec, run_training\n"
            "def spec(name): return TrainingSpec(features=FeatureSpecBuilder().add_numeric_group([f'feature_{i}' for i in range(20)]).build(),\n"
            "    model=ModelSpecBuilder().add_classifier(name, hyperparameters={'n_estimators': 10}).build()[0],\n"
            "    validation=ValidationSpec(strategy='holdout'),\n"
            "    mlflow=MLflowSpecBuilder().enable().set_experiment('threads').enable_model_registry().build())\n"
            "with concurrent.futures.ThreadPoolExecutor(2) as pool:\n"
            "    results = list(pool.map(lambda name: run_training(spec(name), verbose=False), ['model_a', 'model_b']))\n"
            "print(sorted((r.model_version, r.registration) for r in results))\n")
    out = subprocess.run([sys.executable, "-c", code], cwd=workdir, capture_output=True, text=True)  # a new process: MLflow not yet imported
    assert out.returncode == 0, out.stderr[-2000:]
    client = mlflow.MlflowClient(f"sqlite:///{workdir}/mlflow.db")
    runs = client.search_runs([client.get_experiment_by_name("threads").experiment_id])
    assert sorted((r.info.status, r.data.tags["registered"]) for r in runs) == [("FINISHED", "true")] * 2
    assert {client.get_model_version_by_alias(name, "staging").run_id for name in ("model_a", "model_b")} == {r.info.run_id for r in runs}


@pytest.mark.parametrize("n_classes", [3, 5])
def test_multiclass_with_the_default_spec_trains_registers_and_serves(workdir, n_classes):
    "The seed's default spec on a 3- and a 5-class table: metrics, figures, registry and the loaded model (issue: multiclass)."
    import subprocess
    import pandas as pd
    from ml_workflow_training import default_training_spec, generate_database
    generate_database("data/multi.db", n_classes=n_classes, n_samples=600, n_informative=6)
    seed = default_training_spec()
    spec = seed.model_copy(update={"tuning": None, "data": seed.data.model_copy(update={"db": "data/multi.db"}),
                                   "model": seed.model.model_copy(update={"name": "multi", "hyperparameters": {"n_estimators": 20}})})
    spec.save(workdir / "multi.yaml")
    out = subprocess.run([str(BIN / "mlwt-train"), "--spec", "multi.yaml", "--quiet"], cwd=workdir, capture_output=True, text=True)
    assert out.returncode == 0 and "registered multi version 1 as @staging" in out.stdout, out.stderr[-2000:]
    X, y = load_data(db="data/multi.db")
    mlflow.set_tracking_uri(f"sqlite:///{workdir}/mlflow.db")
    served = mlflow.pyfunc.load_model("models:/multi@staging").predict(model_input_frame(X))
    local = mlflow.sklearn.load_model("models:/multi@staging")
    np.testing.assert_array_equal(served["label"], local.predict(X))
    assert set(np.unique(served["label"])) <= set(range(n_classes))
    labels = np.array(["ant", "bee", "cat", "dog", "eel"])[: n_classes][y.to_numpy()]  # string labels, through the Python API
    r = run_training(spec.model_copy(update={"mlflow": spec.mlflow.model_copy(update={"enabled": False})}), X=X, y=labels, verbose=False)
    assert set(r.pipeline.classes_) == set(labels) and r.cv_score > 1.5 / n_classes
    assert "average_precision" not in r.cv_metrics and {"roc_auc", "log_loss", "brier"} <= set(r.cv_metrics)
    assert sorted(r.figures) == ["calibration", "confusion_matrix", "feature_importance", "precision_recall", "roc"]
    assert pd.Series(r.pipeline.predict(X)).isin(labels).all()


def test_load_model_checks_probabilities_and_refuses_tampered_artifacts(workdir):
    "The registered model loads by alias with the same probabilities; an extra trusted type or an edited file is refused."
    uri = f"sqlite:///{workdir}/mlflow.db"
    results = run_training(small_spec(uri), verbose=False)
    X, _ = load_data()
    model = load_model("models:/small_gb@staging", tracking_uri=uri)
    np.testing.assert_allclose(model.predict_proba(X), results.pipeline.predict_proba(X))
    (mlmodel,) = workdir.glob("mlruns/*/models/*/artifacts/MLmodel")
    text = mlmodel.read_text()
    mlmodel.write_text(text.replace("    - numpy.dtype\n", "    - numpy.dtype\n    - builtins.exec\n"))
    with pytest.raises(TrackingError, match=r"asks to trust types that were not reviewed: \['builtins.exec'\]"):
        load_model("models:/small_gb@staging", tracking_uri=uri)
    mlmodel.write_text(text)
    skops_file = mlmodel.parent / "model.skops"
    original = skops_file.read_bytes()
    skops_file.write_bytes(original[:-1] + bytes([original[-1] ^ 1]))
    with pytest.raises(TrackingError, match=r"the model file differs from the one logged \(model.sha256 mismatch\)"):
        load_model("models:/small_gb@staging", tracking_uri=uri)
    skops_file.write_bytes(original)
    np.testing.assert_allclose(load_model("models:/small_gb@staging", tracking_uri=uri).predict_proba(X), results.pipeline.predict_proba(X))


@pytest.mark.parametrize("split", ["group", "time_series"])
def test_calibration_folds_follow_the_validation_split(workdir, split):
    "No leakage: a group never straddles a calibrator's fit and calibration rows, and time-series calibration looks only forward."
    from ml_workflow_training import CalibrationSpec, MLflowSpec, ModelSpec, ValidationSpec
    X, y = load_data()
    X = X.assign(block=np.arange(len(X)) // 50)
    v = (ValidationSpec(split="group", group_column="block") if split == "group"
         else ValidationSpec(split="time_series", shuffle=False))
    spec = TrainingSpec(features=FeatureSpecBuilder().add_numeric_group(FEATURES).build(), validation=v,
                        model=ModelSpec(name="folds", hyperparameters={"n_estimators": 10}), calibration=CalibrationSpec(cv_folds=3),
                        mlflow=MLflowSpec(enabled=True, tracking_uri=f"sqlite:///{workdir}/mlflow.db", registry={"enabled": True}))
    r = run_training(spec, X=X, y=y, verbose=False)
    splits = list(r.pipeline.cv.split(X, y))
    assert len(splits) == 3 and len(r.pipeline.calibrated_classifiers_) == 3
    for train, test in splits:
        if split == "group": assert set(X.block.iloc[train]).isdisjoint(X.block.iloc[test])
        else: assert train.max() < test.min()
    loaded = load_model("models:/folds@staging", tracking_uri=f"sqlite:///{workdir}/mlflow.db")  # the splitter is a reviewed type
    np.testing.assert_allclose(loaded.predict_proba(X), r.pipeline.predict_proba(X))


@pytest.mark.parametrize("case, message", [
    ("short_y", "y has 990 labels but X has 1000 rows"),
    ("one_member_unstratified", "hold no example of class 2 (1 in all)"),
    ("infinite", "column 'feature_2' holds 1 infinite value(s) (first at row 3)"),
])
def test_bad_data_is_one_message_naming_the_culprit(workdir, case, message):
    from ml_workflow_training import InputError, ValidationSpec
    X, y = load_data()
    spec = TrainingSpec(features=FeatureSpecBuilder().add_numeric_group(FEATURES).build(),
                        model=ModelSpecBuilder().add_classifier("m", hyperparameters={"n_estimators": 5}).build()[0])
    if case == "short_y": y = y.iloc[10:]
    if case == "one_member_unstratified":
        y = y.copy(); y.iloc[0] = 2
        spec = spec.model_copy(update={"validation": ValidationSpec(stratified=False)})
    if case == "infinite": X = X.copy(); X.iloc[3, 2] = np.inf
    with pytest.raises(InputError) as e:
        run_training(spec, X=X, y=y, verbose=False)
    assert message in str(e.value) and "\n" not in str(e.value)


def test_evaluation_sample_bounds_importance_and_figures_and_is_logged(workdir):
    "Wide data with a model without its own importances: permutation importance runs on the capped sample, logged with the run."
    from ml_workflow_training import ModelSpec, MLflowSpec, ValidationSpec
    rng = np.random.default_rng(0)
    import pandas as pd
    X = pd.DataFrame(rng.normal(size=(400, 120)), columns=[f"c{i}" for i in range(120)])
    y = pd.Series((X["c0"] + X["c1"] > 0).astype(int))
    spec = TrainingSpec(features=FeatureSpecBuilder().add_numeric_group(list(X.columns)).build(),
                        model=ModelSpec(name="wide", model_type="hist_gradient_boosting", hyperparameters={"max_iter": 10}),
                        validation=ValidationSpec(cv_folds=3, evaluation_sample=150),
                        mlflow=MLflowSpec(enabled=True, tracking_uri=f"sqlite:///{workdir}/mlflow.db"))
    r = run_training(spec, X=X, y=y, verbose=False)
    # every column once, on any machine: the plan is counted from the shape (a timed one permuted 30 of 120 on a busy CI)
    assert (r.feature_importance["source"].iloc[0], len(r.feature_importance)) == ("permutation", 120)
    assert set(r.feature_importance["feature"].head(2)) == {"c0", "c1"}  # the sample still finds the signal
    assert mlflow.MlflowClient(f"sqlite:///{workdir}/mlflow.db").get_run(r.mlflow_run_id).data.params["validation.evaluation_sample"] == "150"
    assert len(r.cv["predictions"]["y"]) == 400  # metrics use every row; only importance and figures are sampled


def test_parallel_by_default_and_serial_give_identical_results(workdir):
    "Tuning, calibration and CV on every core (the default) and serially: the same best parameters, metrics and probabilities."
    from ml_workflow_training import GridSearchSpecBuilder
    spec = small_spec("sqlite:///mlflow.db").model_copy(update={
        "tuning": GridSearchSpecBuilder().set_param_grid({"classifier__max_depth": [2, 3], "classifier__learning_rate": [0.05, 0.1]}).set_cv_folds(3).build(),
        "mlflow": MLflowSpecBuilder().enable().set_tracking_uri("sqlite:///mlflow.db").set_experiment("serial").build()})
    assert spec.tuning.n_jobs == spec.validation.n_jobs == -1  # parallel unless the spec says otherwise
    serial_spec = spec.model_copy(update={"tuning": spec.tuning.model_copy(update={"n_jobs": 1}),
                                          "validation": spec.validation.model_copy(update={"n_jobs": 1})})
    X, y = load_data()
    parallel, serial = run_training(spec, X=X, y=y, verbose=False), run_training(serial_spec, X=X, y=y, verbose=False)
    assert parallel.tuning_summary["best_params"] == serial.tuning_summary["best_params"]
    assert {k: v["folds"] for k, v in parallel.cv_metrics.items() if k != "fit_time"} == \
           {k: v["folds"] for k, v in serial.cv_metrics.items() if k != "fit_time"}
    np.testing.assert_array_equal(parallel.pipeline.predict_proba(X), serial.pipeline.predict_proba(X))
    # the serial run's model is written by a process of its own, the parallel run's by a thread: both load as logged
    for r in (parallel, serial): np.testing.assert_array_equal(load_model(r.model_uri).predict_proba(X), serial.pipeline.predict_proba(X))


def test_a_time_budget_cuts_the_search_short_and_the_run_says_how_much(workdir):
    from ml_workflow_training import GridSearchSpecBuilder
    grid = {"classifier__n_estimators": [20, 40, 60], "classifier__max_depth": [1, 2, 3]}
    spec = small_spec(f"sqlite:///{workdir}/mlflow.db", experiment="budget")
    spec = spec.model_copy(update={"calibration": None, "tuning": GridSearchSpecBuilder().set_param_grid(grid).set_cv_folds(3)
                                   .set_n_jobs(2).set_time_budget(0.5).build()})
    results = run_training(spec, verbose=False)
    client = mlflow.MlflowClient(f"sqlite:///{workdir}/mlflow.db")
    run = client.get_run(results["mlflow_run_id"])
    evaluated = run.data.metrics["tuning_candidates"]
    assert run.data.metrics["tuning_candidates_planned"] == 9 and 2 <= evaluated < 9  # whole batches of 2, stopped early
    assert run.data.params["tuning.time_budget_s"] == "0.5" and run.data.metrics["tuning_seconds"] > 0.5
    children = client.search_runs([run.info.experiment_id], f"tags.mlflow.parentRunId = '{run.info.run_id}'")
    assert len(children) == evaluated  # every candidate it evaluated, and no other


def test_a_decision_threshold_is_chosen_out_of_fold_and_the_registered_model_labels_with_it(workdir):
    from ml_workflow_training import SpecError, ThresholdSpec, ValidationSpec, generate_database
    uri = f"sqlite:///{workdir}/mlflow.db"
    costs = {"false_positive": 1.0, "false_negative": 5.0}  # a missed positive costs five false alarms
    spec = small_spec(uri, experiment="threshold").model_copy(update={
        "threshold": ThresholdSpec(objective="cost", costs=costs), "validation": ValidationSpec(strategy="both", cv_folds=3)})
    results = run_training(spec, verbose=False)
    t = results.threshold["threshold"]
    client = mlflow.MlflowClient(uri)
    m = client.get_run(results["mlflow_run_id"]).data.metrics
    assert m["decision_threshold"] == t < 0.5 and m["threshold_cost_per_row"] <= m["threshold_cost_per_row_at_0_5"]
    assert "threshold_test_cost_per_row" in m
    paths = {a.path for a in client.list_artifacts(results["mlflow_run_id"], "plots")} | \
        {a.path for a in client.list_artifacts(results["mlflow_run_id"], "threshold")}
    assert {"plots/threshold.png", "threshold/curve.csv"} <= paths
    X, _ = load_data()
    mlflow.set_tracking_uri(uri)
    registered = load_model("models:/small_gb@staging", tracking_uri=uri)  # the reviewed-types loader takes the wrapper
    proba = registered.predict_proba(X)
    np.testing.assert_allclose(proba, results["pipeline"].predict_proba(X))  # probabilities: the calibrated model's
    np.testing.assert_array_equal(registered.predict(X), (proba[:, 1] >= t).astype(int))  # labels: the chosen threshold
    served = mlflow.pyfunc.load_model("models:/small_gb@staging").predict(model_input_frame(X))
    np.testing.assert_array_equal(served["label"], (proba[:, 1] >= t).astype(int))
    assert ((proba[:, 1] >= 0.5) != (proba[:, 1] >= t)).any()  # the threshold changed some decisions

    generate_database("data/ml_workflow.db", table="multi", n_classes=3)
    multi = spec.model_copy(update={"data": spec.data.model_copy(update={"table": "multi"})})
    with pytest.raises(SpecError, match="a decision threshold is for binary targets; this target has 3 classes"):
        run_training(multi, verbose=False)


@pytest.mark.parametrize("model_type", ["hist_gradient_boosting", "lightgbm", "xgboost"])
def test_early_stopping_keeps_fewer_iterations_and_the_run_logs_how_many(workdir, model_type):
    from ml_workflow_training import ModelSpec
    from ml_workflow_training.models import iterations_used
    from ml_workflow_training.specs import EarlyStoppingSpec
    pytest.importorskip(model_type.split("_")[-1] if model_type != "hist_gradient_boosting" else "sklearn")
    uri = f"sqlite:///{workdir}/mlflow.db"
    rounds = {"max_iter" if model_type == "hist_gradient_boosting" else "n_estimators": 1000, "learning_rate": 0.3}
    spec = small_spec(uri, experiment="early").model_copy(update={
        "model": ModelSpec(name=f"early_{model_type}", model_type=model_type, hyperparameters=rounds,
                           early_stopping=EarlyStoppingSpec(validation_fraction=0.2, patience=3))})
    results = run_training(spec, verbose=False)  # tuned, calibrated and cross-validated, every fit stopping on its own rows
    run = mlflow.MlflowClient(uri).get_run(results["mlflow_run_id"])
    kept = run.data.metrics["iterations_used"]
    assert run.info.status == "FINISHED" and kept == results.iterations_used < 1000
    assert run.data.params["model.early_stopping.patience"] == "3"
    # every CV fold's model stopped on its own rows: each kept its own count, none the full 1000
    X, y = load_data()
    pipeline = results["pipeline"].calibrated_classifiers_[0].estimator if hasattr(results["pipeline"], "calibrated_classifiers_") else results["pipeline"]
    cv = cross_validate(pipeline, X, y, cv=3, return_estimator=True)
    assert all(0 < iterations_used(e) < 1000 for e in cv["estimator"])
    registered = load_model(f"models:/early_{model_type}@staging", tracking_uri=uri)  # the reviewed-types loader takes the pipeline
    np.testing.assert_allclose(registered.predict_proba(X), results["pipeline"].predict_proba(X))
