"""The figure for `managers`: restart after kill -9, the crash loops, what a stop reaches.

Three panels, each from the newest run that has its event (lab.plotting.newest_with):
- restart after kill -9 per manager: the median as a bar, every kill as a
  dot, on a log scale (the harness is back in milliseconds, monit in seconds);
- the crash loop as a timeline: one dot per start of the crashing daemon,
  seconds after the first, and the state the manager ended in;
- the stop: per manager, whether the daemon's child and its grandchild were
  still alive afterwards.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from lab.errors import LabError
from lab.plotting import colour, newest_with, plain_log_axis, used
from lab.runs import Run

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

__all__ = ["draw"]


def _measured(event: str):
    return lambda r: r.get("event") == event and r.get("final_state") != "missing"


def draw(runs: Sequence[Run]) -> Figure:
    from matplotlib.figure import Figure

    kill_run, kills = newest_with(runs, _measured("kill-9"))
    crash_run, crashes = newest_with(runs, _measured("crash-loop"))
    stop_run, stops = newest_with(runs, _measured("stop"))
    if not (kills or crashes or stops):
        raise LabError("these managers runs have no measured event: run one with a manager")
    figure = Figure(figsize=(14, 4.6), layout="constrained")
    left, middle, right = figure.subplots(1, 3)
    _restarts(left, kills)
    _crash_loops(middle, crashes)
    _stops(right, stops)
    figure.suptitle(f"managing a daemon ({used([kill_run, crash_run, stop_run])})")
    return figure


def _restarts(ax: Axes, records: list[dict]) -> None:
    ax.set_title("kill -9 to the new daemon's READY")
    names = [r["manager"] for r in records]
    for i, record in enumerate(records):
        if record["latency_ms"] is None:
            # x in data, y in axes fraction: the log scale has no place for "none"
            ax.annotate("no restart", (i, 0.05), xycoords=ax.get_xaxis_transform(),
                        ha="center", rotation=90, va="bottom")  # fmt: skip
            continue
        ax.bar(i, record["latency_ms"], color=colour(record["manager"]), alpha=0.6)
        samples = record["latencies_ms"]
        ax.plot([i] * len(samples), samples, "o", color="black", markersize=3)
    ax.set_xticks(range(len(names)), names, rotation=20)
    ax.set_yscale("log")
    plain_log_axis(ax, "y")
    ax.set_ylabel("ms (bar: median; dots: each kill)")
    ax.grid(axis="y", which="both", alpha=0.3)


def _crash_loops(ax: Axes, records: list[dict]) -> None:
    ax.set_title("a daemon that dies at once: its starts")
    for i, record in enumerate(records):
        times = [0.0]
        for gap in record["gaps_ms"]:
            times.append(times[-1] + gap / 1000)
        ax.plot(times, [i] * len(times), "o-", color=colour(record["manager"]))
        ax.annotate(record["final_state"], (times[-1], i), xytext=(6, 4),
                    textcoords="offset points", fontsize="small")  # fmt: skip
    ax.set_yticks(range(len(records)), [r["manager"] for r in records])
    ax.set_xlabel("seconds after the first start")
    ax.margins(x=0.35, y=0.15)
    ax.grid(axis="x", alpha=0.3)


#: A stop's box: this much of a manager's column (1 data unit) and of a row.
BOX = 0.86


def _stops(ax: Axes, records: list[dict]) -> None:
    from matplotlib.patches import Rectangle

    ax.set_title("after a stop: still alive?")
    rows = [("child", "children_stopped", False), ("grandchild", "grandchild_survived", True)]
    for x, record in enumerate(records):
        for y, (_, key, alive_when) in enumerate(rows):
            alive = record[key] is alive_when
            # A box in data units, as wide as a manager's column: a marker keeps its size in
            # points whatever the column's width, and "stopped" ran over it.
            ax.add_patch(Rectangle((x - BOX / 2, y - BOX / 2.5), BOX, BOX / 1.25,
                                   color="#d62728" if alive else "#2ca02c"))  # fmt: skip
            ax.annotate("alive" if alive else "stopped", (x, y), ha="center", va="center",
                        fontsize="small", color="white")  # fmt: skip
        ax.annotate(record["signal"], (x, -0.6), ha="center", fontsize="small")
    ax.set_xticks(range(len(records)), [r["manager"] for r in records], rotation=20)
    ax.set_yticks(range(len(rows)), [name for name, _, _ in rows])
    ax.set_ylim(-0.9, len(rows) - 0.4)
    ax.set_xlim(-0.6, len(records) - 0.4)
