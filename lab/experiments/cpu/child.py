"""The cpu experiment's measured part, as lab.interpreters runs it: `measure(payload)`.

This is what runs in the measuring child, under the lab's own Python or any
other one named with `--python`: standard library only, Python 3.8+. It reads
the interpreter it runs in (GIL or not, usable cores) instead of assuming it,
and puts those facts on every record, since they decide the result.

payload (built by lab.experiments.cpu from its Params):
    parts          ["scaling", "convoy", "crossing"]
    work           countdown steps in total per measurement
    workers        [1, 2, 4, 8]
    strategies     a subset of scaling.STRATEGIES (sequential is always run:
                   it is every speedup's baseline)
    start_methods  for the pool: fork, spawn, forkserver
    repeat         rounds of each (strategy, workers), summarised as one record
    pings          echo round trips per convoy case
    fast_switch    the short switch interval, seconds
"""

from __future__ import annotations

import multiprocessing
import os
import signal
import statistics
import sys
import sysconfig
from collections.abc import Iterator

from lab import subinterpreters
from lab.experiments.cpu import convoy, crossing, scaling

__all__ = ["interpreter_facts", "measure", "scaling_plan", "summarise"]


def interpreter_facts() -> dict:
    """What decides the result, read from this interpreter: the GIL and the cores."""
    probe = getattr(sys, "_is_gil_enabled", None)  # 3.13+
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return {
        "usable_cores": cores,
        "gil_enabled": True if probe is None else bool(probe()),
        "gil": "enabled" if probe is None or probe() else "disabled",
        "free_threaded_build": bool(sysconfig.get_config_var("Py_GIL_DISABLED")),
        # which module offers subinterpreters here (lab.subinterpreters), or None
        "interpreters_api": subinterpreters.api(),
    }


def scaling_plan(payload: dict) -> list[tuple[int, str, str | None]]:
    """(workers, strategy, start_method), one record each, in order: sequential first."""
    others = [s for s in payload["strategies"] if s != "sequential"]
    plan = []
    for workers in payload["workers"]:
        plan.append((workers, "sequential", None))
        for strategy in others:
            methods = payload["start_methods"] if strategy == "pool" else [None]
            plan.extend((workers, strategy, method) for method in methods)
    return plan


def _exit_on_term(signum: int, frame: object) -> None:
    """TERM (the lab stopping this child, Ctrl-C, `daemon stop`) unwinds as an exit."""
    raise SystemExit(128 + signum)


def measure(payload: dict) -> Iterator[dict]:
    # TERM's default action ends the process on the spot: no `with Pool` exit, no
    # finalizer, no atexit. Under spawn and forkserver each Barrier and Pool leaves
    # its named semaphores in /dev/shm (sem.mp-*: the resource tracker that would
    # unlink them is KILLed with the group a moment later) and multiprocessing's
    # /tmp/pymp-* folder stays. As SystemExit, the `with` blocks close the pools,
    # the semaphores' finalizers unlink them and the exit removes the folder.
    signal.signal(signal.SIGTERM, _exit_on_term)
    facts = interpreter_facts()
    if "scaling" in payload["parts"]:
        yield from _scaling(payload, facts)
    if "convoy" in payload["parts"]:
        beside = "interpreters" in payload["strategies"]
        for record in convoy.measure_convoy(payload["pings"], payload["fast_switch"], beside):
            yield {**record, **facts}
    if "crossing" in payload["parts"]:
        for record in crossing.check_facts(payload.get("modules", crossing.MODULES)):
            yield {**record, **facts}


def _scaling(payload: dict, facts: dict) -> Iterator[dict]:
    """One record per (workers, strategy): the median of `repeat` rounds, and the fastest.

    The rounds of one worker count are interleaved (sequential, threads, ...,
    then again), so a burst of load from elsewhere on the machine hits every
    strategy alike instead of one strategy's every sample; the speedup is the
    median sequential wall time over the strategy's median.
    """
    available = multiprocessing.get_all_start_methods()
    missing = {"interpreters": subinterpreters.unavailable()}
    plan = scaling_plan(payload)
    scaling.warm_up()  # forked workers and threads inherit the warm bytecode
    for workers in payload["workers"]:
        here = [step for step in plan if step[0] == workers]
        samples: dict = {step: [] for step in here}
        for _ in range(payload["repeat"]):
            for step in here:
                _, strategy, method = step
                if missing.get(strategy):
                    continue
                if method is None or method in available:
                    chunks = scaling.split(payload["work"], workers)
                    samples[step].append(scaling.measure_strategy(strategy, chunks, method))
        baseline = _median(samples[workers, "sequential", None], "wall_s")
        for step in here:
            _, strategy, method = step
            record = {"part": "scaling", "strategy": strategy, "start_method": method}
            record.update(workers=workers, repeat=payload["repeat"])
            if not samples[step]:
                why = missing.get(strategy) or f"no {method} start method here"
                yield {**record, **facts, "skipped": why}
                continue
            yield {**record, **summarise(samples[step], baseline), **facts}


def _median(samples: list, key: str):
    values = [s[key] for s in samples]
    return None if None in values else statistics.median(values)


def summarise(samples: list, baseline: float) -> dict:
    """One record's figures from `repeat` rounds of measure_strategy, against `baseline` s."""
    wall_s = _median(samples, "wall_s")
    walls = [s["wall_s"] for s in samples]
    summary = {
        "start_s": _median(samples, "start_s"),
        "wall_s": wall_s,
        "wall_s_min": min(walls),
        "wall_s_max": max(walls),
        "cpu_s": _median(samples, "cpu_s"),
        "speedup": round(baseline / wall_s, 3),
        # max - min over the repeats, in % of the median: what noise does to this figure
        "spread_pct": round(100 * (max(walls) - min(walls)) / wall_s, 1) if wall_s else None,
    }
    notes = {s["note"] for s in samples if "note" in s}
    if notes:
        summary["note"] = "; ".join(sorted(notes))
    return summary
