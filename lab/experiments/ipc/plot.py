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
    every = sorted({_name(r) for r in timed})  # each size's panel lists them all
    looks = _Looks(runs)
    figure = Figure(figsize=(4.2 * len(sizes), 11), layout="constrained")
    grid = figure.add_gridspec(2, len(sizes), height_ratios=(3, 2))
    chosen: list[Run | None] = []
    for column, size in enumerate(sizes):
        taken, records = newest_per(
            runs, _name, lambda r, s=size: r.get("size") == s and ("rtt_median_us" in r
                                                                  or "skipped" in r)
        )  # fmt: skip
        chosen += taken
        _round_trips(figure.add_subplot(grid[0, column]), records, size, every, looks)
    taken, streamed = newest_per(runs, lambda r: (_name(r), r["size"]), lambda r: "mb_per_s" in r)
    chosen += taken
    _throughput(figure.add_subplot(grid[1, :]), streamed, looks)
    figure.suptitle(f"ipc: processes talking, against the kernel's floor ({used(chosen)})")
    return figure


class _Looks:
    """A transport's colour in every figure (lab.plotting.colour), and a hatch and a marker
    per pattern of it, so that zmq's four patterns, unix stream and dgram, and the
    three C floors (all grey) read apart."""

    HATCHES = ("", "//", "..", "xx", "\\\\")
    MARKERS = ("o", "s", "^", "D", "v")

    def __init__(self, runs: Sequence[Run]) -> None:
        names = sorted({_name(r) for run in runs for r in run.records if "transport" in r})
        self.nth: dict[str, int] = {}
        for name in names:
            family = [n for n in names if _group(n) == _group(name)]
            self.nth[name] = family.index(name)

    def colour(self, name: str) -> str:
        return FLOOR_COLOUR if FLOOR in name else colour(_group(name))

    def hatch(self, name: str) -> str:
        return self.HATCHES[self.nth.get(name, 0) % len(self.HATCHES)]

    def marker(self, name: str) -> str:
        return self.MARKERS[self.nth.get(name, 0) % len(self.MARKERS)]


def _group(name: str) -> str:
    """What shares a colour: a transport's patterns, or the C floors."""
    return FLOOR if FLOOR in name else name.split(" ")[0]


def _round_trips(ax, records: list[dict], size: int, every: list[str], looks: _Looks) -> None:
    """Bars for the links timed at this size, fastest on top; a link timed at another
    size only is a row too, saying why it has no bar here."""
    timed = sorted((r for r in records if "rtt_median_us" in r), key=lambda r: r["rtt_median_us"])
    why = {_name(r): r["skipped"] for r in records if "rtt_median_us" not in r}
    names = [_name(r) for r in timed]
    absent = [n for n in every if n not in names]
    medians = [r["rtt_median_us"] for r in timed]
    spread = [[0] * len(timed), [r["rtt_p99_us"] - r["rtt_median_us"] for r in timed]]
    ax.barh(
        names, medians, xerr=spread, color=[looks.colour(n) for n in names],
        hatch=[looks.hatch(n) for n in names], edgecolor="white",
        error_kw={"lw": 0.8, "alpha": 0.6},
    )  # fmt: skip
    for name in absent:
        ax.barh(name, 0)  # a row, no bar
        ax.annotate(
            f"not timed at this size: {why.get(name, 'not in these runs')}", (0.02, name),
            xycoords=("axes fraction", "data"), va="center", fontsize="x-small", color="#a33",
        )  # fmt: skip
    ax.set_xscale("log")
    plain_log_axis(ax, "x")
    ax.invert_yaxis()  # fastest on top
    ax.tick_params(axis="y", labelsize="small")
    ax.set_xlabel("round trip, µs (bar: median, whisker: p99)")
    ax.set_title(f"{_size(size)} messages" + (f" ({len(absent)} not timed)" if absent else ""))
    ax.grid(axis="x", which="both", alpha=0.3)


def _throughput(ax, records: list[dict], looks: _Looks) -> None:
    lines: dict[str, list[tuple[int, float]]] = {}
    for record in records:
        lines.setdefault(_name(record), []).append((record["size"], record["mb_per_s"]))
    for name, points in sorted(lines.items()):
        points.sort()
        ax.plot(
            [p[0] for p in points],
            [p[1] for p in points],
            marker=looks.marker(name),
            ls="--" if FLOOR in name else "-",
            color=looks.colour(name),
            label=name,
        )
    ax.set(xscale="log", yscale="log", xlabel="message size", ylabel="stream, MB/s")
    from matplotlib.ticker import FuncFormatter

    plain_log_axis(ax, "x", at=sorted({r["size"] for r in records}))
    ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _pos: _size(int(v))))  # 64 KiB
    plain_log_axis(ax, "y")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize="x-small", ncols=4, loc="upper left")
    ax.set_title("one-way stream: MB/s against message size (floors dashed)")
