"""The seed's full workflow through `run_ml_workflow` against the same work hand-written with
scikit-learn and MLflow calls: same data, same process, fresh SQLite stores, alternating runs.

Both sides: grid search (6 candidates x 5 folds), refit, sigmoid calibration by 5 folds, 5-fold
cross-validation of the calibrated model, five figures, params and metrics, the model logged
with skops and registered at alias `staging`. Prints each side's median wall time and the
ratio (goal: <= 1.10). Usage: python benchmarks/workflow_overhead.py [repeats]
"""
import os
os.environ.setdefault("OMP_NUM_THREADS", "1")
import statistics
import sys
import tempfile
import time
from pathlib import Path

import matplotlib
matplotlib.use("Agg")
import matplotlib.pyplot as plt
import mlflow
import numpy as np
from mlflow.models import infer_signature
from sklearn.calibration import CalibratedClassifierCV, CalibrationDisplay
from sklearn.compose import ColumnTransformer
from sklearn.ensemble import GradientBoostingClassifier
from sklearn.impute import SimpleImputer
from sklearn.metrics import ConfusionMatrixDisplay, PrecisionRecallDisplay, RocCurveDisplay
from sklearn.model_selection import GridSearchCV, StratifiedKFold, cross_validate
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import StandardScaler
import skops.io as sio

from ml_workflow_training import (CalibrationSpecBuilder, FeatureSpecBuilder, GridSearchSpecBuilder, MLflowSpecBuilder,
                                  ModelSpecBuilder, generate_database, load_data, run_ml_workflow)
from ml_workflow_training.tracking import pip_requirements

FEATURES = [f"feature_{i}" for i in range(20)]
GRID = {"classifier__n_estimators": [50, 100, 200], "classifier__learning_rate": [0.01, 0.1]}


def ours(X, y, uri):
    run_ml_workflow(FeatureSpecBuilder().add_numeric_group(FEATURES).build(), ModelSpecBuilder().add_classifier("ours").build()[0],
                    X=X, y=y, tuning_spec=GridSearchSpecBuilder().set_param_grid(GRID).set_cv_folds(5).build(),
                    calibration_spec=CalibrationSpecBuilder().set_method("sigmoid").set_cv_strategy(5).build(),
                    mlflow_spec=MLflowSpecBuilder().enable().set_tracking_uri(uri).set_experiment("bench")
                    .enable_model_registry(stage="Staging").build(), verbose=False)


def plain(X, y, uri):
    mlflow.set_tracking_uri(uri)
    exp = mlflow.set_experiment("bench").experiment_id
    pre = ColumnTransformer([("num", make_pipeline(SimpleImputer(strategy="mean"), StandardScaler()), FEATURES)],
                            verbose_feature_names_out=False).set_output(transform="pandas")
    pipe = Pipeline([("preprocessor", pre), ("classifier", GradientBoostingClassifier(random_state=42))])
    folds = lambda: StratifiedKFold(5, shuffle=True, random_state=42)
    with mlflow.start_run(experiment_id=exp):
        search = GridSearchCV(pipe, GRID, cv=folds(), scoring="accuracy").fit(X, y)
        pipe.set_params(**search.best_params_).fit(X, y)
        model = CalibratedClassifierCV(pipe, method="sigmoid", cv=folds()).fit(X, y)
        cv = cross_validate(CalibratedClassifierCV(pipe, method="sigmoid", cv=folds()), X, y, cv=folds(),
                            scoring=["accuracy", "roc_auc", "neg_log_loss", "neg_brier_score"], return_estimator=True, return_indices=True)
        proba = np.vstack([e.predict_proba(X.iloc[t]) for e, t in zip(cv["estimator"], cv["indices"]["test"])])
        yt = y.to_numpy()[np.concatenate(cv["indices"]["test"])]
        mlflow.log_params({**search.best_params_, "n_features": 20})
        mlflow.log_metrics({f"cv_{k[5:]}_mean": float(np.mean(v)) for k, v in cv.items() if k.startswith("test_")})
        for name, draw in [("roc", lambda ax: RocCurveDisplay.from_predictions(yt, proba[:, 1], ax=ax)),
                           ("pr", lambda ax: PrecisionRecallDisplay.from_predictions(yt, proba[:, 1], ax=ax)),
                           ("calibration", lambda ax: CalibrationDisplay.from_predictions(yt, proba[:, 1], ax=ax)),
                           ("confusion", lambda ax: ConfusionMatrixDisplay.from_predictions(yt, proba.argmax(1), ax=ax)),
                           ("importance", lambda ax: ax.barh(FEATURES, pipe[-1].feature_importances_))]:
            fig, ax = plt.subplots()
            draw(ax)
            mlflow.log_figure(fig, f"plots/{name}.png")
            plt.close(fig)
        example = X.head(5)
        trusted = sio.get_untrusted_types(data=sio.dumps(model))
        info = mlflow.sklearn.log_model(model, name="model", signature=infer_signature(example, model.predict(example)),
                                        input_example=example, pip_requirements=pip_requirements(), skops_trusted_types=trusted)
        version = mlflow.register_model(info.model_uri, "plain").version
        mlflow.MlflowClient().set_registered_model_alias("plain", "staging", version)


def timed(fn, X, y):
    uri = f"sqlite:///{tempfile.mkdtemp()}/mlflow.db"
    mlflow.MlflowClient(uri).search_experiments()  # create the store's schema outside the timing (5-7 s, both sides alike)
    t0 = time.perf_counter()
    fn(X, y, uri)
    return time.perf_counter() - t0


if __name__ == "__main__":
    repeats = int(sys.argv[1]) if len(sys.argv) > 1 else 3
    db = Path(tempfile.mkdtemp()) / "seed.db"
    generate_database(db)
    X, y = load_data(db=db)
    a, b = [], []
    for _ in range(repeats):
        a.append(timed(ours, X, y))
        b.append(timed(plain, X, y))
    ma, mb = statistics.median(a), statistics.median(b)
    print(f"run_ml_workflow {ma:6.1f} s   hand-written sklearn + MLflow {mb:6.1f} s   ratio {ma / mb:.3f}")
