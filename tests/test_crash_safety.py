"""Crash safety with real processes on real SQLite stores: many runs at once on a new store, SIGTERM and Ctrl-C
mid-run, `kill -9` and the sweeper. Every entry point that trains: `mlwt-train`, `mlwt-notebook run`, plain papermill."""
import glob
import os
import signal
import subprocess
import sys
import time

import mlflow
import pandas as pd
import pytest
import yaml

from conftest import BIN, all_gone, children_of, eventually, loky_workers_in
from ml_workflow_training import default_training_spec, generate_database
from ml_workflow_training.notebook import template_path

pytestmark = pytest.mark.slow
TINY_NB = ["-p", "tuning", "false", "-p", "calibration", "false", "-p", "n_estimators", "10"]


def write_spec(workdir, name="tiny.yaml", long=False, db=None):
    "The seed's spec, tiny (no tuning, no calibration, 10 trees) or long enough to interrupt (a 12-candidate grid); `db`: another table's."
    spec = default_training_spec()
    update = {"calibration": None, "model": spec.model.model_copy(update={"hyperparameters": {"n_estimators": 10}})}
    if db: update["data"] = spec.data.model_copy(update={"db": db})
    update["tuning"] = spec.tuning.model_copy(update={"param_grid": {"classifier__n_estimators": [100, 200, 300, 400],
                                                                     "classifier__learning_rate": [0.01, 0.05, 0.1]}}) if long else None
    spec.model_copy(update=update).save(workdir / name)


def store(workdir):
    if not (workdir / "mlflow.db").exists(): return None, []  # a client of a store not there yet would create it, racing the run
    client = mlflow.MlflowClient(f"sqlite:///{workdir}/mlflow.db")
    exp = client.get_experiment_by_name("production_models")
    return client, (client.search_runs([exp.experiment_id]) if exp else [])


