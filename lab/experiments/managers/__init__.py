"""managers: who notices a dead daemon, how fast it comes back, and what a crash loop does.

The talk's last slides name God, Foreman, bluepill and Monit: programs that
keep daemons running. Their families are here: supervisord and circus
(Python process managers, in God's and bluepill's place), honcho (Foreman's
Python port), monit itself, and the lab's own harness (lab/daemon/). One
small daemon (daemon.py) runs under each, and the lab measures what
examples/ only configures:

- kill -9: from the kill to the new daemon being ready, as the daemon itself
  reports it (READY=1 on a notify socket, sd_notify's format), median and
  max over repeated kills, split at the new daemon's fork into the manager's
  part and the daemon's start; and how the manager noticed. Nothing asks the
  manager anything while it restarts (a question would wake it). circus-fast
  (check_delay 0.1) and lab-exec (the harness exec'ing a fresh interpreter,
  as the others do) are rows of their own.
- a crash loop: a daemon that dies right after start. How many restarts,
  the back-off between them, and where the manager ends up (supervisord
  FATAL, circus' flapping, monit's restart limit, honcho stopping
  everything, the harness never giving up).
- a graceful stop: the signal the daemon received, how long the manager
  waits before KILL, whether the daemon's child (in its process group) is
  stopped, and whether a grandchild that left the group survives.

What a learner would try first, and why it does not work:
- "Restart it from a cron job when `pgrep` finds nothing": pgrep matches
  names, not your daemon, and a minute is a long time to be down. Each
  manager here either is the parent (SIGCHLD, waitpid) or reads a pidfile.
- "A managed daemon should daemonize": supervisord, circus and honcho
  would see it exit at once and start it again and again. They want it in
  the foreground (man 7 daemon, new-style). monit is the exception: it
  waits for its start program to exit, so there the daemon detaches.
- "The manager stops what the daemon started": only what it can see. A
  signal to the process group reaches a child; a grandchild that called
  setsid is in no group the manager knows and outlives every manager here.
  systemd is the one that would get it (KillMode=control-group, the default:
  systemd.kill(5)), by its cgroup. systemd is not on this machine:
  examples/daemonlab.service keeps the unit, and its sd_notify protocol is
  tested in tests/test_daemon_support.py and test_daemon_managers.py.

Sources: supervisord's configuration (http://supervisord.org/configuration.html,
startsecs, startretries, stopasgroup) and its main loop (supervisor/supervisord.py,
runforever: transitions, then reap, then poll with a 1 s timeout); circus'
watcher options and flapping plugin
(https://circus.readthedocs.io/en/latest/for-ops/configuration/); honcho's
manager (honcho/manager.py: KILL_WAIT = 5); the monit manual
(https://mmonit.com/monit/documentation/monit.html: SET DAEMON, SERVICE
RESTART LIMIT); `man 7 daemon` and sd_notify(3).

Reading map: slide.py: the slide, a manager restarting a crashing daemon, and what
goes wrong with it;
daemon.py: the daemon under test (readiness, pidfile, a child and
a grandchild, the crash); listener.py: the experiment's end of the notify
socket; manager.py: what every manager provides, the temporary place and the
sweep that leaves nothing running; events.py: kill -9, the crash loop and the
stop, driven the same way for all; supervisord.py, circus.py, honcho.py,
monit.py, harness.py: one manager each, its config written in the place;
plan.py: the run, every manager through every event (or, with --daemon, being the
daemon); plot.py: the figure.
"""

from __future__ import annotations

from dataclasses import dataclass

from lab.experiments.managers import plan
from lab.params import Params as _Params
from lab.params import option
from lab.report import Column
from lab.runs import Run, collect

__all__ = ["COLUMNS", "EVENTS", "FULL", "MANAGERS", "NAME", "SUMMARY", "TOUR", "Params", "run"]

NAME = "managers"
SUMMARY = "supervisord, circus, honcho, monit, the lab's harness: kill -9, crash loop, stop"

