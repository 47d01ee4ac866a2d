"""One slot of a worker: fetch a job, run it, ack it; again. Every concurrency model runs N.

A slot is what Sidekiq calls a processor: one job at a time, its own Redis
connection (a blocking BLMOVE holds a connection for as long as it waits),
its own processing list. The threads model runs N slots as threads, the
processes model one slot per forked child, the asyncio model N tasks
(tasks.py has the same loop with `await`).

The rules a slot keeps, in the order it meets them:
- quiet (TSTP) or stopping (TERM): take nothing new. A job that arrives in
  the same instant (BLMOVE returned after the flag went up) is given back,
  unchanged, never started.
- a job, once started, is finished even after TERM; the daemon decides,
  at the deadline, to give back what is still running (daemon.py).
- the ack comes after the job's own ledger line: a crash between the two
  runs the job again, reported as a retry (at least once, never lost).
- Redis gone: say so once per outage, back off (0.1 s doubling to 2 s), go on.

`Board` is the slots' shared scoreboard: per slot whether it is busy, how
many jobs it finished, and its connection's CLIENT ID, which the daemon
needs to wake a slot blocked in BLMOVE (CLIENT UNBLOCK) when it quiets or
stops. For the processes model it lives in shared memory made before fork.
"""

from __future__ import annotations

import logging
import mmap
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from lab import work
from lab.experiments.worker import queue

__all__ = [
    "BACKOFF_MAX_S",
    "Board",
    "Flags",
    "Outage",
    "Retry",
    "Slot",
    "retryable",
    "run_job",
    "run_slot",
]

log = logging.getLogger("lab.worker")

#: The longest a slot waits between tries while Redis is gone: short enough to be
#: back within seconds of a restart, long enough not to spin (and log) a thousand times.
BACKOFF_MAX_S = 2.0
_FIELDS = 3  # busy, done, client id


class Board:
    """Per slot: busy (0/1), jobs done, client id. In shared memory when `shared` (fork)."""

    def __init__(self, slots: int, *, shared: bool = False) -> None:
        size = slots * _FIELDS * 8
        self._buffer = mmap.mmap(-1, size) if shared else bytearray(size)
        self._cells = memoryview(self._buffer).cast("q")  # one writer per cell: no lock
        self.slots = slots

    def busy(self, slot: int) -> bool:
        return bool(self._cells[slot * _FIELDS])

    def set_busy(self, slot: int, busy: bool) -> None:
        self._cells[slot * _FIELDS] = int(busy)

    def done(self, slot: int | None = None) -> int:
        if slot is None:
            return sum(self._cells[s * _FIELDS + 1] for s in range(self.slots))
        return self._cells[slot * _FIELDS + 1]

    def add_done(self, slot: int) -> None:
        self._cells[slot * _FIELDS + 1] += 1

    def client(self, slot: int) -> int:
        return self._cells[slot * _FIELDS + 2]

    def set_client(self, slot: int, client_id: int) -> None:
        self._cells[slot * _FIELDS + 2] = client_id

    def busy_count(self) -> int:
        return sum(self.busy(s) for s in range(self.slots))


class Flags(Protocol):
    """What a slot asks of its daemon between jobs (threads: Events; a child: its signals)."""

    @property
    def quiet(self) -> bool: ...
    @property
    def stopping(self) -> bool: ...
    def pause(self, seconds: float) -> None:
        """Wait up to `seconds`, less if stopping begins."""


class Outage:
    """Redis stopped answering: one line when it starts, one when it ends, not one per try."""

    def __init__(self) -> None:
        self._since: float | None = None
        self._lock = threading.Lock()

    def failed(self, exc: Exception) -> None:
        with self._lock:
            if self._since is None:
                self._since = time.monotonic()
                log.error(
                    "Redis stopped answering (%s); retrying every %gs at most", exc, BACKOFF_MAX_S
                )

    def ok(self) -> None:
        if self._since is None:
            return
        with self._lock:
            if self._since is not None:
                log.warning("Redis answers again after %.1fs", time.monotonic() - self._since)
                self._since = None


