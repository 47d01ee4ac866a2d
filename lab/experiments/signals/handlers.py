"""Facts 1-5 and 7 of `signals`: what a Python signal handler is, inside one process.

Each check runs in a fresh interpreter of its own (see facts.py): it
owns the main thread, the handlers and the signal mask it changes, and puts
them back anyway. Handlers here only record (append to a list); every wait has
a timeout; every signal goes out through send.
"""

from __future__ import annotations

import asyncio
import os
import select
import signal
import statistics
import threading
import time
from collections import Counter
from collections.abc import Callable
from typing import Any

from lab.experiments.signals import send
from lab.experiments.signals.facts import fact
from lab.experiments.signals.latency import measure_state
from lab.experiments.signals.waits import WAIT, wait_for

__all__ = [
    "blocked_signals_stay_pending",
    "handler_runs_in_main_thread",
    "handlers_wait_for_c_calls",
    "interrupted_calls_are_retried",
    "realtime_signals_queue",
    "wakeup_fd_wakes_event_loops",
]


def _main_thread() -> int:
    return threading.main_thread().ident or 0


# -- 1 -------------------------------------------------------------------------------
@fact(
    1,
    "a handler runs only in the main thread",
    "signal aimed at a worker thread, handler runs in the main thread; "
    "signal.signal() from the worker raises ValueError",
)
def handler_runs_in_main_thread(call_size: int) -> tuple[str, bool]:
    ran_in: list[int] = []
    refused: list[str] = []

    def worker() -> None:
        try:
            signal.signal(signal.SIGUSR2, signal.SIG_IGN)
        except ValueError as exc:
            refused.append(str(exc))
        # pthread_kill: the kernel delivers to this worker; CPython's C handler
        # runs here, only notes the signal, and leaves the Python handler to main.
        send.send_to_thread(threading.get_ident(), signal.SIGUSR1)

    old = signal.signal(signal.SIGUSR1, lambda signum, frame: ran_in.append(threading.get_ident()))
    try:
        worker_thread = threading.Thread(target=worker)
        worker_thread.start()
        worker_thread.join(WAIT)
        wait_for(lambda: ran_in)
    finally:
        signal.signal(signal.SIGUSR1, old)
    where = {(): "nowhere", (_main_thread(),): "the main thread"}.get(tuple(ran_in), "a worker")
    said = f"ValueError: {refused[0]}" if refused else "accepted"
    observed = f"sent to a worker, handled in {where}; signal.signal in the worker: {said}"
    return observed, ran_in == [_main_thread()] and bool(refused)


# -- 2 -------------------------------------------------------------------------------
@fact(
    2,
    "handlers run between bytecodes: a long C call delays them",
    "in sleep and in a Python loop handled at once; in sum(range(N)) only when the call returns",
)
def handlers_wait_for_c_calls(call_size: int) -> tuple[str, bool]:
    samples = 5  # medians of a few: enough to see a 1000x difference
    medians = {
        state: statistics.median(measure_state(state, samples, call_size))
        for state in ("sleep", "python-loop", "c-call")
    }
    started = time.perf_counter()
    sum(range(call_size))
    call_ms = (time.perf_counter() - started) * 1e3
    at_once = max(medians["sleep"], medians["python-loop"])
    observed = (
        f"median {medians['sleep']:.3f} ms in sleep, {medians['python-loop']:.3f} ms in a "
        f"Python loop, {medians['c-call']:.1f} ms in sum(range({call_size:.0e})), "
        f"a call of {call_ms:.1f} ms"
    )
    # The second bound is loose: the fact times its own call, the receiver another one.
    return observed, medians["c-call"] > 10 * at_once and medians["c-call"] > 0.25 * call_ms


# -- 3 -------------------------------------------------------------------------------
class _HandlerRaised(Exception):
    """What the raising handler of fact 3 raises (KeyboardInterrupt is the usual one)."""


_SELECT_TIMEOUT = 0.6  # seconds select waits on a pipe nobody writes
_SIGNAL_AT = 0.3  # seconds in: the retry must wait 0.3 more (recomputed), not 0.6 again


def _interrupted_select(handler: Callable[[int, Any], None]) -> tuple[str, float]:
    """select() for _SELECT_TIMEOUT on a silent pipe, SIGUSR1 to this thread at _SIGNAL_AT."""
    quiet_r, quiet_w = os.pipe()
    old = signal.signal(signal.SIGUSR1, handler)
    # Aimed at the main thread: a process-directed kill() from the timer thread
    # would be delivered to the timer thread itself and not interrupt select.
    timer = threading.Timer(_SIGNAL_AT, send.send_to_thread, (_main_thread(), signal.SIGUSR1))
    started = time.perf_counter()
    timer.start()
    try:
        select.select([quiet_r], [], [], _SELECT_TIMEOUT)
        outcome = "returned"
    except _HandlerRaised:
        outcome = "raised"
    finally:
        elapsed = time.perf_counter() - started
        timer.cancel()
        timer.join(WAIT)
        signal.signal(signal.SIGUSR1, old)
        os.close(quiet_r)
        os.close(quiet_w)
    return outcome, elapsed


