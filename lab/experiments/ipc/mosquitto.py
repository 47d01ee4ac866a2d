"""MQTT (paho-mqtt to Mosquitto): what machines use today where the talk used Jabber.

A client publishes to a topic; the broker forwards to every client
subscribed to it. QoS 0 ("at most once") here: no acknowledgement per
message, as sensors publish; the stream's own window keeps the broker from
having to drop anything. Both sides subscribe, and wait for the broker's
SUBACK, before anyone publishes: MQTT keeps nothing for a topic nobody
has subscribed to yet (without retained messages or persistent sessions).

paho runs its network loop in a thread of its own (loop_start); messages
arrive on that thread and are handed over through a queue.Queue.
"""

from __future__ import annotations

import queue
import threading

from lab import services
from lab.experiments.ipc import wire
from lab.experiments.ipc.links import NamedLink
from lab.experiments.ipc.wire import Endpoint, PeerGone

__all__ = ["LINKS", "MqttEndpoint"]


class MqttEndpoint(Endpoint):
    def __init__(self, client_id: str, own: str, target: str) -> None:
        import paho.mqtt.client as mqtt

        self.target = target
        self.inbox: queue.Queue = queue.Queue()
        self.subscribed, self.lost = threading.Event(), threading.Event()
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id)
        self.client.on_message = lambda _c, _u, msg: self.inbox.put(msg.payload)
        self.client.on_subscribe = lambda *_args: self.subscribed.set()
        self.client.on_disconnect = lambda *_args: self.lost.set()
        host, port = services.address("mqtt")
        try:
            self.client.connect(host, port)
        except OSError as exc:
            raise PeerGone(f"Mosquitto (MQTT) does not answer on {host}:{port}: {exc}") from None
        self.client.loop_start()
        self.client.subscribe(own, qos=0)
        if not self.subscribed.wait(wire.TIMEOUT_S):
            self.close()
            raise PeerGone(f"Mosquitto did not confirm SUBSCRIBE {own}")

    def send(self, message: bytes) -> None:
        if self.lost.is_set():
            raise PeerGone("Mosquitto (MQTT) went away mid-run")
        self.client.publish(self.target, message, qos=0)

    def poll(self, timeout: float) -> bytes | None:
        try:
            return self.inbox.get(timeout=timeout)
        except queue.Empty:
            if self.lost.is_set():
                raise PeerGone("Mosquitto (MQTT) went away mid-run") from None
            return None

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()  # joins paho's thread: nothing left running
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
