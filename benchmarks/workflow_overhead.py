"""The seed's production workflow through `run_ml_workflow`, tracked and registered, against its
untracked floor: the same compute in plain scikit-learn, same folds, serial, same process.

Ours: grid search (3 x 2 candidates over 5 folds), refit, sigmoid calibration by 5 folds, 5-fold
cross-validation of the calibrated model, evaluation, and the MLflow record (params, metrics,
figures, dataset, the model in skops format with its hash) and the registry alias. Floor: the
same `GridSearchCV`, refit, `CalibratedClassifierCV` and `cross_validate` with the same seeded,
shuffled folds, no tracking. The store exists beforehand (as a user's does); creating a new one
is timed apart. Both sides must find the same CV accuracy, or the comparison is void.
Goals (issue 10): ours <= 1.10 x the floor with n_jobs=1; with the default parallelism (every core)
below 0.80 x that same serial floor, with the same results.
Usage: python benchmarks/workflow_overhead.py [repeats]   (default 3)
"""
import os
os.environ.setdefault("OMP_NUM_THREADS", "1")
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from sklearn.base import clone
from sklearn.calibration import CalibratedClassifierCV
from sklearn.compose import ColumnTransformer
from sklearn.ensemble import GradientBoostingClassifier
from sklearn.impute import SimpleImputer
from sklearn.model_selection import GridSearchCV, StratifiedKFold, cross_validate
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import StandardScaler

sys.path.insert(0, str(Path(__file__).parent))
from harness import finish, interleaved, report
from ml_workflow_training import (CalibrationSpecBuilder, FeatureSpecBuilder, GridSearchSpecBuilder, MLflowSpecBuilder,
                                  ModelSpecBuilder, generate_database, load_data, run_ml_workflow)
from ml_workflow_training.builders import default_training_spec
from ml_workflow_training.specs import MLflowSpec, ValidationSpec
from ml_workflow_training.tracking import RunRecorder

FEATURES = [f"feature_{i}" for i in range(20)]
GRID = {"classifier__n_estimators": [50, 100, 200], "classifier__learning_rate": [0.01, 0.1]}
SCORES: dict[str, float] = {}


def ours(X, y, uri, n_jobs: int = -1, key: str = "ours", compute=None):
    "The seed's workflow; n_jobs=1 makes tuning, calibration and CV serial (the default is every core, on `compute`'s engine)."
    r = run_ml_workflow(FeatureSpecBuilder().add_numeric_group(FEATURES).build(), ModelSpecBuilder().add_classifier("ours").build()[0],
                        X=X, y=y, tuning_spec=GridSearchSpecBuilder().set_param_grid(GRID).set_cv_folds(5).set_n_jobs(n_jobs).build(),
                        calibration_spec=CalibrationSpecBuilder().set_method("sigmoid").set_cv_strategy(5).build(),
                        validation_spec=ValidationSpec(n_jobs=n_jobs),
                        mlflow_spec=MLflowSpecBuilder().enable().set_tracking_uri(uri).set_experiment("bench")
                        .enable_model_registry(stage="Staging").build(), verbose=os.environ.get("BENCH_VERBOSE") == "1",
                        compute_spec=compute)
    assert r.registered, r.registration
    SCORES[key] = r.cv_score


def floor(X, y):
    folds = lambda: StratifiedKFold(5, shuffle=True, random_state=42)
    pre = ColumnTransformer([("num", make_pipeline(SimpleImputer(strategy="mean"), StandardScaler()), FEATURES)],
                            verbose_feature_names_out=False).set_output(transform="pandas")
    pipe = Pipeline([("preprocessor", pre), ("classifier", GradientBoostingClassifier(random_state=42))])
    search = GridSearchCV(pipe, GRID, cv=folds(), scoring="accuracy").fit(X, y)
    pipe.set_params(**search.best_params_).fit(X, y)
    CalibratedClassifierCV(pipe, method="sigmoid", cv=folds()).fit(X, y)
    cv = cross_validate(CalibratedClassifierCV(clone(pipe), method="sigmoid", cv=folds()), X, y, cv=folds(),
                        scoring=["accuracy", "roc_auc", "neg_log_loss", "neg_brier_score"])
    SCORES["floor"] = float(np.mean(cv["test_accuracy"]))


def seed_data() -> tuple:
    "The seed's table in a new folder, loaded, and an MLflow store URI beside it: (X, y, uri, folder)."
    work = Path(tempfile.mkdtemp())
    generate_database(work / "seed.db")
    X, y = load_data(db=work / "seed.db")
    return X, y, f"sqlite:///{work}/mlflow.db", work


if __name__ == "__main__":
    repeats = int(sys.argv[1]) if len(sys.argv) > 1 else 3
    X, y, uri, work = seed_data()
    t0 = time.perf_counter()
    RunRecorder(default_training_spec().model_copy(update=dict(mlflow=MLflowSpec(enabled=True, tracking_uri=uri, experiment_name="bench")))).connect()
    new_store = time.perf_counter() - t0
    print(f"creating a new SQLite store (once per store, outside the timing): {new_store:.1f} s")
    t = interleaved({"serial": lambda: ours(X, y, uri, n_jobs=1, key="serial"), "parallel": lambda: ours(X, y, uri, key="parallel"),
                     "floor": lambda: floor(X, y)}, repeats)
    if not SCORES["serial"] == SCORES["parallel"] == SCORES["floor"]:
        sys.exit(f"void: the sides disagree on CV accuracy ({SCORES})")
    report("workflow_overhead", "seed workflow, tracked + registered, n_jobs=1", t["serial"], t["floor"], 1.10)
    report("workflow_overhead", f"the same, default parallelism ({os.cpu_count()} cores)", t["parallel"], t["floor"], 0.80)
    finish()
