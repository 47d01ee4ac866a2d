"""worker: a Sidekiq-style job daemon on Redis, measured against rq, arq, Celery and Dramatiq.

The talk's "daily usage" slide: Sidekiq, a daemon that takes jobs from
Redis and runs many at once. This lesson builds one (`daemonlab worker
start|stop|status|enqueue`, on the lab's own daemonizing steps) and runs
the same jobs through it and through the workers people use, rq, arq, Celery and Dramatiq,
against the same Redis, measuring what a worker costs per job:

- jobs_per_s: a queue filled beforehand, every worker process released at
  one instant, jobs finished over the time they took;
- pickup_p50_ms / pickup_p99_ms: jobs arriving one every `--gap` s (at
  random moments), from the moment before each was queued to its first
  instruction: at that light load an idle worker's reaction time;
- cpu_ms_per_job: the worker processes' CPU (their children's too) over the
  throughput phase, per job (Redis's own CPU is not counted: it is shared);

for noop jobs (what is left is the cost of the worker itself), io jobs (a
10 ms sleep) and cpu jobs (~2 ms of Python), against the number of jobs run
at once (`--workers`: the lab's slots, arq's max_jobs, rq's processes).

What a learner would try first, and why it fails:
- BRPOP the job and run it: a worker killed mid-job has taken the job out
  of Redis and it is lost (Sidekiq's basic fetch; rq keeps a "started"
  registry and fails such jobs when it notices the worker is gone). The
  lab's worker moves the job into a processing list of its own with BLMOVE
  and is found dead by an expired heartbeat (queue.py): nothing is lost, a
  job may run twice and is then reported as retried.
- Fork per job for isolation (rq's default Worker): every job pays a fork,
  the child's re-connection and its exit, milliseconds of CPU for a job of
  microseconds; the fork lesson, on a library people use.
- Do the work in the signal handler (log, clean up, exit in TERM's handler):
  the reentrancy bugs gunicorn fixed (lab.daemon.signals). Here the handlers
  only record and the main loop calls handle_term, handle_tstp, handle_ttin.
- Stop a thread at the deadline: Python cannot. Its job is given back to
  the queue and the thread dies with the process (threads.py).

Sources: Sidekiq's signals and deployment pages
(https://github.com/sidekiq/sidekiq/wiki/Signals,
https://github.com/sidekiq/sidekiq/wiki/Deployment), its reliability page on
super_fetch (https://github.com/sidekiq/sidekiq/wiki/Reliability), Redis's
reliable queue pattern (https://redis.io/docs/latest/commands/lmove/), rq's
worker (https://github.com/rq/rq/tree/aa666a8a60dbc5e8bb43f166cda869c67426a11a/rq/worker)
and arq's (https://github.com/python-arq/arq/blob/main/arq/worker.py).

Reading map: slide.py (the slide: a BRPOP worker that loses a job, and what
goes wrong with it: read first), queue.py (the Redis keys, the reliable fetch,
heartbeats, recovery: read next), slot.py (one slot's loop: fetch, run, ack),
threads.py, processes.py and tasks.py (the three concurrency models),
daemon.py (the main loop and its signals), cli.py (`daemonlab worker`,
on lab/daemon/steps.py), peers.py (rq, arq, Celery and Dramatiq behind one interface),
celery_peer.py and dramatiq_peer.py (the two queues most Python users run),
runner.py (the processes an experiment starts), measure.py (one
measurement, step by step), crash.py (the crash table: kill -9 of the
process holding a job) with marks.py, stop.py (TERM and the deadline),
plan.py (the run: both tables, the sweep in alternating rounds, the ratios
to each peer), plot.py (the figure).
"""

from __future__ import annotations

from dataclasses import dataclass

from lab.params import Params as _Params
from lab.params import option
from lab.report import Column
from lab.runs import Run, collect

__all__ = ["COLUMNS", "FULL", "NAME", "SUMMARY", "TOUR", "Params", "run"]

NAME = "worker"
SUMMARY = (
    "a Sidekiq-style job daemon on Redis (reliable fetch) against rq, arq, Celery and Dramatiq:"
    " who loses a job to kill -9, jobs/s, pick-up"
)

SYSTEMS = ("lab", "rq", "arq", "celery", "dramatiq")
MODELS = ("threads", "processes", "asyncio", "fork-per-job", "simple", "prefork", "solo")
SETTINGS = ("default", "tuned")
JOBS = ("noop", "io", "cpu")


@dataclass(frozen=True)
class Params(_Params):
    system: tuple[str, ...] = option(
        SYSTEMS, "which workers: the lab's, rq, arq, Celery, Dramatiq", choices=SYSTEMS
    )
    model: tuple[str, ...] = option(
        ("threads", "asyncio", "fork-per-job", "simple", "prefork"),
        "how jobs run at once (each system runs those it has: lab threads, processes, asyncio;"
        " rq fork-per-job, simple; arq asyncio; celery prefork, threads, solo;"
        " dramatiq processes, threads)",
        choices=MODELS,
    )
    setting: tuple[str, ...] = option(
        SETTINGS,
        "each peer as installed (default) and as its docs tune it for throughput (tuned);"
        " Celery and Dramatiq have both, the others their defaults only",
        choices=SETTINGS,
    )
    workers: tuple[int, ...] = option(
        (4,), "jobs at once: lab slots, arq max_jobs, rq processes", minimum=1
    )
    job: tuple[str, ...] = option(
        ("noop",), "noop; io: a 10 ms sleep; cpu: ~2 ms of Python", choices=JOBS
    )
    queued: int = option(3000, "jobs in the queue when the workers are released", minimum=1)
    seconds: float = option(
        2.0,
        "the longest the throughput phase may take, the rest dropped (several 0.5 s arq polls)",
        above=0,
    )
    samples: int = option(20, "jobs queued spread out in time, for the pick-up latency", minimum=2)
    gap: float = option(0.05, "seconds between those jobs, on average", above=0)
    stop: bool = option(
        False, "the stop table: TERM (and Celery's cold QUIT) with 2 s jobs in hand (~2 min)"
    )
    rounds: int = option(
        1,
        "times every throughput cell is measured, alternating (ratios: median and range)",
        minimum=1,
    )
    crash: int = option(
        0,
        "io jobs per row of the crash table (kill -9 of the process holding a job, four"
        " times; 0: no crash table; 200 shows the point in about a minute)",
        minimum=0,
    )


