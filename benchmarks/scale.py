"""A registered model from a large SQLite table, end to end, against the bare fit it wraps.

Ours: `run_training` on the table in the database: connect, load, split (20% held out),
checks, fit, evaluation (test metrics, sampled importance and figures), the MLflow record and
the registry. Floor: `HistGradientBoostingClassifier().fit` on the same 80% of the same rows,
already in memory, untracked. Also the peak resident memory of the whole run as a multiple of
the loaded frame. Goals (issue 10): time <= 1.3 x the floor, peak <= 3 x the frame. With
`--rows 5000000` it reports the 5M-row run the same way.
Usage: python benchmarks/scale.py [--rows N] [--db URL]   (default 1,000,000 rows in a new SQLite file)
"""
import os
os.environ.setdefault("OMP_NUM_THREADS", "1")
import argparse
import sys
import tempfile
import time
from pathlib import Path

from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.model_selection import train_test_split

sys.path.insert(0, str(Path(__file__).parent))
from harness import PeakMemory, finish, report
from ml_workflow_training import DataSpec, FeatureSpecBuilder, MLflowSpecBuilder, ModelSpec, TrainingSpec, ValidationSpec
from ml_workflow_training import generate_database, load_data, run_training


def main(rows: int, db: str | None):
    work = Path(tempfile.mkdtemp())
    if db is None:
        db = str(work / "big.db")
        t0 = time.perf_counter()
        generate_database(db, n_samples=rows, missing_rate=0.05)
        print(f"generated {rows:,} rows x 20 in {time.perf_counter() - t0:.1f} s", flush=True)
    features = [f"feature_{i}" for i in range(20)]
    spec = TrainingSpec(data=DataSpec(db=db), features=FeatureSpecBuilder().add_numeric_group(features, imputer_strategy=None, scaler_type="none").build(),
                        model=ModelSpec(name="scale_hgb", model_type="hist_gradient_boosting"),
                        validation=ValidationSpec(strategy="holdout", test_size=0.2),
                        mlflow=MLflowSpecBuilder().enable().set_tracking_uri(f"sqlite:///{work}/mlflow.db").set_experiment("scale")
                        .enable_model_registry().build())
    with PeakMemory() as mem:
        t0 = time.perf_counter()
        r = run_training(spec, verbose=True)
        ours = time.perf_counter() - t0
    assert r.registered, r.registration
    X, y = load_data(db=db)
    frame = X.memory_usage(deep=True).sum() + y.memory_usage(deep=True)
    X_train, _, y_train, _ = train_test_split(X, y, test_size=0.2, random_state=42, stratify=y)
    t0 = time.perf_counter()
    HistGradientBoostingClassifier(random_state=42).fit(X_train, y_train)
    floor = time.perf_counter() - t0
    print(f"steps: {', '.join(f'{k} {v:.1f} s' for k, v in r.durations.items())}")
    report("scale", f"{len(X):,} rows x 20 from {db.split(':')[0] if '://' in db else 'SQLite'} to a registered model vs the bare fit",
           ours, floor, 1.3)
    report("scale", f"{len(X):,} rows: peak memory of the whole run / frame", mem.peak / frame, 1.0, 3.0, measure="peak/frame",
           value=mem.peak / frame, unit="x frame")


if __name__ == "__main__":
    p = argparse.ArgumentParser()
    p.add_argument("--rows", type=int, default=1_000_000)
    p.add_argument("--db", help="an existing table's database (SQLite path or URL, e.g. PostgreSQL); default: generate one")
    a = p.parse_args()
    main(a.rows, a.db)
    finish()
