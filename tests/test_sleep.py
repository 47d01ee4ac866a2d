"""The sleep experiment against a real MySQL/MariaDB server.

What the lesson claims, checked: two clients one after another take twice as
long as two threads; every concurrent strategy really overlaps (the server
itself counts the SLEEPs running at once); nothing is left behind; and every
bad input is refused in one line.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import psutil
import pytest

from lab.errors import LabError
from lab.experiments import sleep
from lab.results import ResultsStore
from tests.conftest import ROOT, assert_refused, run_cli

pytestmark = pytest.mark.db

CONCURRENT = [
    ("threads", {}),
    ("fork", {}),
    ("pool", {"start_method": ("fork",)}),
    ("pool", {"start_method": ("forkserver",)}),
    ("pool", {"start_method": ("spawn",)}),
    ("asyncio", {"loop": ("asyncio",)}),
    ("asyncio", {"loop": ("uvloop",)}),
]


@pytest.fixture(scope="module", autouse=True)
def uvloop_started_once():
    """libuv opens a process-wide signal pipe on first use and keeps it: not a leak per run."""
    import asyncio

    import uvloop

    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        runner.run(asyncio.sleep(0))


def measure(**params):
    return sleep.run(sleep.Params(**params)).records


def test_the_slide_two_threads_take_half_the_time_of_two_in_a_row(mysql_server):
    records = measure(clients=(2,), seconds=1.0, strategy=("sequential", "threads"))
    by_strategy = {r["strategy"]: r["wall_s"] for r in records}
    # In units of the sleep: one after another is 2, together is 1 (margins for a busy machine).
    assert 1.95 <= by_strategy["sequential"] / 1.0 < 2.6
    assert 0.99 <= by_strategy["threads"] / 1.0 < 1.5
    assert by_strategy["sequential"] / by_strategy["threads"] > 1.6


def test_sequential_runs_one_query_at_a_time(mysql_server, no_leaks):
    (record,) = measure(clients=(3,), seconds=0.2, strategy=("sequential",))
    assert record["server_peak"] == 1
    assert record["efficiency"] == pytest.approx(1 / 3, rel=0.2)
    assert record["aborted_clients"] == 0


@pytest.mark.parametrize(("strategy", "extra"), CONCURRENT, ids=lambda v: str(v))
def test_every_concurrent_strategy_overlaps_on_the_server_and_leaves_nothing(
    mysql_server, no_leaks, strategy, extra
):
    (record,) = measure(clients=(6,), seconds=0.5, strategy=(strategy,), **extra)
    assert record["server_peak"] == 6, "the server saw the queries run at once"
    assert record["wall_s"] < 2 * 0.5, "overlapped, not one after another"
    assert record["aborted_clients"] == 0, "every client said goodbye (COM_QUIT)"
    assert record["connect_s"] > 0 and record["skew_s"] >= 0
    assert record["latency_min_s"] >= 0.5 * 0.99


def test_the_measured_phase_excludes_connecting(mysql_server):
    (record,) = measure(clients=(16,), seconds=0.3, strategy=("fork",))
    # wall_s starts at the release, after every child connected: it is the sleep
    # plus skew, whatever connecting 16 forked children cost.
    assert record["wall_s"] < 0.3 + record["connect_s"] + 0.2
    assert record["wall_s"] >= 0.3


def test_a_sweep_stops_each_strategy_at_its_ceiling(mysql_server):
    run = sleep.run(sleep.Params(clients=(1, 17), seconds=0.1, strategy=("sequential",)))
    assert [r["clients"] for r in run.records] == [1]
    assert run.env["skipped"] == ["sequential@17"]


def test_fork_strategy_refuses_where_fork_does_not_exist(mysql_server, monkeypatch):
    monkeypatch.delattr(os, "fork")
    with pytest.raises(LabError, match="spawn"):
        measure(clients=(2,), seconds=0.1, strategy=("fork",))


def test_run_is_stored_and_json_has_the_promised_shape(mysql_server, results_path):
    result = run_cli(
        "run", "sleep", "--clients", "2", "--seconds", "0.1", "--strategy", "threads", "--json"
    )
    assert result.returncode == 0, result.stderr
    shown = json.loads(result.stdout)
    assert {"experiment", "run_id", "env", "records"} <= shown.keys()
    assert shown["env"]["server_version"]
    stored = ResultsStore(results_path).run(shown["run_id"])
    assert stored.status == "ok" and stored.records == shown["records"]
    assert "password" not in result.stdout + json.dumps(stored.env)


# -- bad input: one line on stderr, exit 2, no traceback ------------------------------
@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["--clients", "0"], "--clients must be at least 1"),
        (["--clients", "two"], "not a valid int"),
        (["--seconds", "0"], "--seconds must be greater than 0"),
        (["--seconds", "-1"], "--seconds must be greater than 0"),
        (["--strategy", "telepathy"], "unknown value 'telepathy'"),
        (["--start-method", "vfork"], "unknown value 'vfork'"),
        (["--repeat", "0"], "--repeat must be at least 1"),
    ],
)
def test_bad_parameters_are_refused_in_one_line(args, needle):
    assert_refused(run_cli("run", "sleep", *args), needle)


def test_unknown_experiment_is_refused_in_one_line():
    assert_refused(run_cli("run", "slepe"), "unknown experiment 'slepe'")


@pytest.mark.parametrize(
    ("url", "needle"),
    [
        ("postgres://root@127.0.0.1/test", "mysql://"),
        ("mysql://root:sekret@127.0.0.1:1/test", "nothing answers"),
        ("mysql://root@127.0.0.1:3306/no_such_db_here", "unknown database"),
        ("mysql://nobody_here:sekret@127.0.0.1:3306/test", "access denied"),
    ],
)
def test_bad_servers_are_refused_in_one_line_without_the_password(mysql_server, url, needle):
    result = run_cli(
        "run",
        "sleep",
        "--clients",
        "1",
        "--seconds",
        "0.1",
        env={"LAB_MYSQL_URL": url, "LAB_DB_PATHS": "url"},
    )
    assert_refused(result, needle)
    assert "sekret" not in result.stderr + result.stdout


def test_too_many_clients_for_the_server_stops_before_connecting(mysql_server, low_privilege_user):
    from lab import db

    with db.connect(mysql_server) as conn, conn.cursor() as cur:
        cur.execute("SELECT @@max_connections")
        (limit,) = cur.fetchone()
    result = run_cli(
        "run",
        "sleep",
        "--clients",
        str(limit + 50),
        "--strategy",
        "asyncio",
        env={"LAB_MYSQL_URL": _url(low_privilege_user), "LAB_DB_PATHS": "url"},
    )
    assert_refused(result, f"max_connections is {limit}", "SET GLOBAL max_connections")


def _url(srv) -> str:
    """A URL with the password in it: for a child's environment, never for output."""
    return f"mysql://{srv.user}:{srv.password}@{srv.host}:{srv.port}/{srv.database}"


