"""CPU-bound work split across W workers: sequential, threads, os.fork, Pool, subinterpreters.

The work is Beazley's countdown ("Understanding the Python GIL", PyCon 2010):
pure Python bytecode, no I/O, nothing that releases the GIL. Each strategy
runs the same total count split into W equal chunks, behind one signature
(`run_STRATEGY(chunks, ...) -> (start_s, wall_s)`), so they compare like with
like:

- start_s: creating the workers until every one is ready to go;
- wall_s: the go signal until every chunk is done (the work phase only);
- cpu_s (measured around the whole call by `measure_strategy`): CPU time of
  this process and of its reaped children, creation included, so a spawn
  pool's imports show up here and not in wall_s.

Standard library only, and Python 3.8+: lab.interpreters runs this module
under other interpreters (`--python`), which have none of the lab's
dependencies.

Things that do not work, and why:
- Timing `pool.map(countdown, chunks)` from pool creation: the clock then
  measures process start-up (40 ms a worker with spawn) as if it were work.
  Workers wait at a barrier until all are up, and the clock starts there.
- Passing the barrier as a task argument: multiprocessing refuses to pickle
  synchronisation objects except at process creation ("should only be shared
  between processes through inheritance"); it goes in through the initializer.
- resource.RUSAGE_CHILDREN before the children are reaped: it counts only
  waited-for children, so CPU is read after waitpid / pool.join().
"""

from __future__ import annotations

import multiprocessing
import os
import resource
import select
import threading
import time

from lab import children, subinterpreters

__all__ = [
    "STRATEGIES",
    "START_METHODS",
    "countdown",
    "measure_strategy",
    "read_exactly",
    "split",
    "warm_up",
]

STRATEGIES = ("sequential", "threads", "processes", "pool", "interpreters")
START_METHODS = ("fork", "spawn", "forkserver")

#: How long any worker may take to come up or to finish, before the run is
#: declared broken instead of hanging (the work itself is seconds at most).
WORKER_TIMEOUT_S = 300.0

#: Exit codes of a raw forked worker.
EXIT_OK = 0
EXIT_WORKER_FAILED = 70  # EX_SOFTWARE: the worker raised; its traceback is on stderr

FORKSERVER_CPU = "cpu_s unknown: forkserver workers are not this process's children"

READY = b"r"  # a forked worker is up and waiting for the go signal
DONE = b"d"  # a forked worker finished its chunk


def countdown(n: int) -> None:
    """Beazley's CPU-bound work: n bytecode loops, holding the GIL throughout."""
    while n > 0:
        n -= 1


#: Calls that make CPython 3.11 specialise countdown (PEP 659). 3.11 quickens a
#: function's bytecode only after it has been entered 8 times; measured here,
#: a cold countdown(3M) took 0.051 s and a warm one 0.038 s (3.12 and 3.13 showed
#: no difference). Without this, the first sequential run and every fresh
#: spawn or forkserver worker would be blamed for the interpreter warming up.
WARM_UP_CALLS = 16


def warm_up() -> None:
    """Enter countdown often enough that it runs specialised from the first measurement."""
    for _ in range(WARM_UP_CALLS):
        countdown(1)


def split(total: int, workers: int) -> list[int]:
    """`total` steps in `workers` chunks differing by at most one."""
    base, extra = divmod(total, workers)
    return [base + (1 if i < extra else 0) for i in range(workers)]


def _now() -> int:
    return time.perf_counter_ns()


def _seconds(start_ns: int, end_ns: int) -> float:
    return (end_ns - start_ns) / 1e9


def _cpu_with_children() -> float:
    me = resource.getrusage(resource.RUSAGE_SELF)
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime


