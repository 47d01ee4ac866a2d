"""The crash table: who loses a job when the process running it is killed with -9.

For one (system, model, setting), `crash_row`:

    1  queue `jobs` io jobs (10 ms sleeps), each writing a start mark as it
       begins (marks.py) and its ledger line as it ends;
    2  start the worker (`workers` at once); at a random moment (when the
       ledger reaches a random count between 10% and 80% of the jobs, and
       the worker has ended a job since it started), kill -9 the process
       that began the newest job not yet ended: the one holding a job (the
       lab's daemon, rq's and arq's worker, a Celery prefork child, a
       Dramatiq worker process);
    3  a worker process that died is started again (Celery's main process
       replaces a dead prefork child itself; Dramatiq's stops all its workers
       when one dies, so it is started again as a whole); four kills;
    4  wait until every job has a ledger line, or nothing new has ended for
       QUIET_S after the recovery timeout, then count:

    done     jobs with a ledger line
    lost     jobs without one (a lost job's id is gone; a job waiting out a
             recovery timeout longer than the wait counts as lost, and says so)
    twice    jobs begun twice (their side effects happened twice); for the lab,
             the jobs it took back and reports in NS:retried
    back_s   kill -> the second start of a job in hand (median, max): how long
             a recovered job waited

The recovery timeout is made short where the system lets one set it
(RECOVER_S, each row says which knob): the lab's heartbeat TTL, kombu's
visibility_timeout, Dramatiq's heartbeat_timeout, arq's job_timeout. rq has
no such knob for a killed worker's job: rq puts it in its failed registry
once the job's own timeout (180 s) has passed.
"""

from __future__ import annotations

import os
import random
import signal
import statistics
import time
from collections import Counter
from typing import Any

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

__all__ = ["KNOB", "RECOVER_S", "ROWS", "crash_row", "verdict"]

#: The rows of the table: every system's own worker, Celery three ways.
ROWS = (
    ("lab", "threads", "default"),
    ("rq", "simple", "default"),
    ("arq", "asyncio", "default"),
    ("celery", "prefork", "default"),
    ("celery", "prefork", "acks-late"),
    ("celery", "prefork", "acks-late+reject"),
    ("dramatiq", "processes", "default"),
)
#: Each system's knob for "a dead worker's job comes back after", set to RECOVER_S.
KNOB = {
    "lab": "heartbeat TTL",
    "rq": "none (job timeout 180 s)",
    "arq": "job_timeout",
    "celery": "visibility_timeout",
    "dramatiq": "heartbeat_timeout",
}
RECOVER_S = 2.0
#: How long nothing may end before the row is settled: the recovery timeout, kombu's
#: 10 s cycle of restoring unacked messages (kombu/transport/redis.py,
#: call_repeatedly(10, maybe_restore_messages)), and a margin for a loaded machine.
QUIET_S = {"celery": RECOVER_S + 12.0}
QUIET_DEFAULT_S = RECOVER_S + 4.0
KILLS = 4
HUNT_S = 2.0  # how long to look for a process inside a job before taking the newest to begin
END_S = 20.0  # Dramatiq's main process: notice (a 1 s join), TERM the rest, their jobs end
BOUND_S = 120.0  # the longest a row may take


