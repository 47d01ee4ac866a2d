"""Helpers for the daemon tests: a subreaper, a tagged daemon world, a terminal, clean-up.

Every process a daemon test starts carries DAEMONLAB_TEST_TAG=<uuid> in its
environment, so clean-up finds it from outside (/proc/PID/environ) even when
it was double-forked away from us: stop, then KILL, then reap. While a test
runs, this process is a child subreaper (prctl 36), so the test's daemons are
re-parented here, not to PID 1 (which reaps adopted orphans late on this
machine), and the subreaper flag is put back afterwards so other tests'
orphans never land on us.

"No controlling terminal" holds trivially for a daemon whose launcher never
had one (pytest under CI has none), so the tests that check it run the
launcher in a session whose controlling terminal is a pseudo-terminal
(`terminal_session`), as fork fact 15 does: a daemon must be seen to lose a
terminal, not to lack one.
"""

from __future__ import annotations

import os
import select
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager as ContextManager
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import psutil
import pytest

from lab import children
from lab.daemon.pidfile import holder
from lab.procfs import set_subreaper
from tests import conftest
from tests.conftest import ROOT

TAG = "DAEMONLAB_TEST_TAG"


def tagged(tag: str) -> list[int]:
    """Live pids whose environment carries this test's tag (zombies have no environ)."""
    marker = f"{TAG}={tag}".encode()
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == os.getpid():
            continue
        try:
            environ = Path(f"/proc/{entry}/environ").read_bytes()
        except OSError:
            continue
        if marker in environ.split(b"\0"):
            found.append(int(entry))
    return found


def proc_state(pid: int) -> tuple[str, int] | None:
    """(state, ppid) from /proc/PID/stat, or None when the pid is gone."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = text[text.rindex(")") + 2 :].split()
    return fields[0], int(fields[1])


#: The exit code of a session holder whose pty did not become its terminal.
NO_TERMINAL = 97
#: A session leader that takes fd 0 (a pty) as its controlling terminal
#: (TIOCSCTTY, tty_ioctl(4)), runs argv[3:] as its child, writes the child's exit
#: code on fd argv[1], then holds the session until fd argv[2] reaches EOF. It must
#: outlive the command: when a session leader exits, the kernel takes the terminal
#: away from its whole session, and "the daemon has no terminal" would hold again.
_HOLD_SESSION = f"""
import fcntl, os, subprocess, sys, termios
fcntl.ioctl(0, termios.TIOCSCTTY, 0)
stat = open("/proc/self/stat").read()
if int(stat[stat.rindex(")") + 2 :].split()[4]) == 0:  # tty_nr: still no terminal
    sys.exit({NO_TERMINAL})
