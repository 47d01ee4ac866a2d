"""Everything the lab prints fits an 80-column terminal without a word cut in two.

rich crops and folds to the console, so a table rendered at 80 columns is never
wider than 80 whatever it needs: what is measured here is the width each table
or message NEEDS (tests/conftest.py narrowest_width), and a failure names it.
A sentence may fold at its spaces; a word, a number, a name may not.

Every lesson's tables are rendered from real records (tests/data/tables.json:
per lesson and part, the records with the widest cells of real runs on a
2-core machine, and what those runs noted); after a change to a lesson's
COLUMNS, rewrite it from a store that holds a run of each part:
`LAB_RESULTS=... python -m tests.test_widths`.
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import pytest

from lab import experiments, report
from lab.runs import Run, Status
from tests.conftest import narrowest_width, run_cli, store_again

WIDTH = 80
DATA = Path(__file__).parent / "data" / "tables.json"


def _stored_runs() -> list[Run]:
    return [Run(**fields) for fields in json.loads(DATA.read_text())]


def _rendered(renderable, width: int = WIDTH) -> str:
    from rich.console import Console

    with open("/dev/null", "w") as sink:
        out = Console(width=width, record=True, file=sink, color_system=None)
        out.print(renderable)
        return out.export_text()


def _fits(renderable, words: list[str]) -> None:
    """Needs at most WIDTH, and rendered at WIDTH every word is whole on one line."""
    text = _rendered(renderable)
    assert narrowest_width(renderable) <= WIDTH, text
    for word in words:
        assert word in text, f"{word!r} cut in\n{text}"


RUNS = _stored_runs() if DATA.exists() else []  # absent only while _write_data writes it


@pytest.mark.parametrize("run", RUNS, ids=[f"{r.experiment}-{r.run_id}" for r in RUNS])
def test_every_lesson_table_needs_at_most_80_columns(run):
    module = experiments.load(run.experiment)
    for table, (part, columns) in zip(
        report.records_tables(run, module.COLUMNS),
        report.parts(module.COLUMNS, run.records),
        strict=True,
    ):
        cells = [
            column.cell(record.get(column.key))
            for record in run.records
            if not part or record.get("part") == part
            for column in columns
            if not column.wide
        ]
        _fits(table, [word for cell in cells for word in cell.split()])


def test_the_stored_records_cover_every_lesson():
    assert {r.experiment for r in RUNS} == set(experiments.names())


def test_the_runs_list_needs_at_most_80_columns():
    table = report.runs_table(RUNS)
    _fits(table, [f"{r.experiment}" for r in RUNS])


@pytest.mark.parametrize("run", [r for r in RUNS if r.env.get("notes")],
                         ids=lambda r: f"{r.experiment}-{r.run_id}")  # fmt: skip
def test_notes_and_missing_tools_fold_at_spaces_under_a_table(run, monkeypatch):
    """What cli._print_tables prints after a run's tables, through that function: the
    run's notes, and a line for each tool and server, as doctor words them when missing."""
    from argparse import Namespace

    from rich.console import Console

    from lab import cli

    missing = {name: said for name, said in _nothing_there(monkeypatch)}
    run = Run(**{**vars(run), "env": {**run.env, "missing": missing}})
    with open("/dev/null", "w") as sink:
        out = Console(width=WIDTH, record=True, file=sink, color_system=None)
        monkeypatch.setattr(cli, "_console", lambda: out)
        module = experiments.load(run.experiment)
        cli._print_tables(run, module, Namespace(wide=False, columns=None))
        text = out.export_text()
    assert max(map(len, text.splitlines())) <= WIDTH
    for said in [*run.env["notes"], *report.missing(run)]:
        for word in said.split():
            assert word in text, f"{word!r} cut in\n{text}"


def test_a_plain_warning_folds_at_spaces_to_the_terminal():
    said = "daemonlab: warning: " + "a long warning about what this run began with " * 4
    lines = report.wrapped(said, WIDTH).splitlines()
    assert max(map(len, lines)) <= WIDTH and len(lines) > 1
    assert " ".join(" ".join(lines).split()) == " ".join(said.split())
    assert report.wrapped(said) == said or max(map(len, report.wrapped(said).splitlines())) <= WIDTH


def test_the_lessons_list_needs_at_most_80_columns():
    from lab import cli

    _fits(cli.lessons_table(), experiments.names())


def test_doctor_needs_at_most_80_columns(monkeypatch):
    """Its tools and servers as found here, and each as it reads when missing."""
    from lab import doctor

    rows = [*doctor.tools(), *doctor.servers(), *_nothing_there(monkeypatch)]
    _fits(doctor.table(rows), [word for _, said in rows for word in said.split()])


def _nothing_there(monkeypatch) -> list[tuple[str, str]]:
    """doctor's rows for every tool and server missing: what a fresh machine shows."""
    from lab import doctor, services

    for service in services.SERVICES.values():  # port 1: refused at once
        monkeypatch.setenv(service.env, service.default_url.split("://")[0] + "://127.0.0.1:1")
    monkeypatch.setenv("PATH", "/nonexistent")
    return [*doctor.tools(), *doctor.servers()]


