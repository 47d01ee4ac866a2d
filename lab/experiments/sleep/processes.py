"""One process per client: raw os.fork, and multiprocessing with a start method.

Each child opens its own connection *after* the fork. A connection made
before fork would be one socket read by two processes, and the MySQL
protocol has no way to tell whose reply is whose (the fork experiment shows
the corruption live); SQLAlchemy's pooling docs give the same rule.

`fork` talks to its children over four pipes: "ready" lines up, one "go"
byte down for each child, "start end server_start server_end" lines up, and
"done", which the parent closes once every result is in. A line is shorter
than PIPE_BUF, so the children's writes never interleave. A child that
fails says so on the same pipe ("error KIND TEXT", job.failure's words) and
exits; the parent stops at the first such line and says it once.

Nobody hangs up before everyone is done: a child that closes its connection
and exits while others still read their results takes the CPU from them
(two cores, a hundred processes), and that would be measured as their latency.
"""

from __future__ import annotations

import dataclasses
import errno
import multiprocessing
import os
import queue
import select
import time
from typing import NoReturn

from lab import children
from lab.errors import LabError
from lab.experiments.sleep.job import (
    Broke,
    Job,
    Timings,
    connect_blocking,
    failure,
    from_line,
    timed_query,
)
from lab.start_methods import require_fork, stop_multiprocessing_servers

__all__ = ["fork", "pool"]

EXIT_OK = 0
EXIT_FAILED = 1  # the child reported why on the ready pipe before exiting

#: How long stopping children may take before TERM becomes KILL.
GRACE_S = 5.0

#: How long after the sleep the results may take to come back before the run
#: is called stuck (a server that stops answering without closing the sockets).
RESULTS_GRACE_S = 40.0


def _cannot_start(i: int, n: int, exc: OSError) -> Broke:
    """fork() (or a Process.start()) refused: EAGAIN is RLIMIT_NPROC or the kernel's
    pid or thread table, ENOMEM memory for the child's page tables."""
    kind = "memory" if exc.errno == errno.ENOMEM else "processes"
    return Broke(kind, f"process {i + 1} of {n}: {exc.strerror or exc}")


def _take_orders_from_parent() -> None:
    """A child's signal dispositions: the parent decides when it stops.

    A terminal's Ctrl-C reaches every process of the foreground group, and a
    supervisor's stop (systemd's KillMode=control-group, supervisord's
    stopasgroup) sends TERM to every process of the group. The children
    ignore INT, TERM, HUP and QUIT alike: the parent gets the signal too, lets
    the queries in flight finish, then closes the pipes (sets the events) the
    children wait on, and each hangs up with a COM_QUIT. A child that obeyed
    TERM itself would drop its query half-read: the server counts an aborted
    client (32 of 32, measured, before this). The parent starts them with
    those signals held (children.stop_signals_held), so none arrives before
    this runs. A child stuck past the parent's patience gets KILL.
    """
    children.ignore_stop_signals()


# -- raw fork ---------------------------------------------------------------------------
def fork(job: Job) -> Timings:
    require_fork("the fork strategy")
    ready_r, ready_w = os.pipe()
    go_r, go_w = os.pipe()
    out_r, out_w = os.pipe()
    done_r, done_w = os.pipe()
    pids: list[int] = []
    timings = Timings()
    finished = False
    try:
        began = time.perf_counter_ns()
        with children.stop_signals_held():  # _take_orders_from_parent says why
            for i in range(job.clients):
                try:
                    pid = os.fork()
                except OSError as exc:
                    raise _cannot_start(i, job.clients, exc) from None
                if pid == 0:  # the child never returns from here
                    parent_ends = (ready_r, go_w, out_r, done_w)
                    _fork_child(job, ready_w, go_r, out_w, done_r, parent_ends)
                pids.append(pid)
        # The parent keeps only its own ends; otherwise it would never see EOF
        # on a pipe whose children have all exited.
        for fd in (ready_w, go_r, out_w, done_r):
            os.close(fd)
        ready_w = go_r = out_w = done_r = -1
        _expect_lines(job, ready_r, "ready", job.time_limit)
        timings.connect_ns = time.perf_counter_ns() - began
        job.connected()
        timings.go_ns = time.perf_counter_ns()
        os.write(go_w, b"g" * job.clients)
        for line in _expect_lines(job, out_r, "result", job.seconds + RESULTS_GRACE_S):
            start, end, server_start, server_end = line.split()
            timings.add(int(start), int(end), float(server_start), float(server_end))
        finished = True
    finally:
        # Closing done_w (and go_w) is what lets the children go: EOF on a read.
        for fd in (ready_r, ready_w, go_r, go_w, out_r, out_w, done_r, done_w):
            if fd >= 0:
                os.close(fd)
        # On the way out after an error or Ctrl-C, a child may still be in its
        # query: give it the sleep's length to finish and hang up properly.
        children.stop_pids(pids, GRACE_S, patience=GRACE_S if finished else job.seconds + GRACE_S)
    return timings


def _fork_child(
    job: Job, ready_w: int, go_r: int, out_w: int, done_r: int, parent_ends: tuple
) -> NoReturn:
    """The child's whole life: connect, say ready, wait for go, query, report, wait, exit."""
    code = EXIT_FAILED
    try:
        _take_orders_from_parent()
        for fd in parent_ends:
            os.close(fd)
        try:
            conn = connect_blocking(job.server)
            cursor = conn.cursor()
        except Exception as exc:
            _report(ready_w, exc, "connect")
            return
        try:
            os.write(ready_w, b"ready\n")
            if os.read(go_r, 1):  # EOF instead of a byte: the parent gave up
                try:
                    result = timed_query(cursor, job.sql)
                except Exception as exc:
                    _report(out_w, exc, "query")
                    return
                os.write(out_w, "{} {} {!r} {!r}\n".format(*result).encode())
                os.read(done_r, 1)  # returns at EOF, when the parent has every result
                code = EXIT_OK
        finally:
            conn.close()
    finally:
        # os._exit, never sys.exit: the child must not run the parent's atexit
        # handlers or flush the parent's copied stdio buffers a second time.
        os._exit(code)


