"""Presenting runs in a terminal: rich tables and a progress bar.

The experiments return records and never print; this module is where they
become a table a person reads. rich is imported on first use, not at start.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from lab.runs import Progress, Run

if TYPE_CHECKING:
    from rich.console import Console
    from rich.table import Table

__all__ = ["console", "fmt", "progress_bar", "records_table", "runs_table"]


def console(stderr: bool = False) -> Console:
    from rich.console import Console

    out = Console(stderr=stderr, highlight=False)
    if not out.is_terminal:  # a pipe or a file: no terminal width to respect, keep tables whole
        out.width = 160
    return out


def fmt(value: Any) -> str:
    """Numbers to a width a table can hold: seconds to ms precision, ratios to 3 digits."""
    if isinstance(value, bool) or value is None:
        return "-" if value is None else ("yes" if value else "no")
    if isinstance(value, float):
        if value == 0 or 0.001 <= abs(value) < 100_000:
            return f"{value:.3f}" if abs(value) < 100 else f"{value:.1f}"
        return f"{value:.3g}"
    if isinstance(value, list | tuple):
        return ", ".join(fmt(v) for v in value)
    return str(value)


def records_table(run: Run, columns: Sequence[str] | None = None) -> Table:
    from rich import box
    from rich.table import Table

    keys = list(columns or [])
    if not keys:  # an experiment that lists no columns shows every key, in record order
        for record in run.records:
            keys += [k for k in record if k not in keys]
    title = f"{run.experiment}: run {run.run_id if run.run_id is not None else '-'} ({run.status})"
    table = Table(title=title, title_justify="left", box=box.SIMPLE_HEAD)
    for key in keys:
        numeric = any(isinstance(r.get(key), int | float) for r in run.records)
        table.add_column(key, justify="right" if numeric else "left")
    for record in run.records:
        table.add_row(*(fmt(record.get(key)) for key in keys))
    return table


def runs_table(runs: Sequence[Run]) -> Table:
    from rich.table import Table

    table = Table(title="stored runs", title_justify="left")
    for column in ("id", "experiment", "status", "started", "records", "python", "params"):
        table.add_column(column)
    for run in runs:
        params = " ".join(f"{k}={fmt(v)}" for k, v in run.params.items())
        table.add_row(
            str(run.run_id),
            run.experiment,
            run.status,
            run.started,
            str(len(run.records)),
            str(run.env.get("python", "?")),
            params if len(params) < 60 else params[:57] + "...",
        )
    return table


@contextmanager
def progress_bar(label: str) -> Iterator[Progress]:
    """A Progress callback drawing a rich bar on stderr (stdout stays clean for --json)."""
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    bar = Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        TextColumn("{task.completed}/{task.total}"),
        TimeElapsedColumn(),
        console=console(stderr=True),
        transient=True,
    )
    task = bar.add_task(label, total=None)

    def update(done: int, total: int, text: str) -> None:
        bar.update(task, completed=done, total=total, description=f"{label} {text}".strip())

    with bar:
        yield update
