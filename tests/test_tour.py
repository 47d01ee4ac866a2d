"""`daemonlab tour`: the talk's order, one chapter alone, a missing server, nothing left running.

The whole quick tour runs end to end in .ci/run (about 25 s here), not in this
suite, so that CI takes it once.
"""

# ruff: noqa: F811 - the fixtures imported below are parameters of the tests

from __future__ import annotations

import os
import subprocess
import sys
import time

import psutil

from lab import experiments, procfs, tour
from tests.conftest import assert_refused, run_cli, stored_runs
from tests.test_daemon_support import subreaper  # noqa: F401 - a fixture


def test_chapters_come_in_the_talks_order():
    found = tour.chapters()
    assert found == [name for name in experiments.ORDER if name in found]
    assert found == experiments.names()
    assert tour.chapters(["signals", "fork"]) == ["fork", "signals"]  # the talk's order wins


def test_one_chapter_runs_alone(results_path):
    done = run_cli("tour", "--quick", "--chapter", "fork")
    assert done.returncode == 0, done.stderr
    assert "fork" in done.stdout and "daemonize:" not in done.stdout
    assert "daemonlab tour --chapter fork` runs this" in done.stdout  # --quick: the rest waits
    (run,) = stored_runs(results_path)
    assert run.experiment == "fork" and run.status == "ok"


def test_an_unknown_chapter_is_refused_in_one_line():
    assert_refused(run_cli("tour", "--chapter", "nosuch"), "no chapter 'nosuch'", "chapters: ")


def test_a_chapter_whose_server_is_missing_says_so_and_the_tour_goes_on(results_path):
    nothing_there = {"LAB_DB_PATHS": "url", "LAB_MYSQL_URL": "mysql://root@127.0.0.1:1/test"}
    done = run_cli(
        "tour", "--quick", "--chapter", "sleep", "--chapter", "signals", env=nothing_there
    )
    assert done.returncode == 1, done.stderr
    said = " ".join(done.stdout.split())  # rich wraps long lines
    assert "sleep: did not run:" in said and "nothing answers there" in said
    assert said.index("sleep: did not run") < said.index("signals:")  # and then it went on
    assert "did not run (1, in 2 chapters):" in said
    stored = {r.experiment: r for r in stored_runs(results_path)}
    assert stored["signals"].status == "ok" and len(stored["signals"].records) > 0
    assert "sleep" not in stored or not stored["sleep"].records


def test_what_a_chapter_left_running_is_named_and_stopped(monkeypatch):
    # A child that leaves an orphan behind and exits: init adopts it, the mark stays.
    monkeypatch.setenv(tour.MARK, "test-mark")
    orphan_maker = (
        "import subprocess, sys\n"
        "p = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)'],\n"
        "                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)\n"
        "print(p.pid, flush=True)\n"
    )
    made = subprocess.run([sys.executable, "-c", orphan_maker], capture_output=True, text=True)
    orphan = int(made.stdout)
    assert psutil.Process(orphan).ppid() != os.getpid()  # an orphan, not our child
    left = tour._leftovers("test-mark")
    assert left == [f"{orphan} ({sys.executable} -c import time; time.sleep(60))"]
    deadline = time.monotonic() + 5  # init reaps it, late on this machine
    while (stat := procfs.proc_stat(orphan)) is not None and stat["state"] != "Z":
        assert time.monotonic() < deadline, "the orphan outlived the tour's stop"
        time.sleep(0.02)
    assert tour._leftovers("another-mark") == []


def test_a_part_a_tool_was_missing_for_is_one_line_with_its_install_line_and_exit_1(
    monkeypatch, capsys
):
    """A chapter that ran, but not all of it (prosody not installed: ipc's XMPP), is named
    at the end with the line that installs what it lacked, and the tour exits 1."""
    import io

    from rich.console import Console

    fork = experiments.load("fork")
    measured = fork.run
    why = "prosody is not installed (`apt-get install prosody`)"

    def without_prosody(params, progress=None, sink=None):
        run = measured(params, progress=progress, sink=sink)
        run.env["missing"] = {"xmpp": why}
        return run

    monkeypatch.setattr(fork, "run", without_prosody)
    said = io.StringIO()
    out = Console(file=said, width=80, color_system=None)
    assert tour.main(out, only=["fork"], quick=True) == 1
    assert f"not run: xmpp: {why}" in " ".join(capsys.readouterr().out.split())  # by the table
    text = " ".join(said.getvalue().split())
    assert f"did not run (1, in 1 chapters): fork: xmpp: {why}" in text  # and at the end
    assert text.endswith(" ".join(tour.NEXT.split()))  # where to go next, whatever happened


def test_a_run_its_lesson_judged_too_noisy_shows_the_note_in_place_of_its_table(
    monkeypatch, capsys
):
    """A table whose figures scatter more than the point (cpu's processes at 0.75x) reads
    as the lesson in a tour: the chapter says why and what to run instead."""
    import io

    from rich.console import Console

    from lab.runs import NOISY

    fork = experiments.load("fork")
    measured = fork.run
    why = "too noisy to show the point here (spread 142%), run `daemonlab run fork`"

    def noisy(params, progress=None, sink=None):
        run = measured(params, progress=progress, sink=sink)
        run.env.setdefault("notes", []).append(why)
        run.env[NOISY] = True
        return run

    monkeypatch.setattr(fork, "run", noisy)
    out = Console(file=io.StringIO(), width=80, color_system=None)
    assert tour.main(out, only=["fork"], quick=True) == 0
    printed = " ".join(capsys.readouterr().out.split())
    assert printed.startswith("(the table is left out"), printed  # no table above it
    assert why in printed
