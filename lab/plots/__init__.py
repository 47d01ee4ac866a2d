"""One figure function per experiment: `lab.plots.<name>.draw(runs) -> Figure`.

Figures are built with matplotlib's object API (matplotlib.figure.Figure), not
pyplot: no global current figure, no GUI backend, safe in a daemon thread, and
a notebook shows the returned Figure inline. The same function draws a run
just made by the CLI and runs the daemon stored overnight.
"""

from __future__ import annotations

import importlib
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from lab.errors import LabError
from lab.runs import Run

if TYPE_CHECKING:
    from matplotlib.figure import Figure

__all__ = ["draw", "save"]


def draw(experiment: str, runs: Sequence[Run]) -> Figure:
    """The figure for `experiment` from these runs (all of that experiment)."""
    if not runs:
        raise LabError(f"no stored runs of {experiment!r}: first `daemonlab run {experiment}`")
    try:
        module = importlib.import_module(f"{__name__}.{experiment}")
    except ModuleNotFoundError:
        raise LabError(f"experiment {experiment!r} has no plot") from None
    return module.draw(list(runs))


def save(figure: Figure, path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=120, bbox_inches="tight")
    return path
