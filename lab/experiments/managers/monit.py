"""monit: the daemon as a `check process` of monit, found dead by its pidfile, once a cycle.

monit (Debian's package; https://mmonit.com/monit/documentation/monit.html)
is not the daemon's parent in spirit: once a poll cycle it reads the
pidfile and asks whether that pid runs; if not, it runs the start program.
The cycle is `set daemon N`, in whole seconds: 1 here, its minimum (the
Debian default is 120). So a kill is noticed within a cycle.

monit waits for its start program to *exit* (up to `with timeout`, 30 s by
default) and counts one still running then as a failed start: the daemon
is started with --detach (lab/daemon/steps.py daemonizes it; the launcher
exits 0 once the daemon is ready), the way an init script would.

What the configuration below sets, and why:
- `if 2 restarts within 3 cycles then unmonitor`: the restart limit, for
  the crash loop only. The manual calls it a timeout, and `then timeout` is
  still accepted as the old name of `unmonitor`: monit stops looking at the
  service ("Not monitored") and leaves it down. The kill -9 event runs
  without it: two kills a second apart, each restart taking a cycle or two,
  would otherwise meet the limit whenever a loaded machine stretches a cycle.
- stop program: monit sends no signal of its own; its stop is whatever the
  stop program does, here the manual's example, TERM to the pid in the
  pidfile, and it waits up to 30 s for the process to go.
- `set init` (stay in the foreground, our child), and every file monit
  keeps (pidfile, id, state, log, the control socket) in the place.
monit refuses a control file others can read: it is written with mode 0600.

Why a kill -9 takes monit two cycles here, not one: the detached daemon's
parent is PID 1, so once killed it is a zombie until PID 1 reaps it, and
monit's liveness check (kill(pid, 0)) succeeds on a zombie. A Linux init
reaps at once; this machine's PID 1 (a VM agent, not an init) does so late.
`explain()` measures it: an orphan's exit to its reaping by whoever adopted
it, put in the kill -9 record's notes.
"""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import time
from pathlib import Path

from lab.experiments.managers.manager import Manager

__all__ = ["Monit"]

CONFIG = """\
set daemon 1
set init
set pidfile {dir}/monit.pid
set idfile {dir}/monit.id
set statefile {dir}/monit.state
set logfile {dir}/monit.log
set httpd unixsocket {dir}/monit.sock
    allow localhost

check process daemon with pidfile {pidfile}
    start program = "{start}" with timeout 10 seconds
    stop program = "/bin/sh -c 'kill -TERM $(cat {pidfile})'"
{limit}"""

#: The crash loop's restart limit (see above).
RESTART_LIMIT = "    if 2 restarts within 3 cycles then unmonitor\n"


class Monit(Manager):
    name = "monit"
    command = "monit"
    notices = "pidfile polling, once a cycle (set daemon 1: 1 s, its minimum)"
    setting = "set daemon 1 (s)"
    stop_signal = "none of its own: the stop program's (TERM to the pid here)"
    stop_wait_s = 30.0
    gives_up = "restart limit ('timeout'): unmonitor, Not monitored"
    final_states = ("Not monitored",)
    #: Two restarts within 3 cycles of 1 s, each start a daemonizing launcher.
    gives_up_within_s = 30.0

    @classmethod
    def missing(cls) -> str | None:
        if shutil.which("monit"):
            return None
        return "monit is not installed: apt-get install monit"

    def argv(self) -> list[str]:
        config = self.place.dir / "monitrc"
        start = shlex.join([*self.daemon, "--detach"])
        limit = RESTART_LIMIT if self.crash else ""
        text = CONFIG.format(
            dir=self.place.dir, pidfile=self.place.pidfile, start=start, limit=limit
        )
        fd = os.open(config, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(text)
        return [str(shutil.which("monit")), "-c", str(config)]

    def _monit(self, *args: str) -> str:
        done = subprocess.run(
            [str(shutil.which("monit")), "-c", str(self.place.dir / "monitrc"), *args],
            capture_output=True,
            text=True,
            timeout=10,
        )
        return done.stdout

    def state(self) -> str:
        """monit's own words: its `status` and `monitoring status` lines."""
        found = {}
        for line in self._monit("status", "daemon").splitlines():
            key, _, value = line.strip().partition("  ")
            if key in ("status", "monitoring status"):
                found[key] = value.strip()
        if not found:
            return "no answer" if self.running() else "exited"
        if found.get("monitoring status") == "Not monitored":
            return "Not monitored"
        return found.get("status", "?")

    def stop_daemon(self) -> None:
        self._monit("stop", "daemon")

    def explain(self) -> str:
        reaped = orphan_reap_ms()
        if reaped is None:
            return "an orphan's reaping could not be timed here"
        ms, reaper = reaped
        return f"an orphan is reaped by {reaper} {ms:.0f} ms after it exits (monit sees a zombie)"


def orphan_reap_ms(timeout: float = 5.0) -> tuple[float, str] | None:
    """How long an adopted orphan stays a zombie here, and who adopted it.

    `sh` starts a 50 ms sleep in the background and exits at once: the sleep
    is an orphan, adopted by PID 1 (or the nearest subreaper). We watch its
    /proc entry: "Z" from its exit, gone once its new parent has reaped it.
    """
    from lab import procfs

    started = subprocess.run(
        ["sh", "-c", "sleep 0.05 & echo $!"], capture_output=True, text=True, timeout=10
    )
    pid = int(started.stdout)
    reaper, exited = "?", None
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        stat = procfs.proc_stat(pid)
        if stat is None:
            break
        if stat["state"] == "Z" and exited is None:
            exited = time.monotonic()
            comm = Path(f"/proc/{stat['ppid']}/comm")
            reaper = f"pid {stat['ppid']} ({comm.read_text().strip() if comm.exists() else '?'})"
        time.sleep(0.001)
    else:
        return None  # never reaped within the timeout
    return ((time.monotonic() - exited) * 1e3 if exited else 0.0), reaper
