"""managers: each manager really restarts (or not), gives up as documented, and leaves nothing.

Real managers, a real daemon, real signals. Every test also checks, with
psutil, that no process naming a managers place (/tmp/managers-*) is left:
the managers, the daemons, their children and grandchildren.

A manager that is not installed skips its tests, and fails them under
LAB_REQUIRE_SERVICES=1 (CI sets it): `require_manager` below is conftest's
`missing` pattern, kept here because the managers are programs, not services.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid

import psutil
import pytest

from lab.experiments import managers
from lab.experiments.managers import events, plan
from tests.conftest import ROOT, assert_refused, missing, run_cli
from tests.test_daemon_support import TAG, tagged

pytestmark = [pytest.mark.timeout(120), pytest.mark.skipif(sys.platform != "linux", reason="Linux")]

RESTARTING = ("supervisord", "circus", "monit", "lab")
#: How late a manager may wake on a loaded machine, plus /proc's 10 ms start-time ticks.
SLACK_MS = 400
MARK = "/tmp/managers-"


def ours(places: list[str] | None = None) -> set[int]:
    """Live processes that name a managers place on their command line (one of `places`,
    when given: other test runs on a shared machine have places of their own)."""
    found = set()
    for proc in psutil.process_iter(["cmdline", "status"]):
        cmdline = " ".join(proc.info["cmdline"] or ())
        if proc.info["status"] == psutil.STATUS_ZOMBIE or MARK not in cmdline:
            continue
        if places is None or any(place in cmdline for place in places):
            found.add(proc.pid)
    return found


@pytest.fixture
def nothing_left(no_leaks, monkeypatch):
    """No manager or daemon process of this test is left: a psutil process-tree check.

    This test's: started in a place it made (recorded as Place.create makes it), or
    carrying its tag in the environment (what a `daemonlab run managers` it started
    made; monit's daemon, started with monit's spartan environment, names its place)."""
    from lab.experiments.managers.manager import Place

    tag = uuid.uuid4().hex
    monkeypatch.setenv(TAG, tag)
    places: list[str] = []
    made = Place.create.__func__

    def create(cls):
        place = made(cls)
        places.append(str(place.dir))
        return place

    monkeypatch.setattr(Place, "create", classmethod(create))
    before = ours()
    yield

    def left() -> set[int]:
        return (ours(places) | (set(tagged(tag)) & ours())) - before

    found = left()
    assert not found, [psutil.Process(p).cmdline() for p in found if psutil.pid_exists(p)]


def require_manager(name: str) -> type:
    cls = plan.manager(name)
    why = cls.missing()
    if why is not None:
        missing(why, "LAB_REQUIRE_SERVICES")
    return cls


@pytest.mark.parametrize("name", RESTARTING)
def test_kill_9_is_followed_by_a_new_ready_daemon(name: str, nothing_left) -> None:
    cls = require_manager(name)
    record = events.kill_9(cls, repeat=2, uptime=1.1, patience=plan.PATIENCE_S)
    assert record["restarts"] == 2, record
    assert len(record["latencies_ms"]) == 2
    # The new daemon's own READY came after the kill, from a new pid (events.kill_9
    # waits for READY from any pid but the killed one).
    assert 0 < record["latency_ms"] <= record["max_ms"] < plan.PATIENCE_S * 1000


def test_honcho_restarts_nothing_and_stops_the_sibling(nothing_left) -> None:
    cls = require_manager("honcho")
    record = events.kill_9(cls, repeat=2, uptime=1.1, patience=plan.PATIENCE_S)
    assert record["restarts"] == 0 and record["latency_ms"] is None
    assert record["final_state"].startswith("exited")
    assert "the other process got SIGTERM" in record["notes"], record["notes"]


def test_supervisord_backs_off_then_gives_up_fatal(nothing_left) -> None:
    record = events.crash_loop(require_manager("supervisord"), window=10.0)
    assert record["final_state"] == "FATAL" and record["gave_up"]
    assert record["restarts"] == 2  # startretries = 2
    # The back-off, from each exit (READY: the crash exits right after) to the next fork,
    # without the interpreter's start: 1 s, then 2 s, each give or take supervisord's own
    # wake-up (its poll timeout is 1 s, the dead daemon's pipes wake it sooner).
    forks, readies = record["forks_ms"], record["readies_ms"]
    first, second = forks[1] - readies[0], forks[2] - readies[1]
    assert 1000 - SLACK_MS < first < 2000 + SLACK_MS, record
    assert 2000 - SLACK_MS < second < 3000 + SLACK_MS and second > first, record


def test_monit_unmonitors_after_its_restart_limit(nothing_left) -> None:
    record = events.crash_loop(require_manager("monit"), window=10.0)
    assert record["final_state"] == "Not monitored" and record["gave_up"]


def test_honcho_crash_stops_everything_at_once(nothing_left) -> None:
    record = events.crash_loop(require_manager("honcho"), window=5.0)
    assert record["restarts"] == 0 and record["final_state"].startswith("exited 1")


def test_the_harness_restarts_a_crashing_daemon_on_schedule_for_ever(nothing_left) -> None:
    record = events.crash_loop(require_manager("lab"), window=3.5)
    assert not record["gave_up"] and record["restarts"] >= 2
    # The schedule, read from each run's fork (not its READY, which adds the run's own
    # imports): a run is due 1 s after the previous was, and starts once that one ended
    # (its READY: the crash exits right after), give or take the harness's wake-up (SLACK)
    # and /proc's 10 ms ticks. A back-off or a drift of its own would break the first bound.
    forks, readies = record["forks_ms"], record["readies_ms"]
    for n in range(len(forks) - 1):
        assert forks[n + 1] <= max(forks[n] + 1000, readies[n]) + SLACK_MS, record
        assert forks[n + 1] >= forks[n] + 1000 - SLACK_MS, record  # never early


def test_circus_restarts_a_crashing_daemon_every_check_delay_until_flapping_lands(
    nothing_left,
) -> None:
    record = events.crash_loop(require_manager("circus"), window=3.5)
    assert record["restarts"] >= 1
    # Each exit (READY: the crash exits right after) is reaped and replaced within
    # check_delay (1 s), measured to the next fork, without the interpreter's start.
    forks, readies = record["forks_ms"], record["readies_ms"]
    for n in range(len(forks) - 1):
        assert forks[n + 1] - readies[n] < 1000 + SLACK_MS, record
    # The flapping plugin's stop races with the arbiter (circus.py): it either landed
    # (stopped) or the loop went on for the whole watch, and the record says so.
    stopped = record["final_state"] == "stopped"
    assert stopped or "still trying after 3.5 s" in record["notes"], record


# What each manager's stop reaches: the signal, the child in the daemon's group, the grandchild.
STOPS = {
    "supervisord": True,  # stopasgroup: TERM to the group
    "circus": True,  # stop_children: TERM to direct children
    "honcho": True,  # TERM to each process group
    "monit": False,  # the stop program's TERM to one pid
    "lab": True,  # TERM to the run's pid, then KILL to what it left in its group
}


@pytest.mark.parametrize("name", list(STOPS))
def test_stop_sends_term_and_no_manager_stops_the_grandchild(name: str, nothing_left) -> None:
    record = events.stop(require_manager(name))
    assert record["signal"] == "SIGTERM"
    assert record["children_stopped"] is STOPS[name], record
    assert record["grandchild_survived"] is True, record
    assert "left running after the manager stopped" in record["notes"]  # swept by the lab
    if name == "lab":  # the harness once hung here on the pipe a leftover child held
        assert "did not stop within" not in record["notes"], record["notes"]


def test_a_missing_manager_is_one_line_and_the_others_still_run(monkeypatch, nothing_left):
    from lab.experiments.managers.monit import Monit

    monkeypatch.setattr(Monit, "missing", classmethod(lambda cls: "monit is not installed: X"))
    run = managers.run(managers.Params(manager=("monit", "lab"), event=("stop",)))
    missing_record, lab_record = run.records
    assert missing_record["final_state"] == "missing" and missing_record["skipped"].endswith("X")
    assert run.env["missing"] == {"monit": "monit is not installed: X"}
    assert lab_record["signal"] == "SIGTERM"


def test_an_error_mid_event_still_stops_the_manager_and_sweeps(monkeypatch, nothing_left):
    def fail(pid: int) -> int:
        raise RuntimeError("broken on purpose")

    monkeypatch.setattr(events, "started_ns", fail)  # called after the first restart
    with pytest.raises(RuntimeError, match="broken on purpose"):
        events.kill_9(require_manager("supervisord"), 2, 1.1, plan.PATIENCE_S)


def test_ctrl_c_leaves_no_manager_or_daemon_running(nothing_left) -> None:
    require_manager("supervisord")
    before = ours()
    cli = subprocess.Popen(
        [sys.executable, "-m", "lab", "run", "managers", "--manager", "supervisord",
         "--event", "kill-9", "--repeat", "20", "--no-store"],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 30
        mine = set(tagged(os.environ[TAG]))  # not another test run's daemon
        while not any("managers.daemon" in " ".join(_cmdline(p)) for p in mine - before):
            assert time.monotonic() < deadline, "no daemon started"
            time.sleep(0.1)
            mine = set(tagged(os.environ[TAG]))
        time.sleep(1.5)  # in the middle of the kills
        cli.send_signal(signal.SIGINT)
        _, err = cli.communicate(timeout=60)
    finally:
        if cli.poll() is None:
            cli.kill()
            cli.communicate()
    assert cli.returncode == 130, err
    assert "Traceback" not in err


def _cmdline(pid: int) -> list[str]:
    try:
        return psutil.Process(pid).cmdline()
    except psutil.Error:
        return []


@pytest.mark.parametrize(
    "options, says",
    [
        (["--manager", "god"], "--manager: unknown value 'god'"),
        (["--event", "kill"], "--event: unknown value 'kill'"),
        (["--repeat", "0"], "--repeat must be at least 1"),
        (["--uptime", "0.5"], "--uptime must be at least 1.0"),
    ],
)
def test_bad_input_is_refused_in_one_line(options: list[str], says: str) -> None:
    assert_refused(run_cli("run", "managers", *options, "--no-store"), says)


def test_cli_runs_stores_and_plots(tmp_path, nothing_left) -> None:
    require_manager("supervisord")
    done = run_cli("run", "managers", "--manager", "supervisord,lab", "--event", "kill-9,stop",
                   "--repeat", "1", "--json")  # fmt: skip
    assert done.returncode == 0, done.stderr
    import json

    records = json.loads(done.stdout)["records"]
    assert [(r["manager"], r["event"]) for r in records] == [
        ("supervisord", "kill-9"),
        ("supervisord", "stop"),
        ("lab", "kill-9"),
        ("lab", "stop"),
    ]
    png = tmp_path / "managers.png"
    plotted = run_cli("plot", "managers", "-o", str(png))
    assert plotted.returncode == 0, plotted.stderr
    assert png.stat().st_size > 10_000
