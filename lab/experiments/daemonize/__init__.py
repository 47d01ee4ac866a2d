"""daemonize: becoming a daemon, step by step, read from outside.

The talk's daemonizing slide (fork, setsid, fork, chdir, umask, change user,
pidfile, close the standard streams), run for real: a child script becomes a
daemon with lab.daemon.steps.launch (the order of `man 7 daemon`) and pauses
after every step on a pipe handshake while this process reads it through
/proc: pid, ppid, process group, session, controlling terminal, cwd, umask,
uid/gid and open descriptors. The same is done to python-daemon's
DaemonContext (PEP 3143) for a side-by-side table: its order differs, its
umask defaults to 0, and its launcher exits at the first fork, before the
pidfile exists.

This process is a child subreaper (prctl 36) while it watches, so that the
orphaned daemon is re-parented here and reaped at once; the table shows it
(ppid, with --wide). Without one the ppid would read 1, and PID 1 would reap it.

Reading map, in order:
    slide.py             the slide: the steps in one function, and what goes wrong with them
    lab/daemon/steps.py  the steps themselves, one function each (the lab's daemon)
    probe.py             the daemon being watched: it pauses after every step
    observe.py           reading a process from outside through /proc
    plan.py              the run: start the probe, read each step, clean up after it
    plot.py              the steps as a process timeline, one panel per implementation
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from lab.errors import LabError
from lab.experiments.daemonize import plan
from lab.params import Params as _Params
from lab.params import option
from lab.report import Column
from lab.runs import Run, collect

__all__ = ["COLUMNS", "FULL", "NAME", "SUMMARY", "TOUR", "Params", "run"]

NAME = "daemonize"
SUMMARY = "becoming a daemon step by step (lab vs python-daemon), read from /proc"

IMPLS = ("lab", "python-daemon")


@dataclass(frozen=True)
class Params(_Params):
    impl: tuple[str, ...] = option(IMPLS, "which daemonizing code to watch", choices=IMPLS)
    # Not called user/umask: those are the harness's own options (daemon start --user).
    run_as: str = option("", "when root: drop to this user (e.g. nobody); empty: stay")
    mask: str = option("022", "the umask the lab's daemon sets (octal; python-daemon keeps 0)")
    dwell: float = option(0.0, "seconds to hold each step, to watch it with ps", minimum=0)

    def __post_init__(self) -> None:
        super().__post_init__()
        from lab.daemon.config import parse_umask
        from lab.daemon.steps import user_ids

        parse_umask(self.mask)
        user_ids(self.run_as or None)
        if "python-daemon" in self.impl and plan.PYTHON_DAEMON == "missing":
            raise LabError(
                "python-daemon is not installed: pip install python-daemon, or --impl lab"
            )


FULL: dict[str, Any] = {"dwell": 0.5}

#: One table per implementation (a record's `part` is its impl): what changes at each
#: step first (pid at each fork, sid at setsid, tty, cwd, umask, the launcher's fate).
STEP_COLUMNS = [
    Column("step", "step"),
    Column("pid", "pid", "d"),
    Column("sid", "sid", "d"),
    Column("tty", "tty"),
    Column("cwd", "cwd"),
    Column("umask", "umask"),
    Column("launcher", "launcher"),
    Column("process", "process", wide=True),
    Column("ppid", "ppid", "d", wide=True),
    Column("pgid", "pgid", "d", wide=True),
    Column("uid", "uid", "d", wide=True),
    Column("gid", "gid", "d", wide=True),
    Column("fds", "fds", wide=True),
    Column("at_ms", "at ms", ".1f", wide=True),
]
COLUMNS = {impl: STEP_COLUMNS for impl in IMPLS}

TOUR = [
    (
        "A daemon is a process with no terminal, no parent that waits for it, and "
        "nothing of the shell that started it. Here a child script goes through "
        "`man 7 daemon`'s steps one by one and stops after each, while the lab reads "
        "it from **/proc**. Watch `pid` change at each fork, `sid` become the pid at "
        "setsid, and the daemon end up *not* a session leader, with no tty, in /, "
        "umask 0022; `--wide` adds its descriptors: 0-2 on /dev/null and the log, and "
        "the pidfile open.",
        {"impl": ["lab"]},
    ),
    (
        "python-daemon's DaemonContext does the same in another order: umask (0 by "
        "default!), chdir, privileges, then detaches, and takes the pidfile last. "
        "Its launcher exits 0 at the first fork: whatever fails afterwards, the shell "
        "was already told all is well.",
        {"impl": ["python-daemon"]},
    ),
]


def run(params: Params = Params(), progress=None, sink=None) -> Run:
    return collect(NAME, params, plan.measure, progress=progress, sink=sink)