code = subprocess.run(sys.argv[3:]).returncode
os.write(int(sys.argv[1]), str(code).encode())
os.close(int(sys.argv[1]))
os.read(int(sys.argv[2]), 1)
"""


@contextmanager
def terminal_session(
    argv: Sequence[str], timeout: float = 60, **popen
) -> Iterator[subprocess.CompletedProcess]:
    """Run `argv` in a new session whose controlling terminal is a fresh pty.

    Yields once `argv` has exited (its code, stdout and stderr); the session
    and its terminal live on until the block ends, so what `argv` left behind
    (a daemon) can be looked at while the terminal still exists.
    """
    master, slave = os.openpty()
    status_r, status_w = os.pipe()
    hold_r, hold_w = os.pipe()
    with ExitStack() as stack:
        out, err = (stack.enter_context(tempfile.TemporaryFile("w+")) for _ in range(2))
        holder = subprocess.Popen(
            [sys.executable, "-c", _HOLD_SESSION, str(status_w), str(hold_r), *argv],
            stdin=slave,
            stdout=out,
            stderr=err,
            pass_fds=(status_w, hold_r),
            start_new_session=True,  # a session leader without a terminal may take one
            **popen,
        )
        for fd in (slave, status_w, hold_r):
            os.close(fd)
        try:
            ready, _, _ = select.select([status_r], [], [], timeout)
            said = os.read(status_r, 16) if ready else b""
            if said:
                code = int(said)
            elif ready:  # EOF without a code: the holder itself ended (no terminal)
                code = holder.wait(10)
            else:
                raise AssertionError(f"{list(argv)} did not finish within {timeout:g}s")
            out.seek(0)
            err.seek(0)
            yield subprocess.CompletedProcess(list(argv), code, out.read(), err.read())
        finally:
            os.close(hold_w)  # EOF: the holder leaves, and the session's terminal with it
            os.close(status_r)
            try:
                holder.wait(10)
            except subprocess.TimeoutExpired:  # the command hangs: its group goes with it
                children.signal_group(holder.pid, signal.SIGKILL)
                holder.wait()
            os.close(master)


def reap_our_zombies() -> None:
    for child in psutil.Process().children():
        try:
            if child.status() == psutil.STATUS_ZOMBIE:
                os.waitpid(child.pid, os.WNOHANG)
        except (psutil.NoSuchProcess, ChildProcessError):
            pass


def wait_until(predicate, timeout: float, what: str, step: float = 0.05):
    """conftest's wait_until, reaping our zombies between looks (a daemon that exits
    while we wait would otherwise stay one)."""
    return conftest.wait_until(predicate, timeout, what, step, meanwhile=reap_our_zombies)


@dataclass
class World:
    """One test's daemon world: a folder, a results store, a tag, and the CLI."""

    dir: Path
    tag: str = field(default_factory=lambda: uuid.uuid4().hex)

    @property
    def results(self) -> Path:
        return self.dir / "results" / "lab.db"

    @property
    def pidfile(self) -> Path:
        return self.dir / "results" / "daemonlab.pid"

    @property
    def log(self) -> Path:
        return self.dir / "results" / "daemonlab.log"

    def env(self, **more: str) -> dict[str, str]:
        return {
            **os.environ,
            "PYTHONPATH": str(ROOT),
            "LAB_RESULTS": str(self.results),
            TAG: self.tag,
            **more,
        }

    def argv(self, *args: str) -> list[str]:
        return [sys.executable, "-m", "lab", *args]

    def cli(self, *args: str, timeout: float = 60, **more: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            self.argv(*args),
            capture_output=True,
            text=True,
            timeout=timeout,
            env=self.env(**more),
            cwd=self.dir,
        )

    def in_terminal(self, *args: str, timeout: float = 60) -> ContextManager:
        """The CLI run from a session with a pty as its terminal (see terminal_session)."""
        return terminal_session(self.argv(*args), timeout, env=self.env(), cwd=self.dir)

    def popen(self, *args: str, **more: str) -> subprocess.Popen:
        return subprocess.Popen(
            self.argv(*args),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=self.env(**more),
            cwd=self.dir,
        )

    def daemon_pid(self) -> int | None:
        return holder(self.pidfile)

    def wait_gone(self, pid: int, timeout: float = 15) -> None:
        """Wait until `pid` has exited and, if it was re-parented to us, reap it."""

        def gone() -> bool:
            state = proc_state(pid)
            if state is None:
                return True
            if state[0] == "Z" and state[1] == os.getpid():
                try:
                    os.waitpid(pid, 0)
                except ChildProcessError:
                    pass
                return True
            return False

        wait_until(gone, timeout, f"pid {pid} to exit")

    def clean_up(self) -> None:
        """Stop (TERM), then KILL whatever carries our tag, then reap: nothing stays."""
        pid = self.daemon_pid()
        if pid is not None:
            try:
                os.kill(pid, signal.SIGTERM)
                self.wait_gone(pid, timeout=15)
            except (ProcessLookupError, AssertionError):
                pass
        for leftover in tagged(self.tag):
            try:
                os.kill(leftover, signal.SIGKILL)
            except ProcessLookupError:
                pass
        wait_until(lambda: not tagged(self.tag), 10, "tagged processes to die")
        time.sleep(0.1)
        reap_our_zombies()


@pytest.fixture
def subreaper():
    assert set_subreaper(True), "prctl(PR_SET_CHILD_SUBREAPER) failed"
    try:
        yield os.getpid()
    finally:
        reap_our_zombies()
        set_subreaper(False)


@pytest.fixture
def world(tmp_path, no_leaks, subreaper) -> World:
    """A daemon world cleaned up in finally (after the test, before no_leaks looks)."""
    w = World(tmp_path)
    try:
        yield w
    finally:
        w.clean_up()
