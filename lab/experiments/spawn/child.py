"""The measured part of `spawn`: create and reap one worker, many times. Stdlib only.

This module runs in a child interpreter (lab.interpreters, under this Python
or the one `--python` names), which calls `measure(params)`. Three parts, one
per call:

  create  every method creates and reaps one worker `repeat` times (a
          subinterpreter: created, its first call, destroyed)
  rss     the parent first grows to `rss_mb` of resident memory, then forks
  memory  `count` idle workers at once, and the memory each adds

Why a child interpreter even for this Python: the CLI draws a progress bar
from a thread, and fork in a multi-threaded process copies only the calling
thread (locks other threads held stay held for ever; 3.12 warns,
gh-100228). The parent we grow to 2 GB is also best thrown away afterwards.

Things that do not measure what they seem to:
- Timing `os.fork()` alone: the parent returns long before the child has run,
  and the child's exit (freeing the page tables fork copied) is part of what a
  worker costs. Every method here is timed from create to reaped.
- A `bytearray(n)` that is never written may be backed by the zero page or
  not be resident at all; the ballast is written once per page, and the RSS
  the kernel reports is recorded beside the size asked for.
- The first forkserver or spawn worker also starts the server or imports the
  modules: one untimed warm-up creation per method, its time kept as first_ms.
"""

from __future__ import annotations

__all__ = ["CREATORS", "PARTS", "create_and_reap", "latency_record", "measure"]

import math
import multiprocessing
import os
import resource
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

from lab import procfs, subinterpreters
from lab.start_methods import stop_multiprocessing_servers

PAGE = os.sysconf("SC_PAGE_SIZE")
MIB = 1024 * 1024

TRUE = "/bin/true"  # the smallest real program: exec, exit 0
CHILD_OK = 0  # a worker that did its (empty) job
CHILD_FAILED = 70  # EX_SOFTWARE: the worker's Python raised before os._exit
READY = b"r"  # a memory-part worker saying "I am up and idle"
WAIT_S = 60.0  # the longest any worker may take to say it is ready


# -- creating and reaping one worker ---------------------------------------------------
def _noop() -> None:
    """The whole job of a worker: nothing, so only its creation is measured."""


def _reap(pid: int) -> None:
    """waitpid and insist on exit status 0: a failed worker is not a measurement."""
    _, status = os.waitpid(pid, 0)
    code = os.waitstatus_to_exitcode(status)
    if code != CHILD_OK:
        raise RuntimeError(f"worker {pid} ended with {code}")


def _thread() -> None:
    worker = threading.Thread(target=_noop)
    worker.start()
    worker.join()


def _fork() -> None:
    pid = os.fork()
    if pid == 0:  # the child: run nothing of the parent's, leave by os._exit
        code = CHILD_FAILED
        try:
            _noop()
            code = CHILD_OK
        finally:
            # os._exit, not sys.exit: no atexit handlers, no flushing of the
            # stdout buffer this child inherited (it would print records twice).
            os._exit(code)
    _reap(pid)


def _posix_spawn() -> None:
    # glibc's posix_spawn uses clone(CLONE_VM | CLONE_VFORK): the child borrows
    # the parent's memory until exec, so no page table is copied.
    _reap(os.posix_spawn(TRUE, [TRUE], os.environ))


def _subprocess() -> None:
    subprocess.run([TRUE], check=True)


def _interpreter() -> None:
    """A subinterpreter with its own GIL (PEP 684): created, its first call run, destroyed.

    The first call is part of the cost: a new interpreter has imported only
    what its own start-up needs, and runs nothing until asked.
    """
    with subinterpreters.Subinterpreter() as interp:
        interp.exec("pass")


def _multiprocessing(method: str) -> Callable[[], None]:
    context = multiprocessing.get_context(method)

    def create() -> None:
        worker = context.Process(target=_noop)
        worker.start()
        worker.join()
        if worker.exitcode != CHILD_OK:
            raise RuntimeError(f"{method} worker ended with {worker.exitcode}")
        worker.close()

    return create


CREATORS: dict[str, Callable[[], Callable[[], None]]] = {
    "thread": lambda: _thread,
    "fork": lambda: _fork,
    "posix_spawn": lambda: _posix_spawn,
    "subprocess": lambda: _subprocess,
    "mp_fork": lambda: _multiprocessing("fork"),
    "mp_forkserver": lambda: _multiprocessing("forkserver"),
    "mp_spawn": lambda: _multiprocessing("spawn"),
    "interpreter": lambda: _interpreter,
}

#: Methods that only some interpreters offer, and how to ask whether this one does.
MISSING = {"interpreter": subinterpreters.unavailable}


def create_and_reap(method: str) -> int:
    """Create one worker by `method` and reap it; the nanoseconds it took."""
    create = CREATORS[method]()
    start = time.perf_counter_ns()
    create()
    return time.perf_counter_ns() - start


def _percentile(ordered: list[float], p: float) -> float:
    """Nearest rank: the smallest sample with at least p% of samples at or below it."""
    return ordered[max(0, math.ceil(p / 100 * len(ordered)) - 1)]


