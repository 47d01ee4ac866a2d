"""Readiness: the launcher exits 0 only once the daemon holds its pidfile and runs.

`man 7 daemon` step 14-15: the original process waits on a pipe created
before the first fork; the daemon writes to it when it is ready, and only
then does the launcher exit. unicorn's launcher does the same and exits 1
with "master failed to start" otherwise.

The pitfall this avoids: python-daemon's DaemonContext exits the launcher in
its first fork, before the pidfile is taken; a second start, a bad config or a
failed privilege drop then fails in a process nobody is watching, after the
shell was already told 0.

The protocol is one line on the pipe: "READY <pid>" or "ERROR <why>". End of
file with no line means the daemon died before it could say anything (its log
may know more).
"""

from __future__ import annotations

import os
import select
import time
from dataclasses import dataclass

__all__ = ["LaunchResult", "ReadyPipe", "wait_for_daemon"]

#: How long a launcher waits for the daemon's word before it gives up.
DEFAULT_TIMEOUT = 30.0


@dataclass
class ReadyPipe:
    """Both ends of the readiness pipe; each side closes the end it does not use."""

    read_fd: int
    write_fd: int

    @classmethod
    def create(cls) -> ReadyPipe:
        # O_CLOEXEC: an experiment the daemon later execs must not hold the
        # write end, or the launcher would wait on it for the daemon's life.
        r, w = os.pipe2(os.O_CLOEXEC)
        return cls(r, w)

    # -- the daemon's side -------------------------------------------------------
    def ready(self) -> None:
        """Say READY (with our pid) and close: the launcher may now exit 0."""
        self._say(f"READY {os.getpid()}")

    def failed(self, why: str) -> None:
        """Say why we cannot run, in one line, for the launcher to print."""
        self._say("ERROR " + " ".join(why.split()))

    def _say(self, line: str) -> None:
        if self.write_fd < 0:
            return
        try:
            os.write(self.write_fd, (line + "\n").encode())
        except BrokenPipeError:
            pass  # the launcher is gone (killed): nobody to tell, the daemon carries on
        finally:
            self.close_write()

    def close_write(self) -> None:
        if self.write_fd >= 0:
            os.close(self.write_fd)
            self.write_fd = -1

    def close_read(self) -> None:
        if self.read_fd >= 0:
            os.close(self.read_fd)
            self.read_fd = -1


@dataclass(frozen=True)
class LaunchResult:
    ok: bool
    pid: int | None
    message: str


def wait_for_daemon(pipe: ReadyPipe, timeout: float = DEFAULT_TIMEOUT) -> LaunchResult:
    """The launcher's side: read the daemon's one line, or EOF, or time out."""
    pipe.close_write()  # else our own write end keeps EOF from ever coming
    data = b""
    deadline = time.monotonic() + timeout
    try:
        while b"\n" not in data:
            left = deadline - time.monotonic()
            if left <= 0:
                return LaunchResult(False, None, f"daemon did not report ready within {timeout:g}s")
            readable, _, _ = select.select([pipe.read_fd], [], [], left)
            if not readable:
                continue
            chunk = os.read(pipe.read_fd, 4096)
            if not chunk:
                break
            data += chunk
    finally:
        pipe.close_read()
    line = data.decode(errors="replace").strip()
    if line.startswith("READY "):
        return LaunchResult(True, int(line.split()[1]), "ready")
    if line.startswith("ERROR "):
        return LaunchResult(False, None, line[len("ERROR ") :])
    return LaunchResult(False, None, "daemon exited before it was ready (see its log)")
