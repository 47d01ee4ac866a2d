"""The sleep experiment's figure: the whole lesson, each panel from the newest run that has it.

    wall time      the slide and the sweep: every concurrent strategy stays on
                   the ideal line (one sleep), sequential climbs N x s; the
                   strategies are drawn side by side (a small offset, a marker
                   each), not on top of each other at 1 s
    efficiency     seconds / wall against clients up to where each strategy
                   broke (--scale), the break marked with its cause; dashed
                   lines are a pool-of-threads server where both were measured
    to make one    what a client costs to make: connect_s per client (ms)
    memory         what a client holds at the plateau (MiB per thread,
                   process, task)
    the server     its threads against its connections: one each, or a pool
    x C floor      each Python strategy's efficiency over the C floor's at the
                   same clients in the same run (floor_ratio): what Python costs

The C floor (c-floor) is drawn dashed and grey in every panel, as ipc draws
its floors. Where runs repeat, a point is the median and the band runs from min to max.
"""

from __future__ import annotations

import statistics
from collections import defaultdict
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from lab.plotting import colour, newest_with, plain_log_axis, used
from lab.runs import Record, Run

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

__all__ = ["draw", "label"]

#: One marker per variant, so that strategies sharing a colour still read apart.
MARKERS = ("o", "s", "^", "D", "v", "P", "X", "*")
#: Side by side at the same client count: each label's points shifted by this factor.
OFFSET = 0.035
POOL_HANDLING = "pool-of-threads"
FLOOR = "c-floor"
FLOOR_COLOUR = "#7f7f7f"


def label(record: Record) -> str:
    strategy, variant = record["strategy"], record["variant"]
    return f"{strategy} [{variant}]" if variant else strategy


def _measured(record: Record) -> bool:
    return "wall_s" in record


def _swept(run_params: dict[str, Any]) -> bool:
    return bool(run_params.get("scale"))


def draw(runs: list[Run]) -> Figure:
    from matplotlib.figure import Figure

    sweep_run, sweep = newest_with([r for r in runs if not _swept(r.params)] or runs, _measured)
    scale_run, scaled = newest_with([r for r in runs if _swept(r.params)], lambda r: True)
    far_run, far = (scale_run, scaled) if scaled else (sweep_run, sweep)
    cost_run, costs = newest_with(runs, lambda r: r.get("mib_per_client") is not None)
    server_run, served = _newest_server_picture(runs)

    fig = Figure(figsize=(18, 8.5), layout="constrained")
    (wall_ax, eff_ax, make_ax), (mem_ax, server_ax, ratio_ax) = fig.subplots(2, 3)
    styles = _Styles()
    _wall(wall_ax, sweep, styles)
    _efficiency(eff_ax, far, styles)
    _per_client(
        make_ax, [r for r in far if _measured(r)], lambda r: 1000 * r["connect_s"] / r["clients"],
        "ms to make one client (connect_s / clients)", "what a client costs to make", styles,
    )  # fmt: skip
    _per_client(
        mem_ax, costs, lambda r: r["mib_per_client"],
        "MiB per client at the plateau (PSS)", "what a client holds while it waits", styles,
    )  # fmt: skip
    _server(server_ax, served)
    _ratios(ratio_ax, [r for r in far if r.get("floor_ratio") is not None], styles)
    handles = {
        h.get_label(): h for ax in (wall_ax, eff_ax, make_ax, mem_ax, ratio_ax) for h in ax.lines
    }
    shown = {k: v for k, v in handles.items() if not k.startswith("_")}
    if any(r.get("thread_handling") == POOL_HANDLING for r in far):
        from matplotlib.lines import Line2D

        for handling, ls in (("one-thread-per-connection", "-"), (POOL_HANDLING, "--")):
            shown[f"server: {handling}"] = Line2D([], [], color="k", ls=ls)
    fig.legend(shown.values(), shown.keys(), loc="outside right upper", frameon=False)
    version = (sweep_run or far_run or runs[0]).env.get("server_version", "?")
    drawn = used([sweep_run, far_run, cost_run, server_run])
    fig.suptitle(f"sleep: SELECT SLEEP from many clients ({drawn}, {version})")
    return fig


