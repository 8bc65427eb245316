"""What every benchmark shares: interleaved timing in one process, one result line per case with
its goal, and an exit code that says whether every goal was met.

A result is printed as a human line and, when `MLWT_BENCH_RESULTS` names a file (as
`run_all.py` sets it), appended there as JSON so that `make bench` can print one table.
"""
from __future__ import annotations

import json
import os
import statistics
import sys
import threading
import time
from typing import Callable

_MET: list[bool] = []


def interleaved(sides: dict[str, Callable[[], object]], repeats: int) -> dict[str, float]:
    "Median wall time of each side, the sides run in turn `repeats` times (drift hits all alike)."
    times: dict[str, list[float]] = {k: [] for k in sides}
    for _ in range(repeats):
        for name, fn in sides.items():
            t0 = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - t0)
    return {k: statistics.median(v) for k, v in times.items()}


def report(benchmark: str, case: str, ours: float, floor: float, goal: float, measure: str = "time ratio",
           higher_is_better: bool = False, value: float | None = None, unit: str = "s", counts: bool = True) -> bool:
    "Print one case: ours, the floor, the measure (ours/floor unless `value` is given) beside its goal; `counts=False`: shown, not a goal of its own."
    ours, floor = float(ours), float(floor)
    value = ours / floor if value is None else float(value)
    met = bool(value >= goal if higher_is_better else value <= goal)
    sign = ">=" if higher_is_better else "<="
    print(f"{benchmark} | {case}: ours {ours:.4g} {unit}, floor {floor:.4g} {unit}, {measure} {value:.3f} "
          f"(goal {sign} {goal}) {'MET' if met else 'MISSED'}", flush=True)
    if counts: _MET.append(met)
    if os.environ.get("MLWT_BENCH_RESULTS"):
        with open(os.environ["MLWT_BENCH_RESULTS"], "a") as f:
            f.write(json.dumps(dict(benchmark=benchmark, case=case, ours=ours, floor=floor, unit=unit, measure=measure,
                                    value=value, goal=f"{sign} {goal}", met=met, counts=counts)) + "\n")
    return met


def rss() -> int:
    "This process's resident memory in bytes (Linux)."
    with open("/proc/self/statm") as f: return int(f.read().split()[1]) * 4096


def _high_water_mark() -> int | None:
    "The kernel's peak resident size of this process since it was last reset (Linux VmHWM), in bytes; None elsewhere."
    try:
        with open("/proc/self/status") as f:
            return next(int(line.split()[1]) * 1024 for line in f if line.startswith("VmHWM"))
    except (OSError, StopIteration): return None


def _reset_high_water_mark() -> bool:
    "Reset the kernel's peak resident size to the current one (Linux 4.0+: /proc/self/clear_refs); whether it could."
    try:
        with open("/proc/self/clear_refs", "w") as f: f.write("5")
        return _high_water_mark() is not None
    except OSError: return False


class PeakMemory:
    """The peak resident size while the block runs, minus the size at its start (Arrow and native code allocate
    outside Python's allocator, and the process-wide peak would include the imports). On Linux the kernel keeps the
    peak (its high-water mark, reset on entry): nothing runs beside the timed block. Elsewhere a thread samples every 2 ms."""
    def __enter__(self):
        self.before, self.peak = rss(), 0
        self.kernel = _reset_high_water_mark()
        if not self.kernel:
            self.done = threading.Event()
            self.thread = threading.Thread(target=self._sample)
            self.thread.start()
        return self

    def _sample(self):
        while not self.done.is_set():
            self.peak = max(self.peak, rss())
            time.sleep(0.002)

    def __exit__(self, *exc):
        if self.kernel: self.peak = max(_high_water_mark(), rss()) - self.before
        else:
            self.done.set()
            self.thread.join()
            self.peak = max(self.peak, rss()) - self.before


def finish() -> None:
    "Exit 1 when any goal reported by this process was missed."
    sys.exit(0 if all(_MET) else 1)