def latency_record(method: str, samples_ms: list[float], first_ms: float) -> dict[str, Any]:
    """What `spawn` stores for one method: the quantiles of its creations (the benchmarks too)."""
    ordered = sorted(samples_ms)
    return {
        "method": method,
        "repeat": len(ordered),
        "median_ms": _percentile(ordered, 50),
        "p25_ms": _percentile(ordered, 25),
        "p75_ms": _percentile(ordered, 75),
        "p95_ms": _percentile(ordered, 95),
        "p99_ms": _percentile(ordered, 99),
        "min_ms": ordered[0],
        "max_ms": ordered[-1],
        "first_ms": first_ms,
    }


def _latency(method: str, repeat: int) -> dict[str, Any]:
    create = CREATORS[method]()
    start = time.perf_counter_ns()
    create()  # the warm-up: starts a forkserver, imports what spawn needs
    first = time.perf_counter_ns() - start
    samples = []
    for _ in range(repeat):
        start = time.perf_counter_ns()
        create()
        samples.append((time.perf_counter_ns() - start) / 1e6)
    return latency_record(method, samples, first / 1e6)


# -- the three parts --------------------------------------------------------------------
def _skipped(part: str, method: str) -> dict[str, Any] | None:
    """A record saying why `method` cannot run here, or None when it can."""
    why = MISSING[method]() if method in MISSING else None
    return {"part": part, "method": method, "skipped": why} if why else None


def _interpreter_phases(repeat: int) -> dict[str, float]:
    """Where a subinterpreter's cost goes: creating it, its first call, destroying it.

    Medians in ms, beside the whole (create to destroyed) that the record's
    quantiles time, as every other method's are timed create to reaped.
    """
    phases: dict[str, list[float]] = {"create_ms": [], "first_call_ms": [], "destroy_ms": []}
    for _ in range(repeat):
        marks = [time.perf_counter_ns()]
        interp = subinterpreters.Subinterpreter()
        marks.append(time.perf_counter_ns())
        try:
            interp.exec("pass")
            marks.append(time.perf_counter_ns())
        finally:
            interp.close()
        marks.append(time.perf_counter_ns())
        for samples, start, end in zip(phases.values(), marks, marks[1:], strict=False):
            samples.append((end - start) / 1e6)  # marks has one more entry than phases
    return {name: _percentile(sorted(samples), 50) for name, samples in phases.items()}


def _create(params: dict[str, Any]) -> Iterator[dict[str, Any]]:
    for method in params["methods"]:
        skipped = _skipped("create", method)
        if skipped:
            yield skipped
            continue
        record = {"part": "create", **_latency(method, params["repeat"])}
        if method == "interpreter":
            record.update(_interpreter_phases(params["repeat"]))
        yield record


def _ballast(rss_mb: int) -> bytearray:
    """Grow this process to about rss_mb resident: a bytearray written once per page."""
    have = procfs.memory_kb()["VmRSS"] * 1024
    size = max(PAGE, rss_mb * MIB - have)
    ballast = bytearray(size)
    ballast[::PAGE] = b"\x01" * len(range(0, size, PAGE))
    return ballast


def _rss(params: dict[str, Any]) -> Iterator[dict[str, Any]]:
    ballast = _ballast(params["rss_mb"])
    vm = procfs.memory_kb()
    for method in params["methods"]:
        skipped = _skipped("rss", method)
        if skipped:
            yield {**skipped, "rss_target_mb": params["rss_mb"]}
            continue
        yield {
            "part": "rss",
            "rss_target_mb": params["rss_mb"],
            "rss_mb": vm["VmRSS"] / 1024,
            "page_tables_kb": vm.get("VmPTE", 0),
            **_latency(method, params["repeat"]),
        }
    del ballast


def _idle_threads(count: int) -> Iterator[dict[str, Any]]:
    """`count` threads blocked on one Event: how much real memory does each add?"""
    before = procfs.memory_kb()
    up = threading.Semaphore(0)
    stop = threading.Event()

    def idle() -> None:
        up.release()
        stop.wait()

    threads = [threading.Thread(target=idle, daemon=True) for _ in range(count)]
    try:
        for thread in threads:
            thread.start()
        for _ in threads:
            if not up.acquire(timeout=WAIT_S):
                raise RuntimeError("an idle thread did not start")
        after = procfs.memory_kb()
    finally:
        stop.set()
        for thread in threads:
            if thread.ident is not None:
                thread.join(WAIT_S)
    soft, _ = resource.getrlimit(resource.RLIMIT_STACK)
    yield {
        "part": "memory",
        "method": "thread",
        "count": count,
        "rss_kb_each": (after["VmRSS"] - before["VmRSS"]) / count,
        "virtual_kb_each": (after["VmSize"] - before["VmSize"]) / count,
        "uss_kb_each": None,
        "pss_kb_each": None,
        "stack_limit_kb": None if soft == resource.RLIM_INFINITY else soft // 1024,
    }


