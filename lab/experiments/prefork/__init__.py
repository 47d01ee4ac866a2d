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
  placement.py  server and load on cores of their own
  load.py       wrk, or child.py's asyncio clients
  launch.py     starting a server as a user does, watching it in /proc
  compare.py    one server x app x load: req/s, CPU per request, p99, both counts
  events.py     the signals under load: failed requests, recovery time
  plot.py       the figure (`daemonlab plot prefork`)
"""

from __future__ import annotations

import contextlib
import itertools
import statistics
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lab.errors import LabError
from lab.experiments.prefork.config import APPS, MAX_WORKERS, SERVERS, SETUPS, ServeConfig
from lab.params import Params as _Params
from lab.params import option
from lab.report import Column
from lab.runs import Run, Session, collect

__all__ = ["COLUMNS", "FULL", "NAME", "SUMMARY", "TOUR", "Params", "run", "targets"]

NAME = "prefork"
SUMMARY = "a Unicorn-style preforking server vs threads, asyncio, gunicorn, uWSGI; zero downtime"

PARTS = ("all", "compare", "events")
EVENTS = ("HUP", "USR2", "TTIN", "TTOU", "kill-worker")  # events.EVENTS, without its imports
LOADS = ("auto", "wrk", "asyncio")  # load.TOOLS
ALL_SETUPS = ("default", "tuned", "linger", "abrupt")  # config.SETUPS, every server's

#: The lesson's targets: at least gunicorn sync's throughput, no failed request across a
#: HUP or a USR2 + QUIT, a killed worker replaced within 100 ms.
RATIO_TARGET = 1.0
#: "p99 no worse" allows the noise of a tail over a few 2 s rounds: identical runs here
#: differ by several percent in p99 (one suite run read 3.69 against 3.68 ms: a tie).
P99_NOISE = 1.05
RECOVERY_TARGET_MS = 100.0


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
    return collect(NAME, params, _measure, progress=progress, sink=sink)


def _measure(params: Params, session: Session) -> Iterator[dict[str, Any]]:
    import os

    from lab.experiments.prefork import compare, events, load, placement

    if max(params.workers) > MAX_WORKERS:
        raise LabError(f"--workers: at most {MAX_WORKERS}, got {max(params.workers)}")
    tool = load.choose(params.load)
    where = placement.plan(params.pin)
    session.env.update(load=tool, placement=where.describe(), **_versions())
    session.env["loadavg_before"] = os.getloadavg()
    if params.load == "auto" and tool == "asyncio":
        session.warn(
            "wrk is not installed (apt-get install wrk): the asyncio clients made the load, "
            "and a Python client may be slower than the fastest servers"
        )
    cores = len(where.server) or os.cpu_count() or 1
    plan = _plan(params, cores) if params.part in ("all", "compare") else []
    shocks = params.event if params.part in ("all", "events") else ()
    total, done = len(plan) + len(shocks), 0
    records: list[dict[str, Any]] = []
    with (
        tempfile.TemporaryDirectory(prefix="lab-prefork-") as tmp,
        _database(params, session) as db,
    ):
        for rnd, config, clients, keepalive in plan:
            session.step(done, total, f"{config.server} {config.setup} {config.app} x{clients}")
            missing = _missing(config)
            if config.app == "io" and db is None and not params.no_db:
                missing = session.env["missing"]
            if missing:
                record = _skipped(config, clients, keepalive, missing)
            else:
                record = compare.measure(
                    config, clients=clients, keepalive=keepalive, seconds=params.duration,
                    tool=tool, where=where, tmp=Path(tmp), env=db,
                )  # fmt: skip
            record["round"] = rnd
            records.append(record)
            yield record
            done += 1
        with _adopting_orphans():
            for event in shocks:
                session.step(done, total, f"event {event}")
                config = ServeConfig(server="prefork", workers=params.workers[0], app="hello")
                record = events.measure(
                    event, config, clients=params.clients[0], tool=tool, where=where, tmp=Path(tmp)
                )
                records.append(record)
                yield record
                done += 1
    session.env["loadavg_after"] = os.getloadavg()
    load_seen = f"{session.env['loadavg_before'][0]:.2f} -> {session.env['loadavg_after'][0]:.2f}"
    yield from ratios(records, load_seen)
    yield from targets(records)
    for overlap in _overlaps(records):
        session.warn(overlap)
    session.step(done, total, "done")


def tuned_workers(cores: int) -> int:
    """gunicorn's docs' "(2 x $num_cores) + 1", which uWSGI's users follow too."""
    return 2 * cores + 1


