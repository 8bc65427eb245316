"""Team tracking: a real `mlflow server` with a PostgreSQL backend store and served artifacts, started here on 127.0.0.1,
and eight training runs started at once from separate processes, reading their data from PostgreSQL."""
import subprocess

import mlflow
import pytest
import sqlalchemy as sa

from conftest import BIN, free_port, start_process, stop_process, wait_http
from ml_workflow_training import (FeatureSpecBuilder, MLflowSpecBuilder, ModelSpecBuilder, TrainingSpec, ValidationSpec,
                                  generate_database)
from ml_workflow_training.specs import DataSpec

FEATURES = [f"feature_{i}" for i in range(20)]
N_RUNS = 8


@pytest.fixture(scope="module")
def team_server(postgres_url, tmp_path_factory):
    "The documented team server: `mlflow server --backend-store-uri postgresql+psycopg://... --artifacts-destination DIR`."
    engine = sa.create_engine(postgres_url, isolation_level="AUTOCOMMIT")
    with engine.connect() as c: c.execute(sa.text("CREATE DATABASE mlflow_team"))
    engine.dispose()
    store = postgres_url.rsplit("/", 1)[0] + "/mlflow_team"
    root = tmp_path_factory.mktemp("team")
    port = free_port()
    proc = start_process([str(BIN / "mlflow"), "server", "--host", "127.0.0.1", "--port", str(port), "--backend-store-uri", store,
                          "--artifacts-destination", str(root / "artifacts"), "--workers", "2"], root / "server.log",
                         env={"MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"})
    url = f"http://127.0.0.1:{port}"
    try:
        wait_http(f"{url}/health", proc)
        yield url, root / "artifacts"
    finally:
        stop_process(proc)


def team_spec(db: str, uri: str, n_estimators: int) -> TrainingSpec:
    return TrainingSpec(data=DataSpec(db=db, table="team_data"), features=FeatureSpecBuilder().add_numeric_group(FEATURES).build(),
                        model=ModelSpecBuilder().add_classifier("team_gb", hyperparameters={"n_estimators": n_estimators}).build()[0],
                        validation=ValidationSpec(cv_folds=3, n_jobs=1),
                        mlflow=MLflowSpecBuilder().enable().set_tracking_uri(uri).set_experiment("team")
                        .enable_model_registry(model_name="team_model", alias="staging").build())


