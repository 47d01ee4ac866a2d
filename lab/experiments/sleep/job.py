"""What every SELECT SLEEP strategy shares: the job, the timings, the blocking client.

One interface for competing versions (curio's bench/ does the same for echo
servers): a strategy is `run(job) -> Timings`. It connects `job.clients`
clients, releases every query at one instant `go_ns`, and returns each client's query start and
end on the same clock (perf_counter_ns is CLOCK_MONOTONIC on Linux, so a
forked child's readings compare with its parent's).

Where the time goes is part of the lesson, so the timings keep the pieces
apart: connecting (`connect_ns`), the release skew (how late the last query
leaves after `go_ns`), and each query's own latency.
"""

from __future__ import annotations

import gc
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from lab.db import Server

__all__ = ["Job", "Strategy", "Timings", "connect_blocking", "measured_phase", "timed_query"]

#: How long one connect may take before the run gives up on it. A connect
#: that the server never answers (a listen queue overflow: MariaDB's back_log
#: is 80) would otherwise wait for ever, since MySQL's server speaks first.
CONNECT_TIMEOUT_S = 10

#: How many connects may be in flight at once in the asyncio strategy, well
#: under MariaDB's default back_log of 80 (measured here: a burst of 1,000
#: overflowed it). Threads and forks are paced by their own creation.
CONNECTS_IN_FLIGHT = 50


@dataclass(frozen=True)
class Job:
    server: Server
    clients: int
    seconds: float
    tag: str  # marks this run's queries in the server's PROCESSLIST

    @property
    def sql(self) -> str:
        # The comment travels with the query into PROCESSLIST.INFO, so the
        # watcher counts this run's sleeps and nobody else's.
        return f"SELECT SLEEP({self.seconds:g}) /* daemonlab {self.tag} */"


@dataclass
class Timings:
    connect_ns: int = 0  # from the first connect attempt to the last client ready
    go_ns: int = 0  # the instant every query was released
    starts: list[int] = field(default_factory=list)  # each client's query start
    ends: list[int] = field(default_factory=list)  # each client's query end


Strategy = Callable[[Job], Timings]


#: Sent once by every client right after it connects, outside the measured phase.
WARM_UP_SQL = "SELECT 1"


def connect_blocking(server: Server) -> Any:
    """One pymysql connection, bounded in time, TLS as the server asks, warmed up.

    The warm-up query walks the query path once before the clock starts: a
    forked child pays its copy-on-write page faults there, not after the
    release, and every client's first-use costs stay out of wall_s.
    """
    from lab import db

    conn = db.connect(server, connect_timeout=CONNECT_TIMEOUT_S)
    try:
        conn.query(WARM_UP_SQL)
    except BaseException:
        conn.close()
        raise
    return conn


def timed_query(conn: Any, sql: str) -> tuple[int, int]:
    """Run one query on a pymysql connection; its start and end on the monotonic clock.

    Connection.query() reads the whole result; a cursor would add nothing here
    but Python work per client, paid while the other clients wait for the GIL.
    """
    start = time.perf_counter_ns()
    conn.query(sql)
    return start, time.perf_counter_ns()


@contextmanager
def measured_phase() -> Iterator[None]:
    """No garbage collection while queries are in flight.

    With a thousand connections alive, a cyclic GC pass that starts in the
    middle of the release walks every one of their objects while every client
    waits: measured here, it stretched the asyncio release skew at 1,000
    clients from 27 ms to 72 ms. gc.freeze() moves what exists into the
    permanent generation first, so the collection after the phase is cheap too.
    """
    gc.freeze()
    gc.disable()
    try:
        yield
    finally:
        gc.enable()
        gc.unfreeze()