def _idle_forks(count: int) -> Iterator[dict[str, Any]]:
    """`count` forked children blocked on a pipe: what each holds on its own."""
    go_read, go_write = os.pipe()  # closing go_write lets every child leave
    ready_read, ready_write = os.pipe()  # each child writes READY once it is idle
    pids: list[int] = []
    try:
        for _ in range(count):
            sys.stdout.flush()
            pid = os.fork()
            if pid == 0:
                code = CHILD_FAILED
                try:
                    os.close(go_write)
                    os.write(ready_write, READY)
                    os.read(go_read, 1)  # blocks until the parent closes go_write
                    code = CHILD_OK
                finally:
                    os._exit(code)
            pids.append(pid)
        os.close(ready_write)
        ready_write = -1
        _await_ready(ready_read, count)
        yield _process_memory("fork", pids)
    finally:
        for fd in (go_write, go_read, ready_read, ready_write):
            if fd >= 0:
                os.close(fd)
        for pid in pids:
            _reap(pid)


def _await_ready(fd: int, count: int) -> None:
    got = b""
    deadline = time.monotonic() + WAIT_S
    while len(got) < count:
        if time.monotonic() > deadline:
            raise RuntimeError("workers did not become ready")
        chunk = os.read(fd, count - len(got))
        if not chunk:
            raise RuntimeError("a worker died before it was ready")
        got += chunk


def _idle_worker(conn: Any) -> None:
    """A multiprocessing worker: say READY, then block until the parent hangs up."""
    conn.send_bytes(READY)
    try:
        conn.recv_bytes()
    except EOFError:
        pass


def _idle_spawned(count: int) -> Iterator[dict[str, Any]]:
    """`count` multiprocessing spawn workers: each a fresh interpreter, nothing shared."""
    context = multiprocessing.get_context("spawn")
    workers, conns = [], []
    try:
        for _ in range(count):
            ours, theirs = context.Pipe()
            worker = context.Process(target=_idle_worker, args=(theirs,))
            worker.start()
            theirs.close()
            workers.append(worker)
            conns.append(ours)
        for conn in conns:
            if not conn.poll(WAIT_S) or conn.recv_bytes() != READY:
                raise RuntimeError("a spawn worker did not become ready")
        yield _process_memory("mp_spawn", [w.pid for w in workers])
    finally:
        for conn in conns:
            conn.close()
        for worker in workers:
            worker.join(WAIT_S)
            if worker.exitcode is None:
                worker.kill()
                worker.join()
            worker.close()


def _idle_interpreters(count: int) -> Iterator[dict[str, Any]]:
    """`count` idle subinterpreters in this process: what each adds to its RSS, USS and PSS.

    They live in this process, so their cost is this process's growth, read
    from smaps_rollup before and after (a thread's cost is read the same way).
    """
    skipped = _skipped("memory", "interpreter")
    if skipped:
        yield {**skipped, "count": count}
        return
    before = procfs.smaps_rollup_kb(os.getpid())
    before_vm = procfs.memory_kb()
    interps: list = []
    try:
        for _ in range(count):
            interps.append(subinterpreters.Subinterpreter())
            interps[-1].exec("pass")  # its first call, as the create part times it
        after = procfs.smaps_rollup_kb(os.getpid())
        after_vm = procfs.memory_kb()
    finally:
        for interp in interps:
            interp.close()

    def each(key: str) -> float:
        return (after.get(key, 0) - before.get(key, 0)) / count

    yield {
        "part": "memory",
        "method": "interpreter",
        "count": count,
        "rss_kb_each": each("Rss"),
        "virtual_kb_each": (after_vm["VmSize"] - before_vm["VmSize"]) / count,
        "uss_kb_each": each("Uss"),
        "pss_kb_each": each("Pss"),
        "stack_limit_kb": None,
    }


def _process_memory(worker: str, pids: list[int]) -> dict[str, Any]:
    rollups = [procfs.smaps_rollup_kb(pid) for pid in pids]

    def mean(key: str) -> float:
        return sum(r.get(key, 0) for r in rollups) / len(rollups)

    return {
        "part": "memory",
        "method": worker,
        "count": len(pids),
        "rss_kb_each": mean("Rss"),
        "virtual_kb_each": None,
        "uss_kb_each": mean("Uss"),
        "pss_kb_each": mean("Pss"),
        "stack_limit_kb": None,
    }


def _memory(params: dict[str, Any]) -> Iterator[dict[str, Any]]:
    kinds = {
        "thread": _idle_threads,
        "fork": _idle_forks,
        "mp_spawn": _idle_spawned,
        "interpreter": _idle_interpreters,
    }
    yield from kinds[params["method"]](params["count"])


PARTS = {"create": _create, "rss": _rss, "memory": _memory}


def measure(params: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """The records of one part (lab.interpreters adds which Python made them)."""
    try:
        yield from PARTS[params["part"]](params)
    finally:
        stop_multiprocessing_servers()
