"""Tuning and cross-validation on a real Dask cluster: a scheduler and two workers started as separate processes on
127.0.0.1 (no in-process local cluster), against the same run on loky."""
import os
import signal
import subprocess
import time

import mlflow
import pytest
from joblib import Parallel, delayed, parallel_config

distributed = pytest.importorskip("distributed", reason="the distributed extra is not installed: pip install -e '.[distributed]'")

from conftest import BIN, entry_point_command, free_port, start_process, stop_process
from ml_workflow_training import (CalibrationSpecBuilder, ComputeSpec, EngineError, FeatureSpecBuilder, GridSearchSpecBuilder,
                                  MLflowSpecBuilder, ModelSpecBuilder, TrainingSpec, reproduce_run, run_ml_workflow,
                                  run_training)
from ml_workflow_training.engine import compute_engine, connect_engine

FEATURES = [f"feature_{i}" for i in range(20)]
GRID = {"classifier__n_estimators": [50, 100, 200], "classifier__learning_rate": [0.01, 0.1]}  # the seed's grid


def start_cluster(tmp_path, n_workers: int = 2) -> tuple[str, list[subprocess.Popen]]:
    "`dask scheduler` and `dask worker`s as separate processes; returns the address once every worker has joined."
    port = free_port()
    address = f"tcp://127.0.0.1:{port}"
    procs = [start_process([str(BIN / "dask"), "scheduler", "--host", "127.0.0.1", "--port", str(port), "--no-dashboard"],
                           tmp_path / "scheduler.log")]
    procs += [start_process([str(BIN / "dask"), "worker", address, "--nthreads", "1", "--no-dashboard", "--host", "127.0.0.1",
                             "--name", f"w{i}"], tmp_path / f"worker{i}.log") for i in range(n_workers)]
    with distributed.Client(address, timeout=60) as client: client.wait_for_workers(n_workers, timeout=120)
    return address, procs


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    address, procs = start_cluster(tmp_path_factory.mktemp("dask"))
    yield address
    for p in procs: stop_process(p)


def seed_spec(uri: str, compute: ComputeSpec, experiment: str = "dist") -> TrainingSpec:
    "The seed's production workflow: grid 3 x 2 over 5 folds, sigmoid calibration by 5 folds, 5-fold CV, registry."
    return TrainingSpec(features=FeatureSpecBuilder().add_numeric_group(FEATURES).build(),
                        model=ModelSpecBuilder().add_classifier("dist_gb").build()[0],
                        tuning=GridSearchSpecBuilder().set_param_grid(GRID).set_cv_folds(5).build(),
                        calibration=CalibrationSpecBuilder().set_method("sigmoid").set_cv_strategy(5).build(),
                        mlflow=MLflowSpecBuilder().enable().set_tracking_uri(uri).set_experiment(experiment)
                        .enable_model_registry(stage="Staging").build(), compute=compute)


def test_seed_grid_on_the_cluster_equals_loky(workdir, cluster):
    uri = f"sqlite:///{workdir}/mlflow.db"
    on_loky = run_training(seed_spec(uri, ComputeSpec()), verbose=False)
    s = seed_spec(uri, ComputeSpec(backend="dask", address=cluster))  # the seed's API, with the cluster named
    on_dask = run_ml_workflow(s.features, s.model, tuning_spec=s.tuning, calibration_spec=s.calibration, mlflow_spec=s.mlflow,
                              compute_spec=s.compute, verbose=False)
    assert on_dask.tuning_summary["best_params"] == on_loky.tuning_summary["best_params"] == \
        {"classifier__learning_rate": 0.1, "classifier__n_estimators": 200}
    for metric, v in on_loky.cv.items():
        if isinstance(v, dict) and "folds" in v and metric != "fit_time": assert on_dask.cv[metric]["folds"] == v["folds"], metric
    assert on_dask.spec_hash == on_loky.spec_hash  # the same work wherever it runs
    client = mlflow.MlflowClient(uri)
    run = client.get_run(on_dask.mlflow_run_id)
    assert run.info.status == "FINISHED" and on_dask.registered
    assert run.data.tags["engine"] == "dask" and run.data.tags["engine.address"] == cluster
    assert run.data.tags["engine.workers"] == "2" and run.data.tags["engine.cores"] == "2"
    assert client.get_run(on_loky.mlflow_run_id).data.tags["engine"] == "loky"
    children = client.search_runs([run.info.experiment_id], f"tags.mlflow.parentRunId = '{run.info.run_id}'")
    assert sorted((c.data.params["n_estimators"], c.data.params["learning_rate"]) for c in children) == \
        sorted((str(n), str(lr)) for n in GRID["classifier__n_estimators"] for lr in GRID["classifier__learning_rate"])
    again = reproduce_run(on_dask.mlflow_run_id, uri, verbose=False)  # checked on this machine, from what the run logged
    assert again["match"] and again["same_data"], again["metrics"]
    with distributed.Client(cluster) as c:  # tracking stayed on the driver: no worker ever imported MLflow
        assert c.run(eval, "'mlflow' in __import__('sys').modules") == {w: False for w in c.ncores()}
        assert c.run(eval, "'sklearn.ensemble' in __import__('sys').modules") == {w: True for w in c.ncores()}  # they did fit


