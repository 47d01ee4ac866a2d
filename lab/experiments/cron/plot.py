"""The figure for `cron`: the cost of one job against the job rate, cron's line and a daemon's.

Left, CPU per job; middle, memory per job (MB held x seconds held); both
against jobs per hour on log scales from one a day to past the fastest rate
measured. Cron's cost per job is flat (every tick pays the same start-up);
a daemon's falls as 1/rate (what it costs to be up is shared out over more
jobs). The lines are crossing.py's model from the measured constants; the
dots are the measured rates; a dotted line marks each crossing. Right,
where one tick's start-up goes (`-X importtime`). Each panel comes from the
newest run that has its part.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from lab.errors import LabError
from lab.experiments.cron.crossing import costs
from lab.plotting import PALETTE, human, newest_with, plain_log_axis, used
from lab.runs import Run

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

__all__ = ["draw"]

DAEMONS = ("daemon-redis", "daemon-signal")
COLOURS = {"cron": PALETTE[2], "daemon-redis": PALETTE[4], "daemon-signal": PALETTE[0]}
PER_HOUR = 3600.0
#: The two daemons' costs nearly coincide (both idle in a wait): a wide solid line under a
#: dashed one with markers, so neither hides the other.
STYLES = {
    "daemon-redis": {"lw": 4, "alpha": 0.6},
    "daemon-signal": {"lw": 1.5, "ls": "--", "marker": "o", "markevery": 20, "ms": 4},
}


def _rates(low: float, high: float) -> list[float]:
    """Jobs per second, evenly spaced on a log axis from `low` to `high`."""
    import math

    steps = 200
    a, b = math.log10(low), math.log10(high)
    return [10 ** (a + (b - a) * i / steps) for i in range(steps + 1)]


def _panel(ax: Axes, records: list[dict], key: str, cost: str, label: str) -> None:
    ticks = [r for r in records if r.get("part") == "ticks"]
    high = max(r["rate"] for r in ticks) * 10
    xs = _rates(1 / 86400, high)
    drawn_cron = False
    for nth, strategy in enumerate(DAEMONS):
        found = costs(records, strategy)
        if found is None:
            continue
        if not drawn_cron:
            flat = found.cron_cpu_ms if key == "cpu" else found.cron_mb_s
            ax.plot(
                [x * PER_HOUR for x in xs], [flat] * len(xs), color=COLOURS["cron"], label="cron"
            )
            drawn_cron = True
        curve = found.daemon_cpu_ms if key == "cpu" else found.daemon_mb_s
        ax.plot(
            [x * PER_HOUR for x in xs],
            [curve(x) for x in xs],
            color=COLOURS[strategy],
            label=strategy,
            **STYLES[strategy],
        )
        cross = found.cpu_cross_per_s if key == "cpu" else found.memory_cross_per_s
        if cross:
            ax.axvline(cross * PER_HOUR, color=COLOURS[strategy], linestyle=":")
            ax.annotate(
                f"{human(cross * PER_HOUR)}/h",
                (cross * PER_HOUR, flat),
                rotation=90,
                fontsize="small",
                color=COLOURS[strategy],
                va="bottom",
                textcoords="offset points",
                xytext=(3 + 11 * nth, 3),  # beside its line; the daemons may cross as one
            )
    for r in ticks:
        ax.plot(
            r["rate"] * PER_HOUR,
            r[cost],
            marker="o",
            linestyle="none",
            color=COLOURS[r["strategy"]],
        )
    ax.set_xscale("log")
    ax.set_yscale("log")
    plain_log_axis(ax, "x")
    plain_log_axis(ax, "y")
    ax.set_xlabel("jobs per hour (cron's own floor: one a minute per line, 60/h)")
    ax.axvline(60, color="grey", alpha=0.3)
    ax.set_ylabel(label)
    ax.grid(which="both", alpha=0.3)
    ax.legend(fontsize="small")


def draw(runs: Sequence[Run]) -> Figure:
    from matplotlib.figure import Figure

    run, records = newest_with(runs, lambda r: r.get("part") in ("ticks", "idle"))
    if run is None or not any(r.get("part") == "ticks" for r in records):
        raise LabError("these cron runs measured no ticks: run `daemonlab run cron`")
    imports_run, imports = newest_with(runs, lambda r: r.get("part") == "imports")
    figure = Figure(figsize=(17, 5), layout="constrained")
    cpu_ax, mem_ax, imp_ax = figure.subplots(1, 3, width_ratios=(1, 1, 0.8))
    _panel(cpu_ax, records, "cpu", "cpu_ms_per_job", "CPU per job, ms")
    cpu_ax.set_title("CPU per job: a daemon's idle cost shared out")
    _panel(mem_ax, records, "memory", "mb_s_per_job", "memory per job, MB x s")
    mem_ax.set_title("memory per job: what is held, and for how long")
    shown = [r for r in imports if not r["module"].startswith("(all")]
    imp_ax.barh(
        [r["module"] for r in shown][::-1],
        [r["cumulative_ms"] for r in shown][::-1],
        color=COLOURS["cron"],
    )
    total = next((r["cumulative_ms"] for r in imports if r["module"].startswith("(all")), 0.0)
    imp_ax.set_xlabel("ms of one tick's imports (cumulative, -X importtime)")
    imp_ax.set_title(f"where a tick's start-up goes: {total:.0f} ms of imports")
    figure.suptitle(
        f"cron: a fresh interpreter a tick against a daemon already up ({used([run, imports_run])})"
    )
    return figure
