"""The pidfile: a lock held for the daemon's whole life, with the pid written in it.

TLPI's createPidFile (filelock/create_pid_file.c) is the model. The lock is the
truth, not the number in the file:

- A file left behind by a daemon killed with -9 is not "stale-checked" by
  asking whether its pid is alive: pids are reused, so a live pid proves
  nothing. The kernel dropped the dead process's fcntl lock, so the file is
  simply unlocked and the next start takes it. No manual clean-up.
- A second start fails while the first holds the lock, whatever the file says.

Things that do not work (why this module is shaped the way it is):

- O_CREAT|O_EXCL "create or fail": a crash leaves the file, and every start
  after it fails until a human deletes it.
- flock(2) instead of fcntl(2): fine on a local disk, but not what TLPI and
  most daemons use, and F_GETLK (which pid holds the lock) exists for fcntl only.
- Locking in the launcher before forking: fcntl locks belong to a process and
  are not inherited by fork(2), so the lock must be taken by the final daemon.
- Closing *any* descriptor of the pidfile drops the process's fcntl lock (POSIX
  record-lock semantics), so the daemon opens the file once and keeps that
  descriptor; nothing else in the daemon may open the pidfile.
- Following symlinks: a pidfile in a directory others can write could be a
  symlink planted to make a root daemon truncate /etc/shadow; O_NOFOLLOW refuses.
"""

from __future__ import annotations

import errno
import fcntl
import os
import struct
from dataclasses import dataclass
from pathlib import Path

from lab.errors import LabError

__all__ = ["AlreadyRunning", "PidFile", "holder"]

#: errnos that mean "someone else holds the lock" (POSIX allows either).
LOCKED_ERRNOS = {errno.EAGAIN, errno.EACCES}

# struct flock on Linux x86_64 and aarch64: short l_type, short l_whence,
# off_t l_start, off_t l_len, pid_t l_pid, padded to 32 bytes.
_FLOCK = "hhqqi4x"


class AlreadyRunning(LabError):
    """The pidfile is locked by a live daemon."""


@dataclass
class PidFile:
    """An open, locked pidfile; keep the object (and its descriptor) for the daemon's life."""

    path: Path
    fd: int

    @classmethod
    def acquire(cls, path: str | os.PathLike[str]) -> PidFile:
        """Open without following symlinks, lock, then truncate and write "<pid>\\n".

        The order matters: truncating before the lock is ours would wipe the
        running daemon's pid from its file on every failed second start.
        """
        path = Path(path)
        flags = os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC
        try:
            fd = os.open(path, flags, 0o644)
        except OSError as exc:
            if exc.errno == errno.ELOOP:
                raise LabError(f"pidfile {path} is a symlink: refusing to follow it") from None
            raise LabError(f"cannot open pidfile {path}: {exc.strerror}") from None
        try:
            fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            os.close(fd)
            if exc.errno in LOCKED_ERRNOS:
                pid = holder(path)
                who = f"pid {pid}" if pid else "another process"
                raise AlreadyRunning(f"already running: {path} is locked by {who}") from None
            raise
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        return cls(path, fd)

    def release(self) -> None:
        """Close the descriptor, which drops the lock. The file stays: unlocked means free.

        Unlinking it would open a race: a new daemon may already have opened
        (and locked) the same name between our unlink and its write.
        """
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1


def holder(path: str | os.PathLike[str]) -> int | None:
    """The pid holding the lock on `path` (F_GETLK asks the kernel), or None if unlocked.

    Never call this inside the daemon that holds the lock: closing this second
    descriptor would drop the daemon's own lock (see the module notes)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except FileNotFoundError:
        return None
    try:
        # F_GETLK with a write lock: "would this conflict, and with whom?" A
        # read-only descriptor may ask about a write lock; it may not take one.
        query = struct.pack(_FLOCK, fcntl.F_WRLCK, os.SEEK_SET, 0, 0, 0)
        answer = fcntl.fcntl(fd, fcntl.F_GETLK, query)
        l_type, _, _, _, l_pid = struct.unpack(_FLOCK, answer)
        return None if l_type == fcntl.F_UNLCK else l_pid
    finally:
        os.close(fd)
