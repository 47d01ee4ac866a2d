"""What every SELECT SLEEP strategy shares: the job, its timings, one blocking client,
and the words for what went wrong.

One interface for competing versions (curio's bench/ does the same for echo
servers): a strategy is `run(job) -> Timings`. It connects `job.clients`
clients, releases every query at one instant `go_ns`, and returns each client's query start and
end on the same clock (perf_counter_ns is CLOCK_MONOTONIC on Linux, so a
forked child's readings compare with its parent's).

Where the time goes is part of the lesson, so the timings keep the pieces
apart: connecting (`connect_ns`), the release skew (how late the last query
leaves after `go_ns`), and each query's own latency. The query also asks the
server when it started and ended each sleep (NOW(6) is the statement's start,
SYSDATE(6) the moment it is evaluated, after the SLEEP): what the server
itself did is the floor no client can beat.

When a client cannot be made or a query fails, the strategy says why in one
of a few words (`Failure.kind`): a limit the clients ran into (out of file
descriptors, a thread or process that cannot be created, memory, the server
refusing, a time limit: the scale sweep records these as where a strategy
broke), the server going away mid-query, or anything else. Children send
the same words up their pipe, so the parent says it once, in one line.
"""

from __future__ import annotations

import errno
import gc
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from lab.errors import LabError

if TYPE_CHECKING:
    from lab.db import Server

__all__ = [
    "LIMITS",
    "Broke",
    "Job",
    "Strategy",
    "Timings",
    "connect_blocking",
    "failure",
    "from_line",
    "measured_phase",
    "raise_failure",
    "timed_query",
]

#: How long one connect may take before the run gives up on it. A connect
#: that the server never answers (a listen queue overflow: MariaDB's back_log
#: is 80) would otherwise wait for ever, since MySQL's server speaks first.
CONNECT_TIMEOUT_S = 10

#: How many connects may be in flight at once in the asyncio strategy, well
#: under MariaDB's default back_log of 80 (measured here: a burst of 1,000
#: overflowed it). Threads and forks are paced by their own creation.
CONNECTS_IN_FLIGHT = 50

#: The limits a strategy can run into, as the sweep records them.
LIMITS = {
    "fds": "out of file descriptors",
    "threads": "a thread could not be created",
    "processes": "a process could not be created",
    "memory": "out of memory",
    "refused": "the server refused a connection",
    "time": "the time limit passed",
}

# errnos that mean "a limit", by what they limit (fork's EAGAIN is RLIMIT_NPROC or
# the kernel's pid/thread tables; EMFILE the process's RLIMIT_NOFILE, ENFILE the system's).
_ERRNO_LIMITS = {errno.EMFILE: "fds", errno.ENFILE: "fds", errno.ENOMEM: "memory"}
# Server errors that mean it will not take another connection: Too many
# connections, Can't create a new thread, Out of memory.
_SERVER_REFUSALS = (1040, 1135, 1041)


@dataclass(frozen=True)
class Job:
    server: Server
    clients: int
    seconds: float
    tag: str  # marks this run's queries in the server's PROCESSLIST
    driver: str = "aiomysql"  # the asyncio strategy's driver
    time_limit: float = 120.0  # the longest connecting (all clients ready) may take
    # Called once every client is connected and idle, just before the release (the
    # watcher counts the server's threads then); never sent to a child process.
    on_connected: Callable[[], None] | None = field(default=None, compare=False, repr=False)

    def connected(self) -> None:
        if self.on_connected is not None:
            self.on_connected()

    @property
    def sql(self) -> str:
        # The comment travels with the query into PROCESSLIST.INFO, so the
        # watcher counts this run's sleeps and nobody else's. The timestamps
        # come back as doubles in µs (x 1e6): no Decimal to build per client.
        return (
            f"SELECT UNIX_TIMESTAMP(NOW(6)) * 1e6, SLEEP({self.seconds:g}),"
            f" UNIX_TIMESTAMP(SYSDATE(6)) * 1e6 /* daemonlab {self.tag} */"
        )


@dataclass
class Timings:
    connect_ns: int = 0  # from the first connect attempt to the last client ready
    go_ns: int = 0  # the instant every query was released
    starts: list[int] = field(default_factory=list)  # each client's query start
    ends: list[int] = field(default_factory=list)  # each client's query end
    server_starts: list[float] = field(default_factory=list)  # the server's NOW(6), µs
    server_ends: list[float] = field(default_factory=list)  # the server's SYSDATE(6), µs

    def add(self, start: int, end: int, server_start: float, server_end: float) -> None:
        self.starts.append(start)
        self.ends.append(end)
        self.server_starts.append(server_start)
        self.server_ends.append(server_end)


