"""ML modules: scikit-learn estimator checks, bad input before fitting, thread caps in parallel searches."""
import pickle

import numpy as np
import pandas as pd
import pytest
from sklearn.base import BaseEstimator, ClassifierMixin, clone
from sklearn.utils.estimator_checks import parametrize_with_checks
from threadpoolctl import threadpool_info

from ml_workflow_training import (CalibrationSpecBuilder, ClassifierCalibration, FeatureSpecBuilder, FeatureSpecPipeline,
                                  GridSearch, GridSearchSpecBuilder, InputError, ModelSpec, build_pipeline,
                                  cross_validate_model, generate_database, load_data)
from ml_workflow_training.specs import ValidationSpec


@parametrize_with_checks([FeatureSpecPipeline()])
def test_sklearn_estimator_checks(estimator, check):
    check(estimator)


@pytest.fixture(scope="module")
def rich(tmp_path_factory):
    db = tmp_path_factory.mktemp("rich") / "rich.db"
    generate_database(db, n_samples=600, n_categorical=2, missing_rate=0.05)
    return load_data(db=db)


@pytest.fixture
def spec():
    return FeatureSpecBuilder().add_numeric_group([f"feature_{i}" for i in range(20)])\
        .add_categorical_group(["category_0", "category_1"], min_frequency=0.01).build()


@pytest.mark.parametrize("model_type", ["gradient_boosting", "hist_gradient_boosting", "random_forest", "extra_trees",
                                        "logistic_regression", "lightgbm", "xgboost"])
def test_pipeline_with_missing_values_and_categories(rich, spec, model_type):
    if model_type in ("lightgbm", "xgboost"): pytest.importorskip(model_type, reason=f"needs the {model_type} extra")
    X, y = rich
    pipe = build_pipeline(spec, ModelSpec(model_type=model_type, hyperparameters={"max_iter": 50} if "hist" in model_type else {}))
    pipe.fit(X, y)
    unseen = X.head(5).copy()
    unseen["category_0"] = unseen["category_0"].cat.add_categories(["never_seen"])
    unseen.loc[unseen.index[0], "category_0"] = "never_seen"
    assert pipe.predict_proba(unseen).shape == (5, 2)
    again = pickle.loads(pickle.dumps(pipe))
    np.testing.assert_array_equal(again.predict_proba(X), pipe.predict_proba(X))
    assert clone(pipe).get_params()["preprocessor__feature_specs"] == spec


def test_native_categoricals_for_hist_gradient_boosting(rich, spec):
    X, y = rich
    pipe = build_pipeline(spec, ModelSpec(model_type="hist_gradient_boosting"))
    out = pipe[:-1].fit_transform(X, y)
    assert isinstance(out["category_0"].dtype, pd.CategoricalDtype)
    pipe.fit(X, y)
    assert pipe[-1].is_categorical_ is not None and pipe[-1].is_categorical_.sum() == 2


def _two_per_class(y): return pd.concat([y[y == 0].head(2), y[y == 1].head(2)]).index


@pytest.mark.parametrize("mutate, message", [
    (lambda X, y: (X.assign(feature_0=X["feature_0"].astype(str).where(X.index > 2, "n/a")), y), "holds non-numeric values"),
    (lambda X, y: (X.assign(feature_1=np.nan), y), "entirely missing"),
    (lambda X, y: (X.drop(columns="feature_2"), y), "lacks column 'feature_2'"),
    (lambda X, y: (X, pd.Series(1, index=y.index)), "single class"),
    (lambda X, y: (X, y.astype(float).where(y.index > 0, np.nan)), "missing labels"),
    (lambda X, y: (X, y.astype(float).where(y.index > 0, np.inf)), "infinite labels"),
    (lambda X, y: (X.loc[_two_per_class(y)], y.loc[_two_per_class(y)]), "5 folds need at least 5 rows"),
    (lambda X, y: (X, y.where(y.index > 2, 7)), "5 stratified folds need at least 5 members per class; class 7 has 3"),
])
def test_bad_input_fails_before_fitting(rich, spec, mutate, message):
    X, y = mutate(*rich)
    pipe = build_pipeline(spec)
    with pytest.raises(InputError, match=message):
        cross_validate_model(pipe, X, y, ValidationSpec())
    with pytest.raises(InputError, match=message):
        GridSearch(GridSearchSpecBuilder().set_param_grid({"classifier__max_depth": [2]}).build()).fit(pipe, X, y)


class ThreadProbe(ClassifierMixin, BaseEstimator):
    "Appends the largest OpenMP/BLAS thread limit it sees while fitting to `log_path`."
    def __init__(self, c=1.0, log_path=None): self.c, self.log_path = c, log_path

    def fit(self, X, y):
        self.classes_ = np.unique(y)
        threads = max((p["num_threads"] for p in threadpool_info()), default=1)
        with open(self.log_path, "a") as f: f.write(f"{threads}\n")
        return self

    def predict_proba(self, X): return np.full((len(X), len(self.classes_)), 1 / len(self.classes_))


def test_parallel_search_caps_inner_threads(rich, spec, tmp_path, monkeypatch):
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)  # the cap must come from the search, not the environment
    from sklearn.pipeline import Pipeline
    X, y = rich
    log = tmp_path / "threads.txt"
    pipe = Pipeline([("preprocessor", FeatureSpecPipeline(spec)), ("classifier", ThreadProbe(log_path=str(log)))])
    tuning = GridSearchSpecBuilder().set_param_grid({"classifier__c": [1.0, 2.0]}).set_cv_folds(2).set_n_jobs(2).build()
    GridSearch(tuning).fit(pipe, X, y)
    seen = [int(t) for t in log.read_text().split()]
    assert len(seen) == 5 and max(seen) == 1  # 2 candidates x 2 folds + the refit


def test_calibration_bad_folds(rich, spec):
    X, y = rich
    with pytest.raises(InputError, match="5 stratified folds need at least 5 members per class"):
        ClassifierCalibration(CalibrationSpecBuilder().set_cv_strategy(5).build()).fit(build_pipeline(spec), X, y.where(y.index > 1, 9))
