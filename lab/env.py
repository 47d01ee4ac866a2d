"""The environment fingerprint stored with every run.

A figure without its machine is a rumour: two cores or eight, GIL or free
threading, which start methods, which kernel. Everything here is read, not
assumed, and cheap enough to take on every run.
"""

from __future__ import annotations

import multiprocessing
import os
import platform
import sys
import sysconfig
from typing import Any

from lab import start_methods

__all__ = ["fingerprint", "gil_enabled", "usable_cores"]


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
        "start_methods": multiprocessing.get_all_start_methods(),
        "default_start_method": start_methods.default_start_method(),
        "has_fork": start_methods.has_fork(),
        "cpu_count": os.cpu_count(),
        "usable_cores": usable_cores(),
        "system": uname.system,
        "kernel": uname.release,
        "machine": uname.machine,
        "hostname": uname.node,
    }
