"""Every signal that stops a run stops it the same way: docs/stopping.md's table, checked.

TERM, INT, HUP and QUIT, sent to the run's pid or to its whole process group
(a terminal's Ctrl-C, systemd's KillMode=control-group, supervisord's
stopasgroup), during the queries of the threads, fork, pool and asyncio
strategies, and with the dispositions a parent leaves (a script's `cmd &`
ignores INT and QUIT; nohup ignores HUP). Each must end in: one line, the run
stored interrupted, every query in flight finished and every client gone with
a COM_QUIT (the server's Aborted_clients unchanged), every process the run
started gone, exit 128 + the signal's number.

One throwaway server for the module: Aborted_clients counts the whole server,
so on the shared one other programs' aborted connections would count too.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator

import psutil
import pytest

from tests.conftest import ROOT, missing, stored_runs, wait_until
from tests.test_sleep import _tagged_queries

pytestmark = pytest.mark.db

STRATEGIES = ["threads", "fork", "pool", "asyncio"]
SIGNALS = [signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGQUIT]
#: How a stop arrives: `kill PID`, or to every process of the run's group.
TARGETS = {"pid": os.kill, "group": os.killpg}
CLIENTS = 4
SECONDS = "1"


@pytest.fixture(scope="module")
def server():
    """A MariaDB of this module's own: (Server, URL)."""
    from lab import db, mysqld

    if mysqld.find_binary() is None:
        missing("no mariadbd or mysqld installed")
    with mysqld.throwaway() as m:
        srv = db.Server("127.0.0.1", m.port, "root", "", "test", source="test", pid=m.pid)
        yield srv, f"mysql://root:@127.0.0.1:{m.port}/test"


def _status(srv, name: str) -> int:
    from lab import db

    with db.connect(srv) as conn, conn.cursor() as cur:
        cur.execute("SHOW GLOBAL STATUS LIKE %s", (name,))
        return int(cur.fetchone()[1])


def _start(url: str, strategy: str, *, ignoring: str = "", argv=()) -> subprocess.Popen:
    """`daemonlab run sleep` leading its own group, through `sh -c 'trap "" SIGS; exec ...'`
    when it must inherit `ignoring` as ignored (the shell's own way to hand that down)."""
    run = [sys.executable, "-m", "lab", "run", "sleep", "--clients", str(CLIENTS)]
    run += ["--seconds", SECONDS, "--strategy", strategy, *argv]
    return _popen(_ignoring(ignoring) + run, url)


@contextlib.contextmanager
def _group_killed_after(proc: subprocess.Popen) -> Iterator[None]:
    """Whatever happens in the block, nothing of `proc`'s group outlives it."""
    try:
        yield
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.communicate()


def _popen(argv: list[str], url: str) -> subprocess.Popen:
    """`argv` leading a process group of its own, with the lab pointed at `url`, started
    with the four stop signals at their defaults: what a test hands down is its own choice,
    not what pytest inherited (under `nohup pytest` every run began with HUP ignored)."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), "LAB_MYSQL_URL": url, "LAB_DB_PATHS": "url"}
    pipes = {"stdout": subprocess.PIPE, "stderr": subprocess.PIPE, "text": True}
    return subprocess.Popen(_DEFAULTS + argv, env=env, start_new_session=True, **pipes)


#: exec argv with INT, TERM, HUP and QUIT at SIG_DFL (dispositions survive exec; sh cannot
#: undo an ignored one: POSIX lets a non-interactive shell keep it ignored)
_DEFAULTS = [
    sys.executable, "-c",
    "import os, signal, sys\n"
    "for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT):\n"
    "    signal.signal(s, signal.SIG_DFL)\n"
    "os.execvp(sys.argv[1], sys.argv[1:])",
]  # fmt: skip


def _ignoring(signals: str) -> list[str]:
    """A launcher that hands `signals` down as ignored, the shell's own way; [] for none."""
    return ["sh", "-c", f'trap "" {signals}; exec "$@"', "sh"] if signals else []


def _ignored(status: str) -> set[int]:
    """The signals a process ignores, from the SigIgn bit mask of its /proc/PID/status."""
    mask = next(int(line.split()[1], 16) for line in status.splitlines() if "SigIgn" in line)
    return {n for n in range(1, 65) if mask >> (n - 1) & 1}


def _inherits(launcher: list[str]) -> set[int]:
    """What a command started by `launcher` inherits as ignored: grep reads its own status."""
    shown = subprocess.run([*launcher, "grep", "SigIgn", "/proc/self/status"], capture_output=True)
    return _ignored(shown.stdout.decode())


def _alive(process: psutil.Process) -> bool:
    try:
        return process.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def _stop_mid_query(srv, proc: subprocess.Popen, signum: int, target: str) -> dict:
    """Wait for every client's SLEEP, note what the run started, send the signal, wait.

    Returns what was seen: the exit code, stderr, seconds from signal to exit,
    the run's processes at the signal, and the Aborted_clients before and after."""
    aborted = _status(srv, "Aborted_clients")
    with _group_killed_after(proc):
        wait_until(lambda: _tagged_queries(srv) >= CLIENTS, 60, "every client's SLEEP")
        started = psutil.Process(proc.pid).children(recursive=True)
        sent = time.monotonic()
        TARGETS[target](proc.pid, signum)
        _, err = proc.communicate(timeout=60)
        took = time.monotonic() - sent
    # The server notices a closed connection a moment later (closing is asynchronous).
    idle = lambda: _tagged_queries(srv) == 0 and _status(srv, "Threads_connected") <= 1  # noqa: E731
    wait_until(idle, 10, "the server idle")
    return {
        "code": proc.returncode,
        "err": err,
        "took": took,
        "started": started,
        "aborted": _status(srv, "Aborted_clients") - aborted,
    }


