"""The run of the worker lesson: the crash table, the stop table, the sweep, the ratios.

`measure` is what run() hands to lab.runs.collect: it checks Redis, notes the
versions of every peer, then yields the crash table (crash.py), the stop
table (stop.py), every throughput cell (measure.py) round after round, and
last the ratios that hold the lab's thread worker against each peer.
"""

from __future__ import annotations

import statistics
from collections.abc import Iterator
from importlib.metadata import PackageNotFoundError, version
from typing import TYPE_CHECKING, Any, NamedTuple

from lab import services
from lab.experiments.worker import crash, peers, stop
from lab.experiments.worker.measure import Cell, measure_cell
from lab.runs import Session

if TYPE_CHECKING:
    from lab.experiments.worker import Params

__all__ = ["PEERS", "Peer", "cells", "measure", "ratios", "throughput_record"]


def measure(params: Params, session: Session) -> Iterator[dict[str, Any]]:
    services.require("redis")
    session.env["redis_url"] = services.url("redis")
    session.env.update(_versions())
    yield from _crash_table(params, session)
    yield from _stop_table(params, session)
    # Rounds alternate: every cell once, then every cell again, so a slow spell of a
    # shared machine falls on all systems rather than on one.
    todo = [(r, cell) for r in range(params.rounds) for cell in cells(params)]
    done: list[dict[str, Any]] = []
    for i, (round_, cell) in enumerate(todo):
        session.step(
            i, len(todo), f"{cell.system} {cell.model} {cell.setting} x{cell.workers} {cell.job}"
        )
        record = throughput_record(
            cell, round_ + 1, params.queued, params.seconds, params.samples, params.gap
        )
        done.append(record)
        yield record
    yield from ratios(done)
    session.step(len(todo), len(todo), "done")


def cells(params: Params) -> list[Cell]:
    """Every (system, model, workers, job) asked for, in the order measured."""
    chosen = [
        (system, model, setting)
        for system in params.system
        for model in peers.MODELS[system]
        if model in params.model
        for setting in peers.SETTINGS[system]
        if setting in params.setting or len(peers.SETTINGS[system]) == 1
    ]
    return [
        Cell(s, m, w, j, setting)
        for j in params.job
        for w in params.workers
        for s, m, setting in chosen
    ]


def throughput_record(
    cell: Cell, round_: int, queued: int, seconds: float, samples: int, gap: float
) -> dict[str, Any]:
    """One cell measured (measure.py), as the run stores it."""
    return {
        "part": "throughput",
        "round": round_,
        "system": cell.system,
        "model": cell.model,
        "setting": cell.setting,
        "workers": cell.workers,
        "job": cell.job,
        **measure_cell(cell, queued, seconds, samples, gap),
    }


def _crash_table(params: Params, session: Session) -> Iterator[dict[str, Any]]:
    """The headline: who loses a job to kill -9 (crash.py)."""
    if not params.crash:
        return
    rows = [row for row in crash.ROWS if row[0] in params.system]
    for i, (system, model, setting) in enumerate(rows):
        session.step(i, len(rows), f"crash: {system} {model} {setting}, kill -9 x{crash.KILLS}")
        figures = crash.crash_row(system, model, setting, params.crash)
        yield {
            "part": "crash",
            "system": system,
            "model": model,
            "setting": setting,
            **figures,
            "verdict": crash.verdict(figures),
        }


def _stop_table(params: Params, session: Session) -> Iterator[dict[str, Any]]:
    """What each does with the jobs in hand when told to stop (stop.py)."""
    if not params.stop:
        return
    rows = [row for row in stop.ROWS if row.system in params.system]
    for i, row in enumerate(rows):
        session.step(i, len(rows), f"stop: {row.system} {row.model} {row.setting}, {row.signal}")
        yield {
            "part": "stop",
            "system": row.system,
            "model": row.model,
            "setting": row.setting,
            **stop.stop_row(row.system, row.model, row.setting, row.signal, row.deadline_s),
        }


class Peer(NamedTuple):
    """A peer the lab's thread worker is set against, and the ratio column it fills."""

    column: str
    system: str
    model: str
    setting: str


#: Celery and Dramatiq: their tuned rows, the best each gives a user who read its docs.
PEERS = (
    Peer("vs_simple", "rq", "simple", "default"),
    Peer("vs_fork", "rq", "fork-per-job", "default"),
    Peer("vs_arq", "arq", "asyncio", "default"),
    Peer("vs_celery", "celery", "threads", "tuned"),
    Peer("vs_celery_prefork", "celery", "prefork", "tuned"),
    Peer("vs_dramatiq", "dramatiq", "threads", "tuned"),
)


def ratios(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The target, the lab's thread worker at least as fast as each peer, as records: its
    jobs/s over each peer's, same job and workers: the median over the rounds of each
    round's ratio, and (`..._range`) the lowest and highest of those ratios."""
    rate: dict[tuple, dict[int, float]] = {}
    for r in records:
        if r.get("part") == "throughput":
            key = (r["system"], r["model"], r.get("setting", "default"), r["workers"], r["job"])
            rate.setdefault(key, {})[r.get("round", 1)] = r["jobs_per_s"]
    out = []
    for (system, model, _setting, workers, job), lab in rate.items():
        if (system, model) != ("lab", "threads"):
            continue
        row: dict[str, Any] = {
            "part": "ratio",
            "job": job,
            "workers": workers,
            "rounds": len(lab),
            "lab_threads_per_s": statistics.median(lab.values()),
        }
        for peer in PEERS:
            other = rate.get((peer.system, peer.model, peer.setting, workers, job), {})
            each = [lab[n] / other[n] for n in lab if other.get(n)]
            row[peer.column] = round(statistics.median(each), 2) if each else None
            row[f"{peer.column}_range"] = f"{min(each):.2f}-{max(each):.2f}" if each else None
        if any(row[peer.column] is not None for peer in PEERS):
            out.append(row)
    return out


def _versions() -> dict[str, str]:
    found = {}
    for package in ("redis", "rq", "arq", "celery", "kombu", "dramatiq"):
        try:
            found[package] = version(package)
        except PackageNotFoundError:
            found[package] = "missing"
    return found