@pytest.mark.parametrize("command", [
    [], ["run"], ["run", "sleep"], ["run", "ipc"], ["plot"], ["results"], ["export"], ["db"],
    ["doctor"], ["tour"], ["compare"], ["report"], ["bench", "ab"], ["bench", "compare"],
    ["serve"], ["worker", "start"], ["daemon", "start"], ["signals"],
])  # fmt: skip
def test_every_help_fits_80_columns(command):
    done = run_cli(*command, "--help", env={"COLUMNS": str(WIDTH)})
    assert done.returncode == 0, done.stderr
    _help_fits(done.stdout)


def _help_fits(text: str) -> None:
    """No line past WIDTH, and none that ends in a word's hyphen (one-thread-per-/connection:
    argparse's textwrap breaks there)."""
    wide = [line for line in text.splitlines() if len(line) > WIDTH]
    assert not wide, "\n".join(wide)
    cut = [line for line in text.splitlines() if re.search(r"\w-$", line)]
    assert not cut, "a word cut at its hyphen:\n" + "\n".join(cut)


def _write_data(where: str | None = None) -> None:
    """tests/data/tables.json from a store: per lesson and part, the runs' records with
    the widest cell of each column, their notes and what they missed."""
    from lab.results import open_store

    with open_store(where, readonly=True) as store:
        runs = store.runs(measured=True)
    chosen: dict[tuple[str, str, str], dict] = {}
    for run in reversed(runs):  # oldest first: a newer run of a part replaces an older
        if run.status != "ok":
            continue
        module = experiments.load(run.experiment)
        for part, columns in report.parts(module.COLUMNS, run.records):
            records = [r for r in run.records if not part or r.get("part") == part]
            widest = {
                id(max(records, key=lambda r, c=c: len(c.cell(r.get(c.key))))): None
                for c in columns
            }
            kept = [r for r in records if id(r) in widest]
            env = {k: run.env[k] for k in ("notes", "missing") if run.env.get(k)}
            chosen[run.experiment, part, json.dumps(run.params)] = {
                "experiment": run.experiment, "params": run.params, "env": env,
                "records": kept, "status": run.status, "started": run.started,
                "run_id": run.run_id,
            }  # fmt: skip
    DATA.write_text(json.dumps(list(chosen.values()), indent=1) + "\n")
    print(f"wrote {DATA}: {len(chosen)} tables")


if __name__ == "__main__":
    _write_data(sys.argv[1] if len(sys.argv) > 1 else None)


def test_results_in_a_pipe_honours_columns(results_path):
    """`COLUMNS=80 daemonlab results | head`: a pipe has no terminal width, COLUMNS gives one."""
    from lab.results import open_store

    with open_store(results_path) as store:
        for stored in RUNS[:8]:
            store_again(store, stored, status=Status.OK)
    done = run_cli("results", env={"COLUMNS": str(WIDTH)})
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert len(lines) > 8 and max(map(len, lines)) <= WIDTH, done.stdout


def test_the_bench_verdicts_need_at_most_80_columns():
    """bench ab's table: a test id runs to 97 characters; ratio, p and the verdict were
    cropped off the right (the fork row's verdict became six blank lines)."""
    from lab.bench.verdict import Rules, Verdict, table

    long = "benchmarks/test_prefork.py::test_no_request_fails_across_hup_and_usr2_and_a_killed_worker_is_back_in_100_ms"  # noqa: E501 - the point
    verdicts = [
        Verdict(long, "wall", [0.0123, 0.0124], [0.0125, 0.0126], 1.0234, 0.987, 1.045, 0.167,
                False, "1.02x but not significant (p = 0.167)"),
        Verdict(long, "instructions", [123456789.0], [123466789.0], 1.0001, 1.0, 1.0002, None,
                False, "+0.010%"),
        Verdict("benchmarks/test_fork.py::test_fork_read_and_collect_a_small_list_structure",
                "wall", [12.5, 12.6], [], None, None, None, None, True,
                "only in base: gone or renamed"),
    ]  # fmt: skip
    results = {"base": {"ref": "origin/main", "commit": "a8122e6" * 6}, "head": {"ref": "HEAD"},
               "rounds": 5}  # fmt: skip
    shown = table(verdicts, results, Rules(0.15, 0.01, 0.01))
    _fits(shown, ["1.02x", "0.987-1.045", "0.167", "1.0000-1.0002", "FAIL", "renamed"])


@pytest.mark.parametrize("name", ["sleep", "ipc", "managers", "prefork"])
def test_a_comparison_by_label_needs_at_most_80_columns(name):
    from lab import compare

    mine = [r for r in RUNS if r.experiment == name]
    runs = [Run(**{**vars(r), "label": ("alice", "bob")[n % 2]}) for n, r in enumerate(mine)]
    module = experiments.load(name)
    result = compare.compare(module, runs, "label")
    _fits(compare.table(result, module), result.groups)


@pytest.mark.parametrize("name", experiments.names())
def test_every_lessons_run_help_fits_80_columns(name, monkeypatch):
    from lab import cli

    monkeypatch.setenv("COLUMNS", str(WIDTH))  # what argparse folds to
    _help_fits(cli._run_parser(name, experiments.load(name)).format_help())
