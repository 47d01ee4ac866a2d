"""The sleep experiment's figure: wall time against clients, per strategy.

Left, wall time (log-log) with two guides: the ideal (every client's sleep
overlaps, wall = s) and one-after-another (wall = N x s), which sequential
follows. Right, efficiency = s / wall: how close each strategy comes to the
ideal as clients grow. Several runs are pooled: each point is the median of
every measurement at that strategy and client count; one row per sleep length.
"""

from __future__ import annotations

import statistics
from collections import defaultdict
from typing import TYPE_CHECKING

from lab.runs import Run

if TYPE_CHECKING:
    from matplotlib.figure import Figure

__all__ = ["draw", "label"]


def label(record: dict) -> str:
    return (
        f"{record['strategy']} [{record['variant']}]" if record["variant"] else record["strategy"]
    )


def draw(runs: list[Run]) -> Figure:
    from matplotlib.figure import Figure

    # seconds -> label -> clients -> [wall_s, ...]
    walls: dict[float, dict[str, dict[int, list[float]]]] = defaultdict(
        lambda: defaultdict(lambda: defaultdict(list))
    )
    for run in runs:
        for record in run.records:
            walls[record["seconds"]][label(record)][record["clients"]].append(record["wall_s"])

    rows = sorted(walls)
    fig = Figure(figsize=(11, 4.2 * len(rows)), layout="constrained")
    axes = fig.subplots(len(rows), 2, squeeze=False)
    for (wall_ax, eff_ax), seconds in zip(axes, rows, strict=True):
        every_n: set[int] = set()
        for name, by_clients in sorted(walls[seconds].items()):
            clients = sorted(by_clients)
            every_n.update(clients)
            medians = [statistics.median(by_clients[n]) for n in clients]
            wall_ax.plot(clients, medians, marker="o", label=name)
            eff_ax.plot(clients, [seconds / m for m in medians], marker="o", label=name)
        span = [min(every_n), max(every_n)]
        wall_ax.plot(span, [seconds, seconds], "k--", lw=1, label=f"ideal: {seconds:g} s")
        wall_ax.plot(span, [n * seconds for n in span], "k:", lw=1, label="one after another")
        wall_ax.set(
            xscale="log",
            yscale="log",
            xlabel="clients",
            ylabel="wall time of the query phase (s)",
            title=f"SELECT SLEEP({seconds:g}): wall time",
        )
        eff_ax.axhline(1.0, color="k", ls="--", lw=1)
        eff_ax.set(
            xscale="log",
            ylim=(0, 1.05),
            xlabel="clients",
            ylabel="efficiency = seconds / wall",
            title="how much of the waiting overlapped",
        )
        for ax in (wall_ax, eff_ax):
            ax.grid(True, which="both", alpha=0.3)
        wall_ax.legend(fontsize="small")
    ids = ", ".join(str(r.run_id) for r in runs)
    fig.suptitle(f"sleep: run(s) {ids} on {runs[0].env.get('server_version', '?')}")
    return fig
