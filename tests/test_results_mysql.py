"""The results store on a MySQL server: the same tables and promises as the SQLite file.

Against this machine's MariaDB (a database of each test's own, with a user of
its own and a password, both dropped after), and, for the server that dies
mid-run, a throwaway server of the test's own (lab/mysqld.py), never the
shared one.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import signal
import subprocess
import sys
import time

import pytest

from lab import db, mysqld
from lab.errors import LabError
from lab.results import mysql as mysql_store
from lab.results import open_store
from lab.results.mysql import MARK
from lab.runs import collect
from tests.conftest import ROOT, run_cli, stored_runs
from tests.test_results import (
    Counting,
    counting,
    kill_a_writer_after_three_records,
    two_writers_at_once,
)

pytestmark = pytest.mark.db


@contextlib.contextmanager
def own_database(srv: db.Server):
    """A database and a user with a password for it on `srv`; the store's URL. Dropped after."""
    name = f"lab_store_t_{secrets.token_hex(4)}"
    user, password = name, secrets.token_hex(12)
    admin = db.connect(srv, autocommit=True)
    try:
        with admin.cursor() as cur:
            cur.execute(f"CREATE DATABASE `{name}`")
            cur.execute("CREATE USER %s@'%%' IDENTIFIED BY %s", (user, password))
            cur.execute(f"GRANT ALL ON `{name}`.* TO %s@'%%'", (user,))
        yield f"mysql://{user}:{password}@{srv.host}:{srv.port}/{name}", password, admin, name
    finally:
        with admin.cursor() as cur:
            cur.execute(f"DROP DATABASE IF EXISTS `{name}`")
            cur.execute("DROP USER IF EXISTS %s@'%%'", (user,))
        admin.close()


@pytest.fixture
def store_url(mysql_server, monkeypatch):
    with own_database(mysql_server) as (url, password, admin, name):
        monkeypatch.setenv("LAB_RESULTS", url)
        yield url, password, admin, name


def _env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(ROOT)}


def test_runs_and_records_round_trip_with_their_label(store_url):
    url, _, admin, name = store_url
    with open_store(label="alice") as store:
        assert type(store).__name__ == "MysqlStore"
        run = collect("counting", Counting(), counting, sink=store)
        (stored,) = store.runs("counting")
    assert stored.run_id == run.run_id and stored.status == "ok" and stored.label == "alice"
    assert stored.records == [{"i": 0, "square": 0}, {"i": 1, "square": 1}, {"i": 2, "square": 4}]
    assert stored.env["cpu_model"] and stored.env["hostname"]
    with admin.cursor() as cur:
        cur.execute(
            "SELECT TABLE_NAME, TABLE_COMMENT FROM information_schema.TABLES"
            " WHERE TABLE_SCHEMA = %s ORDER BY TABLE_NAME",
            (name,),
        )
        assert cur.fetchall() == (("records", MARK), ("runs", MARK))


def test_the_password_is_never_printed_or_stored(store_url):
    url, password, admin, name = store_url
    ran = run_cli("run", "fork", "--fact", "1", "--label", "bob")
    listed = run_cli("results")
    exported = run_cli("export", "--format", "jsonl")
    for result in (ran, listed, exported):
        assert result.returncode == 0, result.stderr
        assert password not in result.stdout + result.stderr
    assert "mysql://" in ran.stdout and ":***@" in ran.stdout  # where it went, safely said
    with admin.cursor() as cur:
        cur.execute(f"SELECT * FROM `{name}`.runs")
        runs = cur.fetchall()
        cur.execute(f"SELECT * FROM `{name}`.records")
        records = cur.fetchall()
    assert len(runs) == 1 and runs[0][10] == "bob"  # label
    assert password not in repr(runs) + repr(records)
    wrong = url.replace(password, "not-the-password")
    refused = run_cli("results", env={"LAB_RESULTS": wrong})
    assert refused.returncode == 2 and "access denied" in refused.stderr
    assert "not-the-password" not in refused.stderr


