"""The experiments: one package per talk topic, found by name, listed in the talk's order.

A learner opens `lab/experiments/NAME/`, reads `__init__.py` (the lesson:
its docstring ends with a reading map naming the other files) and follows
the map. Every experiment package provides what the four front doors use
(the CLI, the daemon harness, the benchmarks, the notebooks):

    NAME     the name `daemonlab run NAME` uses (the package's name)
    SUMMARY  one line for `daemonlab list`
    Params   a frozen dataclass (lab.params.Params) with quick defaults
    FULL     a dict of overrides for `--full`, the larger sweep
    TOUR     the tour's chapter: [(markdown text, params overrides or None), ...]
    COLUMNS  what the CLI table shows: a list of lab.report.Column, or a dict
             from a record's `part` to its columns (one table per part)
    run(params=Params(), progress=None, sink=None) -> lab.runs.Run

and, beside it, `plot.py` with `draw(runs) -> Figure` (`daemonlab plot
NAME`). The lesson never imports its plot: measuring code does not need
matplotlib. Code that runs in a child interpreter (lab.interpreters) lives
in the topic's `child.py`, standard library only.

Packages are imported only when asked for, so `daemonlab --help` stays fast
and one experiment's heavy imports never slow another's start.
"""

from __future__ import annotations

import importlib
import pkgutil
from types import ModuleType

from lab.errors import LabError

__all__ = ["CONTRACT", "ORDER", "check", "load", "names"]

#: The talk's order, which `daemonlab list`, the tour and the notebooks' numbers follow:
#: what a daemon is and how one is made; fork, what a child costs and shares; forking
#: against threading, CPU-bound then I/O-bound (the SELECT SLEEP demo); processes
#: talking; signals; cron against a daemon; the daily daemons; managing them.
ORDER = (
    "daemonize",
    "fork",
    "spawn",
    "cow",
    "cpu",
    "sleep",
    "ipc",
    "signals",
    "cron",
    "prefork",
    "worker",
    "managers",
)

#: What every experiment module must define (the list above, in code).
CONTRACT = ("NAME", "SUMMARY", "Params", "FULL", "TOUR", "COLUMNS", "run")


def names() -> list[str]:
    """Every experiment here, in the talk's order (any not in ORDER after, by name)."""
    found = {m.name for m in pkgutil.iter_modules(__path__) if not m.name.startswith("_")}
    return [n for n in ORDER if n in found] + sorted(found - set(ORDER))


def load(name: str) -> ModuleType:
    if name not in names():
        raise LabError(f"unknown experiment {name!r} (known: {', '.join(names())})")
    return importlib.import_module(f"{__name__}.{name}")


def check(module: ModuleType) -> list[str]:
    """What `module` lacks of the contract (empty when it keeps it)."""
    return [attr for attr in CONTRACT if not hasattr(module, attr)]
