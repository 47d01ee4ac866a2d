"""sd_notify(3) without libsystemd: one datagram to $NOTIFY_SOCKET.

A new-style daemon (`man 7 daemon`) does not fork at all: systemd starts it
in the foreground and waits for READY=1 (Type=notify) before it counts the
service as started; STOPPING=1 says a stop has begun. When NOTIFY_SOCKET is
not set (supervisord, honcho, a terminal) there is nobody to tell and
`notify` does nothing. The address may be a path or, with a leading "@", a
name in the abstract namespace.
"""

from __future__ import annotations

import os
import socket

__all__ = ["notify"]


def notify(state: str) -> bool:
    """Send `state` ("READY=1", "STOPPING=1", "STATUS=...") if systemd asked; True if sent."""
    address = os.environ.get("NOTIFY_SOCKET")
    if not address:
        return False
    if address.startswith("@"):
        address = "\0" + address[1:]
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
        try:
            sock.sendto(state.encode(), address)
        except OSError:
            return False  # the manager went away; a daemon does not die of it
    return True
