"""lab.children: TERM, grace, KILL, reap, against real children that behave and that do not."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time

import pytest

from lab import children, procfs

# A child that ignores TERM: only KILL ends it.
STUBBORN = (
    "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
    "print('up', flush=True); time.sleep(60)"
)
# A child that starts a grandchild in its own process group, then waits.
PARENT_OF_ONE = (
    "import subprocess, sys, time; "
    "p = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)']); "
    "print(p.pid, flush=True); time.sleep(60)"
)


def started(code: str, **popen) -> tuple[subprocess.Popen, str]:
    """The child, once it is up (its dispositions set), and the first line it printed."""
    proc = subprocess.Popen(
        [sys.executable, "-c", code], stdout=subprocess.PIPE, text=True, **popen
    )
    return proc, proc.stdout.readline()


def forked_sleeper(ignore_term: bool = False) -> int:
    pid = os.fork()
    if pid == 0:
        try:
            if ignore_term:
                signal.signal(signal.SIGTERM, signal.SIG_IGN)
            time.sleep(60)
        finally:
            os._exit(0)
    return pid


def test_exit_code_reads_exits_and_signals():
    pid = os.fork()
    if pid == 0:
        os._exit(7)
    assert children.exit_code(os.waitpid(pid, 0)[1]) == 7
    pid = forked_sleeper()
    os.kill(pid, signal.SIGUSR1)
    assert children.exit_code(os.waitpid(pid, 0)[1]) == -signal.SIGUSR1


def test_stop_pid_escalates_to_kill_when_term_is_ignored(no_leaks):
    pid = forked_sleeper(ignore_term=True)
    time.sleep(0.2)  # let it ignore TERM before we send it
    began = time.monotonic()
    assert children.stop_pid(pid, grace=0.3) == -signal.SIGKILL
    assert 0.3 <= time.monotonic() - began < 5
    assert procfs.proc_stat(pid) is None  # reaped: not even a zombie


def test_stop_pid_ends_a_willing_child_with_term_at_once(no_leaks):
    pid = forked_sleeper()
    began = time.monotonic()
    assert children.stop_pid(pid, grace=5) == -signal.SIGTERM
    assert time.monotonic() - began < 2


def test_stop_pid_of_a_stranger_says_none():
    assert children.stop_pid(os.getppid(), grace=0.1) is None  # not our child: nothing done


def test_stop_popen_with_group_takes_the_grandchild_too(no_leaks):
    proc, line = started(PARENT_OF_ONE, start_new_session=True)
    grandchild = int(line)
    assert children.stop_popen(proc, grace=1, group=True) == -signal.SIGTERM
    deadline = time.monotonic() + 5  # PID 1 reaps the orphaned grandchild, late here
    while (stat := procfs.proc_stat(grandchild)) is not None and stat["state"] != "Z":
        assert time.monotonic() < deadline, "the grandchild outlived its group's stop"
        time.sleep(0.02)


def test_stop_popen_kills_what_ignores_term(no_leaks):
    proc, _ = started(STUBBORN)
    assert children.stop_popen(proc, grace=0.3) == -signal.SIGKILL


def test_stop_pids_shares_one_grace_period(no_leaks):
    pids = [forked_sleeper(ignore_term=True) for _ in range(5)]
    time.sleep(0.2)
    began = time.monotonic()
    ended = dict(children.stop_pids(pids, grace=0.5))
    assert set(ended) == set(pids)
    assert all(code == -signal.SIGKILL for code in ended.values())
    assert time.monotonic() - began < 0.5 * len(pids)  # together, not one after another


def test_reap_all_collects_every_ended_child(no_leaks):
    pids = []
    for code in (0, 3, 5):
        pid = os.fork()
        if pid == 0:
            os._exit(code)
        pids.append(pid)
    reaped = dict(children.reap_all(timeout=5))
    assert {pid: reaped.get(pid) for pid in pids} == dict(zip(pids, (0, 3, 5), strict=True))


def test_wait_pid_is_bounded(no_leaks):
    pid = forked_sleeper()
    try:
        began = time.monotonic()
        assert children.wait_pid(pid, 0.2) is None
        assert time.monotonic() - began < 1
    finally:
        children.stop_pid(pid)
    with pytest.raises(ChildProcessError):
        children.wait_pid(pid, 0.1)


def test_join_threads_holds_ctrl_c_until_every_thread_has_ended():
    """A plain Thread.join cut short by Ctrl-C leaves its thread running while CPython
    up to 3.12 calls it ended (gh-90882), so the interpreter's exit would not wait."""
    ended = threading.Event()

    def client() -> None:
        time.sleep(0.5)  # a query in flight
        ended.set()  # its last act: the goodbye that must not be cut off

    worker = threading.Thread(target=client)
    ctrl_c = threading.Timer(0.1, os.kill, (os.getpid(), signal.SIGINT))
    worker.start()
    ctrl_c.start()
    began = time.monotonic()
    with pytest.raises(KeyboardInterrupt):
        children.join_threads([worker, ctrl_c], timeout=10)
    assert ended.is_set(), "Ctrl-C cut the wait short"
    assert time.monotonic() - began >= 0.45
    assert signal.SIGINT not in signal.pthread_sigmask(signal.SIG_BLOCK, [])


def test_join_threads_is_bounded_and_skips_threads_never_started():
    stuck = threading.Event()
    worker = threading.Thread(target=stuck.wait)
    worker.start()
    try:
        began = time.monotonic()
        children.join_threads([worker, threading.Thread(target=print)], timeout=0.2)
        assert time.monotonic() - began < 1
        assert worker.is_alive()
    finally:
        stuck.set()
        worker.join()
