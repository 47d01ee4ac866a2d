"""What every manager module provides, the folder it works in, and the sweep after it.

One interface for competing versions (curio's examples/bench): each manager
module (supervisord.py, circus.py, honcho.py, monit.py, harness.py) defines a
Manager subclass that writes its own configuration into a Place, starts the
manager, asks it to stop the daemon, says what state it is in, and closes it.
events.py drives all of them the same way.

A Place is a fresh temporary folder per manager and event. Every process
started for it names the folder on its command line (the manager's config,
the daemon's --notify and --pidfile), and fork keeps a command line, so the
daemon's child and grandchild name it too: `leftovers(place)` finds whatever
is still running, whoever its parent is now, and `sweep(place)` ends it. That
is the guarantee that nothing outlives the experiment, even a grandchild that
left every process group and a manager that ignored its stop.
"""

from __future__ import annotations

import shutil
import signal
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import psutil

from lab import children

__all__ = ["Manager", "Place", "leftovers", "sweep"]

#: How long a manager gets to stop itself (and its daemon) before KILL: each
#: exits in well under a second here, whatever its daemon does.
CLOSE_GRACE_S = children.GRACE_S


@dataclass
class Place:
    """The temporary folder of one manager and one event, and the paths in it."""

    dir: Path

    @classmethod
    def create(cls) -> Place:
        # Short and in /tmp: an AF_UNIX socket path must fit in 108 bytes.
        return cls(Path(tempfile.mkdtemp(prefix="managers-", dir="/tmp")))

    @property
    def notify(self) -> Path:
        return self.dir / "notify.sock"

    @property
    def pidfile(self) -> Path:
        return self.dir / "daemon.pid"

    def daemon_command(
        self, *, children: bool = False, crash: bool = False, pidfile: Path | None = None
    ) -> list[str]:
        """The daemon's command line (daemon.py), the same under every manager."""
        command = [sys.executable, "-m", "lab.experiments.managers.daemon"]
        command += ["--notify", str(self.notify), "--pidfile", str(pidfile or self.pidfile)]
        return command + ["--children"] * children + ["--crash"] * crash

    def remove(self) -> None:
        shutil.rmtree(self.dir, ignore_errors=True)


class Manager:
    """One process manager driving the daemon in a Place. Subclasses fill in the facts."""

    name: ClassVar[str]  # the records' `manager`
    notices: ClassVar[str]  # how it learns that the daemon died
    stop_signal: ClassVar[str]  # what its stop sends, as configured here
    stop_wait_s: ClassVar[float]  # how long its stop waits before KILL, as configured here
    gives_up: ClassVar[str]  # what a crash loop ends in, as its documentation says
    #: Seconds by which its documented give-up has come on a loaded machine, or None for
    #: a manager that keeps trying (or only sometimes gives up): a crash loop is watched
    #: at least this long, so its verdict does not depend on where a fixed window ends.
    gives_up_within_s: ClassVar[float | None] = None
    final_states: ClassVar[tuple[str, ...]] = ()  # states() that mean "it gave up"
    command: ClassVar[str]  # the executable that must be installed
    setting: ClassVar[str] = ""  # the setting that decides how soon it restarts, as configured

    def __init__(self, place: Place, *, children: bool = False, crash: bool = False) -> None:
        self.place = place
        self.crash = crash
        self.daemon = place.daemon_command(children=children, crash=crash)
        self.proc: subprocess.Popen | None = None

    # -- what a subclass writes ----------------------------------------------------------
    @classmethod
    def missing(cls) -> str | None:
        """One line saying what is not installed and how to get it, or None."""
        raise NotImplementedError

    def argv(self) -> list[str]:
        """Write the configuration into the place; return the manager's command line."""
        raise NotImplementedError

    def stop_daemon(self) -> None:
        """Ask the manager to stop the daemon, the way its users do."""
        raise NotImplementedError

    def state(self) -> str:
        """The daemon's state in the manager's own words (supervisord's FATAL...)."""
        raise NotImplementedError

    def explain(self) -> str:
        """A measurement that explains this manager's restart time here ("" if none)."""
        return ""

    def effective(self) -> str | None:
        """`setting` as the running manager reports it (None: it has no way to say)."""
        return None

    # -- the same for all ------------------------------------------------------------------
    @classmethod
    def gave_up(cls, state: str) -> bool:
        return state.startswith(cls.final_states) if cls.final_states else False

    def start(self) -> None:
        argv = self.argv()
        with open(self.place.dir / "manager.log", "ab") as log:
            # Its own session: a Ctrl-C typed at the terminal reaches the lab, whose
            # finally blocks stop the manager in order, not every process at once.
            self.proc = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                cwd=self.place.dir,
            )

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def close(self) -> int | None:
        """Stop the manager (TERM to its group, a grace, KILL); its exit code."""
        if self.proc is None:
            return None
        return children.stop_popen(self.proc, CLOSE_GRACE_S, group=True)


def leftovers(place: Place) -> list[psutil.Process]:
    """Every live process whose command line names the place's folder."""
    mark = str(place.dir)
    found = []
    for proc in psutil.process_iter(["cmdline", "status"]):
        if proc.info["status"] == psutil.STATUS_ZOMBIE:
            continue  # already dead; its parent (maybe PID 1, late) reaps it
        if any(mark in part for part in proc.info["cmdline"] or ()):
            found.append(proc)
    return found


def sweep(place: Place, timeout: float = 5.0) -> list[str]:
    """KILL whatever `leftovers` finds and wait until it is gone; what it was."""
    found = leftovers(place)
    described = [f"pid {p.pid} ({_short(p)})" for p in found]
    children.signal_pids([p.pid for p in found], signal.SIGKILL)
    # Not our children (their parent is a manager, or PID 1 now): psutil polls for them.
    psutil.wait_procs(found, timeout=timeout)
    return described


def _short(proc: psutil.Process) -> str:
    try:
        cmdline = proc.cmdline()
    except psutil.Error:
        return "gone"
    return " ".join(Path(part).name if "/" in part else part for part in cmdline[:4])
