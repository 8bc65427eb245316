"""Memory and time of `load_data` (the Arrow reader, and the SQLAlchemy stream) against
`pandas.read_sql`, same table; each reader runs in a fresh process so that its peak is its own.

Peak memory is the process's peak resident size during the read minus its size just before
(Arrow and connectorx allocate outside Python's allocator, so tracemalloc would not see them),
as a multiple of the resulting frame's own memory. Goals (issue 10): peak <= 3 x the frame,
and the default reader in at most a quarter of pandas' time (1M rows: about 4 s here).
Exits 1 when a goal is missed. Usage: python benchmarks/load_memory.py [n_rows]   (default 1,000,000)
"""
import multiprocessing as mp
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from harness import PeakMemory, finish, report


def _read(reader: str, db: str, out) -> None:
    import pandas as pd
    import sqlalchemy as sa
    from ml_workflow_training.data import load_data
    import connectorx  # noqa: F401  (imports are not the read)
    with PeakMemory() as mem:
        t0 = time.perf_counter()
        if reader == "pandas.read_sql":
            df = pd.read_sql_table("classification_data", sa.create_engine(f"sqlite:///{db}"))
            X, y = df.drop(columns="target"), df["target"]
        else: X, y = load_data(db=db, reader=reader)
        seconds = time.perf_counter() - t0
    own = X.memory_usage(deep=True).sum() + y.memory_usage(deep=True)
    out.put((len(X), own, mem.peak, seconds))


def measure(reader: str, db: Path) -> tuple[float, float]:
    q = mp.get_context("spawn").Queue()
    p = mp.get_context("spawn").Process(target=_read, args=(reader, str(db), q))
    p.start()
    rows, own, peak, seconds = q.get()
    p.join()
    print(f"{reader:<16} rows={rows:>9,}  frame={own / 2**20:7.1f} MiB  peak={peak / 2**20:7.1f} MiB  "
          f"peak/frame={peak / own:5.2f}  time={seconds:6.2f} s", flush=True)
    return peak / own, seconds


def main(n_rows: int = 1_000_000):
    from ml_workflow_training.data import generate_database
    db = Path(tempfile.mkdtemp()) / "bench.db"
    t0 = time.perf_counter()
    generate_database(db, n_samples=n_rows, n_categorical=2, missing_rate=0.01)
    print(f"generated {n_rows:,} rows in {time.perf_counter() - t0:.1f} s")
    arrow, t_arrow = measure("arrow", db)
    stream, t_stream = measure("sqlalchemy", db)
    plain, t_plain = measure("pandas.read_sql", db)
    for reader, mem in (("arrow", arrow), ("sqlalchemy", stream)):
        report("load_memory", f"{n_rows:,} rows from SQLite, {reader} reader: peak memory / frame", mem, plain, 3.0,
               measure="peak/frame", value=mem, unit="x frame")
    report("load_memory", f"{n_rows:,} rows from SQLite, default (arrow) reader time vs pandas.read_sql", t_arrow, t_plain, 0.25)
    report("load_memory", f"{n_rows:,} rows from SQLite, sqlalchemy reader time vs pandas.read_sql", t_stream, t_plain, 1.5,
           counts=False)


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 1_000_000)
    finish()