@pytest.mark.parametrize("entry", ["mlwt-notebook", "papermill", "mlwt-sweep"])
def test_the_training_notebook_runs_its_fits_on_the_cluster(workdir, cluster, entry):
    params = {"dask_address": cluster, "tuning": False, "calibration": False, "n_estimators": 30, "experiment": f"nb-{entry}"}
    cmd = entry_point_command(entry, params, "data/runs/dask.ipynb", [{"n_estimators": 20}, {"n_estimators": 30}], workdir)
    r = subprocess.run(cmd, cwd=workdir, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-3000:]
    client = mlflow.MlflowClient(f"sqlite:///{workdir}/mlflow.db")
    runs = [r for r in client.search_runs([client.get_experiment_by_name(f"nb-{entry}").experiment_id]) if "engine" in r.data.tags]
    assert len(runs) == (2 if entry == "mlwt-sweep" else 1)
    for run in runs:  # each run's cross-validation folds ran on the cluster's two workers
        assert run.info.status == "FINISHED" and run.data.tags["engine"] == "dask" and run.data.tags["engine.address"] == cluster
        assert run.data.tags["engine.workers"] == "2" and run.data.metrics["cv_accuracy_mean"] > 0.8


@pytest.mark.parametrize("threads", [1, 2])
def test_each_fit_on_a_worker_keeps_the_specs_thread_limit(cluster, threads):
    from threadpoolctl import threadpool_info
    spec = ComputeSpec(backend="dask", address=cluster, worker_threads=threads)
    client = connect_engine(spec)
    try:
        client.run(__import__, "sklearn.ensemble")  # loads scikit-learn's OpenMP runtime on each worker
        with compute_engine(spec, client) as config, parallel_config(**config):
            infos = Parallel(n_jobs=-1)(delayed(threadpool_info)() for _ in range(4))
    finally:
        client.close()
    openmp = [p["num_threads"] for info in infos for p in info if p["user_api"] == "openmp"]
    assert len(openmp) >= 4 and set(openmp) == {threads}


def test_worker_killed_mid_search_completes_or_fails_clearly(workdir, tmp_path):
    address, procs = start_cluster(tmp_path)
    try:
        spec = seed_spec(f"sqlite:///{workdir}/mlflow.db", ComputeSpec(backend="dask", address=address), experiment="killed")
        spec.save(workdir / "spec.yaml")
        train = subprocess.Popen([str(BIN / "mlwt-train"), "--spec", "spec.yaml"], cwd=workdir, stdout=subprocess.PIPE,
                                 stderr=subprocess.PIPE, text=True)
        with distributed.Client(address) as c:
            deadline = time.time() + 120
            while not any(c.processing().values()):  # the search has started on the workers
                assert time.time() < deadline and train.poll() is None, "the search never reached the workers"
                time.sleep(0.1)
            time.sleep(1.0)
            os.killpg(procs[1].pid, signal.SIGKILL)  # the first worker and its nanny, mid-search
            procs[1].wait()
            out, err = train.communicate(timeout=600)
            assert len(c.ncores()) == 1  # the scheduler lost the worker for good
    finally:
        for p in procs: stop_process(p)
    client = mlflow.MlflowClient(f"sqlite:///{workdir}/mlflow.db")
    run = client.search_runs([client.get_experiment_by_name("killed").experiment_id], "tags.engine = 'dask'")[0]
    # Dask reruns the lost worker's tasks on the other: the search completes, with the same result as ever
    assert train.returncode == 0, err
    assert run.info.status == "FINISHED" and run.data.tags["registered"] == "true"
    summary = mlflow.artifacts.load_dict(f"{run.info.artifact_uri}/tuning/summary.json")
    assert summary["best_params"] == {"classifier__learning_rate": 0.1, "classifier__n_estimators": 200}
    assert run.data.metrics["cv_accuracy_mean"] == 0.945  # what loky and an intact cluster find (test above)


