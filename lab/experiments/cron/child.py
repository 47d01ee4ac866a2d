"""The unit of work, started the two ways the lesson compares: a cron tick, or a waiting daemon.

    python -m lab.experiments.cron.child tick [--job noop] [--id ID] [--tick NS] [--ledger KEY]
    python -m lab.experiments.cron.child wait redis|signal [--job noop] [--queue KEY] [--wake S] ...

`tick` is what a crontab line runs (examples/crontab): a fresh interpreter
that imports what the job needs, connects, runs one job, writes its ledger
line and exits. Everything before the job is paid again every tick: the
interpreter's start, the lab's package (`-m` imports lab, lab.experiments
and lab.experiments.cron first), redis-py, the connection. The line keeps
three of its moments: booted (this module's first line ran), ready (redis
imported, connected), start; the experiment knows the tick's own moment.

`wait` is the daemon: it pays all that once, then blocks until work comes.
`redis`: BLPOP on a list, with a timeout (`--wake`) after which it looks
around and blocks again (0: never wakes). `signal`: sigwaitinfo on a
real-time signal, no timeout at all; real-time signals queue (signal(7)),
so two ticks close together are two jobs, where two SIGUSR1 would merge
into one. TERM ends either, after the job in hand.

Standard library only at the top: what a tick imports is part of what is
measured, and it imports redis (and the job, lab.work) in
the function that needs it, in plain sight.
"""

from __future__ import annotations

import time

BOOTED = time.perf_counter_ns()  # the first moment this interpreter runs our code

import argparse  # noqa: E402 - after the stamp: the stamp is the point
import os  # noqa: E402
import signal  # noqa: E402
import sys  # noqa: E402

#: The ledger a crontab line writes to when it is not told otherwise (examples/crontab).
LEDGER = "daemonlab:cron:ledger"
#: A ledger written every minute for years must not grow for ever: the newest lines kept.
KEEP = 10_000
#: The signal a waiting daemon takes work on: SIGRTMIN, which queues.
WORK_SIGNAL = signal.SIGRTMIN


def _connect():
    import redis

    from lab import services

    return redis.Redis.from_url(services.url("redis"), socket_connect_timeout=2.0)


def _record(conn, ledger: str, entry) -> None:
    with conn.pipeline(transaction=False) as pipe:
        pipe.rpush(ledger, entry.line())
        pipe.ltrim(ledger, -KEEP, -1)
        pipe.execute()


def tick(job: str, job_id: str, ticked: int, ledger: str) -> None:
    """One cron tick: connect, run one job, write its line, leave."""
    from lab import work

    conn = _connect()
    conn.ping()
    ready = work.stamp()
    start = work.stamp()
    work.do(job)
    _record(
        conn, ledger, work.entry(job_id, 1, ticked or BOOTED, start, booted=BOOTED, ready=ready)
    )
    conn.close()


def wait_redis(job: str, queue: str, ledger: str, wake: float) -> None:
    """The daemon on Redis: BLPOP `queue`; each item ("ID TICK_NS") is one job."""
    from lab import work

    stop = _stop_on_term()
    conn = _connect()
    conn.ping()
    print("ready", flush=True)
    while not stop:
        item = conn.blpop([queue], timeout=wake)
        if item is None:
            continue  # woke up with nothing to do: look at the flags, block again
        job_id, ticked = item[1].decode().split()
        if job_id == "stop":  # the experiment's way to end a daemon that never wakes (--wake 0)
            break
        start = work.stamp()
        work.do(job)
        _record(conn, ledger, work.entry(job_id, 1, int(ticked), start))
    conn.close()


def wait_signal(job: str, prefix: str, ledger: str) -> None:
    """The daemon on a signal: sigwaitinfo; the n-th WORK_SIGNAL is job PREFIX-n."""
    from lab import work

    wanted = {WORK_SIGNAL, signal.SIGTERM, signal.SIGINT}
    # Blocked, so they stay pending until sigwaitinfo takes them: no handler runs at all.
    signal.pthread_sigmask(signal.SIG_BLOCK, wanted)
    conn = _connect()
    conn.ping()
    print("ready", flush=True)
    n = 0
    while True:
        info = signal.sigwaitinfo(wanted)
        if info.si_signo != WORK_SIGNAL:
            break
        start = work.stamp()
        work.do(job)
        _record(conn, ledger, work.entry(f"{prefix}-{n}", 1, 0, start))
        n += 1
    conn.close()


class _Flag:
    """Set by TERM (or INT); the handler only records."""

    def __init__(self) -> None:
        self.up = False

    def __bool__(self) -> bool:
        return self.up


def _stop_on_term() -> _Flag:
    flag = _Flag()

    def record(signum: int, frame: object) -> None:
        flag.up = True

    signal.signal(signal.SIGTERM, record)
    signal.signal(signal.SIGINT, record)
    return flag


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m lab.experiments.cron.child")
    sub = parser.add_subparsers(dest="how", required=True)
    one = sub.add_parser("tick", help="one job, then exit (what a crontab line runs)")
    one.add_argument("--id", default=f"tick-{os.getpid()}-{time.time_ns()}")
    one.add_argument(
        "--tick", type=int, default=0, help="perf_counter_ns of the tick (default: boot)"
    )
    many = sub.add_parser("wait", help="a daemon: wait for work, run it, wait again")
    many.add_argument("on", choices=("redis", "signal"))
    many.add_argument("--queue", default="daemonlab:cron:queue", help="the list BLPOP waits on")
    many.add_argument("--prefix", default=f"signal-{os.getpid()}", help="job ids: PREFIX-n")
    many.add_argument("--wake", type=float, default=1.0, help="BLPOP's timeout, s (0: never)")
    for p in (one, many):
        p.add_argument("--job", default="noop", choices=("noop", "io", "cpu", "slow"))
        p.add_argument("--ledger", default=LEDGER)
    args = parser.parse_args(argv)
    import redis  # the job's own library: every tick pays for importing it (-X importtime)

    try:
        if args.how == "tick":
            tick(args.job, args.id, args.tick, args.ledger)
        elif args.on == "redis":
            wait_redis(args.job, args.queue, args.ledger, args.wake)
        else:
            wait_signal(args.job, args.prefix, args.ledger)
    except (redis.ConnectionError, redis.TimeoutError) as exc:
        sys.exit(f"{args.how}: Redis does not answer: {exc}")  # one line, for cron's mail


if __name__ == "__main__":
    main()
