"""The parent's side: round trips and a one-way stream over any Endpoint, and their figures.

round_trips: send PING, wait for the echo, compare it byte for byte; a
warm-up first (the first messages pay for page faults, a broker's first
route, a JIT-less interpreter's first calls of each path), then samples for
`seconds` or `max_samples`, whichever ends first. Each sample is one
perf_counter_ns() difference around one request.

stream: DATA messages for `seconds`, never more than a window unacknowledged
(the peer ACKs every half window), then END; the clock stops when the
peer's STATS arrive, so what is counted is what the peer received and
checked, not what the sender managed to hand to a buffer.

rtt_figures and stream_figures turn those into the record's numbers: the
benchmark calls the same functions, so it reports what the table shows.
"""

from __future__ import annotations

import json
import statistics
import time

from lab.experiments.ipc import wire
from lab.experiments.ipc.wire import Endpoint, Messages, PeerGone

__all__ = ["WARMUP", "round_trips", "rtt_figures", "stream", "stream_figures", "window"]

WARMUP = 20
#: At most this many bytes in flight in a stream: a few MiB keeps pipes and sockets
#: full (their buffers hold 64-200 KiB) while a broker holds little for a slow reader.
WINDOW_BYTES = 4 << 20
WINDOW_MAX = 64


def window(size: int) -> int:
    """Messages allowed unacknowledged: at least 2 (one in flight while one is acked)."""
    return max(2, min(WINDOW_MAX, WINDOW_BYTES // size))


def _answer(endpoint: Endpoint, message: bytes) -> bytes:
    """The reply to `message`, refusing an ERROR with the peer's own words."""
    reply = endpoint.request(message)
    if wire.kind_of(reply) == wire.ERROR:
        raise PeerGone(f"the peer refused a message: {bytes(reply[wire.HEADER.size :]).decode()}")
    return reply


def round_trips(endpoint: Endpoint, size: int, seconds: float, max_samples: int) -> list[int]:
    """Round-trip times in ns after a warm-up; every echo checked byte for byte."""
    messages = Messages(size)
    samples: list[int] = []
    deadline = None
    seq = 0
    while len(samples) < max_samples:
        message = messages.make(wire.PING, seq)
        started = time.perf_counter_ns()
        reply = _answer(endpoint, message)
        ended = time.perf_counter_ns()
        if reply != message:
            raise PeerGone(f"the echo of message {seq} ({size} bytes) came back different")
        if seq >= WARMUP:
            samples.append(ended - started)
            if deadline is None:
                deadline = ended + seconds * 1e9
            elif ended > deadline:
                break
        seq += 1
    return samples


def rtt_figures(samples: list[int]) -> dict[str, float | int]:
    """rtt_median_us, rtt_p99_us and samples: the record's round-trip figures."""
    us = [s / 1e3 for s in samples]
    p99 = statistics.quantiles(us, n=100, method="inclusive")[98] if len(us) > 1 else us[0]
    return {
        "rtt_median_us": round(statistics.median(us), 3),
        "rtt_p99_us": round(p99, 3),
        "samples": len(us),
    }


def stream(endpoint: Endpoint, size: int, seconds: float) -> tuple[int, int, int]:
    """One-way DATA for `seconds`: (messages, bytes the peer counted, elapsed ns)."""
    messages = Messages(size)
    allowed = window(size)
    ack_every = max(1, allowed // 2)
    sent = acked = 0
    started = time.perf_counter_ns()
    deadline = started + seconds * 1e9
    while time.perf_counter_ns() < deadline:
        while sent - acked >= allowed:
            acked = _ack(endpoint.recv())
        endpoint.send(messages.make(wire.DATA, sent, ack_every))
        sent += 1
    endpoint.send(wire.control(wire.END))
    while True:  # the ACKs still on their way, then the peer's count
        reply = endpoint.recv()
        if wire.kind_of(reply) == wire.STATS:
            break
        acked = _ack(reply)
    elapsed = time.perf_counter_ns() - started
    counted = json.loads(bytes(reply[wire.HEADER.size :]))
    if counted["messages"] != sent or counted["bytes"] != sent * size:
        raise PeerGone(f"sent {sent} messages, the peer counted {counted['messages']}")
    return sent, counted["bytes"], elapsed


def _ack(reply: bytes) -> int:
    kind, _, _, count = wire.HEADER.unpack_from(reply)
    if kind == wire.ERROR:
        raise PeerGone(f"the peer refused a message: {bytes(reply[wire.HEADER.size :]).decode()}")
    if kind != wire.ACK:
        raise PeerGone(f"expected an ACK, got message kind {kind}")
    return count


def stream_figures(sent: int, nbytes: int, elapsed_ns: int) -> dict[str, float | int]:
    """msgs_per_s and mb_per_s (10^6 bytes a second, as the ipc-bench figures use)."""
    seconds = elapsed_ns / 1e9
    return {
        "msgs_per_s": round(sent / seconds, 1),
        "mb_per_s": round(nbytes / seconds / 1e6, 3),
        "messages": sent,
    }
