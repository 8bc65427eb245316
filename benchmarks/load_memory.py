"""Memory and time of `load_data` against `pandas.read_sql`, same table, same process.

Prints, for each reader, the peak memory traced while reading (tracemalloc sees numpy and
pandas buffers) as a multiple of the resulting frame's own memory, and the read time; then
the goals (issue 10): peak memory <= 3 x the frame, and reading no slower than pandas' own
reader. Exits 1 when a goal is missed.
Usage: python benchmarks/load_memory.py [n_rows]   (default 1,000,000)
"""
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from harness import finish, report
import pandas as pd
import sqlalchemy as sa

from ml_workflow_training.data import generate_database, load_data


def measure(label, read):
    tracemalloc.start()
    t0 = time.perf_counter()
    X, y = read()
    seconds = time.perf_counter() - t0
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    own = X.memory_usage(deep=True).sum() + y.memory_usage(deep=True)
    print(f"{label:<16} rows={len(X):>9,}  frame={own / 2**20:7.1f} MiB  peak={peak / 2**20:7.1f} MiB  "
          f"peak/frame={peak / own:5.2f}  time={seconds:6.2f} s")
    return peak / own, seconds


def main(n_rows: int = 1_000_000):
    db = Path(tempfile.mkdtemp()) / "bench.db"
    t0 = time.perf_counter()
    generate_database(db, n_samples=n_rows, n_categorical=2, missing_rate=0.01)
    print(f"generated {n_rows:,} rows in {time.perf_counter() - t0:.1f} s")
    ours, t_ours = measure("load_data", lambda: load_data(db=db))

    def plain():
        df = pd.read_sql_table("classification_data", sa.create_engine(f"sqlite:///{db}"))
        return df.drop(columns="target"), df["target"]
    theirs, t_theirs = measure("pandas.read_sql", plain)
    report("load_memory", f"{n_rows:,} rows from SQLite, peak memory / frame", ours, theirs, 3.0, measure="peak/frame",
           value=ours, unit="x frame")
    report("load_memory", f"{n_rows:,} rows from SQLite, read time vs pandas.read_sql", t_ours, t_theirs, 1.0)


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 1_000_000)
    finish()
