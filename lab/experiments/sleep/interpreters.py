"""The slide's threads, each client in a subinterpreter of its own (PEP 684, 3.12+).

The threads strategy, one step on: each client is a subinterpreter with its
own GIL, run from its own thread, and connects with pymysql there. pymysql
is pure Python, so it loads in a subinterpreter (the cpu lesson's crossing
facts check which of the lab's dependencies do: psutil, numpy and pyzmq
refuse, their C extensions declaring no subinterpreter support). For
SELECT SLEEP the GIL was never the problem (a thread blocked in recv()
releases it), so the lesson here is the opposite of the cpu one: the waits
overlap as well as with threads, and each client costs a whole interpreter
to make.

Where there are none (Python before 3.12), the strategy says so in one line
and the sweep goes on without it.

Nothing but bytes, ints and strings crosses into a subinterpreter, so its
clients talk to this one over pipes, as forked children do (processes.py):
each writes READY once connected, blocks reading `go` until the release
(EOF: go; ABANDON: give up), then writes its timings as one line.

Things that do not work, and why:
- Handing a client a pymysql connection, a Barrier or an Event: none of them
  crosses (NotShareableError). Each connects in its own interpreter.
- One results pipe read only after the threads are joined, with hundreds of
  clients: a pipe holds 64 KiB, about 1,000 lines, and a writer blocked on a
  full pipe is never joined. CEILING in plan.py keeps the sweep far below.
- A TLS server: pymysql_kwargs carries an SSLContext, which cannot cross;
  the strategy refuses in one line rather than connect without TLS.
"""

from __future__ import annotations

import json
import os
import sys
import threading
import time

from lab import subinterpreters
from lab.errors import LabError
from lab.experiments.sleep.job import (
    CONNECT_TIMEOUT_S,
    WARM_UP_SQL,
    Broke,
    Job,
    Timings,
    from_line,
)

__all__ = ["CLIENT", "interpreters", "refuse_where_missing"]

READY = b"r"  # a client is connected and warmed up
FAILED = b"e"  # a client could not connect: its line on the results pipe says why
ABANDON = b"x"  # the run is called off before the release

#: Past the query, how long a client's thread may take to finish before the run is broken.
JOIN_GRACE_S = 30

#: What each subinterpreter runs: one client, the same steps as job.py's
#: connect_blocking and timed_query (which cannot be imported there: job.py
#: pulls in the lab, and through lab.db modules that refuse to load).
CLIENT = """\
import json, os, sys, time
sys.path[:0] = [p for p in paths.split(os.pathsep) if p not in sys.path]
import pymysql

def client():
    try:
        conn = pymysql.connect(**json.loads(kwargs))
        conn.query(warm_up)
        cursor = conn.cursor()
    except Exception as exc:
        os.write(results, ("E " + type(exc).__name__ + ": " + str(exc)).encode()[:500] + b"\\n")
        os.write(ready, b"e")
        return
    try:
        os.write(ready, b"r")
        if os.read(go, 1):
            return  # ABANDON: the run was called off
        start = time.perf_counter_ns()
        cursor.execute(sql)
        server_start, _, server_end = cursor.fetchone()
        end = time.perf_counter_ns()
        os.write(results, f"T {start} {end} {server_start} {server_end}\\n".encode())
    except Exception as exc:
        os.write(results, ("Q " + type(exc).__name__ + ": " + str(exc)).encode()[:500] + b"\\n")
    finally:
        conn.close()

client()
"""


def refuse_where_missing(strategies) -> None:
    """Before the run exists: asked for here, without subinterpreters, is one line."""
    missing = subinterpreters.unavailable()
    if "interpreters" in strategies and missing:
        raise LabError(f"sleep --strategy interpreters: {missing} (it needs 3.12 or newer)")


def interpreters(job: Job) -> Timings:
    """One subinterpreter per client, each run from its own thread; pipes for ready and go."""
    refuse_where_missing(("interpreters",))
    kwargs = job.server.pymysql_kwargs(connect_timeout=CONNECT_TIMEOUT_S)
    if "ssl" in kwargs:
        raise LabError("sleep --strategy interpreters: an SSLContext cannot cross into one")
    n = job.clients
    ready_r, ready_w = os.pipe()
    go_r, go_w = os.pipe()
    results_r, results_w = os.pipe()
    values = {
        "kwargs": json.dumps(kwargs),
        "paths": os.pathsep.join(sys.path),
        "sql": job.sql,
        "warm_up": WARM_UP_SQL,
        "ready": ready_w,
        "go": go_r,
        "results": results_w,
    }
    errors: list[BaseException] = []

    def run_client() -> None:
        try:
            with subinterpreters.Subinterpreter() as interp:
                interp.bind(**values)
                interp.exec(CLIENT)
        except BaseException as exc:  # said by the main thread, once
            errors.append(exc)
            os.write(ready_w, FAILED)  # whoever waits for it hears at once

    timings = Timings()
    workers = [threading.Thread(target=run_client, name=f"sleep-interp-{i}") for i in range(n)]
    released = False
    began = time.perf_counter_ns()
    try:
        for i, worker in enumerate(workers):
            try:
                worker.start()
            except RuntimeError as exc:  # "can't start new thread"
                raise Broke("threads", f"thread {i + 1} of {n}: {exc}") from None
        said = _await_ready(ready_r, n, job.time_limit)
        timings.connect_ns = time.perf_counter_ns() - began
        if said == READY * n:
            job.connected()
            timings.go_ns = time.perf_counter_ns()
            os.close(go_w)  # EOF on go: every client's query leaves now
            go_w = -1
            released = True
    finally:
        if go_w >= 0:  # called off before the release: every waiting client gives up
            os.write(go_w, ABANDON * n)
            os.close(go_w)
        for worker in workers:
            worker.join(job.seconds + JOIN_GRACE_S)
        os.close(results_w)
        lines = _read_all(results_r).decode(errors="replace").splitlines()
        for fd in (ready_r, ready_w, go_r, results_r):
            os.close(fd)
    if errors:
        raise LabError(f"a client's subinterpreter failed: {errors[0]}")
    for line in lines:
        kind, _, rest = line.partition(" ")
        if kind == "T":
            start, end, server_start, server_end = rest.split()
            timings.add(int(start), int(end), float(server_start), float(server_end))
        else:
            raise from_line(job, "other", rest)
    if not released or len(timings.starts) != n:
        raise Broke("time", f"{len(timings.starts)} of {n} clients answered in time")
    return timings


def _await_ready(fd: int, count: int, timeout: float) -> bytes:
    """One byte per client (READY or FAILED), or fewer when the deadline passes."""
    import select

    deadline = time.monotonic() + timeout
    got = b""
    while len(got) < count and FAILED not in got:
        left = deadline - time.monotonic()
        if left <= 0 or not select.select([fd], [], [], left)[0]:
            break
        got += os.read(fd, count - len(got))
    return got


def _read_all(fd: int) -> bytes:
    chunks = []
    while chunk := os.read(fd, 65536):
        chunks.append(chunk)
    return b"".join(chunks)