def _plan(params: Params, cores: int) -> list[tuple[int, ServeConfig, int, bool]]:
    """Every comparison, round by round; within a round the servers take turns, so
    a neighbour's load on the shared machine falls on all of them alike. A `tuned`
    peer runs (2 x cores) + 1 workers, once a round, whatever --workers says."""
    plan = []
    every = itertools.product(
        range(1, params.repeat + 1), params.app, params.workers, params.clients,
        params.keepalive, params.server,
    )  # fmt: skip
    for rnd, app, workers, clients, keepalive, server in every:
        for setup in (s for s in SETUPS[server] if s in params.setup):
            if setup == "tuned" and workers != params.workers[0]:
                continue  # one tuned row a round: its worker count is its own
            config = ServeConfig(
                server=server, setup=setup, app=app, no_db=params.no_db, threads=params.threads,
                workers=tuned_workers(cores) if setup == "tuned" else workers,
            )  # fmt: skip
            plan.append((rnd, config, clients, keepalive))
    return plan


def _missing(config: ServeConfig) -> str:
    """Why this server cannot run here ("" when it can): a peer's package not installed."""
    import importlib.util

    needs = {"uwsgi": "pyuwsgi"}.get(config.server) or (
        "gunicorn" if config.server.startswith("gunicorn") else None
    )
    if needs and importlib.util.find_spec(needs) is None:
        return f"{needs} is not installed: pip install {needs}"
    if config.server.startswith("gunicorn") and config.setup == "tuned":
        if importlib.util.find_spec("gunicorn_h1c") is None:
            return "gunicorn's C parser is not installed: pip install gunicorn_h1c"
    return ""


def ratios(records: list[dict[str, Any]], load_seen: str = "") -> list[dict[str, Any]]:
    """The lab's prefork (default) against every other row, round by round.

    Each round's ratio is prefork's req/s over the other's in that same round
    (they ran minutes apart at most, under the same neighbours); the figure is
    the median of those, with their range. A range that crosses 1.0 is a tie:
    the rounds do not agree on which is faster. `cpu_ratio` is the other's CPU
    time per request over prefork's (medians): > 1, it spends more per request.
    """
    found: list[dict[str, Any]] = []
    measured = [r for r in records if r.get("part") == "compare" and "rps" in r]
    keys = sorted({(r["app"], r["concurrency"], r["keepalive"]) for r in measured})
    for app, conns, keepalive in keys:
        here = [r for r in measured if (r["app"], r["concurrency"], r["keepalive"]) ==
                (app, conns, keepalive)]  # fmt: skip
        for workers in sorted({r["workers"] for r in here if _is_lab(r)}):
            ours = {r.get("round", 1): r for r in here if _is_lab(r) and r["workers"] == workers}
            others: dict[tuple[str, str, int], dict[int, dict[str, Any]]] = {}
            for r in here:
                if _is_lab(r) or (r["workers"] != workers and r.get("setup") != "tuned"):
                    continue
                label = (r["server"], r.get("setup", "default"), r["workers"])
                others.setdefault(label, {})[r.get("round", 1)] = r
            for (server, setup, peer_workers), theirs in others.items():
                rounds = sorted(set(ours) & set(theirs))
                if not rounds:
                    continue
                each = [ours[n]["rps"] / theirs[n]["rps"] for n in rounds]
                ratio, low, high = statistics.median(each), min(each), max(each)
                tie = len(each) > 1 and low <= 1.0 <= high
                verdict = "tie" if tie else ("prefork faster" if ratio > 1 else "prefork slower")
                cpu = [(theirs[n]["cpu_us"], ours[n]["cpu_us"]) for n in rounds
                       if theirs[n].get("cpu_us") and ours[n].get("cpu_us")]  # fmt: skip
                cpu_ratio = statistics.median(a / b for a, b in cpu) if cpu else None
                found.append({
                    "part": "ratios",
                    "peer": f"{server} {setup} w{peer_workers}",
                    "where": f"{app}, w{workers}, {conns} conns, k-a {_on(keepalive)}",
                    "ratio": ratio, "low": low, "high": high, "range": f"{low:.2f}-{high:.2f}",
                    "verdict": verdict, "cpu_ratio": cpu_ratio, "rounds": len(each),
                    "load": load_seen,
                })  # fmt: skip
    return found


