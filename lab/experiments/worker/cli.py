"""`daemonlab worker start|stop|status|enqueue`: the job daemon's command line.

Thin, like lab/cli.py: parses, calls, prints. `start` makes a real daemon
with the lab's own steps (lab/daemon/steps.py: fork, setsid, fork, streams,
umask, chdir, the locked pidfile, readiness), so the launcher exits 0 only
once the worker holds its pidfile, Redis answered and its heartbeat is up;
otherwise it prints the one reason and exits 1. What `status` says comes
from the daemon itself: the pidfile's lock (who holds it) and the heartbeat
the worker last wrote to Redis.

Imports only argparse and lab.params at the top: lab/cli.py imports every
command family to build its parser, and `daemonlab --help` must stay fast.
Every number and path is checked by its argparse type, before anything
forks: `--ready-timeout nan` was a traceback after the worker had started,
`worker stop --timeout nan` KILLed at once.
"""

from __future__ import annotations

import argparse
from typing import Any

from lab import params
from lab.errors import LabError

__all__ = ["add_parser"]

#: LSB exit code of `status` when the daemon is not running.
EXIT_NOT_RUNNING = 3
#: After the deadline, how long `stop` still waits before KILL: Sidekiq's deployment
#: advice (https://github.com/sidekiq/sidekiq/wiki/Deployment) is N+5 seconds, else
#: jobs are lost or run twice.
STOP_MARGIN_S = 5.0
POLL_S = 0.05
LOGGER = "lab.worker"


def add_parser(subparsers: Any) -> None:
    """Register `worker` and its actions on the top-level parser's subparsers."""
    worker = subparsers.add_parser(
        "worker",
        help="a Sidekiq-style job daemon on Redis (reliable fetch, TSTP/TERM/TTIN)",
        description="A job worker daemon on Redis: threads, processes or asyncio.",
        allow_abbrev=False,
    )
    actions = worker.add_subparsers(dest="worker_action", required=True, metavar="ACTION")

    def action(name: str, func: Any, help: str) -> argparse.ArgumentParser:
        p = actions.add_parser(name, help=help, description=help, allow_abbrev=False)
        p.set_defaults(func=func)
        p.add_argument("--namespace", default="daemonlab", help="prefix of its Redis keys")
        p.add_argument(
            "--pidfile",
            type=params.path("--pidfile"),
            help="default: worker-NAMESPACE.pid next to the results store",
        )
        return p

    p = action("start", cmd_start, "start a worker (detached unless --foreground)")
    p.add_argument(
        "--concurrency-model",
        default="threads",
        metavar="MODEL",
        help="threads, processes or asyncio (default: threads)",
    )
    p.add_argument(
        "--concurrency", type=params.whole_number(1), default=5, help="jobs at once (default 5)"
    )
    p.add_argument(
        "--deadline",
        type=params.seconds(0),
        default=25.0,
        help="seconds TERM waits for jobs in hand before giving them back (25)",
    )
    p.add_argument(
        "--heartbeat-ttl",
        type=params.seconds(),
        default=60.0,
        help="seconds without a beat before others take its jobs back (60)",
    )
    p.add_argument(
        "--log", type=params.path("--log"), help="default: next to the pidfile (foreground: stderr)"
    )
    p.add_argument("--umask", default="022", help="octal; one that lets others write is refused")
    p.add_argument("--foreground", action="store_true", help="do not detach (systemd, supervisord)")
    p.add_argument(
        "--ready-timeout", type=params.seconds(), default=30.0, help="seconds the launcher waits"
    )
    p = action("stop", cmd_stop, "TERM, wait for its deadline (+5 s), then KILL")
    p.add_argument(
        "--timeout",
        type=params.seconds(0),
        help="seconds to wait after TERM (default: from its heartbeat)",
    )
    action("status", cmd_status, "what the running worker last said in its heartbeat")
    p = action("enqueue", cmd_enqueue, "queue jobs for it")
    p.add_argument("--job", default="noop", help="noop, io, cpu or slow (default noop)")
    p.add_argument("--count", type=params.whole_number(1), default=1, help="how many (default 1)")


# -- where --------------------------------------------------------------------------
def _pidfile(args: argparse.Namespace):
    from pathlib import Path

    from lab.results import default_path

    if args.pidfile:
        return Path(args.pidfile).absolute()
    return default_path().absolute().parent / f"worker-{args.namespace}.pid"


def _keys(args: argparse.Namespace):
    from lab.experiments.worker.queue import Keys

    return Keys(args.namespace)


def _redis():
    from lab import services
    from lab.experiments.worker import queue

    services.require("redis")
    return queue.connect(services.url("redis"))


class NotStarted(LabError):
    """The launcher's refusal (already running, Redis does not answer): exit 1, as
    `daemonlab daemon start`."""

    exit_code = 1


class NotRunning(LabError):
    exit_code = EXIT_NOT_RUNNING


