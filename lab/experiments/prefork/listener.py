"""The listening socket: bound once, then shared by every process that serves.

This is the whole trick of a preforking server. The master binds one socket
and every worker it forks inherits the same open socket (one kernel object,
one accept queue): the kernel hands each waiting connection to whichever
worker calls accept() first. Nothing is proxied and nobody balances load.

The same socket outlives its master. On USR2 the master forks a child that
execs a fresh interpreter with the socket's descriptor left open across
exec and its number in LAB_PREFORK_FD (Unicorn says UNICORN_FD, gunicorn
GUNICORN_FD, systemd LISTEN_FDS): the new master and its workers accept
from the very queue the old ones do, so no connection is refused while one
generation hands over to the next. gunicorn gets it the same way, as
`--bind fd://N`.

The other side of the same fact: connections still waiting in the queue
when the last process holding the socket closes it are reset by the
kernel. A stop loses them; a USR2 handover does not, because the new
master holds the socket before the old one lets go.
"""

from __future__ import annotations

import errno
import os
import socket

from lab.errors import LabError

__all__ = ["BACKLOG", "FD_ENV", "bind", "for_exec", "inherited"]

#: The descriptor a re-executed master finds its listening socket on.
FD_ENV = "LAB_PREFORK_FD"

#: The accept queue: a burst of connects waits here instead of being refused.
#: 1024 is Unicorn's default; Linux caps it at net.core.somaxconn (4096 since 5.4).
BACKLOG = 1024


def bind(host: str, port: int) -> socket.socket:
    """A TCP socket listening on host:port (0: the kernel picks a free port).

    SO_REUSEADDR lets a restarted server bind while connections of the old
    one are still in TIME_WAIT; on Linux it never lets two servers listen on
    one port, so "already in use" still means someone else serves there.
    """
    try:
        family = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0][0]
    except socket.gaierror as exc:
        raise LabError(f"--host {host!r}: {exc.strerror}") from None
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(BACKLOG)
    except OSError as exc:
        sock.close()
        if exc.errno == errno.EADDRINUSE:
            raise LabError(
                f"{host}:{port} is already in use (another server listens there): "
                "stop it or choose another --port"
            ) from None
        if exc.errno == errno.EACCES:
            raise LabError(
                f"{host}:{port}: permission denied (ports below 1024 need root)"
            ) from None
        if exc.errno == errno.EADDRNOTAVAIL:
            raise LabError(f"--host {host}: not an address of this machine") from None
        raise
    return sock


def inherited() -> socket.socket | None:
    """The socket a USR2 re-exec left us, or None when we start fresh (and must bind)."""
    raw = os.environ.pop(FD_ENV, None)  # popped: our own children must not think they inherit it
    if raw is None:
        return None
    fd = int(raw)
    sock = socket.socket(fileno=fd)  # family and type are read from the descriptor itself
    os.set_inheritable(fd, False)  # ours now; only the next USR2 passes it on, explicitly
    return sock


def for_exec(sock: socket.socket) -> dict[str, str]:
    """Leave `sock` open across the exec to come; the environment that names it.

    Python opens every descriptor close-on-exec (PEP 446): without this the
    new master would start with no socket at all.
    """
    os.set_inheritable(sock.fileno(), True)
    return {FD_ENV: str(sock.fileno())}
