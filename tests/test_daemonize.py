"""The daemonize experiment: each step read from /proc, for the lab and for python-daemon.

Real daemons, paused after every step; the assertions are the lesson's claims.
The experiment runs under the CLI with a pty as its controlling terminal (the
launcher inherits it), so "the daemon has no terminal" means it lost one.
"""

# ruff: noqa: F811 - the fixtures imported below are parameters of the tests

from __future__ import annotations

import json
import os
import pwd
import signal
import sys
import time

import pytest

from lab import procfs
from lab.daemon.steps import STEPS
from lab.experiments import daemonize
from lab.experiments.daemonize import plan
from tests.conftest import ROOT, run_cli
from tests.test_daemon_support import (  # noqa: F401 - world is a fixture
    NO_TERMINAL,
    World,
    subreaper,
    tagged,
    terminal_session,
    wait_until,
    world,
)

pytestmark = pytest.mark.timeout(120)


def steps_of(records: list[dict], impl: str) -> dict[str, dict]:
    return {r["step"]: r for r in records if r["impl"] == impl}


@pytest.fixture(scope="module")
def watched() -> dict:
    """Both implementations watched once, by the CLI, from a launcher with a terminal."""
    cli = [sys.executable, "-m", "lab", "run", "daemonize", "--json", "--no-store"]
    with terminal_session(cli, 120, env={**os.environ, "PYTHONPATH": str(ROOT)}) as done:
        pass
    assert done.returncode != NO_TERMINAL, "the pty did not become the launcher's terminal"
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def test_the_launcher_had_a_terminal_to_lose(watched) -> None:
    for impl in daemonize.IMPLS:
        first = steps_of(watched["records"], impl)
        launcher = next(iter(first.values()))
        assert launcher["process"] == "launcher" and launcher["tty"].startswith("pts/"), launcher


def test_the_lab_daemon_ends_detached_as_man_7_daemon_says(watched) -> None:
    records = [r for r in watched["records"] if r["impl"] == "lab"]
    assert [r["step"] for r in records] == list(STEPS)
    steps = steps_of(records, "lab")
    launcher, child, final = steps["close fds"], steps["setsid"], steps["ready"]
    assert len({launcher["pid"], child["pid"], final["pid"]}) == 3  # two forks
    assert child["session_leader"] and child["sid"] == child["pgid"] == child["pid"]
    assert child["tty"] == "none", "setsid left the terminal's session"
    assert not final["session_leader"], "a session leader could acquire a terminal"
    assert final["sid"] == child["pid"] and final["tty"] == "none"
    # adopted by the observer, the subreaper, not by PID 1
    assert final["ppid"] == watched["env"]["observer_pid"]
    assert final["cwd"] == "/" and final["umask"] == "0022"
    fds = dict(item.split(":") for item in final["fds"].split())
    assert (fds["0"], fds["1"], fds["2"]) == ("null", "log", "log")
    assert "pidfile" in fds.values()
    assert [steps[s]["launcher"] for s in STEPS[:-1]] == ["waiting"] * (len(STEPS) - 1)
    assert final["launcher"] == "exited 0"  # only once the daemon said READY


def test_python_daemon_side_by_side_shows_its_order_and_defaults(watched) -> None:
    theirs = steps_of(watched["records"], "python-daemon")
    order = list(theirs)
    assert order.index("umask") < order.index("fork") < order.index("pidfile")
    assert theirs["ready"]["umask"] == "0000"  # DaemonContext's default: files writable by all
    assert theirs["fork"]["launcher"] == "exited 0"  # told the shell "fine" before the pidfile
    assert not theirs["ready"]["session_leader"] and theirs["ready"]["tty"] == "none"
    assert steps_of(watched["records"], "lab")["ready"]["umask"] == "0022"


@pytest.mark.skipif(os.geteuid() != 0, reason="dropping privileges needs root")
def test_run_as_nobody_changes_uid_and_gid_after_the_pidfile(no_leaks) -> None:
    nobody = pwd.getpwnam("nobody")
    run = daemonize.run(daemonize.Params(impl=("lab", "python-daemon"), run_as="nobody"))
    ours = steps_of(run.records, "lab")
    assert (ours["pidfile"]["uid"], ours["pidfile"]["gid"]) == (0, 0)
    dropped = ours["drop privileges"]
    assert (dropped["uid"], dropped["gid"]) == (nobody.pw_uid, nobody.pw_gid)
    theirs = steps_of(run.records, "python-daemon")
    assert theirs["drop privileges"]["uid"] == nobody.pw_uid
    # python-daemon drops privileges before it detaches, let alone takes its pidfile.
    assert list(theirs).index("drop privileges") < list(theirs).index("pidfile")


def test_cli_runs_it_with_a_table_and_json() -> None:
    done = run_cli("run", "daemonize", "--impl", "lab", "--json", timeout=120)
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout)
    assert [r["step"] for r in out["records"]] == list(STEPS)
    done = run_cli("run", "daemonize", "--impl", "python-daemon", timeout=120)
    assert done.returncode == 0 and "fork again" in done.stdout


