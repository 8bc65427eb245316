"""Data layer at scale, across processes, and against hostile input (real SQLite files)."""
import json
import sqlite3
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from ml_workflow_training.data import (DataError, dataset_fingerprint, generate_database, load_data,
                                       read_metadata)


@pytest.fixture(scope="module")
def big_db(tmp_path_factory):
    db = tmp_path_factory.mktemp("big") / "big.db"
    meta = generate_database(db, n_samples=200_000, n_categorical=2, missing_rate=0.01,
                             with_entity=True, class_balance=0.3, chunk_size=50_000)
    return db, meta


def test_generation_at_scale(big_db):
    db, meta = big_db
    with sqlite3.connect(db) as c:
        assert c.execute("SELECT COUNT(*) FROM classification_data").fetchone()[0] == 200_000
        assert c.execute("SELECT COUNT(DISTINCT entity_id) FROM classification_data").fetchone()[0] == 200_000
    X, y = load_data(db=db)
    assert X.shape == (200_000, 22) and len(y) == 200_000
    assert abs(y.mean() - 0.3) < 0.01
    assert 0.005 < X["feature_3"].isna().mean() < 0.015
    assert isinstance(X["category_0"].dtype, pd.CategoricalDtype)
    # chunks share one distribution: feature means agree between the first and last chunk
    first, last = X.iloc[:50_000], X.iloc[-50_000:]
    numeric = [f"feature_{i}" for i in range(20)]
    assert np.allclose(first[numeric].mean(), last[numeric].mean(), atol=0.05)


def test_fingerprint_matches_generation_hash(big_db):
    db, meta = big_db
    cols = [s["name"] for s in meta["schema"] if s["role"] != "target"]
    X, y = load_data(db=db, columns=cols)
    assert dataset_fingerprint(X, y)["content_hash"] == meta["content_hash"]


def test_load_with_small_chunks_gives_same_frame(big_db):
    db, _ = big_db
    a = load_data(db=db, limit=30_000)
    b = load_data(db=db, limit=30_000, chunk_size=7_000)
    pd.testing.assert_frame_equal(a[0], b[0])
    pd.testing.assert_series_equal(a[1], b[1])


FINGERPRINT = """
import json, sys
from ml_workflow_training.data import load_data, dataset_fingerprint
X, y = load_data(db=sys.argv[1])
print(json.dumps(dataset_fingerprint(X, y)))
"""


def test_fingerprint_stable_across_processes(tmp_path):
    db = tmp_path / "fp.db"
    generate_database(db, n_samples=5000, n_categorical=1, missing_rate=0.02)
    runs = [subprocess.run([sys.executable, "-c", FINGERPRINT, str(db)], capture_output=True, text=True,
                           check=True, env={"PYTHONHASHSEED": seed, "PATH": ""}).stdout
            for seed in ("1", "2")]
    assert runs[0] == runs[1]
    X, y = load_data(db=db)
    assert json.loads(runs[0]) == dataset_fingerprint(X, y)


def test_generation_is_reproducible_and_seed_sensitive(tmp_path):
    a = generate_database(tmp_path / "a.db", n_samples=3000, chunk_size=1000)
    b = generate_database(tmp_path / "b.db", n_samples=3000, chunk_size=1000)
    c = generate_database(tmp_path / "c.db", n_samples=3000, chunk_size=1000, seed=1)
    assert a["content_hash"] == b["content_hash"] != c["content_hash"]


def test_multiclass_generation(tmp_path):
    generate_database(tmp_path / "m.db", n_samples=3000, n_classes=3, class_balance=[0.5, 0.3, 0.2])
    _, y = load_data(db=tmp_path / "m.db")
    assert sorted(y.unique()) == [0, 1, 2]
    assert abs(y.value_counts(normalize=True)[0] - 0.5) < 0.03


@pytest.fixture
def seed_db(tmp_path):
    db = tmp_path / "seed.db"
    generate_database(db)
    return db


