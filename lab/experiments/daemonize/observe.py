"""Reading a process from outside, through /proc: what the daemonize experiment sees.

Nothing here asks the process anything: a daemon's own word about its
session or umask is what a buggy daemon would get wrong. Linux only; Umask
in /proc/PID/status needs Linux 4.7+.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from lab.procfs import proc_stat

__all__ = ["observe"]


def _tty(tty_nr: int) -> str:
    if tty_nr == 0:
        return "none"
    major, minor = os.major(tty_nr), os.minor(tty_nr)
    return f"pts/{minor}" if 136 <= major <= 143 else f"tty {major}:{minor}"


def _fd_label(target: str, names: dict[str, str]) -> str:
    if target in names:
        return names[target]
    if target == os.devnull:
        return "null"
    if target.startswith("pipe:"):
        return "pipe"
    if target.startswith("socket:"):
        return "socket"
    return Path(target).name


def observe(pid: int, names: dict[str, str]) -> dict[str, Any]:
    """pid, ppid, pgid, sid, tty, cwd, umask, uid, gid and fds of `pid`, read from /proc.

    `names` labels descriptor targets ("pipe:[123]" -> "probe", a path -> "log").
    """
    proc = Path(f"/proc/{pid}")
    stat = proc_stat(pid)
    if stat is None:
        raise ProcessLookupError(f"process {pid} is gone")
    state, ppid, pgid, sid, tty_nr = (
        stat[k] for k in ("state", "ppid", "pgrp", "session", "tty_nr")
    )
    status = dict(
        line.split(":", 1) for line in (proc / "status").read_text().splitlines() if ":" in line
    )
    fds = []
    for name in sorted(os.listdir(proc / "fd"), key=int):
        try:
            target = os.readlink(proc / "fd" / name)
        except FileNotFoundError:
            continue
        fds.append(f"{name}:{_fd_label(target, names)}")
    return {
        "pid": pid,
        "state": state,
        "ppid": ppid,
        "pgid": pgid,
        "sid": sid,
        "session_leader": sid == pid,
        "tty": _tty(tty_nr),
        "cwd": os.readlink(proc / "cwd"),
        "umask": status.get("Umask", "?").strip(),
        "uid": int(status["Uid"].split()[1]),  # effective
        "gid": int(status["Gid"].split()[1]),
        "fds": " ".join(fds),
    }
