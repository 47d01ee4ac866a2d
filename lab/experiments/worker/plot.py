"""The figure for `worker`: jobs/s, pick-up and CPU per job against jobs at once, per system.

One row per job kind (noop, io, cpu), each from the newest run that measured
it; three panels a row: throughput (log scale: the systems differ a
hundredfold), pick-up latency (the median as a point, a line up to p99; log
scale: arq's poll is a thousand times the lab's BLMOVE) and CPU per job.
The lab's models keep their colours from every other figure (threads blue,
processes red, asyncio green); rq and arq get colours of their own.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from lab.errors import LabError
from lab.plotting import PALETTE, colour, newest_with, plain_log_axis, used
from lab.runs import Run

if TYPE_CHECKING:
    from matplotlib.figure import Figure

__all__ = ["draw"]

JOBS = ("noop", "io", "cpu")
PANELS = (
    ("jobs_per_s", "jobs per second", "log"),
    ("pickup_p50_ms", "pick-up, ms (median, line to p99)", "log"),
    ("cpu_ms_per_job", "CPU per job, ms (workers' processes)", "log"),
)


def _series(records: list[dict[str, Any]]) -> dict[tuple[str, str], list[dict[str, Any]]]:
    series: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for r in sorted(records, key=lambda r: r["workers"]):
        series.setdefault((r["system"], r["model"]), []).append(r)
    return series


#: The peers' colours: distinct from each other and from the lab's models' own.
PEERS = {
    ("rq", "fork-per-job"): PALETTE[1],
    ("rq", "simple"): PALETTE[0],
    ("arq", "asyncio"): PALETTE[4],
}


def _colour(system: str, model: str) -> str:
    return (
        colour(model)
        if system == "lab"
        else PEERS.get((system, model), colour(f"{system} {model}"))
    )


def _lines(ax, records: list[dict[str, Any]], key: str) -> None:
    """Against jobs at once: one line per system and model."""
    for (system, model), points in _series(records).items():
        xs = [p["workers"] for p in points]
        ys = [p[key] for p in points]
        ax.plot(xs, ys, marker="o", color=_colour(system, model), label=f"{system} {model}")
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
    names = [f"{r['system']} {r['model']}" for r in records]
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
    ax.tick_params(axis="x", rotation=30)
    ax.set_xlabel(f"{records[0]['workers']} jobs at once")


def draw(runs: Sequence[Run]) -> Figure:
    from matplotlib.figure import Figure

    rows = []
    for job in JOBS:
        run, records = newest_with(
            runs, lambda r, j=job: r.get("part") == "throughput" and r["job"] == j
        )
        if run is not None:
            rows.append((job, run, records))
    if not rows:
        raise LabError("these worker runs measured nothing: run `daemonlab run worker`")
    figure = Figure(figsize=(15, 4.6 * len(rows)), layout="constrained")
    axes = figure.subplots(len(rows), len(PANELS), squeeze=False)
    for (job, _run, records), row in zip(rows, axes, strict=True):
        several = len({r["workers"] for r in records}) > 1
        for (key, label, scale), ax in zip(PANELS, row, strict=True):
            (_lines if several else _bars)(ax, records, key)
            ax.set_yscale(scale)
            plain_log_axis(ax, "y")
            ax.set_ylabel(label)
            ax.set_title(f"{job} jobs: {label.split(',')[0]}")
            ax.grid(which="both", alpha=0.3)
        if several:
            row[0].legend(fontsize="small")
    figure.suptitle(
        f"worker: the lab's daemon, rq and arq on one Redis ({used(r for _, r, _ in rows)})"
    )
    return figure
