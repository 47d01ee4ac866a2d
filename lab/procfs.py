"""What the kernel knows about a process: /proc/PID/stat, status and memory, and prctl(2).

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
    "memory_kb",
    "parse_status",
    "proc_stat",
    "proc_status",
    "smaps_rollup_kb",
    "set_subreaper",
    "subreaper",
]

# prctl(2) options
PR_SET_PDEATHSIG = 1  # signal me when the thread that forked me exits
PR_SET_CHILD_SUBREAPER = 36  # Linux 3.4+: orphans below me are re-parented to me
PR_GET_CHILD_SUBREAPER = 37


def proc_stat(pid: int | str = "self") -> dict[str, Any] | None:
    """state, ppid, pgrp, session, tty_nr, comm, cpu_ticks and starttime of `pid`, or None
    if it is gone.

    The command name (field 2) may hold spaces and parentheses, so the line is
    split after its last ")". cpu_ticks: utime + stime of the process and of its
    reaped children (fields 14-17), in clock ticks (os.sysconf("SC_CLK_TCK")).
    starttime (field 22) is when the process was forked, in clock ticks since
    boot (proc(5)): with the pid, it tells a process from a later one that
    was given the same pid.
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
        "comm": text[text.index("(") + 1 : text.rindex(")")],
        "cpu_ticks": sum(int(ticks) for ticks in rest[11:15]),
        "starttime": int(rest[19]),  # with the pid, names one process: pids are reused
    }


def proc_status(pid: int | str = "self") -> dict[str, str] | None:
    """/proc/PID/status as {field: text} (VmRSS, SigCgt, Threads...), or None if it is gone."""
    text = _read(pid, "status")
    return None if text is None else parse_status(text)


def parse_status(text: str) -> dict[str, str]:
    """`Name:\tvalue` lines (the format of /proc/PID/status) as {name: value}."""
    fields = {}
    for line in text.splitlines():
        key, _, value = line.partition(":")
        fields[key] = value.strip()
    return fields


def memory_kb(pid: int | str = "self") -> dict[str, int]:
    """The kB figures of /proc/PID/status: VmRSS, VmSize, VmPTE...

    VmRSS   resident pages, shared or not (counted in full by every process)
    VmSize  the virtual reservation (a thread's 8 MiB stack lands here, not in RSS)
    VmPTE   the page tables: what fork copies, page by page of the parent
    """
    return _kb_fields(proc_status(pid) or {})


def smaps_rollup_kb(pid: int | str = "self") -> dict[str, int]:
    """Rss, Pss, Private_Dirty... summed over all mappings, plus Uss, in kB.

    Pss            each shared page divided among its sharers
    Private_Dirty  pages only this process maps and has written: for a forked
                   child, exactly what copy-on-write has copied (or it allocated)
    Uss            Private_Clean + Private_Dirty: what the process alone holds,
                   what killing it would give back

    smaps_rollup (Linux 4.14) is the sum /proc/PID/smaps would give, read in
    one go; reading another process's needs the same rights as ptrace.
    """
    text = _read(pid, "smaps_rollup") or ""
    lines = (line.partition(":") for line in text.splitlines())
    fields = _kb_fields({key: value.strip() for key, _, value in lines})
    fields["Uss"] = fields.get("Private_Clean", 0) + fields.get("Private_Dirty", 0)
    return fields


def _kb_fields(fields: dict[str, str]) -> dict[str, int]:
    """The `1234 kB` values of a /proc file's fields, as {name: kB}."""
    kb = {}
    for name, value in fields.items():
        parts = value.split()
        if len(parts) == 2 and parts[1] == "kB":
            kb[name] = int(parts[0])
    return kb


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
