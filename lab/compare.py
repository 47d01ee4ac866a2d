"""`daemonlab compare NAME --by machine|python|label`: one measurement, side by side.

A workshop room or a CI fleet writes to one store (LAB_RESULTS=mysql://...);
this puts the same figure from each machine, interpreter or label next to
each other: every attendee's `sleep` efficiency, `cpu` speedup per Python.

What is compared, from the stored runs alone:
- the figure: --figure KEY, or the experiment's FIGURE when it names one, or
  the first column of its COLUMNS whose values are fractional numbers;
- the cases (the table's rows): the record's text and yes/no columns, and its
  whole-number columns before the figure (strategy, clients, workers);
- the groups (the table's columns): each run's machine (lab.env.machine),
  its label, or its Python (a record's own `python` when it has one: `cpu
  --python 3.12,3.13` measures several in one run);
- from each group its newest run that has the figure; repeated cases are
  shown as their median.
"""

from __future__ import annotations

import argparse
import statistics
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from matplotlib.figure import Figure

    from lab.runs import Record, Run

__all__ = ["BY", "Comparison", "add_parser", "case_text", "compare", "draw"]

BY = ("machine", "python", "label")

#: The lesson's figure where an experiment does not name one (FIGURE) and its
#: first fractional column is not it (sleep's first is wall_s; its lesson is efficiency).
_FIGURES = {"sleep": "efficiency", "cpu": "speedup", "spawn": "median_ms", "cow": "unshared_mb"}


@dataclass
class Comparison:
    experiment: str
    figure: str
    by: str
    keys: list[str]  # what names a case
    groups: list[str] = field(default_factory=list)
    cells: dict[tuple[Any, ...], dict[str, float]] = field(default_factory=dict)
    runs: dict[str, int | None] = field(default_factory=dict)  # group -> the run it came from

    def ratio(self, case: tuple[Any, ...]) -> float | None:
        """Second group against the first, where there are exactly two."""
        if len(self.groups) != 2:
            return None
        first, second = (self.cells[case].get(g) for g in self.groups)
        return second / first if first and second is not None else None


def add_parser(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "compare",
        help="one measurement across machines, Pythons or labels: a table and a figure",
        description=__doc__.split("\n\n")[0],
        allow_abbrev=False,
    )
    p.add_argument("experiment", metavar="NAME")
    p.add_argument("--by", choices=BY, default="machine", help="what to put side by side")
    p.add_argument("--figure", metavar="KEY", help="the record key to compare")
    p.add_argument("-o", "--output", help="the PNG to write (default: compare-NAME-BY.png)")
    p.set_defaults(func=cmd_compare)


def cmd_compare(args: argparse.Namespace) -> int:
    from lab import experiments, plotting
    from lab.report import console
    from lab.results import open_store

    module = experiments.load(args.experiment)
    with open_store(readonly=True) as store:
        runs = store.runs(args.experiment, measured=True)
    result = compare(module, runs, args.by, args.figure)
    out = console()
    out.print(table(result, module))
    path = plotting.save(draw(result), args.output or f"compare-{result.experiment}-{args.by}.png")
    used = ", ".join(f"{g}: run {r}" for g, r in result.runs.items())
    out.print(f"wrote {path} ({used})", markup=False)
    return 0


def figure_of(module: Any, records: Sequence[Record]) -> str:
    named = getattr(module, "FIGURE", None) or _FIGURES.get(module.NAME)
    if named and any(isinstance(r.get(named), int | float) for r in records):
        return named
    for key in _keys(module):
        if any(isinstance(r.get(key), float) for r in records):
            return key
    from lab.errors import LabError

    raise LabError(f"{module.NAME} records have no fractional figure: name one with --figure")


def _columns(module: Any) -> list[Any]:
    """The experiment's COLUMNS over all its parts (a Column, or a plain key)."""
    columns = module.COLUMNS
    if isinstance(columns, dict):
        return [c for cols in columns.values() for c in cols]
    return list(columns)


def _keys(module: Any) -> list[str]:
    """Every record key the experiment's COLUMNS name, in order, once each; `part`
    first where the tables come one per part (a record's part is part of its case)."""
    parts = ["part"] if isinstance(module.COLUMNS, dict) else []
    named = (c if isinstance(c, str) else c.key for c in _columns(module))
    return list(dict.fromkeys([*parts, *named]))


#: A text value longer than this is a sentence (a note, why it stopped), not a name: as
#: part of a case it made 100-character axis labels, and a pid in it meant no two runs'
#: cases were the same, so no group had a neighbour to compare with.
NAME_MOST = 32
#: A header ending in a unit names a measurement, even as text ("gaps s": 1.5 2.4).
UNITS = ("s", "ms", "µs", "MB", "kB", "%")


def _case_keys(module: Any, figure: str, records: Sequence[Record], by: str) -> list[str]:
    keys = _keys(module)
    before = keys[: keys.index(figure)] if figure in keys else keys
    notes = {c.key for c in _columns(module) if not isinstance(c, str) and _is_note(c)}
    chosen = []
    for key in keys:
        values = [r[key] for r in records if r.get(key) is not None]
        if not values or key == figure or key in notes or (by == "python" and key == "python"):
            continue
        text = all(
            isinstance(v, bool) or isinstance(v, str) and len(v) <= NAME_MOST for v in values
        )
        whole = all(isinstance(v, int) for v in values) and key in before
        if text or whole:
            chosen.append(key)
    return chosen


def _is_note(column: Any) -> bool:
    """A column that says something about a case rather than naming it: shown only with
    --wide (notes, why skipped), or a measurement in its unit."""
    return column.wide or column.title.split()[-1] in UNITS


