"""The talk's demo: N MySQL clients each run SELECT SLEEP(s).

One after the other they take N x s; at the same time, s. The slide showed
two Ruby clients: about 2 s without threads, about 1 s with. Here the same
demo runs six ways in Python, on a real server, beside a C floor:

    c-floor     the same job in C (MariaDB Connector/C): one thread on epoll, epoll in
                a process per core, or a thread per connection as mysqlslap (--floor)
    sequential  one connection, N queries in a row (the slide's "w/o")
    threads     one pymysql connection per thread (the slide's "with")
    fork        one raw os.fork child per client, results back over a pipe
    pool        one multiprocessing.Process per client, by --start-method (fork unless
                named: never the interpreter's default, forkserver from 3.14)
    asyncio     one connection per task on one event loop (--loop, --driver)
    wire        the query encoded once and written straight to each socket, an
                event loop per core (--loops): how close Python comes to the floor
    mysqlslap   MariaDB's own load client, a peer: its own figure, connects and all
    interpreters  one subinterpreter per client, each from its own thread (3.12+; opt-in)

Every client connects first; then all queries are released at one instant,
so wall_s is the query phase alone and connect_s is its own figure. The
server counts how many of the run's SLEEPs it saw at once (server_peak): its
own proof that the queries overlapped. efficiency = seconds / wall_s: 1.0 is
perfect overlap, sequential shows about 1/N. The client's send skew
(send_skew_s: its first query sent to its last) is what releasing costs the
client; the server stamps each sleep's start and end, and its start spread
(server_start_spread_s) holds the send skew (a server starts no query it has
not been sent), so server_efficiency is no floor of its own. floor_ratio is a
record's efficiency over the C floor's at the same clients in the same run:
what Python itself costs.

How far does it go? `--scale` doubles each strategy's clients from 64 to
10,000 until it breaks, and records why it broke (out of descriptors, a
thread or process that cannot be made, the memory budget, the server
refusing, the time limit, efficiency under 0.5), with what the clients and
the server held at the plateau: memory per client for a thread, a process
and a task, and the server's threads per connection. The server side of the
same lesson is --thread-handling: MariaDB gives each connection a thread of
its own (one-thread-per-connection) or shares a pool (pool-of-threads).

What a learner would try first, and why it fails: more clients against the
server that answers on 3306. Its max_connections (151) refuses the 152nd,
its listen queue (back_log 80) overflows under a burst of connects, and its
thread handling is fixed at start-up. So a run that needs more picks a
server that can take it: the one found, if it can as it is, else a
throwaway MariaDB started with the settings the load needs (lab/db.py,
lab/mysqld.py), and it says which and why. Where no throwaway can be
started, max_connections is raised for the run as a lease recorded on the
server, put back however the run ends (lab/capacity.py).

Ctrl-C lets the queries in flight finish (at most --seconds), then every
client says goodbye: a client that hangs up mid-query leaves the server to
fail its reply and count an aborted client. Children ignore SIGINT and take
their orders from the parent, which reaps them all. A server that dies
mid-run is said once, in one line, by every strategy.

Reading map, in order:
    slide.py      the slide: two SLEEPs in a row, then in two threads; what goes wrong
    job.py        what every strategy shares: the job, its timings, one blocking client,
                  and the words for what went wrong (a limit, the server gone)
    threads.py    sequential and threads: the slide's two versions
    floor.c       the C floor (floor.py builds it on first use and runs it)
    processes.py  fork and pool: one process per client, and why each connects after fork
    tasks.py      asyncio: one event loop, one connection per task, two drivers
    wire.py       wire: where asyncio's time per query goes, and a client without it
    mysqlslap.py  mysqlslap, run as its users run it, on the same server
    interpreters.py  a subinterpreter per client: pymysql loads there, and what crosses
    watcher.py    the server's own count of SLEEPs at once, and what the clients cost
    scale.py      --scale: each strategy doubled until it breaks, and why it broke
    plot.py       the figure: overlap, efficiency to the breaking point, cost per client
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import resource
import statistics
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from lab import db, mysqld
from lab.errors import LabError
from lab.experiments.sleep import (
    floor,
    interpreters,
    mysqlslap,
    processes,
    scale,
    tasks,
    threads,
    wire,
)
from lab.experiments.sleep.job import Broke, Job, Strategy, Timings, measured_phase
from lab.experiments.sleep.watcher import Lost, Watcher
from lab.params import Params as _Params
from lab.params import option
from lab.report import Column
from lab.runs import Run, Session, collect

__all__ = ["COLUMNS", "FULL", "NAME", "SUMMARY", "TOUR", "Params", "run"]

NAME = "sleep"
SUMMARY = "N clients each run SELECT SLEEP(s): one after another, threads, fork, pool, asyncio"
#: The C floor first: at each client count it is measured before the strategies
#: compared with it, so their records carry floor_ratio as they are made.
STRATEGIES = ("c-floor", "sequential", "threads", "fork", "pool", "asyncio", "wire")
FLOOR, PEER = "c-floor", "mysqlslap"
#: Asked for by name only: before 3.12 it refuses, and the default run must not.
OPT_IN = ("interpreters",)

#: The most clients each strategy runs in a sweep of --clients: a thread or a
#: task is cheap, a process is not, and sequential at N clients takes N x
#: seconds. A value over it is skipped, and the record says so; one value
#: asked for alone still runs (and --scale has no ceiling but the breaks).
CEILING = {
    "c-floor": 1000, "sequential": 16, "threads": 500, "fork": 128, "pool": 128,
    "asyncio": 1000, "wire": 1000, "mysqlslap": 1000,
}  # fmt: skip
CEILING["interpreters"] = 64  # its results pipe is read after the joins (interpreters.py)

#: The most clients a run may ask for: each is a TCP connection from this machine to
#: one server port, and a local port is 16 bits (fewer still are ephemeral).
MOST_CLIENTS = 65_535

#: The table at 80 columns: the lesson's figures first (wall time: the slide's 2 s
#: against 1 s; efficiency; what making a client cost), then a short note
#: (skipped, or what broke); the rest with --wide.
COLUMNS = [
    Column("strategy", "strategy"),
    Column("variant", "variant"),
    Column("clients", "clients", ",d"),
    Column("wall_s", "wall s", ".3f"),
    Column("efficiency", "eff.", ".3f"),
    Column("connect_s", "connect s", ".3f"),
    Column("note", "note"),
    Column("floor_ratio", "x floor", ".3f", wide=True),  # the notes say each in one line
    Column("server_peak", "at once", ",d", wide=True),
    Column("send_skew_s", "send skew s", ".4f", wide=True),
    Column("server_start_spread_s", "server spread s", ".4f", wide=True),
    Column("skew_s", "skew s", ".4f", wide=True),
    Column("latency_max_s", "max latency s", ".3f", wide=True),
    Column("server_efficiency", "server effic.", ".3f", wide=True),
    Column("mib_per_client", "MiB/client", ".3f", wide=True),
    Column("client_mib", "client MiB", ",.0f", wide=True),
    Column("client_threads", "threads", ",d", wide=True),
    Column("client_fds", "fds", ",d", wide=True),
    Column("server_threads", "server threads", ",d", wide=True),
    Column("server_mib", "server MiB", ",.0f", wide=True),
    Column("thread_handling", "server handling", wide=True),
    Column("aborted_clients", "aborted (server-wide)", ",d", wide=True),
]


@dataclass(frozen=True)
class Params(_Params):
    clients: tuple[int, ...] = option(
        (1, 2, 4, 8), "clients per measurement", minimum=1, maximum=MOST_CLIENTS
    )
    seconds: float = option(1.0, "each client's SELECT SLEEP(seconds)", above=0)
    strategy: tuple[str, ...] = option(
        STRATEGIES,
        "how the clients run (and the peer mysqlslap)",
        choices=(*STRATEGIES, PEER, *OPT_IN),
    )
    # fork, named: the interpreter's default would make the same command measure
    # forkserver from 3.14 on Linux (gh-84559) and spawn on macOS. The record's
    # `variant` says which method each pool row used.
    start_method: tuple[str, ...] = option(
        ("fork",),
        "multiprocessing start methods for the pool strategy",
        choices=("fork", "spawn", "forkserver"),
    )
    loop: tuple[str, ...] = option(("asyncio",), "event loops for asyncio", choices=tasks.LOOPS)
    driver: tuple[str, ...] = option(
        ("aiomysql",),
        "asyncio's MySQL drivers: aiomysql (pure Python) or asyncmy (Cython)",
        choices=tuple(tasks.DRIVERS),
    )
    floor: tuple[str, ...] = option(
        ("epoll", "per-core"),
        "the C floor's ways: epoll (one thread), per-core (epoll in a process per core) or "
        "threads (one per connection, as mysqlslap); ratios are to the best of them",
        choices=floor.MODES,
    )
    loops: tuple[int, ...] = option(
        (wire.CORES,), "wire: event loops, each in a process of its own", minimum=1
    )
    repeat: int = option(1, "measurements per strategy and client count", minimum=1)
    server: str = option(
        "auto",
        "auto: the server found if it can take the load, else a throwaway one that can; "
        "found: the server found, its max_connections raised for the run if need be; "
        "throwaway: always a throwaway MariaDB",
        choices=db.WHERE,
    )
    thread_handling: tuple[str, ...] = option(
        (),
        "how the server serves connections, each compared at the same client counts "
        "(default: as the server found does)",
        choices=mysqld.THREAD_HANDLINGS,
    )
    scale: bool = option(False, "double each strategy's clients from 64 to --top until it breaks")
    top: int = option(10_000, "the most clients --scale tries", minimum=1, maximum=MOST_CLIENTS)
    max_rss: float = option(
        8192.0, "the clients' memory budget, MiB: --scale stops a strategy there", above=0
    )
    time_limit: float = option(
        120.0, "the longest all clients may take to connect, s: a break under --scale", above=0
    )


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
        "threads, processes and tasks alike: what differs is what each client costs "
        "(`connect s`). `at once` is the server's own count of SLEEPs running together.",
        {"clients": (1, 8, 32), "seconds": 0.5, "strategy": ("threads", "fork", "asyncio")},
    ),
]


def run(params: Params = Params(), progress=None, sink=None) -> Run:
    """Find (or start) the first server and make room on it *before* the run exists:
    a server that cannot be reached is one line, not a failed run with nothing in it."""
    interpreters.refuse_where_missing(params.strategy)  # as is a Python without them
    handlings = params.thread_handling or (None,)
    need = db.Need(_most(params) + 1, handlings[0], params.server)  # + 1: the watcher
    with contextlib.ExitStack() as stack:
        first = stack.enter_context(db.server(need=need))
        facts = db.describe(first)
        room = stack.enter_context(_room(first, need.clients, params.scale))
        measure = functools.partial(_measure, first=(first, facts, room))
        return collect(NAME, params, measure, progress=progress, sink=sink)


def _most(params: Params) -> int:
    """The most clients any measurement of this run opens at once."""
    if params.scale:
        return params.top
    return max((c for *_, c, fits in _steps(params) if fits), default=1)


@contextlib.contextmanager
def _room(srv: db.Server, connections: int, sweeping: bool) -> Iterator[str]:
    """capacity() for the run, in words for the record. Under --scale a limit that
    cannot be raised is no refusal: the sweep goes on until the server refuses."""
    try:
        with db.capacity(srv, connections) as raised:
            yield "" if raised is None else f"max_connections {raised[0]} -> {raised[1]}"
    except LabError as exc:
        if not sweeping or "max_connections is" not in str(exc):
            raise
        yield f"{exc}: the sweep goes on until the server refuses"


def _plan(params: Params) -> list[tuple[str, str, Strategy]]:
    """(strategy, variant, function) for every strategy and variant asked for."""
    plan: list[tuple[str, str, Strategy]] = []
    for name in sorted(params.strategy, key=lambda name: name != FLOOR):  # the floor first
        if name == FLOOR:
            for mode in params.floor:
                plan.append((name, mode, functools.partial(floor.c_floor, mode=mode)))
        elif name == "wire":
            for loops in params.loops:
                variant = f"{loops} loop" + "s" * (loops > 1)
                plan.append((name, variant, functools.partial(wire.wire_clients, loops=loops)))
        elif name == PEER:
            plan.append((name, "", mysqlslap.measure))
        elif name == "sequential":
            plan.append((name, "", threads.sequential))
        elif name == "threads":
            plan.append((name, "", threads.threads))
        elif name == "fork":
            plan.append((name, "", processes.fork))
        elif name == "pool":
            for method in params.start_method:
                plan.append((name, method, functools.partial(processes.pool, start_method=method)))
        elif name == "interpreters":
            plan.append((name, "", interpreters.interpreters))
        elif name == "asyncio":
            for loop in params.loop:
                for driver in params.driver:
                    func = functools.partial(tasks.asyncio_clients, loop=loop)
                    plan.append((name, f"{loop}/{driver}", _with_driver(func, driver)))
    return plan


def _with_driver(func: Strategy, driver: str) -> Strategy:
    def run_with(job: Job) -> Timings:
        return func(Job(**{**job.__dict__, "driver": driver}))

    return run_with


def _steps(params: Params) -> list[tuple[str, str, Strategy, int, bool]]:
    """Every (strategy, variant, function, clients, fits) of a sweep of --clients; what
    does not fit under the ceiling is skipped, and its record says so."""
    alone = len(params.clients) == 1
    return [  # client count by client count: the strategies alternate, the floor first
        (strategy, variant, func, clients, alone or clients <= CEILING[strategy])
        for clients in params.clients
        for strategy, variant, func in _plan(params)
    ]


def _measure(params: Params, session: Session, first) -> Iterator[dict[str, Any]]:
    handlings = params.thread_handling or (None,)
    session.env["servers"] = []
    if FLOOR in params.strategy:
        params = _without_floor_if_unbuilt(params, session)
    tasks.load(params.loop, params.driver)  # imported now, not inside a measured client's costs
    tag = db.query_tag()  # this run's mark on its queries (its keeper's too, after a kill -9)
    for i, handling in enumerate(handlings):
        with contextlib.ExitStack() as stack:
            if i == 0:
                server, facts, room = first
            else:
                need = db.Need(_most(params) + 1, handling, params.server)
                server = stack.enter_context(db.server(need=need))
                facts = db.describe(server)
                room = stack.enter_context(_room(server, need.clients, params.scale))
            _note_server(session, server, facts, room)
            _ensure_fd_limit(_most(params))
            watcher = stack.enter_context(Watcher(server, tag, params.seconds))
            bench = _Bench(server, tag, watcher, _settle(server, facts))
            where = {"server": server.source, "thread_handling": facts["thread_handling"]}
            steps = _scale_steps if params.scale else _sweep_steps
            ratios = _Ratios()
            for record in steps(params, session, bench, i, len(handlings)):
                yield where | ratios.add(record)
            for said in ratios.said():
                session.note(said)
    session.step(1, 1, "done")


def _without_floor_if_unbuilt(params: Params, session: Session) -> Params:
    """The floor built now (not inside its first measurement); where it cannot be, the
    run goes on without it and says why, unless the floor was all that was asked for."""
    try:
        floor.binary()
    except LabError as exc:
        rest = tuple(s for s in params.strategy if s != FLOOR)
        if not rest:
            raise
        session.note(f"no C floor: {exc}")
        return dataclasses.replace(params, strategy=rest)
    return params


class _Ratios:
    """Each record's efficiency over the best C floor's at the same clients, on the same
    server in the same run (the floor is measured first at each client count).

    mysqlslap's own figure holds its connects (mysqlslap.py), so it is held against
    the floor that does the same work: the threads floor's connect_s + wall_s."""

    def __init__(self) -> None:
        self.floors: dict[tuple[str, int], float] = {}
        self.ratios: dict[str, dict[int, list[float]]] = {}

    def add(self, record: dict[str, Any]) -> dict[str, Any]:
        if "efficiency" not in record:
            return record
        clients, efficiency = record["clients"], record["efficiency"]
        if record["strategy"] == FLOOR:
            self._best("", clients, efficiency)
            if record["variant"] == "threads":
                with_connects = record["seconds"] / (record["wall_s"] + record["connect_s"])
                self._best(PEER, clients, with_connects)
            return record
        floor = self.floors.get((PEER if record["strategy"] == PEER else "", clients))
        if floor is not None and record["strategy"] != "sequential":  # not the same job
            record["floor_ratio"] = efficiency / floor
            label = _label((record["strategy"], record["variant"]), 0).removesuffix(" x0")
            self.ratios.setdefault(label, {}).setdefault(clients, []).append(record["floor_ratio"])
        return record

    def _best(self, kind: str, clients: int, efficiency: float) -> None:
        self.floors[kind, clients] = max(efficiency, self.floors.get((kind, clients), 0.0))

    def said(self) -> list[str]:
        """One line per strategy: its ratio to the floor at each client count (the
        median, and the range where repeated)."""
        return [
            f"{label} / C floor: " + ", ".join(f"{_spread(r)} at {n:,}" for n, r in by.items())
            for label, by in self.ratios.items()
        ]


