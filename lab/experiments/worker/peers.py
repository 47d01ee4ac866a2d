"""The systems compared, behind one interface: how each queues a job and runs a worker.

    lab       this lesson's daemon (daemon.py), threads, processes or asyncio
    rq        https://python-rq.org: `Worker` forks a work horse for every job
              (rq/worker/worker_classes.py, Worker.fork_work_horse: os.fork, then
              main_work_horse in the child, os.wait4 in the parent); `SimpleWorker`
              runs the job in its own process, no fork. One job at a time per
              worker process, so N workers are N processes.
    arq       https://arq-docs.helpmanual.io: one asyncio process, up to max_jobs at
              once. Its queue is a sorted set it *polls*, every poll_delay (0.5 s
              by default, kept here: it is what users get), not a blocking pop.
    celery    celery_peer.py: prefork, threads or solo, default and tuned settings
    dramatiq  dramatiq_peer.py: processes or threads, default and tuned settings

Every system runs the same job (lab.work) with the same
ledger line at its end; only the way a job travels differs. All Redis keys
of a run start with its namespace: the lab's by design, rq's through
RQ_KEY_PREFIX (rq 3, read when rq is imported: these functions run in the
runner's own interpreter, whose environment sets it), arq's queue through
its queue name and its per-job keys (arq:job:ID...) through job ids that
contain the namespace, Celery's through kombu's global_keyprefix, Dramatiq's
through its broker's namespace.

How each takes a job off Redis: the lab, BLMOVE into a processing list of the
slot's own (queue.py). rq 3, on one queue and Redis >= 6.2, also BLMOVEs, into
`<queue>:intermediate` (rq/queue.py, Queue.dequeue_any; rq/rq#1716), then
records the job as started; with result_ttl=0 (set here) it keeps no result.
arq: ZRANGEBYSCORE every poll_delay, then a per-job in-progress key. Celery
on Redis: BRPOP, the message kept in an `unacked` hash until acked. Dramatiq:
a Lua script moves messages into an ack set of the consumer's own.

Sources read: rq's worker, https://github.com/rq/rq/blob/aa666a8a60dbc5e8bb43f166cda869c67426a11a/rq/worker/worker_classes.py
and rq/queue.py (dequeue_any: BLMOVE where the server has it); arq's
worker.py (Worker._poll_iteration: ZRANGEBYSCORE every poll_delay).
"""

from __future__ import annotations

import asyncio
import os
import random
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from lab import work
from lab.experiments.worker import celery_peer, dramatiq_peer, marks, queue

__all__ = [
    "GATED",
    "MODELS",
    "QUEUE_KEY",
    "SETTINGS",
    "Producer",
    "arq_job",
    "processes",
    "rq_job",
    "run_worker",
]

ARQ_BATCH = 100

#: The models of each system (the records' `model`).
MODELS = {
    "lab": ("threads", "processes", "asyncio"),
    "rq": ("fork-per-job", "simple"),
    "arq": ("asyncio",),
    "celery": celery_peer.MODELS,
    "dramatiq": dramatiq_peer.MODELS,
}

#: The settings each system is measured under (the records' `setting`): its defaults, and
#: where its docs tell an expert to tune it for throughput, that too (celery_peer.py,
#: dramatiq_peer.py say what each changes).
SETTINGS = {
    "lab": ("default",),
    "rq": ("default",),
    "arq": ("default",),
    "celery": celery_peer.SETTINGS,
    "dramatiq": dramatiq_peer.SETTINGS,
}

#: The systems whose worker can be set up and then held at the gate until released.
#: Celery and Dramatiq start taking jobs inside their own start-up (worker_main,
#: dramatiq.cli.main): for them the queue is filled first and the clock starts at
#: the first job's start (measure.py).
GATED = ("lab", "rq", "arq")

#: Where each system keeps its waiting jobs, for a namespace (to drop what a capped run left).
QUEUE_KEY = {
    "lab": lambda ns: queue.Keys(ns).queue,
    "rq": lambda ns: f"{ns}:rq:queue:{ns}",
    "arq": lambda ns: f"{ns}:arq:queue",
    "celery": celery_peer.queue_key,
    "dramatiq": dramatiq_peer.queue_key,
}


def processes(system: str, model: str, workers: int) -> int:
    """How many worker processes `workers` slots take: rq, and Celery's solo pool, run one
    job per process (Celery's prefork and Dramatiq fork their own children)."""
    return workers if system == "rq" or (system, model) == ("celery", "solo") else 1


def ledger(namespace: str) -> str:
    return queue.Keys(namespace).ledger


def job_id(namespace: str, phase: str, n: int) -> str:
    """NAMESPACE-tN (throughput) or NAMESPACE-pN (pick-up): rq allows letters, digits, - and _."""
    return f"{namespace}-{phase}{n}"


