"""The command line's own promises: fast start, every command answers, bad input in one line."""

from __future__ import annotations

import argparse
import subprocess
import sys

import pytest

from lab import children, cli, experiments
from tests.conftest import ROOT, assert_refused, run_cli


def test_import_lab_loads_no_heavy_library():
    probe = (
        "import sys, lab, lab.cli\n"
        "heavy = {'matplotlib', 'rich', 'pymysql', 'aiomysql', 'psutil', 'numpy'}\n"
        "print(sorted(heavy & set(sys.modules)))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, cwd=ROOT, timeout=60
    )
    assert result.stdout.strip() == "[]", result.stdout + result.stderr


def test_python_dash_m_lab_is_the_same_command_line():
    result = run_cli("--help")
    assert result.returncode == 0
    for command in ("list", "run", "plot", "results", "export", "db", "doctor", "tour"):
        assert command in result.stdout


def _commands(parser: argparse.ArgumentParser, path: tuple[str, ...] = ()):
    """Every command and subcommand the parser knows, as (path, its parser)."""
    yield path, parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from _commands(sub, (*path, name))


def test_every_command_and_subcommand_has_a_help_page():
    # argparse expands %-formats in help strings only when --help is asked for:
    # a bare "15%" there was a traceback on `bench compare --help`.
    found = list(_commands(cli._parser()))
    assert ("bench", "compare") in [path for path, _ in found]
    for path, parser in found:
        assert parser.format_help(), path


def test_list_names_every_experiment():
    result = run_cli("list")
    assert result.returncode == 0, result.stderr
    for name in experiments.names():
        assert name in result.stdout


@pytest.mark.parametrize("name", experiments.names())
def test_every_experiment_has_its_own_help(name):
    result = run_cli("run", name, "--help")
    assert result.returncode == 0 and "--full" in result.stdout


def test_unknown_command_and_option_are_refused_without_traceback():
    for args in (["fly"], ["run", "sleep", "--clients", "1", "--colour"]):
        result = run_cli(*args)
        assert result.returncode != 0 and "Traceback" not in result.stderr


def test_plot_without_stored_runs_says_what_to_do():
    result = run_cli("plot", "sleep")
    assert result.returncode != 0 and "Traceback" not in result.stderr
    assert "daemonlab run sleep" in result.stderr


@pytest.mark.db
def test_doctor_reports_python_fork_cores_and_the_server(mysql_server):
    result = run_cli("doctor")
    assert result.returncode == 0, result.stderr
    for fact in ("GIL", "fork", "start methods", "cores", "mysql", "docker"):
        assert fact in result.stdout
    assert mysql_server.safe_url() in result.stdout.replace("\n", "")


@pytest.mark.db
def test_db_status_names_the_server_and_its_limit(mysql_server):
    result = run_cli("db", "status")
    assert result.returncode == 0, result.stderr
    assert "max_connections" in result.stdout and "version" in result.stdout


@pytest.mark.db
def test_plot_draws_a_png_from_stored_runs(mysql_server, tmp_path):
    assert run_cli("run", "sleep", "--clients", "1,2", "--seconds", "0.1").returncode == 0
    target = tmp_path / "sleep.png"
    result = run_cli("plot", "sleep", "-o", str(target))
    assert result.returncode == 0, result.stderr
    assert target.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_plotting_another_experiments_run_is_refused_naming_it(results_path):
    from lab.results import open_store
    from lab.runs import Run, Status

    with open_store(results_path) as store:
        for experiment in ("sleep", "cpu"):
            run = Run(experiment, {}, {}, started="now")
            store.begin(run)
            run.end(Status.OK)
            store.finish(run)
    result = run_cli("plot", "sleep", "--run", "1", "--run", "2")
    assert result.returncode == 2 and "run 2 is a cpu run, not sleep" in result.stderr


def _stored(results_path, experiment: str, status: str, records: list[dict], error=None) -> int:
    """A run written straight into the store, as any front door would leave it."""
    from lab.results import open_store
    from lab.runs import Run, Status

    with open_store(results_path) as store:
        run = Run(experiment, {"fact": [1]}, {"python": "3.11"}, started="2026-12-02T10:00:00")
        store.begin(run)
        for record in records:
            run.records.append(record)
            store.add(run, record)
        run.end(Status(status), error)
        store.finish(run)
    return run.run_id


def test_a_mistyped_option_is_one_line_that_says_what_was_meant():
    result = run_cli("run", "fork", "--fcat", "1")
    assert_refused(result, "unrecognized arguments: --fcat", "did you mean --fact?")
    assert_refused(run_cli("rnu"), "invalid choice: 'rnu'", "did you mean run?")


def test_an_old_option_name_still_works_but_is_not_listed(results_path):
    old = run_cli("run", "fork", "--facts", "1", "--json", "--no-store")
    assert old.returncode == 0, old.stderr
    assert '"fact": [\n      1\n    ]' in old.stdout  # stored under the one name
    help_text = run_cli("run", "fork", "--help").stdout
    assert "--fact " in help_text and "--facts" not in help_text
    assert "one of: 1, 2, 3," in " ".join(help_text.split())  # the choices, not a bare V