def _tagged_queries(srv) -> int:
    from lab import db

    with db.connect(srv) as conn, conn.cursor() as cur:
        cur.execute(
            "SELECT COUNT(*) FROM information_schema.PROCESSLIST WHERE INFO LIKE 'SELECT SLEEP(%'"
        )
        return cur.fetchone()[0]


def _aborted_clients(srv) -> int:
    from lab import db

    with db.connect(srv) as conn, conn.cursor() as cur:
        cur.execute("SHOW GLOBAL STATUS LIKE 'Aborted_clients'")
        return int(cur.fetchone()[1])


#: How each stop arrives: a terminal's Ctrl-C goes to the whole foreground
#: process group; `kill PID` (or a supervisor's stop) to the one process.
STOPS = {
    "ctrl-c": (signal.SIGINT, os.killpg),
    "kill-term": (signal.SIGTERM, os.kill),
}


@pytest.mark.parametrize("stop", STOPS)
@pytest.mark.parametrize("strategy", ["threads", "fork", "asyncio"])
def test_ctrl_c_or_term_mid_run_reaps_everything_and_stores_what_finished(
    mysql_server, results_path, strategy, stop
):
    signum, send = STOPS[stop]
    aborted_before = _aborted_clients(mysql_server)
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "lab",
            "run",
            "sleep",
            "--clients",
            "1,8",
            "--seconds",
            "1",
            "--strategy",
            strategy,
            "--repeat",
            "3",
        ],
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        time.sleep(4.0)  # past the first measurements, in the middle of a later one
        send(proc.pid, signum)
        out, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    assert proc.returncode == 128 + signum, err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    assert f"interrupted by {signum.name}" in err
    (run,) = ResultsStore(results_path).runs("sleep")
    assert run.status == "interrupted"
    assert 1 <= len(run.records) < 6
    # Nothing of the run survives it: no process of its group, no query on the server.
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        survivors = [p for p in psutil.process_iter(["pid"]) if _in_group(p, proc.pid)]
        if not survivors and _tagged_queries(mysql_server) == 0:
            break
        time.sleep(0.1)
    assert not survivors
    assert _tagged_queries(mysql_server) == 0
    assert _aborted_clients(mysql_server) == aborted_before, "every connection said goodbye"


def _in_group(process: psutil.Process, pgid: int) -> bool:
    try:
        return os.getpgid(process.pid) == pgid
    except (ProcessLookupError, psutil.Error):
        return False