def test_unreachable_cluster_fails_before_any_compute(workdir, monkeypatch):
    import ml_workflow_training.workflow as wf
    monkeypatch.setattr(wf, "load_data", lambda *a, **k: pytest.fail("data was loaded before the cluster was checked"))
    address = f"tcp://127.0.0.1:{free_port()}"
    spec = seed_spec(f"sqlite:///{workdir}/mlflow.db", ComputeSpec(backend="dask", address=address, connect_timeout_s=2), "gone")
    t0 = time.perf_counter()
    with pytest.raises(EngineError, match=f"cannot reach the Dask scheduler at {address} within 2 s"):
        run_training(spec, verbose=False)
    assert time.perf_counter() - t0 < 20
    assert not (workdir / "mlflow.db").exists()  # the store was not even opened: no experiment, no run
    spec.save(workdir / "spec.yaml")  # the console command: one line, exit 1
    r = subprocess.run([str(BIN / "mlwt-train"), "--spec", "spec.yaml"], cwd=workdir, capture_output=True, text=True, timeout=120)
    assert r.returncode == 1 and "Traceback" not in r.stderr
    assert f"cannot reach the Dask scheduler at {address}" in r.stderr and len(r.stderr.strip().splitlines()) == 1, r.stderr


def test_a_scheduler_without_workers_is_one_clear_error(tmp_path):
    port = free_port()
    proc = start_process([str(BIN / "dask"), "scheduler", "--host", "127.0.0.1", "--port", str(port), "--no-dashboard"],
                         tmp_path / "scheduler.log")
    try:
        with distributed.Client(f"tcp://127.0.0.1:{port}", timeout=60): pass  # up
        with pytest.raises(EngineError, match=f"the Dask scheduler at tcp://127.0.0.1:{port} has no workers after 2 s"):
            connect_engine(ComputeSpec(backend="dask", address=f"tcp://127.0.0.1:{port}", connect_timeout_s=2))
    finally:
        stop_process(proc)


def test_an_optuna_study_on_the_cluster_runs_the_loky_trials(workdir, cluster):
    pytest.importorskip("optuna", reason="the optuna extra is not installed: pip install -e '.[optuna]'")
    from ml_workflow_training import TuningSpec
    uri = f"sqlite:///{workdir}/mlflow.db"
    space = {"classifier__n_estimators": [20, 40], "classifier__learning_rate": {"dist": "loguniform", "low": 0.01, "high": 0.3}}
    base = seed_spec(uri, ComputeSpec(), "optuna-dist").model_copy(update={
        "tuning": TuningSpec(strategy="optuna", n_iter=6, cv_folds=3, param_grid=space), "calibration": None})
    on_loky = run_training(base, verbose=False)
    on_dask = run_training(base.model_copy(update={"compute": ComputeSpec(backend="dask", address=cluster)}), verbose=False)
    trials = lambda r: [(c["number"], c["params"], c["state"], c["fold_scores"]) for c in r.tuning_summary["candidates"]]
    assert trials(on_dask) == trials(on_loky) and len(trials(on_dask)) == 6
    client = mlflow.MlflowClient(uri)
    children = client.search_runs([client.get_run(on_dask.mlflow_run_id).info.experiment_id],
                                  f"tags.mlflow.parentRunId = '{on_dask.mlflow_run_id}'")
    assert sorted(c.info.run_name for c in children) == [f"trial-{i:03d}" for i in range(6)]
    assert client.get_run(on_dask.mlflow_run_id).data.tags["engine"] == "dask"
