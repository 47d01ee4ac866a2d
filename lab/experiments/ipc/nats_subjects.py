"""NATS (nats-py): subjects, publish and subscribe, through a server that keeps nothing.

Core NATS delivers a message to whoever subscribes to its subject at that
moment, at most once, and drops messages for a consumer too slow to keep up
("slow consumer"): the stream's window keeps this one well clear of that.
A message may be at most the server's max_payload (1 MiB by default, said in
the server's INFO at connect): a 1 MiB message with its header fits, exactly.

nats-py is asyncio: the endpoint runs its loop in a thread of its own (aio.py);
a publish is buffered and written by the client's flusher when the loop runs.
"""

from __future__ import annotations

from typing import Any

from lab import services
from lab.experiments.ipc import aio, wire
from lab.experiments.ipc.links import NamedLink
from lab.experiments.ipc.wire import Endpoint, PeerGone

__all__ = ["LINKS", "NatsEndpoint"]

#: NATS's default max_payload (nats-server's MAX_PAYLOAD_SIZE): 1 MiB.
MAX_PAYLOAD = 1 << 20


class NatsEndpoint(aio.LoopEndpoint):
    def __init__(self, name: str, own: str, target: str) -> None:
        super().__init__()
        self.target, self.lost = target, False
        try:
            self.client, self.subscription = self.run(self._connect(name, own), wire.TIMEOUT_S)
        except (TimeoutError, OSError) as exc:
            self.close_loop()
            raise PeerGone(f"NATS does not answer at {services.url('nats')}: {exc!r}") from None

    async def _connect(self, name: str, own: str) -> tuple[Any, Any]:
        import nats

        async def lost() -> None:
            self.lost = True

        client = await nats.connect(
            services.url("nats"),
            name=name,
            allow_reconnect=False,  # a server that goes away ends the run, said in one line
            connect_timeout=wire.TIMEOUT_S,
            disconnected_cb=lost,
            closed_cb=lost,
        )
        subscription = await client.subscribe(own)
        await client.flush()  # the server has the subscription before anyone publishes
        return client, subscription

    def send(self, message: bytes) -> None:
        if self.lost:
            raise PeerGone("NATS went away mid-run")
        self.run(self.client.publish(self.target, message))

    def poll(self, timeout: float) -> bytes | None:
        import nats.errors

        if self.lost:
            raise PeerGone("NATS went away mid-run")
        try:
            return self.run(self.subscription.next_msg(timeout=timeout)).data
        except nats.errors.TimeoutError:
            return None

    def close(self) -> None:
        if not self.lost:
            try:
                self.run(self.client.close(), wire.TIMEOUT_S)
            except (TimeoutError, OSError):
                pass
        self.close_loop()


class Nats(NamedLink):
    transport, pattern, service = "nats", "pub-sub", "nats"
    limit, limit_why = MAX_PAYLOAD, "max_payload"  # the server's, 1 MiB by default
    imports = ("nats",)

    def open(self, name: str, own: str, target: str) -> Endpoint:
        return NatsEndpoint(name, own, target)


LINKS = (Nats(),)