FULL = {
    "model": MODELS,
    "workers": (1, 2, 4, 8, 16),
    "job": JOBS,
    "queued": 10000,
    "seconds": 4.0,
    "samples": 100,
    "crash": 1000,
    "rounds": 3,
    "stop": True,
}

COLUMNS = {
    "crash": [
        Column("system"),
        Column("setting"),
        Column("done", "done", ",d"),
        Column("lost", "lost", ",d"),
        Column("twice", "twice", ",d"),
        Column("back_p50_s", "back s", ".1f"),
        Column("verdict"),
        Column("model", wide=True),
        Column("hit", "hit", "d", wide=True),
        Column("back_max_s", "back max s", ".1f", wide=True),
        Column("knob", wide=True),
        Column("jobs", "jobs", ",d", wide=True),
    ],
    "stop": [
        Column("system"),
        Column("setting"),
        Column("signal", "sig"),  # TERM, or QUIT (Celery's cold shutdown)
        Column("deadline_s", "limit s", ".1f"),  # the lab's --deadline
        Column("exit_s", "exit s", ".2f"),
        Column("in_hand", "held", "d"),
        Column("finished", "done", "d"),
        Column("back", "again", "d"),
        Column("lost", "lost", "d"),
        Column("model", wide=True),
    ],
    "throughput": [
        Column("system"),
        Column("model"),
        Column("setting"),
        Column("workers", "n", "d"),  # jobs at once (--workers): "at once" would pass 80 columns
        Column("job"),
        Column("jobs_per_s", "jobs/s", ",.0f"),
        Column("pickup_p50_ms", "p50 ms", ".1f"),
        Column("pickup_p99_ms", "p99 ms", ".0f"),
        Column("cpu_ms_per_job", "cpu ms", ".2f"),
        Column("jobs", "jobs", ",d", wide=True),
        Column("seconds", "s", ".3f", wide=True),
        Column("start_s", "start s", ".2f", wide=True),
    ],
    "ratio": [
        Column("job"),
        Column("workers", "at once", "d"),
        Column("lab_threads_per_s", "lab/s", ",.0f"),
        Column("vs_simple", "x rq simple", ".2f"),
        Column("vs_celery", "x celery", ".2f"),
        Column("vs_celery_prefork", "x prefork", ".2f"),
        Column("vs_dramatiq", "x dramatiq", ".2f"),
        Column("vs_celery_range", "celery thr range", wide=True),
        Column("vs_celery_prefork_range", "celery pre range", wide=True),
        Column("vs_dramatiq_range", "dramatiq range", wide=True),
        Column("vs_simple_range", "rq simple range", wide=True),
        Column("vs_fork", "x rq fork", ".1f", wide=True),
        Column("vs_arq", "x arq", ".1f", wide=True),
        Column("rounds", "rounds", "d", wide=True),
    ],
}

TOUR = [
    (
        "**A job worker daemon.** Sidekiq-style: a daemon takes jobs from Redis and runs "
        "several at once. The lab's worker takes each job with BLMOVE into a processing list "
        "of its own, so a worker killed mid-job loses nothing: its heartbeat key expires and "
        "the next worker puts its jobs back. Below, 1,000 no-op jobs through the lab's thread "
        "worker, rq (a fork per job, and SimpleWorker) and arq (asyncio, polling): jobs per "
        "second, how long an idle worker takes to pick a job up, and CPU per job.",
        {
            "system": ("lab", "rq", "arq"),
            "workers": (2,),
            "queued": 1000,
            "seconds": 1.0,
            "samples": 10,
            "crash": 0,
        },
    ),
    (
        "**I/O-bound jobs** (a 10 ms sleep): now the number of jobs at once matters, and "
        "threads and asyncio overlap their waits; rq needs a process per job at once.",
        {
            "system": ("lab", "rq", "arq"),
            "job": ("io",),
            "workers": (8,),
            "queued": 400,
            "crash": 0,
        },
    ),
    (
        "**Who loses a job to kill -9.** The same io jobs through the lab and Celery "
        "(prefork, acks_late off, on, and on with task_reject_on_worker_lost; rq, arq and "
        "Dramatiq: `daemonlab run worker --crash 1000`); "
        "the process holding a job is killed with -9 four times. Celery as installed acks a "
        "job as it starts it: the job a killed prefork child held is gone. acks_late alone "
        "does not bring it back either: Celery acks a job whose worker process died.",
        # rq, arq and Dramatiq add about 25 s each (docs/worker.md): not in the tour.
        {
            "system": ("lab", "celery"),
            "model": ("threads", "prefork"),
            "workers": (4,),
            "queued": 500,
            "samples": 5,
            "crash": 200,
        },
    ),
]


def run(params: Params = Params(), progress=None, sink=None) -> Run:
    from lab.experiments.worker import plan  # here: --help and the list need no Redis client

    return collect(NAME, params, plan.measure, progress=progress, sink=sink)
