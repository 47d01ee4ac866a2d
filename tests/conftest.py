"""Shared test fixtures: an isolated results store, a real MySQL server, leak checks.

Tests here run real processes, signals and servers. Two rules hold for all:
nothing is left behind (children reaped, descriptors closed: `no_leaks`), and
a database test fails instead of skipping when LAB_REQUIRE_DB=1 (CI sets it),
so a CI run without a server cannot pass by skipping.
"""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(autouse=True)
def results_path(tmp_path, monkeypatch) -> Path:
    """Every test gets its own results store, never the user's ./results/lab.db."""
    path = tmp_path / "lab.db"
    monkeypatch.setenv("LAB_RESULTS", str(path))
    # and its own `db up` record: never the user's, never another worker's
    monkeypatch.setenv("LAB_MYSQLD_STATE", str(tmp_path / "mysqld.json"))
    return path


@pytest.fixture(autouse=True)
def no_open_store_connections(monkeypatch):
    """Fail the test if an SQLite connection it opened (a results store's, or its own) is
    still open at its end, under every interpreter.

    3.13 warns when an open sqlite3 connection is collected (gh-105539), and pyproject's
    filterwarnings makes that a failure; 3.11 and 3.12 close it silently, so the same
    leak passed there. Every connection opened during the test is made by a subclass
    that notes its close(); one without is named here, with where it was opened.
    """
    import sqlite3
    import traceback

    opened: list[tuple[dict, str]] = []
    connect = sqlite3.connect

    class Noted(sqlite3.Connection):
        def __init__(self, *args, **kwargs) -> None:
            super().__init__(*args, **kwargs)
            self.state = {"closed": False}
            ours = [str(ROOT / part) for part in ("lab", "tests", "benchmarks", "notebooks")]
            frames = [
                f for f in traceback.extract_stack()[:-2] if f.filename.startswith(tuple(ours))
            ]
            opened.append((self.state, "".join(traceback.format_list(frames[-4:]))))

        def close(self) -> None:
            self.state["closed"] = True
            super().close()

    def noted_connect(*args, **kwargs):
        kwargs.setdefault("factory", Noted)
        return connect(*args, **kwargs)

    monkeypatch.setattr(sqlite3, "connect", noted_connect)
    yield
    left = [where for state, where in opened if not state["closed"]]
    assert not left, f"{len(left)} SQLite connection(s) left open, opened at:\n" + "\n".join(left)


def stored_runs(where=None, experiment: str | None = None) -> list:
    """The runs in the store at `where` (LAB_RESULTS when None), its connection closed."""
    from lab.results import open_store

    with open_store(where) as store:
        return store.runs(experiment)


def store_again(store, run, env: dict | None = None, status=None):
    """`run` stored once more in `store` as a new run: its records, its start and end
    (`env` and `status` in place of its own, where given). Returns the copy."""
    from lab.runs import Run

    copy = Run(run.experiment, run.params, run.env if env is None else env, started=run.started)
    store.begin(copy)
    for record in run.records:
        copy.records.append(record)  # add() numbers a record by its place in the run
        store.add(copy, record)
    copy.end(run.status if status is None else status, run.error)
    copy.finished = run.finished
    store.finish(copy)
    return copy


def open_fds() -> set[int]:
    return {int(fd) for fd in os.listdir("/proc/self/fd")}


def children() -> list[psutil.Process]:
    return psutil.Process().children(recursive=True)


@pytest.fixture
def no_leaks():
    """Fail the test if it leaves a child process or an open descriptor behind.

    A short grace period lets the kernel finish closing sockets and reaping
    exits the test already waited for; it is not a place to hide a leak.
    """
    fds_before = open_fds()
    kids_before = {p.pid for p in children()}
    yield
    deadline = time.monotonic() + 2.0
    while True:
        new_fds = open_fds() - fds_before
        new_kids = [p for p in children() if p.pid not in kids_before]
        if not new_fds and not new_kids or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    described = [f"{fd} -> {_target(fd)}" for fd in sorted(new_fds)]
    assert not new_kids, f"child processes left behind: {[(p.pid, p.name()) for p in new_kids]}"
    assert not new_fds, f"descriptors left open: {described}"


def _target(fd: int) -> str:
    try:
        return os.readlink(f"/proc/self/fd/{fd}")
    except OSError:
        return "?"


def missing(what: str, required_by: str = "LAB_REQUIRE_DB") -> None:
    """Skip a test for want of `what`, or fail it when `required_by`=1 (CI sets it)."""
    if os.environ.get(required_by) == "1":
        pytest.fail(f"{required_by}=1 but {what}")
    pytest.skip(what)


def require_service(name: str) -> None:
    """Skip (or, under LAB_REQUIRE_SERVICES=1, fail) unless service `name` answers."""
    from lab import services
    from lab.errors import LabError

    try:
        services.require(name)
    except LabError as exc:
        missing(str(exc), "LAB_REQUIRE_SERVICES")