Strategy = Callable[[Job], Timings]


class Broke(LabError):
    """A limit the clients ran into (LIMITS): the scale sweep's "where it broke"."""

    def __init__(self, kind: str, detail: str) -> None:
        super().__init__(f"{LIMITS[kind]}: {detail}")
        self.kind, self.detail = kind, detail


def failure(exc: BaseException, during: str) -> tuple[str, str]:
    """(kind, one line) for what went wrong: a LIMITS key, "lost" or "other".

    `during` is "connect" or "query". Only expected failures are named; a
    bug keeps its own type and message under "other"."""
    from lab import db

    if isinstance(exc, Broke):
        return exc.kind, exc.detail
    text = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    code = exc.args[0] if exc.args and isinstance(exc.args[0], int) else None
    if during == "query" and db.went_away(exc):
        return "lost", "the server went away mid-query"
    for cause in _causes(exc):  # a driver may wrap the socket's error in its own
        if isinstance(cause, OSError) and cause.errno in _ERRNO_LIMITS:
            return _ERRNO_LIMITS[cause.errno], str(cause)
    if isinstance(exc, MemoryError):
        return "memory", "MemoryError"
    if isinstance(exc, TimeoutError):
        return "time", f"a connect got no answer in {CONNECT_TIMEOUT_S} s"
    if code in _SERVER_REFUSALS:
        return "refused", text
    for kind, words in _WRAPPED:
        if words in text:
            return kind, text
    return "other", f"{type(exc).__name__}: {text}"


# A driver wraps the socket's error in its own: aiomysql raises its error "from"
# the OSError; pymysql puts the errno's words in its text ("Can't connect to MySQL
# server on ... ([Errno 24] Too many open files)").
_WRAPPED = (("fds", "Too many open files"), ("memory", "Cannot allocate memory"))


def _causes(exc: BaseException) -> Iterator[BaseException]:
    """exc, what it was raised from, and so on (a chain is short; a cycle is cut)."""
    seen: set[int] = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        yield exc
        exc = exc.__cause__ or exc.__context__


def from_line(job: Job, kind: str, text: str) -> LabError:
    """The parent's one line for a failure a client reported as (kind, text)."""
    from lab import db

    if kind in LIMITS:
        return Broke(kind, text)
    if kind == "lost":
        return db.explain(job.server, ConnectionError(text), during="query")
    return LabError(f"a client failed: {text}")


def raise_failure(job: Job, exc: BaseException, during: str) -> BaseException:
    """What a strategy raises, in its own process, for a client's `exc`: a Broke for a
    limit, one line for a driver's error (db.explain), and anything else as it is."""
    from lab import db

    kind, text = failure(exc, during)
    if kind in LIMITS or kind == "lost":
        return from_line(job, kind, text)
    if isinstance(exc, LabError):
        return exc
    if exc.args and isinstance(exc.args[0], int):  # a driver's (code, message) error
        return db.explain(job.server, exc, during="login" if during == "connect" else "query")
    return exc


#: Sent once by every client right after it connects, outside the measured phase.
WARM_UP_SQL = "SELECT 1"


def connect_blocking(server: Server) -> Any:
    """One pymysql connection, bounded in time, TLS as the server asks, warmed up.

    The warm-up query walks the query path once before the clock starts: a
    forked child pays its copy-on-write page faults there, not after the
    release, and every client's first-use costs stay out of wall_s.
    Driver errors come through as they are: the caller names them (failure()).
    """
    import pymysql

    conn = pymysql.connect(**server.pymysql_kwargs(connect_timeout=CONNECT_TIMEOUT_S))
    try:
        conn.query(WARM_UP_SQL)
    except BaseException:
        conn.close()
        raise
    return conn


def timed_query(cursor: Any, sql: str) -> tuple[int, int, float, float]:
    """Run one query on a pymysql cursor made before the release; its start and end on
    the monotonic clock, and the server's own start and end (µs, its wall clock)."""
    start = time.perf_counter_ns()
    cursor.execute(sql)
    server_start, _, server_end = cursor.fetchone()
    return start, time.perf_counter_ns(), server_start, server_end


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