def _spread(values: list[float]) -> str:
    median = f"{statistics.median(values):.3f}"
    return median if len(values) == 1 else f"{median} ({min(values):.3f}-{max(values):.3f})"


def _note_server(session: Session, server: db.Server, facts: dict, room: str) -> None:
    """What the run used, in the run's env (the first server's facts at the top level),
    and said in one line among the run's notes, which the CLI prints under the table."""
    said = {k: facts[k] for k in ("source", "url", "version", "max_connections", "back_log")}
    said |= {"thread_handling": facts["thread_handling"], "why": server.why, "room": room}
    if not session.env["servers"]:
        session.env.update(
            server_source=facts["source"], server_url=facts["url"], server_version=facts["version"]
        )
    session.env["servers"].append(said)
    line = (
        f"server: {facts['url']} ({facts['source']}, {facts['version']}), max_connections"
        f" {facts['max_connections']:,}, back_log {facts['back_log']:,}, {facts['thread_handling']}"
    )
    because = server.why.partition(": started")[0]
    session.note(line + "".join(f"; {part}" for part in (because, room) if part))


@dataclass(frozen=True)
class _Bench:
    """Where a run measures: the server, the run's tag, the watcher, and how long a
    measurement waits first for the server to settle (see _settle)."""

    server: db.Server
    tag: str
    watcher: Watcher
    settle_s: float

    def measure(self, params: Params, clients: int, strategy: str, variant: str, func, repeat):
        job = Job(self.server, clients, params.seconds, self.tag, time_limit=params.time_limit)
        time.sleep(self.settle_s)
        return _one(job, strategy, variant, func, repeat, self.watcher)


