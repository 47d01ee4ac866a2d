"""Signal delivery latency: from a sender process to the handler's first instruction.

The receiver is a fresh interpreter that puts its main thread in one STATE and
installs a SIGUSR1 handler whose first instruction writes
`time.perf_counter_ns()` to a pipe. The sender (the process running the
experiment) notes perf_counter_ns() right before kill(2). Both readings are
CLOCK_MONOTONIC on Linux (`time.get_clock_info("perf_counter")` says so; the
experiment checks it), one clock for the whole machine, so the difference of
two processes' readings is a latency.

What a learner would try first, and why it does not work here:
- a sender *thread* inside the receiver: while the main thread is in a long C
  call holding the GIL the sender thread cannot even run to send;
- timing in the sender alone (send, wait for a reply): that adds the reply's
  trip and the sender's own wake-up to every sample.

STATES below lists what the receiver's main thread is doing when the signal arrives.
"""

from __future__ import annotations

import os
import select
import signal
import struct
import subprocess
import threading
import time

from lab import children
from lab.experiments.signals import send
from lab.experiments.signals.waits import die_with_parent, read_exact

__all__ = ["STATES", "measure_state", "quantile", "record", "summary"]

STATES = {
    "sleep": "idle in time.sleep",
    "select": "blocked in select.select",
    "python-loop": "running a pure-Python loop",
    "threads-busy": "idle in time.sleep while 2 threads run Python",
    "asyncio": "an asyncio loop, loop.add_signal_handler",
    "c-call": "inside one long C call, sum(range(N))",
    "wakeup-fd": "the same C call; set_wakeup_fd's byte timed instead",
}

#: States whose receiver announces each new C call: the sender waits for that before sending.
_PACED_BY_CALL = ("c-call", "wakeup-fd")
_STAMP = struct.Struct("=q")  # one perf_counter_ns reading, native order: same machine
_READY = b"r"
#: Between samples of the other states: long enough for the receiver to be back in
#: its state (the handler takes microseconds), short enough to keep runs quick.
_GAP = 0.005
#: The sender waits this long after "a call begins" before sending: the
#: announcement is written just before the call, and the write wakes the sender,
#: which may run before the receiver has even entered sum() (and a signal that
#: early is handled at the CALL's own eval-breaker check, in microseconds).
INTO_CALL = 0.005
_BUSY_THREADS = 2  # one per core of the 2-core machines the lab targets
_START_TIMEOUT = 20.0  # a fresh interpreter starting on a loaded machine
#: How long a sample may take before the run is called hung. Only a bound on a hang:
#: a handler runs in microseconds to milliseconds, but 5 s was once too short in a CI
#: suite with a receiver whose main thread shares the GIL with two busy threads.
_SAMPLE_TIMEOUT = 20.0


def _call_timeout(call_size: int) -> float:
    """A generous bound on one sum(range(call_size)) (~10 ns a term here), plus slack."""
    return 10.0 + call_size * 1e-7 * 10


# -- the receiver (a child process) ----------------------------------------------------
def _receive(state: str, call_size: int, stamp_fd: int, ready_fd: int, wake_fd: int) -> None:
    def record(signum=None, frame=None) -> None:
        os.write(stamp_fd, _STAMP.pack(time.perf_counter_ns()))  # first: the timestamp

    if state == "asyncio":
        import asyncio  # here: only this state's receiver needs it

        asyncio.run(_receive_in_loop(record, ready_fd))
        return
    signal.signal(signal.SIGUSR1, record)
    if state == "wakeup-fd":
        os.set_blocking(wake_fd, False)  # set_wakeup_fd refuses a blocking fd
        signal.set_wakeup_fd(wake_fd)
    if state in _PACED_BY_CALL:
        while True:
            os.write(ready_fd, _READY)
            sum(range(call_size))  # one C call: no bytecode boundary until it returns
    if state == "threads-busy":
        for _ in range(_BUSY_THREADS):
            threading.Thread(target=_spin_with_the_signal_blocked, daemon=True).start()
    os.write(ready_fd, _READY)
    if state == "python-loop":
        _spin()
    never_r, _never_w = os.pipe()
    while True:
        if state == "select":
            select.select([never_r], [], [], 3600)
        else:  # sleep, threads-busy
            time.sleep(3600)


