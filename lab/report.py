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
import os
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from lab.runs import Progress, Record, Run

if TYPE_CHECKING:
    from rich.console import Console
    from rich.table import Table

__all__ = [
    "BYTES",
    "Column",
    "Columns",
    "console",
    "fmt",
    "missing",
    "progress_bar",
    "records_tables",
    "run_header",
    "runs_table",
    "size_text",
    "wrapped",
]


@dataclass(frozen=True)
class Column:
    """One column of an experiment's table.

    key     the record key it shows
    header  what the header says, with the unit: "wall s", "rtt µs" (default: key)
    format  a format spec for numbers (".3f", ".1f", ",d", ".0%"), or BYTES for a size
            in bytes ("64 B", "64 KiB", "1 MiB"); "" shows text as it is
    wide    shown only with --wide (or when named in --columns)
    zero    what a 0 means, said in words ("any rate": cron's crossing at 0 jobs/h)
    """

    key: str
    header: str = ""
    format: str = ""
    wide: bool = False
    zero: str = ""

    @property
    def title(self) -> str:
        return self.header or self.key

    def cell(self, value: Any) -> str:
        if value is None or value == "":
            return "-"
        if isinstance(value, bool):
            return "yes" if value else "no"
        if value == 0 and self.zero:
            return self.zero
        if isinstance(value, int | float) and self.format:
            if isinstance(value, float) and not math.isfinite(value):
                return str(value)
            if self.format == BYTES:
                return size_text(value)
            return format(value, self.format)
        return fmt(value)


#: Column.format for a size in bytes: 1048576 reads as "1 MiB", not seven digits to count.
BYTES = "bytes"


def size_text(size: float) -> str:
    """A size in bytes in its largest binary unit that keeps it whole: 65536 -> 64 KiB."""
    for unit, shift in (("GiB", 30), ("MiB", 20), ("KiB", 10)):
        scale = 1 << shift
        if size >= scale and size % scale == 0:
            return f"{int(size // scale)} {unit}"
    return f"{size:g} B"


#: What an experiment's COLUMNS may be: one list, or one list per record `part`.
Columns = Sequence[Column | str] | Mapping[str, Sequence[Column | str]]


def console(stderr: bool = False) -> Console:
    from rich.console import Console

    out = Console(stderr=stderr, highlight=False)
    # A pipe or a file has no terminal width: keep tables whole, unless COLUMNS says one
    # (`COLUMNS=80 daemonlab results | head` is read where the user set it).
    if not out.is_terminal and not os.environ.get("COLUMNS", "").isdigit():
        out.width = 160
    return out


def wrapped(text: str, width: int | None = None, indent: str = "  ") -> str:
    """A plain line (a warning, a note) folded at spaces to `width`, the lines after the
    first indented: a terminal cuts a long line inside a word. Without `width`: stderr's
    terminal, or COLUMNS; to a pipe or a file with neither, the line stays whole."""
    import textwrap

    width = width or _stderr_columns()
    if width is None:
        return text
    return textwrap.fill(
        text, width, subsequent_indent=indent, break_long_words=False, break_on_hyphens=False
    )


def _stderr_columns() -> int | None:
    import sys

    columns = os.environ.get("COLUMNS", "")
    if columns.isdigit():
        return int(columns)
    try:
        return os.get_terminal_size(sys.stderr.fileno()).columns
    except (OSError, ValueError, AttributeError):  # not a terminal, or no stderr at all
        return None


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
            title=f"{name}: run {run_id} ({run.status})",
            title_justify="left",
            box=box.SIMPLE_HEAD,
            pad_edge=False,  # two columns more for the figures at 80
        )
        for col in shown:
            numeric = any(
                isinstance(r.get(col.key), int | float) and not isinstance(r.get(col.key), bool)
                for r in records
            )
            cells = [col.cell(r.get(col.key)) for r in records]
            width = max([len(col.title), *map(len, cells)])
            if numeric:  # a number is never folded or cut: the column is as wide as its widest
                table.add_column(col.title, justify="right", no_wrap=True, min_width=width)
            elif not any(" " in cell for cell in cells):  # words ("remote-objects"): the same
                table.add_column(col.title, justify="left", no_wrap=True, min_width=width)
            else:  # sentences fold, at spaces
                table.add_column(col.title, justify="left", overflow="fold")
        for record in records:
            table.add_row(*(col.cell(record.get(col.key)) for col in shown))
        tables.append(table)
    return tables


