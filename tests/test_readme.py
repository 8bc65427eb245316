"""Every command the README prints works as printed, in a fresh clone: its shell blocks run in order with the project's
environment, then its Python blocks in one interpreter. Left out, each for a stated reason: `make test` (this suite) and
the blocks written for other machines. Afterwards the registry is checked for the accident issue 14 reported: the
README's notebook runs and sweep of another model type must not move the seed model's alias."""
import hashlib
import json
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import mlflow
import pytest

from conftest import BIN, start_process, stop_process, wait_http

ROOT = Path(__file__).resolve().parents[1]
VENV = Path(sys.executable).parent.parent
NOT_HERE = {"make test": "the whole suite, which is running this test"}
OTHER_MACHINES = {"tcp://SCHEDULER:8786": "a Dask cluster: tests/test_distributed.py starts one and runs these commands",
                  "DBHOST": "a team tracking server on PostgreSQL: tests/test_team_server.py starts one"}
SERVERS = ("mlflow models serve",)


def code_blocks(text: str) -> list[tuple[str, str]]:
    "The README's fenced code blocks, as (language, body)."
    return re.findall(r"```(bash|python)\n(.*?)```", text, flags=re.S)


def shell_commands(block: str) -> list[str]:
    "The commands of a shell block: lines joined across backslash continuations and quotes left open."
    commands, current = [], ""
    for line in block.splitlines():
        current += line + "\n"
        if current.rstrip().endswith("\\"): continue
        try: shlex.split(current, comments=True)
        except ValueError: continue  # a quote still open: the command goes on
        if current.strip(): commands.append(current.strip())
        current = ""
    assert not current.strip(), f"unterminated command in a README block: {current!r}"
    return commands


def test_commands_are_parsed_as_a_shell_reads_them():
    block = 'a \\\n  --x 1   # note\ncurl -d \'{"k":\n  [1]}\'\n\nb  # it\'s a comment\n'
    assert shell_commands(block) == ['a \\\n  --x 1   # note', 'curl -d \'{"k":\n  [1]}\'', "b  # it's a comment"]


@pytest.fixture
def fresh_clone(tmp_path):
    "A clone of this repository's HEAD sharing the suite's environment as its .venv (so `make` finds it set up)."
    stamp = hashlib.sha1((ROOT / "settings.ini").read_bytes() + (ROOT / "setup.py").read_bytes()).hexdigest()[:12]
    if not (VENV / f".installed-{stamp}").exists():  # make's own stamp for these settings: else `make train` reinstalls into it
        pytest.skip(f"{VENV} was not set up by `make` for this settings.ini and setup.py")
    clone = tmp_path / "clone"
    subprocess.run(["git", "clone", "-q", str(ROOT), str(clone)], check=True)
    (clone / ".venv").symlink_to(VENV)
    for f in ("settings.ini", "setup.py"): os.utime(clone / f, (0, 0))  # older than the stamp: make does not reinstall
    return clone


def run_shell(command: str, cwd: Path, env: dict) -> str:
    r = subprocess.run(["bash", "-c", command], cwd=cwd, env=env, capture_output=True, text=True, timeout=900)
    assert r.returncode == 0, f"README command failed ({r.returncode}): {command}\n{r.stdout[-3000:]}\n{r.stderr[-3000:]}"
    return r.stdout


def check_served_answer(stdout: str) -> None:
    rows = json.loads(stdout)["predictions"]
    assert len(rows) == 1 and set(rows[0]) == {"label", "proba_0", "proba_1"}, stdout
    assert rows[0]["label"] in (0, 1) and abs(rows[0]["proba_0"] + rows[0]["proba_1"] - 1) < 1e-9


def test_every_readme_command_works_as_printed_in_a_fresh_clone(fresh_clone):
    blocks = code_blocks((fresh_clone / "README.md").read_text())
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")}
    ran, left_out, servers = [], [], []
    try:
        for lang, body in blocks:
            if lang != "bash": continue
            placeholder = next((p for p in OTHER_MACHINES if p in body), None)
            if placeholder:
                left_out.append(OTHER_MACHINES[placeholder])
                continue
            for command in shell_commands(body):
                if any(command.startswith(c) for c in NOT_HERE):
                    left_out.append(next(why for c, why in NOT_HERE.items() if command.startswith(c)))
                    continue
                if any(s in command for s in SERVERS):
                    servers.append(start_process(["bash", "-c", command], fresh_clone / f"server{len(servers)}.log", env, cwd=fresh_clone))
                    wait_http("http://127.0.0.1:5001/ping", servers[-1])
                else:
                    out = run_shell(command, fresh_clone, env)
                    if command.startswith("curl"): check_served_answer(out)
                ran.append(command.split()[0] if "=" not in command.split()[0] else command.split()[1])
    finally:
        for s in servers: stop_process(s)
    assert sorted(set(left_out)) == sorted({*NOT_HERE.values(), *OTHER_MACHINES.values()})  # nothing else left out
    assert servers and "curl" in ran and "make" in ran and ".venv/bin/mlwt-sweep" in ran, ran

    python = [body for lang, body in blocks if lang == "python"]
    assert "load_model(" in python[0]  # the loading block comes first: check what it loaded before later blocks rebind `model`
    script = fresh_clone / "readme_blocks.py"
    script.write_text("\n".join([python[0], "assert hasattr(model, 'predict_proba'), model", *python[1:]]))
    out = run_shell(f"{BIN / 'python'} {script}", fresh_clone, env)
    assert "CV accuracy" in out, out

    assert (fresh_clone / "data" / "runs" / "out.ipynb").exists() and (fresh_clone / "my_train.ipynb").exists()
    client = mlflow.MlflowClient(f"sqlite:///{fresh_clone}/mlflow.db")
    seed_versions = client.search_model_versions("name = 'gradient_boost_v1'")
    assert len(seed_versions) == 1 and str(client.get_model_version_by_alias("gradient_boost_v1", "staging").version) == "1"
    hgb = client.search_model_versions("name = 'gradient_boost_v1_hist_gradient_boosting'")
    assert len(hgb) == 3, [v.tags.get("run_id") for v in hgb]  # papermill, mlwt-notebook, the sweep's best run only
    holder = client.get_model_version_by_alias("gradient_boost_v1_hist_gradient_boosting", "staging")
    assert all(float(holder.tags["score.accuracy"]) >= float(v.tags["score.accuracy"]) for v in hgb)