#: Under CI=true a skipped test fails unless its reason starts with one of these:
#: what no machine of this kind can offer, said once here so CI cannot pass by skipping.
ALLOWED_SKIPS = (
    "no Docker engine",
    "no contrast in interned strings",  # test_cow: the interpreters a machine has
    "this Python has subinterpreters",  # the refusal test of 3.11, skipped from 3.12 on
)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    _no_skip_in_ci(outcome.get_result())


@pytest.hookimpl(hookwrapper=True)
def pytest_make_collect_report(collector):
    """A whole module skipped (pytest.skip(..., allow_module_level=True)) is a collect
    report, not a test's: without this hook it passed under CI=true."""
    outcome = yield
    _no_skip_in_ci(outcome.get_result())


def _no_skip_in_ci(report) -> None:
    """Under CI=true, turn a skip (or an xfail: pytest.xfail() or a non-strict marker,
    which CI would otherwise count as not failing) into a failure, unless allowed."""
    if os.environ.get("CI") != "true" or not report.skipped:
        return
    if hasattr(report, "wasxfail"):
        how, reason = "expected to fail", str(report.wasxfail)
    else:
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
        how, reason = "skipped", reason.removeprefix("Skipped: ")
    if not reason.startswith(ALLOWED_SKIPS):
        report.outcome = "failed"
        report.longrepr = f"CI=true: {how}, and {reason!r} is not in ALLOWED_SKIPS (conftest.py)"


@pytest.fixture(scope="session")
def mysql_server():
    """The server the lab resolves (lab.db.server()); fails, not skips, under LAB_REQUIRE_DB=1."""
    from lab import db
    from lab.errors import LabError

    try:
        with db.server() as srv:
            yield srv
    except LabError as exc:
        missing(f"no MySQL server: {exc}")


@pytest.fixture
def low_privilege_user(mysql_server):
    """A throw-away account that may use the test database and nothing else; dropped after.

    It may connect and sleep, but not SET GLOBAL: the refusal paths need one.
    """
    from lab import db

    name, password = f"lab_t_{secrets.token_hex(4)}", secrets.token_hex(8)
    admin = db.connect(mysql_server, autocommit=True)
    try:
        with admin.cursor() as cur:
            cur.execute("CREATE USER %s@'%%' IDENTIFIED BY %s", (name, password))
            cur.execute(f"GRANT ALL ON `{mysql_server.database}`.* TO %s@'%%'", (name,))
        yield db.Server(
            mysql_server.host,
            mysql_server.port,
            name,
            password,
            mysql_server.database,
            source="test user",
        )
    finally:
        with admin.cursor() as cur:
            cur.execute("DROP USER IF EXISTS %s@'%%'", (name,))
        admin.close()


def assert_refused(result: subprocess.CompletedProcess, *says: str) -> None:
    """The lab's promise for bad input: one line on stderr, exit 2, no traceback."""
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 2, result.stderr
    assert len(lines) == 1, result.stderr
    assert "Traceback" not in result.stderr
    for needle in says:
        assert needle in lines[0], lines[0]


def run_cli(*args: str, timeout: float = 120, env: dict | None = None, **kwargs):
    """`python -m lab ARGS` in a real child process, with this checkout importable."""
    full_env = {**os.environ, "PYTHONPATH": str(ROOT), **(env or {})}
    return subprocess.run(
        [sys.executable, "-m", "lab", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=full_env,
        **kwargs,
    )


def wait_until(predicate, timeout: float, what: str, step: float = 0.05, meanwhile=None):
    """predicate()'s first true value within `timeout` s, looking every `step` s (and
    calling `meanwhile` between looks); an AssertionError that names `what` if none came."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        if meanwhile is not None:
            meanwhile()
        time.sleep(step)
    raise AssertionError(f"timed out after {timeout:g}s waiting for {what}")


def free_port() -> int:
    """A TCP port nobody listens on now (the kernel's pick for port 0)."""
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture
def throwaway_redis(tmp_path):
    """A redis-server of the test's own on a free port: (url, its Popen), to kill at will.

    Never the shared one on 6379: a test that kills its broker mid-run kills this.
    """
    import shutil
    import socket

    from lab import children

    server = shutil.which("redis-server")
    if server is None:
        missing(
            "redis-server is not installed (apt-get install redis-server)", "LAB_REQUIRE_SERVICES"
        )
    port = free_port()
    proc = subprocess.Popen(
        [server, "--port", str(port), "--bind", "127.0.0.1", "--save", "",
         "--appendonly", "no", "--dir", str(tmp_path)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )  # fmt: skip
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            break
        except OSError:
            time.sleep(0.05)
    try:
        yield f"redis://127.0.0.1:{port}/0", proc
    finally:
        children.stop_popen(proc)


def narrowest_width(renderable) -> int:
    """The fewest columns `renderable` (a rich Table) fits in without cropping a word or a
    number, measured on a console wide enough not to clamp it. Rendered at 80 columns,
    rich crops to fit, so the rendered lines are never wider than 80 whatever the table:
    only this measure can say that a table needs more."""
    from rich.console import Console

    with open(os.devnull, "w") as sink:
        return Console(width=10_000, file=sink).measure(renderable).minimum