# -- start -------------------------------------------------------------------------------
def cmd_start(args: argparse.Namespace) -> int:
    from lab.daemon import steps
    from lab.experiments.worker.daemon import Config

    config = Config(
        namespace=args.namespace,
        model=args.concurrency_model,
        concurrency=args.concurrency,
        deadline=args.deadline,
        heartbeat_ttl=args.heartbeat_ttl,
    )
    try:
        umask = int(args.umask, 8)
    except ValueError:
        raise LabError(f"--umask {args.umask!r} is not an octal number") from None
    pidfile = _pidfile(args)
    log = args.log or (None if args.foreground else str(pidfile.with_suffix(".log")))
    pidfile.parent.mkdir(parents=True, exist_ok=True)
    if args.foreground:
        return _foreground(config, str(pidfile), log, umask)
    options = steps.Options(pidfile=str(pidfile), log=log, umask=umask)
    result = steps.launch(
        options,
        lambda detached: _serve_detached(config, detached),
        ready_timeout=args.ready_timeout,
    )
    if not result.ok:
        raise NotStarted(f"worker not started: {result.message}")
    print(
        f"started: pid {result.pid}, {config.concurrency} slots ({config.model}), "
        f"pidfile {pidfile}, log {log}"
    )
    return 0


def _serve(config):
    """The worker's main loop as lab.daemon.service runs it: serve(ready) -> exit code."""
    from lab.experiments.worker.daemon import Worker

    return lambda ready: Worker(config).serve(ready=ready)


def _serve_detached(config, detached) -> int:
    """The daemon's life after steps 1-13: tells the launcher once it runs, or why not."""
    from lab.daemon.service import serve_detached

    return serve_detached(
        detached, _serve(config), logger=LOGGER, tag="worker", refused=NotStarted.exit_code
    )


def _foreground(config, pidfile: str, log: str | None, umask: int) -> int:
    """New-style (`man 7 daemon`): no fork, no setsid; umask, pidfile, the log, the loop."""
    from lab.daemon.service import serve_foreground

    return serve_foreground(
        _serve(config),
        pidfile=pidfile,
        log=log,
        umask=umask,
        user=None,
        logger=LOGGER,
        tag="worker",
    )


# -- stop / status / enqueue ------------------------------------------------------------------
def _running(args: argparse.Namespace) -> tuple[Any, int]:
    from lab.daemon.pidfile import holder

    pidfile = _pidfile(args)
    pid = holder(pidfile)
    if pid is None:
        raise NotRunning(f"not running (pidfile {pidfile} is not locked)")
    return pidfile, pid


def _heartbeat(args: argparse.Namespace, pid: int) -> dict[str, Any] | None:
    """The running worker's last heartbeat (the one with its pid on this host), if Redis has it."""
    import socket

    from lab.experiments.worker import queue

    for info in queue.workers(_redis(), _keys(args)):
        if info.get("pid") == pid and info.get("host") == socket.gethostname():
            return info
    return None


def cmd_stop(args: argparse.Namespace) -> int:
    import os
    import signal
    import time

    from lab.daemon.pidfile import holder

    try:
        pidfile, pid = _running(args)
    except NotRunning as exc:
        print(exc)
        return 0
    timeout = args.timeout
    if timeout is None:
        info = _heartbeat(args, pid) or {}
        timeout = float(info.get("deadline", 25.0)) + STOP_MARGIN_S
    began = time.monotonic()
    os.kill(pid, signal.SIGTERM)
    while time.monotonic() - began < timeout:
        if holder(pidfile) != pid:  # the kernel drops the lock when the process ends
            print(f"stopped pid {pid} with TERM after {time.monotonic() - began:.1f}s")
            return 0
        time.sleep(POLL_S)
    os.kill(pid, signal.SIGKILL)  # escalate visibly; its jobs stay in Redis, for recovery
    print(
        f"pid {pid} did not stop within {timeout:g}s of TERM: KILLed it; "
        "its jobs go back to the queue once its heartbeat expires"
    )
    return 0


def cmd_status(args: argparse.Namespace) -> int:
    from lab.experiments.worker import queue

    pidfile, pid = _running(args)
    conn = _redis()
    keys = _keys(args)
    info = _heartbeat(args, pid)
    print(f"pid        {pid} (pidfile {pidfile})")
    if info is None:
        print("heartbeat  none in Redis yet (starting, or Redis lost it)")
    else:  # what the worker said at its last beat, up to a third of the ttl ago: say how old
        state = "quiet" if info["quiet"] else "working"
        print(f"heartbeat  {_age(info['beat'])} ago, at {info['beat']}; as of then:")
        print(f"slots      {info['concurrency']} ({info['model']}), {state}")
        print(f"jobs       {info['busy']} running, {info['done']} done since {info['started']}")
    print(f"queue      {queue.pending(conn, keys)} waiting in {keys.queue}")
    print(f"retried    {conn.llen(keys.retried)} jobs taken back from workers that did not finish")
    return 0


def _age(beat: str) -> str:
    """How long ago an ISO time was: a heartbeat comes every ttl/3 (daemon.BEATS_PER_TTL),
    so "0 done" may be 20 s old, after 200 jobs finished since."""
    import datetime as dt

    seconds = (dt.datetime.now(dt.UTC) - dt.datetime.fromisoformat(beat)).total_seconds()
    return f"{max(seconds, 0):.0f} s"


def cmd_enqueue(args: argparse.Namespace) -> int:
    import secrets

    from lab import work
    from lab.experiments.worker import queue

    if args.job not in work.KINDS:
        raise LabError(f"--job: unknown value {args.job!r} (choose from {', '.join(work.KINDS)})")
    if args.count < 1:
        raise LabError(f"--count must be at least 1, got {args.count}")
    batch = secrets.token_hex(4)
    jobs = [queue.Job(f"{batch}-{n}", args.job, work.stamp()) for n in range(args.count)]
    total = queue.enqueue(_redis(), _keys(args), jobs)
    print(f"queued {args.count} {args.job} jobs; {total} waiting in {_keys(args).queue}")
    return 0
