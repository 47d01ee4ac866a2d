"""prefork: a Unicorn-style preforking server, against threads, asyncio and gunicorn.

The talk's "daily daemons" slide puts Unicorn first: a master binds one
listening socket, forks N workers that all accept() on it, and from then
on only supervises. The kernel hands each connection to whichever worker
asks first; the master reaps and replaces dead workers, kills silent ones,
and answers signals, so a deploy or a resize never refuses a connection.
Ryan Tomayko's "I like Unicorn because it's Unix"
(https://tomayko.com/blog/2009/unicorn-is-unix) is the classic tour.

This lesson builds that server, readable in one sitting (`daemonlab serve
--server prefork`), and measures it against what Python users pick: a
thread pool (Puma's shape), one asyncio loop, gunicorn's sync and gthread
workers and uWSGI (pyuwsgi), on three WSGI apps (hello, cpu: ~2 ms of
Python, io: SELECT SLEEP(0.05) on MySQL). Each peer runs as installed
(`default`) and as its own docs tune it (`tuned`), and the one wait the lab
and gunicorn do differently, the graceful close, is a row of its own on
each side (`linger`, `abrupt`). Rounds alternate the servers; each ratio is
the median of the per-round ratios with their range, CPU time per request
beside req/s. Then it sends the master its signals under load and counts
the requests that failed (HUP, USR2 + QUIT, TTIN, TTOU, a worker killed
with -9).

What a learner would try first, and why it fails:
- Fork a process per request: a fork costs about a millisecond, more with
  a big parent (the spawn lesson). Prefork pays it once per worker.
- Let each worker bind the port: the second one gets EADDRINUSE. (With
  SO_REUSEPORT each gets a socket and a queue of its own, and connections
  queued on a worker's socket are reset when it exits.) One socket, bound
  by the master and inherited, is one queue nobody owns.
- Restart to deploy (stop, then start): connections are refused in
  between. HUP swaps the workers behind an open socket; USR2 even swaps
  the master, which hands the socket to its successor across exec.
- Stop the old workers, then start the new: the same gap, smaller. New
  ones first; the old go once the new are up, each after its request.
- Connect to the database in the master, before forking: every worker
  then shares one connection and they answer each other's queries (the
  fork lesson's fact 12). Connect in each worker, after the fork.
- Keep-alive in a sync worker: one idle client holds a worker. A sync
  worker closes after each request; keep-alive needs a reactor (threads,
  asyncio, gthread).
- Work in a signal handler: it runs in the middle of whatever the main
  thread was doing (gunicorn's reentrancy bugs #2816, #3004, #3198). The
  handlers only record; the loop acts, one handle_<signal> per signal.
- TERM means "stop now" to Unicorn and nginx, "stop gracefully" to
  gunicorn, systemd and Sidekiq: docs/prefork.md has the table.

Sources (read for their behaviour; none of their code is copied): Unicorn's
SIGNALS and http_server.rb (https://github.com/defunkt/unicorn/blob/master/SIGNALS,
https://github.com/defunkt/unicorn/blob/master/lib/unicorn/http_server.rb, a
mirror of https://yhbt.net/unicorn.git); gunicorn's arbiter and worker base
(https://github.com/benoitc/gunicorn/blob/master/gunicorn/arbiter.py,
https://github.com/benoitc/gunicorn/blob/master/gunicorn/workers/base.py);
nginx's control signals (https://nginx.org/en/docs/control.html).

Reading map: slide.py, the slide (a master, one socket, two workers; what goes
wrong with it), then the real server, in the order it runs:
  config.py     ServeConfig: what `daemonlab serve` is asked, and its command line
  serve.py      refuse what can be refused, bind, then run the chosen server
  listener.py   the one listening socket: bound, inherited by fork and by USR2's exec
  master.py     the master: fork, supervise, one handle_<signal> per signal
  worker.py     a worker: accept, answer one request, repeat; how it learns to stop
  scoreboard.py the memory master and workers share: heartbeats, counts, states
  wsgi.py       HTTP/1.1 and WSGI, shared by the lab's three servers
  apps.py       hello, cpu and io, and the count every server's app keeps
  threads.py    the thread-pool rival; eventloop.py: the asyncio rival
  peers.py      a peer server run on the lab's socket; gunicorn.py, uwsgi.py: the peers,
                as installed and as tuned; gunicorn_abrupt.py: its close drain removed
  live.py       `--live`: the master and its workers on screen
  cli.py        `daemonlab serve`'s options
then the measurement:
  plan.py       the run: rounds in which the servers take turns, then the signals; the
                ratios, targets and overlaps read from its records
  placement.py  server and load on cores of their own
  load.py       wrk, or child.py's asyncio clients
  launch.py     starting a server as a user does, watching it in /proc
  compare.py    one server x app x load: req/s, CPU per request, p99, both counts
  events.py     the signals under load: failed requests, recovery time
  plot.py       the figure (`daemonlab plot prefork`)
"""

from __future__ import annotations

from dataclasses import dataclass

from lab.experiments.prefork import plan
from lab.experiments.prefork.config import APPS, SERVERS
from lab.params import Params as _Params
from lab.params import option
from lab.report import Column
from lab.runs import Run, collect

__all__ = ["COLUMNS", "FULL", "NAME", "SUMMARY", "TOUR", "Params", "run"]

NAME = "prefork"
SUMMARY = "a Unicorn-style preforking server vs threads, asyncio, gunicorn, uWSGI; zero downtime"

