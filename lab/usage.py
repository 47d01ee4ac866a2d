"""What a process used: CPU time to the nanosecond, memory, and a child's whole bill.

Three readings, each where the kernel keeps it most precisely:

- a live process's CPU: the sum over its threads of the first field of
  /proc/PID/task/TID/schedstat, nanoseconds on a CPU. /proc/PID/stat (and
  psutil's cpu_times) counts clock ticks of 10 ms: coarser than a daemon's
  whole idle second, or than a thousand no-op jobs.
- a child that has ended: os.wait4's rusage, which the kernel fills in when
  it is reaped (ru_utime + ru_stime, microseconds; ru_maxrss, its peak
  resident memory in KiB on Linux). It includes the child's own reaped
  children: `sh -c` and the python it started are one bill.
- a live process's memory: its resident set now (psutil, from /proc/PID/statm).
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from resource import struct_rusage

__all__ = ["on_cpu_s", "rss_mb", "rusage_cpu_s", "rusage_peak_mb"]


def on_cpu_s(pid: int) -> float:
    """Seconds process `pid` (all its threads) has spent on a CPU so far."""
    total = 0
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{tid}/schedstat") as f:
                total += int(f.read().split()[0])
        except FileNotFoundError:
            continue  # the thread ended between the listing and the read
    return total / 1e9


def rss_mb(pid: int) -> float:
    import psutil

    return psutil.Process(pid).memory_info().rss / 2**20


def rusage_cpu_s(usage: struct_rusage) -> float:
    return usage.ru_utime + usage.ru_stime


def rusage_peak_mb(usage: struct_rusage) -> float:
    return usage.ru_maxrss / 1024  # KiB on Linux (bytes on macOS)
