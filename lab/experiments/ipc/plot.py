"""The ipc figure: round trip per link at each size against the C floor, and MB/s against size.

Top, one panel per message size: each link's median round trip as a bar (log
scale: 2 µs to 30 ms on one axis), a whisker to its p99, the C floor's bars
in grey beside the links they hold up. Bottom: the stream's MB/s against
message size, one line per link (log-log), the floors dashed. Each link in a
panel comes from the newest run that measured it (a tour's partial runs piece
the picture together); the title says which runs.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from lab.errors import LabError
from lab.plotting import colour, newest_per, plain_log_axis, used
from lab.runs import Run

if TYPE_CHECKING:
    from matplotlib.figure import Figure

__all__ = ["draw"]

FLOOR = "C floor"
FLOOR_COLOUR = "#7f7f7f"


def _name(record: dict) -> str:
    return f"{record['transport']} {record['pattern']}"


def _size(size: int) -> str:
    for unit, scale in (("MiB", 1 << 20), ("KiB", 1 << 10)):
        if size >= scale and size % scale == 0:
            return f"{size // scale} {unit}"
    return f"{size} B"


def draw(runs: Sequence[Run]) -> Figure:
    from matplotlib.figure import Figure

    timed = [r for run in runs for r in run.records if "rtt_median_us" in r]
    if not timed:
        raise LabError("these ipc runs timed no round trip: run `daemonlab run ipc` first")
    sizes = sorted({r["size"] for r in timed})
    figure = Figure(figsize=(4.2 * len(sizes), 11), layout="constrained")
    grid = figure.add_gridspec(2, len(sizes), height_ratios=(3, 2))
    chosen: list[Run | None] = []
    for column, size in enumerate(sizes):
        taken, records = newest_per(
            runs, _name, lambda r, s=size: r.get("size") == s and "rtt_median_us" in r
        )
        chosen += taken
        _round_trips(figure.add_subplot(grid[0, column]), records, size)
    taken, streamed = newest_per(runs, lambda r: (_name(r), r["size"]), lambda r: "mb_per_s" in r)
    chosen += taken
    _throughput(figure.add_subplot(grid[1, :]), streamed)
    figure.suptitle(f"ipc: processes talking, against the kernel's floor ({used(chosen)})")
    return figure


def _round_trips(ax, records: list[dict], size: int) -> None:
    records = sorted(records, key=lambda r: r["rtt_median_us"])
    names = [_name(r) for r in records]
    medians = [r["rtt_median_us"] for r in records]
    spread = [[0] * len(records), [r["rtt_p99_us"] - r["rtt_median_us"] for r in records]]
    colours = [FLOOR_COLOUR if r["pattern"] == FLOOR else colour(r["transport"]) for r in records]
    ax.barh(names, medians, xerr=spread, color=colours, error_kw={"lw": 0.8, "alpha": 0.6})
    ax.set_xscale("log")
    plain_log_axis(ax, "x")
    ax.invert_yaxis()  # fastest on top
    ax.tick_params(axis="y", labelsize="small")
    ax.set_xlabel("round trip, µs (bar: median, whisker: p99)")
    ax.set_title(f"{_size(size)} messages")
    ax.grid(axis="x", which="both", alpha=0.3)


def _throughput(ax, records: list[dict]) -> None:
    lines: dict[str, list[tuple[int, float]]] = {}
    for record in records:
        lines.setdefault(_name(record), []).append((record["size"], record["mb_per_s"]))
    for name, points in sorted(lines.items()):
        points.sort()
        floor = FLOOR in name
        ax.plot(
            [p[0] for p in points],
            [p[1] for p in points],
            marker="o",
            ls="--" if floor else "-",
            color=FLOOR_COLOUR if floor else colour(name.split(" ")[0]),
            label=name,
        )
    ax.set(xscale="log", yscale="log", xlabel="message size, bytes", ylabel="stream, MB/s")
    plain_log_axis(ax, "x")
    plain_log_axis(ax, "y")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize="x-small", ncols=4, loc="upper left")
    ax.set_title("one-way stream: MB/s against message size (floors dashed)")
