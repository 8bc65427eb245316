"""Shared fixtures: real SQLite stores in temporary folders, free ports, processes started and stopped, a real PostgreSQL."""
import functools
import glob
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import pytest

BIN = Path(sys.executable).parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_http(url: str, proc: subprocess.Popen, timeout: float = 180) -> None:
    "Poll `url` until it answers 200, the process dies, or `timeout` passes."
    deadline = time.time() + timeout
    while time.time() < deadline:
        if proc.poll() is not None: raise RuntimeError(f"process exited with {proc.returncode} before {url} answered")
        try:
            with urllib.request.urlopen(url, timeout=2) as r:
                if r.status == 200: return
        except OSError: pass
        time.sleep(1)
    raise TimeoutError(f"{url} did not answer within {timeout} s")


WARNING_LINE = re.compile(r"\b[A-Z]\w*Warning\b:|^warning: ", re.M)  # "FutureWarning: ...", "UserWarning: ...", and the CLI's own "warning: ..."


def warning_lines(*texts: str, notebooks=()) -> list[str]:
    "The warning lines in `texts` (a process's output) and in the stderr of `notebooks` (executed .ipynb paths)."
    import json
    streams = list(texts)
    for nb in notebooks:
        cells = json.loads(Path(nb).read_text())["cells"]
        streams += ["".join(o.get("text", "")) for c in cells for o in c.get("outputs", []) if o.get("name") == "stderr"]
    return [line for text in streams for line in text.splitlines() if WARNING_LINE.search(line)]


def start_process(args, log: Path, env=None, cwd=None) -> subprocess.Popen:
    "Start `args` in its own process group (so stopping it stops its children too)."
    return subprocess.Popen(args, stdout=log.open("w"), stderr=subprocess.STDOUT, start_new_session=True,
                            env={**os.environ, **(env or {})}, cwd=cwd)


def stop_process(proc: subprocess.Popen) -> None:
    try: os.killpg(proc.pid, signal.SIGTERM)
    except ProcessLookupError: return
    try: proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


def children_of(pid: int) -> list[int]:
    "The live processes whose parent is `pid` (from /proc)."
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit(): continue
        try: state, ppid = open(f"/proc/{entry}/stat").read().rsplit(")", 1)[1].split()[:2]
        except (OSError, ValueError): continue
        if int(ppid) == pid and state != "Z": found.append(int(entry))
    return found


def loky_workers_in(folder) -> list[int]:
    "The live loky worker processes working in `folder`, whoever their parent is now (from /proc)."
    found = []
    for entry in os.listdir("/proc"):
        try:
            if "popen_loky_posix" in open(f"/proc/{entry}/cmdline").read() and os.readlink(f"/proc/{entry}/cwd") == str(folder):
                found.append(int(entry))
        except (OSError, ValueError): continue
    return found


def eventually(condition, seconds: float) -> bool:
    "Whether `condition()` holds within `seconds`, asked every half second."
    deadline = time.time() + seconds
    while not condition():
        if time.time() >= deadline: return False
        time.sleep(0.5)
    return True


def all_gone(pids: list[int], seconds: float = 30) -> list[int]:
    "Those of `pids` still alive (zombies count as gone) after waiting up to `seconds`."
    def alive(pid):
        try: return open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()[0] != "Z"
        except OSError: return False
    eventually(lambda: not any(alive(p) for p in pids), seconds)
    return [p for p in pids if alive(p)]


@pytest.fixture
def workdir(tmp_path, monkeypatch):
    "A fresh working folder with the seed's database at data/ml_workflow.db, as `make train` leaves it."
    from ml_workflow_training import generate_database
    monkeypatch.chdir(tmp_path)
    generate_database("data/ml_workflow.db")
    (tmp_path / "data" / "runs").mkdir()
    yield tmp_path
    import mlflow
    mlflow.set_tracking_uri(None)


@pytest.fixture(scope="session")
def mlflow_server(tmp_path_factory):
    "A real `mlflow server` on 127.0.0.1 at a free port, with its own SQLite store and artifact folder."
    root = tmp_path_factory.mktemp("server")
    port = free_port()
    proc = start_process([str(BIN / "mlflow"), "server", "--host", "127.0.0.1", "--port", str(port),
                          "--backend-store-uri", f"sqlite:///{root}/server.db", "--artifacts-destination", str(root / "artifacts"),
                          "--workers", "1"], root / "server.log", env={"MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"})
    url = f"http://127.0.0.1:{port}"
    try:
        wait_http(f"{url}/health", proc)
        yield url
    finally:
        stop_process(proc)


