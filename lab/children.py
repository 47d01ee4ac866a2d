"""Stopping and reaping the processes the lab starts: written once, used by every topic.

Every experiment starts processes (forks, pools, interpreters, servers,
daemons, managers) and promises that none outlives it: no zombie, no orphan.
The one way to stop one, as trio's `_posix_deliver_cancel` does it:

    TERM (to the process, or to its whole process group),
    a grace period to run its finally blocks and say goodbye,
    KILL if it is still there (visibly: the caller can log it),
    then wait, so the kernel can forget it (no zombie).

and the one way a parent reaps many children, as gunicorn's `reap_workers`
does it: waitpid(-1, WNOHANG) until it returns 0, tolerating only ECHILD.

Threads are waited for here too (join_threads), because a Ctrl-C that cuts
a Thread.join short leaves CPython up to 3.12 believing a running thread has
ended, and then nothing waits for it.

Standard library only: the measured parts that run under other interpreters
(lab.interpreters, 3.10 and newer) stop their children with it too.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterable, Iterator

from lab import procfs

__all__ = [
    "GRACE_S",
    "STOP_SIGNALS",
    "exit_code",
    "ignore_stop_signals",
    "join_threads",
    "main_argv",
    "reap_all",
    "signal_group",
    "signal_pids",
    "stop_pid",
    "stop_pids",
    "stop_process",
    "stop_signals_held",
    "stop_popen",
    "wait_pid",
    "wait_status",
]

#: Escalating to KILL is said here (visibly, as trio does): a child that ignores TERM
#: is worth knowing about. The lab's loggers go where the front door sends them.
log = logging.getLogger(__name__)

#: The default time between TERM and KILL: a Python child's finally blocks,
#: a MySQL client's COM_QUIT, a flush of a log, all fit in well under this.
GRACE_S = 2.0

#: The signals that stop a lab command the way Ctrl-C does (lab.cli takes them
#: over): INT, TERM, HUP (the terminal closing) and QUIT (Ctrl-\).
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT)

#: How long waitpid polling sleeps at most between looks (it starts far lower).
POLL_MAX_S = 0.02


def main_argv(module: str, *args: str, python: str = sys.executable) -> list[str]:
    """The command line that runs `module`'s main(argv) in a fresh interpreter.

    Not `python -m module`: a module inside a package whose __init__ imports
    it would then be imported twice, once as itself and once as __main__
    (runpy warns "found in sys.modules after import of package"), with two
    copies of every global. main's return value is the exit code.
    """
    code = f"import sys; from {module} import main; sys.exit(main(sys.argv[1:]))"
    return [python, "-c", code, *args]


def exit_code(status: int) -> int:
    """A raw wait status as a shell would say it: the exit code, or -N for signal N."""
    return os.waitstatus_to_exitcode(status)


def signal_group(pgid: int, signum: int) -> bool:
    """Send `signum` to every process of group `pgid`; False if the group is empty."""
    return _delivered(os.killpg, pgid, signum)


def signal_pids(pids: Iterable[int], signum: int) -> None:
    """Send `signum` to each pid; one that already ended is no error."""
    for pid in pids:
        _signal_one(pid, signum)


def wait_status(pid: int, timeout: float) -> int | None:
    """Reap our child `pid` within `timeout` s: its raw wait status, or None if it still runs.

    Raises ChildProcessError when `pid` is not (or no longer) our child.
    Polling with WNOHANG is the one bounded wait for a pid (waitpid has no
    timeout); the delay doubles from 0.5 ms, so a quick exit costs little.
    """
    deadline = time.monotonic() + timeout
    delay = 0.0005
    while True:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            return status
        left = deadline - time.monotonic()
        if left <= 0:
            return None
        time.sleep(min(delay, left))
        delay = min(delay * 2, POLL_MAX_S)


def wait_pid(pid: int, timeout: float) -> int | None:
    """wait_status, decoded: the exit code (-N for signal N), or None if it still runs."""
    status = wait_status(pid, timeout)
    return None if status is None else exit_code(status)


def stop_pid(pid: int, grace: float = GRACE_S, *, group: bool = False) -> int | None:
    """TERM, `grace` s, KILL, reap our child `pid` (its whole group if `group`).

    Returns its exit code (-15 when TERM ended it, -9 when KILL had to), or
    None when it was not our child to reap (someone else reaped it already).
    """
    send = signal_group if group else _signal_one
    try:
        code = wait_pid(pid, 0)
        if code is not None:
            if group:  # it ended; what it started and left in its group goes too
                signal_group(pid, signal.SIGKILL)
            return code
        send(pid, signal.SIGTERM)
        code = wait_pid(pid, grace)
        if code is None:
            log.warning("pid %d still up %g s after TERM: sending KILL", pid, grace)
            send(pid, signal.SIGKILL)
            code = wait_pid(pid, 60.0)  # KILL cannot be caught: this ends at once
        if group:
            signal_group(pid, signal.SIGKILL)
        return code
    except ChildProcessError:
        return None


def stop_process(pid: int, grace: float = GRACE_S, *, patience: float = 0.0) -> bool:
    """TERM, `grace` s, KILL a process that need not be our child; False if it was gone.

    A daemon (its launcher exited, so PID 1 or a subreaper adopted it) or a
    server `daemonlab db up` left running is nobody's child here. Ours is
    reaped; anyone else's counts as ended once it is a zombie: it has let go
    of its port and files, and its parent (PID 1, late on this machine) reaps
    it. `patience` first gives it that long to end by itself.
    """
    if _ended(pid):
        return False
    if not _ended_within(pid, patience):
        _signal_one(pid, signal.SIGTERM)
        if not _ended_within(pid, grace):
            log.warning("pid %d still up %g s after TERM: sending KILL", pid, grace)
            _signal_one(pid, signal.SIGKILL)
            _ended_within(pid, 60.0)  # KILL cannot be caught: this ends at once
    return True


def _ended(pid: int) -> bool:
    """Gone, a zombie of someone else's, or ours and now reaped."""
    try:
        return wait_pid(pid, 0) is not None
    except ChildProcessError:
        stat = procfs.proc_stat(pid)
        return stat is None or stat["state"] == "Z"


