"""Remote objects, the talk's DRb: call a method on an object that lives in another process.

DRb (Ruby's distributed Ruby) hands you a proxy; `proxy.echo(data)` looks
like a local call and is a request over a socket, the arguments marshalled
on the way in and the result on the way out. Two Pythons of it:

- Pyro5 ("Python Remote Objects"): a daemon in the peer serves an object on
  a TCP port; the parent's Proxy(uri) calls it. Pyro's default serializer
  (serpent) turns bytes into base64 text; `marshal` carries bytes as they are,
  so it is chosen here (Pyro5.config.SERIALIZER).
- multiprocessing.managers: a BaseManager starts a server process (spawned,
  never forked: see links.py) holding the object, and hands out proxies
  that pickle each call over a Unix socket. It is what multiprocessing's
  own Manager().dict() is made of.

A method call waits for its result: a round trip, and nothing else, is
what a remote object is for (no stream is timed).
"""

from __future__ import annotations

from multiprocessing.managers import BaseManager
from typing import Any

from lab.experiments.ipc import wire
from lab.experiments.ipc.links import START_TIMEOUT_S, Link
from lab.experiments.ipc.wire import Endpoint, PeerGone

__all__ = ["LINKS", "Echo"]


class Echo:
    """The remote object: its one method answers a message as every peer does (wire.Receiver)."""

    def __init__(self) -> None:
        self.receiver = wire.Receiver()

    def call(self, message: bytes) -> bytes | None:
        return self.receiver.handle(message)


class CallEndpoint(Endpoint):
    """request() is one remote call; QUIT (the goodbye) is the peer's own `stop`."""

    def __init__(self, call: Any, stop: Any, errors: tuple[type[BaseException], ...]) -> None:
        self.call, self.stop, self.errors = call, stop, errors

    def request(self, message: bytes, timeout: float = wire.TIMEOUT_S) -> bytes:
        try:
            return self.call(message)
        except self.errors as exc:
            raise PeerGone(f"the remote object went away: {exc}") from None

    def send(self, message: bytes) -> None:
        if wire.kind_of(message) == wire.QUIT:
            self.stop()

    def close(self) -> None:
        """The proxy's connection closes with it."""


class PyroEcho(Echo):
    """Echo for Pyro, which serves only what is marked exposed, and a way to stop it."""

    def __init__(self, daemon: Any) -> None:
        super().__init__()
        self.daemon = daemon

    def call(self, message: bytes) -> bytes | None:  # here, so that expose() sees it
        return super().call(message)

    def quit(self) -> None:
        self.daemon.shutdown()


class Pyro(Link):
    transport, pattern, measures = "remote-objects", "pyro5", ("rtt",)
    imports = ("Pyro5.api",)

    def serve(self, spec, ready) -> None:
        import Pyro5.api
        import Pyro5.server

        Pyro5.config.SERIALIZER = "marshal"
        with Pyro5.api.Daemon(host="127.0.0.1", port=0) as daemon:
            echo = Pyro5.server.expose(PyroEcho)(daemon)  # expose: Pyro serves only what is marked
            uri = daemon.register(echo, f"{spec['prefix']}.echo")
            ready({"uri": str(uri)})
            daemon.requestLoop()

    def connect(self, spec: dict[str, Any], info: dict[str, Any]) -> Endpoint:
        import Pyro5.api
        import Pyro5.errors

        Pyro5.config.SERIALIZER = "marshal"
        proxy = Pyro5.api.Proxy(info["uri"])
        proxy._pyroTimeout = wire.TIMEOUT_S
        proxy._pyroBind()  # connect and handshake now: that is the set-up

        def stop() -> None:
            proxy._pyroOneway.add("quit")
            proxy.quit()
            proxy._pyroRelease()

        return CallEndpoint(proxy.call, stop, (Pyro5.errors.CommunicationError, ConnectionError))


class ManagedPeer:
    """links.Peer for a multiprocessing manager: its server process is the peer."""

    def __init__(self, manager: Any) -> None:
        self.manager = manager
        self.pid = manager._process.pid

    def alive(self) -> bool:
        return self.manager._process.is_alive()

    def ready(self, timeout: float = START_TIMEOUT_S) -> dict[str, Any]:
        return {}  # start() returned: the server answers

    def stop(self, grace: float = 2.0) -> int:
        self.manager.shutdown()  # ask, wait, then terminate: the manager's own escalation
        return 0


class EchoManager(BaseManager):
    """A manager serving Echo objects (at module level: spawn pickles it by name)."""


EchoManager.register("Echo", Echo)


class Manager(Link):
    transport, pattern, measures = "remote-objects", "mp-manager", ("rtt",)

    def start_peer(self, spec: dict[str, Any]) -> ManagedPeer:
        import multiprocessing

        manager = EchoManager(ctx=multiprocessing.get_context("spawn"))
        manager.start()
        spec["_manager"] = manager
        return ManagedPeer(manager)

    def connect(self, spec: dict[str, Any], info: dict[str, Any]) -> Endpoint:
        echo = spec["_manager"].Echo()  # the object is made in the server: that is the set-up
        return CallEndpoint(echo.call, lambda: None, (EOFError, ConnectionError))


LINKS = (Pyro(), Manager())