#: The managers, in the talk's order of their families, and the module of each.
MANAGERS = {
    "supervisord": ("supervisord", "Supervisord"),
    "circus": ("circus", "Circus"),
    "circus-fast": ("circus", "CircusFast"),
    "honcho": ("honcho", "Honcho"),
    "monit": ("monit", "Monit"),
    "lab": ("harness", "Harness"),
    "lab-exec": ("harness", "HarnessExec"),
}
EVENTS = ("kill-9", "crash-loop", "stop")


@dataclass(frozen=True)
class Params(_Params):
    manager: tuple[str, ...] = option(tuple(MANAGERS), "which managers", choices=tuple(MANAGERS))
    event: tuple[str, ...] = option(EVENTS, "what to do to the daemon", choices=EVENTS)
    repeat: int = option(2, "kill -9s per manager (each restart timed)", minimum=1)
    uptime: float = option(
        1.1,
        "seconds the daemon runs before each kill: more than supervisord's startsecs "
        "(1 s, or the kill is a failed start) and the harness's schedule (1 s)",
        minimum=1.0,
    )
    window: float = option(
        3.5,
        "seconds a crash loop is watched (longer for a manager whose documented "
        "give-up can take longer: until it gives up, or says it still tries)",
        above=0,
    )
    daemon: str = option(
        "",
        "instead of measuring, be the daemon under test with these options "
        "(daemon.py; the lab's harness runs it so, see harness.py)",
    )
    exec_daemon: bool = option(
        False,
        "with --daemon: exec a fresh interpreter for it, as the other managers start it, "
        "instead of running it in this (forked, warm) process",
    )


FULL = {"repeat": 10, "window": 10.0}

COLUMNS = {
    "kill-9": [
        Column("manager", "manager"),
        Column("latency_ms", "restart ms", ".0f"),
        Column("spawned_ms", "kill>fork", ".0f"),
        Column("starting_ms", "fork>READY", ".0f"),
        Column("max_ms", "max ms", ".0f"),
        Column("restarts", "restarts", "d"),
        Column("final_state", "state", wide=True),
        Column("setting", "setting", wide=True),
        Column("seen_setting", "seen setting", wide=True),
        Column("setup_ms", "setup ms", ".0f", wide=True),
        Column("notes", "how it noticed", wide=True),
    ],
    "crash-loop": [
        Column("manager", "manager"),
        Column("restarts", "restarts", "d"),
        Column("latency_ms", "over ms", ".0f"),
        Column("backoff", "gaps s"),
        Column("final_state", "final state"),
        Column("notes", "notes", wide=True),
    ],
    "stop": [
        Column("manager", "manager"),
        Column("signal", "signal"),
        Column("latency_ms", "stop ms", ".0f"),
        Column("wait_s", "waits s", ".0f"),
        Column("children_stopped", "child stopped"),
        Column("grandchild_survived", "grandchild lives"),
        Column("final_state", "state", wide=True),
        Column("notes", "notes", wide=True),
    ],
}

TOUR = [
    (
        "**Managing daemons.** A daemon dies; who notices, and how fast is it back? The "
        "same small daemon runs under supervisord, circus, honcho, monit and the lab's own "
        "harness, and is killed with -9. supervisord is its parent and restarts it on the "
        "next turn of its 1 s loop; circus polls every check_delay; monit reads the pidfile "
        "once a cycle; honcho never restarts: it stops everything else instead.",
        {"event": ["kill-9"], "repeat": 1},
    ),
    (
        "**A crash loop and a stop.** A daemon that dies right after starting: supervisord "
        "backs off 1 s, 2 s and gives up (FATAL), monit unmonitors it after its restart "
        "limit, the harness restarts it on schedule for ever. Then a stop: which signal "
        "comes, whether the daemon's child goes too, and the grandchild that left the "
        "process group, which survives every one of them.",
        {"event": ["crash-loop", "stop"], "manager": ["supervisord", "monit", "lab"]},
    ),
]


def run(params: Params = Params(), progress=None, sink=None) -> Run:
    return collect(NAME, params, plan.measure, progress=progress, sink=sink)