def test_two_processes_write_at_once_and_nothing_is_lost(store_url):
    two_writers_at_once()
    runs = stored_runs()
    assert len(runs) == 20 and len({r.run_id for r in runs}) == 20
    assert all(r.records == [{"i": i, "square": i * i} for i in range(20)] for r in runs)


@pytest.mark.slow
def test_a_writer_killed_mid_run_leaves_its_records_marked_interrupted(monkeypatch):
    # On a throwaway server of its own: the killed writer's connection ends without a
    # goodbye, which the shared server would count in its Aborted_clients.
    if mysqld.find_binary() is None:
        pytest.fail(
            "no mariadbd here: the throwaway server this test cuts a client off cannot start"
        )
    with mysqld.throwaway() as m:
        srv = db.Server("127.0.0.1", m.port, "root", "", "test", source="throwaway")
        with own_database(srv) as (url, _password, _admin, _name):
            monkeypatch.setenv("LAB_RESULTS", url)
            kill_a_writer_after_three_records()
            (stored,) = stored_runs()
    assert stored.status == "interrupted"
    assert stored.records == [{"i": 0}, {"i": 1}, {"i": 2}]


def test_a_store_from_before_pid_start_reads_the_same_and_gains_the_column(store_url):
    """Tables as format 1 made them: read-only they read NULL for pid_start; opened for
    writing they gain it, their rows untouched."""
    url, _, admin, name = store_url
    with admin.cursor() as cur:
        for statement in mysql_store._TABLES:
            cur.execute(
                statement.replace("runs (", f"`{name}`.runs (", 1)
                .replace("records (", f"`{name}`.records (", 1)
                .replace("    pid_start VARCHAR(80),\n", "")
            )
        cur.execute(
            f"INSERT INTO `{name}`.runs (experiment, params, env, started, status, pid, host)"
            " VALUES ('counting', '{}', '{}', 'then', 'ok', 1, 'h')"
        )
        cur.execute(f"INSERT INTO `{name}`.records VALUES (1, 0, '{{\"i\": 0.1}}')")
        cur.execute(f"SELECT * FROM `{name}`.runs")
        before = cur.fetchall()
    with open_store(url, readonly=True) as store:
        (old,) = store.runs()
    assert (old.status, old.records) == ("ok", [{"i": 0.1}])
    with open_store(url) as store:
        collect("counting", Counting(), counting, sink=store)
        assert [r.to_json() for r in store.runs()][1:] == [old.to_json()]
    with admin.cursor() as cur:
        cur.execute(f"SELECT * FROM `{name}`.runs WHERE id = 1")
        assert cur.fetchall() == (before[0] + (None,),)
        cur.execute(f"SELECT pid_start FROM `{name}`.runs WHERE id = 2")
        assert cur.fetchone()[0]


def test_another_applications_tables_are_refused_and_left_untouched(store_url):
    url, _, admin, name = store_url
    with admin.cursor() as cur:
        cur.execute(f"CREATE TABLE `{name}`.runs (id INT PRIMARY KEY, lap_time DOUBLE)")
        cur.execute(f"INSERT INTO `{name}`.runs VALUES (1, 61.5)")
    for args in (("results",), ("run", "fork", "--fact", "1")):
        result = run_cli(*args)
        assert result.returncode == 2, result.stderr
        (line,) = result.stderr.strip().splitlines()
        assert "cannot be used" in line and "the lab did not create (runs;" in line, line
    with admin.cursor() as cur:
        cur.execute(
            "SELECT TABLE_NAME FROM information_schema.TABLES WHERE TABLE_SCHEMA = %s", (name,)
        )
        assert cur.fetchall() == (("runs",),)
        cur.execute(f"SELECT * FROM `{name}`.runs")
        assert cur.fetchall() == ((1, 61.5),)
    with pytest.raises(LabError):
        open_store(url)


