"""Building a training set of 100k entity rows from the Feast store against loading the same
columns straight from SQLite, same process; prints both times and the ratio beside its goal
(<= 10: a point-in-time training set may cost at most ten plain loads of the same rows), exits
1 when it is missed.

Needs the feast extra (run with .venv-feast/bin/python, which `make test-feast` builds).
Usage: python benchmarks/feature_store.py [n_rows]   (default 100,000)
"""
import os
os.environ.setdefault("FEAST_USAGE", "False")
import sys
import tempfile
import time
from pathlib import Path


sys.path.insert(0, str(Path(__file__).parent))
from harness import finish, report
from ml_workflow_training import DataSpec, FeatureStoreSpecBuilder, generate_database, load_data
from ml_workflow_training.feature_store import build_repository, entity_frame, historical_training_set


def main(n_rows: int = 100_000):
    work = Path(tempfile.mkdtemp())
    generate_database(work / "fs.db", n_samples=n_rows, with_entity=True)
    data = DataSpec(db=str(work / "fs.db"))
    fs = FeatureStoreSpecBuilder().enable().set_repo_path(work / "repo").set_n_features(20).build()
    t0 = time.perf_counter()
    store = build_repository(fs, data, online_dir=work / "data")
    build = time.perf_counter() - t0
    t0 = time.perf_counter()
    X, y = load_data(db=work / "fs.db", columns=[f"feature_{i}" for i in range(20)])
    direct = time.perf_counter() - t0
    t0 = time.perf_counter()
    frame = entity_frame(data, fs)
    Xs, ys, lineage = historical_training_set(store, fs, frame)
    via_store = time.perf_counter() - t0
    assert len(Xs) == len(X) == n_rows
    print(f"repository build {build:.1f} s (once per repository, not per training set)")
    report("feature_store", f"{n_rows:,} rows, training set from Feast vs SQLite load", via_store, direct, 10.0)


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 100_000)
    finish()