def _settle(server: db.Server, facts: dict[str, Any]) -> float:
    """A pool-of-threads server adds workers while queries wait (a SLEEP tells the pool
    it waits, so the pool lets another thread run) and retires them only after
    thread_pool_idle_timeout (60 s). The lab's own pool server retires them after
    1 s (lab/mysqld.py): each measurement waits that out, so each starts from the pool."""
    if facts["thread_handling"] == mysqld.THREAD_HANDLINGS[1] and server.pid is not None:
        return mysqld.POOL_IDLE_TIMEOUT_S + 0.5
    return 0.0


def _sweep_steps(params, session, bench: _Bench, index: int, servers: int):
    """The records of a sweep of --clients (with --repeat) on one server."""
    steps = _steps(params)
    total = len(steps) * params.repeat * servers
    done = index * len(steps) * params.repeat
    for strategy, variant, func, clients, fits in steps:
        if not fits:
            why = f"over the sweep's ceiling of {CEILING[strategy]} {strategy} clients"
            session.note(f"skipped {strategy} x{clients}: {why}")
            yield {
                "strategy": strategy,
                "variant": variant,
                "clients": clients,
                "skipped": "ceiling",
                "note": "skipped",
                "detail": f"{why} (ask for {clients} alone, or use --scale)",
            }
            done += params.repeat
            continue
        for repeat in range(params.repeat):
            session.step(done, total, _label((strategy, variant), clients))
            yield bench.measure(params, clients, strategy, variant, func, repeat)
            done += 1


