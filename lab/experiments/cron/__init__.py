"""cron: the same job started by cron (a fresh interpreter a tick) or by a daemon already up.

The talk's "cron job vs daemon" slide asks when a daemon is worth running.
This lesson measures both sides on the same unit of work (lab/work.py, the
job the worker lesson queues too):

- cron: each tick, `sh -c` starts the lab's interpreter with cron's minimal
  environment (crontab(5): SHELL, PATH=/usr/bin:/bin, HOME, LOGNAME), which
  imports the lab's package and redis-py, connects, runs the job, writes
  its ledger line and exits. Its bill comes back with the exit (wait4's
  rusage): CPU and peak memory, per tick.
- a daemon started once, blocked until work comes: on Redis (BLPOP, waking
  every `--wake` s to look around) or on a signal (sigwaitinfo, never
  waking). Its CPU is read from /proc in nanoseconds, also while it idles.

Per strategy and tick rate: pick-up latency (tick to the job's first
instruction), CPU and memory per job (memory-time: MB held x seconds held,
shared out over the jobs); one tick under `python -X importtime` shows
where the start-up goes; and crossing.py turns the figures into the rates
at which the lines cross (the plot draws them): for CPU a daemon pays off
almost at once, since a tick costs ~100 ms of imports and the daemon's
idle second costs microseconds; for memory it pays off only when jobs come
faster than a tick's lifetime, since cron holds its memory only while a
tick runs.

What a learner would try first, and why it misleads:
- timing `python script.py` from an interactive shell: the shell's PATH,
  PYTHONPATH and virtualenv are not cron's; a cron line must name the
  interpreter in full (examples/crontab does).
- comparing only latency: cron's real pick-up is up to a minute (it ticks
  on the minute); the lesson ticks faster to measure a tick's cost, which
  does not depend on the rate.
- psutil's cpu_times for a daemon's idle cost: clock ticks of 10 ms, more
  than a whole idle second costs; schedstat counts nanoseconds.

Sources: crontab(5) and cron(8) of Debian's cron 3.0pl1 (the environment,
`/bin/sh -c`, @reboot); Python's -X importtime
(https://docs.python.org/3/using/cmdline.html#cmdoption-X); signal(7) on
real-time signals queueing; Redis BLPOP (https://redis.io/docs/latest/commands/blpop/).

Reading map: slide.py (the slide: a tick against a daemon, and what goes wrong
with it: read first), lab/work.py (the unit of work and its ledger line, shared
with the worker lesson: read next), child.py (a cron tick, and the two
waiting daemons), ticks.py (ticking at a rate, each way, and what each tick
cost, read with lab/usage.py where the kernel keeps it precisely),
startup.py (-X importtime), crossing.py (where the lines cross), plan.py
(the run: imports, each strategy at each rate, the crossings; every key and
daemon removed after), plot.py (the figure);
examples/crontab is the real thing for Debian's cron.
"""

from __future__ import annotations

from dataclasses import dataclass

from lab.experiments.cron import plan
from lab.params import Params as _Params
from lab.params import option
from lab.report import Column
from lab.runs import Run, collect

__all__ = ["COLUMNS", "FULL", "NAME", "SUMMARY", "TOUR", "Params", "run"]

NAME = "cron"
SUMMARY = "a cron job (a fresh interpreter a tick) against a daemon already up: where they cross"

STRATEGIES = ("cron", "daemon-redis", "daemon-signal")
JOBS = ("noop", "io", "cpu")


@dataclass(frozen=True)
class Params(_Params):
    strategy: tuple[str, ...] = option(
        STRATEGIES,
        "cron ticks, a daemon blocked on Redis, one blocked on a signal",
        choices=STRATEGIES,
    )
    rate: tuple[float, ...] = option(
        (2.0, 8.0), "ticks per second (a tick's cost does not depend on it)", above=0
    )
    duration: float = option(2.0, "seconds of ticks at each rate", above=0)
    job: str = option(
        "noop", "the unit of work: noop; io: a 10 ms sleep; cpu: ~2 ms of Python", choices=JOBS
    )
    idle: float = option(2.0, "seconds each daemon is watched with nothing to do", above=0)
    wake: float = option(
        1.0, "the Redis daemon's BLPOP timeout: it wakes this often when idle (0: never)", minimum=0
    )


FULL = {"rate": (0.5, 1.0, 2.0, 5.0, 10.0, 20.0), "duration": 6.0, "idle": 30.0}

COLUMNS = {
    "ticks": [
        Column("strategy"),
        Column("rate", "rate/s", ".1f"),
        Column("pickup_p50_ms", "p50 ms", ".2f"),
        Column("pickup_p99_ms", "p99 ms", ".2f"),
        Column("cpu_ms_per_job", "cpu ms", ".3f"),
        Column("rss_mb", "rss MB", ".1f"),
        Column("mb_s_per_job", "MB*s/job", ".3f"),
        Column("jobs", "jobs", "d", wide=True),
        Column("boot_ms", "boot ms", ".1f", wide=True),
        Column("import_ms", "import ms", ".1f", wide=True),
        Column("lifetime_ms", "life ms", ".1f", wide=True),
        Column("start_s", "start s", ".3f", wide=True),
    ],
    "idle": [
        Column("strategy"),
        Column("seconds", "s", ".1f"),
        Column("idle_cpu_ms_per_s", "idle cpu ms/s", ".4f"),
        Column("rss_mb", "rss MB", ".1f"),
    ],
    "imports": [
        Column("module"),
        Column("cumulative_ms", "cumulative ms", ".1f"),
        Column("self_ms", "self ms", ".1f"),
        Column("share", "share", ".0%"),
    ],
    "crossing": [
        Column("strategy"),
        Column("cpu_cross_per_h", "cpu: above jobs/h", ".2f", zero="any rate"),
        Column("memory_cross_per_s", "memory: above jobs/s", ".2f"),
        Column("cron_cpu_ms", "cron cpu ms", ".1f", wide=True),
        Column("job_cpu_ms", "daemon cpu ms", ".3f", wide=True),
        Column("idle_cpu_ms_per_s", "idle ms/s", ".4f", wide=True),
        Column("cron_mb_s", "cron MB*s", ".2f", wide=True),
        Column("rss_mb", "daemon MB", ".1f", wide=True),
    ],
}

TOUR = [
    (
        "**Cron job or daemon?** The same small job, started two ways. Cron starts a fresh "
        "interpreter every tick (`sh -c`, cron's bare environment): it imports the lab and "
        "redis-py and connects, every time. A daemon did all that once and waits, blocked on "
        "Redis or on a signal. Below: what each tick costs, where a tick's start-up goes "
        "(`-X importtime`), what a waiting daemon costs per second doing nothing, and the job "
        "rates above which the daemon costs less CPU, and less memory.",
        {"rate": (2.0,), "duration": 1.5, "idle": 1.0},
    ),
]


def run(params: Params = Params(), progress=None, sink=None) -> Run:
    return collect(NAME, params, plan.measure, progress=progress, sink=sink)
