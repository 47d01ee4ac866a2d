"""The lab's harness (lab/daemon/): the daemon as a scheduled run, started again by schedule.

The harness is a scheduler, not a supervisor: it runs an experiment in a
forked child of its own every `every` seconds, one run at a time. Here its
one job is this very experiment with `--daemon`, which makes the run's
child *be* the daemon (daemon.py's main, in process) until it ends. So:

- notices: at once. The run's child is the harness's own child; SIGCHLD
  writes a byte to its wakeup pipe and the main loop reaps (handle_chld).
- restarts: at the next tick of the schedule, which is at once when the run
  lasted longer than `every` (the schedule is kept from each run's start, a
  run that overran is not made up for), else when `every` comes round.
- a crash loop: no back-off and no giving up; a failed run is stored as
  failed and the next one starts on schedule, every `every` s, for ever.
- stop: TERM to the harness, which sends TERM to the run's pid (not its
  group), waits up to 10 s (STOP_GRACE), then KILLs the run's group; once
  the run is reaped, what it left in its group is KILLed too. (This lesson
  found the harness once hung there: its reap read the run's error pipe to
  EOF, and a child the run left behind held the write end.)
Its config is the TOML file `daemonlab daemon start --config` reads; it runs
with --foreground, as under systemd or supervisord.

`lab` runs the daemon in the forked run child, warm: no interpreter starts,
which is most of what the others pay per restart. `lab-exec` (HarnessExec)
has the run child exec a fresh interpreter for it (`exec_daemon = true`), as
supervisord, circus and monit do, so the two halves of a restart can be
compared like for like: kill to fork (the manager) and fork to READY (the
daemon's start).
"""

from __future__ import annotations

import json
import shlex
import signal
import sys

from lab.experiments.managers.manager import Manager

__all__ = ["Harness", "HarnessExec"]

#: The schedule: a run every second (the daemon runs longer, so a restart is at once).
EVERY = "1s"

CONFIG = """\
[daemon]
pidfile = "harness.pid"
results = "lab.db"

[[run]]
experiment = "managers"
every = "{every}"
[run.params]
daemon = {daemon}
exec_daemon = {exec_daemon}
"""


class Harness(Manager):
    name = "lab"
    command = "daemonlab"
    notices = "SIGCHLD (its wakeup pipe), reaped at once; restarted on its schedule"
    setting = f"every {EVERY}, the daemon run in the forked child"
    exec_daemon = False
    stop_signal = "TERM to the run's pid; KILL to its group once it ended (or after STOP_GRACE)"
    stop_wait_s = 10.0
    gives_up = f"never: a failed run is stored, the next starts every {EVERY}, no back-off"

    @classmethod
    def missing(cls) -> str | None:
        return None  # the lab itself

    def argv(self) -> list[str]:
        config = self.place.dir / "harness.toml"
        # The daemon's own options, as one string: the run's child parses them (daemon.py).
        options = shlex.join(self.daemon[3:])
        config.write_text(
            CONFIG.format(
                every=EVERY, daemon=json.dumps(options), exec_daemon=str(self.exec_daemon).lower()
            )
        )
        start = ["daemon", "start", "--foreground", "--config", str(config)]
        return [sys.executable, "-m", "lab", *start]

    def state(self) -> str:
        """What the harness last wrote to its status file (it does at every run's start and end)."""
        try:
            status = json.loads((self.place.dir / "harness.status.json").read_text())
        except (OSError, ValueError):
            return "no answer" if self.running() else "exited"
        return f"{status['state']}: {status['runs_done']} runs done, {status['runs_failed']} failed"

    def stop_daemon(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGTERM)  # what `daemonlab daemon stop` sends


class HarnessExec(Harness):
    """The harness, its run child exec'ing a fresh interpreter for the daemon."""

    name = "lab-exec"
    setting = f"every {EVERY}, the daemon exec'd in the forked child"
    exec_daemon = True
