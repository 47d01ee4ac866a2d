"""How far each way of waiting goes: the clients doubled until the strategy breaks.

`daemonlab run sleep --scale` takes each strategy from 64 clients, doubling,
to --top (10,000), all strategies in turn at each step (alternating, so the C
floor and the Python strategies see the same server at the same time). A
strategy stops at the first step where it breaks, and the break is a record
with its cause, not a crash:

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

__all__ = ["BREAKS", "EFFICIENCY_FLOOR", "FROM", "ladder", "sweep", "together"]

#: Where the sweep starts: below this every strategy overlaps perfectly.
FROM = 64

#: Below this efficiency, half of the waiting no longer overlaps: the strategy broke.
EFFICIENCY_FLOOR = 0.5

#: Every cause a break record may carry, with what it means.
BREAKS = LIMITS | {
    "rss": "the client memory budget (--max-rss) was reached",
    "efficiency": f"efficiency fell below {EFFICIENCY_FLOOR}",
}


#: A rung the docs quote (the talk's "a thousand clients") replaces the doubling's 1,024.
ROUND = {1024: 1000}


def ladder(top: int) -> list[int]:
    """64, 128, 256, ... doubling while below `top` (1,000 in place of 1,024), then `top`."""
    steps, clients = [], FROM
    while clients < top:
        steps.append(ROUND.get(clients, clients))
        clients *= 2
    return [*steps, top] if top not in steps else steps


def broke(kind: str, detail: str) -> dict[str, Any]:
    """What a record says about a break: the cause's key and, in words, what happened."""
    return {"broke": kind, "detail": f"{BREAKS[kind]}: {detail}"}


def sweep(
    top: int, max_rss: float, measure: Callable[[int], dict[str, Any]]
) -> Iterator[dict[str, Any]]:
    """Records for one strategy up the ladder, the last one saying where and why it broke.

    `measure(clients)` returns a measurement's record or raises Broke."""
    for _, record in together(top, max_rss, {"": measure}):
        yield record


def together(
    top: int, max_rss: float, measures: dict[str, Callable[[int], dict[str, Any]]]
) -> Iterator[tuple[str, dict[str, Any]]]:
    """(name, record) for every strategy, rung by rung: each rung measures every
    strategy still standing, in turn, so they alternate on the same server and a
    neighbour's burst lands on all of them rather than on one strategy's whole
    ladder. A strategy drops out after the record that says where it broke."""
    previous: dict[str, dict[str, Any] | None] = dict.fromkeys(measures)
    for clients in ladder(top):
        for name, measure in measures.items():
            if name not in previous:
                continue  # broke on an earlier rung
            record, standing = _rung(clients, max_rss, measure, previous[name])
            yield name, record
            if standing:
                previous[name] = record
            else:
                del previous[name]


def _rung(clients, max_rss, measure, previous) -> tuple[dict[str, Any], bool]:
    """One strategy's record at `clients`, and whether it is still standing."""
    ahead = _over_budget(previous, clients, max_rss)
    if ahead is not None:
        return {"clients": clients, **broke("rss", ahead)}, False
    try:
        record = measure(clients)
    except Broke as exc:
        return {"clients": clients, **broke(exc.kind, exc.detail)}, False
    why = _after(record, max_rss)
    if why is not None:
        return record | broke(*why), False
    return record, True


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
