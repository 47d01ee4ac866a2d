"""Every way to talk, in the slide's order, by --transport name.

TRANSPORTS are the --transport choices; each maps to one or more links (a
transport and a pattern: unix has a stream and a datagram link, zmq has
REQ/REP and PUSH/PULL over ipc:// and tcp://). A module is imported only when
one of its transports is asked for, so a run of pipes never imports a broker
client.
"""

from __future__ import annotations

import importlib

from lab.errors import LabError
from lab.experiments.ipc.links import Link

__all__ = ["MODULES", "TRANSPORTS", "find", "links"]

#: --transport name -> the module holding its links (lab/experiments/ipc/MODULE.py)
MODULES = {
    "pipe": "kernel",
    "socketpair": "kernel",
    "unix": "kernel",
    "tcp": "kernel",
    "mp-pipe": "mpchannels",
    "mp-queue": "mpchannels",
    "shm": "shm",
    "zmq": "zeromq",
    "amqp": "rabbitmq",
    "redis": "redis_queue",
    "remote-objects": "remote_objects",
    "xmpp": "jabber",
    "mqtt": "mosquitto",
    "nats": "nats_subjects",
}
TRANSPORTS = tuple(MODULES)


def links(transport: str) -> list[Link]:
    """The links of one --transport, in their module's order."""
    if transport not in MODULES:
        raise LabError(f"unknown transport {transport!r} (known: {', '.join(TRANSPORTS)})")
    module = importlib.import_module(f"lab.experiments.ipc.{MODULES[transport]}")
    return [link for link in module.LINKS if link.transport == transport]


def find(name: str) -> Link:
    """A link by its name, "transport/pattern" (what the peer is told to be)."""
    transport, _, _ = name.partition("/")
    for link in links(transport):
        if link.name == name:
            return link
    raise LabError(f"unknown link {name!r}")