def _spin() -> None:
    n = 0
    while True:
        n += 1


def _spin_with_the_signal_blocked() -> None:
    # kill(2) sends to the process, and the kernel may hand the signal to any
    # thread that does not block it. Only the main thread runs Python handlers,
    # and one asleep in time.sleep is woken (EINTR) only if the signal came to
    # it: delivered to a spinning thread, the handler would wait for the whole
    # sleep. Blocking it here leaves the main thread the only one to take it.
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGUSR1})
    _spin()


async def _receive_in_loop(record, ready_fd: int) -> None:
    import asyncio

    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGUSR1, record)
    os.write(ready_fd, _READY)
    await loop.create_future()  # never done: the loop idles in select until killed


# -- the sender (the experiment's process) -------------------------------------------------
def measure_state(state: str, samples: int, call_size: int) -> list[float]:
    """`samples` latencies in ms, send to handler (wakeup-fd: send to the byte's arrival)."""
    stamp_r, stamp_w = os.pipe()
    ready_r, ready_w = os.pipe()
    wake_r, wake_w = os.pipe()
    child_ends = (stamp_w, ready_w, wake_w)
    args = [state, call_size, *child_ends, os.getpid()]
    try:
        proc = subprocess.Popen(children.main_argv(__name__, *map(str, args)), pass_fds=child_ends)
    finally:
        for fd in child_ends:
            os.close(fd)
    latencies = []
    wait = _call_timeout(call_size) if state in _PACED_BY_CALL else _SAMPLE_TIMEOUT
    try:
        read_exact(ready_r, 1, _START_TIMEOUT)
        for i in range(samples):
            if state in _PACED_BY_CALL:
                if i:
                    read_exact(ready_r, 1, wait)
                    _drain(ready_r)  # a slow sender may have missed calls: use the newest
                time.sleep(INTO_CALL)
            elif i:
                time.sleep(_GAP)
            sent = time.perf_counter_ns()
            send.send(proc.pid, signal.SIGUSR1)
            if state == "wakeup-fd":
                read_exact(wake_r, 1, wait)
                arrived = time.perf_counter_ns()
                read_exact(stamp_r, _STAMP.size, wait)  # the handler itself, after the call
            else:
                (arrived,) = _STAMP.unpack(read_exact(stamp_r, _STAMP.size, wait))
            latencies.append((arrived - sent) / 1e6)
    finally:
        proc.kill()  # nothing to clean up in a receiver: KILL, no grace needed
        children.stop_popen(proc, 1.0)
        for fd in (stamp_r, ready_r, wake_r):
            os.close(fd)
    return latencies


def _drain(fd: int) -> None:
    os.set_blocking(fd, False)
    try:
        while os.read(fd, 4096):
            pass
    except BlockingIOError:
        pass
    finally:
        os.set_blocking(fd, True)


# -- summaries -----------------------------------------------------------------------
def quantile(ordered: list[float], q: float) -> float:
    """The q-quantile of sorted values, linear between neighbours (numpy's default)."""
    position = q * (len(ordered) - 1)
    low = int(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def summary(latencies: list[float]) -> dict[str, float]:
    """min, quartiles, median, p99 and max in ms: what the table shows and the box plot draws."""
    ordered = sorted(latencies)
    marks = {"min": 0.0, "p25": 0.25, "median": 0.5, "p75": 0.75, "p99": 0.99, "max": 1.0}
    return {f"{name}_ms": round(quantile(ordered, q), 4) for name, q in marks.items()}


def record(state: str, latencies: list[float]) -> dict[str, object]:
    """What `signals` stores for one state (the benchmarks report the same)."""
    return {"part": "latency", "state": state, "samples": len(latencies), **summary(latencies)}


def main(argv: list[str]) -> int:
    """The receiver, in its own interpreter: STATE CALL_SIZE STAMP_FD READY_FD WAKE_FD PARENT."""
    state, *numbers = argv
    size, stamp, ready, wake, parent = map(int, numbers)
    die_with_parent(parent)
    _receive(state, size, stamp, ready, wake)
    return 0
