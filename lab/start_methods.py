"""What this platform offers for starting processes, and the lab's refusal where fork is missing.

The talk's JRuby slide: `fork` raises NotImplementedError on a runtime that
cannot fork. Python's equivalent is quieter: on Windows (and under some
embedded or WebAssembly builds) `os.fork` simply does not exist, and code
that calls it dies with AttributeError far from the reason. A lab strategy
that needs fork calls `require_fork(what)` first and the user gets one line
saying what is missing and what to use instead (the spawn start method, or
forkserver where the platform has it).

Standard library only, and no lab import but lab.errors: the fork checklist
(lab.experiments.fork) runs this under other interpreters too.
"""

from __future__ import annotations

import multiprocessing
import os
import sys

from lab.errors import LabError

__all__ = [
    "default_start_method",
    "expected_default_start_method",
    "has_fork",
    "require_fork",
    "stop_multiprocessing_servers",
]


def has_fork() -> bool:
    """True where os.fork exists (every Unix CPython; not Windows, not WASI)."""
    return hasattr(os, "fork")


def default_start_method() -> str:
    """multiprocessing's default here, read without fixing it for the process.

    get_start_method() with no argument would set the default context for good
    (a later set_start_method then fails); allow_none=True only reads it, and
    where nothing was chosen yet the default context's own method is the answer.
    """
    chosen = multiprocessing.get_start_method(allow_none=True)
    if chosen is not None:
        return chosen
    default = multiprocessing.context._default_context._default_context  # type: ignore[attr-defined]
    return default.get_start_method()


def expected_default_start_method(platform: str = sys.platform, version=sys.version_info) -> str:
    """What the documentation promises: spawn on Windows and macOS (3.8+, bpo-33725),
    fork on Linux and other Unixes until 3.13, forkserver from 3.14 (gh-84559)."""
    if platform == "win32" or platform == "darwin":
        return "spawn"
    return "forkserver" if tuple(version[:2]) >= (3, 14) else "fork"


def require_fork(what: str) -> None:
    """Refuse, in one line, to run `what` where os.fork does not exist.

    The pointer is spawn, the one start method that never forks: forkserver is
    no way out, since its server process forks every worker.
    """
    if has_fork():
        return
    raise LabError(
        f"{what} needs os.fork, which Python on {sys.platform} does not have "
        "(the talk's JRuby NotImplementedError): use the spawn start method "
        "(forkserver forks too, in its server)"
    )


def stop_multiprocessing_servers() -> None:
    """Stop the forkserver and the resource tracker that spawn and forkserver start.

    Both stay alive, as children of this process, until it exits (then they
    end by themselves, a moment later, as orphans): fine for a program, a leak
    for a lab that promises every process it started is reaped when a part
    returns. Call it only once the pool's queues and semaphores are gone, or
    the tracker unlinks them under their finalizers. `_stop` is private
    (CPython's own tests use it, 3.8+), so it is called only where it exists.
    """
    from multiprocessing import forkserver, resource_tracker

    for server in (forkserver._forkserver, resource_tracker._resource_tracker):
        stop = getattr(server, "_stop", None)
        if stop is not None:
            stop()
