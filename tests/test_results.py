"""The results store: runs land as they happen and survive their writer's death."""

from __future__ import annotations

import contextlib
import csv
import io
import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from dataclasses import dataclass

import pytest

from lab.errors import LabError
from lab.params import Params, option
from lab.results import export, open_store
from lab.runs import collect
from tests.conftest import ROOT, run_cli, stored_runs


@dataclass(frozen=True)
class Counting(Params):
    steps: int = option(3, "how many records", minimum=1)
    fail_at: int = option(-1, "raise at this step")


def counting(params, session):
    for i in range(params.steps):
        if i == params.fail_at:
            raise RuntimeError("boom")
        session.step(i, params.steps)
        yield {"i": i, "square": i * i}


def test_a_run_and_its_records_round_trip(results_path):
    with open_store(results_path) as store:
        run = collect("counting", Counting(), counting, sink=store)
        (stored,) = store.runs("counting")
    assert stored.run_id == run.run_id and stored.status == "ok"
    assert stored.records == [{"i": 0, "square": 0}, {"i": 1, "square": 1}, {"i": 2, "square": 4}]
    assert stored.params == {"steps": 3, "fail_at": -1}
    assert stored.env["python"] and stored.env["cpu_count"]


def test_the_store_is_in_wal_mode(results_path):
    open_store(results_path).close()
    with contextlib.closing(sqlite3.connect(results_path)) as db:
        assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_a_failed_run_keeps_what_it_finished(results_path):
    with open_store(results_path) as store, pytest.raises(RuntimeError):
        collect("counting", Counting(steps=5, fail_at=2), counting, sink=store)
    (stored,) = stored_runs(results_path)
    assert stored.status == "failed" and "boom" in stored.error
    assert [r["i"] for r in stored.records] == [0, 1]


