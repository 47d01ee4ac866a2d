"""MQTT (paho-mqtt to Mosquitto): what machines use today where the talk used Jabber.

A client publishes to a topic; the broker forwards to every client
subscribed to it. QoS 0 ("at most once") here: no acknowledgement per
message, as sensors publish; the stream's own window keeps the broker from
having to drop anything. Both sides subscribe, and wait for the broker's
SUBACK, before anyone publishes: MQTT keeps nothing for a topic nobody
has subscribed to yet (without retained messages or persistent sessions).

paho's network loop runs in the measuring thread itself: `publish` writes
at once (paho does when no loop thread is running), and `poll` turns the
loop (`client.loop`: one select, read, callbacks) until a message is in.
With `loop_start` instead, messages arrived on paho's own thread and were
handed over through a queue.Queue: every small message then cost two GIL
hand-offs between threads. Measured alternately under a load average of
about 20: the 64 B round trip took 2,629-2,959 µs with paho's thread and
720-1,154 µs without. The 64 B stream did not gain as much (707-969 msg/s
before, 834-885 after, against about 2,000 at 4 KiB): what holds it back
was not found in this session (docs/ipc.md).
"""

from __future__ import annotations

import socket
import time
from collections import deque

from lab import services
from lab.experiments.ipc import wire
from lab.experiments.ipc.links import NamedLink
from lab.experiments.ipc.wire import Endpoint, PeerGone

__all__ = ["LINKS", "MqttEndpoint"]


class MqttEndpoint(Endpoint):
    def __init__(self, client_id: str, own: str, target: str) -> None:
        import paho.mqtt.client as mqtt

        self.target = target
        self.inbox: deque[bytes] = deque()  # filled by on_message, in this very thread
        self.subscribed = self.lost = False
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id)
        self.client.on_message = lambda _c, _u, msg: self.inbox.append(msg.payload)
        self.client.on_subscribe = lambda *_args: setattr(self, "subscribed", True)
        self.client.on_disconnect = lambda *_args: setattr(self, "lost", True)
        host, port = services.address("mqtt")
        try:
            self.client.connect(host, port)
        except OSError as exc:
            raise PeerGone(f"Mosquitto (MQTT) does not answer on {host}:{port}: {exc}") from None
        # paho leaves Nagle's algorithm on (RFC 896): a small PUBLISH, such as the stream's
        # ACK, may wait for the broker to acknowledge what is in flight. The lab's TCP
        # links turn it off (tcp(7) TCP_NODELAY), and so does this one. Measured under a
        # load average of 19: 1,065-1,117 msg/s in the 64 B stream with it off, 834-885
        # without (two runs each, noisy).
        self.client.socket().setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.client.subscribe(own, qos=0)
        deadline = time.monotonic() + wire.TIMEOUT_S
        while not self.subscribed and not self.lost and time.monotonic() < deadline:
            self.client.loop(timeout=deadline - time.monotonic())
        if not self.subscribed:
            self.close()
            raise PeerGone(f"Mosquitto did not confirm SUBSCRIBE {own}")

    def send(self, message: bytes) -> None:
        if self.lost:
            raise PeerGone("Mosquitto (MQTT) went away mid-run")
        self.client.publish(self.target, message, qos=0)

    def poll(self, timeout: float) -> bytes | None:
        deadline = time.monotonic() + timeout
        while not self.inbox:
            left = deadline - time.monotonic()
            if self.lost:
                raise PeerGone("Mosquitto (MQTT) went away mid-run")
            if left <= 0:
                return None
            self.client.loop(timeout=left)
        return self.inbox.popleft()

    def close(self) -> None:
        self.client.disconnect()
        # paho keeps a socketpair to wake its loop until the client is collected, and the
        # callbacks above make a cycle that only the garbage collector would break: close
        # it now (paho's own __del__ does the same).
        self.client._reset_sockets()


class Mqtt(NamedLink):
    transport, pattern, service, separator = "mqtt", "qos0", "mqtt", "/"
    imports = ("paho.mqtt.client",)

    def open(self, name: str, own: str, target: str) -> Endpoint:
        return MqttEndpoint(name, own, target)


LINKS = (Mqtt(),)