def _scale_steps(params, session, bench: _Bench, index: int, servers: int):
    """The records of --scale on one server: every strategy up the ladder, in turn at
    each step (scale.together), each until it breaks."""
    plan = _plan(params)
    ladder = scale.ladder(params.top)
    total = len(plan) * len(ladder) * servers
    measures = {}
    for strategy, variant, func in plan:
        if strategy == "sequential":
            why = "not swept: one after another, N clients take N x seconds"
            yield {"strategy": strategy, "variant": variant, "skipped": "scale", "note": "skipped"}
            session.note(f"skipped {strategy}: {why}")
            continue

        def measure(clients: int, way=(strategy, variant, func)) -> dict[str, Any]:
            rung = ladder.index(clients)
            done = (index * len(ladder) + rung) * len(plan) + list(measures).index(way[:2])
            session.step(done, total, _label(way[:2], clients))
            return bench.measure(params, clients, *way, 0)

        measures[strategy, variant] = measure
    for (strategy, variant), record in scale.together(params.top, params.max_rss, measures):
        if "broke" in record:
            record["note"] = f"broke: {record['broke']}"
            said = _label((strategy, variant), record["clients"])
            session.note(f"{said} broke: {record['detail']}")
        yield {"strategy": strategy, "variant": variant} | record