def _ended_within(pid: int, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while not _ended(pid):
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.01)
    return True


def stop_pids(
    pids: Iterable[int], grace: float = GRACE_S, *, patience: float = 0.0
) -> list[tuple[int, int | None]]:
    """Stop many children at once: TERM to all, one shared grace period, KILL the rest.

    `patience` first gives them that long to end by themselves (a child still
    in a query finishes it and hangs up properly) before anyone is signalled.
    Returns (pid, exit code or None) for each. Stopping them one after the
    other would cost up to `grace` per child; together it costs `grace` once.
    """
    waiting = list(pids)
    ended: list[tuple[int, int | None]] = []
    began = time.monotonic()
    escalation = [(patience, signal.SIGTERM), (patience + grace, signal.SIGKILL)]
    while waiting:
        for pid in list(waiting):
            try:
                code = wait_pid(pid, 0)
            except ChildProcessError:  # reaped elsewhere: nothing left to wait for
                waiting.remove(pid)
                ended.append((pid, None))
                continue
            if code is not None:
                waiting.remove(pid)
                ended.append((pid, code))
        if waiting and escalation and time.monotonic() - began >= escalation[0][0]:
            signal_pids(waiting, escalation.pop(0)[1])
        if waiting:
            time.sleep(0.005)
    return ended