PARTS = ("all", "compare", "events")
EVENTS = ("HUP", "USR2", "TTIN", "TTOU", "kill-worker")  # events.EVENTS, without its imports
LOADS = ("auto", "wrk", "asyncio")  # load.TOOLS
ALL_SETUPS = ("default", "tuned", "linger", "abrupt")  # config.SETUPS, every server's


@dataclass(frozen=True)
class Params(_Params):
    part: str = option(
        "all", "the server comparison, the zero-downtime events, or both", choices=PARTS
    )
    server: tuple[str, ...] = option(
        ("prefork", "gunicorn-sync", "uwsgi"), "servers to compare", choices=SERVERS
    )
    setup: tuple[str, ...] = option(
        ("default", "tuned"),
        "setups each server runs if it has them: default (as installed), tuned (as its "
        "docs tune it), linger (prefork: a graceful close), abrupt (gunicorn: none)",
        choices=ALL_SETUPS,
    )
    app: tuple[str, ...] = option(
        ("hello",), "WSGI apps: hello, cpu (~2 ms of Python), io (SLEEP 0.05)", choices=APPS
    )
    workers: tuple[int, ...] = option(
        (2,), "workers, the same for every server (threads: pool size)", minimum=1
    )
    clients: tuple[int, ...] = option(
        (16,), "connections the load keeps busy (records: concurrency)", minimum=1
    )
    keepalive: tuple[bool, ...] = option(
        (False,), "keep-alive on, or a connection per request (off)"
    )
    duration: int = option(
        1, "seconds of load per measurement (wrk counts whole seconds)", minimum=1
    )
    threads: int = option(4, "threads per gunicorn-gthread worker", minimum=1)
    event: tuple[str, ...] = option(EVENTS, "signals sent to the master under load", choices=EVENTS)
    load: str = option(
        "auto", "load generator: wrk if installed, else the asyncio clients", choices=LOADS
    )
    no_db: bool = option(False, "the io app sleeps in Python instead of SELECT SLEEP on MySQL")
    pin: bool = option(True, "server and load on cores of their own (two cores: one each)")
    repeat: int = option(
        3, "rounds of the comparison (servers take turns in each; ratios need 3)", minimum=1
    )


FULL = {
    "server": SERVERS,
    "setup": ALL_SETUPS,
    "app": APPS,
    "workers": (1, 2, 4),
    "keepalive": (True, False),
    "repeat": 3,
    "duration": 5,
}

COLUMNS = {
    "compare": [
        Column("server", "server"),
        Column("setup", "setup"),
        Column("app", "app"),
        Column("workers", "w", "d"),
        Column("concurrency", "conns", "d", wide=True),
        Column("keepalive", "k-a", wide=True),
        Column("rps", "req/s", ",.0f"),
        Column("cpu_us", "cpu µs", ".0f"),
        Column("p99_ms", "p99 ms", ".2f"),
        Column("round", "round", "d", wide=True),
        Column("seen_workers", "seen w", "d", wide=True),
        Column("seen_parser", "parser", wide=True),
        Column("p50_ms", "p50 ms", ".2f", wide=True),
        Column("errors", "errors", ",d"),
        Column("served", "served", ",d", wide=True),
        Column("requests", "read", ",d", wide=True),
        Column("threads", "threads", "d", wide=True),
        Column("start_s", "start s", ".2f", wide=True),
        Column("load", "load", wide=True),
        Column("placement", "placement", wide=True),
        Column("skipped", "skipped", wide=True),
    ],
    "events": [
        Column("event", "event"),
        Column("failed", "failed", ",d"),
        Column("recovery_ms", "recovery ms", ".1f"),
        Column("requests", "requests", ",d"),
        Column("p99_ms", "p99 ms", ".2f"),
        Column("workers", "w", "d"),
        Column("detail", "detail", wide=True),
    ],
    "ratios": [
        Column("peer", "prefork vs"),
        Column("where", "where", wide=True),
        Column("ratio", "req/s x", ".2f"),
        Column("range", "range"),
        Column("verdict", "verdict"),
        Column("cpu_ratio", "its cpu x", ".2f"),
        Column("rounds", "rounds", "d", wide=True),
        Column("load", "load 1 min", wide=True),
    ],
    "targets": [
        Column("target", "target"),
        Column("measured", "measured"),
        Column("met", "met"),
    ],
}

TOUR = [
    (
        "**The daily daemon.** Unicorn's design: a master binds one socket, forks "
        "workers that all `accept()` on it, and only supervises. `daemonlab serve` is "
        "that server in a few hundred lines of Python; here it serves a tiny app under "
        "wrk beside gunicorn's sync workers, the same number of processes each, three "
        "rounds taking turns. `served` is the app's own count: it agrees with what the load "
        "generator read; `cpu µs` is what the server's processes spent per request.",
        {
            "part": "compare",
            "duration": 1,
            "server": ["prefork", "gunicorn-sync"],
            "setup": ["default"],
        },
    ),
    (
        "**Zero downtime.** Under load, the master is sent HUP (fresh workers, app "
        "reloaded), USR2 (a new master inherits the socket; then QUIT the old one), "
        "TTIN and TTOU (one worker more, one fewer), and one worker is killed with -9. "
        "The socket never closes, so only the killed worker's request in hand can fail. "
        "Try it yourself: `daemonlab serve --live --pid p.pid` and, in another terminal, "
        "`kill -TTIN $(cat p.pid)`.",
        {"part": "events"},
    ),
]


def run(params: Params = Params(), progress=None, sink=None) -> Run:
    return collect(NAME, params, plan.measure, progress=progress, sink=sink)