def _assert_stopped_cleanly(seen: dict, signum: int, results_path) -> None:
    err = seen["err"]
    assert seen["code"] == 128 + signum, err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    assert f"sleep interrupted by {signal.Signals(signum).name}" in err, err
    (run,) = stored_runs(results_path, "sleep")
    assert run.status == "interrupted"
    assert seen["aborted"] == 0, "every client finished its query and said goodbye (COM_QUIT)"
    # Every query in flight finished: the run waited for the sleep, not cut it off.
    assert seen["took"] > 0.3, f"ended {seen['took']:.2f} s after the signal: queries cut off?"
    left = [p for p in seen["started"] if _alive(p)]
    assert not left, f"outlived the run: {left}"


@pytest.mark.parametrize("strategy", STRATEGIES)
@pytest.mark.parametrize("target", TARGETS)
@pytest.mark.parametrize("signum", SIGNALS, ids=[s.name for s in SIGNALS])
def test_every_stop_signal_to_pid_or_group_stops_a_run_cleanly(
    server, results_path, signum, target, strategy
):
    srv, url = server
    seen = _stop_mid_query(srv, _start(url, strategy), signum, target)
    print(
        f"\nSAW {signal.Signals(signum).name} {target} {strategy}: exit {seen['code']},"
        f" {seen['took']:.2f} s after the signal, aborted +{seen['aborted']}"
    )
    _assert_stopped_cleanly(seen, signum, results_path)


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT, signal.SIGQUIT])
def test_a_run_that_inherited_int_and_quit_ignored_still_stops_on_each(
    server, results_path, signum
):
    """A script's `cmd &` starts cmd with INT and QUIT ignored (POSIX, no job control):
    TERM, passed on as an ignored SIGINT, used to go nowhere and the run went on."""
    srv, url = server
    assert {signal.SIGINT, signal.SIGQUIT} <= _inherits(_ignoring("INT QUIT"))
    proc = _start(url, "fork", ignoring="INT QUIT")
    seen = _stop_mid_query(srv, proc, signum, "pid")
    _assert_stopped_cleanly(seen, signum, results_path)


def test_term_stops_a_run_a_script_started_with_ampersand(server, results_path):
    """The issue's reproduction, as a script does it: bash -c 'daemonlab run ... & kill $!'."""
    srv, url = server
    script = (  # first a `&` job that shows what such a job inherits, then the run
        "grep SigIgn /proc/self/status & wait $!; "
        f'"{sys.executable}" -m lab run sleep --clients {CLIENTS} --seconds {SECONDS}'
        " --strategy threads --repeat 3 & P=$!; echo $P; wait $P; echo $?"
    )
    proc = _popen(["bash", "-c", script], url)
    with _group_killed_after(proc):
        inherited = _ignored(proc.stdout.readline())
        run_pid = int(proc.stdout.readline())
        wait_until(lambda: _tagged_queries(srv) >= CLIENTS, 60, "every client's SLEEP")
        os.kill(run_pid, signal.SIGTERM)
        out, err = proc.communicate(timeout=60)
    assert signal.SIGINT in inherited, "bash starts a `&` job with INT ignored"
    assert out.split() == ["143"], (out, err)
    assert "sleep interrupted by SIGTERM" in err and "Traceback" not in err
    (run,) = stored_runs(results_path, "sleep")
    assert run.status == "interrupted"


def test_a_run_under_nohup_outlives_hup(server, results_path):
    """nohup's HUP ignored is the one inherited disposition kept: the user asked for it."""
    srv, url = server
    proc = _start(url, "threads", ignoring="HUP")
    with _group_killed_after(proc):
        wait_until(lambda: _tagged_queries(srv) >= CLIENTS, 60, "every client's SLEEP")
        os.kill(proc.pid, signal.SIGHUP)
        _, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    (run,) = stored_runs(results_path, "sleep")
    assert run.status == "ok"


def test_the_watcher_leaves_quietly_when_the_measuring_process_is_gone(server):
    """kill -9 of a run (or, before, a HUP that ended it at once) while the watcher
    waits for the plateau: its next look at the run's processes found none, and it
    printed psutil.NoSuchProcess's traceback. Now it leaves, as at EOF, in silence."""
    import json

    from lab import children, db

    srv, _ = server
    run = subprocess.Popen(["sleep", "60"])  # stands for the measuring process
    watcher = subprocess.Popen(
        children.main_argv("lab.experiments.sleep.watcher"),
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    config = {"server": dataclasses.asdict(srv), "tag": "f00d", "seconds": 1, "client_pid": run.pid}
    try:
        for line, answer in ((json.dumps(config), "ready"), ("begin 1", "begun")):
            watcher.stdin.write(line + "\n")  # one line at a time, as its protocol has it
            watcher.stdin.flush()
            assert watcher.stdout.readline().strip() == answer
        run.kill()
        run.wait()
        with db.connect(srv) as conn, conn.cursor() as cur:  # the plateau it waited for
            cur.execute("SELECT SLEEP(0.5) /* daemonlab f00d */")
        code = watcher.wait(timeout=30)
        err = watcher.stderr.read()
    finally:
        if watcher.poll() is None:
            watcher.kill()
        watcher.communicate()
    assert "Traceback" not in err and code == 1, err
