"""The experiment's end of the daemon's notify socket: playing systemd's part.

The experiment binds a datagram socket in its own temporary folder and every
daemon any manager starts reports there (daemon.py): READY=1 when it is
ready, STOPPING=1 when a stop signal came. Readiness is therefore what the
daemon says, not a guess from outside ("a process with that name exists",
"the pidfile changed"): a restart is finished when the new daemon says so.

Each message carries the daemon's own CLOCK_BOOTTIME stamp, so a latency is
the daemon's stamp minus the experiment's kill stamp, without the delay of
this process waking up to read the datagram.
"""

from __future__ import annotations

import os
import select
import socket
import time
from dataclasses import dataclass
from pathlib import Path

__all__ = ["Listener", "Notice", "started_ns"]


@dataclass(frozen=True)
class Notice:
    """One datagram from a daemon, parsed: READY=1 or STOPPING=1 and its fields."""

    state: str  # "READY" or "STOPPING"
    pid: int
    stamp_ns: int
    fields: dict[str, str]

    @classmethod
    def parse(cls, data: bytes) -> Notice:
        fields = dict(line.split("=", 1) for line in data.decode().splitlines() if "=" in line)
        state = next(k for k, v in fields.items() if v == "1" and k in ("READY", "STOPPING"))
        return cls(state, int(fields["MAINPID"]), int(fields["STAMP_NS"]), fields)


class Listener:
    """A bound AF_UNIX datagram socket; `next()` waits for the next notice."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
        try:
            self.sock.bind(str(path))
        except OSError:
            self.sock.close()
            raise
        self.seen: list[Notice] = []  # every notice so far, in arrival order

    def next(self, timeout: float, state: str = "READY", not_pid: int | None = None) -> Notice:
        """The next notice in `state` (from a pid other than `not_pid`), or TimeoutError."""
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([self.sock], [], [], left)[0]:
                raise TimeoutError(f"no {state} from the daemon within {timeout:g} s")
            notice = Notice.parse(self.sock.recv(4096))
            self.seen.append(notice)
            if notice.state == state and notice.pid != not_pid:
                return notice

    def drain(self) -> list[Notice]:
        """Every notice already waiting, without blocking."""
        found = []
        while select.select([self.sock], [], [], 0)[0]:
            notice = Notice.parse(self.sock.recv(4096))
            self.seen.append(notice)
            found.append(notice)
        return found

    def close(self) -> None:
        self.sock.close()
        self.path.unlink(missing_ok=True)

    def __enter__(self) -> Listener:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def started_ns(pid: int) -> int | None:
    """When `pid` was forked, on CLOCK_BOOTTIME (/proc/PID/stat field 22, in clock ticks:
    10 ms here). Not psutil's create_time: that adds the boot time as whole seconds of
    wall clock, an error of up to a second against any monotonic stamp."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return int(fields[19]) * 1_000_000_000 // os.sysconf("SC_CLK_TCK")
