"""Facts 1-3 and 15: what fork returns, what the child copies, what it shares, where it belongs.

- 1: one call, two returns (0 in the child, the child's pid in the parent).
- 2: memory is copied: same addresses, separate contents. Shown twice: on a
  Python object, and on a raw page of an anonymous private mapping, the kind
  of mapping the heap and Python's object arenas are made of (mmap(2)
  MAP_PRIVATE: "Updates to the mapping are not visible to other processes").
- 3: descriptors are shared: parent and child move one file offset.
- 15: the child starts in the parent's process group and session; setsid
  takes it out, and out of the controlling terminal too. Read from
  /proc/PID/stat, the kernel's record, not from anything the lab tracks.

Three choices are module-level names, each the one thing its fact depends
on: MAPPING (fact 2's page is private), `child_descriptor` (fact 3's child
writes through the descriptor it inherited) and `leave_session` (fact 15's
child calls setsid). The tests swap each for its opposite (a MAP_SHARED page,
the file reopened by path, no setsid) and the fact must then stop holding:
a check that cannot tell the property from its absence checks nothing.
"""

from __future__ import annotations

import fcntl
import json
import mmap
import os
import tempfile
import termios
from collections.abc import Callable

from lab.experiments.fork import probes
from lab.experiments.fork.probes import Outcome

__all__ = [
    "MAPPING",
    "child_descriptor",
    "fork_returns_twice",
    "leave_session",
    "memory_is_copied",
    "offset_is_shared",
    "session_picture",
    "tty_name",
]


def fork_returns_twice(options: dict) -> Outcome:
    parent = os.getpid()
    got_in_parent, report, _ = probes.run_child(lambda: {"fork_returned": 0, "ppid": os.getppid()})
    expected = "child sees 0 and getppid() == parent; parent sees the child's pid"
    if report is None:
        return Outcome(expected, f"no child reported (fork gave {got_in_parent})", False)
    holds = report["ppid"] == parent and got_in_parent == report["pid"]
    observed = (
        f"child: fork() -> 0, getpid() {report['pid']}, getppid() {report['ppid']}; "
        f"parent {parent}: fork() -> {got_in_parent}"
    )
    picture = {"parent": parent, "child": report["pid"], "child_ppid": report["ppid"]}
    return Outcome(expected, observed, holds, picture)


#: How fact 2's page is mapped: privately, as the heap is. With mmap.MAP_SHARED
#: (what multiprocessing's shared memory uses) both sides would see one page.
MAPPING = mmap.MAP_PRIVATE
PARENT_MARK, CHILD_MARK = b"P", b"C"


def memory_is_copied(options: dict) -> Outcome:
    """Both sides change `box` and `page` after fork; each keeps seeing only its own change."""
    box = {"owner": "parent"}
    page = mmap.mmap(-1, mmap.PAGESIZE, flags=MAPPING)  # -1: anonymous memory, no file
    page[0:1] = PARENT_MARK
    to_child_r, to_child_w = os.pipe()
    to_parent_r, to_parent_w = os.pipe()
    pid = probes.fork()
    if pid == 0:
        code = probes.CHILD_FAILED
        try:
            os.close(to_child_w)
            os.close(to_parent_r)
            box["owner"] = "child"
            page[0:1] = CHILD_MARK
            os.write(to_parent_w, b"changed\n")
            probes.read_line(to_child_r)  # the parent has changed its copies now
            said = f"{box['owner']} {page[0:1].decode()} {id(box)}\n"
            os.write(to_parent_w, said.encode())
            code = probes.CHILD_OK
        finally:
            os._exit(code)
    os.close(to_child_r)
    os.close(to_parent_w)
    try:
        changed = probes.read_line(to_parent_r)
        parent_saw, parent_page = box["owner"], page[0:1]  # after the child's change
        box["owner"] = "parent, changed too"
        page[0:1] = PARENT_MARK.lower()
        os.write(to_child_w, b"go\n")
        answer = probes.read_line(to_parent_r)
    finally:
        os.close(to_child_w)
        os.close(to_parent_r)
        probes.wait_bounded(pid)
        page.close()
    expected = (
        "each side sees only its own change, in a dict (same address, separate pages) "
        "and in a private anonymous page"
    )
    if changed is None or answer is None:
        return Outcome(expected, "the child never reported", False)
    child_saw, child_page, child_id = answer.decode().split()
    holds = (
        parent_saw == "parent"
        and child_saw == "child"
        and parent_page == PARENT_MARK
        and child_page.encode() == CHILD_MARK
    )
    observed = (
        f"after the child's change the parent sees {parent_saw!r} and page byte "
        f"{parent_page.decode()!r}; after the parent's the child sees {child_saw!r} and "
        f"{child_page!r}; id(box) {id(box)} in the parent, {child_id} in the child"
    )
    return Outcome(expected, observed, holds)


