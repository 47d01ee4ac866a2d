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
    records.py    one measurement made into its record, and its ratio to the C floor
    plan.py       what run() hands over to: the ways asked for, each --thread-handling's
                  server, and the sweep of --clients
    scale.py      --scale: each strategy doubled until it breaks, and why it broke
    plot.py       the figure: overlap, efficiency to the breaking point, cost per client
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

from lab import db, mysqld
from lab.experiments.sleep import floor, interpreters, plan, tasks, wire
from lab.experiments.sleep.records import FLOOR, PEER
from lab.params import Params as _Params
from lab.params import option
from lab.report import Column
from lab.runs import Run, collect

__all__ = ["COLUMNS", "FULL", "NAME", "SUMMARY", "TOUR", "Params", "run"]

NAME = "sleep"
SUMMARY = "N clients each run SELECT SLEEP(s): one after another, threads, fork, pool, asyncio"
#: The C floor first: at each client count it is measured before the strategies
#: compared with it, so their records carry floor_ratio as they are made.
STRATEGIES = (FLOOR, "sequential", "threads", "fork", "pool", "asyncio", "wire")
#: Asked for by name only: before 3.12 it refuses, and the default run must not.
OPT_IN = ("interpreters",)

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
    handling = (params.thread_handling or (None,))[0]
    with plan.use_server(params, handling) as first:
        measure = functools.partial(plan.measure, first=first)
        return collect(NAME, params, measure, progress=progress, sink=sink)
