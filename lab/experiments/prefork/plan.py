"""The sweep behind `daemonlab run prefork`, and what its records add up to.

    measure       the run: the comparison's turns, then the signals under load,
                  then the ratios and targets read from the records just made
    turns         every comparison, round by round, the servers taking turns
    ratios        prefork's req/s over each other row's, the median of per-round ratios
    targets       the lesson's targets, met or not: what the closing note and the
                  benchmark quote
    overlaps      where two servers' rounds overlap: a difference within the spread

One turn is a Turn (its round, the ServeConfig, the connections, keep-alive); a
server that cannot run here (a peer not installed, no MySQL for io) still gets
its record, saying why it was skipped.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import statistics
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

from lab.errors import LabError
from lab.experiments.prefork.config import MAX_WORKERS, SETUPS, ServeConfig
from lab.runs import Session

if TYPE_CHECKING:
    from lab.experiments.prefork import Params

__all__ = [
    "P99_NOISE",
    "RATIO_TARGET",
    "RECOVERY_TARGET_MS",
    "Turn",
    "measure",
    "overlaps",
    "ratios",
    "targets",
    "tuned_workers",
    "turns",
]

#: The lesson's targets: at least gunicorn sync's throughput, no failed request across a
#: HUP or a USR2 + QUIT, a killed worker replaced within 100 ms.
RATIO_TARGET = 1.0
#: "p99 no worse" allows the noise of a tail over a few 2 s rounds: identical runs here
#: differ by several percent in p99 (one suite run read 3.69 against 3.68 ms: a tie).
P99_NOISE = 1.05
RECOVERY_TARGET_MS = 100.0


class Turn(NamedTuple):
    """One server's turn in one round of the comparison."""

    round: int
    config: ServeConfig
    clients: int
    keepalive: bool


def measure(params: Params, session: Session) -> Iterator[dict[str, Any]]:
    """The run: each turn of the comparison, then each signal under load (their
    records as they come), then the ratios and targets those records add up to."""
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
    comparison = turns(params, cores) if params.part in ("all", "compare") else []
    shocks = params.event if params.part in ("all", "events") else ()
    total, done = len(comparison) + len(shocks), 0
    records: list[dict[str, Any]] = []
    with (
        tempfile.TemporaryDirectory(prefix="lab-prefork-") as tmp,
        _database(params, session) as db,
    ):
        for turn in comparison:
            config = turn.config
            session.step(
                done, total, f"{config.server} {config.setup} {config.app} x{turn.clients}"
            )
            missing = _missing(config)
            if config.app == "io" and db is None and not params.no_db:
                missing = session.env["missing"]
            if missing:
                record = _skipped(turn, missing)
            else:
                record = compare.measure(
                    config, clients=turn.clients, keepalive=turn.keepalive,
                    seconds=params.duration, tool=tool, where=where, tmp=Path(tmp), env=db,
                )  # fmt: skip
            record["round"] = turn.round
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
    for overlap in overlaps(records):
        session.warn(overlap)
    session.step(done, total, "done")


def tuned_workers(cores: int) -> int:
    """gunicorn's docs' "(2 x $num_cores) + 1", which uWSGI's users follow too."""
    return 2 * cores + 1


def turns(params: Params, cores: int) -> list[Turn]:
    """Every comparison, round by round; within a round the servers take turns, so
    a neighbour's load on the shared machine falls on all of them alike. A `tuned`
    peer runs (2 x cores) + 1 workers, once a round, whatever --workers says."""
    found = []
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
            found.append(Turn(rnd, config, clients, keepalive))
    return found


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
        where = f"hello, {workers} workers, {conns} conns, keep-alive {_on(keepalive)}"
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


def overlaps(records: list[dict[str, Any]]) -> list[str]:
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
                    f"{app}, {workers} workers, {conns} conns, keep-alive {_on(keepalive)}: "
                    f"the rounds of {slow} and {fast} overlap "
                    "(the difference is within the spread)"
                )
    return said


def _target(target: str, value: Any, measured: str, met: bool) -> dict[str, Any]:
    return {"part": "targets", "target": target, "value": value, "measured": measured, "met": met}


def _median(records: list[dict[str, Any]], key: str) -> float:
    return statistics.median(r[key] for r in records)


def _skipped(turn: Turn, why: str) -> dict[str, Any]:
    return {
        "part": "compare",
        "server": turn.config.server,
        "setup": turn.config.setup,
        "workers": turn.config.workers,
        "app": turn.config.app,
        "concurrency": turn.clients,
        "keepalive": turn.keepalive,
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