class _Styles:
    """A fixed colour per strategy (lab.plotting.colour) and a marker per variant."""

    def __init__(self) -> None:
        self._markers: dict[str, str] = {}

    def marker(self, name: str) -> str:
        return self._markers.setdefault(name, MARKERS[len(self._markers) % len(MARKERS)])

    def plot(self, ax: Axes, name: str, xs, ys, *, dashed: bool = False, **kw: Any) -> None:
        floor = name.startswith(FLOOR)
        ax.plot(
            xs, ys, marker=self.marker(name), color=FLOOR_COLOUR if floor else colour(name),
            label=name, ls="--" if dashed or floor else "-", ms=5, lw=1.3, **kw,
        )  # fmt: skip


def _grouped(records: Sequence[Record], value: Callable[[Record], float]) -> dict:
    """label -> clients -> [values]: runs and repeats pooled."""
    out: dict[str, dict[int, list[float]]] = defaultdict(lambda: defaultdict(list))
    for record in records:
        out[label(record)][record["clients"]].append(value(record))
    return out


def _series(ax: Axes, records: Sequence[Record], value, styles: _Styles, **kw: Any) -> set[int]:
    """One line per label (median, with a min-max band where repeated), offset side by side."""
    groups = _grouped(records, value)
    every: set[int] = set()
    for k, (name, by_clients) in enumerate(sorted(groups.items())):
        clients = sorted(by_clients)
        every.update(clients)
        shift = 1 + OFFSET * (k - (len(groups) - 1) / 2)
        xs = [n * shift for n in clients]
        styles.plot(ax, name, xs, [statistics.median(by_clients[n]) for n in clients], **kw)
        lows = [min(by_clients[n]) for n in clients]
        highs = [max(by_clients[n]) for n in clients]
        if lows != highs:
            ax.fill_between(xs, lows, highs, color=colour(name), alpha=0.18, lw=0)
    return every


def _wall(ax: Axes, records: Sequence[Record], styles: _Styles) -> None:
    measured = [r for r in records if _measured(r)]
    for seconds in sorted({r["seconds"] for r in measured})[:1]:  # one sleep length: the shortest
        rows = [r for r in measured if r["seconds"] == seconds]
        every = _series(ax, rows, lambda r: r["wall_s"], styles)
        span = [min(every), max(every)]
        if span[0] == span[1]:
            continue  # one client count: no line to draw the guides along
        ax.plot(span, [seconds] * 2, "k--", lw=1, label="_ideal")
        ax.plot(span, [n * seconds for n in span], "k:", lw=1, label="_one after another")
        ax.annotate("ideal: one sleep", (span[0], seconds), textcoords="offset points",
                    xytext=(2, 4), fontsize="x-small")  # fmt: skip
        ax.annotate("one after another", (span[-1], span[-1] * seconds), textcoords="offset points",
                    xytext=(-80, -10), fontsize="x-small")  # fmt: skip
    seconds = min((r["seconds"] for r in measured), default=None)
    title = "wall time of the query phase" + (f": SELECT SLEEP({seconds:g})" if seconds else "")
    _finish(ax, title, "wall s", log_y=True)


def _efficiency(ax: Axes, records: Sequence[Record], styles: _Styles) -> None:
    measured = [r for r in records if _measured(r)]
    for handling in sorted({r.get("thread_handling") for r in measured}, key=str):
        rows = [r for r in measured if r.get("thread_handling") == handling]
        _series(ax, rows, lambda r: r["efficiency"], styles, dashed=handling == POOL_HANDLING)
    for record in records:
        if "broke" in record:
            y = record.get("efficiency", 0.06)
            ax.plot(record["clients"], y, "x", color=colour(label(record)), ms=10, mew=2,
                    label="_broke")  # fmt: skip
            ax.annotate(record["broke"], (record["clients"], y), textcoords="offset points",
                        xytext=(4, 4), fontsize="x-small", color=colour(label(record)))  # fmt: skip
    ax.axhline(1.0, color="k", ls="--", lw=1, label="_ref")
    ax.axhline(0.5, color="grey", ls=":", lw=1, label="_ref")
    ax.set(ylim=(0, 1.05))
    _finish(ax, "how much of the waiting overlapped (x: where it broke)",
            "efficiency = seconds / wall")  # fmt: skip