def measure_strategy(strategy: str, chunks: list[int], start_method: str | None) -> dict:
    """Run one strategy over `chunks`; its start_s, wall_s and cpu_s."""
    cpu_before = _cpu_with_children()
    if strategy == "sequential":
        start_s, wall_s = run_sequential(chunks)
    elif strategy == "threads":
        start_s, wall_s = run_threads(chunks)
    elif strategy == "processes":
        start_s, wall_s = run_processes(chunks)
    elif strategy == "pool":
        start_s, wall_s = run_pool(chunks, start_method or "fork")
    elif strategy == "interpreters":
        start_s, wall_s = run_interpreters(chunks)
    else:
        raise ValueError(f"unknown strategy {strategy!r}")
    cpu_s = _cpu_with_children() - cpu_before
    if start_method == "forkserver":
        # Its workers are children of the fork server, not of this process:
        # RUSAGE_CHILDREN never sees them, and a figure without them would lie.
        return {"start_s": start_s, "wall_s": wall_s, "cpu_s": None, "note": FORKSERVER_CPU}
    return {"start_s": start_s, "wall_s": wall_s, "cpu_s": round(cpu_s, 4)}


def run_sequential(chunks: list[int]) -> tuple[float, float]:
    """The baseline: one thread does every chunk in turn. Nothing to start."""
    go = _now()
    for n in chunks:
        countdown(n)
    return 0.0, _seconds(go, _now())


def run_threads(chunks: list[int]) -> tuple[float, float]:
    """One thread per chunk; they share one GIL, so at most one counts at a time."""
    created = _now()
    barrier = threading.Barrier(len(chunks) + 1, timeout=WORKER_TIMEOUT_S)

    def worker(n: int) -> None:
        barrier.wait()
        countdown(n)

    threads = [threading.Thread(target=worker, args=(n,)) for n in chunks]
    for thread in threads:
        thread.start()
    try:
        barrier.wait()  # every worker is up: the work phase starts now
        go = _now()
    finally:
        # On a broken barrier (a timeout) every waiting worker gets
        # BrokenBarrierError and ends, so these joins do not hang.
        for thread in threads:
            thread.join(WORKER_TIMEOUT_S)
    return _seconds(created, go), _seconds(go, _now())


def run_processes(chunks: list[int]) -> tuple[float, float]:
    """One os.fork per chunk: each child has its own interpreter and its own GIL.

    Two pipes coordinate them. Each child writes READY on `ready` and blocks
    reading `go`; when all are ready the parent closes go's write end, and
    every child's read returns EOF at once: a go signal for any number of
    readers, with no byte to count. Each child then writes DONE.
    """
    created = _now()
    ready_r, ready_w = os.pipe()
    go_r, go_w = os.pipe()
    pids: list[int] = []
    try:
        for n in chunks:
            pids.append(_fork_worker(n, ready_r, ready_w, go_r, go_w))
        # The parent keeps no copy of the children's ends: when every child
        # is gone, reads on `ready` return EOF instead of blocking.
        os.close(ready_w)
        os.close(go_r)
        ready_w = go_r = -1
        _expect(ready_r, len(chunks), READY)
        go = _now()
        os.close(go_w)
        go_w = -1
        _expect(ready_r, len(chunks), DONE)
        done = _now()
        _reap(pids)
        return _seconds(created, go), _seconds(go, done)
    finally:
        for fd in (ready_r, ready_w, go_r, go_w):
            if fd >= 0:
                os.close(fd)
        children.stop_pids(pids, grace=0.0)  # after an error: whatever is left, at once


def _fork_worker(n: int, ready_r: int, ready_w: int, go_r: int, go_w: int) -> int:
    pid = os.fork()
    if pid:
        return pid  # the parent goes straight back to forking the next one
    code = EXIT_WORKER_FAILED
    try:
        # The child must drop its copy of go's write end, or the EOF that
        # means "go" never comes (it would be holding the pipe open itself).
        os.close(go_w)
        os.close(ready_r)
        os.write(ready_w, READY)
        os.read(go_r, 1)  # blocks until the parent closes go_w
        countdown(n)
        os.write(ready_w, DONE)
        code = EXIT_OK
    finally:
        os._exit(code)  # never return into the parent's code, never run its atexit


