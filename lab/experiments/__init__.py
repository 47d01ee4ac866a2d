"""The experiments: one module per talk topic, found by name.

Every module here that does not start with an underscore is an experiment and
provides:

    NAME     the name `daemonlab run NAME` uses (the module's name)
    SUMMARY  one line for `daemonlab list`
    Params   a frozen dataclass (lab.params.Params) with quick defaults
    FULL     a dict of overrides for `--full`, the larger sweep
    COLUMNS  the record keys the CLI table shows, in order
    run(params=Params(), progress=None, sink=None) -> lab.runs.Run

Modules are imported only when asked for, so `daemonlab --help` stays fast
and one experiment's heavy imports never slow another's start.
"""

from __future__ import annotations

import importlib
import pkgutil
from types import ModuleType

from lab.errors import LabError

__all__ = ["load", "names"]


def names() -> list[str]:
    return sorted(m.name for m in pkgutil.iter_modules(__path__) if not m.name.startswith("_"))


def load(name: str) -> ModuleType:
    if name not in names():
        raise LabError(f"unknown experiment {name!r} (known: {', '.join(names())})")
    return importlib.import_module(f"{__name__}.{name}")