def crash_row(
    system: str, model: str, setting: str, jobs: int, kills: int = KILLS, workers: int = 4
) -> dict[str, Any]:
    import redis

    ns = namespace()
    cell = Cell(system, model, workers, "io", setting)
    env = {"LAB_WORKER_RECOVER_S": str(RECOVER_S), "LAB_WORKER_MARK": "1"}
    conn = redis.Redis.from_url(services.url("redis"))
    ledger = queue.Keys(ns).ledger
    started: list[Child] = []
    rng = random.Random()
    try:
        _fill(cell, ns, jobs, started, env)
        count = peers.processes(system, model, workers)
        tops = [start_worker(cell, ns, i, started, env) for i in range(count)]
        kill_times: list[int] = []
        victims: list[int] = []
        # The random moments: when the ledger reaches random counts between 10% and 80% of
        # the jobs (a moment in time would often fall after a quick system has finished).
        moments = sorted(rng.sample(range(jobs // 10, jobs * 8 // 10), kills))
        quiet_s = QUIET_S.get(system, QUIET_DEFAULT_S)
        for moment in moments:
            if not _running(conn, ledger, max(moment, conn.llen(ledger) + 1), jobs, quiet_s):
                break  # every job left is lost or waits out its recovery: none to be in hand
            killed = _kill_holder(conn, ns, system, tops, victims, jobs)
            if killed is None:  # the last job ended first: no job is left to be in hand
                break  # the row says how many kills there were
            victim, at = killed
            kill_times.append(at)
            victims.append(victim)
            tops = _replace_dead(cell, ns, tops, victim, started, env)
        _settle(conn, ledger, jobs, quiet_s)
        return _count(conn, ns, system, jobs, kill_times, victims)
    finally:
        for child in started:
            child.stop()
        work.forget(conn, ns)
        conn.close()


def _fill(cell: Cell, ns: str, jobs: int, started: list[Child], env: dict[str, str]) -> None:
    ask(start_producer(cell, ns, started, env), f"fill io {jobs}")


def _running(conn, ledger: str, count: int, jobs: int, quiet_s: float) -> bool:
    """Wait until the ledger has `count` lines (a worker is taking jobs): True. False when
    all jobs ran, or nothing ended for `quiet_s`: the jobs left were lost to a kill (rq's
    wait 180 s) and the ledger would never reach `count` (it waited BOUND_S and failed)."""
    began = time.monotonic()
    last, since = -1, began
    while (length := conn.llen(ledger)) < count:
        if length >= jobs:
            return False
        if length != last:
            last, since = length, time.monotonic()
        elif length and time.monotonic() - since > quiet_s:  # jobs ended, then none
            return False
        elif not length and time.monotonic() > began + BOUND_S:  # a worker that never began
            raise LabError(f"no job ended within {BOUND_S:g}s of a worker's start")
        time.sleep(0.005)
    return True


def _kill_holder(
    conn, ns: str, system: str, tops: list[Child], killed: list[int], jobs: int
) -> tuple[int, int] | None:
    """kill -9 the process that began the newest job not yet ended (the lab: its daemon,
    which writes no marks); (its pid, when), or None once every job has ended (a quick
    system can finish between the moment and the kill: rq's holder, a horse forked for
    one job, is then gone, and the hunt went on for BOUND_S). A process that ended on its
    own meanwhile (a prefork child replaced) is passed over."""
    ledger = queue.Keys(ns).ledger
    began = time.monotonic()
    while time.monotonic() < began + BOUND_S:
        if conn.llen(ledger) >= jobs:
            return None
        # A process in a job's own code, if one is found within HUNT_S (rq spends most of a
        # 10 ms job's time on its bookkeeping around it); else the newest to begin one.
        hunting = time.monotonic() < began + HUNT_S
        pid = tops[0].proc.pid if system == "lab" else _holder(conn, ns, killed, hunting)
        if pid is None:
            time.sleep(0.005)
            continue
        at = work.stamp()
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            killed.append(pid)  # never pick it again
            continue
        return pid, at
    raise LabError(f"no process held a job for {BOUND_S:g}s")


def _holder(conn, ns: str, killed: list[int], running_only: bool) -> int | None:
    ledger = queue.Keys(ns).ledger
    newest = [marks.Mark.parse(raw) for raw in conn.lrange(marks.key(ledger), -16, -1)]
    ended = {(e.pid, e.start) for e in map(work.Entry.parse, conn.lrange(ledger, -64, -1))}
    alive = [m for m in newest if m.pid not in killed]
    running = [m for m in alive if (m.pid, m.start) not in ended]
    chosen = running if running_only else running or alive
    return chosen[-1].pid if chosen else None


def _replace_dead(
    cell: Cell, ns: str, tops: list[Child], victim: int, started: list[Child], env: dict[str, str]
) -> list[Child]:
    """Start again every top process that died: the victim itself, or one that ends when one
    of its workers dies (Dramatiq's main process: given END_S to stop the others and exit)."""
    import subprocess

    for child in tops:
        try:
            if child.proc.pid == victim:  # a KILLed process is not gone the moment kill returns
                child.proc.wait(BOUND_S)
            elif cell.system == "dramatiq":
                child.proc.wait(END_S)
        except subprocess.TimeoutExpired:
            pass
    out = []
    for index, child in enumerate(tops):
        if child.proc.poll() is None:
            out.append(child)
        else:
            out.append(start_worker(cell, ns, index, started, env))
    return out


def _settle(conn, ledger: str, jobs: int, quiet_s: float) -> None:
    """Until every job has ended, or nothing has ended for `quiet_s`."""
    ended = {line.split()[0] for line in conn.lrange(ledger, 0, -1)}
    last, since = -1, time.monotonic()
    deadline = time.monotonic() + BOUND_S
    while len(ended) < jobs and time.monotonic() < deadline:
        length = conn.llen(ledger)
        if length != last:
            last, since = length, time.monotonic()
            ended = {line.split()[0] for line in conn.lrange(ledger, 0, -1)}
        elif time.monotonic() - since > quiet_s:
            return
        time.sleep(0.05)


def _count(
    conn, ns: str, system: str, jobs: int, kills: list[int], victims: list[int]
) -> dict[str, Any]:
    keys = queue.Keys(ns)
    entries = [work.Entry.parse(line) for line in conn.lrange(keys.ledger, 0, -1)]
    done = {e.job_id for e in entries}
    begun = [marks.Mark.parse(raw) for raw in conn.lrange(marks.key(keys.ledger), 0, -1)]
    if system == "lab":
        twice = {r.decode() for r in conn.lrange(keys.retried, 0, -1)}
        seconds = [e.start for e in entries if e.attempt > 1]
        hit = None  # the lab writes no marks: its retried list says which jobs it held
    else:
        ended = {(e.pid, e.start) for e in entries}
        hit = sum(
            any(m.pid == pid and m.start <= at and (m.pid, m.start) not in ended for m in begun)
            for at, pid in zip(kills, victims, strict=True)
        )
        starts = Counter(m.job_id for m in begun)
        twice = {i for i, n in starts.items() if n > 1}
        seen: set[str] = set()
        seconds = []
        for m in begun:  # in the order begun: a job's second mark is its rerun
            if m.job_id in seen and m.job_id in twice:
                seconds.append(m.start)
            seen.add(m.job_id)
    back = [
        (start - max(k for k in kills if k <= start)) / 1e9
        for start in seconds
        if any(k <= start for k in kills)
    ]
    return {
        "jobs": jobs,
        "kills": len(kills),
        "done": len(done),
        "lost": jobs - len(done),
        "twice": len(twice),
        "hit": hit,
        "back_p50_s": round(statistics.median(back), 2) if back else None,
        "back_max_s": round(max(back), 2) if back else None,
        "knob": KNOB[system],
    }


def verdict(row: dict[str, Any]) -> str:
    """One word for a row: what a kill -9 cost."""
    if row["lost"]:
        return "loses jobs"
    if row["twice"]:
        return "runs twice"
    return "keeps all"
