"""The environment fingerprint stored with every run.

A figure without its machine is a rumour: two cores or eight, GIL or free
threading, which start methods, which kernel. Everything here is read, not
assumed, and cheap enough to take on every run. When many machines share one
store (a workshop room, a CI fleet), `machine(env)` is how a run says which
machine measured it: its host, CPU model and cores.
"""

from __future__ import annotations

import multiprocessing
import os
import platform
import sys
import sysconfig
from typing import Any

from lab import start_methods

__all__ = ["cpu_model", "fingerprint", "gil_enabled", "machine", "usable_cores"]


def gil_enabled() -> bool:
    """True on the default build; False on a free-threaded build running without it.

    sys._is_gil_enabled exists from 3.13; before that every build has the GIL.
    """
    probe = getattr(sys, "_is_gil_enabled", None)
    return True if probe is None else bool(probe())


def usable_cores() -> int:
    """The cores this process may run on (taskset, cgroups cpusets), not the machine's."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


#: The /proc/cpuinfo keys that name the CPU: x86 ("model name"), ARM boards ("Model",
#: "Hardware"), POWER ("cpu"). The first one present wins.
_CPU_KEYS = ("model name", "Model", "Hardware", "cpu")


def cpu_model() -> str:
    """The CPU's marketing name as the kernel reports it, or platform.processor()."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
            found = dict(
                (key.strip(), value.strip())
                for key, sep, value in (line.partition(":") for line in f)
                if sep and key.strip() in _CPU_KEYS
            )
    except OSError:  # not Linux: macOS and the BSDs have no /proc/cpuinfo
        found = {}
    for key in _CPU_KEYS:
        if found.get(key):
            return " ".join(found[key].split())
    return platform.processor() or platform.machine() or "unknown CPU"


def machine(env: dict[str, Any]) -> str:
    """Which machine measured a run, from its stored fingerprint: host, CPU, cores."""
    cores = env.get("cpu_count")
    cpu = env.get("cpu_model") or env.get("machine") or "unknown CPU"
    return f"{env.get('hostname', '?')} ({cpu}, {cores} cores)"


def fingerprint() -> dict[str, Any]:
    uname = platform.uname()
    return {
        "python": platform.python_version(),
        "implementation": platform.python_implementation(),
        "build": " ".join(platform.python_build()),
        "compiler": platform.python_compiler(),
        "executable": sys.executable,
        "free_threaded_build": bool(sysconfig.get_config_var("Py_GIL_DISABLED")),
        "gil_enabled": gil_enabled(),
        "gil": "enabled" if gil_enabled() else "disabled",  # what records and tables say
        "start_methods": multiprocessing.get_all_start_methods(),
        "default_start_method": start_methods.default_start_method(),
        "has_fork": start_methods.has_fork(),
        "cpu_model": cpu_model(),
        "cpu_count": os.cpu_count(),
        "usable_cores": usable_cores(),
        "system": uname.system,
        "kernel": uname.release,
        "machine": uname.machine,
        "hostname": uname.node,
    }
