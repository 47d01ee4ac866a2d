"""The talk's demo: N MySQL clients each run SELECT SLEEP(s).

One after the other they take N x s; at the same time, s. The slide showed
two Ruby clients: about 2 s without threads, about 1 s with. Here the same
demo runs five ways, on a real server:

    sequential  one connection, N queries in a row (the slide's "w/o")
    threads     one pymysql connection per thread (the slide's "with")
    fork        one raw os.fork child per client, results back over a pipe
    pool        one multiprocessing.Process per client, by --start-method
    asyncio     one aiomysql connection per task on one event loop (--loop)

Every client connects first; then all queries are released at one instant,
so wall_s is the query phase alone and connect_s is its own figure. The
server counts how many of the run's SLEEPs it saw at once (server_peak): its
own proof that the queries overlapped. efficiency = seconds / wall_s: 1.0 is
perfect overlap, sequential shows about 1/N.

Ctrl-C lets the queries in flight finish (at most --seconds), then every
client says goodbye: a client that hangs up mid-query leaves the server to
fail its reply and count an aborted client. Children ignore SIGINT and take
their orders from the parent, which reaps them all.

Reading map, in order:
    job.py        what every strategy shares: the job, its timings, one blocking client
    threads.py    sequential and threads: the slide's two versions
    processes.py  fork and pool: one process per client, and why each connects after fork
    tasks.py      asyncio: one event loop, one aiomysql connection per task
    watcher.py    the server's own count of SLEEPs at once, from PROCESSLIST
    plot.py       the figure: wall time and efficiency against clients
"""

from __future__ import annotations

import functools
import resource
import secrets
import statistics
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from lab.errors import LabError
from lab.experiments.sleep import processes, tasks, threads
from lab.experiments.sleep.job import Job, Strategy, Timings, measured_phase
from lab.experiments.sleep.watcher import Watcher
from lab.params import Params as _Params
from lab.params import option
from lab.runs import Run, Session, collect
from lab.start_methods import default_start_method

__all__ = ["COLUMNS", "FULL", "NAME", "SUMMARY", "Params", "run"]

NAME = "sleep"
SUMMARY = "N clients each run SELECT SLEEP(s): one after another, threads, fork, pool, asyncio"
STRATEGIES = ("sequential", "threads", "fork", "pool", "asyncio")

#: The most clients each strategy runs in a sweep, from the lab's scale goals:
#: a thread or a task is cheap, a process is not, and sequential at N clients
#: takes N x seconds. A larger --clients value is still run where it fits.
CEILING = {"sequential": 16, "threads": 500, "fork": 128, "pool": 128, "asyncio": 1000}

COLUMNS = [
    "strategy",
    "variant",
    "clients",
    "wall_s",
    "efficiency",
    "connect_s",
    "skew_s",
    "latency_max_s",
    "server_peak",
    "aborted_clients",
]


@dataclass(frozen=True)
class Params(_Params):
    clients: tuple[int, ...] = option((1, 2, 4, 8), "clients per measurement", minimum=1)
    seconds: float = option(1.0, "each client's SELECT SLEEP(seconds)", above=0)
    strategy: tuple[str, ...] = option(STRATEGIES, "how the clients run", choices=STRATEGIES)
    start_method: tuple[str, ...] = option(
        (default_start_method(),),
        "multiprocessing start methods for the pool strategy",
        choices=("fork", "spawn", "forkserver"),
    )
    loop: tuple[str, ...] = option(("asyncio",), "event loops for asyncio", choices=tasks.LOOPS)
    repeat: int = option(1, "measurements per strategy and client count", minimum=1)


FULL = {
    "clients": (1, 2, 4, 8, 16, 32, 64, 128, 256, 500, 1000),
    "start_method": ("fork", "forkserver", "spawn"),
    "loop": tasks.LOOPS,
    "repeat": 3,
}

TOUR = [
    (
        "**The slide.** Two clients each ask MySQL to `SELECT SLEEP(1)`. One after the "
        "other they take about 2 s; in two threads about 1 s, because a thread blocked "
        "on a socket releases the GIL and the other one runs.",
        {"clients": (2,), "strategy": ("sequential", "threads")},
    ),
    (
        "**The sweep.** More clients, every way of running them. Waiting overlaps in "
        "threads, processes and tasks alike: what differs is what each client costs. "
        "`server_peak` is the server's own count of SLEEPs running at once.",
        {"clients": (1, 8, 32), "seconds": 0.5, "strategy": ("threads", "fork", "asyncio")},
    ),
]


