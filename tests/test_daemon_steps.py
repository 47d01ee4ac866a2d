"""lab.daemon's building blocks against real processes: pidfile, readiness, fd reuse, signals.

Daemons here are started by small scripts run as child processes (launch()
closes the calling process's descriptors, so never from pytest itself), and
are read from outside.
"""

# ruff: noqa: F811 - the fixtures imported below are parameters of the tests

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap

import pytest

from lab.daemon.config import parse_every, parse_umask
from lab.daemon.pidfile import PidFile, holder
from lab.daemon.signals import SignalWakeup
from lab.daemon.steps import STEPS, check_umask
from lab.errors import LabError
from tests.test_daemon_support import (  # noqa: F401 - subreaper and world are fixtures
    World,
    proc_state,
    subreaper,
    wait_until,
    world,
)

pytestmark = pytest.mark.timeout(120)


def script(world: World, body: str) -> subprocess.CompletedProcess:
    path = world.dir / "script.py"
    path.write_text(textwrap.dedent(body))
    return subprocess.run(
        [sys.executable, str(path)],
        input="",  # stdin a pipe, not this process's (maybe already /dev/null)
        capture_output=True,
        text=True,
        timeout=60,
        env=world.env(),
        cwd=world.dir,
    )


def hold_lock(world: World, path) -> subprocess.Popen:
    """Another process holding `path`'s lock (fcntl locks never conflict within one process)."""
    code = (
        "import sys, time; from lab.daemon.pidfile import PidFile; "
        f"p = PidFile.acquire({str(path)!r}); print('locked', flush=True); time.sleep(60)"
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", code], stdout=subprocess.PIPE, text=True, env=world.env()
    )
    assert proc.stdout.readline().strip() == "locked"
    return proc


def test_second_start_fails_while_pidfile_is_locked_and_the_file_is_untouched(world) -> None:
    path = world.dir / "d.pid"
    first = hold_lock(world, path)
    try:
        assert holder(path) == first.pid
        # Another process: the holder itself could take its own fcntl lock again.
        done = script(
            world, f"from lab.daemon.pidfile import PidFile\nPidFile.acquire({str(path)!r})\n"
        )
        assert done.returncode != 0
        assert f"already running: {path} is locked by pid {first.pid}" in done.stderr
        assert path.read_text() == f"{first.pid}\n"  # a failed start truncated nothing
    finally:
        first.kill()
        first.wait(timeout=10)
        first.stdout.close()


def test_a_killed_holder_leaves_an_unlocked_file_that_the_next_start_takes(world) -> None:
    path = world.dir / "d.pid"
    first = hold_lock(world, path)
    first.kill()
    first.wait(timeout=10)
    first.stdout.close()
    assert path.read_text() == f"{first.pid}\n"  # the dead pid is still written there
    assert holder(path) is None  # but nobody holds the lock: not stale, simply free
    mine = PidFile.acquire(path)
    try:
        assert path.read_text() == f"{os.getpid()}\n"
    finally:
        mine.release()


def test_pidfile_refuses_to_follow_a_symlink(world) -> None:
    target = world.dir / "precious"
    target.write_text("keep me\n")
    (world.dir / "d.pid").symlink_to(target)
    with pytest.raises(LabError, match="is a symlink"):
        PidFile.acquire(world.dir / "d.pid")
    assert target.read_text() == "keep me\n"


LOG_KEPT = """
    import logging, os, sys
    from lab.daemon.steps import Options, launch
    handler = logging.FileHandler({log!r})
    logging.getLogger().addHandler(handler)
    logging.getLogger().setLevel(logging.INFO)
    logging.info("before daemonizing")

    def serve(detached):
        for i in range(100):
            logging.info("line %d from the daemon", i)
        handler.flush()
        detached.ready.ready()
        return 0

    keep = (handler.stream.fileno(),) if {keep} else ()
    result = launch(Options({pidfile!r}, keep_fds=keep), serve)
    print(result.ok, result.pid, result.message)
"""


def test_a_log_opened_before_daemonizing_still_gets_lines_and_the_pidfile_none(world) -> None:
    log, pidfile = world.dir / "app.log", world.dir / "d.pid"
    done = script(world, LOG_KEPT.format(log=str(log), pidfile=str(pidfile), keep=True))
    assert done.stdout.startswith("True"), done.stdout + done.stderr
    pid = int(done.stdout.split()[1])
    world.wait_gone(pid)
    lines = log.read_text().splitlines()
    assert lines[0] == "before daemonizing" and lines[-1] == "line 99 from the daemon"
    assert pidfile.read_text() == f"{pid}\n"  # never a log line: no descriptor reuse


def test_daemonizing_refuses_to_close_a_log_it_was_not_told_to_keep(world) -> None:
    log, pidfile = world.dir / "app.log", world.dir / "d.pid"
    done = script(world, LOG_KEPT.format(log=str(log), pidfile=str(pidfile), keep=False))
    assert done.returncode != 0
    assert "which daemonizing would close: name it in keep_fds" in done.stderr
    assert not pidfile.exists()


READINESS = """
    import os, sys
    from lab.daemon.steps import Options, launch
    def serve(detached):
        {body}
    result = launch(Options({pidfile!r}, log={log!r}), serve, ready_timeout=20)
    print(result.ok, result.pid, result.message)
"""


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ("return 0  # never says READY", "False None daemon exited before it was ready"),
        ("raise RuntimeError('boom')", "False None RuntimeError: boom"),
        (
            "from lab.errors import LabError; raise LabError('bad config at line 3')",
            "False None bad config at line 3",
        ),
    ],
)
def test_the_launcher_exits_non_zero_with_the_daemons_reason(world, body, expected) -> None:
    pidfile, log = world.dir / "d.pid", world.dir / "d.log"
    done = script(world, READINESS.format(body=body, pidfile=str(pidfile), log=str(log)))
    assert done.stdout.strip().startswith(expected), done.stdout + done.stderr
    wait_until(lambda: holder(pidfile) is None, 10, "the failed daemon to leave")