def test_plot_draws_the_timeline_of_both(tmp_path) -> None:
    from lab.experiments.daemonize import plot
    from lab.results import open_store

    with open_store() as store:  # this test's own store (conftest's LAB_RESULTS)
        run = daemonize.run(daemonize.Params(), sink=store)
    figure = plot.draw([run])
    assert len(figure.axes) == 2
    assert [t.get_text() for t in figure.axes[0].get_yticklabels()] == list(plot.LANES)
    done = run_cli("plot", "daemonize", "-o", str(tmp_path / "d.png"))
    assert done.returncode == 0 and (tmp_path / "d.png").stat().st_size > 10_000, done.stderr


def test_a_folder_left_by_a_killed_observer_is_removed_by_the_next_run(no_leaks) -> None:
    """kill -9 skips every finally: the next run finds the folder's owner gone and removes it."""
    import subprocess
    import tempfile
    from pathlib import Path

    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True)  # fmt: skip

    def left_by(owner: str) -> Path:
        folder = Path(tempfile.mkdtemp(prefix=plan.RUN_DIR_PREFIX))
        (folder / plan.OWNER).write_text(owner)
        return folder

    start = procfs.proc_stat()["starttime"]
    left = left_by(gone.stdout)
    reused = left_by(f"{os.getpid()} {start - 1}\n")  # its pid now names a later process
    alive = left_by(f"{os.getpid()} {start}\n")
    folders = lambda: set(Path(tempfile.gettempdir()).glob(f"{plan.RUN_DIR_PREFIX}*"))  # noqa: E731
    before = folders()
    try:
        daemonize.run(daemonize.Params(impl=("lab",)))
        assert not left.exists(), "the dead observer's folder is still there"
        assert not reused.exists(), "a folder whose observer's pid was given again is still there"
        assert alive.exists(), "a living observer's folder was taken away"
        assert folders() - before == set(), "the run left its own folder"
    finally:
        import shutil

        for folder in (left, reused, alive):
            shutil.rmtree(folder, ignore_errors=True)


def test_progress_names_each_step_and_the_pid_to_watch(no_leaks) -> None:
    seen: list[tuple[int, int, str]] = []
    run = daemonize.run(daemonize.Params(impl=("lab",)), progress=lambda *a: seen.append(a))
    assert seen[0] == (0, len(STEPS), "starting")  # the total is known from the first frame
    for (done, total, label), record in zip(seen[1:], run.records, strict=False):
        assert (done, total) == (record["step_no"], len(STEPS))
        pid = record["pid"]
        assert label == f"lab: {record['step']}, pid {pid} (ps -jf -p {pid})"
    assert seen[-1][:2] == (len(STEPS), len(STEPS))


def test_the_progress_bar_in_a_terminal_shows_the_step_never_none(no_leaks) -> None:
    """`run daemonize --dwell` as a learner sees it: a terminal, the bar redrawn as it goes."""
    import select
    import subprocess

    master, terminal = os.openpty()
    cli = subprocess.Popen(
        [sys.executable, "-m", "lab", "run", "daemonize", "--impl", "lab", "--dwell", "0.2",
         "--no-store"],
        stdin=terminal, stdout=terminal, stderr=terminal,
        env={**os.environ, "PYTHONPATH": str(ROOT), "COLUMNS": "120"},
    )  # fmt: skip
    os.close(terminal)
    screen = b""
    try:
        while select.select([master], [], [], 60)[0]:
            try:
                chunk = os.read(master, 65536)
            except OSError:  # EIO: every writer of the terminal is gone
                break
            if not chunk:
                break
            screen += chunk
    finally:
        os.close(master)
        cli.wait(30)
    text = screen.decode(errors="replace")
    assert cli.returncode == 0, text[-2000:]
    assert "None" not in text
    assert "lab: setsid, pid " in text and "(ps -jf -p " in text


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (("--impl", "systemd"), "--impl: unknown value 'systemd'"),
        (("--mask", "000"), "lets every user write"),
        (("--mask", "abc"), "bad umask 'abc'"),
        (("--run-as", "no-such-user"), "no such user 'no-such-user'"),
        (("--dwell", "-1"), "--dwell must be at least 0"),
    ],
)
def test_bad_input_is_refused_in_one_line(args, expected) -> None:
    done = run_cli("run", "daemonize", *args)
    assert done.returncode == 2
    assert len(done.stderr.strip().splitlines()) == 1
    assert expected in done.stderr and "Traceback" not in done.stderr


def test_ctrl_c_mid_step_leaves_no_daemon_behind(world: World) -> None:
    proc = world.popen("run", "daemonize", "--impl", "lab", "--dwell", "0.5")
    try:
        wait_until(lambda: len(tagged(world.tag)) >= 2, 30, "the watched daemon to exist")
        time.sleep(1.0)
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=30)
        assert proc.returncode == 130, err
        assert "interrupted" in err
        wait_until(lambda: not tagged(world.tag), 10, "every watched process to be gone")
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate(timeout=10)
