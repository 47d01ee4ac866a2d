"""The kernel's own ways: a pipe pair, a socketpair, a Unix socket on a path, loopback TCP.

Pipes and stream sockets carry bytes, not messages: a reader may get half a
message or two at once. So each message goes with a 4-byte length in front
(os.writev writes both in one system call, without joining them first), and
the reader keeps what it read past one message for the next. A Unix
datagram socket keeps message boundaries itself: one send, one message, but
a datagram must fit the socket's send buffer, so it has a size limit.

Every wait is a poll with a deadline (select.poll on the descriptor), so a
peer that stops answering is noticed, never waited on for ever. Tried and
measured here, and slower: reading first (non-blocking) and polling only when
nothing was there. A reader that waits then pays three calls (read, poll,
read) instead of two: 9.3 µs against 7.1 µs a 64 B pipe round trip, and
56 µs against 11 µs over TCP.

These four are also what floor.c times in C: the difference between the two
is what Python adds per message.
"""

from __future__ import annotations

import os
import select
import socket
import struct
from pathlib import Path
from typing import Any

from lab.experiments.ipc import wire
from lab.experiments.ipc.links import Context, Link
from lab.experiments.ipc.wire import Endpoint, PeerGone

__all__ = ["LINKS", "DatagramEndpoint", "FdEndpoint"]

LENGTH = struct.Struct("<I")
#: A read asks for up to this much: one system call takes a small message and the next
#: one's start, or a 64 KiB piece of a large one (a pipe's default capacity).
READ_CHUNK = 1 << 16


class FdEndpoint(Endpoint):
    """Length-prefixed messages over a readable and a writable descriptor (may be one socket)."""

    def __init__(self, read_fd: int, write_fd: int, owned: tuple[Any, ...] = ()) -> None:
        self.read_fd, self.write_fd = read_fd, write_fd
        self.owned = owned or (read_fd, write_fd)
        self.buffer = bytearray()
        self.poller = select.poll()
        self.poller.register(read_fd, select.POLLIN)

    def send(self, message: bytes) -> None:
        length = LENGTH.pack(len(message))
        try:
            written = os.writev(self.write_fd, (length, message))
            if written < len(message) + LENGTH.size:  # a signal can cut a write short: the rest
                rest = memoryview(length + message)[written:]
                while rest:
                    rest = rest[os.write(self.write_fd, rest) :]
        except (BrokenPipeError, ConnectionResetError):
            raise PeerGone("the peer hung up") from None

    def _read(self, size: int) -> bytes:
        try:
            chunk = os.read(self.read_fd, size)
        except ConnectionResetError:  # a socket whose peer died with data unread
            chunk = b""
        if not chunk:
            raise PeerGone("the peer hung up")
        return chunk

    def _fill(self, timeout: float) -> bool:
        if not self.poller.poll(timeout * 1000):
            return False
        self.buffer += self._read(READ_CHUNK)
        return True

    def poll(self, timeout: float) -> bytes | None:
        if not self.buffer:  # the usual case in a ping-pong: one read, one whole message
            if not self.poller.poll(timeout * 1000):
                return None
            chunk = self._read(READ_CHUNK)
            if len(chunk) >= LENGTH.size and LENGTH.unpack_from(chunk)[0] == len(chunk) - 4:
                return chunk[LENGTH.size :]
            self.buffer += chunk
        while len(self.buffer) < LENGTH.size:
            if not self._fill(timeout):
                return None
        (size,) = LENGTH.unpack_from(self.buffer)
        end = LENGTH.size + size
        if len(self.buffer) >= end:
            message = bytes(self.buffer[LENGTH.size : end])
            del self.buffer[:end]
            return message
        # A large message: read the rest straight into its own buffer, no joining.
        message = bytearray(size)
        have = len(self.buffer) - LENGTH.size
        message[:have] = self.buffer[LENGTH.size :]
        self.buffer.clear()
        view = memoryview(message)
        while have < size:
            if not self.poller.poll(timeout * 1000 + 1000):  # mid-message: it is coming
                raise PeerGone(f"the peer stopped mid-message ({have} of {size} bytes)")
            try:
                got = os.readv(self.read_fd, [view[have:]])
            except ConnectionResetError:
                got = 0
            if not got:
                raise PeerGone("the peer hung up mid-message")
            have += got
        return message

    def close(self) -> None:
        for thing in dict.fromkeys(self.owned):
            if isinstance(thing, int):
                os.close(thing)
            else:
                thing.close()


