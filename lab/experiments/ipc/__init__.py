"""ipc: processes talking. Pipes, sockets, shared memory, ZeroMQ, AMQP, Redis, remote objects
and XMPP, each timed against the kernel's own floor, measured in C.

(the lesson text is written in full below the code's first version)
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from typing import Any

from lab.errors import LabError
from lab.experiments.ipc.transports import TRANSPORTS
from lab.params import Params as _Params
from lab.params import option
from lab.report import Column
from lab.runs import Run, Session, collect

__all__ = ["COLUMNS", "FULL", "NAME", "SUMMARY", "TOUR", "Params", "run"]

NAME = "ipc"
SUMMARY = "processes talking: pipes to XMPP, round trip and throughput, against a C floor"

SIZES = (64, 4096, 65536, 1 << 20)
#: The lab's ceiling on a message: far above what any lesson here needs, and it keeps
#: a typo (--size 10000000000) from asking a broker for gigabytes.
MAX_SIZE = 64 << 20
#: Python links timed against floor.c, and which of its transports is theirs
#: (floor.c's unix is a socketpair: the same kernel path as a socket on a path).
FLOOR_OF = {
    "pipe/pipe": "pipe",
    "socketpair/stream": "unix",
    "unix/stream": "unix",
    "tcp/stream": "tcp",
}


@dataclass(frozen=True)
class Params(_Params):
    transport: tuple[str, ...] = option(
        TRANSPORTS, "ways to talk (all by default; a broker that does not answer is skipped)",
        choices=TRANSPORTS,
    )  # fmt: skip
    size: tuple[int, ...] = option(SIZES, "message sizes in bytes (16: the header)", minimum=16)
    seconds: float = option(0.05, "seconds of round trips per size, and as long a stream", above=0)
    samples: int = option(2000, "most round trips timed per size (after 20 warm-up)", minimum=1)
    floor: bool = option(True, "time the C floor (floor.c) for pipe, unix and tcp too")

    def __post_init__(self) -> None:
        super().__post_init__()
        for size in self.size:
            if size > MAX_SIZE:
                raise LabError(f"--size must be at most {MAX_SIZE} (64 MiB), got {size}")


FULL = {"seconds": 1.0, "samples": 100_000, "size": (64, 512, 4096, 16384, 65536, 262144, 1 << 20)}

COLUMNS = [
    Column("transport", "transport"),
    Column("pattern", "pattern"),
    Column("size", "size B", ",d"),
    Column("rtt_median_us", "rtt µs", ".1f"),
    Column("rtt_p99_us", "p99 µs", ".1f"),
    Column("mb_per_s", "MB/s", ",.0f"),
    Column("floor_ratio", "x C", ".1f"),
    Column("setup_ms", "setup ms", ".2f"),
    Column("floor_rtt_median_us", "C rtt µs", ".1f", wide=True),
    Column("overhead_us", "py +µs", ".1f", wide=True),
    Column("msgs_per_s", "msg/s", ",.0f", wide=True),
    Column("samples", "samples", ",d", wide=True),
    Column("peer_start_ms", "peer start ms", ".0f", wide=True),
    Column("skipped", "skipped", ""),
]

TOUR: list[tuple[str, dict[str, Any] | None]] = []


def run(params: Params = Params(), progress=None, sink=None) -> Run:
    _refuse_sizes_nothing_carries(params)
    return collect(NAME, params, _measure, progress=progress, sink=sink)


def _refuse_sizes_nothing_carries(params: Params) -> None:
    from lab.experiments.ipc.transports import links

    chosen = [link for t in params.transport for link in links(t)]
    for size in params.size:
        reasons = [link.too_big(size) for link in chosen]
        if all(reasons):
            raise LabError(f"--size {size} is over the limit of {chosen[0].name}: {reasons[0]}")


def _measure(params: Params, session: Session) -> Iterator[dict[str, Any]]:
    from lab.experiments.ipc.links import Context
    from lab.experiments.ipc.transports import links

    chosen = [link for t in params.transport for link in links(t)]
    ctx = Context(largest=max(params.size))
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
    from lab.experiments.ipc import measure
    from lab.experiments.ipc.links import conversation

    base = {"transport": link.transport, "pattern": link.pattern}
    with ExitStack() as stack:
        try:
            if link.service is not None:
                services.require(link.service)
            talk = stack.enter_context(conversation(link, ctx))
        except LabError as exc:
            session.env.setdefault("missing", []).append(f"{link.name}: {exc}")
            yield {**base, "size": None, "skipped": str(exc)}
            return
        for size in params.size:
            reason = link.too_big(size)
            if reason:
                yield {**base, "size": size, "skipped": reason}
                continue
            floor = _floor(link, size, params, floors) if params.floor else None
            if floor is not None and floor.pop("_new", False):
                yield floor
            record: dict[str, Any] = {**base, "size": size}
            if "rtt" in link.measures:
                samples = measure.round_trips(talk.endpoint, size, params.seconds, params.samples)
                record.update(measure.rtt_figures(samples))
            if "stream" in link.measures:
                record.update(
                    measure.stream_figures(*measure.stream(talk.endpoint, size, params.seconds))
                )
            record["setup_ms"] = round(talk.setup_ms, 3)
            record["peer_start_ms"] = round(talk.peer_start_ms, 1)
            if floor is not None and "rtt_median_us" in floor and "rtt_median_us" in record:
                record["floor_rtt_median_us"] = floor["rtt_median_us"]
                record["overhead_us"] = round(record["rtt_median_us"] - floor["rtt_median_us"], 3)
                record["floor_ratio"] = round(record["rtt_median_us"] / floor["rtt_median_us"], 2)
                record["floor_mb_per_s"] = floor["mb_per_s"]
            yield record


def _floor(link, size: int, params: Params, floors: dict) -> dict[str, Any] | None:
    """The C floor's record for `link` at `size`, measured once per run ("_new" the first time)."""
    from lab.experiments.ipc import floor

    transport = FLOOR_OF.get(link.name)
    if transport is None:
        return None
    key = (transport, size)
    if key not in floors:
        record = {"transport": transport, "pattern": "C floor", "size": size}
        try:
            record.update(floor.measure(transport, size, params.seconds, params.samples))
        except LabError as exc:
            record["skipped"] = str(exc)
        floors[key] = record
        return {**record, "_new": True}
    return dict(floors[key])


def _stop_multiprocessing_helpers() -> None:
    """Spawned peers and shared memory start multiprocessing's resource tracker: stop it."""
    import sys

    if "multiprocessing.resource_tracker" in sys.modules:
        from lab.start_methods import stop_multiprocessing_servers

        stop_multiprocessing_servers()
