"""The talk's two versions: one client after another, and one thread per client.

`sequential` is the slide's "w/o": one connection, N queries in a row, N x s.
`threads` is the slide's "with": blocking I/O releases the GIL, so N threads
each waiting on its own socket overlap their waits and finish in about s.
"""

from __future__ import annotations

import threading
import time

from lab import children
from lab.experiments.sleep.job import (
    Broke,
    Job,
    Timings,
    connect_blocking,
    raise_failure,
    timed_query,
)

__all__ = ["sequential", "threads"]

#: How long the main thread waits for a client thread past the query itself
#: before it calls the run broken (a thread stuck in connect is bounded by
#: the connect timeout; this bounds everything after).
JOIN_GRACE_S = 30


def sequential(job: Job) -> Timings:
    timings = Timings()
    began = time.perf_counter_ns()
    try:
        conn = connect_blocking(job.server)
    except Exception as exc:
        raise raise_failure(job, exc, "connect") from None
    try:
        cursor = conn.cursor()
        timings.connect_ns = time.perf_counter_ns() - began
        job.connected()
        timings.go_ns = time.perf_counter_ns()
        for _ in range(job.clients):
            try:
                timings.add(*timed_query(cursor, job.sql))
            except Exception as exc:
                raise raise_failure(job, exc, "query") from None
    finally:
        conn.close()  # close() sends COM_QUIT: the server counts no aborted client
    return timings


def threads(job: Job) -> Timings:
    """One connection per thread; barriers for "all connected" and "all done", an event for "go".

    Nobody hangs up until every query is back: a COM_QUIT sent by a finished
    client needs the GIL that a client still reading its result is waiting for.
    """
    n = job.clients
    connected, all_done = threading.Barrier(n + 1), threading.Barrier(n)
    go = threading.Event()
    abandon = threading.Event()  # set with go when the run is called off before the release
    results: list[tuple[int, int, float, float] | None] = [None] * n
    errors: list[tuple[BaseException, str]] = []  # (what, "connect" or "query")
    ready: list[int] = []  # list.append is atomic under the GIL: a counter without a lock

    def client(i: int) -> None:
        try:
            conn = connect_blocking(job.server)
            cursor = conn.cursor()  # made now: the release sends the query and nothing else
        except BaseException as exc:  # reported by the main thread, once
            errors.append((exc, "connect"))
            connected.abort()
            return
        try:
            ready.append(i)
            connected.wait()
            go.wait()
            if not abandon.is_set():
                results[i] = timed_query(cursor, job.sql)
                all_done.wait()  # the last client back lets everyone hang up
        except threading.BrokenBarrierError:
            pass  # another client failed: nothing to run, or nobody left to wait for
        except BaseException as exc:
            errors.append((exc, "query"))
            all_done.abort()  # a failed query must not keep the others waiting
        finally:
            conn.close()  # close() sends COM_QUIT: the server counts no aborted client

    timings = Timings()
    workers = [threading.Thread(target=client, args=(i,), name=f"sleep-{i}") for i in range(n)]
    began = time.perf_counter_ns()
    try:
        for i, worker in enumerate(workers):
            try:
                worker.start()
            except RuntimeError as exc:  # "can't start new thread": RLIMIT_NPROC, memory, pids
                raise Broke("threads", f"thread {i + 1} of {n}: {exc}") from None
        connected.wait(timeout=job.time_limit)
        timings.connect_ns = time.perf_counter_ns() - began
        job.connected()
        timings.go_ns = time.perf_counter_ns()
        go.set()
    except threading.BrokenBarrierError:
        if not errors:  # nobody failed: the barrier's timeout broke it
            done = f"{len(ready)} of {n} clients connected in {job.time_limit:g} s"
            raise Broke("time", done) from None
    finally:
        # Whatever happened (an error, Ctrl-C in the main thread), let every
        # client finish or give up, so each closes its own connection.
        if not go.is_set():
            abandon.set()
            connected.abort()
            go.set()
        children.join_threads(workers, job.seconds + JOIN_GRACE_S)
        all_done.abort()  # a client still out after the grace: nobody waits for it any more
    if errors:
        exc, during = errors[0]
        raise raise_failure(job, exc, during) from None
    for result in results:
        timings.add(*result)
    return timings