def _ratios(ax: Axes, records: Sequence[Record], styles: _Styles) -> None:
    """floor_ratio against clients: 1.0 is as good as the C floor."""
    _series(ax, records, lambda r: r["floor_ratio"], styles)
    ax.axhline(1.0, color=FLOOR_COLOUR, ls="--", lw=1, label="_ref")
    _finish(ax, "each strategy against the C floor (1.0: as good as C)",
            "efficiency / the C floor's efficiency")  # fmt: skip


def _per_client(ax: Axes, records, value, ylabel: str, title: str, styles: _Styles) -> None:
    rows = [r for r in records if _measured(r) and r["strategy"] != "sequential"]
    _series(ax, rows, value, styles)
    _finish(ax, title, ylabel, log_y=True)


def _newest_server_picture(runs: Sequence[Run]) -> tuple[Run | None, list[Record]]:
    """The newest run that measured both thread handlings, else the newest with server threads."""
    for run in runs:
        rows = [r for r in run.records if r.get("server_threads") is not None]
        if len({r.get("thread_handling") for r in rows}) > 1:
            return run, rows
    return newest_with(runs, lambda r: r.get("server_threads") is not None)


def _server(ax: Axes, records: Sequence[Record]) -> None:
    """Server threads against connections, while they sleep and while they sit idle (the
    median of every strategy's reading at that count)."""
    by: dict[tuple[str, str], dict[int, list[float]]] = defaultdict(lambda: defaultdict(list))
    for record in records:
        handling = record.get("thread_handling") or "?"
        for key, when in (("server_threads", "sleeping"), ("server_idle_threads", "idle")):
            if record.get(key) is not None:
                by[handling, when][record["clients"]].append(record[key])
    for (handling, when), points in sorted(by.items()):
        clients = sorted(points)
        sleeping = when == "sleeping"
        threads = [statistics.median(points[n]) for n in clients]
        ax.plot(
            clients, threads, marker="o" if sleeping else "s",
            ls="--" if handling == POOL_HANDLING else "-", color="k" if sleeping else "grey",
            label=f"{handling}, {when}",
        )  # fmt: skip
    if by:
        span = sorted({n for points in by.values() for n in points})
        ax.plot([span[0], span[-1]], [span[0], span[-1]], color="grey", lw=0.8, ls=":",
                label="one thread per connection")  # fmt: skip
        ax.legend(fontsize="x-small", loc="upper left")
    _finish(ax, "the server's side: a thread each, or a pool", "server threads", log_y=True)


def _finish(ax: Axes, title: str, ylabel: str, log_y: bool = False) -> None:
    """Title, labels, log axes with plain ticks; a panel no run has data for says so
    (and stays linear: a log axis over no data is matplotlib's warning)."""
    ax.set(title=title, xlabel="clients", ylabel=ylabel)
    ax.grid(True, which="both", alpha=0.3)
    if not any(len(line.get_xdata()) for line in ax.lines if not line.get_label() == "_ref"):
        ax.text(0.5, 0.5, "no run has this yet", ha="center", va="center", transform=ax.transAxes)
        return
    ax.set_xscale("log")
    plain_log_axis(ax, "x")
    ys = [y for line in ax.lines if line.get_label() != "_ref" for y in line.get_ydata() if y > 0]
    if log_y and ys and max(ys) / min(ys) >= 10:  # within a decade a log axis shows no tick
        ax.set_yscale("log")
        plain_log_axis(ax, "y")
