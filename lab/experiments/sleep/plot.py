"""The sleep experiment's figure: the whole lesson, every run it is given drawn together.

    wall time      the slide and the sweep: every concurrent strategy stays on
                   the ideal line (one sleep), sequential climbs the line of
                   N x one call made alone (measured, drawn at every count); the
                   strategies are drawn side by side (a small offset, a marker
                   each), not on top of each other at 1 s
    efficiency     seconds / wall against clients up to where each strategy
                   broke (--scale), the break marked with its cause; dashed
                   lines are a pool-of-threads server where both were measured
    to make one    what a client costs to make: connect_s per client (ms)
    memory         what a client holds at the plateau (MiB per thread,
                   process, task)
    the server     all of its threads against its connections, a line per server:
                   one each, or a pool
    x C floor      each Python strategy's efficiency over the C floor's at the
                   same clients in the same run (floor_ratio): what Python costs

Each point (a strategy at a client count, under a thread handling) comes from
the newest run that measured it, so runs made apart draw together: a notebook's
sweep in threads beside fork and pool run from the command line, the tour's slide
beside its sweep.
The clients axis has a tick at every count measured; a value under what its
measurement resolves (a client holding less than PSS counts) is drawn at that
floor, hollow, and the panel says how many. The C floor (c-floor) is drawn dashed
and grey in every panel, as ipc draws its floors. Where runs repeat, a point is
the median and the band runs from min to max.
"""

from __future__ import annotations

import statistics
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from lab.experiments.sleep.records import FLOOR
from lab.plotting import colour, newest_per, plain_log_axis, used
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
FLOOR_COLOUR = "#7f7f7f"


@dataclass(frozen=True)
class Resolution:
    """What a figure resolves at N clients (the floor of its axis), and its name on a panel."""

    at: Callable[[int], float]
    words: str


#: Wall and connect times are read to the µs here (perf_counter_ns, rounded in the records).
CLOCK_S = Resolution(lambda n: 1e-6, "1 µs")
CLOCK_MS = Resolution(lambda n: 1e-3, "1 µs")
#: PSS is counted in whole KiB (proc(5): smaps_rollup's "kB"): one KiB over all N clients.
PSS_MIB = Resolution(lambda n: 1 / 1024 / n, "1 KiB / clients")
NONE = Resolution(lambda n: float("-inf"), "")


def label(record: Record) -> str:
    strategy, variant = record["strategy"], record["variant"]
    return f"{strategy} [{variant}]" if variant else strategy


def _measured(record: Record) -> bool:
    return "wall_s" in record


def draw(runs: list[Run]) -> Figure:
    from matplotlib.figure import Figure

    chosen, records = newest_per(runs, _point, lambda r: _measured(r) or "broke" in r)
    fig = Figure(figsize=(18, 8.5), layout="constrained")
    (wall_ax, eff_ax, make_ax), (mem_ax, server_ax, ratio_ax) = fig.subplots(2, 3)
    styles = _Styles()
    measured = [r for r in records if _measured(r)]
    _wall(wall_ax, measured, styles)
    _efficiency(eff_ax, records, styles)
    _per_client(  # a peer (mysqlslap) reports its own figures: no connect time of its own
        make_ax, [r for r in measured if r.get("connect_s") is not None],
        lambda r: 1000 * r["connect_s"] / r["clients"], CLOCK_MS,
        "ms to make one client (connect_s / clients)", "what a client costs to make", styles,
    )  # fmt: skip
    _per_client(
        mem_ax, [r for r in measured if r.get("mib_per_client") is not None],
        lambda r: r["mib_per_client"], PSS_MIB,
        "MiB per client at the plateau (PSS)", "what a client holds while it waits", styles,
    )  # fmt: skip
    _server(server_ax, [r for r in measured if r.get("server_threads") is not None])
    _ratios(ratio_ax, [r for r in measured if r.get("floor_ratio") is not None], styles)
    handles = {
        h.get_label(): h for ax in (wall_ax, eff_ax, make_ax, mem_ax, ratio_ax) for h in ax.lines
    }
    shown = {k: v for k, v in handles.items() if not k.startswith("_")}
    if any(r.get("thread_handling") == POOL_HANDLING for r in records):
        from matplotlib.lines import Line2D

        for handling, ls in (("one-thread-per-connection", "-"), (POOL_HANDLING, "--")):
            shown[f"server: {handling}"] = Line2D([], [], color="k", ls=ls)
    fig.legend(shown.values(), shown.keys(), loc="outside right upper", frameon=False)
    version = next((r.env["server_version"] for r in chosen if "server_version" in r.env), "?")
    fig.suptitle(f"sleep: SELECT SLEEP from many clients ({used(chosen)}, {version})")
    return fig