def kill_a_writer_after_three_records() -> None:
    """A process writes three records to the LAB_RESULTS store, then gets kill -9."""
    writer = (
        "import time\n"
        "from lab.results import open_store\n"
        "from lab.runs import Run\n"
        "s = open_store()\n"
        "r = Run('counting', {}, {}, started='now')\n"
        "s.begin(r)\n"
        "for i in range(3):\n"
        "    r.records.append({'i': i}); s.add(r, {'i': i})\n"
        "print('written', flush=True)\n"
        "time.sleep(60)\n"
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", writer],
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout.readline().strip() == "written"
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.wait(timeout=10)
        proc.stdout.close()


def two_writers_at_once(runs: int = 10, steps: int = 20) -> None:
    """Two processes each store `runs` runs of `steps` records at the same time."""
    writer = (
        "from lab.results import open_store\n"
        "from lab.runs import collect\n"
        "from tests.test_results import Counting, counting\n"
        "with open_store() as s:\n"
        f"    for _ in range({runs}):\n"
        f"        collect('counting', Counting(steps={steps}), counting, sink=s)\n"
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    procs = [subprocess.Popen([sys.executable, "-c", writer], env=env) for _ in range(2)]
    try:
        codes = [proc.wait(timeout=120) for proc in procs]
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    assert codes == [0, 0]


def test_a_run_whose_writer_was_killed_reads_as_interrupted_with_its_records(results_path):
    kill_a_writer_after_three_records()
    (stored,) = stored_runs(results_path)
    assert stored.status == "interrupted"
    assert stored.records == [{"i": 0}, {"i": 1}, {"i": 2}]


def test_two_processes_write_at_once_and_nothing_is_lost(results_path):
    two_writers_at_once()
    runs = stored_runs(results_path)
    assert len(runs) == 20 and len({r.run_id for r in runs}) == 20
    assert all(r.records == [{"i": i, "square": i * i} for i in range(20)] for r in runs)


def test_a_file_that_is_not_a_store_is_refused_and_left_untouched(tmp_path, monkeypatch):
    precious = tmp_path / "notes.db"
    precious.write_bytes(b"my thesis, not a database\n" * 100)
    before = precious.read_bytes()
    monkeypatch.setenv("LAB_RESULTS", str(precious))
    result = run_cli("results")
    assert result.returncode != 0 and "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert "cannot be used" in result.stderr
    assert precious.read_bytes() == before
    with pytest.raises(LabError):
        open_store(precious)


def test_export_writes_csv_and_json_lines(results_path):
    with open_store(results_path) as store:
        collect("counting", Counting(), counting, sink=store)
        runs = store.runs()
    out = io.StringIO()
    assert export(runs, "jsonl", out) == 3
    rows = [json.loads(line) for line in out.getvalue().splitlines()]
    assert rows[2]["square"] == 4 and rows[0]["experiment"] == "counting"
    out = io.StringIO()
    export(runs, "csv", out)
    table = list(csv.DictReader(io.StringIO(out.getvalue())))
    assert [row["i"] for row in table] == ["0", "1", "2"]


def test_export_writes_floats_without_binary_noise_and_csv_one_lesson_at_a_time():
    from lab.runs import Run

    sleep = Run("sleep", {}, {}, [{"wall_s": 70.3 * 3, "walls": [0.1 + 0.2]}], "ok", "now")
    assert 70.3 * 3 == 210.89999999999998  # what was written
    out = io.StringIO()
    export([sleep], "csv", out)
    assert out.getvalue().splitlines()[1].endswith(",210.9,[0.3]")
    cpu = Run("cpu", {}, {}, [{"speedup": 1.5}], "ok", "now")
    with pytest.raises(LabError, match="CSV holds one lesson's runs, and these are of cpu, sleep"):
        export([sleep, cpu], "csv", io.StringIO())
    out = io.StringIO()
    assert export([sleep, cpu], "jsonl", out) == 2  # a document per line: any mix
    assert json.loads(out.getvalue().splitlines()[0])["wall_s"] == 210.9


def test_export_and_results_from_the_command_line(results_path, tmp_path):
    with open_store(results_path) as store:
        collect("counting", Counting(), counting, sink=store)
    listed = run_cli("results")
    assert listed.returncode == 0 and "counting" in listed.stdout
    target = tmp_path / "out.jsonl"
    exported = run_cli("export", "--format", "jsonl", "-o", str(target))
    assert exported.returncode == 0, exported.stderr
    assert len(target.read_text().splitlines()) == 3


def test_an_unknown_run_id_is_refused_in_one_line(results_path):
    open_store().close()  # a store, without that run
    result = run_cli("export", "--run", "999")
    assert result.returncode != 0 and "no run 999" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize(
    "command", [["results"], ["results", "sleep"], ["results", "3"], ["export"], ["plot", "fork"]]
)
def test_a_command_that_reads_where_nothing_was_stored_creates_no_store(command, tmp_path):
    """`cd /tmp && daemonlab results` once made /tmp/results/lab.db: a reader never writes."""
    env = {k: v for k, v in os.environ.items() if k != "LAB_RESULTS"}  # the default place
    done = subprocess.run(
        [sys.executable, "-m", "lab", *command], cwd=tmp_path, env={**env, "PYTHONPATH": str(ROOT)},
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode == 1, done.stderr
    assert done.stderr.startswith("daemonlab: nothing stored yet: no results store at "), (
        done.stderr
    )
    assert len(done.stderr.splitlines()) == 1
    assert not (tmp_path / "results").exists()


def test_progress_is_reported_as_the_run_goes():
    seen = []
    collect("counting", Counting(), counting, progress=lambda d, t, s: seen.append((d, t)))
    assert seen == [(0, 3), (1, 3), (2, 3)]


def test_timestamps_are_recorded(results_path):
    with open_store(results_path) as store:
        run = collect("counting", Counting(), counting, sink=store)
    assert run.started <= run.finished
    assert time.strftime("%Y") in run.started


def test_measured_runs_skip_runs_without_records_before_the_limit(results_path):
    with open_store(results_path) as store:
        full = collect("counting", Counting(), counting, sink=store)
        with pytest.raises(RuntimeError):
            collect("counting", Counting(fail_at=0), counting, sink=store)
        assert [r.run_id for r in store.runs("counting", limit=1)] == [full.run_id + 1]
        (newest,) = store.runs("counting", limit=1, measured=True)
    assert newest.run_id == full.run_id and len(newest.records) == 3


# -- a disk that fills, another application's file, a read-only store (issue 10) --------
@pytest.fixture
def small_disk(tmp_path):
    """A real filesystem of 2 MiB (tmpfs, mounted here as root), unmounted after."""
    where = tmp_path / "disk"
    where.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=2m,mode=0755", "tmpfs", str(where)],
        capture_output=True,
        text=True,
    )
    if mounted.returncode != 0:
        pytest.fail(f"cannot mount a tmpfs (the store's disk tests run as root): {mounted.stderr}")
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], check=True)


