"""multiprocessing's channels: Pipe and Queue, between this process and a spawned one.

A learner's first IPC in Python is usually `multiprocessing.Pipe()` or
`Queue()`, and `conn.send(obj)` pickles obj (a bytes object too) on the way
in and unpickles it on the way out: that is measured here, as users pay it.
A Queue adds a feeder thread on the sending side (put() only appends to a
buffer; the thread pickles and writes to a pipe later) and a lock around the
pipe, so that many processes may share it.

The peer is started with the *spawn* method, never fork: this process may be
a Jupyter kernel, whose threads make a fork unsafe (and 3.12+ warn about it).
Spawn passes the Pipe's connection or the Queues to the child as arguments.
"""

from __future__ import annotations

import queue
from typing import Any

from lab.experiments.ipc import wire
from lab.experiments.ipc.links import START_TIMEOUT_S, Context, Link
from lab.experiments.ipc.wire import Endpoint, PeerGone

__all__ = ["LINKS", "ConnectionEndpoint", "QueueEndpoint"]

READY = b"ready"
QUIT_GRACE_S = 2.0


class ConnectionEndpoint(Endpoint):
    def __init__(self, conn: Any) -> None:
        self.conn = conn

    def send(self, message: bytes) -> None:
        try:
            self.conn.send(message)  # pickled, as conn.send(obj) always does
        except (BrokenPipeError, ConnectionResetError):
            raise PeerGone("the peer hung up") from None

    def poll(self, timeout: float) -> bytes | None:
        try:
            if not self.conn.poll(timeout):
                return None
            return self.conn.recv()
        except (EOFError, ConnectionResetError):
            raise PeerGone("the peer hung up") from None

    def close(self) -> None:
        self.conn.close()


class QueueEndpoint(Endpoint):
    def __init__(self, outgoing: Any, incoming: Any) -> None:
        self.outgoing, self.incoming = outgoing, incoming

    def send(self, message: bytes) -> None:
        self.outgoing.put(message)

    def poll(self, timeout: float) -> bytes | None:
        try:
            return self.incoming.get(timeout=timeout)
        except queue.Empty:
            return None

    def close(self) -> None:
        peer_dead = self.other_alive is not None and not self.other_alive()
        for q in (self.outgoing, self.incoming):
            q.close()
            if peer_dead:  # nobody will read: the feeder thread could block on a full pipe
                q.cancel_join_thread()
            q.join_thread()  # else the feeder has written what was put (QUIT too)


class SpawnedPeer:
    """links.Peer for a multiprocessing child: the same alive / ready / stop."""

    def __init__(self, process: Any, endpoint: Endpoint) -> None:
        self.process, self.endpoint = process, endpoint
        self.pid = process.pid

    def alive(self) -> bool:
        return self.process.is_alive()

    def ready(self, timeout: float = START_TIMEOUT_S) -> dict[str, Any]:
        if self.endpoint.poll(timeout) != READY:
            raise PeerGone(f"the spawned peer did not start (exit code {self.process.exitcode})")
        return {}

    def stop(self, grace: float = QUIT_GRACE_S) -> int:
        self.process.join(grace)  # after QUIT it ends by itself in milliseconds
        if self.process.is_alive():
            self.process.kill()  # nothing of the peer's needs saving: no TERM first
            self.process.join()
        self.process.close()
        return 0


def _peer_main(make_endpoint: Any, args: tuple) -> None:
    """The spawned child: its end of the channel, READY, then the same loop as every peer."""
    endpoint = make_endpoint(*args)
    try:
        endpoint.send(READY)
        wire.serve(endpoint, wire.TIMEOUT_S * 3)
    finally:
        endpoint.close()


class MpPipe(Link):
    transport, pattern = "mp-pipe", "pipe"

    def prepare(self, ctx: Context) -> dict[str, Any]:
        import multiprocessing

        mp = multiprocessing.get_context("spawn")
        ours, theirs = mp.Pipe()
        return {**super().prepare(ctx), "mp": mp, "ours": ours, "theirs": theirs}

    def start_peer(self, spec: dict[str, Any]) -> SpawnedPeer:
        process = spec["mp"].Process(
            target=_peer_main, args=(ConnectionEndpoint, (spec["theirs"],)), daemon=True
        )
        process.start()
        spec.pop("theirs").close()  # the child has it now; our copy would hide its EOF
        return SpawnedPeer(process, ConnectionEndpoint(spec["ours"]))

    def connect(self, spec: dict[str, Any], info: dict[str, Any]) -> Endpoint:
        return ConnectionEndpoint(spec.pop("ours"))

    def cleanup(self, spec: dict[str, Any]) -> None:
        for key in ("ours", "theirs"):
            if key in spec:
                spec.pop(key).close()


class MpQueue(Link):
    transport, pattern = "mp-queue", "queue"

    def prepare(self, ctx: Context) -> dict[str, Any]:
        import multiprocessing

        mp = multiprocessing.get_context("spawn")
        return {**super().prepare(ctx), "mp": mp, "to_peer": mp.Queue(), "from_peer": mp.Queue()}

    def start_peer(self, spec: dict[str, Any]) -> SpawnedPeer:
        to_peer, from_peer = spec["to_peer"], spec["from_peer"]
        process = spec["mp"].Process(
            target=_peer_main, args=(QueueEndpoint, (from_peer, to_peer)), daemon=True
        )
        process.start()
        return SpawnedPeer(process, QueueEndpoint(to_peer, from_peer))

    def connect(self, spec: dict[str, Any], info: dict[str, Any]) -> Endpoint:
        return QueueEndpoint(spec["to_peer"], spec["from_peer"])

    def cleanup(self, spec: dict[str, Any]) -> None:
        """The endpoint closed both queues; their semaphores go with the objects."""


LINKS = (MpPipe(), MpQueue())