def _group(run: Run, record: Record, by: str) -> str:
    from lab.env import machine

    if by == "machine":
        return machine(run.env)
    if by == "label":
        return str(run.label)  # compare() left unlabelled runs out
    if record.get("python"):
        return f"Python {record['python']}"
    build = "" if run.env.get("gil_enabled", True) else ", free-threaded"
    return f"{run.env.get('implementation', 'Python')} {run.env.get('python', '?')}{build}"


def compare(module: Any, runs: Sequence[Run], by: str, figure: str | None = None) -> Comparison:
    """The newest run of each group (runs come newest first), its figure per case."""
    from lab.errors import LabError

    if not runs:
        raise LabError(f"no stored runs of {module.NAME!r}: first `daemonlab run {module.NAME}`")
    if by == "label":  # an unlabelled run is nobody's: a "(no label)" group took the ratio
        runs = [run for run in runs if run.label]
        if not runs:
            raise LabError(
                f"no stored {module.NAME} run has a label: "
                f"`daemonlab run {module.NAME} --label NAME` (or LAB_LABEL) gives one"
            )
    everything = [r for run in runs for r in run.records]
    figure = figure or figure_of(module, everything)
    measured = [r for r in everything if isinstance(r.get(figure), int | float)]
    if not measured:
        raise LabError(f"no stored {module.NAME} record has {figure!r}")
    result = Comparison(module.NAME, figure, by, _case_keys(module, figure, measured, by))
    values: dict[tuple[Any, ...], dict[str, list[float]]] = {}
    for run in runs:
        for record in run.records:
            if not isinstance(record.get(figure), int | float):
                continue
            group = _group(run, record, by)
            if result.runs.setdefault(group, run.run_id) != run.run_id:
                continue  # a newer run of this group was taken already
            case = tuple(record.get(k) for k in result.keys)
            values.setdefault(case, {}).setdefault(group, []).append(float(record[figure]))
    # Oldest run first, so a ratio reads "what came later, against what came before".
    result.groups = sorted(result.runs, key=lambda group: (result.runs[group] or 0, group))
    result.cells = {
        case: {g: statistics.median(v) for g, v in by_group.items()}
        for case, by_group in values.items()
    }
    return result


def case_text(result: Comparison, case: tuple[Any, ...]) -> str:
    from lab.report import fmt

    named: list[str] = []
    for key, value in zip(result.keys, case, strict=True):
        text = value if isinstance(value, str) else f"{key} {fmt(value)}"
        if value not in (None, "") and text not in named:  # asyncio's loop asyncio: once
            named.append(text)
    return ", ".join(named) or "all"


def table(result: Comparison, module: Any):
    """Cases down, groups across; the ratio of two groups when there are two."""
    from rich import box
    from rich.markup import escape  # a label or a machine may hold [brackets]
    from rich.table import Table

    from lab.report import Column, fmt

    spec = next(
        (c for c in _columns(module) if not isinstance(c, str) and c.key == result.figure), None
    )
    cell = spec.cell if isinstance(spec, Column) else fmt
    grid = Table(
        title=f"{result.experiment}: {result.figure} by {result.by}",
        title_justify="left",
        box=box.SIMPLE_HEAD,
    )
    grid.add_column("case", overflow="fold")
    for group in result.groups:
        grid.add_column(escape(group), justify="right", overflow="fold")
    if len(result.groups) == 2:
        ratio = escape(f"{result.groups[1]} / {result.groups[0]}")
        grid.add_column(ratio, justify="right", no_wrap=True)
    for case, by_group in result.cells.items():
        row = [escape(case_text(result, case))] + [cell(by_group.get(g)) for g in result.groups]
        if len(result.groups) == 2:
            ratio = result.ratio(case)
            row.append("-" if ratio is None else f"{ratio:.2f}x")
        grid.add_row(*row)
    return grid


#: The widest a case's label on the figure is, in characters, before it folds.
LABEL_WIDTH = 32


def draw(result: Comparison) -> Figure:
    """Grouped horizontal bars: one row per case, one bar per group, in fixed colours."""
    import textwrap

    from matplotlib.figure import Figure

    from lab.plotting import PALETTE

    cases = list(result.cells)
    height = max(2.5, 0.35 * len(cases) * max(1, len(result.groups)) + 1.2)
    figure = Figure(figsize=(8, height), layout="constrained")
    ax = figure.subplots()
    width = 0.8 / max(1, len(result.groups))
    for i, group in enumerate(result.groups):
        shown = [n for n, case in enumerate(cases) if group in result.cells[case]]
        offset = (i - (len(result.groups) - 1) / 2) * width
        ax.barh(
            [n + offset for n in shown],
            [result.cells[cases[n]][group] for n in shown],
            height=width * 0.9,
            color=PALETTE[i % len(PALETTE)],  # groups by order: two names never share one
            label=f"{group} (run {result.runs[group]})",
        )
    # A label folded at spaces: a long one squeezed the axes to nothing (matplotlib's
    # "constrained_layout not applied" warning, printed to the terminal).
    labels = [textwrap.fill(case_text(result, c), LABEL_WIDTH) for c in cases]
    ax.set_yticks(range(len(cases)), labels)
    ax.invert_yaxis()  # the first case on top, as in the table
    ax.set_xlabel(result.figure)
    ax.grid(axis="x", alpha=0.3)
    figure.legend(loc="outside upper right", fontsize="small")  # never over a bar
    ax.set_title(f"{result.experiment}: {result.figure} by {result.by}")
    return figure