def fill(disk, leave: int) -> None:
    """Fill `disk` to the last byte, then give back `leave` bytes (whole pages)."""
    filler = disk / "filler"
    with open(filler, "wb", buffering=0) as f:
        try:
            while True:
                f.write(b"\0" * 4096)
        except OSError:
            pass
    os.truncate(filler, max(0, filler.stat().st_size - leave))


def test_a_disk_that_fills_mid_run_keeps_every_record_on_stdout(small_disk):
    store = small_disk / "lab.db"
    open_store(store).close()
    fill(small_disk, leave=80 * 1024)
    facts = "1,2,3,4,5,6,7,8,9,10,11,12"
    result = run_cli("run", "fork", "--fact", facts, env={"LAB_RESULTS": str(store)})
    assert result.returncode == 1, result.stderr
    (line,) = result.stderr.strip().splitlines()
    assert "database or disk is full" in line and "printed on stdout as JSON" in line, line
    assert "Traceback" not in result.stderr
    rescued = json.loads(result.stdout)
    assert [r["number"] for r in rescued["records"]] == list(range(1, 13))
    os.unlink(small_disk / "filler")  # room again: read what the store kept
    (stored,) = stored_runs(store)
    assert stored.status == "interrupted"  # its writer is gone and never said "finished"
    assert 0 < len(stored.records) < 12, len(stored.records)
    assert stored.records == rescued["records"][: len(stored.records)]


def test_a_store_that_fails_mid_run_leaves_the_records_in_a_file_beside_it(results_path):
    with open_store(results_path) as store:
        pages = store._db.execute("PRAGMA page_count").fetchone()[0]
        store._db.execute(f"PRAGMA max_page_count = {pages + 3}")  # SQLite's own refusal
        with pytest.raises(LabError) as refused:
            collect("counting", Counting(steps=40), padded_counting, sink=store)
        (stored,) = store.runs()
    rescue = results_path.with_name(f"lab-run-{stored.run_id}.json")
    assert str(rescue) in str(refused.value) and "database or disk is full" in str(refused.value)
    kept = json.loads(rescue.read_text())
    assert [r["i"] for r in kept["records"]] == list(range(40))
    assert kept["status"] == "ok" and 0 < len(stored.records) < 40


def padded_counting(params, session):
    for record in counting(params, session):
        yield {**record, "pad": "x" * 2000}


def _sqlite(path, *statements):
    with sqlite3.connect(path) as db:
        for statement in statements:
            db.execute(statement)
    db.close()


FOREIGN = {
    "notes": [
        "CREATE TABLE notes (id INTEGER PRIMARY KEY, body TEXT)",
        "INSERT INTO notes VALUES (1, 'x')",
    ],
    "wal": ["PRAGMA journal_mode=WAL", "CREATE TABLE t (a)", "INSERT INTO t VALUES (1)"],
    "own_runs": ["CREATE TABLE runs (id INTEGER PRIMARY KEY, lap_time REAL)"],
    "other_app": ["PRAGMA application_id = 252006674", "CREATE TABLE blob (a)"],
    "empty_but_versioned": ["PRAGMA user_version = 7"],
}