def start_and_wait_for_training(workdir, spec="long.yaml"):
    "Start `mlwt-train`; return the process once its run is open and tuning has begun."
    p = subprocess.Popen([str(BIN / "mlwt-train"), "--spec", spec], cwd=workdir, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 180
    while time.time() < deadline:
        line = p.stdout.readline()
        if line.startswith("[check"): break  # the data is ready: the run opens in the background as tuning starts
        assert line or p.poll() is None, p.stderr.read()
    return p, wait_for_running_run(workdir, p).info.run_id


def assert_healthy(workdir, n_runs):
    client, runs = store(workdir)
    assert len(runs) == n_runs and all(r.info.status == "FINISHED" for r in runs), [r.info.status for r in runs]
    assert all({"cv_accuracy_mean", "cv_roc_auc_std", "duration_register_s"} <= set(r.data.metrics) for r in runs)
    versions = client.search_model_versions("name='gradient_boost_v1'")
    assert sorted(int(v.version) for v in versions) == list(range(1, n_runs + 1))
    assert {v.run_id for v in versions} == {r.info.run_id for r in runs}
    staging = client.get_model_version_by_alias("gradient_boost_v1", "staging")
    assert staging.version in {v.version for v in versions}


def test_eight_trainings_at_once_on_a_new_store_lose_nothing(workdir):
    "Eight `mlwt-train` at once on a store none of them finds: one round (the next test is a second, through every entry point)."
    write_spec(workdir)
    procs = [subprocess.Popen([str(BIN / "mlwt-train"), "--spec", "tiny.yaml", "--quiet"], cwd=workdir,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(8)]
    outs = [p.communicate(timeout=900) for p in procs]
    assert [p.returncode for p in procs] == [0] * 8, [err[-800:] for _, err in outs]
    assert_healthy(workdir, 8)


def test_a_mix_of_entry_points_at_once_on_a_new_store_loses_nothing(workdir):
    write_spec(workdir)
    uri = f"sqlite:///{workdir}/mlflow.db"
    commands = [[str(BIN / "mlwt-train"), "--spec", "tiny.yaml", "--quiet"]] * 3
    commands += [[str(BIN / "mlwt-notebook"), "run", *TINY_NB, "-o", f"data/runs/cli-{i}.ipynb"] for i in range(3)]
    commands += [[str(BIN / "papermill"), str(template_path()), f"data/runs/pm-{i}.ipynb", *TINY_NB, "-p", "tracking_uri", uri]
                 for i in range(2)]
    procs = [subprocess.Popen(c, cwd=workdir, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for c in commands]
    outs = [p.communicate(timeout=900) for p in procs]
    assert [p.returncode for p in procs] == [0] * 8, [err[-800:] for _, err in outs]
    assert_healthy(workdir, 8)


@pytest.mark.parametrize("sig, code", [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
def test_a_signal_mid_run_ends_it_killed_with_its_step_and_registers_nothing(workdir, sig, code):
    write_spec(workdir, "long.yaml", long=True)
    p, run_id = start_and_wait_for_training(workdir)
    workers = children_of(p.pid)
    p.send_signal(sig)
    _, err = p.communicate(timeout=120)
    assert workers and all_gone(workers) == []
    assert p.returncode == code and err.strip().splitlines()[-1] == f"error: interrupted by {sig.name}", err[-2000:]
    client, (run,) = store(workdir)
    assert run.info.run_id == run_id and run.info.status == "KILLED"
    assert run.data.tags["failed_step"] == "tune" and run.data.tags["registered"] == "false"
    assert sig.name in run.data.tags["error"] or "KeyboardInterrupt" in run.data.tags["error"]
    assert {"spec.yaml", "versions.json"} <= {a.path for a in client.list_artifacts(run_id)}  # logged as it opened
    assert client.search_registered_models() == []


def test_ctrl_c_to_the_whole_process_group_ends_the_run_killed_its_record_keeper_recording_it(workdir):
    "A terminal's Ctrl-C reaches every process of the group: the record keeper ignores it and records the run KILLED as mlwt-train says."
    write_spec(workdir, "long.yaml", long=True)
    p = subprocess.Popen([str(BIN / "mlwt-train"), "--spec", "long.yaml"], cwd=workdir, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         text=True, start_new_session=True)
    deadline = time.time() + 180
    while time.time() < deadline:
        line = p.stdout.readline()
        if line.startswith("[check"): break
        assert line or p.poll() is None, p.stderr.read()
    run_id = wait_for_running_run(workdir, p).info.run_id
    workers = children_of(p.pid)
    os.killpg(p.pid, signal.SIGINT)
    _, err = p.communicate(timeout=120)
    assert p.returncode == 130 and err.strip().splitlines()[-1] == "error: interrupted by SIGINT", err[-2000:]
    assert all_gone(workers) == []
    client, (run,) = store(workdir)
    assert (run.info.run_id, run.info.status, run.data.tags["failed_step"], run.data.tags["mlwt.recorded_by"]) == (run_id, "KILLED", "tune", "a process of its own")
    assert client.search_registered_models() == []


WORKERS_THAT_SLEEP = """
import time
from joblib import Parallel, delayed, parallel_config
from ml_workflow_training.engine import loky_config
with parallel_config(**loky_config(1)):
    Parallel(n_jobs=2)(delayed(time.sleep)(60) for _ in range(2))
"""


def test_workers_whose_parent_dies_while_they_start_end_too():
    "`kill -9` of the parent the moment its loky workers exist: they are still starting, adopted before their first check."
    p = subprocess.Popen([sys.executable, "-c", WORKERS_THAT_SLEEP])
    deadline, workers = time.time() + 60, []
    while not workers and time.time() < deadline:
        workers = [w for w in children_of(p.pid) if "popen_loky_posix" in open(f"/proc/{w}/cmdline").read()]
        time.sleep(0.005)
    assert workers, "no loky worker started"
    p.kill(); p.wait()
    # each must still import the package (seconds idle, 30+ s on a busy CI worker) before its check runs; one that missed
    # it would wait on a task queue nobody writes until loky's 300 s idle timeout, so 120 s still tells the two apart
    assert all_gone(workers, 120) == [], "workers orphaned while starting stayed, blocked on a task queue nobody writes"


def children_running(pid: int, marker: str) -> list[int]:
    "The live children of `pid` whose command line holds `marker`."
    found = []
    for child in children_of(pid):
        try:
            if marker in open(f"/proc/{child}/cmdline").read(): found.append(child)
        except OSError: pass  # it ended meanwhile
    return found


A_SAVE_THAT_SLEEPS = """
import sys
import time
import pandas as pd
from sklearn.dummy import DummyClassifier
from ml_workflow_training.tracking import PreparedModel

class Sleeps:  # unpickled in the saving process as a two-minute sleep, said by a file: a save still going when its run dies
    def __reduce__(self): return (exec, (f"import pathlib, time; pathlib.Path({sys.argv[1]!r}).touch(); time.sleep(120)",))

X = pd.DataFrame({"a": [0.0, 1.0, 2.0, 3.0]})
prepared = PreparedModel(DummyClassifier().fit(X, [0, 1, 0, 1]), X)
prepared.model = Sleeps()
saving = prepared.save_beside(serial=True)  # as a run with serial folds saves its model while it goes on
print("saving", flush=True)
saving.result()
"""


@pytest.mark.parametrize("how", [signal.SIGKILL, signal.SIGTERM])
def test_a_model_saving_process_ends_with_its_run(how, tmp_path):
    "The process that writes the final model (serial folds) must not outlive a killed run."
    saving = tmp_path / "saving"
    p = subprocess.Popen([sys.executable, "-c", A_SAVE_THAT_SLEEPS, str(saving)], stdout=subprocess.PIPE, text=True)
    assert p.stdout.readline().strip() == "saving"
    # a child just forked still shows its parent's command line, until it runs its own
    assert eventually(lambda: children_running(p.pid, "save_model_job"), 30), f"no saving process started: {children_of(p.pid)}"
    savers = children_running(p.pid, "save_model_job")
    assert len(savers) == 1, savers
    # past its imports (seconds on a busy machine) and into the save: what ends it now is its watch on the run, nothing else
    assert eventually(saving.exists, 120), "the saving process never reached its save"
    p.send_signal(how)
    p.wait(30)
    assert all_gone(savers, 30) == [], f"the saving process outlived its run ({signal.Signals(how).name})"  # its save sleeps 120 s


def test_kill_9_of_a_serial_mlwt_train_while_its_record_keeper_saves_the_model_ends_the_keeper_too(workdir):
    "mlwt-train's run is recorded by a process of its own, which writes the calibrated model while the cross-validation goes on; kill -9 of mlwt-train ends it too."
    spec = default_training_spec()  # 2 x 2000 trees: a save that takes long enough to be still going when the run is killed
    spec.model_copy(update={"tuning": None, "validation": spec.validation.model_copy(update={"n_jobs": 1}),
                            "calibration": spec.calibration.model_copy(update={"cv_folds": 2}),
                            "model": spec.model.model_copy(update={"hyperparameters": {"n_estimators": 2000}})}).save(workdir / "serial.yaml")
    (workdir / "tmp").mkdir()
    p = subprocess.Popen([str(BIN / "mlwt-train"), "--spec", "serial.yaml", "--quiet"], cwd=workdir, env={**os.environ, "TMPDIR": str(workdir / "tmp")},
                         stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)

    def keepers() -> list[int]: return children_running(p.pid, "keep_run")
    deadline = time.time() + 180
    while not keepers() and p.poll() is None and time.time() < deadline: time.sleep(0.05)
    keeper = keepers()
    assert len(keeper) == 1, f"no record keeper was seen (exit {p.poll()}): {p.stderr.read()[-2000:] if p.poll() is not None else ''}"
    # the keeper opens the run as the fits start: the kill must come once the model is handed to it, as it writes
    def model_folders(): return list((workdir / "tmp").glob("mlwt-run-*/mlwt-model-*"))
    while not model_folders() and p.poll() is None and time.time() < deadline: time.sleep(0.05)
    assert model_folders(), f"the model was never handed to the record keeper (exit {p.poll()})"
    time.sleep(1)  # into the writing: what ends it now is its watch on the run
    assert not list((workdir / "tmp").glob("mlwt-run-*/mlwt-model-*/model/MLmodel")), "the save ended before the run was killed: the test proves nothing"
    assert all_gone(keeper, 0) == keeper
    p.kill(); p.wait()
    assert all_gone(keeper, 5) == [], "the record keeper outlived its killed mlwt-train"
    _, runs = store(workdir)
    assert [r.info.status for r in runs] == ["RUNNING"]  # what kill -9 leaves; the sweeper fails it (tested below)
    assert runs[0].data.tags["mlwt.recorded_by"] == "a process of its own" and runs[0].data.tags["mlwt.pid"] == str(p.pid)


def test_kill_9_leaves_a_run_that_the_sweeper_and_the_next_run_fail(workdir):
    write_spec(workdir, "long.yaml", long=True)
    write_spec(workdir)
    p, first = start_and_wait_for_training(workdir)
    workers = children_of(p.pid)  # the parallel tuning's workers (and joblib's resource tracker)
    assert len(workers) >= 2, workers
    p.kill(); p.wait()
    assert all_gone(workers) == [], "the killed run's workers outlived it"  # not left computing, 300 MB each, for nobody
    client, _ = store(workdir)
    assert client.get_run(first).info.status == "RUNNING"  # what kill -9 leaves, whatever the code does
    swept = subprocess.run([str(BIN / "mlwt-runs"), "sweep", "--tracking-uri", f"sqlite:///{workdir}/mlflow.db"], cwd=workdir,
                           capture_output=True, text=True)
    assert swept.returncode == 0 and first in swept.stdout and "1 run(s)" in swept.stdout, swept.stderr
    assert client.get_run(first).info.status == "FAILED" and "ended without closing the run" in client.get_run(first).data.tags["error"]
    p, second = start_and_wait_for_training(workdir)
    p.kill(); p.wait()
    ok = subprocess.run([str(BIN / "mlwt-train"), "--spec", "tiny.yaml", "--quiet"], cwd=workdir, capture_output=True, text=True)
    assert ok.returncode == 0, ok.stderr[-2000:]
    assert client.get_run(second).info.status == "FAILED"  # the next run on the store swept it
    assert [v.run_id for v in client.search_model_versions("name='gradient_boost_v1'")] == [ok.stdout.split("MLflow run")[1].split()[0]]


@pytest.mark.skipif(not os.path.isdir("/dev/shm"), reason="joblib memory-maps large arguments into /dev/shm on Linux")
def test_kill_9_mid_tune_frees_the_folds_shared_memory(workdir):
    "20,000 rows: joblib hands the workers the data as files in /dev/shm, which stay (RAM) while anything that uses them lives."
    generate_database("data/big.db", n_samples=20_000)
    write_spec(workdir, "long.yaml", long=True, db="data/big.db")
    p, _ = start_and_wait_for_training(workdir)
    shared, workers = glob.glob(f"/dev/shm/joblib_memmapping_folder_{p.pid}_*"), children_of(p.pid)
    assert shared and len(workers) >= 2, (shared, workers)
    p.kill(); p.wait()
    assert all_gone(workers) == []
    assert eventually(lambda: not any(os.path.exists(f) for f in shared), 30), shared  # joblib's resource tracker removed them once the workers ended


def wait_for_running_run(workdir, proc, seconds=180):
    "The run a notebook entry point opened, once it is RUNNING and tuning (a grid of 12 candidates) is under way."
    deadline = time.time() + seconds
    while time.time() < deadline:
        assert proc.poll() is None, (proc.communicate()[1] or "")[-2000:]
        running = [r for r in store(workdir)[1] if r.info.status == "RUNNING" and not r.data.tags.get("mlflow.parentRunId")]
        if running:
            time.sleep(4)
            return running[0]
        time.sleep(0.5)
    raise AssertionError("no run opened in time")


def process_gone(pid: int, seconds: float = 60) -> bool:
    def gone() -> bool:
        try: os.kill(pid, 0)
        except ProcessLookupError: return True
        return False
    return eventually(gone, seconds)


@pytest.mark.parametrize("sig, code", [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
def test_a_signal_to_mlwt_notebook_ends_its_run_killed_with_one_line_and_no_kernel_left(workdir, sig, code):
    write_spec(workdir, "long.yaml", long=True)
    p = subprocess.Popen([str(BIN / "mlwt-notebook"), "run", "-p", "spec_file", "long.yaml", "-o", "data/runs/stopped.ipynb"],
                         cwd=workdir, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    run = wait_for_running_run(workdir, p)
    workers = children_of(int(run.data.tags["mlwt.pid"]))  # the kernel's
    p.send_signal(sig)
    _, err = p.communicate(timeout=120)
    assert workers and all_gone(workers) == []
    assert p.returncode == code and err.strip().splitlines() == [f"error: interrupted by {sig.name}"], err[-3000:]
    client, runs = store(workdir)
    run = client.get_run(run.info.run_id)
    assert run.info.status == "KILLED" and run.data.tags["registered"] == "false" and run.data.tags["failed_step"] == "tune"
    assert run.data.tags["error"].startswith("KeyboardInterrupt: interrupted"), run.data.tags["error"]
    assert {"spec.yaml", "versions.json"} <= {a.path for a in client.list_artifacts(run.info.run_id)}  # logged as it opened
    assert process_gone(int(run.data.tags["mlwt.pid"]))  # the kernel that trained did not outlive its runner
    assert client.search_registered_models() == []


def test_sigterm_to_plain_papermill_leaves_no_kernel_and_a_run_the_sweeper_fails(workdir):
    "papermill is not ours: its kernel stops with it (ipykernel's parent poller), and the run left open is swept, never FINISHED."
    write_spec(workdir, "long.yaml", long=True)
    uri = f"sqlite:///{workdir}/mlflow.db"
    with open(workdir / "papermill.log", "w") as log:  # not pipes: the kernel's parallel workers may hold them open while they stop
        p = subprocess.Popen([str(BIN / "papermill"), str(template_path()), "data/runs/pm.ipynb", "-p", "spec_file", "long.yaml",
                              "-p", "tracking_uri", uri], cwd=workdir, stdout=log, stderr=log)
        run = wait_for_running_run(workdir, p)
        workers = children_of(int(run.data.tags["mlwt.pid"]))  # the kernel's
        p.send_signal(signal.SIGTERM)
        assert p.wait(timeout=60) == -signal.SIGTERM
    assert process_gone(int(run.data.tags["mlwt.pid"]))
    assert workers and all_gone(workers) == []
    client, _ = store(workdir)
    assert client.get_run(run.info.run_id).info.status != "FINISHED"
    swept = subprocess.run([str(BIN / "mlwt-runs"), "sweep", "--tracking-uri", uri], cwd=workdir, capture_output=True, text=True)
    assert swept.returncode == 0, swept.stderr
    after = client.get_run(run.info.run_id)
    assert after.info.status in ("FAILED", "KILLED") and after.data.tags["registered"] == "false"
    assert {"spec.yaml", "versions.json"} <= {a.path for a in client.list_artifacts(run.info.run_id)}  # logged as it opened
    assert client.search_registered_models() == []


def wait_for_sweep_trainings(workdir, proc, n: int, seconds=180) -> tuple[str, list]:
    "A sweep's parent run id and its `n` training runs, once all are RUNNING (their kernels are tuning)."
    deadline = time.time() + seconds
    while time.time() < deadline:
        assert proc.poll() is None, (proc.communicate()[1] or "")[-2000:]
        runs = store(workdir)[1]
        parents = [r for r in runs if "sweep.size" in r.data.tags]
        children = [r for r in runs if parents and r.data.tags.get("mlflow.parentRunId") == parents[0].info.run_id]
        if len(children) == n and all(r.info.status == "RUNNING" for r in children): return parents[0].info.run_id, children
        time.sleep(0.5)
    raise AssertionError("the sweep's runs did not open in time")


@pytest.mark.parametrize("sig, code", [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
def test_a_signal_to_mlwt_sweep_stops_its_runs_killed_starts_no_more_and_leaves_no_kernel(workdir, sig, code):
    "The sweep's running kernels are interrupted (their runs end KILLED in the step they were in), the run not yet started never starts, the parent ends KILLED, nothing is registered."
    write_spec(workdir, "long.yaml", long=True)
    uri = f"sqlite:///{workdir}/mlflow.db"
    (workdir / "sweep.yaml").write_text(yaml.safe_dump({"base": {"spec_file": "long.yaml", "tracking_uri": uri},
                                                        "runs": [{"run_name": "a"}, {"run_name": "b"}, {"run_name": "c"}]}))
    p = subprocess.Popen([str(BIN / "mlwt-sweep"), "sweep.yaml", "--max-parallel", "2"], cwd=workdir,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    parent, running = wait_for_sweep_trainings(workdir, p, 2)
    kernels = [int(r.data.tags["mlwt.pid"]) for r in running]
    workers = [w for k in kernels for w in children_of(k)]
    p.send_signal(sig)
    out, err = p.communicate(timeout=180)
    assert p.returncode == code and err.strip().splitlines()[-1] == f"error: interrupted by {sig.name}", err[-3000:]
    assert "Traceback" not in err and all_gone(kernels + workers) == []
    client, runs = store(workdir)
    trainings = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == parent]
    assert sorted(r.info.run_id for r in trainings) == sorted(r.info.run_id for r in running)  # the third never started
    for r in trainings:
        assert r.info.status == "KILLED" and r.data.tags["failed_step"] == "tune" and r.data.tags["registered"] == "false"
        assert {"spec.yaml", "versions.json"} <= {a.path for a in client.list_artifacts(r.info.run_id)}  # logged as it opened
    stopped = client.get_run(parent)
    assert stopped.info.status == "KILLED" and stopped.data.tags["error"] == f"the sweep was stopped: interrupted by {sig.name}"
    table = pd.read_csv(mlflow.artifacts.download_artifacts(run_id=parent, artifact_path="sweep_results.csv", tracking_uri=uri))
    assert sorted(table["status"]) == ["CANCELLED", "FAILED", "FAILED"]
    assert client.search_registered_models() == []


def test_kill_9_of_mlwt_sweep_leaves_a_parent_run_the_sweeper_fails(workdir):
    "Killed outright, a sweep cannot end its parent run: it carries the sweep's process, so the sweeper fails it."
    write_spec(workdir, "long.yaml", long=True)
    uri = f"sqlite:///{workdir}/mlflow.db"
    (workdir / "sweep.yaml").write_text(yaml.safe_dump({"base": {"spec_file": "long.yaml", "tracking_uri": uri}, "runs": [{"run_name": "a"}]}))
    p = subprocess.Popen([str(BIN / "mlwt-sweep"), "sweep.yaml", "--max-parallel", "1"], cwd=workdir,
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    parent, (training,) = wait_for_sweep_trainings(workdir, p, 1)
    kernel = int(training.data.tags["mlwt.pid"])
    assert eventually(lambda: loky_workers_in(workdir), 60)  # the kernel's tuning has started its workers
    p.kill()
    p.wait(timeout=30)
    assert process_gone(kernel)  # the kernel stops with its parent (ipykernel's parent poller)
    assert all_gone(loky_workers_in(workdir)) == [], "the kernel's loky workers outlived it"  # even those it was starting
    swept = subprocess.run([str(BIN / "mlwt-runs"), "sweep", "--tracking-uri", uri], cwd=workdir, capture_output=True, text=True)
    assert swept.returncode == 0, swept.stderr
    client, _ = store(workdir)
    assert {client.get_run(r).info.status for r in (parent, training.info.run_id)} == {"FAILED"}
    assert client.search_registered_models() == []


def test_interrupting_a_notebook_kernel_that_runs_sweep_stops_the_sweep_and_keeps_the_kernel(workdir):
    "Jupyter's stop button on a cell running the API's `sweep()`: its runs end KILLED, the rest never start, the user's kernel lives on."
    from jupyter_client.manager import start_new_kernel
    write_spec(workdir, "long.yaml", long=True)
    uri = f"sqlite:///{workdir}/mlflow.db"
    km, kc = start_new_kernel(kernel_name="python3", cwd=str(workdir))
    try:
        code = ("from ml_workflow_training.notebook import sweep\n"
                f"table = sweep([{{'run_name': 'a'}}, {{'run_name': 'b'}}], base={{'spec_file': 'long.yaml', 'tracking_uri': {uri!r}}}, max_parallel=1)")
        msg_id = kc.execute(code)
        kernel = km.provisioner.process
        parent, (running,) = wait_for_sweep_trainings(workdir, kernel, 1)
        sweep_kernel = int(running.data.tags["mlwt.pid"])
        km.interrupt_kernel()
        reply = kc.get_shell_msg(timeout=180)
        while reply["parent_header"].get("msg_id") != msg_id: reply = kc.get_shell_msg(timeout=180)
        assert reply["content"]["status"] == "error" and reply["content"]["ename"] == "KeyboardInterrupt", reply["content"]
        assert all_gone([sweep_kernel]) == [] and all_gone(loky_workers_in(workdir)) == []
        client, runs = store(workdir)
        (training,) = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == parent]  # the second never started
        assert training.info.status == "KILLED" and training.data.tags["failed_step"] == "tune"
        stopped = client.get_run(parent)
        assert stopped.info.status == "KILLED" and stopped.data.tags["error"] == "the sweep was stopped: interrupted by SIGINT"
        table = pd.read_csv(mlflow.artifacts.download_artifacts(run_id=parent, artifact_path="sweep_results.csv", tracking_uri=uri))
        assert sorted(table["status"]) == ["CANCELLED", "FAILED"]
        assert client.search_registered_models() == []
        kc.execute_interactive("alive = 1 + 1", timeout=60)  # the user's kernel goes on
        assert km.is_alive()
    finally:
        kc.stop_channels()
        km.shutdown_kernel(now=True)
