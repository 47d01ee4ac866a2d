"""The unit of work both daily-daemon lessons (cron, worker) run: a job, and its ledger line.

A job here is what a cron job or a queued job usually is: a few lines of
Python that may wait (I/O) or compute, then record that they ran. The same
functions run under every way of starting them, so that what differs
between a cron tick, a waiting daemon, the lab's worker, rq and arq is how
the job is *started*, never the job:

    noop  returns at once: what is left is the cost of starting it
    io    waits 10 ms (time.sleep / asyncio.sleep): the GIL is free meanwhile
    cpu   a few ms of pure Python arithmetic: holds the GIL throughout
    slow  waits 2 s: longer than a short shutdown deadline (the tests use it)

Every job ends by writing one ledger line (an `Entry`) to a Redis list: the
job's id, which attempt this is, when it was queued (or ticked), when it
started and ended (`time.perf_counter_ns`, CLOCK_MONOTONIC on Linux: one
clock for every process on the machine), and its pid. Pick-up latency is
start - queued; that the line exists is the proof the job ran, once per
attempt. Standard library only at the top: the cron tick imports this module
in a fresh interpreter, and redis is imported by whoever writes the line.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass

__all__ = [
    "CPU_LOOPS",
    "IO_S",
    "KINDS",
    "SLOW_S",
    "Entry",
    "do",
    "do_async",
    "entry",
    "forget",
    "pickup",
    "stamp",
]

#: The kinds a job can be, and what each does (the lessons' --job choices are these).
KINDS = {
    "noop": "returns at once",
    "io": "waits 10 ms, the GIL released",
    "cpu": "a few ms of pure Python, holding the GIL",
    "slow": "waits 2 s (longer than a short shutdown deadline)",
}

IO_S = 0.010  # 10 ms: long against a Redis round trip (~0.1 ms), short for a test
SLOW_S = 2.0
#: Iterations of the cpu job's loop: ~2 ms of one core on the 2-core machines the lab
#: targets (measured: 1.8-2.4 ms under Python 3.11). Fixed, not calibrated: every
#: system must be given the same work, whatever the machine's speed.
CPU_LOOPS = 40_000


def _cpu() -> int:
    total = 0
    for i in range(CPU_LOOPS):
        total += i * i % 7
    return total


def do(kind: str) -> None:
    """Run one job of `kind` in this thread."""
    if kind == "io":
        time.sleep(IO_S)
    elif kind == "slow":
        time.sleep(SLOW_S)
    elif kind == "cpu":
        _cpu()
    elif kind != "noop":
        raise ValueError(f"unknown job kind {kind!r}")


async def do_async(kind: str) -> None:
    """Run one job of `kind` on the running event loop (cpu blocks the loop, as it would)."""
    # Imported here, not at the top: only event loops call this, and a cron tick that
    # imported asyncio for nothing paid ~10 ms for it, every tick (-X importtime showed it).
    import asyncio

    if kind == "io":
        await asyncio.sleep(IO_S)
    elif kind == "slow":
        await asyncio.sleep(SLOW_S)
    else:
        do(kind)


@dataclass(frozen=True)
class Entry:
    """One ledger line: a job that ran (an attempt of it), with its clock readings in ns.

    booted and ready matter for a cron tick only: when its interpreter had
    started and imported the lab's package (booted) and when it had imported
    redis and connected (ready). A daemon was both long before the job came.
    """

    job_id: str
    attempt: int
    queued: int
    start: int
    end: int
    pid: int = 0
    booted: int = 0
    ready: int = 0

    def line(self) -> str:
        return " ".join(
            map(
                str,
                (
                    self.job_id,
                    self.attempt,
                    self.queued,
                    self.start,
                    self.end,
                    self.pid,
                    self.booted,
                    self.ready,
                ),
            )
        )

    @classmethod
    def parse(cls, line: str | bytes) -> Entry:
        if isinstance(line, bytes):
            line = line.decode()
        job_id, *numbers = line.split()
        return cls(job_id, *map(int, numbers))

    @property
    def pickup_ns(self) -> int:
        return self.start - self.queued


def pickup(nanoseconds: list[int]) -> dict[str, float]:
    """Median and p99 of pick-up latencies (ns in), in ms: what both lessons' tables show."""
    import statistics

    ms = sorted(n / 1e6 for n in nanoseconds)
    if len(ms) < 2:
        value = ms[0] if ms else float("nan")
        return {"pickup_p50_ms": value, "pickup_p99_ms": value}
    cuts = statistics.quantiles(ms, n=100, method="inclusive")
    return {"pickup_p50_ms": round(cuts[49], 3), "pickup_p99_ms": round(cuts[98], 3)}


def stamp() -> int:
    """Now, in the one clock every ledger line uses."""
    return time.perf_counter_ns()


def entry(job_id: str, attempt: int, queued: int, start: int, **more: int) -> Entry:
    """The line for a job that started at `start` and has just ended."""
    return Entry(job_id, attempt, queued, start, stamp(), os.getpid(), **more)


def forget(conn, namespace: str) -> int:
    """Delete every Redis key holding `namespace` (a run's own prefix); 0 if Redis is gone.

    SCAN, not KEYS: the server keeps answering others while we look. Only
    keys with the run's random namespace in their name: others share this Redis.
    """
    import redis

    try:
        doomed = list(conn.scan_iter(match=f"*{namespace}*", count=1000))
        if doomed:
            conn.delete(*doomed)
        return len(doomed)
    except (redis.ConnectionError, redis.TimeoutError):
        return 0  # the server is gone, and what it held with it