class Pipe(Link):
    transport, pattern = "pipe", "pipe"

    def prepare(self, ctx: Context) -> dict[str, Any]:
        to_peer, from_peer = os.pipe(), os.pipe()  # a pipe goes one way: two for a talk
        return {
            **super().prepare(ctx),
            "peer_fds": [to_peer[0], from_peer[1]],
            "own_fds": [from_peer[0], to_peer[1]],
        }

    def pass_fds(self, spec: dict[str, Any]) -> tuple[int, ...]:
        return tuple(spec["peer_fds"])

    def open_peer_end(self, spec: dict[str, Any]) -> Endpoint:
        return FdEndpoint(*spec["peer_fds"])

    def connect(self, spec: dict[str, Any], info: dict[str, Any]) -> Endpoint:
        _close_all(spec.pop("peer_fds"))  # the peer has its copies; holding them hides EOF
        read_fd, write_fd = spec.pop("own_fds")
        return FdEndpoint(read_fd, write_fd)

    def cleanup(self, spec: dict[str, Any]) -> None:
        _close_all(spec.pop("peer_fds", []) + spec.pop("own_fds", []))


class SocketPair(Link):
    """socket.socketpair(): two connected Unix stream sockets, no path, one end inherited."""

    transport, pattern = "socketpair", "stream"

    def prepare(self, ctx: Context) -> dict[str, Any]:
        ours, theirs = socket.socketpair()
        return {**super().prepare(ctx), "peer_fds": [theirs.detach()], "own_fds": [ours.detach()]}

    def pass_fds(self, spec: dict[str, Any]) -> tuple[int, ...]:
        return tuple(spec["peer_fds"])

    def open_peer_end(self, spec: dict[str, Any]) -> Endpoint:
        return _socket_endpoint(socket.socket(fileno=spec["peer_fds"][0]))

    def connect(self, spec: dict[str, Any], info: dict[str, Any]) -> Endpoint:
        _close_all(spec.pop("peer_fds"))
        return _socket_endpoint(socket.socket(fileno=spec.pop("own_fds")[0]))

    cleanup = Pipe.cleanup


def _socket_endpoint(sock: socket.socket) -> FdEndpoint:
    return FdEndpoint(sock.fileno(), sock.fileno(), (sock,))


#: The peer waits this long for the parent to connect after saying ready.
START_ACCEPT_S = 30.0


class UnixStream(Link):
    """The peer listens on a path in the run's directory; the parent connects (timed)."""

    transport, pattern = "unix", "stream"

    def prepare(self, ctx: Context) -> dict[str, Any]:
        return {**super().prepare(ctx), "path": str(ctx.directory / f"{ctx.prefix}.sock")}

    def serve(self, spec, ready) -> None:
        with self.listen(spec) as listener:
            ready(self.address(listener))
            listener.settimeout(START_ACCEPT_S)
            sock, _ = listener.accept()
        sock.settimeout(None)
        self.tune(sock)
        endpoint = _socket_endpoint(sock)
        try:
            wire.serve(endpoint, wire.TIMEOUT_S * 3)
        finally:
            endpoint.close()

    def listen(self, spec: dict[str, Any]) -> socket.socket:
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        listener.bind(spec["path"])
        listener.listen(1)
        return listener

    def address(self, listener: socket.socket) -> dict[str, Any]:
        return {}  # the parent knows the path: it chose it

    def tune(self, sock: socket.socket) -> None:
        """Options both ends set (none for a Unix socket)."""

    def connect(self, spec: dict[str, Any], info: dict[str, Any]) -> Endpoint:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.connect(spec["path"])
        return _socket_endpoint(sock)

    def cleanup(self, spec: dict[str, Any]) -> None:
        Path(spec["path"]).unlink(missing_ok=True)

    def leftovers(self, prefix: str) -> list[str]:
        return socket_files(prefix)