def stop_popen(proc: subprocess.Popen, grace: float = GRACE_S, *, group: bool = False) -> int:
    """stop_pid for a subprocess.Popen, which must do its own waiting (it keeps the
    returncode); its pipes are closed too. Returns the returncode."""
    if proc.poll() is None:
        if group:
            signal_group(proc.pid, signal.SIGTERM)
        else:
            proc.terminate()
        try:
            proc.wait(grace)
        except subprocess.TimeoutExpired:
            if group:
                signal_group(proc.pid, signal.SIGKILL)
            else:
                proc.kill()
            proc.wait()
    if group:
        signal_group(proc.pid, signal.SIGKILL)
    for pipe in (proc.stdin, proc.stdout, proc.stderr):
        if pipe is not None:
            pipe.close()
    return proc.returncode


def join_threads(threads: Iterable[threading.Thread], timeout: float) -> None:
    """Wait up to `timeout` s in all for every started thread to end, the STOP_SIGNALS held.

    A Thread.join that KeyboardInterrupt cuts short marks the thread it waited
    for as stopped while it still runs (3.12 and before; 3.13 joins
    differently; https://github.com/python/cpython/issues/90882): the
    interpreter's exit then does not wait for it, and a client thread in the
    middle of its query dies with the process, its connection cut without a
    COM_QUIT (measured here: the server counted an aborted client for nearly
    every Ctrl-C during a one-client `run sleep --strategy threads`). So the
    STOP_SIGNALS are blocked in this thread while it joins. The kernel gives them to
    another thread, whose C handler only notes them, and this thread runs the
    Python handlers (the KeyboardInterrupt) as soon as the mask comes off.
    """
    deadline = time.monotonic() + timeout
    with stop_signals_held():
        for thread in threads:
            if thread.ident is not None:  # never started: nothing to wait for
                thread.join(max(0.0, deadline - time.monotonic()))


@contextlib.contextmanager
def stop_signals_held() -> Iterator[None]:
    """Block the STOP_SIGNALS in this thread for the block; one that comes meanwhile waits.

    Two uses. Around a join (join_threads). And around starting children that
    must take their orders from the parent alone: the mask survives fork and
    exec, so a child made while it is held cannot be killed by a signal sent
    to the whole group (a supervisor's stop) before it sets its own
    dispositions (ignore_stop_signals); the parent gets the signal as the
    block ends. A child starts with no signal pending (fork(2)).
    """
    held = signal.pthread_sigmask(signal.SIG_BLOCK, STOP_SIGNALS)
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, held)


def ignore_stop_signals() -> None:
    """In a child started under stop_signals_held: ignore the STOP_SIGNALS, then unblock them.

    For children whose parent tells them when to stop (by closing a pipe,
    setting an event): a Ctrl-C or a TERM sent to the whole group reaches
    them too, and would cut their work off mid-way while the parent lets it
    finish. KILL, the parent's last resort, cannot be ignored.
    """
    for signum in STOP_SIGNALS:
        signal.signal(signum, signal.SIG_IGN)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, STOP_SIGNALS)


def reap_all(timeout: float = 0.0) -> list[tuple[int, int]]:
    """Reap every ended child (ours and adopted orphans): [(pid, exit code), ...].

    gunicorn's reap_workers loop: waitpid(-1, WNOHANG) until it returns 0 (no
    more ended children) or ECHILD (no children at all, the one errno
    expected). With a `timeout`, go on looking until it passes or none is left.
    """
    deadline = time.monotonic() + timeout
    reaped: list[tuple[int, int]] = []
    while True:
        try:
            pid, status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return reaped
        if pid:
            reaped.append((pid, exit_code(status)))
        elif time.monotonic() >= deadline:
            return reaped
        else:
            time.sleep(0.01)


def _signal_one(pid: int, signum: int) -> bool:
    return _delivered(os.kill, pid, signum)


def _delivered(send: Callable[[int, int], None], target: int, signum: int) -> bool:
    """send(target, signum); False when nobody was there to get it (ESRCH)."""
    try:
        send(target, signum)
    except ProcessLookupError:
        return False
    return True