def test_eight_runs_at_once_against_the_team_server(team_server, postgres_url, tmp_path):
    url, artifacts = team_server
    generate_database(postgres_url, table="team_data", n_samples=1000)  # the training data lives in PostgreSQL too
    procs = []
    for i in range(N_RUNS):
        team_spec(postgres_url, url, 10 + 5 * i).save(tmp_path / f"spec{i}.yaml")
    for i in range(N_RUNS):  # all at once, each its own process, none creating the experiment beforehand
        procs.append(subprocess.Popen([str(BIN / "mlwt-train"), "--spec", f"spec{i}.yaml"], cwd=tmp_path,
                                      stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
    outcomes = [(p.wait(timeout=900), p.stderr.read()) for p in procs]
    assert [code for code, _ in outcomes] == [0] * N_RUNS, [err for code, err in outcomes if code]

    client = mlflow.MlflowClient(url)
    experiments = [e for e in client.search_experiments() if e.name == "team"]
    assert len(experiments) == 1  # created once, though eight processes asked for it at the same moment
    runs = client.search_runs([experiments[0].experiment_id], max_results=100)
    runs = [r for r in runs if "mlflow.parentRunId" not in r.data.tags]
    assert len(runs) == N_RUNS and {r.info.status for r in runs} == {"FINISHED"}  # 0 runs lost
    assert client.search_runs(["0"]) == []  # 0 runs in the wrong (Default) experiment
    assert sorted(int(r.data.params["model.hyperparameters.n_estimators"]) for r in runs) == [10 + 5 * i for i in range(N_RUNS)]
    keys = {frozenset(r.data.metrics) for r in runs}
    assert len(keys) == 1 and {"cv_accuracy_mean", "cv_accuracy_std", "duration_register_s"} <= next(iter(keys))  # 0 metrics missing
    for r in runs:
        assert [m.step for m in client.get_metric_history(r.info.run_id, "cv_accuracy_fold")] == [0, 1, 2]  # every fold
        source = r.data.tags["dataset.training.source"]
        assert source.startswith("postgresql") and source.endswith("/postgres#team_data"), source  # read from PostgreSQL
    versions = client.search_model_versions("name='team_model'")
    assert sorted(v.run_id for v in versions) == sorted(r.info.run_id for r in runs)  # every run's model registered once
    assert sorted(int(v.version) for v in versions) == list(range(1, N_RUNS + 1))
    staging = client.get_model_version_by_alias("team_model", "staging")
    assert staging.run_id in {r.info.run_id for r in runs}  # the alias points at one of them, consistently
    assert all(r.data.tags["registered"] == "true" for r in runs)
    assert len(list(artifacts.rglob("MLmodel"))) >= N_RUNS  # the models went to the served artifact store
    mlflow.set_tracking_uri(url)
    try: assert mlflow.pyfunc.load_model("models:/team_model@staging").metadata.run_id == staging.run_id  # loads back over HTTP
    finally: mlflow.set_tracking_uri(None)


def test_an_experiment_created_by_another_process_in_between_is_joined(team_server):
    "The race eight processes can hit: each looks the experiment up, finds none, and creates it; all but one are refused."
    from ml_workflow_training.tracking import _experiment_id
    url, _ = team_server

    class LookedTooEarly(mlflow.MlflowClient):  # its lookup ran just before another process created the experiment
        def get_experiment_by_name(self, name, _calls=[]):
            _calls.append(name)
            return None if len(_calls) == 1 else super().get_experiment_by_name(name)

    created_by_other = mlflow.MlflowClient(url).create_experiment("raced")
    assert _experiment_id(LookedTooEarly(url), "raced") == created_by_other


def test_runs_moving_an_alias_at_the_same_moment_all_finish(team_server):
    """Eight runs promote their versions at the same moment: a server has no lock of ours, and MLflow's own alias write is a
    read-then-insert, so all but one may be refused by the database; each must look again, never fail the run."""
    import threading
    from ml_workflow_training.tracking import promote
    url, _ = team_server
    client = mlflow.MlflowClient(url)
    client.create_registered_model("raced_alias")
    run_id = client.create_run(client.create_experiment("raced_alias")).info.run_id
    versions = [client.create_model_version("raced_alias", f"runs:/{run_id}/model", run_id).version for _ in range(N_RUNS)]
    mlflow.set_tracking_uri(url)
    try:
        for round in range(4):  # a fresh alias each round: the race is on its first write
            alias, start, errors = f"round{round}", threading.Barrier(N_RUNS), []

            def run(version):
                start.wait()
                try: promote("raced_alias", str(version), alias, None)
                except Exception as e: errors.append(repr(e))
            threads = [threading.Thread(target=run, args=(v,)) for v in versions]
            for t in threads: t.start()
            for t in threads: t.join()
            assert errors == []
            assert client.get_model_version_by_alias("raced_alias", alias).version in {str(v) for v in versions}
    finally: mlflow.set_tracking_uri(None)


def test_runs_logging_the_same_dataset_at_the_same_moment_all_log_it(team_server):
    """Eight runs of one experiment log the same table at the same moment: MLflow looks the dataset row up and inserts it
    when absent, so all but one insert may be refused by the database (CI saw a run fail in `connect` this way)."""
    import threading
    import numpy as np
    import pandas as pd
    from ml_workflow_training.data import dataset_fingerprint
    from ml_workflow_training.tracking import log_dataset
    url, _ = team_server
    client = mlflow.MlflowClient(url)
    experiment_id = client.create_experiment("raced_dataset")
    mlflow.set_tracking_uri(url)
    try:
        for round in range(6):  # a new table each round: the race is on its first insert
            X = pd.DataFrame({"a": np.arange(100.0) + round})
            y = pd.Series(np.arange(100) % 2, name="label")
            fingerprint = dataset_fingerprint(X, y)
            run_ids = [client.create_run(experiment_id).info.run_id for _ in range(N_RUNS)]
            start, errors = threading.Barrier(N_RUNS), []

            def log(run_id):
                start.wait()
                try: log_dataset(X, y, fingerprint, "postgresql://db#t", name="t", run_id=run_id)
                except Exception as e: errors.append(repr(e))
            threads = [threading.Thread(target=log, args=(r,)) for r in run_ids]
            for t in threads: t.start()
            for t in threads: t.join()
            assert errors == []
            digests = {client.get_run(r).inputs.dataset_inputs[0].dataset.digest for r in run_ids}
            assert digests == {fingerprint["content_hash"][:36]}  # every run holds the one dataset
    finally:
        mlflow.set_tracking_uri(None)
