"""What travels, whatever carries it: messages with a checksum, and the peer's side of the talk.

Every transport carries the same messages, so every transport is checked the
same way and timed doing the same work:

    header (16 bytes): kind, ack_every, crc32 of the payload, sequence number
    payload: size - 16 bytes, the same random bytes for every message of a size

The peer verifies each message's checksum and its sequence number (order
where the transport promises it), and answers by kind: PING comes back
unchanged (the parent compares the echo byte for byte: intact both ways),
DATA is counted, with an ACK every `ack_every` messages (the stream's flow
control: a broker's queue would otherwise grow as fast as the sender can
write), END is answered with STATS (what the peer counted), QUIT ends it.
A message that arrives damaged, or out of order, is answered with ERROR
and the peer stops: the parent turns that into one line.

An Endpoint is one side of a conversation: send(message), recv(timeout) ->
message, request(message, timeout) -> reply, close(). Every wait is bounded:
recv raises PeerGone when nothing came in time or the other side hung up.
"""

from __future__ import annotations

import json
import os
import struct
import time
import zlib
from dataclasses import dataclass, field

from lab.errors import LabError

__all__ = [
    "ACK",
    "DATA",
    "END",
    "ERROR",
    "HEADER",
    "PING",
    "QUIT",
    "STATS",
    "Endpoint",
    "Messages",
    "PeerGone",
    "Receiver",
    "kind_of",
    "serve",
]

HEADER = struct.Struct("<BxHIQ")  # kind, pad, ack_every, crc32(payload), seq: 16 bytes
PING, DATA, END, STATS, ACK, QUIT, ERROR = range(1, 8)

#: How long either side waits for the other before calling it gone. A peer on this
#: machine answers a 1 MiB message through a broker in milliseconds; ten seconds means
#: it died, hung, or lost the message, and nobody should wait longer to learn that.
TIMEOUT_S = 10.0


class PeerGone(LabError):
    """The other side hung up, died, or did not answer within the bound."""


#: A wait for a message is cut into slices this long, and between slices the endpoint
#: asks whether the other process still lives: a peer killed with -9 is noticed in a
#: fraction of a second, not at the end of TIMEOUT_S. A message that is there is
#: taken at once: the slices cost nothing on the fast path.
SLICE_S = 0.2


class Endpoint:
    """One side of a conversation. Subclasses implement send, poll and close.

    `other_alive`, when set, says whether the other process still runs: the
    parent sets it to its peer's liveness, so a dead peer is reported as such.
    """

    other_alive = None

    def send(self, message: bytes) -> None:
        raise NotImplementedError

    def poll(self, timeout: float) -> bytes | None:
        """The next message within `timeout` s, or None; PeerGone if the other side hung up."""
        raise NotImplementedError

    def recv(self, timeout: float = TIMEOUT_S) -> bytes:
        message = self.poll(min(SLICE_S, timeout))  # the usual case: it comes in this slice
        if message is not None:
            return message
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            message = self.poll(max(0.0, min(SLICE_S, left)))
            if message is not None:
                return message
            if self.other_alive is not None and not self.other_alive():
                raise PeerGone("the peer died mid-run")
            if left <= 0:
                raise PeerGone(f"no answer within {timeout:g} s")

    def request(self, message: bytes, timeout: float = TIMEOUT_S) -> bytes:
        """Send and wait for the answer (one call where a client library has one)."""
        self.send(message)
        return self.recv(timeout)

    def close(self) -> None:
        raise NotImplementedError


def kind_of(message: bytes) -> int:
    return message[0]


def control(kind: int, seq: int = 0, payload: bytes = b"") -> bytes:
    return HEADER.pack(kind, 0, zlib.crc32(payload), seq) + payload


@dataclass
class Messages:
    """The messages of one size: a fixed random payload, its checksum computed once."""

    size: int
    payload: bytes = field(init=False)
    crc: int = field(init=False)

    def __post_init__(self) -> None:
        if self.size < HEADER.size:
            raise LabError(f"--size must be at least {HEADER.size} bytes (the header)")
        self.payload = os.urandom(self.size - HEADER.size)
        self.crc = zlib.crc32(self.payload)

    def make(self, kind: int, seq: int, ack_every: int = 0) -> bytes:
        # One copy of the payload per message: an immutable bytes object, since some
        # transports (multiprocessing.Queue) pickle it later, in a thread of their own.
        return HEADER.pack(kind, ack_every, self.crc, seq) + self.payload


class Receiver:
    """The peer's half of the protocol, the same for every transport (see the module doc)."""

    def __init__(self) -> None:
        self.expected = 0  # the next DATA sequence number (order where promised)
        self.messages = 0
        self.bytes = 0

    def handle(self, message: bytes) -> bytes | None:
        """The answer to `message` (None: no answer); ValueError when it is damaged."""
        kind, ack_every, crc, seq = HEADER.unpack_from(message)
        if zlib.crc32(memoryview(message)[HEADER.size :]) != crc:
            raise ValueError(f"message {seq} ({len(message)} bytes) failed its checksum")
        if kind == PING:
            return message
        if kind == DATA:
            if seq != self.expected:
                raise ValueError(f"message {seq} arrived where {self.expected} was due")
            self.expected += 1
            self.messages += 1
            self.bytes += len(message)
            if ack_every and self.messages % ack_every == 0:
                return control(ACK, self.messages)
            return None
        if kind == END:
            stats = {"messages": self.messages, "bytes": self.bytes}
            self.expected = self.messages = self.bytes = 0
            return control(STATS, 0, json.dumps(stats).encode())
        raise ValueError(f"unexpected message kind {kind}")


def serve(endpoint: Endpoint, idle_timeout: float) -> None:
    """The peer's loop: answer every message until QUIT (or the parent goes quiet)."""
    receiver = Receiver()
    while True:
        message = endpoint.recv(idle_timeout)
        if kind_of(message) == QUIT:
            return
        try:
            answer = receiver.handle(message)
        except ValueError as exc:
            endpoint.send(control(ERROR, 0, str(exc).encode()))
            raise
        if answer is not None:
            endpoint.send(answer)
