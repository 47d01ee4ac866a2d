"""The tables of daemonize, fork, spawn, cow, cpu and signals, at 80 columns.

Each lesson runs small for real, and its table is rendered as the CLI renders
it (lab.report.records_tables) on a console 80 columns wide. Readable means:
no line wider than the terminal, no cell cut with an ellipsis, and every
number whole on one line (rich may fold text, never a figure). `--wide`
adds columns; it may need a wider terminal, so only the default is held to 80.
A word (a strategy, a method, a path) is held to the same rule as a number:
only sentences (a fact, what was observed) may fold.
"""

from __future__ import annotations

import pytest

from lab import experiments, report
from tests.conftest import narrowest_width

WIDTH = 80

#: Small real runs, one per lesson: every part each has, so every table is seen.
QUICK = {
    "daemonize": {"impl": ("lab", "python-daemon")},
    "fork": {"fact": (1, 11, 15)},
    "spawn": {
        "method": ("thread", "posix_spawn", "mp_forkserver"),
        "repeat": 2,
        "rss": (30,),
        "rss_repeat": 2,
        "threads": 20,
        "processes": 1,
    },
    "cow": {"structure": ("small_ints",), "size": 10_000},
    "cpu": {"workers": (2,), "work": 100_000, "repeat": 2, "pings": 5},
    "signals": {"fact": (1, 8), "state": ("sleep", "wakeup-fd"), "samples": 3},
}


@pytest.fixture(scope="module", params=sorted(QUICK))
def lesson(request):
    module = experiments.load(request.param)
    run = module.run(module.Params(**QUICK[request.param]))
    assert run.status == "ok"
    return module, run


def _rendered(table) -> list[str]:
    from rich.console import Console

    out = Console(width=WIDTH, record=True, file=open("/dev/null", "w"), color_system=None)
    out.print(table)
    out.file.close()
    return out.export_text().splitlines()


def test_every_part_has_a_table_that_fits_80_columns(lesson) -> None:
    module, run = lesson
    parts = report.parts(module.COLUMNS, run.records)
    assert {r.get("part", "") for r in run.records} <= {p for p, _ in parts} | {""}
    for table, (part, columns) in zip(
        report.records_tables(run, module.COLUMNS), parts, strict=True
    ):
        lines = _rendered(table)
        assert narrowest_width(table) <= WIDTH, "\n".join(lines)
        assert not any("…" in line for line in lines), "\n".join(lines)
        text = "\n".join(lines)
        for record in (r for r in run.records if not part or r.get("part") == part):
            for column in columns:
                cell = column.cell(record.get(column.key))
                if column.wide or " " in cell:
                    continue  # not shown, or a sentence, which may fold
                assert cell in text, f"{part} {column.key}: {cell!r} cut in\n{text}"


def test_every_default_column_has_a_unit_or_needs_none(lesson) -> None:
    """A number's header says its unit ("wall s", "median ms") unless it is a count."""
    module, _ = lesson
    columns = module.COLUMNS.values() if isinstance(module.COLUMNS, dict) else [module.COLUMNS]
    for cols in columns:
        for column in cols:
            assert isinstance(column, report.Column), column
            if column.format and column.format[-1] == "f":
                assert column.header.split()[-1] in UNITS, column
            elif column.format:
                assert column.format[-1] == "d", column


UNITS = {"s", "ms", "MB", "kB", "Mloop/s", "±%", "speedup"}


def test_crons_crossing_at_zero_reads_any_rate():
    """daemon-signal never wakes: the daemon is cheaper at any rate, once printed 0.00."""
    cron = experiments.load("cron")
    (column,) = [c for c in cron.COLUMNS["crossing"] if c.key == "cpu_cross_per_h"]
    assert column.cell(0.0) == "any rate" and column.cell(12.123) == "12.12"
    assert column.cell(None) == "-"  # never: a daemon job costing more than a cron tick
