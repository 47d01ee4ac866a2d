"""How a signal leaves: the four senders every demonstration of `signals` goes through.

They are one-liners on purpose. Each fact and the latency probe send through
these names (looked up on this module at call time), so a test can replace
them with a sender that sends nothing and check that the fact then does NOT
hold: a demonstration that passes without its signal demonstrates nothing.
Clean-up (killing what a probe started) never goes through here.
"""

from __future__ import annotations

import os
import signal

__all__ = ["send", "send_to_group", "send_to_thread", "type_interrupt_key"]

#: The byte a terminal turns into SIGINT for its foreground process group (termios VINTR, ^C).
INTERRUPT_KEY = b"\x03"


def send(pid: int, sig: int) -> None:
    """kill(2): a process-directed signal, as `kill -SIGTERM <pid>` sends it."""
    os.kill(pid, sig)


def send_to_thread(thread_id: int, sig: int) -> None:
    """pthread_kill(3): a thread-directed signal, delivered to that thread only."""
    signal.pthread_kill(thread_id, sig)


def send_to_group(pgid: int, sig: int) -> None:
    """killpg(3): every process of a process group, as `kill -TERM -<pgid>` does."""
    os.killpg(pgid, sig)


def type_interrupt_key(terminal_fd: int) -> None:
    """Type ^C into a terminal (the master side of a pty): its driver signals the group."""
    os.write(terminal_fd, INTERRUPT_KEY)
