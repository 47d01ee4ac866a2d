"""One asyncio task per client, each with its own connection, on one event loop.

No threads and no processes: one event loop waits on thousands of sockets at
once, and a waiting task costs a few kilobytes. What is left of each client's
cost is Python work: the loop's own (asyncio's, or uvloop's, which is libuv
in C: `--loop`) and the driver's (`--driver`): aiomysql is pymysql's
protocol code in pure Python under asyncio; asyncmy is the same protocol in
Cython. At thousands of clients that work, done one client after another on
one core, is what spreads the release and the replies.

Two traps measured on a machine like this one shape the connect phase:

- MariaDB's listen backlog (back_log, 80 by default) overflows under a burst
  of a thousand connects; the kernel completes handshakes the server never
  accepts, and since MySQL's server speaks first, those clients wait for a
  greeting. So connects are paced by a semaphore well under the backlog, and
  each is bounded by asyncio.timeout.
- aiomysql's close() drops the socket without COM_QUIT; the server counts an
  aborted client and logs a warning each time. ensure_closed() says goodbye
  (asyncmy's too).

The connect phase is not the measured phase, so pacing it costs nothing in
the figure that matters.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import importlib
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from lab.experiments.sleep.job import (
    CONNECT_TIMEOUT_S,
    CONNECTS_IN_FLIGHT,
    WARM_UP_SQL,
    Broke,
    Job,
    Timings,
    raise_failure,
)

__all__ = ["DRIVERS", "LOOPS", "asyncio_clients", "load"]

LOOPS = ("asyncio", "uvloop")

#: How long saying goodbye (COM_QUIT) may take before a connection is just dropped.
CLOSE_TIMEOUT_S = 5


async def _aiomysql(server: Any) -> tuple[Any, Any]:
    import aiomysql

    conn = await aiomysql.connect(**server.aiomysql_kwargs())
    return conn, await conn.cursor()


async def _asyncmy(server: Any) -> tuple[Any, Any]:
    import asyncmy

    conn = await asyncmy.connect(**server.asyncmy_kwargs())
    return conn, conn.cursor()


#: How each driver makes a connection and its cursor (the cursor is made before
#: the release, so the release sends the query and does nothing else). Past
#: that the two drivers are used alike (see _query).
DRIVERS: dict[str, Callable[[Any], Awaitable[tuple[Any, Any]]]] = {
    "aiomysql": _aiomysql,
    "asyncmy": _asyncmy,
}


async def _query(cursor: Any, sql: str) -> tuple:
    """One query and its row; both drivers' fetchone() is awaitable (aiomysql's
    returns a finished future: its buffered cursor already holds the row)."""
    await cursor.execute(sql)
    return await cursor.fetchone()


def load(loops: Sequence[str], drivers: Sequence[str]) -> None:
    """Import the loops and drivers a run will use before it measures anything: an
    import inside the first measurement would count as what its clients cost."""
    for name in {*drivers, *(loop for loop in loops if loop != "asyncio")}:
        importlib.import_module(name)


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
    make = DRIVERS[job.driver]
    pacing = asyncio.Semaphore(CONNECTS_IN_FLIGHT)
    conns: list[Any] = []

    async def connect() -> Any:
        # asyncio.timeout, not wait_for: 3.11's wait_for runs the connect as a task of
        # its own, and one that fails just as it is cancelled is an exception
        # "never retrieved", printed with its traceback when the task is collected.
        async with pacing, asyncio.timeout(CONNECT_TIMEOUT_S):
            conn, cursor = await make(job.server)
            conns.append(conn)  # before the warm-up: a failed warm-up still says goodbye
            await _query(cursor, WARM_UP_SQL)
            return cursor

    timings = Timings()
    try:
        began = time.perf_counter_ns()
        cursors = await _connect_all(job, connect, conns)
        timings.connect_ns = time.perf_counter_ns() - began

        go = asyncio.Event()

        async def client(cursor: Any) -> tuple[int, int, float, float]:
            await go.wait()
            start = time.perf_counter_ns()
            server_start, _, server_end = await _query(cursor, job.sql)
            return start, time.perf_counter_ns(), server_start, server_end

        tasks = [asyncio.create_task(client(cursor)) for cursor in cursors]
        await asyncio.sleep(0)  # one turn of the loop: every task is now waiting on `go`
        job.connected()
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
        except Exception as exc:
            # The others fail as fast (or finish): let them, then say it once.
            _, stuck = await asyncio.wait(tasks, timeout=job.seconds + CLOSE_TIMEOUT_S)
            for task in stuck:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            raise raise_failure(job, exc, "query") from None
        for result in results:
            timings.add(*result)
    finally:
        await asyncio.gather(*(_say_goodbye(c) for c in conns))
    return timings


async def _connect_all(job: Job, connect: Callable[[], Awaitable[Any]], conns: list) -> list:
    """Every client's cursor, or the first failure; nothing left connecting either way.

    Not asyncio.gather: its first exception leaves the other connects
    running, and they would land after the goodbyes, never closed."""
    connecting = [asyncio.create_task(connect()) for _ in range(job.clients)]
    try:
        done, pending = await asyncio.wait(
            connecting, timeout=job.time_limit, return_when=asyncio.FIRST_EXCEPTION
        )
    finally:  # an error, the time limit or Ctrl-C: the rest stop connecting
        for task in connecting:
            task.cancel()
        await asyncio.gather(*connecting, return_exceptions=True)
    failed = [t.exception() for t in done if not t.cancelled() and t.exception() is not None]
    if failed:
        raise raise_failure(job, failed[0], "connect")
    if pending:
        got = f"{len(done)} of {job.clients} clients connected in {job.time_limit:g} s"
        raise Broke("time", got)
    return [task.result() for task in connecting]


async def _say_goodbye(conn: Any) -> None:
    try:
        async with asyncio.timeout(CLOSE_TIMEOUT_S):
            await conn.ensure_closed()
    except Exception:  # the socket is broken or silent (the server went away): drop it
        with contextlib.suppress(Exception):
            conn.close()
