"""AMQP (RabbitMQ through pika): an RPC with reply_to and correlation_id, and a work queue.

The talk's AMQP: nobody talks to anybody directly; a producer publishes to
an exchange, the broker routes to a queue, a consumer takes from it.
`rpc` is the request-reply of the RabbitMQ tutorial (six): each request
names the queue to answer on (reply_to) and carries an id (correlation_id)
the answer repeats, so a client can match answers to questions. `work-queue`
is one producer and one consumer on a queue: the stream.

Every queue is exclusive to the connection that declared it: the broker
deletes it when that connection closes, also when its process is killed
with -9 (the TCP connection dies with it). Nothing is left on the server.
Names carry the run's prefix (`rabbitmqctl list_queues | grep lab-ipc-`).
"""

from __future__ import annotations

import collections
import time
import uuid
from typing import Any

from lab import services
from lab.experiments.ipc import brokers, wire
from lab.experiments.ipc.links import Context, Link
from lab.experiments.ipc.wire import Endpoint, PeerGone

__all__ = ["LINKS", "AmqpEndpoint"]

WHAT = "RabbitMQ"


def _connection(name: str) -> Any:
    import pika

    params = pika.URLParameters(services.url("amqp"))
    params.socket_timeout = wire.TIMEOUT_S  # a connect that gets no answer ends
    params.blocked_connection_timeout = wire.TIMEOUT_S  # a broker out of memory blocks publishers
    params.client_properties = {"connection_name": name}
    return pika.BlockingConnection(params)


def _errors() -> tuple[type[BaseException], ...]:
    import pika.exceptions

    return (pika.exceptions.AMQPError, ConnectionError)


class AmqpEndpoint(Endpoint):
    """Publish to `target` (the default exchange routes by queue name), consume `own`."""

    def __init__(self, connection: Any, own: str, target: str, rpc: bool) -> None:
        self.connection, self.own, self.target, self.rpc = connection, own, target, rpc
        self.channel = connection.channel()
        self.channel.queue_declare(own, exclusive=True)
        self.inbox: collections.deque = collections.deque()
        self.channel.basic_consume(own, self._arrived, auto_ack=True)
        self.last_id: str | None = None

    def _arrived(self, channel, method, properties, body: bytes) -> None:
        self.inbox.append((properties, body))

    def send(self, message: bytes, properties: Any = None) -> None:
        import pika

        if self.rpc and properties is None:
            self.last_id = uuid.uuid4().hex
            properties = pika.BasicProperties(reply_to=self.own, correlation_id=self.last_id)
        with brokers.gone(WHAT, *_errors()):
            self.channel.basic_publish("", self.target, message, properties)

    def poll(self, timeout: float) -> bytes | None:
        properties, body = self.take(timeout) or (None, None)
        if self.rpc and body is not None and properties.correlation_id != self.last_id:
            raise PeerGone(f"an answer to {properties.correlation_id}, not to {self.last_id}")
        return body

    def take(self, timeout: float) -> tuple[Any, bytes] | None:
        deadline = time.monotonic() + timeout
        with brokers.gone(WHAT, *_errors()):
            while not self.inbox:
                left = deadline - time.monotonic()
                if left <= 0:
                    return None
                self.connection.process_data_events(time_limit=left)
        return self.inbox.popleft()

    def close(self) -> None:
        try:
            self.connection.close()
        except _errors():
            pass  # the broker already went away: nothing to close


class RpcServerEndpoint(AmqpEndpoint):
    """The peer's side of the RPC: answer on each request's reply_to, with its correlation_id."""

    def poll(self, timeout: float) -> bytes | None:
        taken = self.take(timeout)
        if taken is None:
            return None
        self.request, body = taken
        return body

    def send(self, message: bytes, properties: Any = None) -> None:
        import pika

        self.target = self.request.reply_to
        answer = pika.BasicProperties(correlation_id=self.request.correlation_id)
        super().send(message, answer)


class Amqp(Link):
    transport, service = "amqp", "amqp"
    imports = ("pika",)

    def __init__(self, pattern: str) -> None:
        self.pattern = pattern
        self.measures = ("rtt",) if pattern == "rpc" else ("stream",)

    def prepare(self, ctx: Context) -> dict[str, Any]:
        base = f"{ctx.prefix}.{self.pattern}"
        return {
            **super().prepare(ctx),
            "requests": f"{base}.requests",
            "replies": f"{base}.replies",
        }

    def open_peer_end(self, spec: dict[str, Any]) -> Endpoint:
        with brokers.gone(WHAT, *_errors()):
            connection = _connection(f"{spec['prefix']}-peer")
            if self.pattern == "rpc":
                return RpcServerEndpoint(connection, spec["requests"], "", rpc=False)
            return AmqpEndpoint(connection, spec["requests"], spec["replies"], rpc=False)

    def connect(self, spec: dict[str, Any], info: dict[str, Any]) -> Endpoint:
        with brokers.gone(WHAT, *_errors()):
            connection = _connection(f"{spec['prefix']}-parent")
            return AmqpEndpoint(
                connection, spec["replies"], spec["requests"], self.pattern == "rpc"
            )

    def leftovers(self, prefix: str) -> list[str]:
        import subprocess

        listed = subprocess.run(
            ["rabbitmqctl", "list_queues", "-q", "name"], capture_output=True, text=True, timeout=60
        )
        return [q for q in listed.stdout.split() if q.startswith(prefix)]


LINKS = (Amqp("rpc"), Amqp("work-queue"))