def _report(fd: int, exc: BaseException, during: str) -> None:
    """A child's failure, as one line the parent turns into its one line (job.from_line)."""
    kind, text = failure(exc, during)
    os.write(fd, f"error {kind} {text}"[: select.PIPE_BUF - 1].replace("\n", " ").encode() + b"\n")


def _expect_lines(job: Job, fd: int, what: str, timeout: float) -> list[str]:
    """Read one line per client from a pipe, within `timeout`; a child's error ends it at once."""
    count = job.clients
    buffer = b""
    deadline = time.monotonic() + timeout
    while buffer.count(b"\n") < count:
        left = deadline - time.monotonic()
        if left <= 0 or not select.select([fd], [], [], left)[0]:
            lines = buffer.count(b"\n")
            got = f"only {lines} of {count} children sent {what} in {timeout:g} s"
            raise Broke("time", got) if what == "ready" else LabError(f"fork: {got}")
        chunk = os.read(fd, 65536)
        if not chunk:
            raise LabError(f"fork: children exited before all sent {what}")
        buffer += chunk
        complete = buffer[: buffer.rfind(b"\n") + 1]
        if b"error " in complete:
            _raise_reported(job, complete.decode().splitlines())
    return buffer.decode().splitlines()


def _raise_reported(job: Job, lines: list[str]) -> None:
    """Raise the first error line a child sent (see _report)."""
    for line in lines:
        if line.startswith("error "):
            _, kind, text = (line + " ").split(" ", 2)
            raise from_line(job, kind, text.strip())


# -- multiprocessing --------------------------------------------------------------------
def pool(job: Job, start_method: str) -> Timings:
    """One multiprocessing.Process per client, made by `start_method`."""
    if start_method == "fork":
        require_fork("the pool strategy with --start-method fork")
    try:
        return _pool(job, multiprocessing.get_context(start_method))
    finally:
        # Only now, with _pool's queues and events gone (and their named
        # semaphores unlinked by their finalizers), may the tracker stop.
        stop_multiprocessing_servers()


def _pool(job: Job, ctx: multiprocessing.context.BaseContext) -> Timings:
    # Every process made here inherits the signals held: the resource tracker
    # (started by the first named semaphore under spawn and forkserver: it
    # ignores INT and TERM itself, but HUP or QUIT to the group would kill it,
    # and the parent would warn that it "died unexpectedly"), the forkserver,
    # and the workers (see _take_orders_from_parent).
    with children.stop_signals_held():
        ready, results = ctx.Queue(), ctx.Queue()
        go, abandon, done = ctx.Event(), ctx.Event(), ctx.Event()
    sent = dataclasses.replace(job, on_connected=None)  # the parent's hook stays here
    workers = [
        ctx.Process(target=_pool_client, args=(sent, ready, go, abandon, done, results))
        for i in range(job.clients)
    ]
    timings = Timings()
    try:
        began = time.perf_counter_ns()
        with children.stop_signals_held():
            for i, worker in enumerate(workers):
                try:
                    worker.start()
                except OSError as exc:
                    raise _cannot_start(i, job.clients, exc) from None
        deadline = time.monotonic() + job.time_limit  # spawn imports take a while
        for n in range(len(workers)):
            try:
                message = ready.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                got = f"only {n} of {job.clients} workers connected in {job.time_limit:g} s"
                raise Broke("time", got) from None
            if message != "ready":
                raise from_line(job, *message)
        timings.connect_ns = time.perf_counter_ns() - began
        job.connected()
        timings.go_ns = time.perf_counter_ns()
        go.set()
        for n in range(len(workers)):
            try:
                result = results.get(timeout=job.seconds + RESULTS_GRACE_S)
            except queue.Empty:
                got = f"only {n} of {job.clients} results came back"
                raise LabError(f"pool: {got} {job.seconds + RESULTS_GRACE_S:g} s") from None
            if result[0] == "error":
                raise from_line(job, *result[1:])
            timings.add(*result)
    finally:
        done.set()
        if not go.is_set():  # an error before the release: workers close up without querying
            abandon.set()
            go.set()
        deadline = time.monotonic() + job.seconds + GRACE_S  # queries in flight may finish
        for worker in workers:
            if worker.pid is not None:
                worker.join(max(0.0, deadline - time.monotonic()))
                if worker.is_alive():
                    worker.terminate()
                    worker.join(GRACE_S)
                if worker.is_alive():
                    worker.kill()
                    worker.join()
        for pipe in (ready, results):
            pipe.close()
            pipe.join_thread()
    return timings


def _pool_client(job: Job, ready, go, abandon, done, results) -> None:
    _take_orders_from_parent()
    try:
        conn = connect_blocking(job.server)
        cursor = conn.cursor()
    except Exception as exc:
        ready.put(failure(exc, "connect"))
        return
    try:
        ready.put("ready")
        if go.wait(timeout=job.time_limit + 60) and not abandon.is_set():
            try:
                results.put(timed_query(cursor, job.sql))
            except Exception as exc:  # said once by the parent, not as a traceback per worker
                results.put(("error", *failure(exc, "query")))
                return
            done.wait(timeout=job.seconds + RESULTS_GRACE_S)  # hang up once every result is in
    finally:
        # A worker that just returns without close() ends its connection with
        # no COM_QUIT: the server logs it and counts an aborted client.
        conn.close()