def read_exactly(fd: int, size: int, timeout: float, who: str) -> bytes:
    """`size` bytes from a pipe within `timeout` seconds, or RuntimeError naming `who`.

    select() first, so a worker that hangs (or dies while a sibling keeps the
    pipe open) becomes an error after the timeout instead of a hung lab.
    """
    deadline = time.monotonic() + timeout
    got = bytearray()
    while len(got) < size:
        left = deadline - time.monotonic()
        if left <= 0 or not select.select([fd], [], [], left)[0]:
            raise RuntimeError(f"{who}: {len(got)} of {size} bytes came in time")
        chunk = os.read(fd, size - len(got))
        if not chunk:
            raise RuntimeError(f"{who}: {len(got)} of {size} bytes came, then EOF")
        got += chunk
    return bytes(got)


def _expect(fd: int, count: int, message: bytes) -> None:
    """`count` one-byte messages from the forked workers, each `message`."""
    got = read_exactly(fd, count, WORKER_TIMEOUT_S, "forked workers")
    if got != message * count:
        raise RuntimeError(f"forked workers answered {got!r}, expected {message!r}")


def _reap(pids: list[int]) -> None:
    """waitpid each worker (reaped pids leave the list); any exit but EXIT_OK is an error."""
    while pids:
        _, status = os.waitpid(pids[0], 0)
        pids.pop(0)
        code = os.waitstatus_to_exitcode(status)
        if code != EXIT_OK:
            raise RuntimeError(f"a forked worker ended with {code}")


_BARRIER = None  # set in each pool worker by _pool_init


def _pool_init(barrier) -> None:
    global _BARRIER
    _BARRIER = barrier
    warm_up()  # a spawn or forkserver worker is a fresh interpreter: countdown is cold


def _pool_task(n: int) -> None:
    # A worker blocked here cannot take a second task, so W tasks reaching the
    # barrier of W + 1 parties means W distinct workers, all up.
    _BARRIER.wait()
    countdown(n)


def run_pool(chunks: list[int], start_method: str) -> tuple[float, float]:
    """multiprocessing.Pool(W) with the given start method; one task per worker."""
    ctx = multiprocessing.get_context(start_method)
    created = _now()
    barrier = ctx.Barrier(len(chunks) + 1, timeout=WORKER_TIMEOUT_S)
    with ctx.Pool(len(chunks), initializer=_pool_init, initargs=(barrier,)) as pool:
        results = [pool.apply_async(_pool_task, (n,)) for n in chunks]
        barrier.wait()
        go = _now()
        for result in results:
            result.get(WORKER_TIMEOUT_S)
        done = _now()
        pool.close()
        pool.join()  # reaped, so RUSAGE_CHILDREN counts their CPU
    return _seconds(created, go), _seconds(go, done)


#: What each subinterpreter runs first: countdown's source (a function cannot
#: be passed across, only text or shareable values), warmed up as warm_up() does.
INTERPRETER_PRELUDE = f"""\
def countdown(n):
    while n > 0:
        n -= 1
for _ in range({WARM_UP_CALLS}):
    countdown(1)
"""


def run_interpreters(chunks: list[int]) -> tuple[float, float]:
    """One subinterpreter per chunk, each with its own GIL, each run from its own thread.

    Creating them (and loading countdown into each) is start_s; the threads
    then wait at one barrier, so wall_s is the counting alone, as for the others.
    """
    created = _now()
    interps: list = []
    errors: list = []
    try:
        for _ in chunks:
            interp = subinterpreters.Subinterpreter()
            interps.append(interp)
            interp.exec(INTERPRETER_PRELUDE)
        barrier = threading.Barrier(len(chunks) + 1, timeout=WORKER_TIMEOUT_S)

        def worker(interp, n: int) -> None:
            try:
                barrier.wait()
                interp.exec(f"countdown({n})")
            except Exception as exc:  # raised again by the main thread, once
                errors.append(exc)

        threads = [
            threading.Thread(target=worker, args=pair) for pair in zip(interps, chunks, strict=True)
        ]
        for thread in threads:
            thread.start()
        try:
            barrier.wait()
            go = _now()
        finally:
            for thread in threads:
                thread.join(WORKER_TIMEOUT_S)
        done = _now()
    finally:
        for interp in interps:
            interp.close()
    if errors:
        raise errors[0]
    return _seconds(created, go), _seconds(go, done)