@pytest.mark.parametrize("kind", sorted(FOREIGN))
def test_another_applications_database_is_refused_byte_for_byte_untouched(tmp_path, kind):
    folder = tmp_path / "app"
    folder.mkdir()
    theirs = folder / "their.db"
    _sqlite(theirs, *FOREIGN[kind])
    before = {p.name: p.read_bytes() for p in folder.iterdir()}
    env = {"LAB_RESULTS": str(theirs)}
    for args in (("results",), ("export",), ("run", "fork", "--fact", "1")):
        result = run_cli(*args, env=env)
        assert result.returncode == 2, (args, result.stderr)
        (line,) = result.stderr.strip().splitlines()
        assert "cannot be used" in line and "left untouched" in line, line
    with pytest.raises(LabError):
        open_store(theirs)
    assert {p.name: p.read_bytes() for p in folder.iterdir()} == before


def test_a_new_store_is_marked_as_the_labs(results_path):
    from lab.results.sqlite import APPLICATION_ID

    open_store(results_path).close()
    header = results_path.read_bytes()[:100]
    assert int.from_bytes(header[68:72], "big") == APPLICATION_ID
    with sqlite3.connect(results_path) as db:
        assert db.execute("PRAGMA application_id").fetchone()[0] == APPLICATION_ID
    db.close()


def test_an_empty_file_becomes_a_store(results_path):
    results_path.touch()
    with open_store(results_path) as store:
        collect("counting", Counting(), counting, sink=store)
        assert len(store.runs()) == 1


def test_a_store_made_before_the_mark_is_adopted_with_its_runs(results_path):
    _sqlite(
        results_path,
        "CREATE TABLE runs (id INTEGER PRIMARY KEY AUTOINCREMENT, experiment TEXT NOT NULL,"
        " params TEXT NOT NULL, env TEXT NOT NULL, started TEXT NOT NULL, finished TEXT,"
        " status TEXT NOT NULL, error TEXT, pid INTEGER NOT NULL, host TEXT NOT NULL)",
        "CREATE TABLE records (run_id INTEGER NOT NULL REFERENCES runs(id),"
        " seq INTEGER NOT NULL, data TEXT NOT NULL, PRIMARY KEY (run_id, seq))",
        "INSERT INTO runs VALUES (1, 'counting', '{}', '{}', 'then', 'then', 'ok', NULL, 1, 'h')",
        "INSERT INTO records VALUES (1, 0, '{\"i\": 0}')",
    )
    with open_store(results_path, label="after") as store:
        collect("counting", Counting(), counting, sink=store)
        old, new = store.runs()[::-1]
    assert old.records == [{"i": 0}] and old.label is None
    assert new.label == "after" and len(new.records) == 3


@pytest.fixture
def readonly_store(small_disk):
    """A store with one run, on a disk then remounted read-only (root cannot write it)."""
    store = small_disk / "lab.db"
    with open_store(store) as s:
        collect("counting", Counting(), counting, sink=s)
    subprocess.run(["mount", "-o", "remount,ro", str(small_disk)], check=True)
    return store


def test_a_read_only_store_can_be_listed_and_exported(readonly_store):
    env = {"LAB_RESULTS": str(readonly_store)}
    listed = run_cli("results", env=env)
    assert listed.returncode == 0, listed.stderr
    assert "counting" in listed.stdout
    exported = run_cli("export", "--format", "jsonl", env=env)
    assert exported.returncode == 0, exported.stderr
    assert [json.loads(line)["i"] for line in exported.stdout.splitlines()] == [0, 1, 2]
    with open_store(readonly_store) as store:
        assert store.readonly and store.runs()[0].records[2] == {"i": 2, "square": 4}


def test_a_run_into_a_read_only_store_is_refused_before_it_measures(readonly_store):
    result = run_cli("run", "fork", "--fact", "1", env={"LAB_RESULTS": str(readonly_store)})
    assert result.returncode != 0
    (line,) = result.stderr.strip().splitlines()
    assert "read-only" in line and "Traceback" not in result.stderr