@fact(
    3,
    "PEP 475: an interrupted system call is retried, its timeout recomputed",
    f"select({_SELECT_TIMEOUT} s), signal at {_SIGNAL_AT} s: a handler that returns -> select "
    f"returns at {_SELECT_TIMEOUT} s in all; a handler that raises -> it ends at {_SIGNAL_AT} s",
)
def interrupted_calls_are_retried(call_size: int) -> tuple[str, bool]:
    handled: list[float] = []

    def returns(signum: int, frame: Any) -> None:
        handled.append(time.perf_counter())

    def raises(signum: int, frame: Any) -> None:
        raise _HandlerRaised  # the way out PEP 475 leaves open on purpose

    outcome, elapsed = _interrupted_select(returns)
    outcome_raising, elapsed_raising = _interrupted_select(raises)
    restarted = _SIGNAL_AT + _SELECT_TIMEOUT  # what a retry with the full timeout would take
    retried = (
        outcome == "returned"
        and len(handled) == 1
        and 0.9 * _SELECT_TIMEOUT <= elapsed < (_SELECT_TIMEOUT + restarted) / 2
    )
    ended = outcome_raising == "raised" and elapsed_raising < (_SIGNAL_AT + _SELECT_TIMEOUT) / 2
    observed = (
        f"handler returned ({len(handled)} call): select {outcome} after {elapsed:.2f} s; "
        f"handler raised: select {outcome_raising} after {elapsed_raising:.2f} s"
    )
    return observed, retried and ended


# -- 4 -------------------------------------------------------------------------------
_BURST = 20


@fact(
    4,
    "standard signals do not queue, real-time signals do",
    f"{_BURST} x SIGUSR1 while blocked -> delivered fewer times (once); "
    f"{_BURST} x SIGRTMIN+1 -> delivered {_BURST} times",
)
def realtime_signals_queue(call_size: int) -> tuple[str, bool]:
    realtime = signal.SIGRTMIN + 1
    burst = {signal.SIGUSR1, realtime}
    python_calls: Counter[int] = Counter()
    # set_wakeup_fd: CPython's C handler writes one byte (the signal number) on
    # every delivery, so the pipe counts deliveries. Python handlers cannot:
    # deliveries that come before the next bytecode boundary trip one flag.
    count_r, count_w = os.pipe()
    os.set_blocking(count_w, False)
    old_fd = signal.set_wakeup_fd(count_w)
    old = {sig: signal.signal(sig, lambda s, f: python_calls.update([s])) for sig in burst}
    signal.pthread_sigmask(signal.SIG_BLOCK, burst)
    try:
        for _ in range(_BURST):
            for sig in burst:
                send.send(os.getpid(), sig)
        signal.pthread_sigmask(signal.SIG_UNBLOCK, burst)  # pending ones are delivered now
        wait_for(lambda: python_calls)
        delivered = Counter(_read_available(count_r))
    finally:
        signal.pthread_sigmask(signal.SIG_UNBLOCK, burst)
        signal.set_wakeup_fd(old_fd)
        for sig, handler in old.items():
            signal.signal(sig, handler)
        os.close(count_r)
        os.close(count_w)
    standard, queued = delivered[signal.SIGUSR1], delivered[realtime]
    observed = (
        f"SIGUSR1 delivered {standard} of {_BURST}, SIGRTMIN+1 {queued} of {_BURST} "
        f"(counted by set_wakeup_fd bytes; the Python handlers ran "
        f"{python_calls[signal.SIGUSR1]} and {python_calls[realtime]} times)"
    )
    return observed, 1 <= standard < _BURST and queued == _BURST


def _read_available(fd: int) -> bytes:
    os.set_blocking(fd, False)
    data = b""
    try:
        while chunk := os.read(fd, 4096):
            data += chunk
    except BlockingIOError:
        pass
    return data