class Retry:
    """One caller's way through an outage: say so (once, for all callers), wait longer each try."""

    FIRST_S = 0.1

    def __init__(self, outage: Outage) -> None:
        self.outage = outage
        self.delay = self.FIRST_S

    def failed(self, exc: Exception) -> float:
        """The outage noted; how long to wait before the next try (0.1 s doubling to 2 s)."""
        self.outage.failed(exc)
        delay, self.delay = self.delay, min(self.delay * 2, BACKOFF_MAX_S)
        return delay

    def ok(self) -> None:
        self.outage.ok()
        self.delay = self.FIRST_S


def retryable() -> tuple[type[Exception], ...]:
    """What a slot survives by waiting: Redis gone (refused, reset) or not answering in time."""
    import redis

    return (redis.ConnectionError, redis.TimeoutError)


@dataclass
class Slot:
    """Everything one slot needs to know: where it takes jobs from, and how to tell."""

    index: int
    worker_id: str
    keys: queue.Keys
    url: str  # the Redis server (lab.services.url("redis"))
    board: Board
    outage: Outage
    fetch_timeout: float = queue.FETCH_TIMEOUT_S


def run_job(conn, keys: queue.Keys, job: queue.Job) -> None:
    """The job, then its ledger line (the job's own effect, before any ack)."""
    start = work.stamp()
    work.do(job.kind)
    line = work.entry(job.job_id, job.attempt, job.queued, start).line()
    conn.rpush(keys.ledger, line)


def run_slot(slot: Slot, flags: Flags) -> None:
    """The slot's loop, until stopping. Returns when it holds no job."""
    conn = _connected(slot, flags)
    retry = Retry(slot.outage)
    while conn is not None and not flags.stopping:
        if flags.quiet:
            flags.pause(slot.fetch_timeout)
            continue
        try:
            payload = queue.fetch(conn, slot.keys, slot.worker_id, slot.index, slot.fetch_timeout)
            retry.ok()
            if payload is None:
                continue
            if flags.quiet or flags.stopping:
                queue.give_back(conn, slot.keys, slot.worker_id, slot.index)
                continue
            _run_and_ack(conn, slot, flags, payload)
        except retryable() as exc:
            flags.pause(retry.failed(exc))
    if conn is not None:
        conn.close()


def _connected(slot: Slot, flags: Flags):
    """A connection of the slot's own, its CLIENT ID on the board; None if stopped first."""

    def connect():
        conn = queue.connect(slot.url, slot.fetch_timeout)
        slot.board.set_client(slot.index, conn.client_id())
        return conn

    return _persist(connect, slot, flags)


def _run_and_ack(conn, slot: Slot, flags: Flags, payload: bytes) -> None:
    keys, me, index = slot.keys, slot.worker_id, slot.index
    slot.board.set_busy(index, True)
    try:
        try:
            run_job(conn, keys, queue.Job.parse(payload))
        except Exception as exc:  # the job failed, or could not record itself: run it again
            log.error("slot %d: job failed (%r), back to the queue: %s", index, exc, payload)
            _persist(lambda: queue.requeue(conn, keys, me, index), slot, flags)
            return
        if _persist(lambda: queue.ack(conn, keys, me, index, payload), slot, flags) is False:
            log.warning("slot %d: job was taken back while it ran: %s", index, payload)
        slot.board.add_done(index)
    finally:
        slot.board.set_busy(index, False)


def _persist(call: Callable[[], object], slot: Slot, flags: Flags) -> object:
    """call() until Redis answers it, backing off; None if stopping first.

    An ack (or a give-back) lost to an outage must not be dropped: the job
    would stay in the slot's list and run again. If the daemon stops first,
    it gives back what is left in the list, reported as a retry.
    """
    retry = Retry(slot.outage)
    while True:
        try:
            result = call()
            retry.ok()
            return result
        except retryable() as exc:
            delay = retry.failed(exc)
            if flags.stopping:
                return None
            flags.pause(delay)