def test_a_database_with_any_table_not_the_labs_is_refused_and_left_untouched(store_url):
    """Not only a foreign `runs`: the lab adds no table to a database it did not fill."""
    url, _, admin, name = store_url
    with admin.cursor() as cur:
        cur.execute(f"CREATE TABLE `{name}`.invoices (id INT PRIMARY KEY)")
    result = run_cli("run", "fork", "--fact", "1")
    assert result.returncode == 2, result.stderr
    (line,) = result.stderr.strip().splitlines()
    assert "tables the lab did not create (invoices;" in line, line
    assert "***" in line and url.split(":")[2].split("@")[0] not in line, "no password"
    with admin.cursor() as cur:
        cur.execute("SELECT TABLE_NAME FROM information_schema.TABLES WHERE TABLE_SCHEMA = %s",
                    (name,))  # fmt: skip
        assert cur.fetchall() == (("invoices",),)


def test_a_store_naming_the_labs_lease_schema_is_refused(mysql_server):
    from lab import capacity

    url = f"mysql://{mysql_server.user}:pw@{mysql_server.host}:{mysql_server.port}/"
    for database in (capacity.SCHEMA, capacity.SCHEMA.upper()):
        for args in (("results",), ("run", "fork", "--fact", "1")):
            result = run_cli(*args, env={"LAB_RESULTS": url + database})
            assert result.returncode == 2, result.stderr
            (line,) = result.stderr.strip().splitlines()
            assert "max_connections leases" in line and "name another database" in line, line


def _committed(srv: db.Server) -> int:
    """How many records the server holds; -1 while it has no store (or does not answer)."""
    import pymysql

    try:
        conn = db.connect(srv, connect_timeout=1, read_timeout=2)
    except LabError:
        return -1
    with contextlib.closing(conn), conn.cursor() as cur:
        try:
            cur.execute("SELECT COUNT(*) FROM records")
        except pymysql.err.ProgrammingError:  # 1146: the writer has not made the tables yet
            return -1
        return cur.fetchone()[0]


def _start_again(m: mysqld.Mysqld) -> subprocess.Popen:
    """The same server (binary, data directory, port) started again after its kill -9."""
    proc = subprocess.Popen(
        mysqld._server_argv(m.binary, m.datadir, m.port),
        start_new_session=True,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    mysqld._wait_until_ready(proc.pid, m.port, m.datadir)
    return proc


@pytest.mark.slow
def test_a_server_restarted_mid_run_loses_nothing_committed_and_says_so(tmp_path):
    if mysqld.find_binary() is None:
        pytest.fail("no mariadbd here: the throwaway server this test kills cannot start")
    with mysqld.throwaway() as m:
        srv = db.Server("127.0.0.1", m.port, "root", "", "test", source="throwaway")
        url = f"mysql://root@127.0.0.1:{m.port}/test"
        writer = subprocess.Popen(
            [sys.executable, "-m", "lab", "run", "fork", "--fact", "1,2,3,4,5,6", "--repeat", "6"],
            env={**_env(), "LAB_RESULTS": url},
            cwd=tmp_path,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        again = None
        try:
            deadline = time.monotonic() + 60
            while (before := _committed(srv)) < 2 and time.monotonic() < deadline:
                time.sleep(0.01)
            assert writer.poll() is None, "the run ended before the server could be killed"
            os.kill(m.pid, signal.SIGKILL)
            again = _start_again(m)
            out, err = writer.communicate(timeout=120)
            after = _committed(srv)
        finally:
            if writer.poll() is None:
                writer.kill()
                writer.communicate()
            if again is not None:
                mysqld._stop(again.pid)
                again.wait()
    assert writer.returncode == 1, err
    (line,) = err.strip().splitlines()
    assert "the connection to the server was lost" in line or "went away" in line, line
    assert ":***@" in line and "Traceback" not in err
    (rescued,) = tmp_path.glob("test-run-*.json")
    assert str(rescued) in line
    kept = json.loads(rescued.read_text())["records"]
    assert len(kept) == 36
    assert after >= before >= 2  # nothing committed before the kill was lost
