"""Drawing stored runs: finding an experiment's figure, and what every figure shares.

Each experiment draws its own lesson in `lab/experiments/NAME/plot.py`
(`draw(runs) -> Figure`), from the stored runs, newest first. A figure shows
the newest complete picture: each panel takes the newest run that has its
part (`newest_with`), and the title says which runs it used (`used`).

Figures are built with matplotlib's object API (matplotlib.figure.Figure), not
pyplot: no global current figure, no GUI backend, safe in a daemon thread, and
a notebook shows the returned Figure inline. The same function draws a run
just made by the CLI and runs the daemon stored overnight.

Shared here so that figures agree with each other: one colour per way of
running work (threads are the same blue in every figure, in the talk's
order), log axes labelled 1, 2, 4, 8 rather than 2x10^0, and spread drawn
as a band from min to max where runs repeat.
"""

from __future__ import annotations

import importlib
import zlib
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lab.errors import LabError
from lab.runs import NOISY, NOTES, Record, Run

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

__all__ = [
    "COLOURS",
    "PLOT_RUNS",
    "colour",
    "draw",
    "human",
    "newest_per",
    "newest_with",
    "plain_log_axis",
    "save",
    "used",
]

#: How many of the newest runs a figure may draw from: each panel takes the newest
#: run that has its part, so the picture is whole after a partial run.
PLOT_RUNS = 50

#: One colour per way of running work, in the talk's order (matplotlib's tab10).
COLOURS = {
    "sequential": "#7f7f7f",
    "threads": "#1f77b4",
    "fork": "#d62728",
    "processes": "#d62728",
    "pool": "#ff7f0e",
    "asyncio": "#2ca02c",
}

#: Names that share a figure get colours apart, family by family (a family's
#: names never meet another family's in one figure, so families may reuse).
FAMILIES = (
    # ipc's transports, in the slide's order
    ("pipe", "socketpair", "unix", "tcp", "shm", "mp-pipe", "mp-queue", "zmq", "amqp",
     "redis", "remote-objects", "xmpp", "mqtt", "nats"),
    # the daemon managers, the daemonizing implementations, the peers of the daily daemons
    ("supervisord", "circus", "honcho", "monit", "lab", "python-daemon", "prefork",
     "gunicorn-sync", "gunicorn-gthread", "rq", "arq"),
    # a signal's receiver states, a worker's creation methods
    ("sleep", "select", "python-loop", "threads-busy", "c-call", "wakeup-fd", "thread",
     "posix_spawn", "subprocess", "mp_fork", "mp_forkserver", "mp_spawn"),
)  # fmt: skip

#: Names not listed above get a colour from this palette (tab20), fixed by the name.
PALETTE = (
    "#9467bd", "#8c564b", "#e377c2", "#bcbd22", "#17becf", "#aec7e8", "#ffbb78",
    "#98df8a", "#ff9896", "#c5b0d5", "#c49c94", "#f7b6d2", "#dbdb8d", "#9edae5",
)  # fmt: skip


def colour(name: str) -> str:
    """The colour of `name` in every figure: a strategy's own, its family's, or its name's."""
    base = name.split(" ")[0].split("[")[0]
    if base in COLOURS:
        return COLOURS[base]
    for family in FAMILIES:
        if name in family:
            return PALETTE[family.index(name) % len(PALETTE)]
    return PALETTE[zlib.crc32(name.encode()) % len(PALETTE)]


def newest_with(
    runs: Sequence[Run], wanted: Callable[[Record], bool]
) -> tuple[Run | None, list[Record]]:
    """The newest run (runs come newest first) with records `wanted`, and those records."""
    for run in runs:
        records = [r for r in run.records if wanted(r)]
        if records:
            return run, records
    return None, []


def newest_per(
    runs: Sequence[Run], key: Callable[[Record], Any], wanted: Callable[[Record], bool]
) -> tuple[list[Run], list[Record]]:
    """For each `key` (a transport, a server), its `wanted` records from the newest run
    that has any: a picture pieced together from partial runs. Returns (runs used, records)."""
    taken: dict[Any, int | None] = {}
    records: list[Record] = []
    chosen: list[Run] = []
    for run in runs:
        for record in run.records:
            if not wanted(record):
                continue
            k = key(record)
            if taken.setdefault(k, run.run_id) == run.run_id:
                records.append(record)
                if run not in chosen:
                    chosen.append(run)
    return chosen, records


def used(runs: Iterable[Run | None]) -> str:
    """ "run 12" or "runs 12, 15": for a title that says what it was drawn from."""
    ids = sorted({r.run_id for r in runs if r is not None and r.run_id is not None})
    if not ids:
        return "no runs"
    return ("run " if len(ids) == 1 else "runs ") + ", ".join(map(str, ids))


def plain_log_axis(ax: Axes, which: str = "x", at: Iterable[float] = ()) -> None:
    """A log axis whose ticks read 1, 2, 4, 8 (or 10, 100, 1000), not 2x10^0; with `at`,
    a tick at each of those values and no other (the client counts measured: matplotlib's
    own log ticks are powers of ten, one labelled tick over 1-8)."""
    from matplotlib.ticker import FixedLocator, FuncFormatter, NullFormatter, NullLocator

    axis = ax.xaxis if which == "x" else ax.yaxis
    axis.set_major_formatter(FuncFormatter(lambda v, _pos: _plain(v)))
    axis.set_minor_formatter(NullFormatter())
    ticks = sorted(set(at))
    if ticks:
        axis.set_major_locator(FixedLocator(ticks))
        axis.set_minor_locator(NullLocator())


def human(value: float) -> str:
    """A value as a label on a figure: three significant figures, thousands separated
    (14,900 and 0.0123, never 1.49e+04)."""
    if abs(value) >= 100:
        return f"{float(f'{value:.3g}'):,.0f}"
    return f"{value:.3g}"


def _plain(value: float) -> str:
    """1, 2, 10, 1,000,000 (never 1e+06); 0.5 and 0.01 as they are."""
    return f"{value:,.0f}" if value >= 1 and value == int(value) else f"{value:g}"


def draw(experiment: str, runs: Sequence[Run]) -> Figure:
    """The figure for `experiment` from these runs (newest first)."""
    if not runs:
        raise LabError(f"no stored runs of {experiment!r}: first `daemonlab run {experiment}`")
    module = _plot_module(experiment)
    figure = module.draw(list(runs))
    _say_too_noisy(figure, runs)
    return figure


def _say_too_noisy(figure: Figure, runs: Sequence[Run]) -> None:
    """Under the figure, the verdict of a run its lesson judged too noisy (Session.too_noisy):
    drawn without it, its points would teach what the run could not show."""
    said = [
        f"run {run.run_id}: {' '.join(note.split())}"
        for run in runs
        if run.env.get(NOISY)
        for note in run.env.get(NOTES, ())
        if "too noisy" in note
    ]
    if said:
        figure.text(0.5, 0, "\n".join(said), ha="center", va="top", color="firebrick")


def _plot_module(experiment: str) -> Any:
    where = f"lab.experiments.{experiment}.plot"
    try:
        return importlib.import_module(where)
    except ModuleNotFoundError as exc:
        if exc.name != where:
            raise  # the plot exists but needs something missing: that is a bug to see
    raise LabError(f"experiment {experiment!r} has no plot")


def save(figure: Figure, path: str | Path) -> Path:
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        figure.savefig(path, dpi=120, bbox_inches="tight")
    except OSError as exc:
        raise LabError(f"cannot write {path}: {exc.strerror or exc}") from None
    return path
