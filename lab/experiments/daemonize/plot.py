"""daemonize's figure: the steps as a process timeline, one panel per implementation.

Rows are the processes a daemonization goes through (the launcher, the first
child that becomes session leader, the daemon); each step is a point on the
row of the process that did it, left to right in the order done. A filled
point is a session leader, a hollow one is not: the daemon must end hollow
(it can never acquire a terminal). A red cross marks the step at which the
launcher had already exited: at "ready" for the lab, at the first fork for
python-daemon. Labels show what changed at that step (pgid, sid, umask, uid).
Each panel comes from the newest run that watched that implementation
(lab.plotting.newest_with): the tour's two runs make one figure, and the
title says which runs.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from lab.errors import LabError
from lab.plotting import newest_with, used
from lab.runs import Run

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

__all__ = ["draw"]

LANES = ("launcher", "child", "daemon")
WATCHED = ("pgid", "sid", "tty", "cwd", "umask", "uid", "gid")


def draw(runs: Sequence[Run]) -> Figure:
    from matplotlib.figure import Figure

    by_impl: dict[str, list[dict[str, Any]]] = {}
    chosen = []
    for impl in sorted({r["impl"] for run in runs for r in run.records}):
        run, records = newest_with(runs, lambda r, i=impl: r["impl"] == i)
        chosen.append(run)
        by_impl[impl] = sorted(records, key=lambda r: r["step_no"])
    if not by_impl:
        raise LabError("the chosen daemonize runs hold no steps")
    figure = Figure(figsize=(12, 3.4 * len(by_impl) + 0.4), layout="constrained")
    axes = figure.subplots(len(by_impl), 1, squeeze=False)[:, 0]
    for ax, (impl, records) in zip(axes, by_impl.items(), strict=True):
        _timeline(ax, impl, records)
    figure.suptitle(f"becoming a daemon, step by step ({used(chosen)})")
    return figure


def _timeline(ax: Axes, impl: str, records: list[dict[str, Any]]) -> None:
    xs = list(range(len(records)))
    ys = [LANES.index(r["process"]) for r in records]
    ax.plot(xs, ys, color="grey", lw=1, zorder=1)
    for x, y, record in zip(xs, ys, records, strict=True):
        leader = record["session_leader"]
        ax.scatter(
            [x], [y], s=90, zorder=2, facecolors="C0" if leader else "white", edgecolors="C0"
        )
        if record["launcher"] != "waiting":
            ax.scatter([x], [-0.45], marker="x", color="red", zorder=2)
    previous: dict[str, Any] = {}
    for x, y, record in zip(xs, ys, records, strict=True):
        changed = [f"{k}={record[k]}" for k in WATCHED if previous and previous[k] != record[k]]
        if record["process"] != previous.get("process") and previous:
            changed.insert(0, f"pid {record['pid']}")
        if changed:
            ax.annotate(
                "\n".join(changed),
                (x, y),
                xytext=(4, 8),
                textcoords="offset points",
                fontsize="x-small",
            )
        previous = record
    ax.set_yticks(range(len(LANES)), LANES)
    ax.set_ylim(-0.7, len(LANES) - 0.3)
    ax.set_xticks(xs, [r["step"] for r in records], rotation=30, ha="right")
    final = records[-1]
    ax.set_title(
        f"{impl}: daemon pid {final['pid']}, ppid {final['ppid']}, sid {final['sid']}, "
        f"tty {final['tty']}, umask {final['umask']}, uid {final['uid']} gid {final['gid']}"
        "  (filled: session leader; x: launcher already exited)",
        fontsize="small",
    )