def _label(way: tuple[str, str], clients: int) -> str:
    return " ".join(filter(None, (*way, f"x{clients}")))


def _one(job: Job, strategy: str, variant: str, func: Strategy, repeat: int, watcher: Watcher):
    _give_back_freed_memory()
    watcher.begin(1 if strategy == "sequential" else job.clients)
    if strategy == PEER:
        return _peer_record(job, strategy, variant, repeat, func, watcher)
    with measured_phase():
        timings = func(dataclasses.replace(job, on_connected=watcher.idle))
    took = timings.connect_ns / 1e9
    if took > job.time_limit:  # the strategies stop a hang; this, a connect phase that was slow
        detail = f"connecting {job.clients:,} clients took {took:.3g} s, over {job.time_limit:g} s"
        raise Broke("time", detail)
    try:
        seen = watcher.end()
    except Lost:  # every query came back, then the server went away
        raise db.explain(job.server, ConnectionError(), during="query") from None
    return _record(job, strategy, variant, repeat, timings, seen)


def _peer_record(job: Job, strategy: str, variant: str, repeat: int, func, watcher: Watcher):
    """A peer's own figures (it has no per-client timings), and what the server saw."""
    figures = func(dataclasses.replace(job, on_connected=watcher.idle))
    try:
        seen = watcher.end()
    except Lost:
        raise db.explain(job.server, ConnectionError(), during="query") from None
    record = {"strategy": strategy, "variant": variant, "clients": job.clients}
    record |= {"seconds": job.seconds, "repeat": repeat, **figures}
    return record | {"server_peak": seen["server_peak"], "aborted_clients": seen["aborted_clients"]}


