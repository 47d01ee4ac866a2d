"""The figure for `worker`: jobs/s, pick-up and CPU per job against jobs at once, per system.

One row per job kind (noop, io, cpu), each from the newest run that measured
it; three panels a row: throughput (log scale: the systems differ a
hundredfold), pick-up latency (the median as a point, a line up to p99; log
scale: arq's poll is a thousand times the lab's BLMOVE) and CPU per job.
The lab's models keep their colours from every other figure (threads blue,
processes red, asyncio green); the peers get colours of their own. Of
several rounds, each cell shows the round with the median jobs/s.
`draw_crash` draws the crash table: jobs lost and begun twice per system.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from lab.errors import LabError
from lab.plotting import PALETTE, colour, human, newest_with, plain_log_axis, used
from lab.runs import Run

if TYPE_CHECKING:
    from matplotlib.figure import Figure

__all__ = ["draw", "draw_crash"]

JOBS = ("noop", "io", "cpu")
PANELS = (
    ("jobs_per_s", "jobs per second", "log"),
    ("pickup_p50_ms", "pick-up, ms (median, line to p99)", "log"),
    ("cpu_ms_per_job", "CPU per job, ms (workers' processes)", "log"),
)


def _name(r: dict[str, Any]) -> str:
    """system model, and the setting where it is not the default (Celery's, Dramatiq's tuned)."""
    setting = r.get("setting", "default")
    return f"{r['system']} {r['model']}" + ("" if setting == "default" else f" {setting}")


def _medians(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One record per cell: of several rounds, the one with the median jobs/s."""
    cells: dict[tuple, list[dict[str, Any]]] = {}
    for r in records:
        cells.setdefault((_name(r), r["workers"]), []).append(r)
    picked = []
    for rounds in cells.values():
        rounds.sort(key=lambda r: r["jobs_per_s"])
        picked.append(rounds[len(rounds) // 2])
    return picked


def _series(records: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    series: dict[str, list[dict[str, Any]]] = {}
    for r in sorted(records, key=lambda r: r["workers"]):
        series.setdefault(_name(r), []).append(r)
    return series


#: The peers' colours: distinct from each other and from the lab's models' own.
PEERS = {
    ("rq", "fork-per-job"): PALETTE[1],
    ("rq", "simple"): PALETTE[0],
    ("arq", "asyncio"): PALETTE[4],
    ("celery", "prefork"): PALETTE[3],
    ("celery", "threads"): PALETTE[12],
    ("celery", "solo"): PALETTE[6],
    ("dramatiq", "processes"): PALETTE[10],
    ("dramatiq", "threads"): PALETTE[13],
}


def _colour(system: str, model: str) -> str:
    return (
        colour(model)
        if system == "lab"
        else PEERS.get((system, model), colour(f"{system} {model}"))
    )


def _lines(ax, records: list[dict[str, Any]], key: str) -> None:
    """Against jobs at once: one line per system and model."""
    for name, points in _series(records).items():
        system, model = points[0]["system"], points[0]["model"]
        xs = [p["workers"] for p in points]
        ys = [p[key] for p in points]
        ax.plot(xs, ys, marker="o", color=_colour(system, model), label=name)
        if key == "pickup_p50_ms":
            ax.vlines(
                xs,
                ys,
                [p["pickup_p99_ms"] for p in points],
                color=_colour(system, model),
                alpha=0.5,
            )
    ax.set_xscale("log", base=2)
    plain_log_axis(ax, "x")
    ax.set_xlabel("jobs at once (lab slots, arq max_jobs, rq processes)")


def _bars(ax, records: list[dict[str, Any]], key: str) -> None:
    """One count of jobs at once only: one bar per system and model."""
    names = [_name(r) for r in records]
    values = [r[key] for r in records]
    colours = [_colour(r["system"], r["model"]) for r in records]
    ax.bar(names, values, color=colours, label=names)
    if key == "pickup_p50_ms":
        ax.errorbar(
            names,
            values,
            yerr=[
                [0] * len(records),
                [r["pickup_p99_ms"] - v for r, v in zip(records, values, strict=True)],
            ],
            fmt="none",
            ecolor="black",
            capsize=4,
        )
    ax.bar_label(ax.containers[0], labels=[human(v) for v in values], fontsize="small")
    ax.tick_params(axis="x", rotation=30)
    ax.set_xlabel(f"{records[0]['workers']} jobs at once")


def _scale(ax, values: list[float], scale: str) -> None:
    """Log where the systems differ tenfold or more, with a tick at 1, 2 and 5 of every
    decade (one decade showed a single tick); linear where they are closer."""
    from matplotlib.ticker import LogLocator

    positive = [v for v in values if v > 0]
    if scale == "log" and positive and max(positive) / min(positive) >= 10:
        ax.set_yscale("log")
        ax.yaxis.set_major_locator(LogLocator(subs=(1, 2, 5)))
        plain_log_axis(ax, "y")


def draw(runs: Sequence[Run]) -> Figure:
    from matplotlib.figure import Figure

    rows = []
    for job in JOBS:
        run, records = newest_with(
            runs, lambda r, j=job: r.get("part") == "throughput" and r["job"] == j
        )
        if run is not None:
            rows.append((job, run, _medians(records)))
    if not rows:
        raise LabError("these worker runs measured nothing: run `daemonlab run worker`")
    figure = Figure(figsize=(15, 4.6 * len(rows)), layout="constrained")
    axes = figure.subplots(len(rows), len(PANELS), squeeze=False)
    for (job, _run, records), row in zip(rows, axes, strict=True):
        several = len({r["workers"] for r in records}) > 1
        for (key, label, scale), ax in zip(PANELS, row, strict=True):
            (_lines if several else _bars)(ax, records, key)
            _scale(ax, [r[key] for r in records], scale)
            ax.set_ylabel(label)
            ax.set_title(f"{job} jobs: {label.split(',')[0]}")
            ax.grid(which="both", alpha=0.3)
        if several:
            row[0].legend(fontsize="small")
    figure.suptitle(
        f"worker: the lab's daemon against rq, arq, Celery and Dramatiq on one Redis"
        f" ({used(r for _, r, _ in rows)})"
    )
    return figure


def draw_crash(runs: Sequence[Run]) -> Figure:
    """The crash table as bars: jobs lost and jobs begun twice, per system and setting."""
    from matplotlib.figure import Figure

    run, records = newest_with(runs, lambda r: r.get("part") == "crash")
    if run is None:
        raise LabError("these worker runs have no crash table: run `daemonlab run worker`")
    figure = Figure(figsize=(10, 4.6), layout="constrained")
    ax = figure.subplots()
    names = [_name(r) for r in records]
    xs = range(len(records))
    ax.bar([x - 0.2 for x in xs], [r["lost"] for r in records], 0.4, label="lost", color="C3")
    ax.bar([x + 0.2 for x in xs], [r["twice"] for r in records], 0.4, label="begun twice")
    ax.set_xticks(list(xs), names, rotation=30, ha="right")
    ax.set_ylabel(f"jobs of {records[0]['jobs']:,}, after {records[0]['kills']} kill -9")
    ax.legend()
    ax.set_title(f"worker: who loses a job to kill -9 ({used([run])})")
    return figure