class Tcp(UnixStream):
    """Loopback TCP, TCP_NODELAY on both ends: without it Nagle's algorithm holds a small
    write back until the previous one is acknowledged (RFC 896), and with delayed ACKs
    a ping-pong of small messages can wait tens of milliseconds per turn."""

    transport, pattern = "tcp", "stream"

    def prepare(self, ctx: Context) -> dict[str, Any]:
        return Link.prepare(self, ctx)

    def listen(self, spec: dict[str, Any]) -> socket.socket:
        return socket.create_server(("127.0.0.1", 0))  # port 0: the kernel picks a free one

    def address(self, listener: socket.socket) -> dict[str, Any]:
        return {"port": listener.getsockname()[1]}

    def tune(self, sock: socket.socket) -> None:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def connect(self, spec: dict[str, Any], info: dict[str, Any]) -> Endpoint:
        sock = socket.create_connection(("127.0.0.1", info["port"]), timeout=START_ACCEPT_S)
        sock.settimeout(None)
        self.tune(sock)
        return _socket_endpoint(sock)

    def cleanup(self, spec: dict[str, Any]) -> None:
        """Nothing to remove: a TCP port is no file."""

    def leftovers(self, prefix: str) -> list[str]:
        return []


class DatagramEndpoint(Endpoint):
    """One datagram, one message: the socket keeps the boundaries."""

    def __init__(self, sock: socket.socket, peer_path: str, limit: int) -> None:
        self.sock, self.peer_path, self.limit = sock, peer_path, limit
        self.poller = select.poll()
        self.poller.register(sock.fileno(), select.POLLIN)

    def send(self, message: bytes) -> None:
        try:
            self.sock.sendto(message, self.peer_path)
        except (ConnectionRefusedError, FileNotFoundError):
            raise PeerGone("the peer's socket is gone") from None

    def poll(self, timeout: float) -> bytes | None:
        if not self.poller.poll(timeout * 1000):
            return None
        return self.sock.recv(self.limit + 1)

    def close(self) -> None:
        self.sock.close()


class UnixDatagram(Link):
    """Two bound paths (a datagram socket answers to an address): the peer's and the parent's."""

    transport, pattern = "unix", "dgram"
    # a Unix datagram must fit the socket's send buffer (SO_SNDBUF, net.core.wmem_*)
    limit_why = "SO_SNDBUF"

    def max_size(self) -> int:
        # The kernel reports SO_SNDBUF doubled (socket(7)) and keeps part of it for its own
        # bookkeeping; half of it is what a datagram can surely use.
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as probe:
            return probe.getsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF) // 2

    def prepare(self, ctx: Context) -> dict[str, Any]:
        base = ctx.directory / ctx.prefix
        return {
            **super().prepare(ctx),
            "peer_path": f"{base}.dgram-peer.sock",
            "own_path": f"{base}.dgram-parent.sock",
            "limit": self.max_size(),
        }

    def open_peer_end(self, spec: dict[str, Any]) -> Endpoint:
        return self._bound(spec["peer_path"], spec["own_path"], spec["limit"])

    def connect(self, spec: dict[str, Any], info: dict[str, Any]) -> Endpoint:
        return self._bound(spec["own_path"], spec["peer_path"], spec["limit"])

    @staticmethod
    def _bound(path: str, other: str, limit: int) -> DatagramEndpoint:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        sock.bind(path)
        return DatagramEndpoint(sock, other, limit)

    def cleanup(self, spec: dict[str, Any]) -> None:
        for key in ("peer_path", "own_path"):
            Path(spec[key]).unlink(missing_ok=True)

    def leftovers(self, prefix: str) -> list[str]:
        return socket_files(prefix)


def _close_all(fds: list[int]) -> None:
    for fd in fds:
        os.close(fd)


def socket_files(prefix: str) -> list[str]:
    """Socket files of run `prefix` anywhere under the temporary directory."""
    import tempfile

    root = Path(tempfile.gettempdir())
    return [str(p) for p in root.glob(f"lab-ipc-*/{prefix}*.sock")]


LINKS = (Pipe(), SocketPair(), UnixStream(), UnixDatagram(), Tcp())
