"""XMPP, the talk's Jabber: two slixmpp clients exchanging chat messages through a server.

XMPP is XML over a long-lived TCP connection: each message is a <message>
stanza the server parses, routes by JID and writes to the other client, which
parses it again. The body is text, so bytes travel as base64 (4/3 as long),
and a stanza may not exceed the server's limit (prosody: 256 KiB), which is
why a 1 MiB message does not go this way at all. Logging in (SASL SCRAM-SHA-1,
binding a resource) is the set-up timed.

The server is a throwaway prosody (prosody.py) unless LAB_XMPP_URL names one.
slixmpp is asyncio: the endpoint runs its loop in a thread of its own (aio.py).
"""

from __future__ import annotations

import asyncio
import base64
import functools
import ssl
from typing import Any

from lab.experiments.ipc import aio, prosody, wire
from lab.experiments.ipc.links import Context, Link
from lab.experiments.ipc.wire import Endpoint, PeerGone

__all__ = ["LINKS", "XmppEndpoint"]

#: The largest message whose base64 body, wrapped in its stanza (~1 KiB of XML and
#: addresses), stays under the server's stanza limit.
LIMIT = (prosody.STANZA_LIMIT - 2048) * 3 // 4


class XmppEndpoint(aio.LoopEndpoint):
    def __init__(self, server: dict[str, Any], resource: str, other: str) -> None:
        super().__init__()
        self.server, self.other = server, f"{server['jid']}/{other}"
        self.inbox: asyncio.Queue = asyncio.Queue()
        self.lost = False
        try:
            self.client = self.run(self._login(resource), wire.TIMEOUT_S)
        except (TimeoutError, OSError) as exc:
            self.close()
            raise PeerGone(f"could not log in to XMPP at {server['port']}: {exc!r}") from None

    async def _login(self, resource: str) -> Any:
        import slixmpp

        client = slixmpp.ClientXMPP(f"{self.server['jid']}/{resource}", self.server["password"])
        client.plugin["feature_mechanisms"].unencrypted_scram = True  # loopback, no TLS
        client.enable_direct_tls = False
        client.enable_plaintext = True
        client.enable_starttls = self.server["tls"]  # another server may insist on TLS:
        client.ssl_context.check_hostname = False  # a lab's server has a self-signed
        client.ssl_context.verify_mode = ssl.CERT_NONE  # certificate, on loopback
        started = asyncio.Event()
        client.add_event_handler("session_start", lambda _event: started.set())
        client.add_event_handler("message", self._arrived)
        client.add_event_handler("disconnected", self._lost)
        client.connect(self.server["host"], self.server["port"])
        await started.wait()
        return client

    def _arrived(self, stanza: Any) -> None:
        self.inbox.put_nowait(base64.b64decode(stanza["body"]))

    def _lost(self, _event: Any) -> None:
        self.lost = True

    def send(self, message: bytes) -> None:
        if self.lost:
            raise PeerGone("the XMPP server went away mid-run")
        body = base64.b64encode(message).decode()
        send = functools.partial(self.client.send_message, mto=self.other, mbody=body, mtype="chat")
        self.loop.call_soon_threadsafe(send)  # the client is the loop thread's alone

    def poll(self, timeout: float) -> bytes | None:
        if self.lost:
            raise PeerGone("the XMPP server went away mid-run")
        try:
            return self.run(self.inbox.get(), timeout)
        except TimeoutError:
            return None

    def close(self) -> None:
        client = getattr(self, "client", None)
        if client is not None and not self.lost:
            try:
                self.run(client.disconnect(wait=1.0), 2.0)
            except TimeoutError:
                pass
        self.close_loop()


class Xmpp(Link):
    transport, pattern = "xmpp", "chat"
    limit, limit_why = LIMIT, "stanza limit"  # base64 in a <message>
    imports = ("slixmpp",)

    def prepare(self, ctx: Context) -> dict[str, Any]:
        server = prosody.start(ctx.directory / f"{ctx.prefix}-prosody")
        return {
            **super().prepare(ctx),
            "_server": server,
            "server": {
                "host": server.host, "port": server.port, "jid": server.jid,
                "password": server.password, "tls": server.tls,
            },
        }  # fmt: skip

    def open_peer_end(self, spec: dict[str, Any]) -> Endpoint:
        return XmppEndpoint(spec["server"], "peer", "parent")

    def connect(self, spec: dict[str, Any], info: dict[str, Any]) -> Endpoint:
        return XmppEndpoint(spec["server"], "parent", "peer")

    def cleanup(self, spec: dict[str, Any]) -> None:
        prosody.stop(spec["_server"])


LINKS = (Xmpp(),)
