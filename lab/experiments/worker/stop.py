"""The stop table: what each worker does with the jobs in hand when told to stop.

For one (system, model, setting, signal, deadline), `stop_row`:

    1  queue 2 x `workers` slow jobs (2 s sleeps, marks.py on), start the worker;
    2  once `workers` jobs are in hand, send the signal: TERM (every system's
       warm shutdown: finish what is in hand, take nothing new), or Celery's
       cold shutdown, QUIT (stop now);
    3  time until the worker's processes are gone (exit_s); which jobs in hand
       had finished by then;
    4  start the worker again and wait until every job has ended, or nothing
       has for QUIET_S: the jobs in hand that ran again (back) or never ended
       (lost).

The lab's worker is stopped with its --deadline longer than a job (they
finish) and shorter (they are given back, attempt + 1).
"""

from __future__ import annotations

import os
import signal
import time
from typing import Any, NamedTuple

from lab import services, work
from lab.errors import LabError
from lab.experiments.worker import marks, peers, queue
from lab.experiments.worker.measure import (
    Cell,
    Child,
    ask,
    namespace,
    start_producer,
    start_worker,
)

__all__ = ["ROWS", "Row", "stop_row"]


class Row(NamedTuple):
    system: str
    model: str
    setting: str
    signal: str  # TERM, or QUIT (Celery's cold shutdown)
    deadline_s: float | None  # the lab's --deadline; None: the system has none


ROWS = (
    Row("lab", "threads", "default", "TERM", 5.0),
    Row("lab", "threads", "default", "TERM", 0.5),
    Row("rq", "simple", "default", "TERM", None),
    Row("arq", "asyncio", "default", "TERM", None),
    Row("celery", "prefork", "default", "TERM", None),
    Row("celery", "prefork", "default", "QUIT", None),
    Row("celery", "prefork", "acks-late", "QUIT", None),
    Row("dramatiq", "processes", "default", "TERM", None),
)
RECOVER_S = 5.0  # the recovery timeouts made short, yet longer than a slow job (arq: its timeout)
QUIET_S = 20.0  # the recovery timeout, kombu's 10 s restore cycle, a margin
EXIT_BOUND_S = 60.0


def stop_row(
    system: str, model: str, setting: str, signame: str, deadline: float | None, workers: int = 2
) -> dict[str, Any]:
    import redis

    ns = namespace()
    cell = Cell(system, model, workers, "slow", setting)
    env = {"LAB_WORKER_RECOVER_S": str(RECOVER_S), "LAB_WORKER_MARK": "1"}
    if deadline is not None:
        env["LAB_WORKER_DEADLINE_S"] = str(deadline)
    conn = redis.Redis.from_url(services.url("redis"))
    keys = queue.Keys(ns)
    started: list[Child] = []
    jobs = 2 * workers
    try:
        ask(start_producer(cell, ns, started, env), f"fill slow {jobs}")
        count = peers.processes(system, model, workers)
        tops = [start_worker(cell, ns, i, started, env) for i in range(count)]
        _wait(lambda: _in_hand(conn, keys, system) >= workers, "jobs in hand")
        in_hand = _held(conn, keys, system)
        for child in tops:
            os.kill(child.proc.pid, getattr(signal, f"SIG{signame}"))
        began = time.monotonic()
        for child in tops:
            child.proc.wait(EXIT_BOUND_S)
        exit_s = time.monotonic() - began
        gone = work.stamp()
        finished = {e.job_id for e in _entries(conn, keys) if e.end <= gone} & in_hand
        for i in range(count):
            start_worker(cell, ns, i, started, env)
        _settle(conn, keys, jobs)
        runs: dict[str, int] = {}
        for e in _entries(conn, keys):
            runs[e.job_id] = runs.get(e.job_id, 0) + 1
        return {
            "signal": signame,
            "deadline_s": deadline,
            "exit_s": round(exit_s, 2),
            "in_hand": len(in_hand),
            "finished": len(finished),
            "back": sum(1 for i in in_hand - finished if runs.get(i)),
            "lost": sum(1 for i in in_hand if not runs.get(i)),
        }
    finally:
        for child in started:
            child.stop()
        work.forget(conn, ns)
        conn.close()


def _wait(condition, what: str, bound: float = EXIT_BOUND_S) -> None:
    deadline = time.monotonic() + bound
    while not condition():
        if time.monotonic() > deadline:
            raise LabError(f"no {what} within {bound:g}s")
        time.sleep(0.01)


def _in_hand(conn, keys: queue.Keys, system: str) -> int:
    if system == "lab":
        return sum(conn.llen(k) for k in conn.scan_iter(match=f"{keys.namespace}:processing:*"))
    return conn.llen(marks.key(keys.ledger))


def _held(conn, keys: queue.Keys, system: str) -> set[str]:
    """The jobs in hand now (slow jobs: none has ended yet)."""
    if system == "lab":  # its processing lists: what each slot holds
        held = set()
        for key in conn.scan_iter(match=f"{keys.namespace}:processing:*"):
            held |= {queue.Job.parse(p).job_id for p in conn.lrange(key, 0, -1)}
        return held
    ended = {e.job_id for e in _entries(conn, keys)}
    begun = {m.job_id for m in map(marks.Mark.parse, conn.lrange(marks.key(keys.ledger), 0, -1))}
    return begun - ended


def _entries(conn, keys: queue.Keys) -> list[work.Entry]:
    return [work.Entry.parse(line) for line in conn.lrange(keys.ledger, 0, -1)]


def _settle(conn, keys: queue.Keys, jobs: int) -> None:
    last, since = -1, time.monotonic()
    while True:
        length = conn.llen(keys.ledger)
        if len({e.job_id for e in _entries(conn, keys)}) >= jobs:
            return
        if length != last:
            last, since = length, time.monotonic()
        elif time.monotonic() - since > QUIET_S:
            return
        time.sleep(0.05)
