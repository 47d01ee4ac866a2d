"""A process seen from outside: the kernel's own record of it in /proc/PID/stat.

The lessons check what the kernel says (state, parent, process group,
session, terminal), not what a process claims about itself. Standard library
only: the fork checklist reads it under other interpreters too.
"""

from __future__ import annotations

import errno
from typing import Any

__all__ = ["proc_stat"]


def proc_stat(pid: int | str = "self") -> dict[str, Any] | None:
    """state, ppid, pgrp, session and tty_nr of `pid`, or None if it is gone.

    The command name (field 2) may hold spaces and parentheses, so the line is
    split after its last ")".
    """
    try:
        with open(f"/proc/{pid}/stat") as f:
            text = f.read()
    except OSError as exc:
        if exc.errno in (errno.ENOENT, errno.ESRCH):
            return None
        raise
    rest = text[text.rindex(")") + 2 :].split()
    return {
        "state": rest[0],
        "ppid": int(rest[1]),
        "pgrp": int(rest[2]),
        "session": int(rest[3]),
        "tty_nr": int(rest[4]),
    }
