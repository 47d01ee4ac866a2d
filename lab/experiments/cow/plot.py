"""The figure for `cow`: private MB per child per step, with and without gc.freeze.

One panel per (interpreter, structure). In each, x is the step (fork, read,
collect) and y the memory each child has stopped sharing since fork
(Private_Dirty now minus right after fork, averaged over the children of a
role). A colour per role; solid without gc.freeze() in the parent, dashed
with it. When several runs are given, the newest record for each point wins.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from lab.runs import Run

if TYPE_CHECKING:
    from matplotlib.figure import Figure

__all__ = ["draw"]

STEPS = ("fork", "read", "collect")
ROLES = ("control", "reader", "collector")


def _version_key(version: str) -> tuple[int, ...]:
    return tuple(int(p) for p in version.split(".") if p.isdigit())


def _points(runs: Sequence[Run]) -> dict[tuple, list[float]]:
    """{(python, structure, frozen, role, step): [unshared MB of each child]}, newest run only."""
    seen: set[tuple] = set()
    points: dict[tuple, list[float]] = {}
    for run in runs:  # newest first: a point an earlier run already gave is skipped
        fresh: dict[tuple, list[float]] = {}
        for r in run.records:
            key = (r["python"], r["structure"], r["frozen"], r["role"], r["step"])
            if key not in seen:
                fresh.setdefault(key, []).append(r["unshared_mb"])
        points.update(fresh)
        seen.update(fresh)
    return points


def draw(runs: list[Run]) -> Figure:
    from matplotlib.figure import Figure

    points = _points(runs)
    pythons = sorted({k[0] for k in points}, key=_version_key)
    structures = list(dict.fromkeys(k[1] for k in points))
    immortal: dict[tuple[str, str], Any] = {
        (r["python"], r["structure"]): r.get("immortal") for run in runs for r in run.records
    }
    panels = [(python, structure) for python in pythons for structure in structures]
    # A row per interpreter, a column per structure; one structure: interpreters side by side.
    columns = len(structures) if len(structures) > 1 else len(pythons)
    rows = len(panels) // columns
    figure = Figure(figsize=(4.5 * columns, 3.6 * rows), layout="constrained")
    # One y scale for all: 0.1 MB and 150 MB must look as different as they are.
    axes = figure.subplots(rows, columns, squeeze=False, sharey=True).flatten()
    for ax, (python, structure) in zip(axes, panels, strict=True):
        for frozen in (False, True):
            for i, role in enumerate(ROLES):
                ys = [points.get((python, structure, frozen, role, step)) for step in STEPS]
                if all(y is None for y in ys):
                    continue
                ax.plot(
                    STEPS,
                    [sum(y) / len(y) if y else float("nan") for y in ys],
                    color=f"C{i}",
                    linestyle="--" if frozen else "-",
                    marker="o",
                    label=f"{role}{', gc.freeze' if frozen else ''}",
                )
        tag = " (immortal elements)" if immortal.get((python, structure)) else ""
        ax.set_title(f"Python {python}: {structure}{tag}", fontsize="medium")
        ax.grid(alpha=0.3)
    for ax in axes[::columns]:
        ax.set_ylabel("MB no longer shared")
    axes[columns - 1].legend(fontsize="small")
    figure.suptitle("cow: what a forked child copies, step by step")
    return figure
