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
from pathlib import Path
from urllib.parse import quote

import psutil
import pytest

from lab import children
from lab.errors import LabError
from lab.experiments import sleep
from lab.results import open_store
from tests.conftest import (
    ROOT,
    assert_refused,
    missing,
    narrowest_width,
    run_cli,
    stored_runs,
    wait_until,
)

pytestmark = pytest.mark.db

CONCURRENT = [
    ("threads", {}),
    ("fork", {}),
    ("pool", {"start_method": ("fork",)}),
    ("pool", {"start_method": ("forkserver",)}),
    ("pool", {"start_method": ("spawn",)}),
    ("asyncio", {"loop": ("asyncio",)}),
    ("asyncio", {"loop": ("uvloop",)}),
    ("asyncio", {"loop": ("uvloop",), "driver": ("asyncmy",)}),
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


# A TCP proxy in a process of its own (a thread here would make the fork strategy
# fork a threaded process): each new connection waits HANDSHAKE_DELAY_S before it
# reaches the server, and MySQL's server speaks first, so every login costs that
# much; queries then pass straight through.
HANDSHAKE_DELAY_S = 0.6
SLOW_LOGIN_PROXY = """\
import asyncio, sys
upstream_host, upstream_port, delay = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])

async def pump(reader, writer):
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    except ConnectionError:
        pass
    finally:
        writer.close()

async def serve(client_reader, client_writer):
    await asyncio.sleep(delay)
    server_reader, server_writer = await asyncio.open_connection(upstream_host, upstream_port)
    await asyncio.gather(pump(client_reader, server_writer), pump(server_reader, client_writer))

async def main():
    proxy = await asyncio.start_server(serve, "127.0.0.1", 0)
    print(proxy.sockets[0].getsockname()[1], flush=True)
    await proxy.serve_forever()

asyncio.run(main())
"""


@pytest.fixture
def slow_login_server(mysql_server, monkeypatch):
    """LAB_MYSQL_URL pointing at mysql_server through a proxy that delays every login."""
    proxy = subprocess.Popen(
        [
            sys.executable,
            "-c",
            SLOW_LOGIN_PROXY,
            mysql_server.host,
            str(mysql_server.port),
            str(HANDSHAKE_DELAY_S),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        port = int(proxy.stdout.readline())
        user, password = (
            quote(part, safe="") for part in (mysql_server.user, mysql_server.password)
        )
        monkeypatch.setenv(
            "LAB_MYSQL_URL",
            f"mysql://{user}:{password}@127.0.0.1:{port}/{mysql_server.database}?ssl=disabled",
        )
        yield
    finally:
        children.stop_popen(proxy)


def test_the_measured_phase_excludes_connecting(slow_login_server):
    (record,) = measure(clients=(16,), seconds=0.3, strategy=("fork",))
    # Every login took HANDSHAKE_DELAY_S; wall_s starts at the release, after every
    # child connected, so it is the sleep plus skew and never the logins.
    assert record["connect_s"] >= HANDSHAKE_DELAY_S
    assert 0.3 <= record["wall_s"] < 0.3 + 0.2


def test_a_sweep_stops_each_strategy_at_its_ceiling_and_says_so(mysql_server):
    run = sleep.run(sleep.Params(clients=(1, 17), seconds=0.1, strategy=("sequential",)))
    measured, skipped = run.records
    assert measured["clients"] == 1 and "wall_s" in measured
    assert skipped["clients"] == 17 and skipped["skipped"] == "ceiling"
    assert "wall_s" not in skipped and skipped["note"] == "skipped"
    assert "ceiling of 16" in skipped["detail"]
    assert any("skipped sequential x17" in note for note in run.env["notes"])


def test_a_value_over_the_ceiling_is_said_in_the_output(mysql_server):
    result = run_cli(
        "run", "sleep", "--clients", "2,32", "--strategy", "sequential", "--seconds", "0.1"
    )
    assert result.returncode == 0, result.stderr
    assert "skipped sequential x32: over the sweep's ceiling of 16" in result.stdout


def test_the_table_fits_80_columns_and_no_number_is_cut(mysql_server, tmp_path):
    """Rendered by a terminal 80 columns wide (rich measures the width it is given)."""
    from rich.console import Console

    from lab.report import records_tables

    run = sleep.run(
        sleep.Params(
            clients=(2, 32), seconds=0.1, strategy=("sequential", "asyncio"),
            loop=("uvloop",), driver=("asyncmy",),
        )
    )  # fmt: skip
    out = Console(width=80, record=True, file=open(os.devnull, "w"))  # noqa: SIM115
    for table in records_tables(run, sleep.COLUMNS):
        out.print(table)
        assert narrowest_width(table) <= 80  # the lines below are never wider: rich crops
    out.file.close()
    lines = out.export_text().splitlines()
    rows = [line for line in lines if line.strip().startswith(("sequential", "asyncio"))]
    assert len(rows) == 4, "one line per record: nothing folded"
    for record, row in zip(run.records, rows, strict=True):
        if "wall_s" in record:
            assert f"{record['wall_s']:.3f}" in row and f"{record['efficiency']:.3f}" in row


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
    with open_store(results_path) as store:
        stored = store.run(shown["run_id"])
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
            "SELECT COUNT(*) FROM information_schema.PROCESSLIST"
            " WHERE INFO LIKE 'SELECT %SLEEP(%/* daemonlab %*/'"
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
@pytest.mark.parametrize("strategy", ["threads", "fork", "asyncio", "c-floor", "wire"])
def test_ctrl_c_or_term_mid_run_reaps_everything_and_stores_what_finished(
    throwaway, results_path, strategy, stop
):
    """On a server of the test's own: Aborted_clients counts the whole server, and on
    the shared one other programs' aborted connections count too."""
    _, mysql_server, url = throwaway
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
        env={**os.environ, "PYTHONPATH": str(ROOT), "LAB_MYSQL_URL": url, "LAB_DB_PATHS": "url"},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        # In the middle of the second measurement's queries: the first is stored, and
        # the clients the signal finds are each waiting on a sleep (the main thread
        # of the threads strategy in Thread.join, where CPython gh-90882 bites).
        _wait_for_sleeps(mysql_server)
        _wait_for_no_sleeps(mysql_server)
        _wait_for_sleeps(mysql_server)
        send(proc.pid, signum)
        out, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.communicate()
    assert proc.returncode == 128 + signum, err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    assert f"interrupted by {signum.name}" in err
    (run,) = stored_runs(results_path, "sleep")
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


# -- the server, the lab's own servers, and what a run leaves behind -------------------
@pytest.fixture
def throwaway():
    """A MariaDB of this test's own (never the shared one on 3306): (Mysqld, Server, URL)."""
    from lab import db, mysqld

    if mysqld.find_binary() is None:
        missing("no mariadbd or mysqld installed")
    with mysqld.throwaway() as m:
        srv = db.Server("127.0.0.1", m.port, "root", "", "test", source="test", pid=m.pid)
        yield m, srv, f"mysql://root:@127.0.0.1:{m.port}/test"


def _start_cli(*args: str, env: dict | None = None) -> subprocess.Popen:
    """`python -m lab ARGS` leading its own process group, so the test can find its children."""
    return subprocess.Popen(
        [sys.executable, "-m", "lab", *args],
        env={**os.environ, "PYTHONPATH": str(ROOT), **(env or {})},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )


def _wait_for_sleeps(srv, at_least: int = 1, timeout: float = 60) -> None:
    wait_until(lambda: _tagged_queries(srv) >= at_least, timeout, "the run's queries")


def _wait_for_no_sleeps(srv, timeout: float = 60) -> None:
    wait_until(lambda: _tagged_queries(srv) == 0, timeout, "the run's queries to end")


def _group_gone(pgid: int, timeout: float = 10) -> bool:
    deadline = time.monotonic() + timeout
    while any(_in_group(p, pgid) for p in psutil.process_iter(["pid"])):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


@pytest.mark.parametrize(
    "strategy", ["sequential", "threads", "fork", "pool", "asyncio", "c-floor", "wire"]
)
def test_a_server_killed_mid_query_is_one_line_within_seconds_and_the_run_is_stored_failed(
    throwaway, results_path, strategy
):
    m, srv, url = throwaway
    proc = _start_cli(
        "run", "sleep", "--clients", "8", "--seconds", "5", "--strategy", strategy,
        env={"LAB_MYSQL_URL": url, "LAB_DB_PATHS": "url"},
    )  # fmt: skip
    try:
        _wait_for_sleeps(srv)
        os.kill(m.pid, signal.SIGKILL)
        began = time.monotonic()
        out, err = proc.communicate(timeout=30)
        took = time.monotonic() - began
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.communicate()
    lines = err.strip().splitlines()
    assert proc.returncode == 2 and len(lines) == 1, err
    assert "the server went away mid-query" in lines[0] and "Traceback" not in err
    assert took < 10, f"{took:.1f} s to notice"
    assert _group_gone(proc.pid), "every child reaped"
    (run,) = stored_runs(results_path, "sleep")
    assert run.status == "failed" and "went away mid-query" in run.error


def test_a_server_that_cannot_be_reached_stores_no_run(results_path):
    result = run_cli(
        "run", "sleep", "--clients", "1",
        env={"LAB_MYSQL_URL": "mysql://root:x@127.0.0.1:1/test", "LAB_DB_PATHS": "url"},
    )  # fmt: skip
    assert_refused(result, "nothing answers there")
    assert not results_path.exists() or stored_runs(results_path, "sleep") == []


def _lab_servers() -> list[psutil.Process]:
    from lab import mysqld

    return [
        p
        for p in psutil.process_iter(["name", "cmdline"])
        if p.info["name"] in mysqld.SERVER_NAMES
        and any(mysqld.DIR_PREFIX in a for a in p.info["cmdline"] or ())
    ]


def _owned_by(pid: int) -> list:
    """The lab's data directories whose owner file names `pid`."""
    import tempfile

    from lab import mysqld

    found = []
    for top in Path(tempfile.gettempdir()).glob(mysqld.DIR_PREFIX + "*"):
        try:
            if json.loads((top / mysqld.OWNER_FILE).read_text())["pid"] == pid:
                found.append(top)
        except (OSError, ValueError, KeyError):
            continue
    return found


def _its_server(pid: int, timeout: float = 60) -> Path:
    deadline = time.monotonic() + timeout
    while not _owned_by(pid):
        assert time.monotonic() < deadline, "the run never started its server"
        time.sleep(0.05)
    return _owned_by(pid)[0]


def _server_of(top: Path) -> list[psutil.Process]:
    """The server serving `top` (not mariadb-install-db's bootstrap one: it has no port)."""
    return [
        p
        for p in _lab_servers()
        if f"--datadir={top / 'data'}" in p.info["cmdline"]
        and any(a.startswith("--port=") for a in p.info["cmdline"])
    ]


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_term_or_ctrl_c_with_a_throwaway_server_leaves_no_server_and_no_directory(
    results_path, signum
):
    from lab import mysqld

    if mysqld.find_binary() is None:
        missing("no mariadbd or mysqld installed")
    proc = _start_cli(
        "run", "sleep", "--clients", "4", "--seconds", "3", "--strategy", "threads",
        "--repeat", "3", env={"LAB_DB_PATHS": "throwaway"},
    )  # fmt: skip
    try:
        top = _its_server(proc.pid)
        while not _server_of(top):
            time.sleep(0.05)
        time.sleep(2)  # in the middle of the first measurement
        os.kill(proc.pid, signum)
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.communicate()
    assert proc.returncode == 128 + signum, err
    assert not top.exists() and not _server_of(top)


def test_kill_9_of_a_run_stops_its_throwaway_server_and_db_down_removes_what_is_left(
    results_path, tmp_path
):
    from lab import mysqld

    if mysqld.find_binary() is None:
        missing("no mariadbd or mysqld installed")
    state = {"LAB_MYSQLD_STATE": str(tmp_path / "mysqld.json")}
    proc = _start_cli(
        "run", "sleep", "--clients", "4", "--seconds", "3", "--strategy", "threads",
        env={"LAB_DB_PATHS": "throwaway", **state},
    )  # fmt: skip
    try:
        top = _its_server(proc.pid)
        deadline = time.monotonic() + 60
        while not _server_of(top):
            assert time.monotonic() < deadline
            time.sleep(0.05)
        os.killpg(proc.pid, signal.SIGKILL)  # the run (its watcher's own session sees EOF)
        proc.communicate()
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.communicate()
    # The kernel KILLs it (PR_SET_PDEATHSIG) the moment the run dies, even while
    # it starts (a TERM then was lost: the server ran on for 100 s).
    deadline = time.monotonic() + 10
    while _server_of(top):
        assert time.monotonic() < deadline, "the server outlived the run that started it"
        time.sleep(0.1)
    assert top.exists(), "kill -9: no finally ran, the directory is still there"
    result = run_cli("db", "down", env=state)
    assert result.returncode == 0, result.stderr
    assert f"removed {top}, left by pid {proc.pid}, which is gone" in result.stdout
    assert not top.exists()