def run(params: Params = Params(), progress=None, sink=None) -> Run:
    return collect(NAME, params, _measure, progress=progress, sink=sink)


def _plan(params: Params) -> list[tuple[str, str, Strategy]]:
    """(strategy, variant, function) for every strategy and variant asked for."""
    plan: list[tuple[str, str, Strategy]] = []
    for name in params.strategy:
        if name == "sequential":
            plan.append((name, "", threads.sequential))
        elif name == "threads":
            plan.append((name, "", threads.threads))
        elif name == "fork":
            plan.append((name, "", processes.fork))
        elif name == "pool":
            for method in params.start_method:
                plan.append((name, method, functools.partial(processes.pool, start_method=method)))
        elif name == "asyncio":
            for loop in params.loop:
                plan.append((name, loop, functools.partial(tasks.asyncio_clients, loop=loop)))
    return plan


def _fits(strategy: str, clients: int, params: Params) -> bool:
    """A sweep stops each strategy at its ceiling; a single value asked for alone still runs."""
    return clients <= CEILING[strategy] or len(params.clients) == 1


def _measure(params: Params, session: Session) -> Iterator[dict[str, Any]]:
    from lab import db

    plan = [
        (strategy, variant, func, clients)
        for strategy, variant, func in _plan(params)
        for clients in params.clients
        if _fits(strategy, clients, params)
    ]
    session.env["skipped"] = sorted(
        {f"{s}@{c}" for s in params.strategy for c in params.clients if not _fits(s, c, params)}
    )
    most = max(clients for *_, clients in plan)
    _ensure_fd_limit(most)
    total = len(plan) * params.repeat
    with db.server() as server:
        facts = db.describe(server)
        session.env.update(
            server_source=facts["source"],
            server_url=facts["url"],
            server_version=facts["version"],
        )
        tag = secrets.token_hex(4)  # this run's mark on its queries (hex: no LIKE wildcards)
        # The watcher's connection counts against max_connections too: hence + 1.
        with db.capacity(server, most + 1), Watcher(server, tag, params.seconds) as watcher:
            done = 0
            for strategy, variant, func, clients in plan:
                for repeat in range(params.repeat):
                    session.step(done, total, f"{strategy} {variant} x{clients}".replace("  ", " "))
                    job = Job(server, clients, params.seconds, tag)
                    yield _one(job, strategy, variant, func, repeat, watcher)
                    done += 1
            session.step(done, total, "done")


def _one(job: Job, strategy: str, variant: str, func: Strategy, repeat: int, watcher: Watcher):
    import pymysql

    from lab import db

    watcher.begin()
    try:
        with measured_phase():
            timings = func(job)
    except pymysql.err.MySQLError as exc:  # the server went away mid-run, a query was killed...
        raise db.explain(job.server, exc) from None
    peak, aborted = watcher.end()
    return _record(job, strategy, variant, repeat, timings, peak, aborted)


def _record(
    job: Job, strategy: str, variant: str, repeat: int, t: Timings, peak: int, aborted: int
) -> dict[str, Any]:
    latencies = [(end - start) / 1e9 for start, end in zip(t.starts, t.ends, strict=True)]
    wall = (max(t.ends) - t.go_ns) / 1e9
    return {
        "strategy": strategy,
        "variant": variant,
        "clients": job.clients,
        "seconds": job.seconds,
        "repeat": repeat,
        "wall_s": wall,
        "efficiency": job.seconds / wall,
        "connect_s": t.connect_ns / 1e9,
        "skew_s": (max(t.starts) - t.go_ns) / 1e9,
        "latency_min_s": min(latencies),
        "latency_median_s": statistics.median(latencies),
        "latency_max_s": max(latencies),
        "server_peak": peak,
        "aborted_clients": aborted,
    }


def _ensure_fd_limit(clients: int) -> None:
    """A thousand sockets in one process need a thousand descriptors: raise the soft limit."""
    need = clients + 256  # the interpreter, pipes, the results store
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft >= need:
        return
    if hard != resource.RLIM_INFINITY and hard < need:
        raise LabError(f"{clients} clients need {need} open files, the hard limit is {hard}")
    resource.setrlimit(resource.RLIMIT_NOFILE, (need, hard))