def test_results_of_one_run_prints_its_table_again(results_path):
    run_id = _stored(results_path, "fork", "ok", [{"number": 1, "fact": "x", "holds": True}])
    result = run_cli("results", str(run_id))
    assert result.returncode == 0, result.stderr
    assert f"run {run_id}: fork, ok" in result.stdout
    assert "holds" in result.stdout and "yes" in result.stdout


def test_results_says_why_a_run_failed(results_path):
    run_id = _stored(results_path, "fork", "failed", [], error="LabError: the server went away")
    listing = run_cli("results")
    assert "the server went away" in listing.stdout, listing.stdout
    one = run_cli("results", str(run_id))
    assert "why it failed: LabError: the server went away" in one.stdout


def test_export_and_results_refuse_an_unknown_experiment(results_path):
    assert_refused(run_cli("export", "nosuch"), "unknown experiment 'nosuch'")
    assert_refused(run_cli("results", "nosuch"), "unknown experiment 'nosuch'")


@pytest.mark.parametrize(
    "target, says",
    [
        ("/proc/x.csv", "inside /proc"),
        ("/nonexistent-dir/x.csv", "cannot write"),
        ("/tmp", "cannot write"),
    ],
)
def test_export_to_a_place_it_cannot_write_is_one_line(results_path, target, says):
    _stored(results_path, "fork", "ok", [{"number": 1}])
    assert_refused(run_cli("export", "-o", target), says)


def test_plot_to_a_place_it_cannot_write_is_one_line(results_path):
    fact = {"number": 1, "fact": "fork returns twice", "holds": True, "python": "3.11"}
    _stored(results_path, "fork", "ok", [fact])
    assert_refused(run_cli("plot", "fork", "-o", "/proc/x.png"), "'/proc/x.png' is inside /proc")
    under_a_file = "/etc/hostname/x.png"  # not a directory, even for root
    assert_refused(run_cli("plot", "fork", "-o", under_a_file), f"cannot write {under_a_file}")


def test_plot_leaves_failed_runs_out(results_path):
    _stored(results_path, "fork", "failed", [{"number": 1, "holds": False}], error="boom")
    assert_refused(run_cli("plot", "fork"), "no stored runs of 'fork'")


def test_a_run_beside_busy_processes_warns_that_its_timings_may_be_noisy(results_path):
    spinners = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(3)]
    try:
        result = run_cli("run", "fork", "--fact", "1", "--no-store")
    finally:
        for spinner in spinners:
            children.stop_popen(spinner)
    assert result.returncode == 0, result.stderr
    said = [line for line in result.stderr.splitlines() if "other processes took" in line]
    assert len(said) == 1 and len(said[0]) <= 80, result.stderr


@pytest.mark.parametrize(
    "args, says",
    [
        (["results", "١٢"], "is not a whole number"),
        (["results", "99999999999999999999999"], "is not a whole number"),
        (["export", "--run", "99999999999999999999999"], "--run"),
        (["run", "fork", "--label", "\udcff"], "not valid UTF-8"),
        (["export", "-o", "/proc/self/x"], "inside /proc"),
        (["plot", "sleep", "-o", "figure.nosuch"], "end it in one of"),
        (["run", "sleep", "--seconds", "1e300"], "--seconds must be at most"),
        (["run", "sleep", "--clients", "100000"], "--clients must be at most 65,535"),
        (["run", "fork", "--columns", "nosuch"], "--columns: unknown 'nosuch'"),
        (["results", "--columns", "nosuch"], "results RUN_ID --columns"),
        (["bench", "ab", "main", "--threshold", "nan"], "--threshold"),
        (["bench", "ab", "main", "--alpha", "2"], "below 1"),
        (["daemon", "status", "--timeout=--"], "expected a value, not '--'"),
        (["daemon", "check", "--config", "a\rb"], "\\r"),
    ],
)
def test_absurd_or_malformed_values_are_refused_in_one_line_before_anything_runs(
    results_path, args, says
):
    """Issue 22's bad inputs: each was a traceback, an empty table with exit 0, or a
    value accepted that the lab could not honour (`--seconds 1e300` stored `ok`)."""
    result = run_cli(*args, env={"LAB_DB_PATHS": "url", "LAB_MYSQL_URL": "mysql://x@127.0.0.1:1/x"})
    assert_refused(result, says)
    assert not results_path.exists()


def test_run_alone_lists_the_lessons_and_how_to_run_one():
    """`daemonlab run` alone is a question (what is there?), not "NAME is required"."""
    from lab import experiments

    done = run_cli("run")
    assert done.returncode == 0, done.stderr
    for name in experiments.names():
        assert name in done.stdout
    assert "daemonlab run NAME" in done.stdout and not done.stderr
