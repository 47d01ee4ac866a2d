"""The suite's turns under xdist (the top conftest.py's _turn): an alone test runs by itself.

flock(2) locks belong to an open file description, so threads that each open the
lock files contend as xdist's worker processes do.
"""

from __future__ import annotations

import fcntl
import os
import threading

from conftest import _turn
from tests.conftest import wait_until


def _taking(shared, alone: bool, inside: threading.Event, leave: threading.Event):
    def take() -> None:
        with _turn(shared, alone=alone):
            inside.set()
            leave.wait(30)

    thread = threading.Thread(target=take)
    thread.start()
    return thread


def _gate_held(shared) -> bool:
    with open(shared / "gate.lock", "a") as probe:
        try:
            fcntl.flock(probe, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        return False


def _waiting_on(path) -> bool:
    """Someone is blocked in flock(2) on `path`: /proc/locks marks a waiter with "->"."""
    inode = f":{os.stat(path).st_ino} "
    with open("/proc/locks") as locks:
        return any("->" in line and inode in line for line in locks)


def test_shared_turns_overlap_and_an_alone_one_waits_for_them_and_goes_first(tmp_path):
    events = {name: (threading.Event(), threading.Event()) for name in "abcd"}
    a = _taking(tmp_path, False, *events["a"])
    b = _taking(tmp_path, False, *events["b"])
    assert events["a"][0].wait(10) and events["b"][0].wait(10), "two shared turns at once"
    c = _taking(tmp_path, True, *events["c"])  # alone: waits for a and b to leave
    wait_until(lambda: _gate_held(tmp_path), 10, "the alone turn shutting the gate")
    d = _taking(tmp_path, False, *events["d"])  # shared, but after an alone one asked
    events["a"][1].set()
    a.join()
    # b still holds the room: the alone turn must be queued on it, not inside.
    wait_until(lambda: _waiting_on(tmp_path / "room.lock"), 10, "the alone turn at the room")
    assert not events["c"][0].is_set(), "the alone turn began beside a shared one"
    events["b"][1].set()
    b.join()
    assert events["c"][0].wait(10), "the alone turn began once the room was empty"
    assert not events["d"][0].is_set(), "a shared turn slipped in beside the alone one"
    events["c"][1].set()
    c.join()
    assert events["d"][0].wait(10), "the shared turn began after the alone one"
    events["d"][1].set()
    d.join()