def _record(
    job: Job, strategy: str, variant: str, repeat: int, t: Timings, seen: dict[str, Any]
) -> dict[str, Any]:
    latencies = [(end - start) / 1e9 for start, end in zip(t.starts, t.ends, strict=True)]
    wall = (max(t.ends) - t.go_ns) / 1e9
    server_wall = (max(t.server_ends) - min(t.server_starts)) / 1e6
    record = {
        "strategy": strategy,
        "variant": variant,
        "clients": job.clients,
        "seconds": job.seconds,
        "repeat": repeat,
        "wall_s": wall,
        "efficiency": job.seconds / wall,
        "connect_s": t.connect_ns / 1e9,
        "skew_s": (max(t.starts) - t.go_ns) / 1e9,
        "send_skew_s": (max(t.starts) - min(t.starts)) / 1e9,
        "latency_min_s": min(latencies),
        "latency_median_s": statistics.median(latencies),
        "latency_max_s": max(latencies),
        "server_wall_s": server_wall,
        "server_efficiency": job.seconds / server_wall
        if strategy != "sequential"
        else job.seconds * job.clients / server_wall,
        "server_start_spread_s": (max(t.server_starts) - min(t.server_starts)) / 1e6,
        "server_peak": seen["server_peak"],
        "aborted_clients": seen["aborted_clients"],
    }
    record |= _costs(job, seen)
    return record


#: What the watcher saw of the server; its figures stay whole: it keeps idle
#: threads for reuse (thread_cache_size) and memory in its caches, so its
#: "before" is no baseline to subtract.
SERVER_FIGURES = ("server_mib", "server_threads", "server_idle_threads")
CLIENT_FIGURES = (
    "client_mib", "client_rss_mib", "client_threads", "client_fds", "client_processes",
)  # fmt: skip


def _costs(job: Job, seen: dict[str, Any]) -> dict[str, Any]:
    """The watcher's snapshots, and what one client holds (PSS at the plateau, less before)."""
    costs = {k: seen[k] for k in (*CLIENT_FIGURES, *SERVER_FIGURES) if k in seen}
    if "client_mib" in seen:  # the watcher saw every sleep at once
        costs["mib_per_client"] = (seen["client_mib"] - seen["base_client_mib"]) / job.clients
    return costs


def _give_back_freed_memory() -> None:
    """Before the watcher's "before" snapshot: what the last measurement freed goes back
    to the kernel, so it is not counted as this one's baseline. gc.collect() frees the
    last clients' objects; glibc keeps freed heap pages mapped until malloc_trim(0)."""
    import ctypes
    import gc

    gc.collect()
    with contextlib.suppress(OSError, AttributeError):  # not glibc: nothing to trim
        ctypes.CDLL("libc.so.6").malloc_trim(0)


def _ensure_fd_limit(clients: int) -> None:
    """Thousands of sockets in one process need as many descriptors: raise the soft limit
    as far as the hard one allows. Past that a client's socket fails with EMFILE, which
    the strategies report as "out of file descriptors" (a break, under --scale)."""
    need = clients + 256  # the interpreter, pipes, the results store
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft >= need:
        return
    top = need if hard == resource.RLIM_INFINITY else min(need, hard)
    if top > soft:
        resource.setrlimit(resource.RLIMIT_NOFILE, (top, hard))