CHILD_TEXT = b"written by the child\n"
PARENT_TEXT = b"then the parent\n"


def child_descriptor(fd: int, path: str) -> int:
    """What fact 3's child writes through: the descriptor it inherited, as it is.

    Opening `path` again would make a new open file description with an
    offset of its own (open(2)), and nothing would be shared.
    """
    return fd


def offset_is_shared(options: dict) -> Outcome:
    """The child writes to an inherited descriptor; the parent's offset moves with it."""
    with tempfile.NamedTemporaryFile() as f:
        fd = f.fileno()
        before = os.lseek(fd, 0, os.SEEK_CUR)
        pid, report, _ = probes.run_child(
            lambda: {"wrote": os.write(child_descriptor(fd, f.name), CHILD_TEXT)}
        )
        after = os.lseek(fd, 0, os.SEEK_CUR)  # the parent never wrote
        os.write(fd, PARENT_TEXT)
        content = os.pread(fd, 4096, 0)
    expected = (
        f"the parent's offset moves {before} -> {len(CHILD_TEXT)} with no parent write; "
        "the parent's write lands after the child's"
    )
    if report is None:
        return Outcome(expected, f"no child wrote; offset {before} -> {after}", False)
    holds = after == before + len(CHILD_TEXT) and content == CHILD_TEXT + PARENT_TEXT
    observed = f"offset {before} -> {after} after the child's write; file holds {content!r}"
    picture = {"parent": os.getpid(), "child": report["pid"], "fd": fd}
    picture.update(before=before, after=after, size=len(content))
    return Outcome(expected, observed, holds, picture)


def tty_name(tty_nr: int) -> str:
    """/proc's tty_nr (a device number) as a name: 34816 -> "pts/0", 0 -> "none"."""
    if tty_nr == 0:
        return "none"
    major, minor = (tty_nr >> 8) & 0xFFF, (tty_nr & 0xFF) | ((tty_nr >> 12) & 0xFFF00)
    if 136 <= major <= 143:  # Unix98 pseudo-terminal slaves (devices.txt)
        return f"pts/{(major - 136) * 256 + minor}"
    return f"tty {major}:{minor}"


def _membership() -> dict:
    stat = probes.proc_stat()
    assert stat is not None
    return {k: stat[k] for k in ("pgrp", "session", "tty_nr")}


#: What fact 15's child calls to leave its parent's session (setsid(2)).
leave_session: Callable[[], int] = os.setsid


def session_picture(options: dict) -> Outcome:
    """A session leader with a terminal (a pty) forks; the child compares, then calls setsid.

    The leader is a child of its own: the checklist's process may have no
    terminal at all (the lab runs it in a new session), and "setsid drops the
    controlling terminal" proves nothing where there was none to drop.
    """

    def lead(w: int) -> None:
        os.setsid()  # a session of its own, so it may take a controlling terminal
        _master, slave = os.openpty()
        fcntl.ioctl(slave, termios.TIOCSCTTY, 0)  # make the pty our controlling terminal
        mine = {"leader": os.getpid(), **_membership()}
        _, report, _ = probes.run_child(
            lambda: {"before": _membership(), "sid": leave_session(), "after": _membership()}
        )
        os.write(w, json.dumps({"parent": mine, "child": report}).encode())
        # The pty goes with os._exit. Closing the master ourselves first would
        # hang up our own terminal: SIGHUP to this session, before the report.

    with probes.forked(lead) as (_, r):
        found = probes.loads(probes.read_to_eof(r))
    expected = (
        "the child starts in the parent's group and session with its terminal; "
        "after setsid: group = session = its pid, no terminal"
    )
    if not found or not found["child"]:
        return Outcome(expected, "the child never reported", False)
    parent, child = found["parent"], found["child"]
    before, after = child["before"], child["after"]
    same = all(before[k] == parent[k] for k in ("pgrp", "session", "tty_nr"))
    leads = after["pgrp"] == after["session"] == child["pid"] and after["tty_nr"] == 0
    holds = same and leads and parent["tty_nr"] != 0
    observed = (
        f"parent {parent['leader']}: group {parent['pgrp']}, session {parent['session']}, "
        f"tty {tty_name(parent['tty_nr'])}; child {child['pid']} before setsid: group "
        f"{before['pgrp']}, session {before['session']}, tty {tty_name(before['tty_nr'])}; "
        f"after: group {after['pgrp']}, session {after['session']}, "
        f"tty {tty_name(after['tty_nr'])}"
    )
    picture = {
        "parent": parent["leader"],
        "child": child["pid"],
        "parent_sid": parent["session"],
        "tty": tty_name(parent["tty_nr"]),
        "child_sid_after": after["session"],
        "child_tty_after": tty_name(after["tty_nr"]),
    }
    return Outcome(expected, observed, holds, picture)
