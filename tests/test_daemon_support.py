"""Helpers for the daemon tests: a subreaper, a tagged daemon world, clean-up that always runs.

Every process a daemon test starts carries DAEMONLAB_TEST_TAG=<uuid> in its
environment, so clean-up finds it from outside (/proc/PID/environ) even when
it was double-forked away from us: stop, then KILL, then reap. While a test
runs, this process is a child subreaper (prctl 36), so the test's daemons are
re-parented here, not to PID 1 (which reaps adopted orphans late on this
machine), and the subreaper flag is put back afterwards so other tests'
orphans never land on us.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import psutil
import pytest

from lab.daemon.pidfile import holder
from lab.procfs import set_subreaper
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


def reap_our_zombies() -> None:
    for child in psutil.Process().children():
        try:
            if child.status() == psutil.STATUS_ZOMBIE:
                os.waitpid(child.pid, os.WNOHANG)
        except (psutil.NoSuchProcess, ChildProcessError):
            pass


def wait_until(predicate, timeout: float, what: str, step: float = 0.05):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        reap_our_zombies()
        time.sleep(step)
    raise AssertionError(f"timed out after {timeout:g}s waiting for {what}")


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
