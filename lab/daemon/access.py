"""Can the daemon's user read the lab? Asked of the kernel, as that user, before it starts.

Started as root with `--user nobody`, the harness drops to nobody and then,
run after run, finds and imports experiments: pkgutil lists the folder
lab/experiments/ and importlib reads each module. A checkout nobody can read
(a home folder at 0700, pytest's temporary folders) does not fail loudly:
listing a folder one may not read finds nothing, so the daemon said
"started" and every run failed with "unknown experiment 'fork' (known: )".

Things that do not work: os.access() answers for the real uid (root, who
may read everything); working the answer out from modes misses ACLs and
root-squashed network mounts. So a forked child becomes the user (the same
initgroups, setgid, setuid as the daemon's step 13) and opens every folder
and file of the lab's package; the first it cannot open is sent back, and
the launcher refuses in one line naming it.

The interpreter itself is not checked: the daemon is a fork of the launcher
and has it in memory already (a pyenv Python under a root-only /root is the
common case), so only runs that exec a new interpreter need to read it, and
those are stored as failed with the reason.
"""

from __future__ import annotations

import os
import pwd
from pathlib import Path

from lab.errors import LabError

__all__ = ["check_readable", "first_unreadable"]

#: The child's exit code when it answered (an empty answer: it read everything).
_ANSWERED = 0


def check_readable(user: str | None, root: Path | None = None) -> None:
    """Refuse in one line when `user` cannot read the lab's code (root: the `lab` package)."""
    if user is None or os.geteuid() != 0:
        return  # nobody to become: the daemon runs as whoever started it, who read it all
    root = root or Path(__file__).resolve().parent.parent
    blocked = first_unreadable(user, root)
    if blocked is not None:
        inside = "" if blocked == root else f" (the lab's code is in {root})"
        raise LabError(
            f"--user {user} cannot read {blocked}{inside}: make it readable by {user}, "
            "or install the lab where it can read it"
        )


def first_unreadable(user: str, root: Path) -> Path | None:
    """The first folder or file under `root` (or on the way to it) that `user` cannot open."""
    entry = pwd.getpwnam(user)
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid:  # the launcher: wait for the child's one answer
        os.close(write_end)
        with os.fdopen(read_end, "rb") as answer:
            said = os.fsdecode(answer.read())
        _, status = os.waitpid(pid, 0)
        code = os.waitstatus_to_exitcode(status)
        if code != _ANSWERED:
            raise LabError(f"cannot check what {user} may read: {said or f'exit {code}'}")
        return Path(said) if said else None
    code = 1  # anything unforeseen: the launcher refuses rather than guess
    try:
        os.close(read_end)
        try:
            os.initgroups(user, entry.pw_gid)  # the daemon's own order: groups, gid, uid
            os.setgid(entry.pw_gid)
            os.setuid(entry.pw_uid)
        except OSError as exc:
            os.write(write_end, f"cannot become {user}: {exc}".encode())
        else:
            blocked = _first_blocked(root)
            if blocked is not None:
                os.write(write_end, os.fsencode(blocked))
            code = _ANSWERED
    finally:
        os._exit(code)


def _first_blocked(root: Path) -> Path | None:
    """As the user: every folder from / down to `root` searchable, then all of `root`."""
    for step in [*reversed(root.parents), root]:
        try:
            os.stat(step)
        except PermissionError:
            return step.parent  # it may not be searched, so nothing below it can be seen
    return _unreadable_in(root)


def _unreadable_in(folder: Path) -> Path | None:
    """The first folder that cannot be listed or module that cannot be opened, depth first."""
    try:
        entries = sorted(os.scandir(folder), key=lambda e: e.name)
    except PermissionError:
        return folder
    for entry in entries:
        if entry.is_dir(follow_symlinks=False) and entry.name != "__pycache__":
            found = _unreadable_in(Path(entry.path))
            if found is not None:
                return found
        elif entry.name.endswith(".py"):
            try:
                with open(entry.path, "rb"):
                    pass
            except PermissionError:
                return Path(entry.path)
    return None
