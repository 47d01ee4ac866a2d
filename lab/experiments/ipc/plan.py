"""The run's plan: which links, in which order, each beside its C floor, and what is refused first.

run() in __init__.py refuses what cannot run (a size no chosen link carries, a
--cores this machine cannot place), then measure() talks over every link at
every size, one conversation (one peer) per link: measure.py times it, floor.py
times floor.c beside it. Whatever the run made (queues, keys, sockets,
segments, multiprocessing's helpers) is removed at the end, on error and Ctrl-C too.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import ExitStack
from typing import TYPE_CHECKING, Any

from lab.errors import LabError
from lab.experiments.ipc.wire import PeerGone
from lab.runs import Session

if TYPE_CHECKING:
    from lab.experiments.ipc import Params

__all__ = ["measure", "placement", "refuse_sizes_nothing_carries"]


def refuse_sizes_nothing_carries(params: Params) -> None:
    from lab.experiments.ipc.transports import links

    chosen = [link for t in params.transport for link in links(t)]
    for size in params.size:
        reasons = [link.too_big(size) for link in chosen]
        if all(reasons):
            raise LabError(f"--size {size} is over the limit of {chosen[0].name}: {reasons[0]}")


def placement(cores: str) -> tuple[int, int] | None:
    """(parent CPU, peer CPU) for --cores, from the CPUs this process may use."""
    if cores == "any":
        return None
    usable = sorted(os.sched_getaffinity(0))
    if cores == "same":
        return usable[0], usable[0]
    if len(usable) < 2:
        raise LabError(f"--cores apart needs two usable CPUs; this process may use {usable}")
    return usable[0], usable[1]


def measure(params: Params, session: Session) -> Iterator[dict[str, Any]]:
    from lab.experiments.ipc.links import Context
    from lab.experiments.ipc.transports import links

    chosen = [link for t in params.transport for link in links(t)]
    ctx = Context(largest=max(params.size), placement=placement(params.cores))
    if params.floor and ctx.placement is None and any(link.name in FLOOR_OF for link in chosen):
        session.warn(
            "--cores any: Python ran where the scheduler put it, the C floor on one CPU, so "
            "no `x C` is given (placements differ); --cores same or apart places both alike"
        )
    session.env["prefix"] = ctx.prefix  # every queue, key, socket and segment of this run
    floors: dict[tuple[str, int], dict[str, Any]] = {}
    total, done = len(chosen) * len(params.size), 0
    try:
        for link in chosen:
            session.step(done, total, link.name)
            yield from _measure_link(link, params, ctx, floors, session)
            done += len(params.size)
        session.step(total, total, "done")
    finally:
        ctx.remove()
        _stop_multiprocessing_helpers()


def _measure_link(link, params: Params, ctx, floors: dict, session: Session) -> Iterator[dict]:
    from lab import services
    from lab.experiments.ipc.links import conversation
    from lab.experiments.ipc.measure import round_trips, rtt_figures, stream, stream_figures

    base = {"transport": link.transport, "pattern": link.pattern}
    with ExitStack() as stack:
        try:
            if link.service is not None:
                services.require(link.service)
            talk = stack.enter_context(conversation(link, ctx))
        except PeerGone:  # killed as it started: the run fails, as it would mid-way
            raise
        except LabError as exc:
            session.env.setdefault("missing", []).append(f"{link.name}: {exc}")
            yield {**base, "size": None, "skipped": "unavailable", "why": str(exc)}
            return
        for size in params.size:
            reason = link.too_big(size)
            if reason:
                yield {**base, "size": size, "skipped": "too big", "why": reason}
                continue
            # The floor is the least the kernel needs: on one CPU, unless --cores places
            # the two processes (then the floor is placed alike). Left to the scheduler,
            # a C pair lands across CPUs at times and its round trip is ten times longer
            # (4.6 against 61.5 µs for TCP at 4 KiB in one run): that is no floor.
            where = ctx.placement or placement("same")
            floor = _floor(link, size, params, floors, where) if params.floor else None
            if floor is not None and floor.pop("_new", False):
                yield floor
            record: dict[str, Any] = {**base, "size": size}
            if "rtt" in link.measures:
                samples = round_trips(talk.endpoint, size, params.seconds, params.samples)
                record.update(rtt_figures(samples))
            if "stream" in link.measures:
                record.update(stream_figures(*stream(talk.endpoint, size, params.seconds)))
            record["setup_ms"] = round(talk.setup_ms, 3)
            record["peer_start_ms"] = round(talk.peer_start_ms, 1)
            if floor is not None and "rtt_median_us" in floor and "rtt_median_us" in record:
                record["floor_rtt_median_us"] = floor["rtt_median_us"]
                record["floor_mb_per_s"] = floor["mb_per_s"]
                # Under --cores any the floor ran pinned to one CPU and Python where the
                # scheduler put it: a ratio of two placements is no measure of Python.
                if ctx.placement is not None:
                    rtt, c_rtt = record["rtt_median_us"], floor["rtt_median_us"]
                    record["overhead_us"] = round(rtt - c_rtt, 3)
                    record["floor_ratio"] = round(rtt / c_rtt, 2)
            yield record


#: Python links timed against floor.c, and which of its transports is theirs
#: (floor.c's unix is a socketpair: the same kernel path as a socket on a path).
FLOOR_OF = {
    "pipe/pipe": "pipe",
    "socketpair/stream": "unix",
    "unix/stream": "unix",
    "tcp/stream": "tcp",
}


def _floor(link, size: int, params: Params, floors: dict, where) -> dict[str, Any] | None:
    """The C floor's record for `link` at `size`, measured once per run ("_new" the first time)."""
    from lab.experiments.ipc import floor

    transport = FLOOR_OF.get(link.name)
    if transport is None:
        return None
    key = (transport, size)
    if key not in floors:
        record = {"transport": transport, "pattern": "C floor", "size": size}
        try:
            record.update(floor.measure(transport, size, params.seconds, params.samples, where))
        except LabError as exc:
            record.update(skipped="no floor", why=str(exc))
        floors[key] = record
        return {**record, "_new": True}
    return dict(floors[key])


def _stop_multiprocessing_helpers() -> None:
    """Spawned peers and shared memory start multiprocessing's resource tracker: stop it."""
    import sys

    if "multiprocessing.resource_tracker" in sys.modules:
        from lab.start_methods import stop_multiprocessing_servers

        stop_multiprocessing_servers()