def test_the_launcher_waits_until_the_daemon_holds_the_lock(world) -> None:
    pidfile, log = world.dir / "d.pid", world.dir / "d.log"
    body = "detached.ready.ready(); import time; time.sleep(30); return 0"
    done = script(world, READINESS.format(body=body, pidfile=str(pidfile), log=str(log)))
    ok, pid, _ = done.stdout.split(maxsplit=2)
    assert ok == "True"
    # The launcher already exited 0, so by then the lock must be the daemon's.
    assert holder(pidfile) == int(pid)
    state, ppid = proc_state(int(pid))
    assert ppid == os.getpid()  # re-parented to us, the subreaper
    os.kill(int(pid), signal.SIGKILL)
    world.wait_gone(int(pid))


def test_signal_handlers_only_record_and_the_loop_reads_them_in_order() -> None:
    wakeup = SignalWakeup((signal.SIGUSR1, signal.SIGUSR2, signal.SIGHUP))
    try:
        os.kill(os.getpid(), signal.SIGUSR1)
        os.kill(os.getpid(), signal.SIGHUP)
        os.kill(os.getpid(), signal.SIGUSR2)
        assert wakeup.wait(5) == [signal.SIGUSR1, signal.SIGHUP, signal.SIGUSR2]
        assert wakeup.wait(0) == []
    finally:
        wakeup.close()
    assert signal.getsignal(signal.SIGUSR1) == signal.SIG_DFL
    assert signal.set_wakeup_fd(-1) == -1


def test_intervals_and_umasks_are_checked() -> None:
    assert parse_every("10m") == 600 and parse_every("1.5h") == 5400 and parse_every(30) == 30
    assert parse_umask("027") == 0o027 and parse_umask(0o022) == 0o022
    for bad in ("0", "often", "-5s"):
        with pytest.raises(LabError):
            parse_every(bad)
    for bad in ("000", "020", "9"):
        with pytest.raises(LabError):
            parse_umask(bad)
    with pytest.raises(LabError, match="lets every user write"):
        check_umask(0)


#: man 7 daemon, "SysV Daemons", the steps a daemon takes, by their number there
#: (4, sanitising the environment, is skipped on purpose: see lab/daemon/steps.py;
#: 8 and 15 are exits, seen as the next step's new pid).
MAN_7_DAEMON = [
    (1, "close fds"),
    (2, "reset signals"),
    (3, "reset mask"),
    (5, "fork"),
    (6, "setsid"),
    (7, "fork again"),
    (9, "streams"),
    (10, "umask"),
    (11, "chdir /"),
    (12, "pidfile"),
    (13, "drop privileges"),
    (14, "ready"),
]

RECORD_STEPS = """
    import json, os
    from lab.daemon.steps import Options, launch, report_ready

    def seen(step):  # opened anew each time: step 1 closes what was open before
        mask = os.umask(0)
        os.umask(mask)
        with open({journal!r}, "a") as out:
            out.write(json.dumps({{
                "step": step, "pid": os.getpid(), "ppid": os.getppid(),
                "pgid": os.getpgid(0), "sid": os.getsid(0), "cwd": os.getcwd(),
                "umask": mask, "stdin": os.readlink("/proc/self/fd/0"),
                "pidfile": open({pidfile!r}).read() if os.path.exists({pidfile!r}) else None,
            }}) + "\\n")

    def serve(detached):
        report_ready(detached.ready)
        seen("ready")
        return 0

    os.umask(0o077)
    result = launch(Options({pidfile!r}), serve, after_step=seen)
    print(result.ok, result.pid)
"""


def test_launch_takes_the_steps_in_the_man_page_order_in_the_right_process(world) -> None:
    """What each step did, recorded from inside as it happened, against man 7 daemon."""
    journal, pidfile = world.dir / "steps.jsonl", world.dir / "d.pid"
    done = script(world, RECORD_STEPS.format(journal=str(journal), pidfile=str(pidfile)))
    ok, daemon = done.stdout.split()
    assert ok == "True", done.stdout + done.stderr
    world.wait_gone(int(daemon))
    seen = [json.loads(line) for line in journal.read_text().splitlines()]
    assert [s["step"] for s in seen] == [name for _, name in MAN_7_DAEMON]
    assert tuple(s["step"] for s in seen) == STEPS  # and the lab's own list says the same
    at = {s["step"]: s for s in seen}
    launcher, child = at["close fds"]["pid"], at["fork"]["pid"]
    assert at["reset mask"]["pid"] == launcher and at["fork"]["ppid"] == launcher
    assert child != launcher and at["setsid"]["pid"] == child
    assert at["setsid"]["sid"] == at["setsid"]["pgid"] == child  # 6: leader of its own session
    assert at["fork"]["sid"] != child  # before setsid it was still in the launcher's
    final = at["fork again"]
    assert final["pid"] == int(daemon) and final["sid"] == child
    assert final["ppid"] in (child, os.getpid())  # or, once 8 happened, us: the subreaper
    assert all(at[s]["pid"] == final["pid"] for s in STEPS[STEPS.index("fork again") :])
    assert at["fork again"]["stdin"].startswith("pipe:") and at["streams"]["stdin"] == os.devnull
    assert at["streams"]["umask"] == 0o077 and at["umask"]["umask"] == 0o022
    assert at["umask"]["cwd"] == str(world.dir) and at["chdir /"]["cwd"] == "/"
    assert at["chdir /"]["pidfile"] is None and at["pidfile"]["pidfile"] == f"{daemon}\n"
