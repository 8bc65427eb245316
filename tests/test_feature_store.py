"""Feast feature store, for real: repository from generated data, point-in-time training, workflow lineage.

Runs in the feast environment (`make test-feast`: pandas < 3); elsewhere it is skipped with the reason.
"""
import subprocess
import sys

import mlflow
import numpy as np
import pandas as pd
import pytest

feast = pytest.importorskip("feast", reason='the feature store needs the feast extra: pip install -e ".[feast]" (make test-feast)')

from ml_workflow_training import (DataSpec, FeatureSpecBuilder, FeatureStoreSpecBuilder, MLflowSpecBuilder, ModelSpecBuilder,
                                  generate_database, load_data, run_ml_workflow)
from ml_workflow_training.feature_store import (FeatureStoreError, build_repository, entity_frame, historical_training_set,
                                                training_from_store)

FEATURES = [f"feature_{i}" for i in range(20)]


@pytest.fixture
def fs_workdir(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    generate_database("data/ml_workflow.db", n_samples=1500, with_entity=True)
    yield tmp_path
    mlflow.set_tracking_uri(None)


def test_seed_feature_store_workflow_with_lineage(fs_workdir):
    fs_spec = FeatureStoreSpecBuilder().enable().set_repo_path("feature_repo").set_n_features(20).build()
    feature_specs = FeatureSpecBuilder().add_numeric_group(FEATURES).build()
    results = run_ml_workflow(feature_specs=feature_specs,
                              model_spec=ModelSpecBuilder().add_classifier("fs_model", hyperparameters={"n_estimators": 30}).build()[0],
                              X=None, y=None, feature_store_spec=fs_spec,
                              mlflow_spec=MLflowSpecBuilder().enable().set_experiment("fs").build(), verbose=False)
    X, y = load_data()
    assert results["data_fingerprint"]["n_rows"] == 1500 and results["cv_score"] > 0.85
    run = mlflow.get_run(results["mlflow_run_id"])
    tags = run.data.tags
    assert tags["feature_store.feature_views"] == "classification_features"
    assert tags["feature_store.features"].split(",") == [f"classification_features:{c}" for c in FEATURES]
    assert tags["feature_store.dropped_rows"] == "0" and tags["feature_store.entity_rows"] == "1500"
    assert len(tags["feature_store.entity_frame_hash"]) == 64 and tags["feature_store.repo_path"].endswith("feature_repo")
    assert tags["dataset.training.source"].startswith("feast:")
    # the same rows as reading the table straight: the store changed nothing but the path
    Xs, ys, _ = training_from_store(fs_spec, DataSpec())
    np.testing.assert_allclose(Xs[FEATURES].to_numpy(), X[FEATURES].to_numpy())
    assert (ys.to_numpy() == y.to_numpy()).all()


def test_point_in_time_training_set_excludes_later_values(fs_workdir):
    "Rewrite one feature after each row's timestamp so it equals the label: the training set must not see it."
    fs_spec = FeatureStoreSpecBuilder().enable().set_repo_path("feature_repo").set_n_features(20).build()
    store = build_repository(fs_spec, DataSpec())
    repo_file = fs_workdir / "feature_repo" / "data" / "classification_features.parquet"
    frame = pd.read_parquet(repo_file)
    _, y = load_data()
    later = frame.assign(event_timestamp=frame["event_timestamp"] + pd.Timedelta(days=1), feature_0=y.to_numpy() * 100.0)
    pd.concat([frame, later]).to_parquet(repo_file, index=False)
    X, labels, lineage = historical_training_set(store, fs_spec, entity_frame(DataSpec(), fs_spec))
    assert lineage["feature_store.dropped_rows"] == 0
    assert not np.isin(X["feature_0"].to_numpy(), [0.0, 100.0]).any()  # not one row carries a leaking value
    assert np.corrcoef(X["feature_0"], labels)[0, 1] < 0.9
    shifted = entity_frame(DataSpec(), fs_spec).assign(event_timestamp=lambda d: d["event_timestamp"] + pd.Timedelta(days=2))
    X2, labels2, _ = historical_training_set(store, fs_spec, shifted)
    assert (X2["feature_0"].to_numpy() == labels2.to_numpy() * 100.0).all()  # after the change, the new value is what is known


def test_repeated_entity_rows_are_all_kept(fs_workdir):
    fs_spec = FeatureStoreSpecBuilder().enable().set_repo_path("feature_repo").set_n_features(3).build()
    store = build_repository(fs_spec, DataSpec())
    rows = entity_frame(DataSpec(), fs_spec).head(10)
    doubled = pd.concat([rows, rows.assign(target=1 - rows["target"])])  # same key and time, different labels
    X, y, lineage = historical_training_set(store, fs_spec, doubled)
    assert len(X) == 20 and lineage["feature_store.dropped_rows"] == 0


def test_bad_input(fs_workdir):
    fs_spec = FeatureStoreSpecBuilder().enable().set_repo_path("feature_repo").set_n_features(20).build()
    store = build_repository(fs_spec, DataSpec())
    frame = entity_frame(DataSpec(), fs_spec)
    with pytest.raises(FeatureStoreError, match="no event timestamp column"):
        historical_training_set(store, fs_spec, frame.drop(columns="event_timestamp"))
    with pytest.raises(FeatureStoreError, match="no entity column 'entity_id'"):
        historical_training_set(store, fs_spec, frame.rename(columns={"entity_id": "id"}))
    with pytest.raises(FeatureStoreError, match="unknown feature 'classification_features:feature_x'"):
        historical_training_set(store, fs_spec, frame, features=["classification_features:feature_x"])
    with pytest.raises(FeatureStoreError, match="n_features=99 but the view has only 20 features"):
        build_repository(fs_spec.model_copy(update={"n_features": 99}), DataSpec())
    with pytest.raises(FeatureStoreError, match="before the entities' first events"):
        historical_training_set(store, fs_spec, frame.assign(event_timestamp=pd.Timestamp("2000-01-01", tz="UTC")))


def test_feast_missing_gives_a_clear_message(tmp_path):
    code = ("import sys; sys.modules['feast'] = None\n"
            "from ml_workflow_training.feature_store import require_feast\n"
            "try: require_feast()\nexcept Exception as e: print(type(e).__name__, e)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.startswith("FeatureStoreError") and 'pip install -e ".[feast]"' in out
