"""Run every benchmark, each in its own process, and print one table of goals met and missed.

Each benchmark appends its results to a shared file (see `harness.py`); a benchmark that needs
an extra runs with the interpreter that has it (the feature store's: `.venv-feast`), and is
reported as skipped, with the reason, when that interpreter is absent. Exits 1 when any goal
is missed or any benchmark fails. Usage: python benchmarks/run_all.py [name ...]
"""
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).parent
ROOT = HERE.parent
FEAST_PYTHON = ROOT / ".venv-feast" / "bin" / "python"
SCRIPTS = {"workflow_overhead": sys.executable, "pipeline_overhead": sys.executable, "load_memory": sys.executable,
           "quality": sys.executable, "scale": sys.executable, "importance_budget": sys.executable, "distributed_overhead": sys.executable, "search": sys.executable,
           "feature_store": str(FEAST_PYTHON)}


def main(names: list[str]) -> int:
    results, problems = Path(tempfile.mkdtemp()) / "results.jsonl", []
    for name in names or SCRIPTS:
        python = SCRIPTS[name]
        if not Path(python).exists():
            problems.append(f"{name}: skipped, {python} is missing (make test-feast builds it)")
            continue
        print(f"== {name}", flush=True)
        env = {**os.environ, "MLWT_BENCH_RESULTS": str(results), "FEAST_USAGE": "False"}
        rc = subprocess.call([python, str(HERE / f"{name}.py")], env=env, cwd=ROOT)
        if rc not in (0, 1): problems.append(f"{name}: failed with exit code {rc}")
    rows = [json.loads(line) for line in results.read_text().splitlines()] if results.exists() else []
    print(f"\n{'benchmark':<18} {'case':<62} {'ours':>10} {'floor':>10} {'measure':>10} {'goal':>8}  met")
    for r in rows:
        print(f"{r['benchmark']:<18} {r['case'][:62]:<62} {r['ours']:>10.4g} {r['floor']:>10.4g} {r['value']:>10.3f} {r['goal']:>8}  "
              f"{('yes' if r['met'] else 'NO') if r.get('counts', True) else ('(yes)' if r['met'] else '(no)')}")
    for p in problems: print(p)
    goals = [r for r in rows if r.get("counts", True)]
    missed = sum(not r["met"] for r in goals)
    print("(in parentheses: a detail shown beside the goal it belongs to, not a goal of its own)")
    print(f"{len(goals) - missed} of {len(goals)} goals met" + (f"; {len(problems)} problem(s)" if problems else ""))
    return 1 if missed or any("failed" in p for p in problems) else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
