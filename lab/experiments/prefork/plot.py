"""The figure for `prefork`: throughput and tail per server, and what each signal cost.

Three panels, each from the newest run that has its part:
- requests per second, one bar per server in each group (an app at a number
  of workers, connections and keep-alive), the line from the slowest to the
  fastest round where rounds repeat;
- p99 latency the same way;
- the zero-downtime events: recovery time per event, the failed requests
  written on each bar.
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from lab.errors import LabError
from lab.plotting import PALETTE, colour, newest_with, used
from lab.runs import Run

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

__all__ = ["draw"]


def _measured(record: dict[str, Any]) -> bool:
    return record.get("part") == "compare" and "rps" in record


def _group(record: dict[str, Any]) -> str:
    keepalive = "k-a" if record["keepalive"] else "close"
    return f"{record['app']}\n{record['workers']} w, {record['concurrency']} conns, {keepalive}"


def _row(record: dict[str, Any]) -> str:
    """The server, and its setup when it is not the default (tuned, linger, abrupt)."""
    setup = record.get("setup", "default")
    return record["server"] if setup == "default" else f"{record['server']} {setup}"


#: The peers' colours, apart from each other and from the lab's servers' own (prefork,
#: threads, asyncio): by name alone gunicorn-gthread and uwsgi drew in one pink.
PEERS = {"gunicorn-sync": PALETTE[3], "gunicorn-gthread": PALETTE[1], "uwsgi": PALETTE[0]}


def _colour(server: str) -> str:
    """A server's colour, its setup aside ("uwsgi tuned" is uwsgi's, hatched)."""
    name = server.split(" ")[0]
    return PEERS.get(name) or colour(name)


def _bars(ax: Axes, records: list[dict[str, Any]], key: str, label: str) -> None:
    groups = list(dict.fromkeys(_group(r) for r in records))
    servers = list(dict.fromkeys(_row(r) for r in records))
    width = 0.8 / len(servers)
    for i, server in enumerate(servers):
        xs, mids, lows, highs = [], [], [], []
        for g, group in enumerate(groups):
            values = [r[key] for r in records if _row(r) == server and _group(r) == group]
            if not values:
                continue
            mid = statistics.median(values)
            xs.append(g + (i - (len(servers) - 1) / 2) * width)
            mids.append(mid)
            lows.append(mid - min(values))
            highs.append(max(values) - mid)
        hatch = "//" if " " in server else None  # a setup other than the default
        ax.bar(xs, mids, width * 0.9, color=_colour(server), hatch=hatch, label=server)
        if any(lows) or any(highs):
            ax.errorbar(xs, mids, yerr=[lows, highs], fmt="none", ecolor="black", capsize=3)
    ax.set_xticks(range(len(groups)), groups, fontsize="small")
    ax.set_ylabel(label)
    ax.grid(axis="y", alpha=0.3)


def _events(ax: Axes, records: list[dict[str, Any]]) -> None:
    names = [r["event"] for r in records]
    recovery = [r["recovery_ms"] or 0.0 for r in records]
    bars = ax.bar(names, recovery, color=colour("prefork"))
    for bar, record in zip(bars, records, strict=True):
        ax.annotate(
            f"{record['failed']} failed",
            (bar.get_x() + bar.get_width() / 2, bar.get_height()),
            ha="center",
            va="bottom",
            fontsize="small",
        )
    ax.set_ylabel("recovery, ms (signal -> workers back, seen in /proc)")
    ax.set_title("signals under load", fontsize="medium")
    ax.grid(axis="y", alpha=0.3)


def draw(runs: Sequence[Run]) -> Figure:
    from matplotlib.figure import Figure

    compared, compare = newest_with(runs, _measured)
    shocked, shocks = newest_with(runs, lambda r: r.get("part") == "events")
    if not compare and not shocks:
        raise LabError("these prefork runs measured nothing: run `daemonlab run prefork`")
    panels = (2 if compare else 0) + (1 if shocks else 0)
    figure = Figure(figsize=(5.0 * panels, 4.8), layout="constrained")
    axes = list(figure.subplots(1, panels, squeeze=False)[0])
    if compare:
        throughput, tail = axes.pop(0), axes.pop(0)
        _bars(throughput, compare, "rps", "requests per second")
        throughput.set_title("throughput (tuned peers: 2 x cores + 1 workers)", fontsize="medium")
        handles, labels = throughput.get_legend_handles_labels()
        # Below the panels: inside one, six servers' names covered the bars they name.
        figure.legend(handles, labels, loc="outside lower center", fontsize="small",
                      ncols=min(len(labels), 6), frameon=False)  # fmt: skip
        _bars(tail, compare, "p99_ms", "p99 latency, ms")
        tail.set_title("the tail", fontsize="medium")
    if shocks:
        _events(axes.pop(0), shocks)
    figure.suptitle(f"prefork: a Unicorn-style server vs its rivals ({used([compared, shocked])})")
    return figure