# -- 5 -------------------------------------------------------------------------------
@fact(
    5,
    "a blocked signal stays pending; sigwait takes it synchronously",
    "3 x SIGUSR2 while blocked: pending, handler not run; unblocked: handler runs once; "
    "blocked again: sigtimedwait returns it, handler not run",
)
def blocked_signals_stay_pending(call_size: int) -> tuple[str, bool]:
    sig = signal.SIGUSR2
    calls: list[int] = []
    old = signal.signal(sig, lambda signum, frame: calls.append(signum))
    signal.pthread_sigmask(signal.SIG_BLOCK, {sig})
    try:
        for _ in range(3):
            send.send(os.getpid(), sig)
        pending = sig in signal.sigpending()
        while_blocked = len(calls)
        signal.pthread_sigmask(signal.SIG_UNBLOCK, {sig})
        wait_for(lambda: calls)
        after_unblock = len(calls)
        signal.pthread_sigmask(signal.SIG_BLOCK, {sig})
        send.send(os.getpid(), sig)
        info = signal.sigtimedwait({sig}, WAIT)  # sigwait, bounded
        after_sigwait = len(calls)
    finally:
        signal.pthread_sigmask(signal.SIG_UNBLOCK, {sig})
        signal.signal(sig, old)
    taken = f"{signal.Signals(info.si_signo).name} from pid {info.si_pid}" if info else "nothing"
    observed = (
        f"while blocked: pending={pending}, handler ran {while_blocked}x; after unblock "
        f"{after_unblock}x; sigtimedwait took {taken}, handler ran {after_sigwait}x in all"
    )
    taken_here = info is not None and info.si_signo == sig and info.si_pid == os.getpid()
    holds = pending and while_blocked == 0 and after_unblock == after_sigwait == 1 and taken_here
    return observed, holds


# -- 7 -------------------------------------------------------------------------------
_LOOP_TIMEOUT = 0.5  # seconds an idle event loop would sleep if nothing woke it
_SIGNAL_AFTER = 0.05


def _signal_a_worker_soon() -> threading.Timer:
    """SIGUSR1 to a worker thread: the main thread's select gets no EINTR from it."""

    def to_myself() -> None:
        send.send_to_thread(threading.get_ident(), signal.SIGUSR1)

    timer = threading.Timer(_SIGNAL_AFTER, to_myself)
    timer.start()
    return timer


def _select_wakes(use_wakeup_fd: bool) -> tuple[float, bytes]:
    wake_r, wake_w = os.pipe()
    os.set_blocking(wake_w, False)
    old_fd = signal.set_wakeup_fd(wake_w if use_wakeup_fd else -1)
    old = signal.signal(signal.SIGUSR1, lambda signum, frame: None)
    started = time.perf_counter()
    timer = _signal_a_worker_soon()
    try:
        ready, _, _ = select.select([wake_r], [], [], _LOOP_TIMEOUT)
        elapsed = time.perf_counter() - started
        byte = os.read(wake_r, 1) if ready else b""
    finally:
        timer.join(WAIT)
        signal.set_wakeup_fd(old_fd)
        signal.signal(signal.SIGUSR1, old)
        os.close(wake_r)
        os.close(wake_w)
    return elapsed, byte


async def _asyncio_wakes() -> float:
    loop = asyncio.get_running_loop()
    woken = loop.create_future()
    loop.add_signal_handler(signal.SIGUSR1, woken.set_result, None)
    started = time.perf_counter()
    timer = _signal_a_worker_soon()
    try:
        await asyncio.wait_for(woken, _LOOP_TIMEOUT)
        return time.perf_counter() - started
    except TimeoutError:
        return float("inf")
    finally:
        timer.join(WAIT)
        loop.remove_signal_handler(signal.SIGUSR1)


@fact(
    7,
    "set_wakeup_fd and loop.add_signal_handler wake a loop blocked in select",
    f"signal to a worker thread at {_SIGNAL_AFTER} s: plain select sleeps its "
    f"{_LOOP_TIMEOUT} s; with set_wakeup_fd, and in asyncio, the loop wakes at once",
)
def wakeup_fd_wakes_event_loops(call_size: int) -> tuple[str, bool]:
    plain, _ = _select_wakes(use_wakeup_fd=False)
    woken, byte = _select_wakes(use_wakeup_fd=True)
    in_asyncio = asyncio.run(_asyncio_wakes())
    quick = _LOOP_TIMEOUT / 2
    observed = (
        f"plain select woke after {plain:.3f} s; with set_wakeup_fd after {woken:.3f} s "
        f"({f'byte {byte[0]}' if byte else 'no byte'}, SIGUSR1 is {int(signal.SIGUSR1)}); "
        f"asyncio callback after {in_asyncio:.3f} s"
    )
    holds = plain >= 0.9 * _LOOP_TIMEOUT and woken < quick and in_asyncio < quick
    return observed, holds and byte == bytes([signal.SIGUSR1])
