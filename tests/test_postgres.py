"""The data layer against a real PostgreSQL server, started by the test on 127.0.0.1 (no code change from SQLite)."""
import pandas as pd
import pytest

from conftest import BIN, free_port
from ml_workflow_training import DataError, dataset_fingerprint, generate_database, load_data


def test_generate_and_load_with_a_postgres_url(postgres_url, tmp_path):
    kw = dict(n_samples=3000, n_categorical=2, missing_rate=0.02, with_entity=True, chunk_size=1000)
    meta = generate_database(postgres_url, **kw)
    lite = generate_database(tmp_path / "same.db", **kw)
    assert meta["content_hash"] == lite["content_hash"]
    cols = [s["name"] for s in meta["schema"] if s["role"] != "target"]
    X, y = load_data(db=postgres_url, columns=cols)
    X2, y2 = load_data(db=tmp_path / "same.db", columns=cols)
    pd.testing.assert_frame_equal(X, X2)
    assert dataset_fingerprint(X, y) == dataset_fingerprint(X2, y2)  # the same data whichever database holds it
    assert isinstance(X["category_0"].dtype, pd.CategoricalDtype) and X["entity_id"].dtype == "int64"
    assert load_data(db=postgres_url, limit=10)[0].shape == (10, 22)
    for reader in ("arrow", "sqlalchemy"):  # connectorx and the SQLAlchemy stream read PostgreSQL alike
        Xr, yr = load_data(db=postgres_url, columns=cols, reader=reader)
        pd.testing.assert_frame_equal(Xr, X2)
        pd.testing.assert_series_equal(yr, y2)


def test_arrow_batches_from_postgres_land_in_order(postgres_url, tmp_path, monkeypatch):
    "Many record batches from one PostgreSQL query, each written at its place: the frame the SQLAlchemy stream reads."
    import ml_workflow_training.data as data
    generate_database(postgres_url, table="batched", n_samples=5000, n_categorical=1, missing_rate=0.05, with_entity=True)
    whole = load_data("batched", db=postgres_url, reader="sqlalchemy")
    monkeypatch.setattr(data, "ARROW_BATCH_ROWS", 256)
    written = []
    write = data._ColumnSink.write
    monkeypatch.setattr(data._ColumnSink, "write", lambda self, at, batch: (written.append(at), write(self, at, batch)))
    X, y = load_data("batched", db=postgres_url, reader="arrow")
    assert len(written) >= 10, written  # the stream really came in pieces
    pd.testing.assert_frame_equal(X, whole[0])
    pd.testing.assert_series_equal(y, whole[1])


def test_a_large_postgres_table_loads_in_the_same_order_whatever_scanned_it_before(postgres_url):
    "Over a quarter of shared_buffers, a scan starts where the table's last scan stopped (synchronized scans): ours start at its first page."
    import numpy as np
    import sqlalchemy as sa
    generate_database(postgres_url, table="large", n_samples=200_000, n_categorical=0, missing_rate=0.05, chunk_size=50_000)
    engine = sa.create_engine(postgres_url)
    with engine.connect() as conn:
        size, quarter = conn.execute(sa.text("SELECT pg_relation_size('large'), pg_size_bytes(current_setting('shared_buffers')) / 4")).one()
        pages = conn.execute(sa.text("SELECT feature_0 FROM large ORDER BY ctid")).scalars().all()  # the table's physical order
    assert size > quarter, (size, quarter)  # else every scan starts at the first page anyway, and this tests nothing
    in_page_order = np.array([np.nan if v is None else v for v in pages])

    def scan_part_of_it():  # another client stops a scan part-way: the next scan would start there
        with engine.connect() as conn: conn.execute(sa.text("SELECT * FROM large LIMIT 70000")).fetchall()

    read = {}
    for reader in ("arrow", "sqlalchemy"):
        scan_part_of_it()
        X, y = read[reader] = load_data("large", db=postgres_url, reader=reader)
        np.testing.assert_array_equal(X["feature_0"].to_numpy(), in_page_order, err_msg=reader)
    assert dataset_fingerprint(*read["arrow"]) == dataset_fingerprint(*read["sqlalchemy"])  # and so the same split, the same run
    scan_part_of_it()
    np.testing.assert_array_equal(load_data("large", db=postgres_url, limit=1000)[0]["feature_0"].to_numpy(), in_page_order[:1000])
    engine.dispose()


