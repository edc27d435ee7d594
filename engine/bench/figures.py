"""Figures and how they are measured: a value, its unit and the target it should stay under.

Nothing here is a test: targets are reported, never asserted. Memory and machine load are
reported beside the timings because a figure from a busy or swapping machine is not an
idle one's.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass


@dataclass
class Figure:
    name: str
    value: float
    unit: str
    target: float | None = None
    """Upper bound the value should stay under; None = reported only."""
    note: str = ""

    @property
    def ok(self) -> bool | None:
        return None if self.target is None else self.value <= self.target

    def to_json(self) -> dict:
        return {"value": round(self.value, 4), "unit": self.unit, "target": self.target, "ok": self.ok, "note": self.note}


def timed(fn: Callable[[], object], repeats: int) -> float:
    """Median wall seconds over `repeats` runs (after the caller's warm-up)."""
    samples = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - start)
    return statistics.median(samples)


def subprocess_json(code: str, timeout: int = 600) -> dict:
    """Run `code` in a fresh Python and read the JSON object on its last line: load times and peak memory
    must not be those of a process that already holds a model."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_NO_ADVISORY_WARNINGS": "1"}
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=timeout, env=env)
    if result.returncode != 0:
        raise RuntimeError(result.stderr.strip().splitlines()[-1] if result.stderr.strip() else "subprocess failed")
    return json.loads(result.stdout.strip().splitlines()[-1])


def current_rss_mb() -> float:
    """Resident memory of this process now (not the peak): /proc on Linux, psutil elsewhere if installed."""
    try:
        with open("/proc/self/statm", encoding="ascii") as fh:
            return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20
    except (OSError, ValueError, IndexError, AttributeError):
        pass
    try:
        import psutil
    except ImportError:
        import resource

        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # the peak: an upper bound
    return psutil.Process().memory_info().rss / 2**20


def machine_load() -> list[Figure]:
    """The 1-minute load average when the run ended: figures from a busy machine are not an idle one's."""
    cores = os.cpu_count() or 1
    if not hasattr(os, "getloadavg"):  # Windows
        return []
    one, five, fifteen = os.getloadavg()
    return [Figure("machine_load_1min", one, "", None, f"load average at the end of the run (5 and 15 min: {five:.1f}, {fifteen:.1f}) "
                  f"on {cores} cores; above {cores} the benchmark shared the CPUs with other work")]


def model_figure(loaded) -> Figure:
    """Which model, where and in which dtype every other figure of the run was measured."""
    params = sum(p.numel() for p in loaded.model.parameters()) / 1e6
    where = loaded.placement
    return Figure("model", params, "M params", None, f"{loaded.model_id} on {where.device}, {where.dtype}")


def figures_json(figures: list[Figure]) -> dict:
    return {f.name: f.to_json() for f in figures}
