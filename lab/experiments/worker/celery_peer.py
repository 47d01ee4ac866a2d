"""Celery as a peer: the app, the job as a Celery task, its producer and its worker.

Celery (https://docs.celeryq.dev) is the job queue most Python users run. A
worker is `celery worker --pool POOL --concurrency N`: one main process that
takes messages from the broker and hands them to its pool:

    prefork  N forked child processes (billiard), the default pool
    threads  N threads of the main process
    solo     the main process itself, one job at a time

Here the worker runs through `app.worker_main(argv)`, the same click command
the `celery` program runs, in the runner's own process (so the experiment
can measure and signal it as a process of its own).

Settings, each row labelled with the one it ran under (SETTINGS):
    default  what the First Steps tutorial sets up: a Redis result backend,
             prefetch multiplier 4, acks on receipt (acks_late off)
    tuned    the Optimizing guide's advice for many short jobs
             (https://docs.celeryq.dev/en/stable/userguide/optimizing.html):
             results ignored, prefetch multiplier 16, `-O fair`, no rate limits,
             and the worker's gossip, mingle and heartbeat events off

What is the lab's on Redis: every key starts with the run's namespace
(kombu's `global_keyprefix`, the result backend's too). The queue, its
exchange and routing key, and the worker's node name are the namespace.
(Celery on RabbitMQ, its other common broker, is not measured here yet.)

Sources read: celery/app/defaults.py (prefetch_multiplier 4, acks_late
False), celery/bin/worker.py (`-O` default 'default'), kombu/transport/redis.py
(visibility_timeout 3600 s; unacked messages restored every 10 s once older).
"""

from __future__ import annotations

import os
from typing import Any

from lab import work
from lab.experiments.worker import marks

__all__ = ["MODELS", "SETTINGS", "make_app", "queue_key", "run_worker", "send"]

MODELS = ("prefork", "threads", "solo")
SETTINGS = ("default", "tuned")

#: The tuned row's prefetch: for many short jobs the Optimizing guide says raise it.
TUNED_PREFETCH = 16
TASK = "daemonlab.job"

#: The job's own Redis connection for its ledger line, one per process (prefork forks
#: children from the main process: a client inherited across fork shares its socket).
_LEDGER: dict[int, Any] = {}


def _ledger_conn(url: str):
    import redis

    conn = _LEDGER.get(os.getpid())
    if conn is None:
        conn = _LEDGER[os.getpid()] = redis.Redis.from_url(url)
    return conn


def job(
    kind: str, job_id: str, queued: int, ledger_key: str, ledger_url: str, mark: bool = False
) -> None:
    """The job under Celery: the same work and ledger line as every system's."""
    start = work.stamp()
    conn = _ledger_conn(ledger_url)
    if mark:  # the crash table: when (and where) each run of a job began
        conn.rpush(marks.key(ledger_key), marks.line(job_id, start))
    work.do(kind)
    conn.rpush(ledger_key, work.entry(job_id, 1, queued, start).line())


def make_app(
    namespace: str,
    broker_url: str,
    result_url: str,
    setting: str = "default",
    acks_late: bool = False,
    reject_on_worker_lost: bool = False,
    visibility_s: float | None = None,
):
    """A Celery app whose every name on the broker is the namespace's."""
    from celery import Celery

    prefix = {"global_keyprefix": f"{namespace}:celery:"}
    transport: dict[str, Any] = dict(prefix)
    if visibility_s is not None:
        transport["visibility_timeout"] = visibility_s
    app = Celery(namespace, broker=broker_url, set_as_current=False)
    app.conf.update(
        task_default_queue=namespace,
        task_default_exchange=namespace,
        task_default_routing_key=namespace,
        broker_transport_options=transport,
        broker_connection_retry_on_startup=True,
        worker_hijack_root_logger=False,
        task_acks_late=acks_late,
        task_reject_on_worker_lost=reject_on_worker_lost,
    )
    if setting == "default":
        app.conf.update(
            result_backend=result_url, result_backend_transport_options=prefix, result_expires=60
        )
    else:
        app.conf.update(
            task_ignore_result=True,
            worker_prefetch_multiplier=TUNED_PREFETCH,
            worker_disable_rate_limits=True,
        )
    app.task(name=TASK)(job)
    return app


def queue_key(namespace: str) -> str:
    """Where kombu's Redis transport keeps the queue's waiting messages."""
    return f"{namespace}:celery:{namespace}"


def send(
    app, producer, kind: str, job_id: str, ledger_key: str, ledger_url: str, mark: bool = False
) -> None:
    """Queue one job, stamped just before, through `producer` (app.producer_or_acquire():
    one connection for many jobs, as a web process sending jobs keeps one)."""
    args = (kind, job_id, work.stamp(), ledger_key, ledger_url, mark)
    app.send_task(TASK, args=args, task_id=job_id, producer=producer)


def worker_argv(namespace: str, model: str, workers: int, setting: str, index: int) -> list[str]:
    """`celery worker` as its docs start it, plus the tuned row's options."""
    argv = [
        "worker",
        "--pool",
        model,
        "--concurrency",
        str(workers),
        "--loglevel",
        "WARNING",
        "--hostname",
        f"{namespace}-{index}@%h",
    ]
    if setting == "tuned":
        argv += ["-O", "fair", "--without-gossip", "--without-mingle", "--without-heartbeat"]
    return argv


def run_worker(app, namespace: str, model: str, workers: int, setting: str, index: int) -> None:
    """Run the worker until TERM (warm shutdown: jobs in hand finish) or a second TERM."""
    app.worker_main(worker_argv(namespace, model, workers, setting, index))
