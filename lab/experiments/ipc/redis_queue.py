"""Redis (redis-py): a list as a queue (LPUSH, BRPOP), and pub/sub channels.

`list`: each side LPUSHes onto the other's list and BRPOPs its own: a queue
that keeps messages until they are taken (a consumer that is late finds them
waiting). Redis deletes a list when its last element is popped, so a run
that finishes leaves no key; one cut short may, and cleanup deletes the
run's keys (SCAN MATCH prefix*, never KEYS or FLUSHALL on a shared server).

`pubsub`: PUBLISH delivers to whoever is subscribed at that moment and keeps
nothing: a peer that subscribes late misses what came before, so both sides
subscribe before anyone speaks. Channels are not keys: nothing to remove.

Every connection is named after the run (CLIENT SETNAME), so a test can
find and kill the run's own connections and nobody else's.
"""

from __future__ import annotations

from typing import Any

from lab import services
from lab.experiments.ipc import brokers, wire
from lab.experiments.ipc.links import NamedLink
from lab.experiments.ipc.wire import Endpoint, PeerGone

__all__ = ["LINKS", "ListEndpoint", "PubSubEndpoint"]

WHAT = "Redis"
#: BRPOP's timeout 0 means for ever: a slice is never shorter than this (seconds).
SHORTEST_BLOCK_S = 0.01


def _client(name: str) -> Any:
    import redis

    return redis.Redis.from_url(
        services.url("redis"),
        client_name=name,
        socket_connect_timeout=wire.TIMEOUT_S,
        socket_timeout=wire.TIMEOUT_S + wire.SLICE_S,  # longer than any BRPOP it waits in
    )


def _errors() -> tuple[type[BaseException], ...]:
    import redis

    return (redis.ConnectionError, redis.TimeoutError, ConnectionError)


class ListEndpoint(Endpoint):
    def __init__(self, client: Any, own: str, target: str) -> None:
        self.client, self.own, self.target = client, own, target

    def send(self, message: bytes) -> None:
        with brokers.gone(WHAT, *_errors()):
            self.client.lpush(self.target, message)

    def poll(self, timeout: float) -> bytes | None:
        with brokers.gone(WHAT, *_errors()):
            popped = self.client.brpop([self.own], timeout=max(timeout, SHORTEST_BLOCK_S))
        return None if popped is None else popped[1]

    def close(self) -> None:
        self.client.close()


class PubSubEndpoint(Endpoint):
    def __init__(self, client: Any, own: str, target: str) -> None:
        self.client, self.target = client, target
        self.pubsub = client.pubsub()
        with brokers.gone(WHAT, *_errors()):
            self.pubsub.subscribe(own)
            # The server confirms SUBSCRIBE with a message of its own: wait for it, since
            # whatever is published before the subscription holds is lost, not queued.
            confirmed = self.pubsub.get_message(timeout=wire.TIMEOUT_S)
        if confirmed is None or confirmed["type"] != "subscribe":
            raise PeerGone(f"Redis did not confirm SUBSCRIBE {own}: {confirmed}")

    def send(self, message: bytes) -> None:
        with brokers.gone(WHAT, *_errors()):
            self.client.publish(self.target, message)

    def poll(self, timeout: float) -> bytes | None:
        with brokers.gone(WHAT, *_errors()):
            got = self.pubsub.get_message(timeout=timeout)
        return None if got is None or got["type"] != "message" else got["data"]

    def close(self) -> None:
        self.pubsub.close()
        self.client.close()


class Redis(NamedLink):
    transport, service, separator = "redis", "redis", ":"
    imports = ("redis",)

    def __init__(self, pattern: str, endpoint: type[Endpoint]) -> None:
        self.pattern, self.endpoint = pattern, endpoint

    def open(self, name: str, own: str, target: str) -> Endpoint:
        return self.endpoint(_client(name), own, target)

    def cleanup(self, spec: dict[str, Any]) -> None:
        keys = self.leftovers(spec["prefix"])
        if keys:
            client = _client(f"{spec['prefix']}-cleanup")
            try:
                client.delete(*keys)
            finally:
                client.close()

    def leftovers(self, prefix: str) -> list[str]:
        client = _client(f"{prefix}-look")
        try:
            return [k.decode() for k in client.scan_iter(match=f"{prefix}:*", count=1000)]
        except _errors():
            return []  # the server is gone: nothing of ours can be left on it
        finally:
            client.close()


LINKS = (Redis("list", ListEndpoint), Redis("pubsub", PubSubEndpoint))
