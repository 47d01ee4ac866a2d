"""Presenting runs in a terminal: rich tables and a progress bar.

The experiments return records and never print; this module is where they
become a table a person reads. An experiment says which figures matter with
`COLUMNS`, a list of Column (or, where its records come in parts, a dict
from each record's `part` to that part's columns): the figure that carries
the lesson first, the unit in the header ("wall s"), one number format per
column, so that a table fits an 80-column terminal and no number is cut.
`--wide` adds the columns marked wide. rich is imported on first use.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from lab.runs import Progress, Record, Run

if TYPE_CHECKING:
    from rich.console import Console
    from rich.table import Table

__all__ = [
    "Column",
    "Columns",
    "console",
    "fmt",
    "progress_bar",
    "records_tables",
    "run_header",
    "runs_table",
]


@dataclass(frozen=True)
class Column:
    """One column of an experiment's table.

    key     the record key it shows
    header  what the header says, with the unit: "wall s", "rtt µs" (default: key)
    format  a format spec for numbers (".3f", ".1f", ",d", ".0%"); "" shows text as it is
    wide    shown only with --wide (or when named in --columns)
    """

    key: str
    header: str = ""
    format: str = ""
    wide: bool = False

    @property
    def title(self) -> str:
        return self.header or self.key

    def cell(self, value: Any) -> str:
        if value is None or value == "":
            return "-"
        if isinstance(value, bool):
            return "yes" if value else "no"
        if isinstance(value, int | float) and self.format:
            if isinstance(value, float) and not math.isfinite(value):
                return str(value)
            return format(value, self.format)
        return fmt(value)


#: What an experiment's COLUMNS may be: one list, or one list per record `part`.
Columns = Sequence[Column | str] | Mapping[str, Sequence[Column | str]]


def console(stderr: bool = False) -> Console:
    from rich.console import Console

    out = Console(stderr=stderr, highlight=False)
    if not out.is_terminal:  # a pipe or a file: no terminal width to respect, keep tables whole
        out.width = 160
    return out


def fmt(value: Any) -> str:
    """A value without a column format: seconds to ms precision, ratios to 3 digits."""
    if isinstance(value, bool) or value is None:
        return "-" if value is None else ("yes" if value else "no")
    if isinstance(value, float):
        if value == 0 or 0.001 <= abs(value) < 100_000:
            return f"{value:.3f}" if abs(value) < 100 else f"{value:.1f}"
        return f"{value:.3g}"
    if isinstance(value, list | tuple):
        return ", ".join(fmt(v) for v in value)
    return str(value)


def parts(columns: Columns | None, records: Sequence[Record]) -> list[tuple[str, list[Column]]]:
    """(part, its columns) for each part present in `records`, in the columns' order.

    With one list of columns every record is one part (""); with none, every
    key of the records is a column, in the order they first appear.
    """
    if isinstance(columns, Mapping):
        present = {r.get("part") for r in records}
        return [(part, _columns(cols)) for part, cols in columns.items() if part in present]
    if columns:
        return [("", _columns(columns))]
    keys: dict[str, None] = {}
    for record in records:
        keys.update(dict.fromkeys(record))
    return [("", [Column(key) for key in keys])]


def _columns(cols: Sequence[Column | str]) -> list[Column]:
    """A plain key stands for Column(key): no header of its own, no number format."""
    return [Column(c) if isinstance(c, str) else c for c in cols]


def records_tables(
    run: Run,
    columns: Columns | None = None,
    *,
    wide: bool = False,
    only: Sequence[str] = (),
) -> list[Table]:
    """One table per part of the run; `wide` adds the wide columns, `only` picks by key."""
    from rich import box
    from rich.table import Table

    tables = []
    run_id = run.run_id if run.run_id is not None else "-"
    for part, cols in parts(columns, run.records):
        records = [r for r in run.records if not part or r.get("part") == part]
        if only:
            shown = [c for c in cols if c.key in only]
        else:
            shown = [c for c in cols if wide or not c.wide]
        name = f"{run.experiment} {part}".strip()
        table = Table(
            title=f"{name}: run {run_id} ({run.status})", title_justify="left", box=box.SIMPLE_HEAD
        )
        for col in shown:
            numeric = any(
                isinstance(r.get(col.key), int | float) and not isinstance(r.get(col.key), bool)
                for r in records
            )
            cells = [col.cell(r.get(col.key)) for r in records]
            if numeric:  # a number is never folded or cut: the column is as wide as its widest
                width = max([len(col.title), *map(len, cells)])
                table.add_column(col.title, justify="right", no_wrap=True, min_width=width)
            else:
                table.add_column(col.title, justify="left", overflow="fold")
        for record in records:
            table.add_row(*(col.cell(record.get(col.key)) for col in shown))
        tables.append(table)
    return tables


def runs_table(runs: Sequence[Run]) -> Table:
    """The stored runs, newest first; a failed run says why in its last column."""
    from rich import box
    from rich.table import Table

    table = Table(title="stored runs", title_justify="left", box=box.SIMPLE_HEAD)
    table.add_column("id", justify="right", no_wrap=True)
    table.add_column("experiment", no_wrap=True)
    table.add_column("status", no_wrap=True)
    table.add_column("started (UTC)", no_wrap=True)
    table.add_column("records", justify="right", no_wrap=True)
    table.add_column("params, or why it failed", overflow="fold")
    for run in runs:
        table.add_row(
            str(run.run_id),
            run.experiment,
            run.status,
            run.started[:19].replace("T", " "),
            str(len(run.records)),
            run.error if run.error else _params_line(run.params),
        )
    return table


def run_header(run: Run) -> str:
    """What `daemonlab results RUN_ID` says before the run's tables."""
    started = run.started[:19].replace("T", " ")
    where = f"{run.env.get('hostname', '?')}, Python {run.env.get('python', '?')}"
    lines = [f"run {run.run_id}: {run.experiment}, {run.status}, started {started} UTC on {where}"]
    lines.append(f"params: {_params_line(run.params)}")
    if run.error:
        lines.append(f"why it {run.status}: {run.error}")
    return "\n".join(lines)


def _params_line(params: dict[str, Any]) -> str:
    return " ".join(f"{k}={fmt(v).replace(', ', ',')}" for k, v in params.items())


@contextmanager
def progress_bar(label: str) -> Iterator[Progress]:
    """A Progress callback drawing a rich bar on stderr (stdout stays clean for --json)."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    bar = Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),  # "0/?" until the experiment says how many: never "0/None"
        TimeElapsedColumn(),
        console=console(stderr=True),
        transient=True,
    )
    task = bar.add_task(label, total=None)

    def update(done: int, total: int, text: str) -> None:
        bar.update(task, completed=done, total=total, description=f"{label} {text}".strip())

    with bar:
        yield update
