"""ØMQ (pyzmq): sockets that carry whole messages and know a pattern, over ipc:// and tcp://.

REQ/REP is a strict request-reply: a REQ socket must receive before it can
send again, so it only does round trips. PUSH/PULL is one-way: two pairs
make a conversation (one each way), and a stream. ZeroMQ queues messages in
its own I/O thread; its high-water mark (1000 messages) bounds the queue,
and the stream's window keeps well under it.

ipc:// is a Unix socket on a path (the run's directory), tcp:// loopback TCP
on a port the peer's bind picked (tcp://127.0.0.1:*, read back from
LAST_ENDPOINT). The peer binds, the parent connects: the set-up timed is
the parent's context, sockets and connects.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from lab.experiments.ipc import kernel, wire
from lab.experiments.ipc.links import Context, Link
from lab.experiments.ipc.wire import Endpoint, PeerGone

__all__ = ["LINKS", "ZmqEndpoint"]


class ZmqEndpoint(Endpoint):
    """Send on one socket, receive on another (REQ/REP: the same one)."""

    def __init__(self, context: Any, outgoing: Any, incoming: Any) -> None:
        self.context, self.outgoing, self.incoming = context, outgoing, incoming

    def send(self, message: bytes) -> None:
        import zmq

        try:
            # copy=True even when large: pyzmq's zero-copy send hands the buffer to a garbage
            # thread with a context of its own, which outlives this endpoint.
            self.outgoing.send(message, copy=True)
        except zmq.ZMQError as exc:
            raise PeerGone(f"ØMQ refused a send: {exc}") from None

    def poll(self, timeout: float) -> bytes | None:
        if not self.incoming.poll(timeout * 1000):
            return None
        return self.incoming.recv()

    def close(self) -> None:
        for sock in {id(s): s for s in (self.outgoing, self.incoming)}.values():
            sock.close(linger=0)  # linger 0: a dead peer's queue is dropped, close never waits
        self.context.term()


class Zmq(Link):
    transport = "zmq"
    imports = ("zmq",)

    def __init__(self, pattern: str, scheme: str) -> None:
        self.kind, self.scheme = pattern, scheme
        self.pattern = f"{pattern} {scheme}"
        self.measures = ("rtt",) if pattern == "req-rep" else ("rtt", "stream")

    def _address(self, ctx: Context, which: str) -> str:
        if self.scheme == "ipc":
            return f"ipc://{ctx.directory}/{ctx.prefix}-zmq-{self.kind}-{which}.sock"
        return "tcp://127.0.0.1:*"

    def prepare(self, ctx: Context) -> dict[str, Any]:
        return {
            **super().prepare(ctx),
            "to_peer": self._address(ctx, "in"),
            "from_peer": self._address(ctx, "out"),
        }

    def serve(self, spec, ready) -> None:
        import zmq

        context = zmq.Context()
        if self.kind == "req-rep":
            rep = context.socket(zmq.REP)
            rep.bind(spec["to_peer"])
            endpoint = ZmqEndpoint(context, rep, rep)
            info = {"to_peer": rep.getsockopt_string(zmq.LAST_ENDPOINT)}
        else:
            pull, push = context.socket(zmq.PULL), context.socket(zmq.PUSH)
            pull.bind(spec["to_peer"])
            push.bind(spec["from_peer"])
            endpoint = ZmqEndpoint(context, push, pull)
            info = {
                "to_peer": pull.getsockopt_string(zmq.LAST_ENDPOINT),
                "from_peer": push.getsockopt_string(zmq.LAST_ENDPOINT),
            }
        try:
            ready(info)
            wire.serve(endpoint, wire.TIMEOUT_S * 3)
        finally:
            endpoint.close()

    def connect(self, spec: dict[str, Any], info: dict[str, Any]) -> Endpoint:
        import zmq

        context = zmq.Context()
        if self.kind == "req-rep":
            req = context.socket(zmq.REQ)
            req.connect(info["to_peer"])
            return ZmqEndpoint(context, req, req)
        push, pull = context.socket(zmq.PUSH), context.socket(zmq.PULL)
        push.connect(info["to_peer"])
        pull.connect(info["from_peer"])
        return ZmqEndpoint(context, push, pull)

    def cleanup(self, spec: dict[str, Any]) -> None:
        """A peer killed with -9 leaves its ipc:// files: remove them."""
        for key in ("to_peer", "from_peer"):
            if spec[key].startswith("ipc://"):
                Path(spec[key].removeprefix("ipc://")).unlink(missing_ok=True)

    def leftovers(self, prefix: str) -> list[str]:
        return kernel.socket_files(prefix)


LINKS = (
    Zmq("req-rep", "ipc"),
    Zmq("req-rep", "tcp"),
    Zmq("push-pull", "ipc"),
    Zmq("push-pull", "tcp"),
)