def _on(flag: bool) -> str:
    return "on" if flag else "off"


def _is_lab(record: dict[str, Any]) -> bool:
    return record["server"] == "prefork" and record.get("setup", "default") == "default"


def targets(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The targets (RATIO_TARGET, P99_NOISE, RECOVERY_TARGET_MS), met or not, from these
    records: what the closing note and the benchmark quote.

    The ratio is the median of per-round ratios, per (workers, connections,
    keep-alive) where both prefork and gunicorn-sync ran the hello app as
    installed (setup default), with its range; a range across 1.0 is a tie.
    """
    found: list[dict[str, Any]] = []
    for row in ratios(records):
        if not row["peer"].startswith("gunicorn-sync default") or not row["where"].startswith(
            "hello,"
        ):
            continue
        ratio, where = row["ratio"], row["where"]
        shown = f"{ratio:.2f}x [{row['range']}]" + (", a tie" if row["verdict"] == "tie" else "")
        found.append(_target(f"prefork req/s >= {RATIO_TARGET:g}x gunicorn-sync ({where})",
                             ratio, shown, ratio >= RATIO_TARGET))  # fmt: skip
    hello = [r for r in records if r.get("part") == "compare" and r.get("app") == "hello"]
    keys = sorted({(r["workers"], r["concurrency"], r["keepalive"]) for r in hello if "rps" in r})
    for workers, conns, keepalive in keys:
        same = [
            r
            for r in hello
            if (r["workers"], r["concurrency"], r["keepalive"]) == (workers, conns, keepalive)
        ]
        ours = [r for r in same if _is_lab(r) and "rps" in r]
        peer = [r for r in same if r["server"] == "gunicorn-sync" and r.get("setup", "default")
                == "default" and "rps" in r]  # fmt: skip
        if not ours or not peer:
            continue
        where = (
            f"hello, {workers} workers, {conns} conns, keep-alive {'on' if keepalive else 'off'}"
        )
        p99, peer_p99 = _median(ours, "p99_ms"), _median(peer, "p99_ms")
        found.append(_target(f"prefork p99 <= gunicorn-sync p99 ({where})", p99,
                             f"{p99:.2f} vs {peer_p99:.2f} ms",
                             p99 <= peer_p99 * P99_NOISE))  # fmt: skip
    shocks = {r["event"]: r for r in records if r.get("part") == "events"}
    if "HUP" in shocks and "USR2" in shocks:
        failed = shocks["HUP"]["failed"] + shocks["USR2"]["failed"]
        found.append(_target("0 failed requests across HUP and USR2 + QUIT under load",
                             failed, f"{failed} failed", failed == 0))  # fmt: skip
    if "kill-worker" in shocks:
        ms = shocks["kill-worker"]["recovery_ms"]
        shown = "not replaced" if ms is None else f"{ms:.1f} ms"
        met = ms is not None and ms <= RECOVERY_TARGET_MS
        found.append(_target(f"a killed worker replaced within {RECOVERY_TARGET_MS:g} ms",
                             ms, shown, met))  # fmt: skip
    return found


def _overlaps(records: list[dict[str, Any]]) -> list[str]:
    """Where rounds of two servers overlap: the spread is larger than the difference."""
    rounds: dict[tuple, dict[str, list[float]]] = {}
    for r in records:
        if r.get("part") == "compare" and "rps" in r:
            where = (r["app"], r["workers"], r["concurrency"], r["keepalive"])
            label = f"{r['server']} {r.get('setup', 'default')}"
            rounds.setdefault(where, {}).setdefault(label, []).append(r["rps"])
    said = []
    for (app, workers, conns, keepalive), by_server in rounds.items():
        ranked = sorted(by_server.items(), key=lambda item: statistics.median(item[1]))
        for (slow, slower), (fast, faster) in zip(ranked, ranked[1:], strict=False):
            if len(slower) > 1 and len(faster) > 1 and max(slower) >= min(faster):
                said.append(
                    f"{app}, {workers} workers, {conns} conns, keep-alive "
                    f"{'on' if keepalive else 'off'}: the rounds of {slow} and {fast} overlap "
                    "(the difference is within the spread)"
                )
    return said


def _target(target: str, value: Any, measured: str, met: bool) -> dict[str, Any]:
    return {"part": "targets", "target": target, "value": value, "measured": measured, "met": met}


def _median(records: list[dict[str, Any]], key: str) -> float:
    return statistics.median(r[key] for r in records)


def _skipped(config: ServeConfig, clients: int, keepalive: bool, why: str) -> dict[str, Any]:
    return {
        "part": "compare",
        "server": config.server,
        "setup": config.setup,
        "workers": config.workers,
        "app": config.app,
        "concurrency": clients,
        "keepalive": keepalive,
        "skipped": why,
    }


@contextlib.contextmanager
def _database(params: Params, session: Session) -> Iterator[dict[str, str] | None]:
    """For the io app: the server lab.db resolves, for every server we start (their
    LAB_MYSQL_URL), with room for all their connections; None when none is needed or
    none answers (session.env["missing"] says why; the io records say skipped)."""
    if "io" not in params.app or params.no_db or params.part == "events":
        yield None
        return
    from lab import db
    from lab.experiments.prefork.apps import server_url

    # One connection per worker, per thread for the pools: the most any server opens.
    most = max(params.workers) * max(params.threads, 1)
    with contextlib.ExitStack() as stack:
        try:
            server = stack.enter_context(db.server())
            stack.enter_context(db.capacity(server, most))
            session.env["mysql"] = db.describe(server)["version"]
        except LabError as exc:  # no server, or no room on it: the io records say skipped
            session.env["missing"] = str(exc)
            yield None
            return
        yield {"LAB_MYSQL_URL": server_url(server)}


@contextlib.contextmanager
def _adopting_orphans() -> Iterator[None]:
    """USR2's new master is the old one's child; when the old one leaves, we adopt it
    (a subreaper), so it is ours to stop and reap, not PID 1's."""
    from lab import procfs

    with procfs.subreaper():
        yield


def _versions() -> dict[str, Any]:
    import shutil
    import subprocess
    from importlib.metadata import PackageNotFoundError, version

    found: dict[str, Any] = {}
    for package in ("gunicorn", "gunicorn_h1c", "pyuwsgi"):
        try:
            found[package] = version(package)
        except PackageNotFoundError:
            found[package] = None
    if shutil.which("wrk"):
        out = subprocess.run(["wrk", "-v"], capture_output=True, text=True, timeout=10)
        found["wrk"] = (out.stdout + out.stderr).split(" [")[0].removeprefix("wrk ").strip()
    return found
