"""cpu's figure: speedup against workers per strategy, and echo latency beside a spinner.

One row per interpreter (`--python` runs sit side by side): on the left the
speedup of each strategy against the sequential run of the same work, with the
ideal line (speedup = workers) and the cores the process could use, past which
no strategy can gain; on the right the echo round trip alone, beside a
spinning thread, and beside it with a short switch interval (log scale: the
convoy costs orders of magnitude). Repeats are summarised by their median.
"""

from __future__ import annotations

import statistics
from collections import defaultdict
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from lab.errors import LabError
from lab.runs import Run

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

__all__ = ["draw"]

Record = dict[str, Any]


def draw(runs: Sequence[Run]) -> Figure:
    from matplotlib.figure import Figure

    groups = _by_interpreter([r for run in runs for r in run.records if not r.get("skipped")])
    if not groups:
        raise LabError("the chosen cpu runs hold no measurements")
    figure = Figure(figsize=(12, 4.2 * len(groups)), layout="constrained")
    axes = figure.subplots(len(groups), 2, squeeze=False)
    for (left, right), (label, records) in zip(axes, groups.items(), strict=True):
        _speedup(left, label, [r for r in records if r["part"] == "scaling"])
        _convoy(right, label, [r for r in records if r["part"] == "convoy"])
    return figure


def _by_interpreter(records: list[Record]) -> dict[str, list[Record]]:
    groups: dict[str, list[Record]] = defaultdict(list)
    for record in records:
        gil = "" if record.get("gil_enabled", True) else ", no GIL"
        groups[f"Python {record.get('python', '?')}{gil}"].append(record)
    return dict(sorted(groups.items()))


def _strategy(record: Record) -> str:
    method = record.get("start_method")
    return f"{record['strategy']} ({method})" if method else record["strategy"]


def _speedup(ax: Axes, label: str, records: list[Record]) -> None:
    ax.set_title(f"{label}: CPU-bound countdown split across workers")
    if not records:
        ax.text(0.5, 0.5, "no scaling part in these runs", ha="center", transform=ax.transAxes)
        return
    series: dict[str, dict[int, list[float]]] = defaultdict(lambda: defaultdict(list))
    for record in records:
        series[_strategy(record)][record["workers"]].append(record["speedup"])
    workers = sorted({r["workers"] for r in records})
    cores = max(r.get("usable_cores", 1) for r in records)
    ax.plot(workers, workers, ls=":", color="grey", label="ideal (speedup = workers)")
    ax.axhline(cores, ls="--", color="black", lw=1, label=f"usable cores = {cores}")
    for name, by_workers in sorted(series.items()):
        xs = sorted(by_workers)
        ax.plot(xs, [statistics.median(by_workers[x]) for x in xs], marker="o", label=name)
    ax.set_xscale("log", base=2)
    ax.set_xticks(workers, [str(w) for w in workers])
    ax.set_ylim(0, max(cores, 2) + 1)
    ax.set_xlabel("workers")
    ax.set_ylabel("speedup against sequential (median)")
    ax.legend(fontsize="small")


def _convoy(ax: Axes, label: str, records: list[Record]) -> None:
    ax.set_title(f"{label}: echo round trip beside a CPU-bound thread")
    if not records:
        ax.text(0.5, 0.5, "no convoy part in these runs", ha="center", transform=ax.transAxes)
        return
    cases: dict[str, list[Record]] = defaultdict(list)
    for record in records:
        name = "no spinner" if record["case"] == "alone" else "spinner"
        cases[f"{name}\nswitch {record['switch_interval_ms']:g} ms"].append(record)
    names = list(cases)  # in the order measured: alone, default interval, short interval
    medians = [statistics.median(r["median_ms"] for r in cases[n]) for n in names]
    p99s = [statistics.median(r["p99_ms"] for r in cases[n]) for n in names]
    xs = range(len(names))
    width = 0.4
    ax.bar([x - width / 2 for x in xs], medians, width, label="median")
    ax.bar([x + width / 2 for x in xs], p99s, width, label="p99")
    for x, value in zip(xs, medians, strict=True):
        ax.annotate(f"{value:.3g} ms", (x - width / 2, value), ha="center", va="bottom")
    ax.set_xticks(list(xs), names)
    ax.set_yscale("log")
    ax.set_ylabel("round trip, ms (log)")
    ax.legend(fontsize="small")
