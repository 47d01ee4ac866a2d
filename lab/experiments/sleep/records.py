"""One measurement and its record, and each record held against the C floor.

A measurement (Bench.measure) waits for the server to settle, gives back
what the last one freed, starts the watcher, runs the strategy with every
client connected before its queries are released, and turns the strategy's
timings and what the watcher saw into one flat record (record()): wall time
and efficiency, connecting, the send skew, latencies, the server's own
figures and what one client cost. The peer, mysqlslap, brings its own
figures instead (it has no per-client timings).

Ratios then gives each record its floor_ratio: its efficiency over the best C
floor's at the same clients in the same run, and one line per strategy among
the run's notes.
"""

from __future__ import annotations

import contextlib
import dataclasses
import statistics
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from lab import db, mysqld
from lab.experiments.sleep.job import Broke, Job, Strategy, Timings, measured_phase
from lab.experiments.sleep.watcher import Lost, Watcher

if TYPE_CHECKING:
    from lab.experiments.sleep import Params

__all__ = [
    "CLIENT_FIGURES", "FLOOR", "PEER", "SERVER_FIGURES",
    "Bench", "Ratios", "label", "record", "settle",
]  # fmt: skip

#: The two strategies whose records read differently: the C floor every other is
#: held against, and the peer that brings its own figures.
FLOOR, PEER = "c-floor", "mysqlslap"

#: What the watcher saw of the server; its figures stay whole: it keeps idle
#: threads for reuse (thread_cache_size) and memory in its caches, so its
#: "before" is no baseline to subtract.
SERVER_FIGURES = ("server_mib", "server_threads", "server_idle_threads")
CLIENT_FIGURES = (
    "client_mib", "client_rss_mib", "client_threads", "client_fds", "client_processes",
)  # fmt: skip


@dataclass(frozen=True)
class Bench:
    """Where a run measures: the server, the run's tag, the watcher, and how long a
    measurement waits first for the server to settle (see settle)."""

    server: db.Server
    tag: str
    watcher: Watcher
    settle_s: float

    def measure(self, params: Params, clients: int, strategy: str, variant: str, func, repeat):
        job = Job(self.server, clients, params.seconds, self.tag, time_limit=params.time_limit)
        time.sleep(self.settle_s)
        return _one(job, strategy, variant, func, repeat, self.watcher)


def settle(server: db.Server, facts: dict[str, Any]) -> float:
    """A pool-of-threads server adds workers while queries wait (a SLEEP tells the pool
    it waits, so the pool lets another thread run) and retires them only after
    thread_pool_idle_timeout (60 s). The lab's own pool server retires them after
    1 s (lab/mysqld.py): each measurement waits that out, so each starts from the pool."""
    if facts["thread_handling"] == mysqld.THREAD_HANDLINGS[1] and server.pid is not None:
        return mysqld.POOL_IDLE_TIMEOUT_S + 0.5
    return 0.0


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
    return record(job, strategy, variant, repeat, timings, seen)


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


def record(
    job: Job, strategy: str, variant: str, repeat: int, t: Timings, seen: dict[str, Any]
) -> dict[str, Any]:
    """One measurement's record, from the strategy's timings and what the watcher saw
    (the benchmarks make theirs with it too, so they report what the table shows)."""
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


class Ratios:
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
            name = label(record["strategy"], record["variant"], 0).removesuffix(" x0")
            self.ratios.setdefault(name, {}).setdefault(clients, []).append(record["floor_ratio"])
        return record

    def _best(self, kind: str, clients: int, efficiency: float) -> None:
        self.floors[kind, clients] = max(efficiency, self.floors.get((kind, clients), 0.0))

    def said(self) -> list[str]:
        """One line per strategy: its ratio to the floor at each client count (the
        median, and the range where repeated)."""
        return [
            f"{name} / C floor: " + ", ".join(f"{_spread(r)} at {n:,}" for n, r in by.items())
            for name, by in self.ratios.items()
        ]


def _spread(values: list[float]) -> str:
    median = f"{statistics.median(values):.3f}"
    return median if len(values) == 1 else f"{median} ({min(values):.3f}-{max(values):.3f})"


def label(strategy: str, variant: str, clients: int) -> str:
    """A measurement in a few words, as progress and the notes say it: "pool fork x8"."""
    return " ".join(filter(None, (strategy, variant, f"x{clients}")))
