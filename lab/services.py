"""The servers the lessons talk to besides MySQL (lab/db.py): brokers, caches, XMPP.

Each is a real server on this machine or in docker compose, never a mock.
An experiment asks `require(name)` before it uses one: where the server does
not answer, the user gets one line saying what is missing and how to start
it (the Debian package's command, or `docker compose up -d NAME`), and the
experiment reports that part as missing and goes on with the rest.

Where a server lives: 127.0.0.1 and the usual port, unless LAB_<NAME>_URL
says otherwise (LAB_REDIS_URL=redis://host:6380/0, LAB_AMQP_URL=amqp://...).
LAB_REQUIRE_SERVICES=1 (CI sets it) makes "not answering" a failure in the
tests instead of a skip, so CI cannot pass by skipping a broker.
"""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass
from urllib.parse import urlsplit

from lab import urls
from lab.errors import LabError

__all__ = ["SERVICES", "Service", "address", "reachable", "require", "url"]

#: A server on this machine answers a TCP connect in well under a millisecond;
#: a second is plenty and keeps "is it there?" from slowing a run down.
PROBE_TIMEOUT_S = 1.0


@dataclass(frozen=True)
class Service:
    name: str  # as `docker compose up -d NAME` and LAB_<NAME>_URL spell it
    what: str  # for the one line: "Redis", "RabbitMQ (AMQP)"
    default_url: str
    start: str  # how to start it on a Debian machine without Docker

    @property
    def env(self) -> str:
        return f"LAB_{self.name.upper()}_URL"


SERVICES = {
    s.name: s
    for s in (
        Service(
            "redis",
            "Redis",
            "redis://127.0.0.1:6379/0",
            "apt-get install redis-server && redis-server --daemonize yes",
        ),
        Service(
            "amqp",
            "RabbitMQ (AMQP)",
            "amqp://guest:guest@127.0.0.1:5672/%2F",
            "apt-get install rabbitmq-server && rabbitmq-server -detached",
        ),
        Service(
            "mqtt",
            "Mosquitto (MQTT)",
            "mqtt://127.0.0.1:1883",
            "apt-get install mosquitto && mosquitto -d",
        ),
        Service(
            "nats",
            "NATS",
            "nats://127.0.0.1:4222",
            "apt-get install nats-server && nats-server -a 127.0.0.1 -p 4222 &",
        ),
        Service(
            "xmpp",
            "an XMPP server (prosody)",
            "xmpp://127.0.0.1:5222",
            "apt-get install prosody && prosodyctl start",
        ),
    )
}


def url(name: str) -> str:
    """Where service `name` is: LAB_<NAME>_URL, else its usual local address. A URL
    no server can be reached by (a NUL, a [bracket], port 70000) is one line."""
    service = _service(name)
    given = os.environ.get(service.env)
    if not given:
        return service.default_url
    scheme = urlsplit(service.default_url).scheme
    urls.split(given, service.env, f"{scheme}://host:port")
    return given


def address(name: str) -> tuple[str, int]:
    """(host, port) of service `name`, from its URL."""
    parts = urlsplit(url(name))  # checked by url()
    default_port = urlsplit(_service(name).default_url).port
    return parts.hostname or "127.0.0.1", parts.port or default_port or 0


def reachable(name: str, timeout: float = PROBE_TIMEOUT_S) -> bool:
    """Does something accept a TCP connection where service `name` should be?"""
    try:
        with socket.create_connection(address(name), timeout=timeout):
            return True
    except OSError:
        return False


def require(name: str) -> None:
    """Refuse in one line, naming the way to start it, when service `name` does not answer."""
    if reachable(name):
        return
    service = _service(name)
    host, port = address(name)
    raise LabError(
        f"{service.what} does not answer on {host}:{port}: start it "
        f"(`{service.start}`, or `docker compose up -d {service.name}`) "
        f"or point {service.env} at one"
    )


def _service(name: str) -> Service:
    try:
        return SERVICES[name]
    except KeyError:
        raise LabError(f"unknown service {name!r} (known: {', '.join(SERVICES)})") from None
