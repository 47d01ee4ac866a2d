"""Facts 4, 5 and 13: fork copies one thread, every lock, and (since 3.12) a warning.

- 4: only the thread that called fork exists in the child (the kernel's
  count, /proc/self/task, not threading's bookkeeping).
- 5: a lock another thread held at fork time is copied locked, and the
  thread that would release it was not copied: locked for ever. Shown with
  acquire(timeout=...), never by hanging. os.register_at_fork renews the
  lock in the child: the fix, shown working.
- 13: 3.12+ says so (DeprecationWarning, gh-100228); 3.11 forks the same
  threaded process silently.

The forks in 4 and 5 silence that warning on purpose: it is fact 13's subject.
"""

from __future__ import annotations

import functools
import os
import sys
import threading
import warnings
import weakref
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from lab.experiments.fork import probes
from lab.experiments.fork.probes import Outcome

__all__ = ["ForkSafeLock", "lock_stays_locked", "only_caller_thread", "threaded_fork_warning"]

#: Long enough that a free lock is taken at once, short enough to keep the checklist quick.
STUCK_TIMEOUT_S = 0.3
#: Extra threads started before forking.
EXTRA_THREADS = 3


@contextmanager
def _threads(count: int, holding: Callable[[], object] | None = None) -> Iterator[None]:
    """`count` threads parked on an event (each entering `holding` first) until the block ends."""
    release = threading.Event()
    ready = threading.Barrier(count + 1, timeout=probes.WAIT_S)

    def park() -> None:
        with holding() if holding else _nothing():
            ready.wait()
            release.wait(probes.WAIT_S)

    started = [threading.Thread(target=park, daemon=True) for _ in range(count)]
    for thread in started:
        thread.start()
    try:
        ready.wait()
        yield
    finally:
        release.set()
        for thread in started:
            thread.join(probes.WAIT_S)


@contextmanager
def _nothing() -> Iterator[None]:
    yield


def _tasks() -> int:
    """Threads of this process as the kernel counts them."""
    return len(os.listdir("/proc/self/task"))


def only_caller_thread(options: dict) -> Outcome:
    with _threads(EXTRA_THREADS), warnings.catch_warnings():
        warnings.filterwarnings("ignore", ".*multi-threaded.*", DeprecationWarning)
        in_parent = _tasks()
        _, report, _ = probes.run_child(lambda: {"tasks": _tasks()})
    expected = f"parent: {EXTRA_THREADS + 1} or more threads; child: exactly 1"
    if report is None:
        return Outcome(expected, f"no child reported (parent had {in_parent} threads)", False)
    holds = in_parent >= EXTRA_THREADS + 1 and report["tasks"] == 1
    observed = f"/proc/self/task: {in_parent} threads in the parent, {report['tasks']} in the child"
    return Outcome(expected, observed, holds, {"parent_threads": in_parent, **report})


class ForkSafeLock:
    """A lock the child gets fresh: os.register_at_fork renews it after every fork.

    The hook holds only a weak reference, so registering (which cannot be
    undone) does not keep the object alive; logging does the same for its
    handlers' locks (bpo-36533).
    """

    def __init__(self) -> None:
        self.lock = threading.Lock()
        os.register_at_fork(after_in_child=functools.partial(_renew, weakref.ref(self)))


def _renew(ref: weakref.ref) -> None:
    owner = ref()
    if owner is not None:
        owner.lock = threading.Lock()  # the copied one belongs to a thread that is not here


def _try(lock: threading.Lock) -> bool:
    return lock.acquire(timeout=STUCK_TIMEOUT_S)


def lock_stays_locked(options: dict) -> Outcome:
    plain = threading.Lock()
    fixed = ForkSafeLock()

    @contextmanager
    def hold_both() -> Iterator[None]:
        with plain, fixed.lock:
            yield

    with _threads(1, holding=hold_both), warnings.catch_warnings():
        warnings.filterwarnings("ignore", ".*multi-threaded.*", DeprecationWarning)
        held = plain.locked() and fixed.lock.locked()
        _, report, _ = probes.run_child(lambda: {"plain": _try(plain), "fixed": _try(fixed.lock)})
    expected = (
        f"plain Lock: acquire(timeout={STUCK_TIMEOUT_S}) fails in the child; "
        "the one renewed by os.register_at_fork is taken"
    )
    if report is None:
        return Outcome(expected, "no child reported", False)
    holds = held and report["plain"] is False and report["fixed"] is True
    observed = (
        f"held by another thread at fork: {held}; in the child, plain Lock "
        f"{'acquired' if report['plain'] else 'still locked after the timeout'}, "
        f"register_at_fork lock {'acquired' if report['fixed'] else 'still locked'}"
    )
    return Outcome(expected, observed, holds)


def threaded_fork_warning(options: dict) -> Outcome:
    warns = sys.version_info >= (3, 12)
    with _threads(1), warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        tasks = _tasks()
        _, report, _ = probes.run_child(lambda: {})
    messages = [
        str(w.message)
        for w in caught
        if issubclass(w.category, DeprecationWarning) and "multi-threaded" in str(w.message)
    ]
    version = ".".join(map(str, sys.version_info[:2]))
    expected = f"Python {version}: " + (
        "DeprecationWarning 'multi-threaded, use of fork() may lead to deadlocks'"
        if warns
        else "no warning (same hazard, silent)"
    )
    if report is None:
        return Outcome(expected, "no child reported", False)
    holds = tasks >= 2 and bool(messages) == warns
    said = f"DeprecationWarning: {messages[0]}" if messages else "no warning"
    observed = f"forked with {tasks} threads; {said}"
    return Outcome(expected, observed, holds)