INJECTIONS = ["classification_data; DROP TABLE classification_data",
              "classification_data--", "x' OR '1'='1", 'classification_data" --',
              "classification_data/*", "sqlite_master", "datasets_metadata WHERE 1=1"]


def statement_log():
    "Every statement the engine sends to a database while the context is open."
    import contextlib
    import sqlalchemy as sa

    @contextlib.contextmanager
    def log():
        statements = []
        def record(conn, cursor, statement, parameters, context, executemany): statements.append(statement)
        sa.event.listen(sa.engine.Engine, "before_cursor_execute", record)
        try: yield statements
        finally: sa.event.remove(sa.engine.Engine, "before_cursor_execute", record)
    return log()


@pytest.mark.parametrize("name", INJECTIONS)
def test_injection_in_table_name_is_rejected(seed_db, name):
    "A name that is not an identifier never reaches SQL; one that is, but names no data table, reads only the catalogue."
    import hashlib
    before = hashlib.sha256(Path(seed_db).read_bytes()).hexdigest()
    with statement_log() as statements, pytest.raises(DataError, match="not a plain identifier|unknown table") as e:
        load_data(name, db=seed_db)
    if "not a plain identifier" in str(e.value): assert statements == []
    else:  # only the catalogue's list of tables was read: the name itself was never sent as SQL
        catalogue = ("FROM sqlite_master WHERE type='table'", "FROM sqlite_master WHERE type='view'")  # its tables and its views
        assert statements and all(any(c in s for c in catalogue) or s.startswith("PRAGMA") for s in statements), statements
    assert hashlib.sha256(Path(seed_db).read_bytes()).hexdigest() == before  # the file is byte for byte the same


@pytest.mark.parametrize("column", ["feature_0 FROM classification_data; --", "1", "target, target",
                                    "*", "feature_0\"", "(SELECT 1)"])
def test_sql_in_a_column_name_is_an_unknown_column_and_never_reaches_sql(seed_db, column):
    "Any text may name a column, but only one its table lists is read: SQL in a name is an unknown column, and never sent."
    import hashlib
    before = hashlib.sha256(Path(seed_db).read_bytes()).hexdigest()
    with statement_log() as statements:
        with pytest.raises(DataError, match="unknown column"):
            load_data(db=seed_db, columns=[column])
        with pytest.raises(DataError, match="target column .* is not in table"):
            load_data(db=seed_db, target=column)
    catalogue = ("FROM sqlite_master", "FROM datasets_metadata")  # the table's reflection, and the generator's row for it
    assert statements and all(any(c in s for c in catalogue) or s.startswith("PRAGMA") for s in statements), statements
    assert hashlib.sha256(Path(seed_db).read_bytes()).hexdigest() == before


def test_injection_in_generated_table_name_is_rejected(tmp_path):
    with pytest.raises(DataError, match="not a plain identifier"):
        generate_database(tmp_path / "x.db", table="t; DROP TABLE x")


def test_quoted_identifiers_that_are_sql_keywords_work(tmp_path):
    db = tmp_path / "kw.db"
    with sqlite3.connect(db) as c:
        c.execute('CREATE TABLE "select" ("from" REAL, "where" TEXT, "order" INTEGER)')
        c.executemany('INSERT INTO "select" VALUES (?,?,?)', [(1.0, "a", 0), (2.0, "b", 1)])
    X, y = load_data("select", db=db, target="order")
    assert list(X.columns) == ["from", "where"] and y.tolist() == [0, 1]


@pytest.mark.parametrize("kwargs, message", [
    (dict(name="nope"), "unknown table 'nope'"),
    (dict(name="classification_dat"), "Did you mean 'classification_data'"),
    (dict(target="label"), "target column 'label' is not in table"),
    (dict(columns=["feature_99"]), "unknown column 'feature_99'"),
    (dict(columns=["feature_1", "target"]), "is the target"),
    (dict(limit=-5), "limit must be a positive integer"),
])
def test_bad_input_messages(seed_db, kwargs, message):
    with pytest.raises(DataError, match=message):
        load_data(db=seed_db, **kwargs)


