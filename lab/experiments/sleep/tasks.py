"""One asyncio task per client, each with its own aiomysql connection.

No threads and no processes: one event loop waits on a thousand sockets at
once, and a task waiting costs about a kilobyte. Two traps measured on a
machine like this one shape the connect phase:

- MariaDB's listen backlog (back_log, 80 by default) overflows under a burst
  of a thousand connects; the kernel completes handshakes the server never
  accepts, and since MySQL's server speaks first, those clients wait for a
  greeting for ever. So connects are paced by a semaphore well under the
  backlog, and each is bounded by asyncio.wait_for.
- aiomysql's close() drops the socket without COM_QUIT; the server counts an
  aborted client and logs a warning each time. ensure_closed() says goodbye.

The connect phase is not the measured phase, so pacing it costs nothing in
the figure that matters.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import time
from collections.abc import Callable
from typing import Any

from lab.errors import LabError
from lab.experiments.sleep.job import (
    CONNECT_TIMEOUT_S,
    CONNECTS_IN_FLIGHT,
    Job,
    Timings,
)

__all__ = ["LOOPS", "asyncio_clients"]

LOOPS = ("asyncio", "uvloop")

#: How long saying goodbye (COM_QUIT) may take before a connection is just dropped.
CLOSE_TIMEOUT_S = 5


def asyncio_clients(job: Job, loop: str = "asyncio") -> Timings:
    if _loop_running_here():
        # Inside Jupyter the kernel's own loop runs in this thread, and a loop
        # cannot run inside another: give ours a thread of its own.
        with concurrent.futures.ThreadPoolExecutor(1, "sleep-asyncio") as thread:
            return thread.submit(_run, job, loop).result()
    return _run(job, loop)


def _run(job: Job, loop: str) -> Timings:
    with asyncio.Runner(loop_factory=_loop_factory(loop)) as runner:
        return runner.run(_clients(job))


def _loop_running_here() -> bool:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return False
    return True


def _loop_factory(loop: str) -> Callable[[], asyncio.AbstractEventLoop] | None:
    if loop == "asyncio":
        return None
    import uvloop  # libuv's loop, in C: less Python work per wakeup than asyncio's own

    return uvloop.new_event_loop


async def _clients(job: Job) -> Timings:
    import aiomysql

    pacing = asyncio.Semaphore(CONNECTS_IN_FLIGHT)

    async def connect() -> Any:
        async with pacing:
            return await asyncio.wait_for(
                aiomysql.connect(**job.server.aiomysql_kwargs()), CONNECT_TIMEOUT_S
            )

    timings = Timings()
    conns: list[Any] = []
    try:
        began = time.perf_counter_ns()
        made = await asyncio.gather(
            *(connect() for _ in range(job.clients)), return_exceptions=True
        )
        conns = [c for c in made if not isinstance(c, BaseException)]
        failures = [c for c in made if isinstance(c, BaseException)]
        if failures:
            raise _explain(job, failures[0])
        timings.connect_ns = time.perf_counter_ns() - began

        go = asyncio.Event()

        async def client(conn: Any) -> tuple[int, int]:
            await go.wait()
            start = time.perf_counter_ns()
            await conn.query(job.sql)  # reads the whole result; a cursor adds only Python work
            return start, time.perf_counter_ns()

        tasks = [asyncio.create_task(client(conn)) for conn in conns]
        await asyncio.sleep(0)  # one turn of the loop: every task is now waiting on `go`
        timings.go_ns = time.perf_counter_ns()
        go.set()
        queries = asyncio.gather(*tasks)
        try:
            results = await asyncio.shield(queries)
        except asyncio.CancelledError:
            # Ctrl-C: asyncio.run cancels us. Let the queries in flight finish
            # (shielded), so each connection can still say goodbye, then go.
            await asyncio.wait([queries], timeout=job.seconds + CLOSE_TIMEOUT_S)
            raise
        for start, end in results:
            timings.starts.append(start)
            timings.ends.append(end)
    finally:
        await asyncio.gather(*(_say_goodbye(c) for c in conns))
    return timings


def _explain(job: Job, exc: BaseException) -> BaseException:
    """A failed connect as one line a person can act on; anything else as it is."""
    import pymysql

    from lab import db

    if isinstance(exc, asyncio.TimeoutError):
        return LabError(
            f"a connect got no answer in {CONNECT_TIMEOUT_S} s: is the server's listen"
            " queue (back_log) full, or the server stuck?"
        )
    if isinstance(exc, pymysql.err.MySQLError):
        return db.explain(job.server, exc)
    return exc


async def _say_goodbye(conn: Any) -> None:
    try:
        await asyncio.wait_for(conn.ensure_closed(), CLOSE_TIMEOUT_S)
    except (TimeoutError, OSError):
        conn.close()  # the socket is broken or silent: drop it, the server will notice
