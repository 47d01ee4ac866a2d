"""One comparison: a server, an app, a load; requests per second and the tail, both counts.

    start      `daemonlab serve` on port 0, until it answers (set-up: its own figure)
    warm up    WARMUP_S of the same load, thrown away: CPython specialises a function
               only after it has run a few times, gunicorn boots its workers
    measure    the load for --duration seconds; the app's count before and after it
    stop       gracefully; everything reaped

The record carries both counts: `requests`, what the generator read in full,
and `served`, what the app answered; beside req/s, `cpu_us`: the CPU time
the server's processes spent in the measured window (/proc, launch.py), per
request served, which a busy neighbour on a shared machine changes far less
than req/s. And what the server really ran (launch.serving): its workers and,
for gunicorn, its HTTP parser, read from its processes. They agree, within one request per
connection for wrk (it drops the answers in flight at its deadline; the
asyncio clients wait for them and agree exactly).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from lab.experiments.prefork import launch
from lab.experiments.prefork.config import ServeConfig
from lab.experiments.prefork.load import Load
from lab.experiments.prefork.placement import Placement

__all__ = ["WARMUP_S", "measure"]

#: wrk counts whole seconds, so the warm-up is one.
WARMUP_S = 1


def measure(
    config: ServeConfig,
    *,
    clients: int,
    keepalive: bool,
    seconds: int,
    tool: str,
    where: Placement,
    tmp: Path,
    env: dict[str, str] | None = None,
) -> dict[str, Any]:
    began = time.perf_counter_ns()
    server = launch.start(config, tmp, where.server, env)
    start_s = (time.perf_counter_ns() - began) / 1e9
    try:
        Load(tool, server.url, clients, WARMUP_S, keepalive, where.load).result()
        seen = launch.serving(server.proc.pid)
        before = server.settled()
        pids = launch.tree(server.proc.pid)
        cpu_before = launch.cpu_seconds(pids)
        result = Load(tool, server.url, clients, seconds, keepalive, where.load).result()
        served = server.settled() - before
        cpu_s = launch.cpu_seconds(pids) - cpu_before
    finally:
        server.stop()
    return {
        "part": "compare",
        "server": config.server,
        "setup": config.setup,
        "workers": 1 if config.server == "asyncio" else config.workers,
        "threads": config.threads if config.server == "gunicorn-gthread" else 1,
        "app": config.app,
        "concurrency": clients,
        "keepalive": keepalive,
        "rps": result.rps,
        "p50_ms": result.p50_ms,
        "p99_ms": result.p99_ms,
        "errors": result.errors,
        "requests": result.requests,
        "served": served,
        "cpu_us": round(cpu_s * 1e6 / served, 1) if served else None,
        **seen,
        "seconds": seconds,
        "start_s": start_s,
        "load": result.tool,
        "placement": where.describe(),
    }
