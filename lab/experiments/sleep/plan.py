"""What run() hands over to: the ways asked for, the servers they run on, and the sweep.

The ways (ways()): every strategy and variant asked for, the C floor first,
so at each client count the floor is measured before the strategies held
against it. A sweep of --clients (steps()) takes them client count by client
count, the strategies alternating; a count over a strategy's CEILING is
skipped, and its record says so. --scale instead climbs scale.py's ladder,
every strategy in turn at each rung, each until it breaks.

Each --thread-handling gets a server of its own (use_server()): found or
started with room for the run's most clients (lab/db.py), its
max_connections raised for the run if need be (lab/capacity.py), and said in
one line among the run's notes. run() opens the first before the run exists,
so a server that cannot be reached is one line, not a failed run.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import resource
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any, NamedTuple

from lab import db
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
from lab.experiments.sleep.job import Job, Strategy, Timings
from lab.experiments.sleep.records import FLOOR, PEER, Bench, Ratios, label, settle
from lab.experiments.sleep.watcher import Watcher
from lab.runs import Session

if TYPE_CHECKING:
    from lab.experiments.sleep import Params

__all__ = ["CEILING", "ServerUsed", "Step", "Way", "measure", "steps", "use_server", "ways"]

#: The most clients each strategy runs in a sweep of --clients: a thread or a
#: task is cheap, a process is not, and sequential at N clients takes N x
#: seconds. A value over it is skipped, and the record says so; one value
#: asked for alone still runs (and --scale has no ceiling but the breaks).
CEILING = {
    "c-floor": 1000, "sequential": 16, "threads": 500, "fork": 128, "pool": 128,
    "asyncio": 1000, "wire": 1000, "mysqlslap": 1000,
}  # fmt: skip
CEILING["interpreters"] = 64  # its results pipe is read after the joins (interpreters.py)


class Way(NamedTuple):
    """One way of running the clients: a strategy, its variant ("" where it has but
    one: the pool's start method, the asyncio loop and driver), and its function."""

    strategy: str
    variant: str
    func: Strategy


class Step(NamedTuple):
    """One measurement of a sweep of --clients: a way at a client count, and whether
    that count fits under the way's CEILING."""

    way: Way
    clients: int
    fits: bool


class ServerUsed(NamedTuple):
    """A server a run measures on: db.server()'s, its facts (db.describe()), and the
    room made on it, in words for the record ("" where none was needed)."""

    server: db.Server
    facts: dict[str, Any]
    room: str


def ways(params: Params) -> list[Way]:
    """Every strategy and variant asked for."""
    plan: list[Way] = []
    for name in sorted(params.strategy, key=lambda name: name != FLOOR):  # the floor first
        if name == FLOOR:
            for mode in params.floor:
                plan.append(Way(name, mode, functools.partial(floor.c_floor, mode=mode)))
        elif name == "wire":
            for loops in params.loops:
                variant = f"{loops} loop" + "s" * (loops > 1)
                plan.append(Way(name, variant, functools.partial(wire.wire_clients, loops=loops)))
        elif name == PEER:
            plan.append(Way(name, "", mysqlslap.measure))
        elif name == "sequential":
            plan.append(Way(name, "", threads.sequential))
        elif name == "threads":
            plan.append(Way(name, "", threads.threads))
        elif name == "fork":
            plan.append(Way(name, "", processes.fork))
        elif name == "pool":
            for method in params.start_method:
                pool = functools.partial(processes.pool, start_method=method)
                plan.append(Way(name, method, pool))
        elif name == "interpreters":
            plan.append(Way(name, "", interpreters.interpreters))
        elif name == "asyncio":
            for loop in params.loop:
                for driver in params.driver:
                    func = functools.partial(tasks.asyncio_clients, loop=loop)
                    plan.append(Way(name, f"{loop}/{driver}", _with_driver(func, driver)))
    return plan


def _with_driver(func: Strategy, driver: str) -> Strategy:
    def run_with(job: Job) -> Timings:
        return func(Job(**{**job.__dict__, "driver": driver}))

    return run_with


def steps(params: Params) -> list[Step]:
    """Every measurement of a sweep of --clients; what does not fit under the ceiling
    is skipped, and its record says so."""
    alone = len(params.clients) == 1
    return [  # client count by client count: the strategies alternate, the floor first
        Step(way, clients, alone or clients <= CEILING[way.strategy])
        for clients in params.clients
        for way in ways(params)
    ]


def _most(params: Params) -> int:
    """The most clients any measurement of this run opens at once."""
    if params.scale:
        return params.top
    return max((step.clients for step in steps(params) if step.fits), default=1)


@contextlib.contextmanager
def use_server(params: Params, handling: str | None) -> Iterator[ServerUsed]:
    """A server serving connections by `handling` (None: as the server found does) with
    room for the run's most clients, for as long as the run measures on it."""
    need = db.Need(_most(params) + 1, handling, params.server)  # + 1: the watcher
    with db.server(need=need) as server:
        facts = db.describe(server)
        with _room(server, need.clients, params.scale) as room:
            yield ServerUsed(server, facts, room)


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


def measure(params: Params, session: Session, first: ServerUsed) -> Iterator[dict[str, Any]]:
    """The run's records: on `first`, then on a server of its own for each further
    --thread-handling."""
    handlings = params.thread_handling or (None,)
    session.env["servers"] = []
    if FLOOR in params.strategy:
        params = _without_floor_if_unbuilt(params, session)
    tasks.load(params.loop, params.driver)  # imported now, not inside a measured client's costs
    tag = db.query_tag()  # this run's mark on its queries (its keeper's too, after a kill -9)
    for i, handling in enumerate(handlings):
        with contextlib.ExitStack() as stack:
            used = first if i == 0 else stack.enter_context(use_server(params, handling))
            _note_server(session, used)
            _ensure_fd_limit(_most(params))
            watcher = stack.enter_context(Watcher(used.server, tag, params.seconds))
            bench = Bench(used.server, tag, watcher, settle(used.server, used.facts))
            where = {"server": used.server.source, "thread_handling": used.facts["thread_handling"]}
            walk = _scale_steps if params.scale else _sweep_steps
            ratios = Ratios()
            for record in walk(params, session, bench, i, len(handlings)):
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


def _note_server(session: Session, used: ServerUsed) -> None:
    """What the run used, in the run's env (the first server's facts at the top level),
    and said in one line among the run's notes, which the CLI prints under the table."""
    server, facts, room = used
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


def _sweep_steps(params: Params, session: Session, bench: Bench, index: int, servers: int):
    """The records of a sweep of --clients (with --repeat) on one server."""
    planned = steps(params)
    total = len(planned) * params.repeat * servers
    done = index * len(planned) * params.repeat
    for (strategy, variant, func), clients, fits in planned:
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
            session.step(done, total, label(strategy, variant, clients))
            yield bench.measure(params, clients, strategy, variant, func, repeat)
            done += 1


def _scale_steps(params: Params, session: Session, bench: Bench, index: int, servers: int):
    """The records of --scale on one server: every strategy up the ladder, in turn at
    each step (scale.together), each until it breaks."""
    plan = ways(params)
    ladder = scale.ladder(params.top)
    total = len(plan) * len(ladder) * servers
    measures = {}
    for way in plan:
        named = {"strategy": way.strategy, "variant": way.variant}
        if way.strategy == "sequential":
            why = "not swept: one after another, N clients take N x seconds"
            yield named | {"skipped": "scale", "note": "skipped"}
            session.note(f"skipped {way.strategy}: {why}")
            continue

        def measure_at(clients: int, way: Way = way) -> dict[str, Any]:
            rung = ladder.index(clients)
            done = (index * len(ladder) + rung) * len(plan) + list(measures).index(way[:2])
            session.step(done, total, label(way.strategy, way.variant, clients))
            return bench.measure(params, clients, *way, 0)

        measures[way.strategy, way.variant] = measure_at
    for (strategy, variant), record in scale.together(params.top, params.max_rss, measures):
        if "broke" in record:
            record["note"] = f"broke: {record['broke']}"
            said = label(strategy, variant, record["clients"])
            session.note(f"{said} broke: {record['detail']}")
        yield {"strategy": strategy, "variant": variant} | record
