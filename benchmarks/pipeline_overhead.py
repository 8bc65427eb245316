"""Fit time of the spec-built pipeline against the same pipeline written in plain scikit-learn.

Same data, same process, alternating runs, median of repeats; prints the ratio beside its goal
(<= 1.05: the spec layer may cost at most 5% of a fit) and exits 1 when a goal is missed.
1k rows: the seed's gradient boosting; 100k rows: HistGradientBoosting (gradient boosting takes
minutes there). Usage: python benchmarks/pipeline_overhead.py [repeats]
"""
import os
os.environ.setdefault("OMP_NUM_THREADS", "1")
import sys
import tempfile
from pathlib import Path

from sklearn.compose import ColumnTransformer
from sklearn.ensemble import GradientBoostingClassifier, HistGradientBoostingClassifier
from sklearn.impute import SimpleImputer
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

sys.path.insert(0, str(Path(__file__).parent))
from harness import finish, interleaved, report
from ml_workflow_training import FeatureSpecBuilder, ModelSpec, build_pipeline, generate_database, load_data


def plain(model, numeric, categorical):
    pre = ColumnTransformer([("num", make_pipeline(SimpleImputer(strategy="mean"), StandardScaler()), numeric),
                             ("cat", make_pipeline(SimpleImputer(strategy="most_frequent"),
                                                   OneHotEncoder(handle_unknown="ignore", sparse_output=False)), categorical)],
                            verbose_feature_names_out=False).set_output(transform="pandas")
    return Pipeline([("preprocessor", pre), ("classifier", model)])


def bench(n_rows, model_type, model, repeats):
    db = Path(tempfile.mkdtemp()) / "b.db"
    generate_database(db, n_samples=n_rows, n_categorical=2, missing_rate=0.01)
    X, y = load_data(db=db)
    numeric, categorical = [f"feature_{i}" for i in range(20)], ["category_0", "category_1"]
    spec = FeatureSpecBuilder().add_numeric_group(numeric).add_categorical_group(categorical).build()
    # one-hot for both: the spec pipeline would pick native categoricals for HistGB, a different model
    t = interleaved({"ours": lambda: build_pipeline(spec, ModelSpec(model_type="gradient_boosting")).set_params(classifier=model()).fit(X, y),
                     "floor": lambda: plain(model(), numeric, categorical).fit(X, y)}, repeats)
    report("pipeline_overhead", f"{n_rows:,} rows, {model_type} fit", t["ours"], t["floor"], 1.05)


if __name__ == "__main__":
    repeats = int(sys.argv[1]) if len(sys.argv) > 1 else 5
    bench(1_000, "gradient_boosting", lambda: GradientBoostingClassifier(random_state=42), repeats)
    bench(100_000, "hist_gradient_boosting", lambda: HistGradientBoostingClassifier(random_state=42), repeats)
    finish()
