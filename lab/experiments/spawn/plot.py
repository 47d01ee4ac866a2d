"""The figure for `spawn`: creation latency per method, fork against parent size, memory.

Up to three panels (a part not in the runs is left out), every interpreter side by side:
  left    median creation latency per method (log scale: a thread and a
          spawned interpreter differ by three orders of magnitude), a tick at p95
  middle  latency against the parent's measured RSS, one line per method: fork
          rises, posix_spawn and a thread stay flat
  right   memory per idle worker (log scale): a thread's RSS against its
          stack reservation; a forked and a spawned process's USS
When several runs are given, the newest record for each point wins.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from lab.runs import Run

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

__all__ = ["draw"]

LINESTYLES = ("-", "--", ":", "-.")


def _newest(runs: Sequence[Run], part: str, key: tuple[str, ...]) -> dict[tuple, dict[str, Any]]:
    """Records of one part by `key`, the newest run's first (runs come newest first)."""
    chosen: dict[tuple, dict[str, Any]] = {}
    for run in runs:
        for record in run.records:
            if record.get("part") == part:
                chosen.setdefault(tuple(record.get(k) for k in key), record)
    return chosen


def _pythons(records: dict[tuple, dict[str, Any]]) -> list[str]:
    return sorted({r["python"] for r in records.values()}, key=_version_key)


def _version_key(version: str) -> tuple[int, ...]:
    return tuple(int(p) for p in version.split(".") if p.isdigit())


def _bars(ax: Axes, groups: list[str], series: dict[str, list[float | None]]) -> None:
    """Grouped bars: one group per label in `groups`, one bar per series."""
    width = 0.8 / max(1, len(series))
    for i, (label, values) in enumerate(series.items()):
        xs = [g + (i - (len(series) - 1) / 2) * width for g in range(len(groups))]
        heights = [v if v is not None else 0 for v in values]
        ax.bar(xs, heights, width, label=label)
    ax.set_xticks(range(len(groups)), groups, rotation=30, ha="right")


def _not_measured(ax: Axes, title: str) -> None:
    ax.set_title(title)
    ax.text(0.5, 0.5, "not measured in these runs", ha="center", va="center")
    ax.set_axis_off()


def _create_panel(ax: Axes, runs: Sequence[Run]) -> None:
    records = _newest(runs, "create", ("python", "method"))
    if not records:
        return _not_measured(ax, "creation latency per method")
    methods = list(dict.fromkeys(method for _, method in records))
    medians = {
        f"median, {python}": [records.get((python, m), {}).get("median_ms") for m in methods]
        for python in _pythons(records)
    }
    _bars(ax, methods, medians)
    worst_p95 = [
        max(r["p95_ms"] for (_, m), r in records.items() if m == method) for method in methods
    ]
    ax.scatter(range(len(methods)), worst_p95, marker="_", s=300, color="black", label="p95")
    ax.set_yscale("log")
    ax.set_ylabel("create + reap one worker (ms, log)")
    ax.set_title("creation latency per method")
    ax.legend(fontsize="small")


def _rss_panel(ax: Axes, runs: Sequence[Run]) -> None:
    records = _newest(runs, "rss", ("python", "method", "rss_target_mb"))
    if not records:
        return _not_measured(ax, "fork cost vs parent size")
    lines: dict[tuple[str, str], list[tuple[float, float]]] = {}
    for (python, method, _), record in records.items():
        lines.setdefault((python, method), []).append((record["rss_mb"], record["median_ms"]))
    pythons = _pythons(records)
    methods = list(dict.fromkeys(method for _, method in lines))
    for (python, method), points in sorted(lines.items()):
        points.sort()
        ax.plot(
            *zip(*points, strict=True),
            marker="o",
            color=f"C{methods.index(method)}",  # a colour per method,
            linestyle=LINESTYLES[pythons.index(python) % len(LINESTYLES)],  # a dash per Python
            label=f"{method} ({python})" if len(pythons) > 1 else method,
        )
    ax.set_yscale("log")
    ax.set_xlabel("parent RSS (MB, measured)")
    ax.set_ylabel("create + reap (ms, log)")
    ax.set_title("fork copies page tables: cost vs parent size")
    ax.legend(fontsize="small")


def _memory_panel(ax: Axes, runs: Sequence[Run]) -> None:
    records = _newest(runs, "memory", ("python", "method"))
    if not records:
        return _not_measured(ax, "memory a worker adds")
    pythons = _pythons(records)
    labels = []
    series: dict[str, list[float | None]] = {p: [] for p in pythons}
    stack = None
    for method in dict.fromkeys(method for _, method in records):
        labels.append("thread RSS" if method == "thread" else f"{method} USS")
        for python in pythons:
            record = records.get((python, method), {})
            key = "rss_kb_each" if method == "thread" else "uss_kb_each"
            value = record.get(key)
            series[python].append(value / 1024 if value is not None else None)
            stack = stack or record.get("stack_limit_kb")
    _bars(ax, labels, series)
    if stack:
        ax.axhline(stack / 1024, color="grey", linestyle="--", label="a thread's stack reservation")
    ax.set_yscale("log")
    ax.set_ylabel("MiB per idle worker (log)")
    ax.set_title("memory a worker adds")
    ax.legend(fontsize="small", loc="center left")  # the stack line runs along the top


#: The panels in order, each drawn only when its part is in the runs.
PANELS = (("create", _create_panel), ("rss", _rss_panel), ("memory", _memory_panel))


def draw(runs: list[Run]) -> Figure:
    from matplotlib.figure import Figure

    measured = {r.get("part") for run in runs for r in run.records}
    panels = [panel for part, panel in PANELS if part in measured] or [_create_panel]
    figure = Figure(figsize=(5.5 * len(panels), 5), layout="constrained")
    axes = figure.subplots(1, len(panels), squeeze=False)[0]
    for ax, panel in zip(axes, panels, strict=True):
        panel(ax, runs)
    figure.suptitle("spawn: what one worker costs")
    return figure
