"""The processes the signals experiment starts, and waits on them that always end.

Every probe of `signals` runs real processes, and none may hang the lab or
outlive it:

- each wait has a deadline (`wait_readable`, `read_exact`, `read_lines`);
- a child that should end is stopped visibly: TERM, a grace period, KILL,
  then reaped (lab.children, which every topic shares);
- a child that nobody will reap if its parent dies asks the kernel to kill it
  then (`die_with_parent`, PR_SET_PDEATHSIG), so a probe killed by its own
  timeout leaves no orphan spinning behind it.
"""

from __future__ import annotations

import os
import select
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from typing import Any

from lab import procfs

__all__ = [
    "WAIT",
    "Timeout",
    "die_with_parent",
    "python",
    "read_exact",
    "read_lines",
    "wait_for",
    "wait_readable",
]


class Timeout(Exception):
    """A bounded wait ran out: the demonstration did not happen in time."""


def die_with_parent(parent: int) -> None:
    """Ask for SIGKILL when the parent dies; if it is already gone, die now."""
    procfs.prctl(procfs.PR_SET_PDEATHSIG, signal.SIGKILL)  # not Linux: the time bounds remain
    if os.getppid() != parent:  # it died before prctl took effect: the race the check closes
        os._exit(1)


def python(args: Sequence[str], **popen: object) -> subprocess.Popen:
    """A fresh interpreter (this one's executable): its signal state is Python's at start."""
    return subprocess.Popen([sys.executable, *args], **popen)  # type: ignore[call-overload]


def wait_readable(fds: Sequence[int], timeout: float) -> list[int]:
    """The fds readable within `timeout` seconds (select retries EINTR itself, PEP 475)."""
    ready, _, _ = select.select(list(fds), [], [], max(timeout, 0.0))
    return ready


def read_exact(fd: int, size: int, timeout: float) -> bytes:
    """Exactly `size` bytes from a pipe, or Timeout; EOF before that is a Timeout too."""
    deadline = time.monotonic() + timeout
    data = b""
    while len(data) < size:
        if not wait_readable([fd], deadline - time.monotonic()):
            raise Timeout(f"waited {timeout:g} s for {size} bytes, got {len(data)}")
        chunk = os.read(fd, size - len(data))
        if not chunk:
            raise Timeout(f"the writer closed the pipe after {len(data)} of {size} bytes")
        data += chunk
    return data


def read_lines(fd: int, count: int, timeout: float) -> list[str]:
    """Up to `count` lines from a pipe within `timeout` (fewer if it runs out or closes)."""
    deadline = time.monotonic() + timeout
    data = b""
    while data.count(b"\n") < count:
        if not wait_readable([fd], deadline - time.monotonic()):
            break
        chunk = os.read(fd, 4096)
        if not chunk:
            break
        data += chunk
    return [line for line in data.decode().splitlines() if line]


#: seconds: the bound on any single wait for a signal that should come at once
WAIT = 2.0


def wait_for(predicate: Callable[[], Any], timeout: float = WAIT) -> Any:
    """Poll `predicate` between short sleeps (bytecode boundaries, where handlers run)."""
    deadline = time.monotonic() + timeout
    while not predicate() and time.monotonic() < deadline:
        time.sleep(0.005)
    return predicate()
