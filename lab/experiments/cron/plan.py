"""The run's plan: a tick's start-up first, then each strategy at each rate, then the crossings.

run() in __init__.py hands measure() the params. Every key the run writes in
Redis carries one namespace (ticks.namespace()) and is removed at the end,
and a daemon started for a strategy is stopped when its strategy ends:
on error and Ctrl-C too.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from lab.runs import Session

if TYPE_CHECKING:
    from lab.experiments.cron import Params

__all__ = ["measure"]


def measure(params: Params, session: Session) -> Iterator[dict[str, Any]]:
    import redis

    from lab import redis_gone, services, work
    from lab.experiments.cron import crossing, startup, ticks

    services.require("redis")
    session.env["redis_url"] = services.url("redis")
    session.env["cron_env"] = sorted(ticks.cron_env())
    ns = ticks.namespace()
    conn = redis.Redis.from_url(
        services.url("redis"), socket_connect_timeout=2.0, socket_timeout=10.0
    )
    daemons = [s for s in params.strategy if s != "cron"]
    total = 1 + len(daemons) + len(params.strategy) * len(params.rate)
    phases = iter(range(total))
    done: list[dict[str, Any]] = []
    try:
        with redis_gone.one_line():
            session.step(next(phases), total, "imports")
            yield from startup.imports(ns, params.job)
            for strategy in params.strategy:
                for record in _strategy(
                    conn,
                    ns,
                    strategy,
                    params,
                    lambda label: session.step(next(phases), total, label),
                ):
                    done.append(record)
                    yield record
            yield from crossing.crossings(done, daemons)
            session.step(total, total, "done")
    finally:
        work.forget(conn, ns)
        conn.close()


def _strategy(conn, ns: str, strategy: str, params: Params, step) -> Iterator[dict[str, Any]]:
    """One strategy's records: for a daemon, its idle cost first; then each rate's ticks.
    A daemon started here is stopped here, whatever happens (Ctrl-C included)."""
    from lab.experiments.cron import ticks

    daemon = None
    try:
        if strategy != "cron":
            step(f"{strategy} idle")
            how = strategy.removeprefix("daemon-")
            daemon = ticks.Daemon(how, f"{ns}-{strategy}", params.job, params.wake)
            daemon.start()
            yield {"part": "idle", "strategy": strategy, **ticks.idle(daemon, params.idle)}
        for rate in params.rate:
            step(f"{strategy} at {rate:g}/s")
            if daemon is None:
                where = f"{ns}-cron-{rate:g}"
                figures = ticks.cron_ticks(conn, where, params.job, rate, params.duration)
            else:
                figures = ticks.daemon_ticks(conn, daemon, rate, params.duration)
            yield {
                "part": "ticks",
                "strategy": strategy,
                "job": params.job,
                "rate": rate,
                **figures,
            }
    finally:
        if daemon is not None:
            daemon.stop(conn)
