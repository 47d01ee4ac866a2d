"""How far each way of waiting goes: the clients doubled until the strategy breaks.

`daemonlab run sleep --scale` takes each strategy from 64 clients, doubling,
to --top (10,000). A strategy stops at the first step where it breaks, and
the break is a record with its cause, not a crash:

    fds         a client could not open its socket (RLIMIT_NOFILE: `ulimit -n`)
    threads     a thread could not be created (RLIMIT_NPROC, kernel.threads-max, memory)
    processes   fork() refused (RLIMIT_NPROC: `ulimit -u`, kernel.pid_max)
    memory      out of memory
    refused     the server refused a connection (max_connections, its own threads)
    time        connecting took longer than --time-limit
    rss         the clients used more than --max-rss MiB, or would at the next step
                (what one client cost at this step, times the next step's clients)
    efficiency  seconds / wall fell below 0.5: half the waiting no longer overlaps

The memory check looks ahead on purpose: 10,000 forked Pythons would need
more memory than this machine has, and an out-of-memory kill takes the
lab (or a neighbour) with it; a budget that stops the sweep first is a
break a learner can read.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

from lab.experiments.sleep.job import LIMITS, Broke

__all__ = ["BREAKS", "EFFICIENCY_FLOOR", "FROM", "ladder", "sweep"]

#: Where the sweep starts: below this every strategy overlaps perfectly.
FROM = 64

#: Below this efficiency, half of the waiting no longer overlaps: the strategy broke.
EFFICIENCY_FLOOR = 0.5

#: Every cause a break record may carry, with what it means.
BREAKS = LIMITS | {
    "rss": "the client memory budget (--max-rss) was reached",
    "efficiency": f"efficiency fell below {EFFICIENCY_FLOOR}",
}


def ladder(top: int) -> list[int]:
    """64, 128, 256, ... doubling while below `top`, then `top` itself."""
    steps, clients = [], FROM
    while clients < top:
        steps.append(clients)
        clients *= 2
    return [*steps, top]


def broke(kind: str, detail: str) -> dict[str, Any]:
    """What a record says about a break: the cause's key and, in words, what happened."""
    return {"broke": kind, "detail": f"{BREAKS[kind]}: {detail}"}


def sweep(
    top: int, max_rss: float, measure: Callable[[int], dict[str, Any]]
) -> Iterator[dict[str, Any]]:
    """Records for one strategy up the ladder, the last one saying where and why it broke.

    `measure(clients)` returns a measurement's record or raises Broke."""
    previous: dict[str, Any] | None = None
    for clients in ladder(top):
        ahead = _over_budget(previous, clients, max_rss)
        if ahead is not None:
            yield {"clients": clients, **broke("rss", ahead)}
            return
        try:
            record = measure(clients)
        except Broke as exc:
            yield {"clients": clients, **broke(exc.kind, exc.detail)}
            return
        why = _after(record, max_rss)
        if why is not None:
            yield record | broke(*why)
            return
        yield record
        previous = record


def _over_budget(previous: dict[str, Any] | None, clients: int, max_rss: float) -> str | None:
    """Would `clients` clients cost more than the budget, at the last step's cost each?"""
    if previous is None or previous.get("mib_per_client") is None:
        return None
    base = previous["client_mib"] - previous["mib_per_client"] * previous["clients"]
    expected = base + previous["mib_per_client"] * clients
    if expected <= max_rss:
        return None
    return (
        f"{clients:,} clients would use about {expected:,.0f} MiB"
        f" ({previous['mib_per_client']:.2f} MiB each at {previous['clients']:,}),"
        f" over --max-rss {max_rss:,.0f}"
    )


def _after(record: dict[str, Any], max_rss: float) -> tuple[str, str] | None:
    """A measurement that finished but broke a rule: too much memory, too little overlap."""
    used = record.get("client_mib")
    if used is not None and used > max_rss:
        return "rss", f"the clients used {used:,.0f} MiB, over --max-rss {max_rss:,.0f}"
    if record["efficiency"] < EFFICIENCY_FLOOR:
        return "efficiency", f"{record['efficiency']:.2f} at {record['clients']:,} clients"
    return None