def _point(record: Record) -> tuple:
    """One point of the picture: each is drawn from the newest run that measured it, so
    runs made apart (a sweep in a notebook, fork and pool from the CLI) draw together."""
    return label(record), record["clients"], record.get("thread_handling")


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


def _series(
    ax: Axes,
    records: Sequence[Record],
    value,
    styles: _Styles,
    floor: Resolution = NONE,
    **kw: Any,
) -> int:
    """One line per label (median, with a min-max band where repeated), offset side by side.
    A median under `floor` (what the measurement resolves) is drawn at the floor, hollow:
    returns how many were."""
    groups = _grouped(records, value)
    below = 0
    for k, (name, by_clients) in enumerate(sorted(groups.items())):
        clients = sorted(by_clients)
        shift = 1 + OFFSET * (k - (len(groups) - 1) / 2)
        xs = [n * shift for n in clients]
        medians = [statistics.median(by_clients[n]) for n in clients]
        floors = [floor.at(n) for n in clients]
        styles.plot(ax, name, xs, [max(m, f) for m, f in zip(medians, floors, strict=True)], **kw)
        under = [(x, f) for x, m, f in zip(xs, medians, floors, strict=True) if m < f]
        if under:
            below += len(under)
            ax.plot(*zip(*under, strict=True), "v", mfc="white", ms=9, color=colour(name),
                    label="_below")  # fmt: skip
        lows = [max(min(by_clients[n]), floor.at(n)) for n in clients]
        highs = [max(max(by_clients[n]), floor.at(n)) for n in clients]
        if lows != highs:
            ax.fill_between(xs, lows, highs, color=colour(name), alpha=0.18, lw=0)
    return below


def _wall(ax: Axes, records: Sequence[Record], styles: _Styles) -> None:
    """Wall time against clients, with the two references computed at every count drawn:
    one sleep (the ideal), and N x the time of one call made alone (one after another).
    Runs with different sleep lengths draw together in sleeps (wall_s / seconds)."""
    lengths = {r["seconds"] for r in records}
    unit = lengths.pop() if len(lengths) == 1 else None

    def scaled(r: Record) -> float:
        return r["wall_s"] if unit else r["wall_s"] / r["seconds"]

    below = _series(ax, records, scaled, styles, floor=CLOCK_S)
    clients = sorted({r["clients"] for r in records})
    if clients:
        import numpy as np

        one_call = _one_call(records, scaled) or (unit or 1.0)
        xs = sorted({*np.geomspace(clients[0], clients[-1], 64), *clients})
        ax.plot(xs, [unit or 1.0] * len(xs), "k--", lw=1, label="ideal: one sleep")
        per = f"{one_call:.3g} {'s' if unit else 'sleep'}"
        ax.plot(xs, [n * one_call for n in xs], "k:", lw=1, label=f"one after another: N x {per}")
    title = "wall time of the query phase" + (f": SELECT SLEEP({unit:g})" if unit else "")
    ylabel = "wall s" if unit else "wall, in sleeps (wall_s / seconds)"
    _finish(ax, title, ylabel, clients, log_y=True, below=below, floor=CLOCK_S)


def _one_call(records: Sequence[Record], value: Callable[[Record], float]) -> float | None:
    """What one query costs made alone: sequential's wall per client (its N queries run
    one after another), the median over the counts measured; None without sequential."""
    alone = [value(r) / r["clients"] for r in records if r["strategy"] == "sequential"]
    return statistics.median(alone) if alone else None


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
            "efficiency = seconds / wall", [r["clients"] for r in records])  # fmt: skip