def test_missing_database_is_not_created(tmp_path):
    path = tmp_path / "sub" / "missing.db"
    for db in (path, f"sqlite:///{path}"):
        with pytest.raises(DataError, match="database file not found"):
            load_data(db=db)
    assert not path.exists() and not path.parent.exists()


def test_empty_table(tmp_path):
    db = tmp_path / "e.db"
    with sqlite3.connect(db) as c: c.execute("CREATE TABLE t (a REAL, target INTEGER)")
    with pytest.raises(DataError, match="is empty"):
        load_data("t", db=db)


def test_not_a_database_file(tmp_path):
    db = tmp_path / "junk.db"
    db.write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(DataError, match="cannot read database"):
        load_data(db=db)


def test_generate_cli(tmp_path):
    db = tmp_path / "cli.db"
    exe = str(Path(sys.executable).parent / "mlwt-generate-database")
    out = subprocess.run([exe, "--db", str(db), "--n_samples", "300",
                          "--positive_fraction", "0.25"], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert "wrote 300 rows" in out.stdout
    again = subprocess.run([exe, "--db", str(db), "--if-missing"],
                           capture_output=True, text=True)
    assert "left as it is" in again.stdout
    assert read_metadata(db, "classification_data")["n_rows"] == 300
    bad = subprocess.run([exe, "--db", str(db), "--table", "a;b"], capture_output=True, text=True)
    assert bad.returncode != 0 and "not a plain identifier" in bad.stderr
    assert "Traceback" not in bad.stderr


def test_arrow_reader_gets_the_dialects_quoted_statement(tmp_path, monkeypatch):
    "What connectorx is sent: the SQLAlchemy select compiled by SQLite's dialect, reserved words quoted, the checked limit."
    import connectorx
    db = tmp_path / "reserved.db"
    generate_database(db, table="order", target="select", n_samples=50, n_features=3, n_informative=2, n_redundant=0)
    sent, read_sql = [], connectorx.read_sql
    monkeypatch.setattr(connectorx, "read_sql", lambda source, query, **kw: sent.append(query) or read_sql(source, query, **kw))
    X, y = load_data("order", db=db, target="select", columns=["feature_0", "feature_2"], limit=7, reader="arrow")
    assert X.shape == (7, 2) and y.name == "select"
    (query,) = sent
    assert " ".join(query.split()) == 'SELECT "order".feature_0, "order".feature_2, "order"."select" FROM "order" LIMIT 7 OFFSET 0', query


def test_identifiers_reach_sql_quoted_and_values_as_bound_parameters(tmp_path):
    "Through the engine's own statement log: a reserved-word table and columns are quoted, the row limit is a bound parameter."
    import sqlalchemy as sa
    db = tmp_path / "reserved.db"
    generate_database(db, table="order", target="select", n_samples=50, n_features=3, n_informative=2, n_redundant=0)
    statements = []
    def record(conn, cursor, statement, parameters, context, executemany): statements.append((statement, parameters))
    sa.event.listen(sa.engine.Engine, "before_cursor_execute", record)
    try: X, y = load_data("order", db=db, target="select", columns=["feature_0", "feature_2"], limit=7, reader="sqlalchemy")
    finally: sa.event.remove(sa.engine.Engine, "before_cursor_execute", record)
    assert X.shape == (7, 2) and y.name == "select"
    reads = [(st, p) for st, p in statements if st.lstrip().upper().startswith("SELECT") and "sqlite_master" not in st
             and "datasets_metadata" not in st]  # the reads of the table itself
    assert reads and all('"order"' in st for st, _ in reads)  # an f-string would have sent the bare reserved word
    data_reads = [(st, p) for st, p in reads if "feature_0" in st]
    assert data_reads and all('"select"' in st and " 7" not in st for st, _ in data_reads)
    assert any(7 in (p if isinstance(p, (tuple, list)) else tuple(p.values())) for _, p in data_reads)  # the limit is bound
