"""What the kernel knows about a process: /proc/PID/stat, and prctl(2) for its family.

The lessons check what the kernel says (state, parent, process group,
session, terminal), not what a process claims about itself; and they adopt
their orphans (a subreaper) rather than wait for PID 1, which reaps adopted
orphans only after a second or two on this machine. Standard library only:
the fork checklist and the signal probes use it under other interpreters too.
"""

from __future__ import annotations

import ctypes
import errno
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

__all__ = [
    "PR_SET_PDEATHSIG",
    "is_subreaper",
    "prctl",
    "proc_stat",
    "proc_status",
    "set_subreaper",
    "subreaper",
]

# prctl(2) options
PR_SET_PDEATHSIG = 1  # signal me when the thread that forked me exits
PR_SET_CHILD_SUBREAPER = 36  # Linux 3.4+: orphans below me are re-parented to me
PR_GET_CHILD_SUBREAPER = 37


def proc_stat(pid: int | str = "self") -> dict[str, Any] | None:
    """state, ppid, pgrp, session and tty_nr of `pid`, or None if it is gone.

    The command name (field 2) may hold spaces and parentheses, so the line is
    split after its last ")".
    """
    text = _read(pid, "stat")
    if text is None:
        return None
    rest = text[text.rindex(")") + 2 :].split()
    return {
        "state": rest[0],
        "ppid": int(rest[1]),
        "pgrp": int(rest[2]),
        "session": int(rest[3]),
        "tty_nr": int(rest[4]),
    }


def proc_status(pid: int | str = "self") -> dict[str, str] | None:
    """/proc/PID/status as {field: text} (VmRSS, SigCgt, Threads...), or None if it is gone."""
    text = _read(pid, "status")
    if text is None:
        return None
    fields = {}
    for line in text.splitlines():
        key, _, value = line.partition(":")
        fields[key] = value.strip()
    return fields


def _read(pid: int | str, name: str) -> str | None:
    """/proc/PID/NAME, or None when the process is gone (the race every reader of /proc has)."""
    try:
        with open(f"/proc/{pid}/{name}") as f:
            return f.read()
    except OSError as exc:
        if exc.errno in (errno.ENOENT, errno.ESRCH):
            return None
        raise


def prctl(option: int, value: Any = 0) -> bool:
    """prctl(2) through libc; False where it failed or does not exist (not Linux)."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        return libc.prctl(option, value, 0, 0, 0) == 0
    except (OSError, AttributeError):
        return False


def is_subreaper() -> bool:
    flag = ctypes.c_int(0)
    return prctl(PR_GET_CHILD_SUBREAPER, ctypes.byref(flag)) and bool(flag.value)


def set_subreaper(on: bool) -> bool:
    """Adopt (or stop adopting) the orphans of my descendants; False if refused."""
    return prctl(PR_SET_CHILD_SUBREAPER, int(on))


@contextmanager
def subreaper() -> Iterator[bool]:
    """Be the child subreaper of our descendants for a while; yields whether it worked.

    Why: a daemon's launcher exits by design, so the daemon is an orphan. A
    subreaper adopts it, can reap it the moment it exits and reads as its
    ppid. The previous setting is put back, so a notebook kernel or a test
    runner does not go on adopting everybody's orphans.
    """
    before = is_subreaper()
    ok = set_subreaper(True)
    try:
        yield ok
    finally:
        if ok and not before:
            set_subreaper(False)