def _ratios(ax: Axes, records: Sequence[Record], styles: _Styles) -> None:
    """floor_ratio against clients: 1.0 is as good as the C floor."""
    _series(ax, records, lambda r: r["floor_ratio"], styles)
    ax.axhline(1.0, color=FLOOR_COLOUR, ls="--", lw=1, label="_ref")
    _finish(ax, "each strategy against the C floor (1.0: as good as C)",
            "efficiency / the C floor's efficiency", [r["clients"] for r in records])  # fmt: skip


def _per_client(ax: Axes, records, value, floor: Resolution, ylabel: str, title: str,
                styles: _Styles) -> None:  # fmt: skip
    rows = [r for r in records if r["strategy"] != "sequential"]
    below = _series(ax, rows, value, styles, floor=floor)
    _finish(ax, title, ylabel, [r["clients"] for r in rows], log_y=True, below=below,
            floor=floor)  # fmt: skip


def _server(ax: Axes, records: Sequence[Record]) -> None:
    """Server threads against connections, while they sleep and while they sit idle (the
    median of every strategy's reading at that count), a line per server: the one found
    and a throwaway one hold different threads of their own."""
    by: dict[tuple[str, str], dict[int, list[float]]] = defaultdict(lambda: defaultdict(list))
    several = len({r.get("server") for r in records}) > 1
    for record in records:
        handling = record.get("thread_handling") or "?"
        server = f"{record.get('server')} " * several + handling
        for key, when in (("server_threads", "sleeping"), ("server_idle_threads", "idle")):
            if record.get(key) is not None:
                by[server, when][record["clients"]].append(record[key])
    reference = "one more thread per added client, from each line's first"
    for (server, when), points in sorted(by.items()):
        clients = sorted(points)
        sleeping = when == "sleeping"
        threads = [statistics.median(points[n]) for n in clients]
        ax.plot(
            clients, threads, marker="o" if sleeping else "s",
            color=colour(server) if several else "k" if sleeping else "grey",
            alpha=1 if sleeping else 0.5, label=f"{server}, {when}",
            # a pool that grows a thread per sleep lies on a thread each: thin dashes over wide
            **({"ls": "--", "lw": 1.2} if server.endswith(POOL_HANDLING) else {"lw": 3}),
        )  # fmt: skip
        if sleeping and len(clients) > 1:
            start = threads[0] - clients[0]  # at the fewest clients, less one thread each
            ax.plot(clients, [start + n for n in clients], color="grey", lw=0.8, ls=":",
                    label=reference)  # fmt: skip
            reference = "_" + reference  # one entry in the legend
    if by:
        # The records hold the server's threads while the clients sleep, not before the run:
        # nothing to subtract, so the panel says what its count holds.
        ax.legend(fontsize="x-small", loc="upper left", title_fontsize="x-small", title=(
            "every thread of the server process: its own, its thread cache\n"
            "(kept for reuse) and one per connection, anyone's: none subtracted"
        ))  # fmt: skip
    _finish(ax, "the server's side: a thread each, or a pool", "server threads (all of them)",
            [r["clients"] for r in records])  # fmt: skip


def _finish(
    ax: Axes, title: str, ylabel: str, clients: Sequence[int], log_y: bool = False,
    below: int = 0, floor: Resolution = NONE,
) -> None:  # fmt: skip
    """Title, labels, a log x axis with a tick at every client count measured, a log y
    over a decade or more; a panel no run has data for says so (and stays linear: a log
    axis over no data is matplotlib's warning), one with points under the resolution too."""
    ax.set(title=title, xlabel="clients", ylabel=ylabel)
    ax.grid(True, which="both", alpha=0.3)
    if not clients:
        ax.text(0.5, 0.5, "no run has this yet", ha="center", va="center", transform=ax.transAxes)
        return
    ax.set_xscale("log")
    plain_log_axis(ax, "x", at=clients)
    if len(set(clients)) > 8:
        ax.tick_params(axis="x", labelrotation=45)
    if below:
        ax.set_xlabel(f"clients   (\u25bd {below} below resolution, {floor.words}: drawn at it)")
    ys = [y for line in ax.lines if line.get_label() != "_ref" for y in line.get_ydata() if y > 0]
    if log_y and ys and max(ys) / min(ys) >= 10:  # within a decade a log axis shows no tick
        ax.set_yscale("log")
        plain_log_axis(ax, "y")
