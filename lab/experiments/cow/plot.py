"""The figure for `cow`: what a forked child copies, per child and step, with and without gc.freeze.

One panel per (interpreter, structure), each from the newest run that
measured it (lab.plotting.newest_with): the tour's two runs (lists, then
interned strings and small ints) make one figure, and the title says which
runs. In each panel x is the step (fork, read, collect) and y the memory a
child has stopped sharing since fork (Private_Dirty now minus right after
fork): a colour per role, the same in every figure; solid without
gc.freeze() in the parent, dashed with it; where a role has several children
(--children), the line is their mean and the band spans the least and the
most any of them copied.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from lab.errors import LabError
from lab.plotting import colour, newest_with, used
from lab.runs import Run

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

__all__ = ["draw"]

STEPS = ("fork", "read", "collect")
#: A fixed colour per role, in every cow figure: the control in the grey of a
#: baseline (lab.plotting's "sequential"), the two that copy in colours far apart.
ROLES = {"control": colour("sequential"), "reader": "#9467bd", "collector": "#17becf"}
#: The lesson's order of structures, which the panels keep whatever the runs' order.
STRUCTURES = ("lists", "tuples", "interned", "small_ints")


def _version_key(version: str) -> tuple[int, ...]:
    return tuple(int(p) for p in version.split(".") if p.isdigit())


def draw(runs: Sequence[Run]) -> Figure:
    from matplotlib.figure import Figure

    seen = {(r["python"], r["structure"]) for run in runs for r in run.records}
    if not seen:
        raise LabError("the chosen cow runs hold no measurements")
    pythons = sorted({p for p, _ in seen}, key=_version_key)
    measured = {r["structure"] for run in runs for r in run.records}
    structures = [s for s in STRUCTURES if s in measured] + sorted(measured - set(STRUCTURES))
    panels = [(p, s) for p in pythons for s in structures]
    # A row per interpreter, a column per structure; one structure: interpreters side by side.
    columns = len(structures) if len(structures) > 1 else len(pythons)
    rows = -(-len(panels) // columns)
    figure = Figure(figsize=(4.6 * columns, 3.8 * rows), layout="constrained")
    # One y scale for all: 0.1 MB and 150 MB must look as different as they are.
    axes = figure.subplots(rows, columns, squeeze=False, sharey=True).flatten()
    chosen = []
    for ax, (python, structure) in zip(axes, panels, strict=False):
        run, records = newest_with(
            runs, lambda r, p=python, s=structure: (r["python"], r["structure"]) == (p, s)
        )
        chosen.append(run)
        _panel(ax, python, structure, records)
    for ax in axes[len(panels) :]:
        ax.set_axis_off()
    for ax in axes[::columns]:
        ax.set_ylabel("MB no longer shared")
    legend: dict[str, Any] = {}  # every role any panel drew, once
    for ax in axes:
        for handle, label in zip(*ax.get_legend_handles_labels(), strict=True):
            legend.setdefault(label, handle)
    figure.legend(legend.values(), legend.keys(), loc="outside right upper", fontsize="small")
    figure.suptitle(f"cow: what a forked child copies, step by step ({used(chosen)})")
    return figure


def _panel(ax: Axes, python: str, structure: str, records: list[dict[str, Any]]) -> None:
    for frozen in (False, True):
        for role, role_colour in ROLES.items():
            per_step = [
                [
                    r["unshared_mb"]
                    for r in records
                    if (r["frozen"], r["role"], r["step"]) == (frozen, role, step)
                ]
                for step in STEPS
            ]
            if not any(per_step):
                continue
            means = [sum(v) / len(v) if v else float("nan") for v in per_step]
            style = {"color": role_colour, "linestyle": "--" if frozen else "-"}
            ax.plot(
                STEPS, means, marker="o", label=f"{role}{', gc.freeze' if frozen else ''}", **style
            )
            if any(len(v) > 1 for v in per_step):
                lows = [min(v) if v else float("nan") for v in per_step]
                highs = [max(v) if v else float("nan") for v in per_step]
                ax.fill_between(STEPS, lows, highs, color=role_colour, alpha=0.15)
    immortal = any(r.get("immortal") for r in records)
    tag = " (immortal elements)" if immortal else ""
    ax.set_title(f"Python {python}: {structure}{tag}", fontsize="medium")
    ax.grid(alpha=0.3)