def phase(job_id: str) -> str:
    return job_id.rpartition("-")[2][0]


# -- the job, as each peer calls it -----------------------------------------------------
def rq_job(kind: str, job_id: str, queued: int, ledger_key: str, mark: bool = False) -> None:
    """The job under rq: its connection is the worker's (the work horse's, after fork)."""
    from rq import get_current_job

    start = work.stamp()
    conn = get_current_job().connection
    if mark:  # the crash table (marks.py)
        conn.rpush(marks.key(ledger_key), marks.line(job_id, start))
    work.do(kind)
    conn.rpush(ledger_key, work.entry(job_id, 1, queued, start).line())


async def arq_job(
    ctx: dict, kind: str, job_id: str, queued: int, ledger_key: str, mark: bool = False
) -> None:
    """The job under arq: ctx["redis"] is the worker's asyncio pool."""
    start = work.stamp()
    if mark:
        await ctx["redis"].rpush(marks.key(ledger_key), marks.line(job_id, start))
    await work.do_async(kind)
    await ctx["redis"].rpush(ledger_key, work.entry(job_id, 1, queued, start).line())


# -- producers ------------------------------------------------------------------------------
class Producer:
    """Queues jobs the system's own way: all at once (`fill`), or spread out in time (`paced`)."""

    def __init__(
        self,
        system: str,
        namespace: str,
        url: str,
        setting: str = "default",
        mark: bool = False,
    ) -> None:
        self.system, self.namespace, self.url = system, namespace, url
        self.ledger = ledger(namespace)
        self.setting, self.mark = setting, mark

    def fill(self, kind: str, count: int) -> None:
        """`count` jobs, queued before the workers may start (not timed)."""
        ids = [job_id(self.namespace, "t", n) for n in range(count)]
        if self.system == "lab":
            conn = queue.connect(self.url)
            queue.enqueue(
                conn, queue.Keys(self.namespace), [queue.Job(i, kind, work.stamp()) for i in ids]
            )
            conn.close()
        elif self.system == "rq":
            from rq import Queue

            q = self._rq_queue()
            with q.connection.pipeline() as pipe:
                datas = [self._rq_data(Queue, kind, i, work.stamp()) for i in ids]
                q.enqueue_many(datas, pipeline=pipe)
                pipe.execute()
            q.connection.close()
        elif self.system == "arq":
            asyncio.run(self._arq_fill(kind, ids))
        else:
            with self.sender(kind) as send:
                for i in ids:
                    send(i)

    def paced(self, kind: str, count: int, gap: float) -> None:
        """`count` jobs, the n-th queued at a random moment of the n-th `gap`-long interval
        (one every `gap` s on average, none in step with a worker's poll timer), each
        stamped just before it is queued. Nobody waits for a job to finish."""
        ids = [job_id(self.namespace, "p", n) for n in range(count)]
        moments = [(n + random.random()) * gap for n in range(count)]
        if self.system == "arq":
            asyncio.run(self._arq_paced(kind, ids, moments))
            return
        if self.system in ("celery", "dramatiq"):
            with self.sender(kind) as send:
                began = time.monotonic()
                for i, moment in zip(ids, moments, strict=True):
                    time.sleep(max(0.0, began + moment - time.monotonic()))
                    send(i)
            return
        if self.system == "lab":
            conn, keys = queue.connect(self.url), queue.Keys(self.namespace)

            def send(i: str) -> None:
                queue.enqueue(conn, keys, [queue.Job(i, kind, work.stamp())])

        else:
            q = self._rq_queue()
            conn = q.connection

            def send(i: str) -> None:
                q.enqueue(
                    rq_job, kind, i, work.stamp(), self.ledger, self.mark, job_id=i, result_ttl=0
                )

        began = time.monotonic()
        try:
            for i, moment in zip(ids, moments, strict=True):
                time.sleep(max(0.0, began + moment - time.monotonic()))
                send(i)
        finally:
            conn.close()

    @contextmanager
    def sender(self, kind: str) -> Iterator[Callable[[str], None]]:
        """Celery's or Dramatiq's own way to queue one job of `kind` by id, on one connection."""
        if self.system == "celery":
            app = celery_peer.make_app(self.namespace, self.url, self.url, self.setting)
            with app.producer_or_acquire() as producer:
                yield lambda i: celery_peer.send(
                    app, producer, kind, i, self.ledger, self.url, self.mark
                )
            app.close()
        else:
            actor = dramatiq_peer.setup(self.namespace, self.url)
            yield lambda i: dramatiq_peer.send(actor, kind, i, self.ledger, self.url, self.mark)
            actor.broker.close()

    def _rq_queue(self):
        from redis import Redis
        from rq import Queue

        return Queue(self.namespace, connection=Redis.from_url(self.url))

    def _rq_data(self, queue_class, kind: str, job_id: str, queued: int):
        return queue_class.prepare_data(
            rq_job,
            args=(kind, job_id, queued, self.ledger, self.mark),
            job_id=job_id,
            result_ttl=0,
        )

    async def _arq_pool(self):
        from arq import create_pool
        from arq.connections import RedisSettings

        queue_name = _arq_queue(self.namespace)
        return await create_pool(RedisSettings.from_dsn(self.url), default_queue_name=queue_name)

    async def _arq_fill(self, kind: str, ids: list[str]) -> None:
        pool = await self._arq_pool()
        try:  # arq queues one job per transaction; a hundred at once keeps the filling short
            for start in range(0, len(ids), ARQ_BATCH):
                batch = ids[start : start + ARQ_BATCH]
                await asyncio.gather(*(self._arq_send(pool, kind, i) for i in batch))
        finally:
            await pool.aclose()

    async def _arq_paced(self, kind: str, ids: list[str], moments: list[float]) -> None:
        pool = await self._arq_pool()
        began = time.monotonic()
        try:
            for i, moment in zip(ids, moments, strict=True):
                await asyncio.sleep(max(0.0, began + moment - time.monotonic()))
                await self._arq_send(pool, kind, i)
        finally:
            await pool.aclose()

    async def _arq_send(self, pool, kind: str, i: str) -> None:
        await pool.enqueue_job("job", kind, i, work.stamp(), self.ledger, self.mark, _job_id=i)


