"""Fit time of the spec-built pipeline against the same pipeline written in plain scikit-learn.

Same data, same process, alternating runs, median of repeats; prints the ratio (goal: <= 1.05).
1k rows: the seed's gradient boosting; 100k rows: HistGradientBoosting (gradient boosting takes
minutes there). Usage: python benchmarks/pipeline_overhead.py [repeats]
"""
import os
os.environ.setdefault("OMP_NUM_THREADS", "1")
import statistics
import sys
import tempfile
import time
from pathlib import Path

from sklearn.compose import ColumnTransformer
from sklearn.ensemble import GradientBoostingClassifier, HistGradientBoostingClassifier
from sklearn.impute import SimpleImputer
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

from ml_workflow_training import FeatureSpecBuilder, ModelSpec, build_pipeline, generate_database, load_data


def plain(model, numeric, categorical):
    pre = ColumnTransformer([("num", make_pipeline(SimpleImputer(strategy="mean"), StandardScaler()), numeric),
                             ("cat", make_pipeline(SimpleImputer(strategy="most_frequent"),
                                                   OneHotEncoder(handle_unknown="ignore", sparse_output=False)), categorical)],
                            verbose_feature_names_out=False).set_output(transform="pandas")
    return Pipeline([("preprocessor", pre), ("classifier", model)])


def timed(make, X, y):
    t0 = time.perf_counter()
    make().fit(X, y)
    return time.perf_counter() - t0


def bench(n_rows, model_type, model, repeats):
    db = Path(tempfile.mkdtemp()) / "b.db"
    generate_database(db, n_samples=n_rows, n_categorical=2, missing_rate=0.01)
    X, y = load_data(db=db)
    numeric, categorical = [f"feature_{i}" for i in range(20)], ["category_0", "category_1"]
    spec = FeatureSpecBuilder().add_numeric_group(numeric).add_categorical_group(categorical).build()
    ours, theirs = [], []
    for _ in range(repeats):
        # one-hot for both: the spec pipeline would pick native categoricals for HistGB, a different model
        ours.append(timed(lambda: build_pipeline(spec, ModelSpec(model_type="gradient_boosting")).set_params(classifier=model()), X, y))
        theirs.append(timed(lambda: plain(model(), numeric, categorical), X, y))
    a, b = statistics.median(ours), statistics.median(theirs)
    print(f"{n_rows:>7,} rows {model_type:<24} spec pipeline {a:7.3f} s   plain sklearn {b:7.3f} s   ratio {a / b:.3f}")


if __name__ == "__main__":
    repeats = int(sys.argv[1]) if len(sys.argv) > 1 else 5
    bench(1_000, "gradient_boosting", lambda: GradientBoostingClassifier(random_state=42), repeats)
    bench(100_000, "hist_gradient_boosting", lambda: HistGradientBoostingClassifier(random_state=42), repeats)
