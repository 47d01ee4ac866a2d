"""What memory a process holds, read from /proc: standard library only.

Shared by the `spawn` and `cow` measuring modules, which run under whichever
CPython `--python` names, so nothing here may import a third-party package
(psutil gives the same figures; /proc is what it reads too).

The figures, in kB as the kernel gives them:
  VmRSS    resident pages, shared or not (counted in full by every process)
  VmSize   the virtual reservation (a thread's 8 MiB stack lands here, not in RSS)
  VmPTE    the page tables: what fork copies, page by page of the parent
  Pss      proportional set size: each shared page divided among its sharers
  Private_Dirty  pages only this process maps and has written: for a forked
           child, exactly what copy-on-write has copied (or what it allocated)
  USS      Private_Clean + Private_Dirty: what the process alone holds, what
           killing it would give back
"""

from __future__ import annotations

__all__ = ["MIB", "PAGE", "rollup", "status"]

import os

PAGE = os.sysconf("SC_PAGE_SIZE")
MIB = 1024 * 1024


def _kb_fields(path: str) -> dict[str, int]:
    """`Name:   1234 kB` lines of a /proc file, as {name: kB}."""
    fields: dict[str, int] = {}
    with open(path) as f:
        for line in f:
            name, _, rest = line.partition(":")
            parts = rest.split()
            if len(parts) == 2 and parts[1] == "kB":
                fields[name] = int(parts[0])
    return fields


def status(pid: int | str = "self") -> dict[str, int]:
    """VmRSS, VmSize, VmPTE... of a process, in kB (/proc/PID/status)."""
    return _kb_fields(f"/proc/{pid}/status")


def rollup(pid: int | str = "self") -> dict[str, int]:
    """Rss, Pss, Private_Dirty... summed over all mappings, plus USS (kB).

    smaps_rollup (Linux 4.14) is the sum /proc/PID/smaps would give, read in
    one go; reading another process's needs the same rights as ptrace.
    """
    fields = _kb_fields(f"/proc/{pid}/smaps_rollup")
    fields["Uss"] = fields.get("Private_Clean", 0) + fields.get("Private_Dirty", 0)
    return fields