PG_BIN = next(iter(sorted(glob.glob("/usr/lib/postgresql/*/bin"), reverse=True)), None)


def _as_postgres(*args):
    "Run a server binary as the postgres user (initdb refuses root)."
    runner = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
    return subprocess.run(runner + list(args), capture_output=True, text=True, check=True)


@pytest.fixture(scope="session")
def postgres_url():
    if PG_BIN is None:  # a developer may lack the server; CI installs it, so there a missing server is a failure
        (pytest.fail if os.environ.get("CI") == "true" else pytest.skip)("PostgreSQL server binaries not installed (Debian package 'postgresql')")
    if os.environ.get("CI") == "true": import psycopg  # noqa: F401  (CI installs the dev extra: no driver is a failure)
    else: pytest.importorskip("psycopg", reason="no PostgreSQL driver: pip install 'psycopg[binary]'")
    data = Path(tempfile.mkdtemp(prefix="pg-"))
    if os.geteuid() == 0: shutil.chown(data, "postgres", "postgres")
    port = free_port()
    _as_postgres(f"{PG_BIN}/initdb", "-D", str(data / "db"), "-A", "trust", "-U", "postgres")
    _as_postgres(f"{PG_BIN}/pg_ctl", "-D", str(data / "db"), "-l", str(data / "log"), "-w", "-o",
                 f"-p {port} -h 127.0.0.1 -k {data}", "start")
    try: yield f"postgresql+psycopg://postgres@127.0.0.1:{port}/postgres"
    finally: _as_postgres(f"{PG_BIN}/pg_ctl", "-D", str(data / "db"), "-m", "fast", "stop")


def entry_point_command(entry: str, params: dict, out, sweep_runs: list[dict], workdir: Path) -> list[str]:
    "The command running the training notebook with `params` through `entry`: mlwt-notebook, plain papermill, or mlwt-sweep over `sweep_runs`."
    import yaml
    from ml_workflow_training.notebook import template_path
    pairs = [x for k, v in params.items() for x in ("-p", k, str(v))]  # papermill's -p reads values as typed: "optuna", 30, False
    if entry == "mlwt-notebook": return [str(BIN / "mlwt-notebook"), "run", "-o", str(out), *pairs]
    if entry == "papermill": return [str(BIN / "papermill"), str(template_path()), str(out), *pairs]
    (workdir / "sweep.yaml").write_text(yaml.safe_dump({"base": params, "runs": sweep_runs}))
    return [str(BIN / "mlwt-sweep"), "sweep.yaml"]


# Under pytest-xdist (`make pytest` runs two workers) the tests that share an expensive module- or session-scoped
# fixture run on one worker, so that it is built once: a second wheel venv, Dask cluster or PostgreSQL server would cost
# minutes. Which fixtures, read from each test function's arguments; every other test is scheduled on its own.
# (xdist's own `--dist loadgroup` reads markers through `item._nodeid`, which pytest 9 no longer uses: it scheduled every
# test apart.)
SHARED_FIXTURE_GROUPS = {"wheel": "wheel", "fresh": "wheel", "cluster": "cluster", "postgres_url": "postgres",
                         "team_server": "postgres", "mlflow_server": "mlflow_server", "threshold_by_api": "threshold_by_api",
                         "rare_lr_by_api": "rare_lr_by_api", "big_db": "big_db"}


@functools.cache
def shared_fixture_groups(path: Path) -> dict[str, str]:
    "The test functions of the file at `path` that take a fixture of SHARED_FIXTURE_GROUPS, and its group."
    import ast
    tests = [f for f in ast.parse(path.read_text()).body if isinstance(f, ast.FunctionDef) and f.name.startswith("test")]
    return {f.name: group for f in tests
            for group in [next((SHARED_FIXTURE_GROUPS[a.arg] for a in f.args.args if a.arg in SHARED_FIXTURE_GROUPS), None)] if group}


def scheduling_unit(rootdir: Path, nodeid: str) -> str:
    "The unit a test is scheduled in: its shared fixture's group, or the test itself."
    file, _, name = nodeid.partition("::")
    group = shared_fixture_groups(rootdir / file).get(name.split("[")[0]) if file.endswith(".py") else None
    return f"group:{group}" if group else nodeid


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_make_scheduler(config, log):
    from xdist.scheduler import LoadScopeScheduling

    class SharedFixtureScheduling(LoadScopeScheduling):
        "Units as `scheduling_unit` says, the largest first, handed to whichever worker is free."
        def _split_scope(self, nodeid: str) -> str: return scheduling_unit(config.rootpath, nodeid)
    return SharedFixtureScheduling(config, log)
