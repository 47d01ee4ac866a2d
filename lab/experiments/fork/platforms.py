"""Fact 14: the start methods this platform offers, its default, and life without os.fork.

The documented defaults: spawn on Windows and macOS, fork on Linux up to
3.13, forkserver from 3.14. Where os.fork does not exist, the lab's
strategies that need it refuse through lab.start_methods.require_fork with one
line pointing at spawn. The checklist shows that refusal by taking os.fork
away for a moment (the checklist runs in a process of its own, and puts it
back at once): the refusal logic is what is checked, not a fake platform.
"""

from __future__ import annotations

import multiprocessing
import os
import sys

from lab import start_methods
from lab.errors import LabError
from lab.experiments.fork.probes import Outcome

__all__ = ["offered_start_methods"]


def _refusal_without_fork() -> str | None:
    """What require_fork says on a platform without os.fork (None: it did not refuse)."""
    fork = os.__dict__.pop("fork", None)
    try:
        start_methods.require_fork("the fork strategy")
    except LabError as exc:
        return str(exc)
    finally:
        if fork is not None:
            os.fork = fork
    return None


def offered_start_methods(options: dict) -> Outcome:
    offered = multiprocessing.get_all_start_methods()
    default = start_methods.default_start_method()
    promised = start_methods.expected_default_start_method()
    refusal = _refusal_without_fork()
    expected = (
        f"{sys.platform}, Python {sys.version_info[0]}.{sys.version_info[1]}: default "
        f"{promised}; without os.fork a clear refusal pointing at spawn"
    )
    holds = (
        default == promised
        and default in offered
        and start_methods.has_fork()
        and refusal is not None
        and "spawn" in refusal
    )
    observed = f"offers {', '.join(offered)}; default {default}; without os.fork: {refusal!r}"
    return Outcome(expected, observed, holds, {"offered": ",".join(offered), "default": default})
