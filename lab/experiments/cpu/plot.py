"""cpu's figure: speedup against workers per strategy, and echo latency beside a spinner.

Each panel comes from the newest run that has its part (lab.plotting.newest_with),
so the tour's two runs (scaling, then convoy) make one whole picture; the
title says which runs. One row per interpreter of that run (`--python` runs
sit side by side):

- left: the speedup of each strategy against the sequential run of the same
  work, a colour per strategy (the same in every figure), a marker per pool
  start method, an error bar from the slowest to the fastest repeat (the
  spread noise gives it), the ideal line (speedup = workers) and the cores
  the process could use, past which no strategy can gain. The strategies
  are nudged apart along x: at one worker they all sit at 1 and would hide
  each other. An interpreter without subinterpreters says so in the panel.
- right: the echo round trip alone, beside a spinning thread, beside it
  with a short switch interval, and beside a spinner in a subinterpreter
  of its own: the median as a bar, the p99 as the top of its whisker, the
  slowest as a dot (log scale: the convoy costs orders of magnitude).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from lab.errors import LabError
from lab.plotting import colour, newest_with, plain_log_axis, used
from lab.runs import Run

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

__all__ = ["draw"]

Record = dict[str, Any]

#: A marker per pool start method (the pool's colour is one), none for the others.
MARKERS = {None: "o", "fork": "s", "spawn": "^", "forkserver": "D"}
#: What each convoy case is, under its bar.
CASES = {
    "alone": "alone",
    "spinner": "beside a spinner",
    "interpreter": "spinner in a\nsubinterpreter",
}
#: How far apart (in log2 workers) the strategies are drawn at the same worker count.
NUDGE = 0.04


def _part(name: str):
    return lambda r: r.get("part") == name and not r.get("skipped")


def draw(runs: Sequence[Run]) -> Figure:
    from matplotlib.figure import Figure

    scaling_run, scaling = newest_with(runs, _part("scaling"))
    skipped = [r for r in (scaling_run.records if scaling_run else []) if r.get("skipped")]
    convoy_run, convoy = newest_with(runs, _part("convoy"))
    if not (scaling or convoy):
        raise LabError("the chosen cpu runs hold no measurements")
    labels = sorted({_interpreter(r) for r in scaling + convoy + skipped})
    figure = Figure(figsize=(13, 4.6 * len(labels)), layout="constrained")
    axes = figure.subplots(len(labels), 2, squeeze=False)
    for (left, right), label in zip(axes, labels, strict=True):
        _speedup(left, label, [r for r in scaling if _interpreter(r) == label])
        _say_skipped(left, {r["skipped"] for r in skipped if _interpreter(r) == label})
        _convoy(right, label, [r for r in convoy if _interpreter(r) == label])
    figure.suptitle(
        f"cpu: forking vs threading on CPU-bound work ({used([scaling_run, convoy_run])})"
    )
    return figure


def _interpreter(record: Record) -> str:
    gil = "" if record.get("gil_enabled", True) else ", no GIL"
    return f"Python {record.get('python', '?')}{gil}"


def _strategy(record: Record) -> str:
    method = record.get("start_method")
    return f"{record['strategy']} ({method})" if method else record["strategy"]


def _speedup(ax: Axes, label: str, records: list[Record]) -> None:
    ax.set_title(f"{label}: a countdown split across workers", fontsize="medium")
    if not records:
        ax.text(
            0.5,
            0.5,
            "no scaling part in these runs: daemonlab run cpu --part scaling",
            ha="center",
            transform=ax.transAxes,
        )
        return
    series: dict[str, list[Record]] = defaultdict(list)
    for record in records:
        series[_strategy(record)].append(record)
    workers = sorted({r["workers"] for r in records})
    cores = max(r.get("usable_cores", 1) for r in records)
    ax.plot(workers, workers, ls=":", color="grey", label="ideal (speedup = workers)")
    ax.axhline(cores, ls="--", color="black", lw=1, label=f"usable cores = {cores}")
    for i, (name, points) in enumerate(series.items()):
        points.sort(key=lambda r: r["workers"])
        nudge = 2 ** (NUDGE * (i - (len(series) - 1) / 2))
        xs = [r["workers"] * nudge for r in points]
        ys = [r["speedup"] for r in points]
        low, high = zip(*(_spread(r) for r in points), strict=True)
        ax.errorbar(
            xs,
            ys,
            yerr=[
                # max(0, ...): the stored speedup is rounded, its spread is not
                [max(0.0, y - lo) for y, lo in zip(ys, low, strict=True)],
                [max(0.0, hi - y) for y, hi in zip(ys, high, strict=True)],
            ],
            marker=MARKERS.get(points[0].get("start_method"), "o"),
            color=colour(points[0]["strategy"]),
            capsize=3,
            label=name,
        )
    ax.set_xscale("log", base=2)
    plain_log_axis(ax, "x")
    ax.set_xticks(workers)
    ax.set_ylim(0, max(cores, 2) + 1.5)
    ax.set_xlabel("workers")
    ax.set_ylabel("speedup against sequential (bars: slowest to fastest repeat)")
    ax.legend(fontsize="small", loc="upper left", ncols=2)  # the lines rise to the right


def _say_skipped(ax: Axes, reasons: set[str]) -> None:
    """What could not run under this interpreter ("no subinterpreters in Python 3.11.7")."""
    if reasons:
        ax.text(0.98, 0.02, "; ".join(sorted(reasons)), ha="right", fontsize="small",
                transform=ax.transAxes, color="dimgrey")  # fmt: skip


def _spread(record: Record) -> tuple[float, float]:
    """The speedup the slowest and the fastest repeat would give (the median's baseline)."""
    baseline = record["speedup"] * record["wall_s"]
    slowest = record.get("wall_s_max") or record["wall_s"]  # runs stored before it was kept
    fastest = record.get("wall_s_min") or record["wall_s"]
    return baseline / slowest, baseline / fastest


def _convoy(ax: Axes, label: str, records: list[Record]) -> None:
    ax.set_title(f"{label}: an echo thread beside a CPU-bound one", fontsize="medium")
    if not records:
        ax.text(
            0.5,
            0.5,
            "no convoy part in these runs: daemonlab run cpu --part convoy",
            ha="center",
            transform=ax.transAxes,
        )
        return
    names = [
        f"{CASES.get(r['case'], r['case'])}\nswitch {r['switch_interval_ms']:g} ms" for r in records
    ]
    xs = range(len(records))
    medians = [r["median_ms"] for r in records]
    p99s = [r["p99_ms"] for r in records]
    ax.bar(xs, medians, 0.6, color=colour("threads"), alpha=0.6, label="median")
    ax.errorbar(
        xs,
        medians,
        yerr=[[0] * len(records), [p - m for p, m in zip(p99s, medians, strict=True)]],
        fmt="none",
        ecolor="black",
        capsize=4,
        label="up to p99",
    )
    ax.plot(xs, [r["max_ms"] for r in records], "o", color="black", markersize=4, label="slowest")
    for x, value in zip(xs, medians, strict=True):
        ax.annotate(
            f"{value:.3g} ms",
            (x, value),
            xytext=(0, -12),
            textcoords="offset points",
            ha="center",
            fontsize="small",
        )
    ax.set_xticks(list(xs), names)
    ax.set_yscale("log")
    plain_log_axis(ax, "y")
    ax.set_ylabel("round trip, ms (log)")
    ax.legend(fontsize="small", loc="upper left")