def table_and_copies(postgres_url, table: str, copies: list[str]):
    "Generate `table` on the server, run the statements that copy it (views, tables), and return it as the SQLAlchemy stream reads it."
    import sqlalchemy as sa
    generate_database(postgres_url, table=table, n_samples=1500, n_categorical=1, missing_rate=0.05)
    engine = sa.create_engine(postgres_url)
    with engine.begin() as conn:
        for statement in copies: conn.execute(sa.text(statement))
    engine.dispose()
    return load_data(table, db=postgres_url, reader="sqlalchemy")


def assert_read_alike(postgres_url, names: list[str], X, y) -> None:
    "Each of `names`, read with X's columns by either reader, is (X, y)."
    for name in names:
        for reader in ("arrow", "sqlalchemy"):
            Xc, yc = load_data(name, db=postgres_url, columns=list(X.columns), reader=reader)
            pd.testing.assert_frame_equal(Xc, X, obj=f"{name} by {reader}")
            pd.testing.assert_series_equal(yc, y)


def test_postgres_views_and_materialized_views_load_as_their_table_does(postgres_url):
    "A view (a computed column typed by PostgreSQL) and a materialized view read like the table, by either reader."
    X, y = table_and_copies(postgres_url, "base", ["CREATE VIEW base_view AS SELECT *, feature_0 * 2 AS doubled FROM base",
                                                   "CREATE MATERIALIZED VIEW base_frozen AS SELECT * FROM base"])
    assert_read_alike(postgres_url, ["base_view", "base_frozen"], X, y)
    doubled = load_data("base_view", db=postgres_url, columns=["doubled"])[0]["doubled"]
    pd.testing.assert_series_equal(doubled, X["feature_0"] * 2, check_names=False)
    with pytest.raises(DataError, match=r"Tables and views: \[.*'base_frozen', 'base_view'"):
        load_data("nothing", db=postgres_url)


def test_a_table_and_a_view_in_another_schema_load_and_train_as_schema_table(postgres_url, tmp_path):
    "`analytics.orders` (and a view beside it) read like the table they copy; `mlwt-train` writes a spec for one and trains and registers it."
    import subprocess
    X, y = table_and_copies(postgres_url, "home", ["CREATE SCHEMA analytics", "CREATE TABLE analytics.orders AS SELECT * FROM home",
                                                   "CREATE VIEW analytics.recent AS SELECT * FROM analytics.orders"])
    pd.testing.assert_frame_equal(load_data("public.home", db=postgres_url)[0], X)  # the default schema, named: its metadata too
    assert_read_alike(postgres_url, ["analytics.orders", "analytics.recent"], X, y)
    with pytest.raises(DataError, match=r"unknown table 'analytics.order'.* Did you mean 'analytics.orders'\? Tables and views: \['analytics.orders', 'analytics.recent'\]"):
        load_data("analytics.order", db=postgres_url)
    with pytest.raises(DataError, match="unknown schema 'analytic'.* Did you mean 'analytics'"):
        load_data("analytic.orders", db=postgres_url)
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    cmd = lambda *args: subprocess.run([str(BIN / "mlwt-train"), *args], cwd=tmp_path, capture_output=True, text=True)
    wrote = cmd("--write-default", "orders.yaml", "--db", postgres_url, "--table", "analytics.orders")
    assert wrote.returncode == 0, wrote.stderr
    spec = (tmp_path / "orders.yaml").read_text().replace("tracking_uri: sqlite:///mlflow.db", f"tracking_uri: {uri}")
    (tmp_path / "orders.yaml").write_text(spec.replace("strategy: cross_validation", "strategy: holdout"))
    trained = cmd("--spec", "orders.yaml", "--quiet")
    assert trained.returncode == 0, trained.stdout[-2000:] + trained.stderr[-2000:]
    assert "registered analytics.orders_blend version 1 as @staging" in trained.stdout, trained.stdout


def test_postgres_bad_input(postgres_url):
    generate_database(postgres_url, table="small", n_samples=50)
    with pytest.raises(DataError, match="unknown table 'smal'.* Did you mean 'small'"):
        load_data("smal", db=postgres_url)
    with pytest.raises(DataError, match="not a plain identifier"):
        load_data("small; DROP TABLE small", db=postgres_url)
    assert load_data("small", db=postgres_url)[0].shape == (50, 20)


def test_unreachable_postgres_gives_one_message():
    port = free_port()
    with pytest.raises(DataError, match=f"cannot read database postgresql\\+psycopg://u:\\*\\*\\*@127.0.0.1:{port}/db"):
        load_data(db=f"postgresql+psycopg://u:secret@127.0.0.1:{port}/db")
    with pytest.raises(DataError, match="cannot write database"):
        generate_database(f"postgresql+psycopg://u:secret@127.0.0.1:{port}/db", n_samples=10)
