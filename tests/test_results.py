"""The results store: runs land as they happen and survive their writer's death."""

from __future__ import annotations

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
from lab.results import ResultsStore, export
from lab.runs import collect
from tests.conftest import ROOT, run_cli


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
    with ResultsStore(results_path) as store:
        run = collect("counting", Counting(), counting, sink=store)
        (stored,) = store.runs("counting")
    assert stored.run_id == run.run_id and stored.status == "ok"
    assert stored.records == [{"i": 0, "square": 0}, {"i": 1, "square": 1}, {"i": 2, "square": 4}]
    assert stored.params == {"steps": 3, "fail_at": -1}
    assert stored.env["python"] and stored.env["cpu_count"]


def test_the_store_is_in_wal_mode(results_path):
    ResultsStore(results_path).close()
    with sqlite3.connect(results_path) as db:
        assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_a_failed_run_keeps_what_it_finished(results_path):
    with ResultsStore(results_path) as store, pytest.raises(RuntimeError):
        collect("counting", Counting(steps=5, fail_at=2), counting, sink=store)
    (stored,) = ResultsStore(results_path).runs()
    assert stored.status == "failed" and "boom" in stored.error
    assert [r["i"] for r in stored.records] == [0, 1]


def test_a_run_whose_writer_was_killed_reads_as_interrupted_with_its_records(results_path):
    writer = (
        "import time\n"
        "from lab.results import ResultsStore\n"
        "from lab.runs import Run\n"
        "s = ResultsStore()\n"
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
    (stored,) = ResultsStore(results_path).runs()
    assert stored.status == "interrupted"
    assert stored.records == [{"i": 0}, {"i": 1}, {"i": 2}]


def test_two_processes_write_at_once_and_nothing_is_lost(results_path):
    writer = (
        "from lab.results import ResultsStore\n"
        "from lab.runs import collect\n"
        "from tests.test_results import Counting, counting\n"
        "with ResultsStore() as s:\n"
        "    for _ in range(10):\n"
        "        collect('counting', Counting(steps=20), counting, sink=s)\n"
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    procs = [subprocess.Popen([sys.executable, "-c", writer], env=env) for _ in range(2)]
    try:
        codes = [proc.wait(timeout=60) for proc in procs]
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    assert codes == [0, 0]
    runs = ResultsStore(results_path).runs()
    assert len(runs) == 20
    assert all(len(r.records) == 20 and r.status == "ok" for r in runs)


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
        ResultsStore(precious)


def test_export_writes_csv_and_json_lines(results_path):
    with ResultsStore(results_path) as store:
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


def test_export_and_results_from_the_command_line(results_path, tmp_path):
    with ResultsStore(results_path) as store:
        collect("counting", Counting(), counting, sink=store)
    listed = run_cli("results")
    assert listed.returncode == 0 and "counting" in listed.stdout
    target = tmp_path / "out.jsonl"
    exported = run_cli("export", "--format", "jsonl", "-o", str(target))
    assert exported.returncode == 0, exported.stderr
    assert len(target.read_text().splitlines()) == 3


def test_an_unknown_run_id_is_refused_in_one_line(results_path):
    result = run_cli("export", "--run", "999")
    assert result.returncode != 0 and "no run 999" in result.stderr
    assert "Traceback" not in result.stderr


def test_progress_is_reported_as_the_run_goes():
    seen = []
    collect("counting", Counting(), counting, progress=lambda d, t, s: seen.append((d, t)))
    assert seen == [(0, 3), (1, 3), (2, 3)]


def test_timestamps_are_recorded(results_path):
    with ResultsStore(results_path) as store:
        run = collect("counting", Counting(), counting, sink=store)
    assert run.started <= run.finished
    assert time.strftime("%Y") in run.started


def test_measured_runs_skip_runs_without_records_before_the_limit(results_path):
    with ResultsStore(results_path) as store:
        full = collect("counting", Counting(), counting, sink=store)
        with pytest.raises(RuntimeError):
            collect("counting", Counting(fail_at=0), counting, sink=store)
        assert [r.run_id for r in store.runs("counting", limit=1)] == [full.run_id + 1]
        (newest,) = store.runs("counting", limit=1, measured=True)
    assert newest.run_id == full.run_id and len(newest.records) == 3