def _arq_queue(namespace: str) -> str:
    return QUEUE_KEY["arq"](namespace)


# -- workers ---------------------------------------------------------------------------------
#: The crash table's settings beyond each system's defaults (crash.py): Celery acking late,
#: and acking late with task_reject_on_worker_lost.
CRASH_SETTINGS = {"celery": ("default", "acks-late", "acks-late+reject")}


def run_worker(
    system: str,
    model: str,
    workers: int,
    namespace: str,
    url: str,
    index: int,
    ready: Callable[[], None],
    gate: Callable[[], None],
    setting: str = "default",
    recover_s: float | None = None,
    deadline_s: float = 2.0,
) -> None:
    """Run one worker process of `system` until TERM; ready() once set up, gate() before work
    (GATED systems only). `recover_s`: how soon a dead worker's job may come back, where the
    system lets one say it (the crash table); None keeps every system's default.
    `deadline_s`: the lab's --deadline (the experiment stops its workers once idle)."""
    if system == "lab":
        from lab.experiments.worker.daemon import Config, Worker

        ttl = {} if recover_s is None else {"heartbeat_ttl": recover_s}
        config = Config(
            namespace=namespace, model=model, concurrency=workers, deadline=deadline_s, **ttl
        )
        Worker(config).serve(ready=ready, gate=gate)
    elif system == "rq":
        from redis import Redis
        from rq import Queue, SimpleWorker, Worker

        conn = Redis.from_url(url)
        kind = Worker if model == "fork-per-job" else SimpleWorker
        worker = kind(
            [Queue(namespace, connection=conn)],
            connection=conn,
            name=f"{namespace}-{index}-{os.getpid()}",
        )
        ready()
        gate()
        worker.work(logging_level="WARNING", with_scheduler=False)
    elif system == "arq":
        from arq.connections import RedisSettings
        from arq.worker import Worker as ArqWorker
        from arq.worker import func

        # arq keeps a running job's in-progress key for its timeout (300 s by default):
        # only then may another worker run it again.
        timeout = {} if recover_s is None else {"job_timeout": recover_s}
        worker = ArqWorker(
            functions=[func(arq_job, name="job", keep_result=0)],
            redis_settings=RedisSettings.from_dsn(url),
            queue_name=_arq_queue(namespace),
            max_jobs=workers,
            keep_result=0,
            **timeout,
        )
        ready()
        gate()
        worker.run()
    elif system == "celery":
        app = celery_peer.make_app(
            namespace,
            url,
            url,
            "tuned" if setting == "tuned" else "default",
            acks_late=setting.startswith("acks-late"),
            reject_on_worker_lost=setting == "acks-late+reject",
            visibility_s=recover_s,
        )
        celery_peer.run_worker(app, namespace, model, workers, setting, index)
    else:
        if setting == "tuned":
            os.environ.update(dramatiq_peer.TUNED_ENV)
        heartbeat_ms = 0 if recover_s is None else int(recover_s * 1000)
        dramatiq_peer.run_worker(namespace, url, model, workers, heartbeat_ms)
