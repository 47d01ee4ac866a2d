"""The figure for `spawn`: creation latency per method, fork against parent size, memory.

Three panels, each from the newest run that has its part (lab.plotting.newest_with),
so the tour's three runs make one whole picture; the title says which runs.
Every interpreter of that run side by side, a colour per method (the same in
every figure: a thread is the threads' blue, fork the processes' red):

  left    median creation latency per method, log scale (a thread and a
          spawned interpreter differ by three orders of magnitude); the
          whisker spans the middle half of the creations (p25 to p75)
  middle  latency against the parent's measured RSS, one line per method:
          fork rises, posix_spawn and a thread stay flat; the band reaches
          from the fastest creation to p95
  right   memory per idle worker (log scale): a thread's RSS against its
          stack reservation; a forked and a spawned process's USS, and
          what an idle subinterpreter adds to its process's USS
"""

from __future__ import annotations

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
LINESTYLES = ("-", "--", ":", "-.")
#: A thread is drawn in the threads' colour, multiprocessing's workers in the pool's
#: (the axis names which start method); fork, posix_spawn, subprocess in their own.
KIN = {
    "thread": "threads",
    "mp_fork": "pool",
    "mp_forkserver": "pool",
    "mp_spawn": "pool",
    "interpreter": "interpreters",  # the cpu lesson's strategy of that name
}


def _colour(method: str) -> str:
    return colour(KIN.get(method, method))


def _part(name: str):
    # a skipped record ("no subinterpreters in Python 3.11.7") has nothing to draw
    return lambda r: r.get("part") == name and not r.get("skipped")


def _pythons(records: list[Record]) -> list[str]:
    return sorted({r["python"] for r in records}, key=_version_key)


def _version_key(version: str) -> tuple[int, ...]:
    return tuple(int(p) for p in version.split(".") if p.isdigit())


def _not_measured(ax: Axes, title: str, part: str) -> None:
    ax.set_title(title)
    ax.text(
        0.5,
        0.5,
        f"not in these runs:\ndaemonlab run spawn --part {part}",
        ha="center",
        va="center",
        transform=ax.transAxes,
    )
    ax.set_axis_off()


def _create_panel(ax: Axes, records: list[Record]) -> None:
    if not records:
        return _not_measured(ax, "creation latency per method", "create")
    methods = list(dict.fromkeys(r["method"] for r in records))
    pythons = _pythons(records)
    width = 0.8 / len(pythons)
    for i, python in enumerate(pythons):
        mine = {r["method"]: r for r in records if r["python"] == python}
        xs = [m + (i - (len(pythons) - 1) / 2) * width for m in range(len(methods))]
        shown = [(x, mine[m]) for x, m in zip(xs, methods, strict=True) if m in mine]
        medians = [r["median_ms"] for _, r in shown]
        # p25/p75 were added later: older stored runs give the fastest and p95 instead
        low = [r["median_ms"] - r.get("p25_ms", r["min_ms"]) for _, r in shown]
        high = [r.get("p75_ms", r["p95_ms"]) - r["median_ms"] for _, r in shown]
        ax.bar(
            [x for x, _ in shown],
            medians,
            width * 0.9,
            color=[_colour(r["method"]) for _, r in shown],
            hatch=None if i == 0 else "//",
            edgecolor="white",
            yerr=[low, high],
            capsize=3,
            label=f"Python {python}",
        )
    ax.set_xticks(range(len(methods)), methods, rotation=30, ha="right")
    ax.set_yscale("log")
    plain_log_axis(ax, "y")
    ax.set_ylabel("create + reap one worker, ms (log; whisker: p25-p75)")
    ax.set_title("creation latency per method")
    if len(pythons) > 1:
        ax.legend(fontsize="small", loc="upper left")


def _rss_panel(ax: Axes, records: list[Record]) -> None:
    if not records:
        return _not_measured(ax, "fork cost vs parent size", "rss")
    pythons = _pythons(records)
    lines: dict[tuple[str, str], list[Record]] = {}
    for record in records:
        lines.setdefault((record["python"], record["method"]), []).append(record)
    for (python, method), points in lines.items():
        points.sort(key=lambda r: r["rss_mb"])
        xs = [r["rss_mb"] for r in points]
        style = LINESTYLES[pythons.index(python) % len(LINESTYLES)]  # a dash per Python
        ax.plot(
            xs,
            [r["median_ms"] for r in points],
            marker="o",
            color=_colour(method),
            linestyle=style,
            label=f"{method} ({python})" if len(pythons) > 1 else method,
        )
        ax.fill_between(
            xs,
            [r["min_ms"] for r in points],
            [r["p95_ms"] for r in points],
            color=_colour(method),
            alpha=0.15,
        )
    ax.set_xscale("log")
    plain_log_axis(ax, "x")
    ax.set_xticks(sorted({round(r["rss_mb"]) for r in records}))
    ax.set_yscale("log")
    plain_log_axis(ax, "y")
    ax.set_xlabel("parent RSS, MB (measured; log)")
    ax.set_ylabel("create + reap, ms (log; band: fastest to p95)")
    ax.set_title("fork copies page tables: cost vs parent size")
    ax.legend(fontsize="small", loc="upper left")  # fork rises to the right, the rest stay low


def _memory_panel(ax: Axes, records: list[Record]) -> None:
    if not records:
        return _not_measured(ax, "memory a worker adds", "memory")
    pythons = _pythons(records)
    methods = list(dict.fromkeys(r["method"] for r in records))
    labels = ["thread RSS" if m == "thread" else f"{m} USS" for m in methods]
    width = 0.8 / len(pythons)
    stack = None
    for i, python in enumerate(pythons):
        mine = {r["method"]: r for r in records if r["python"] == python}
        for j, method in enumerate(methods):
            record = mine.get(method)
            if record is None:
                continue
            value = record["rss_kb_each" if method == "thread" else "uss_kb_each"]
            x = j + (i - (len(pythons) - 1) / 2) * width
            ax.bar(
                x,
                value / 1024,
                width * 0.9,
                color=_colour(method),
                hatch=None if i == 0 else "//",
                edgecolor="white",
            )
            stack = stack or record.get("stack_limit_kb")
    if stack:
        ax.axhline(stack / 1024, color="grey", linestyle="--", label="a thread's stack reservation")
        ax.legend(fontsize="small", loc="upper left")  # above the thread's short bar
    ax.set_xticks(range(len(labels)), labels)
    ax.set_yscale("log")
    plain_log_axis(ax, "y")
    ax.set_ylabel("MiB per idle worker (log)")
    ax.set_title("memory a worker adds")


def draw(runs: Sequence[Run]) -> Figure:
    from matplotlib.figure import Figure

    chosen = {part: newest_with(runs, _part(part)) for part in ("create", "rss", "memory")}
    if not any(records for _, records in chosen.values()):
        raise LabError("the chosen spawn runs hold no measurements")
    figure = Figure(figsize=(17, 5.2), layout="constrained")
    left, middle, right = figure.subplots(1, 3)
    _create_panel(left, chosen["create"][1])
    _rss_panel(middle, chosen["rss"][1])
    _memory_panel(right, chosen["memory"][1])
    figure.suptitle(f"spawn: what one worker costs ({used(run for run, _ in chosen.values())})")
    return figure