def runs_table(runs: Sequence[Run]) -> Table:
    """The stored runs, newest first, one line each where it can be: the params a run
    changed from its lesson's defaults (all of them: `results RUN_ID`), or why it failed."""
    from rich import box
    from rich.table import Table
    from rich.text import Text

    table = Table(title="stored runs", title_justify="left", box=box.SIMPLE_HEAD, pad_edge=False)
    table.add_column("id", justify="right", no_wrap=True)
    table.add_column("lesson", no_wrap=True)
    table.add_column("status", no_wrap=True)
    table.add_column("started UTC", no_wrap=True)
    table.add_column("records", justify="right", no_wrap=True)
    table.add_column("label, changed params, or why it failed", overflow="fold")
    defaults: dict[str, dict[str, Any]] = {}
    for run in runs:
        if run.experiment not in defaults:
            defaults[run.experiment] = _defaults(run.experiment)
        said = _gist(run.error) or _params_line(run.params, defaults[run.experiment])
        table.add_row(
            str(run.run_id),
            run.experiment,
            run.status,
            run.started[5:16].replace("T", " "),  # month-day hour:minute: `results ID` has all
            str(len(run.records)),
            Text(f"[{run.label}] {said}" if run.label else said),  # text, never markup
        )
    return table


def _gist(error: str | None, most: int = 90) -> str:
    """A failure's reason on one line, its first `most` characters ending at a word:
    a traceback's message can run to twenty lines (`results RUN_ID` shows it whole)."""
    import textwrap

    return textwrap.shorten(" ".join((error or "").split()), most, placeholder=" …")


def _defaults(experiment: str) -> dict[str, Any]:
    """A lesson's default params as a stored run holds them (JSON: lists, not tuples)."""
    import dataclasses
    import json

    from lab import experiments
    from lab.errors import LabError

    try:
        params = dataclasses.asdict(experiments.load(experiment).Params())
    except LabError:  # a lesson this checkout no longer has: every param is news
        return {}
    return json.loads(json.dumps(params))


def missing(run: Run) -> list[str]:
    """What a run could not measure for want of a tool or a server, one line each with the
    way to get it (the experiment's own words: "prosody is not installed (`apt-get install
    prosody` ...)"). env["missing"] is a lesson's: one reason, a list, or one per part."""
    said = run.env.get("missing") or []
    if isinstance(said, str):
        return [said]
    if isinstance(said, Mapping):
        return [f"{part}: {why}" for part, why in said.items()]
    return [str(why) for why in said]


def run_header(run: Run) -> str:
    """What `daemonlab results RUN_ID` says before the run's tables."""
    started = run.started[:19].replace("T", " ")
    where = f"{run.env.get('hostname', '?')}, Python {run.env.get('python', '?')}"
    lines = [f"run {run.run_id}: {run.experiment}, {run.status}, started {started} UTC on {where}"]
    lines.append(f"params: {_params_line(run.params)}")
    if run.error:
        lines.append(f"why it {run.status}: {run.error}")
    return "\n".join(lines)


def _params_line(params: dict[str, Any], defaults: Mapping[str, Any] | None = None) -> str:
    """key=value; ... (a list's values after ", "): it folds between values, never in one.
    With `defaults`, only what differs from them."""
    unset = object()
    changed = {k: v for k, v in params.items() if defaults is None or defaults.get(k, unset) != v}
    return "; ".join(f"{k}={_value(v)}" for k, v in changed.items()) or "defaults"


def _value(value: Any) -> str:
    """A param as it was given: 0.5 not 0.500, a list's values after ", "."""
    if isinstance(value, list | tuple):
        return ", ".join(map(_value, value))
    return f"{value:g}" if isinstance(value, float) else fmt(value)


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
