"""Dramatiq as a peer: its Redis broker, the job as an actor, its producer and its worker.

Dramatiq (https://dramatiq.io) runs `dramatiq MODULE --processes P --threads T`:
a main process that forks P worker processes of T threads each, and stops
them all if one of them dies (dramatiq/cli.py: "Worker with PID ... exited
unexpectedly. Shutting down..."). The models here:

    processes  P worker processes of one thread each
    threads    one worker process of T threads

Here the worker runs through `dramatiq.cli.main(args)`, the same function the
`dramatiq` program runs, in the runner's own process.

Its Redis broker keeps a message it hands out in an "ack" set of the
consumer that took it; every consumer beats a heartbeat, and now and then
(`maintenance_chance`, 1,000 in a million commands) one of them moves the
messages of consumers silent for `heartbeat_timeout` (60 s) back to the
queue. The crash table shortens heartbeat_timeout (said in its rows).

Settings (SETTINGS):
    default  as installed: queue prefetch 2 x threads, idle back-off up to
             1 s (worker_timeout), its default middleware, no results
    tuned    its knobs for throughput (dramatiq/worker.py reads them from the
             environment): queue prefetch 64, idle back-off up to 100 ms

Every key starts with the run's namespace (RedisBroker's `namespace`).
"""

from __future__ import annotations

import os

from lab import work
from lab.experiments.worker import marks

__all__ = ["MODELS", "SETTINGS", "ENV", "queue_key", "run_worker", "send", "setup"]

MODELS = ("processes", "threads")
SETTINGS = ("default", "tuned")

#: What the worker's module reads at import (dramatiq imports it in every process).
ENV = "LAB_DRAMATIQ"
#: The tuned row: dramatiq/worker.py's environment knobs, read when dramatiq.worker is imported.
TUNED_ENV = {"dramatiq_queue_prefetch": "64", "dramatiq_worker_timeout": "100"}
ACTOR = "daemonlab_job"


def setup(namespace: str, url: str, heartbeat_ms: int | None = None):
    """Make the namespace's RedisBroker the global one and declare the job on it."""
    import dramatiq
    from dramatiq.brokers.redis import RedisBroker

    options = {} if heartbeat_ms is None else {"heartbeat_timeout": heartbeat_ms}
    broker = RedisBroker(url=url, namespace=f"{namespace}:dramatiq", **options)
    dramatiq.set_broker(broker)
    # max_retries=0: a job that fails is not what is measured; a lost worker is.
    return dramatiq.actor(job, actor_name=ACTOR, queue_name=namespace, max_retries=0)


def setup_from_env() -> None:
    """The entry `dramatiq` imports: `lab.experiments.worker.dramatiq_peer:setup_from_env`."""
    namespace, url, heartbeat = os.environ[ENV].split()
    setup(namespace, url, int(heartbeat) or None)


_LEDGER: dict[int, object] = {}


def job(kind: str, job_id: str, queued: int, ledger_key: str, ledger_url: str, mark: bool = False):
    """The job under Dramatiq: the same work and ledger line as every system's."""
    import redis

    start = work.stamp()
    conn = _LEDGER.get(os.getpid())
    if conn is None:  # one per process: the worker processes are forked
        conn = _LEDGER[os.getpid()] = redis.Redis.from_url(ledger_url)
    if mark:
        conn.rpush(marks.key(ledger_key), marks.line(job_id, start))
    work.do(kind)
    conn.rpush(ledger_key, work.entry(job_id, 1, queued, start).line())


def queue_key(namespace: str) -> str:
    return f"{namespace}:dramatiq:{namespace}"


def send(actor, kind: str, job_id: str, ledger_key: str, ledger_url: str, mark: bool = False):
    actor.send(kind, job_id, work.stamp(), ledger_key, ledger_url, mark)


def run_worker(namespace: str, url: str, model: str, workers: int, heartbeat_ms: int = 0) -> int:
    """Run the worker until TERM; its exit code."""
    from dramatiq.cli import main, make_argument_parser

    os.environ[ENV] = f"{namespace} {url} {heartbeat_ms}"
    processes, threads = (workers, 1) if model == "processes" else (1, workers)
    args = make_argument_parser().parse_args(
        [
            f"{__name__}:setup_from_env",
            "--processes",
            str(processes),
            "--threads",
            str(threads),
            "--skip-logging",
        ]
    )
    return main(args)
