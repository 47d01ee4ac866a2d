"""honcho: the daemon as a line of a Procfile, beside a sibling; no restart, ever.

honcho (Foreman's Python port, https://honcho.readthedocs.io) runs each
Procfile line with `sh -c` in a session of its own, reads its output on a
pipe, and learns that it died when that pipe closes and wait() returns. It
has no restart at all: when one process ends, honcho sends SIGTERM to the
process group of every other one, waits 5 s (KILL_WAIT, fixed), sends
SIGKILL, and exits. That is the lesson of the `sibling` line below: the
daemon's death takes the sibling with it.

Its stop is its own TERM or Ctrl-C: the same TERM to every process group.
A trap it shares with any manager that watches a pipe: a child of the daemon
that keeps the pipe open keeps honcho from ever seeing the daemon's death.
"""

from __future__ import annotations

import shlex
import signal
import sys
from pathlib import Path

from lab.experiments.managers.manager import Manager

__all__ = ["Honcho"]

BIN = Path(sys.executable).parent


class Honcho(Manager):
    name = "honcho"
    command = "honcho"
    notices = "its output pipe closes, then wait(); no restart: stops every other process"
    stop_signal = "TERM to each process group (its own TERM or Ctrl-C)"
    stop_wait_s = 5.0
    gives_up = "no restart: the first exit stops everything"
    final_states = ("exited",)
    #: The first exit, then KILL_WAIT (5 s) at most for the others.
    gives_up_within_s = 10.0

    @classmethod
    def missing(cls) -> str | None:
        if (BIN / "honcho").exists():
            return None
        return "honcho is not installed: pip install honcho"

    def argv(self) -> list[str]:
        procfile = self.place.dir / "Procfile"
        sibling = self.place.daemon_command(pidfile=self.place.dir / "sibling.pid")
        # exec: the daemon replaces the shell, so honcho's pid is the daemon's.
        procfile.write_text(
            f"daemon: exec {shlex.join(self.daemon)}\nsibling: exec {shlex.join(sibling)}\n"
        )
        return [str(BIN / "honcho"), "-f", str(procfile), "-d", str(self.place.dir), "start"]

    def state(self) -> str:
        if self.running():
            return "running"
        assert self.proc is not None
        return f"exited {self.proc.returncode}: stopped everything"

    def stop_daemon(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGTERM)