HOLD_WAL = """
import sqlite3, sys
db = sqlite3.connect(sys.argv[1], isolation_level=None)
db.execute("PRAGMA journal_mode=WAL")
db.execute("PRAGMA wal_autocheckpoint=0")  # the schema stays in the -wal, as an app's may
db.execute("CREATE TABLE runs (id INTEGER PRIMARY KEY, name TEXT)")
db.execute("INSERT INTO runs (name) VALUES ('precious')")
print("ready", flush=True)
sys.stdin.read()
db.close()
"""


def test_another_applications_wal_database_held_open_is_refused_untouched(tmp_path):
    """Issue 22 #2: its schema lives in the -wal until a checkpoint; a look that skips
    the -wal (immutable=1) saw an empty file, and the lab altered and stamped it."""
    theirs = tmp_path / "other.db"
    app = subprocess.Popen(
        [sys.executable, "-c", HOLD_WAL, str(theirs)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert app.stdout.readline() == "ready\n"
        files = ("other.db", "other.db-wal")
        before = {name: (tmp_path / name).read_bytes() for name in files}
        for args in (("run", "fork", "--fact", "1"), ("results",), ("export",)):
            result = run_cli(*args, env={"LAB_RESULTS": str(theirs)})
            assert result.returncode == 2, (args, result.stderr)
            (line,) = result.stderr.strip().splitlines()
            assert "another application's database (tables: runs)" in line, line
            assert "left untouched" in line, line
        assert {name: (tmp_path / name).read_bytes() for name in files} == before
    finally:
        app.stdin.close()
        app.wait()
        app.stdout.close()
    with sqlite3.connect(theirs) as db:
        assert db.execute("PRAGMA application_id").fetchone()[0] == 0
        assert [c[1] for c in db.execute("PRAGMA table_info(runs)")] == ["id", "name"]
        assert db.execute("SELECT name FROM runs").fetchall() == [("precious",)]
    db.close()


def test_results_of_an_empty_store_says_so_instead_of_an_empty_table(results_path):
    open_store(results_path).close()
    done = run_cli("results", "cpu")
    assert done.returncode == 0, done.stderr
    assert (
        done.stdout
        == f"no runs of cpu stored in {results_path} yet: `daemonlab run cpu` stores one\n"
    )


def test_listing_runs_reads_all_their_records_in_one_query(results_path):
    """Not one query per run: on a MySQL store each is a round trip over the network."""
    with open_store(results_path) as store:
        for _ in range(21):
            collect("counting", Counting(), counting, sink=store)
        asked = []
        read = store._read
        store._read = lambda sql, args=(): asked.append(sql) or read(sql, args)
        runs = store.runs(limit=20)
    assert [r.run_id for r in runs] == list(range(21, 1, -1))
    assert all(r.records == [{"i": i, "square": i * i} for i in range(3)] for r in runs)
    assert len(asked) == 2, asked


def _running_row(path, pid: int, started: str, pid_start: str | None) -> None:
    """A run left "running" by a writer `pid` (on this host), as a store holds it."""
    with sqlite3.connect(path) as db:
        db.execute(
            "INSERT INTO runs (experiment, params, env, started, status, pid, host, pid_start)"
            " VALUES ('counting', '{}', '{}', ?, 'running', ?, ?, ?)",
            (started, pid, os.uname().nodename, pid_start),
        )
    db.close()


def test_a_run_whose_pid_now_belongs_to_another_process_reads_as_interrupted(results_path):
    """Pids are reused: a live process holding the writer's pid is not the writer."""
    from lab.results import pid_start

    open_store(results_path).close()
    me = pid_start(os.getpid())
    _running_row(results_path, os.getpid(), "2026-01-01T00:00:00+00:00", me)
    boot, ticks = me.split()
    _running_row(results_path, os.getpid(), "2026-01-01T00:00:00+00:00", f"{boot} {ticks}0")
    # Stored before the writer's start was (NULL): judged by when the pid's holder began.
    _running_row(results_path, os.getpid(), "2000-01-01T00:00:00+00:00", None)
    _running_row(results_path, 1, "2099-01-01T00:00:00+00:00", None)
    assert [r.status for r in stored_runs(results_path)][::-1] == [
        "running",  # its writer: this process
        "interrupted",  # this pid, another start: the writer died and the pid was reused
        "interrupted",  # this pid's holder began long after the run did
        "running",  # init began before the run did: it may be its writer
    ]


def test_a_store_of_format_1_reads_the_same_and_is_upgraded_in_place(results_path):
    """What the lab wrote before runs.pid_start existed: read-only it reads NULL there;
    opened for writing it gains the column, its rows untouched."""
    from lab.results.sqlite import APPLICATION_ID, FORMAT

    _sqlite(
        results_path,
        "CREATE TABLE runs (id INTEGER PRIMARY KEY AUTOINCREMENT, experiment TEXT NOT NULL,"
        " params TEXT NOT NULL, env TEXT NOT NULL, started TEXT NOT NULL, finished TEXT,"
        " status TEXT NOT NULL, error TEXT, pid INTEGER NOT NULL, host TEXT NOT NULL,"
        " label TEXT)",
        "CREATE TABLE records (run_id INTEGER NOT NULL REFERENCES runs(id),"
        " seq INTEGER NOT NULL, data TEXT NOT NULL, PRIMARY KEY (run_id, seq))",
        "INSERT INTO runs VALUES (1, 'counting', '{}', '{\"notes\": [\"n\"]}', 'then', 'then',"
        " 'ok', NULL, 1, 'h', 'alice')",
        "INSERT INTO records VALUES (1, 0, '{\"i\": 0.1}')",
        f"PRAGMA application_id = {APPLICATION_ID}",
        "PRAGMA user_version = 1",
    )
    rows = "SELECT id, experiment, params, env, started, finished, status, error, pid, host, label"
    with sqlite3.connect(results_path) as db:
        before = db.execute(f"{rows} FROM runs").fetchall()
    db.close()
    with open_store(results_path, readonly=True) as store:
        (old,) = store.runs()
    assert (old.status, old.label, old.env, old.records) == (
        "ok",
        "alice",
        {"notes": ["n"]},
        [{"i": 0.1}],
    )
    with open_store(results_path) as store:
        collect("counting", Counting(), counting, sink=store)
        assert [r.to_json() for r in store.runs()][1:] == [old.to_json()]
    with sqlite3.connect(results_path) as db:
        assert db.execute("PRAGMA user_version").fetchone()[0] == FORMAT == 2
        assert db.execute(f"{rows} FROM runs WHERE id = 1").fetchall() == before
        assert db.execute("SELECT pid_start FROM runs WHERE id = 2").fetchone()[0]
    db.close()


def test_a_run_ends_once_and_only_by_a_move_in_the_table():
    from lab.runs import MOVES, Run, Status

    run = Run("counting", {}, {})
    assert run.status is Status.RUNNING and run.status == "running"  # stored as before
    run.end(Status.OK)
    for after in Status:
        assert (Status.OK, after) not in MOVES
        with pytest.raises(ValueError, match="cannot go from ok to"):
            run.end(after)
    assert {after for before, after in MOVES} == set(Status) - {Status.RUNNING}


def test_notes_and_warnings_are_stored_with_the_run(results_path):
    def noting(params, session):
        session.note("a part skipped")
        session.warn("the spread is larger than the difference")
        session.warn("the spread is larger than the difference")  # said once
        yield {"i": 0}

    with open_store(results_path) as store:
        collect("counting", Counting(), noting, sink=store)
    (stored,) = stored_runs(results_path)
    assert stored.env["notes"] == ["a part skipped"]
    assert stored.env["warnings"] == ["the spread is larger than the difference"]
