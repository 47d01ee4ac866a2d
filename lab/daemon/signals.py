"""Signals for the harness: handlers only record, the main loop acts.

Why: a Python signal handler runs between two bytecodes of whatever the main
thread was doing, halfway through a log write or a dict update. Doing work
there is how gunicorn got its reentrancy bugs (#2816, #3004, #3198) until 24.0
made its handlers only queue the signal ("NO LOGGING, just queue the signal").

How: signal.set_wakeup_fd makes the C-level handler write the signal's number
into a non-blocking pipe the moment the signal arrives, even while Python is
busy in a long C call. The Python-level handler is a no-op that exists only so
the signal is caught rather than default-handled. The main loop waits in
select() on the pipe's read end with its own timeout (the next scheduled run),
reads the numbers and dispatches each to `handle_<name>` on its owner.

Things that do not work: `signal.pause()` + a flag races (the signal can come
between the check and the pause); sleeping with time.sleep() wakes up on a
signal but cannot tell which; a full pipe (a storm of signals) drops bytes,
which is fine: the same standard signal pending twice is delivered once anyway.
"""

from __future__ import annotations

import os
import select
import signal
from collections.abc import Iterable

__all__ = ["HANDLED", "SignalWakeup"]

#: The signals the harness acts on (see the handle_* methods in harness.py).
HANDLED = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGUSR1, signal.SIGCHLD)


def _record_only(signum: int, frame: object) -> None:
    """Nothing: the wakeup fd already recorded the signal. NO WORK HERE."""


class SignalWakeup:
    """The self-pipe that turns signals into bytes the main loop reads."""

    def __init__(self, signals: Iterable[signal.Signals] = HANDLED) -> None:
        self.signals = tuple(signals)
        self.read_fd, self.write_fd = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        self._previous_fd = signal.set_wakeup_fd(self.write_fd, warn_on_full_buffer=False)
        for sig in self.signals:
            # SA_RESTART-like behaviour comes from PEP 475: interrupted syscalls retry.
            signal.signal(sig, _record_only)

    def wait(self, timeout: float | None) -> list[signal.Signals]:
        """Block until a signal comes or `timeout` passes; the signals received, in order."""
        ready, _, _ = select.select([self.read_fd], [], [], timeout)
        if not ready:
            return []
        received: list[signal.Signals] = []
        while True:
            try:
                data = os.read(self.read_fd, 4096)
            except BlockingIOError:
                break
            if not data:
                break
            received.extend(signal.Signals(b) for b in data)
        return received

    def close(self) -> None:
        """Give the signals back to their defaults and close the pipe (also in a forked child)."""
        signal.set_wakeup_fd(-1)
        for sig in self.signals:
            signal.signal(sig, signal.SIG_DFL)
        for fd in (self.read_fd, self.write_fd):
            os.close(fd)
        self.read_fd = self.write_fd = -1
