"""The daemon under test: one small program every manager runs, and how it reports.

    python -m lab.experiments.managers.daemon --notify SOCKET --pidfile FILE
        [--children] [--crash] [--detach]

It is a new-style daemon (`man 7 daemon`): it stays in the foreground, takes
its pidfile (lab/daemon/pidfile.py: an fcntl lock held for life) and says
READY=1 on a datagram socket in sd_notify's format (lab/daemon/sdnotify.py),
with its pid and the moment it was ready. Under systemd, NOTIFY_SOCKET gives
the socket and the same program is a Type=notify service; here the
experiment binds the socket (listener.py) and `--notify` names it, because
circus and monit start programs with an empty or spartan environment.

    READY=1     MAINPID=<pid> STAMP_NS=<CLOCK_BOOTTIME ns> PIDFILE=<path>
                FORKED_NS=<when this process was forked, same clock>
                [CHILD=<pid> GRANDCHILD=<pid>]
    STOPPING=1  MAINPID=<pid> STAMP_NS=... PIDFILE=<path> SIGNAL=SIGTERM

What the options are for:

--children  fork a child that stays in the daemon's process group, which
            forks a grandchild that leaves it (setsid, its streams on
            /dev/null: a helper that daemonized itself). On TERM the daemon
            exits at once *without* stopping them, on purpose: whether they
            are stopped is then the manager's doing, which is what the stop
            event looks at (a signal to the process group reaches the child;
            the grandchild is in no group the manager knows).
--crash     exit with EXIT_CRASH right after saying READY: the crash loop.
--detach    daemonize the classic way first (lab/daemon/steps.py: fork,
            setsid, fork, ...) and let the launcher exit 0 once the daemon
            is ready. monit needs this: it waits for its start program to
            *exit* and counts a program still running after its timeout as a
            failed start.

Signals only record (lab.daemon.signals.SignalWakeup); the loop calls
handle_term or handle_int.
"""

from __future__ import annotations

import argparse
import os
import signal
import time
from collections.abc import Callable, Sequence

from lab.daemon import sdnotify, steps
from lab.daemon.pidfile import PidFile
from lab.daemon.signals import SignalWakeup
from lab.experiments.managers.listener import started_ns

__all__ = ["EXIT_CRASH", "main", "stamp_ns"]

#: The crash loop's exit code: "failed", as supervisord's exitcodes=0 sees it.
EXIT_CRASH = 1
#: The child's and grandchild's exit code should the daemon's own code ever return there.
EXIT_HELPER = 0


def stamp_ns() -> int:
    """Now on CLOCK_BOOTTIME: one clock for every process of the machine, counted
    from boot like a process's start time in /proc/PID/stat (field 22), so the
    experiment can subtract a daemon's READY stamp from its own kill stamp."""
    return time.clock_gettime_ns(time.CLOCK_BOOTTIME)


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="managers-daemon", description=__doc__.splitlines()[0])
    p.add_argument("--notify", help="the datagram socket to report to (default: $NOTIFY_SOCKET)")
    p.add_argument("--pidfile", required=True)
    p.add_argument("--children", action="store_true", help="a child and a grandchild")
    p.add_argument("--crash", action="store_true", help="exit 1 right after READY")
    p.add_argument("--detach", action="store_true", help="daemonize; the launcher exits when ready")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.notify:
        os.environ["NOTIFY_SOCKET"] = args.notify  # where sdnotify.notify looks
    if not args.detach:
        return serve(args, steps.take_pidfile(args.pidfile), ready=lambda: None)
    options = steps.Options(pidfile=args.pidfile)
    launched = steps.launch(
        options, lambda detached: serve(args, detached.pidfile, lambda: detached.ready.ready())
    )
    return 0 if launched.ok else 1


def serve(args: argparse.Namespace, pidfile: PidFile, ready: Callable[[], None]) -> int:
    """The daemon's life: set up, say READY, then wait for TERM (or crash at once)."""
    wakeup = SignalWakeup((signal.SIGTERM, signal.SIGINT))
    try:
        helpers = _start_helpers() if args.children else {}
        ready()  # the launcher's pipe, under --detach
        # FORKED_NS: when the manager made this process, read while it still lives (a
        # crashing daemon is gone before anyone could look): the manager's schedule.
        forked = started_ns(os.getpid())
        _notify("READY=1", PIDFILE=pidfile.path, FORKED_NS=forked, **helpers)
        if args.crash:
            return EXIT_CRASH
        while True:
            for sig in wakeup.wait(None):
                return HANDLERS[sig](sig, pidfile)
    finally:
        wakeup.close()
        pidfile.release()


def handle_term(sig: signal.Signals, pidfile: PidFile) -> int:
    """SIGTERM: the graceful stop. Say which signal came, and leave (children stay)."""
    _notify("STOPPING=1", PIDFILE=pidfile.path, SIGNAL=sig.name)
    return 0


def handle_int(sig: signal.Signals, pidfile: PidFile) -> int:
    """SIGINT (Ctrl-C with the daemon in a terminal): the same stop as TERM."""
    return handle_term(sig, pidfile)


HANDLERS = {signal.SIGTERM: handle_term, signal.SIGINT: handle_int}


def _notify(state: str, **fields: object) -> None:
    lines = [state, f"MAINPID={os.getpid()}", f"STAMP_NS={stamp_ns()}"]
    lines += [f"{key}={value}" for key, value in fields.items()]
    sdnotify.notify("\n".join(lines))


def _start_helpers() -> dict[str, int]:
    """Fork the child; it forks the grandchild and tells us its pid on a pipe.

    Fork discipline (gunicorn's spawn_worker): each parent branch returns at
    once; each child branch runs in try/finally and ends in os._exit. The
    daemon is single-threaded here, so forking is safe.
    """
    read_fd, write_fd = os.pipe()
    child = os.fork()
    if child:
        os.close(write_fd)
        with os.fdopen(read_fd) as pipe:
            grandchild = int(pipe.read() or 0)
        return {"CHILD": child, "GRANDCHILD": grandchild}
    try:
        os.close(read_fd)
        _reset_signals()
        grandchild = os.fork()
        if grandchild == 0:
            # setsid() first, then close our copy of the pipe: the daemon reads to
            # EOF, so READY (and a manager's TERM to the group, 1.2 ms after READY
            # under honcho) can only come once the grandchild has left the group.
            # Closed first, a 0.2 s pause between the two made the stop test fail
            # for honcho, supervisord and the lab alike.
            os.setsid()  # out of the daemon's process group and session
            os.close(write_fd)
            steps.redirect_standard_streams(None)
            _sleep_for_ever()
        os.write(write_fd, str(grandchild).encode())
        os.close(write_fd)
        _sleep_for_ever()
    finally:
        os._exit(EXIT_HELPER)


def _reset_signals() -> None:
    """The helpers take TERM's default action (death): no wakeup pipe of the daemon's."""
    signal.set_wakeup_fd(-1)
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, signal.SIG_DFL)


def _sleep_for_ever() -> None:
    while True:
        signal.pause()


if __name__ == "__main__":
    raise SystemExit(main())
