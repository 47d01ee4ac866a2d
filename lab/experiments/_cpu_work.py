"""The cpu experiment's measured part, as lab.interpreters runs it: `measure(payload)`.

This is what runs in the measuring child, under the lab's own Python or any
other one named with `--python`: standard library only, Python 3.8+. It reads
the interpreter it runs in (GIL or not, usable cores) instead of assuming it,
and puts those facts on every record, since they decide the result.

payload (built by lab.experiments.cpu from its Params):
    parts          ["scaling", "convoy"]
    work           countdown steps in total per measurement
    workers        [1, 2, 4, 8]
    strategies     a subset of _cpu_scaling.STRATEGIES (sequential is always run:
                   it is every speedup's baseline)
    start_methods  for the pool: fork, spawn, forkserver
    repeat         measurements of each (strategy, workers)
    pings          echo round trips per convoy case
    fast_switch    the short switch interval, seconds
"""

from __future__ import annotations

import multiprocessing
import os
import sys
import sysconfig
from collections.abc import Iterator

from lab.experiments import _cpu_convoy, _cpu_scaling

__all__ = ["interpreter_facts", "measure", "scaling_plan"]


def interpreter_facts() -> dict:
    """What decides the result, read from this interpreter: the GIL and the cores."""
    probe = getattr(sys, "_is_gil_enabled", None)  # 3.13+
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return {
        "usable_cores": cores,
        "gil_enabled": True if probe is None else bool(probe()),
        "free_threaded_build": bool(sysconfig.get_config_var("Py_GIL_DISABLED")),
    }


def scaling_plan(payload: dict) -> list[tuple[int, int, str, str | None]]:
    """(repeat, workers, strategy, start_method) in the order measured: sequential first."""
    others = [s for s in payload["strategies"] if s != "sequential"]
    plan = []
    for repeat in range(payload["repeat"]):
        for workers in payload["workers"]:
            plan.append((repeat, workers, "sequential", None))
            for strategy in others:
                methods = payload["start_methods"] if strategy == "pool" else [None]
                plan.extend((repeat, workers, strategy, method) for method in methods)
    return plan


def measure(payload: dict) -> Iterator[dict]:
    facts = interpreter_facts()
    if "scaling" in payload["parts"]:
        yield from _scaling(payload, facts)
    if "convoy" in payload["parts"]:
        for record in _cpu_convoy.measure_convoy(payload["pings"], payload["fast_switch"]):
            yield {**record, **facts}


def _scaling(payload: dict, facts: dict) -> Iterator[dict]:
    available = multiprocessing.get_all_start_methods()
    baseline = {}  # (repeat, workers) -> the sequential wall time
    for repeat, workers, strategy, method in scaling_plan(payload):
        record = {
            "part": "scaling",
            "strategy": strategy,
            "start_method": method,
            "workers": workers,
            "repeat": repeat,
        }
        if method is not None and method not in available:
            yield {**record, **facts, "skipped": f"no {method} start method here"}
            continue
        chunks = _cpu_scaling.split(payload["work"], workers)
        timing = _cpu_scaling.measure_strategy(strategy, chunks, method)
        if strategy == "sequential":
            baseline[repeat, workers] = timing["wall_s"]
        speedup = baseline[repeat, workers] / timing["wall_s"]
        yield {**record, **timing, "speedup": round(speedup, 3), **facts}
