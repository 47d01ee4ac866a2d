"""The measured part of `cow`: forked children that only read, and what they copy. Stdlib only.

Runs in a child interpreter (lab.interpreters, under this Python or the one
`--python` names). It builds one large structure, then for each gc.freeze
setting forks children that step in lockstep with it over pipes:

  fork     every child has just been forked and done nothing yet
  read     the readers iterate every object (and every object inside it)
  collect  the readers and the collectors run gc.collect()

After each step the parent reads every child's /proc/PID/smaps_rollup from
outside: Private_Dirty is what copy-on-write has copied for that child, the
memory it stopped sharing. The control child never does anything.

Why reading writes: every time CPython touches an object it increments and
then decrements the object's reference count, which lives in the object's
header, in the same page as the object: the first write to a page copies it.
gc.collect() writes too: it keeps its bookkeeping (gc_refs) in a header in
front of every container it examines, and untracks what it can. gc.freeze()
(3.7, bpo-31558) moves every object into a permanent generation the collector
never examines; it cannot stop the reference counts. Immortal objects (PEP
683, 3.12) have a reference count that is never written: None, small ints,
and, on the first 3.12 releases (3.12.1 here), every interned string; gh-113993
made strings interned at run time mortal again in 3.13 and in a later 3.12
bugfix release. So the `interned` structure tells those interpreters apart, and
each record says whether its elements were immortal (read, not assumed).

Things that do not measure what they seem to:
- Letting the parent's collector run while children are measured: a
  collection in the parent writes to every container's header, the parent
  gets fresh copies, and each child's pages become "private" without the child
  doing anything. The parent runs with gc.disable() from the start (the
  Instagram recipe also starts with it), so only the children's explicit
  gc.collect() collects.
- One child that reads and then collects: the read has already copied the
  pages the collector would write to, so the collect step looks free. The
  collectors collect without reading first.
"""

from __future__ import annotations

__all__ = ["ROLES", "STEPS", "STRUCTURES", "measure"]

import gc
import os
import select
import sys
from collections.abc import Callable, Iterator
from typing import Any

from lab import procfs

CHILD_OK = 0  # the child followed every step and was told to leave
CHILD_FAILED = 70  # EX_SOFTWARE: the child's Python raised
DONE = b"d"  # a child's "I have finished this step"
STEP_BYTES = {"read": b"R", "collect": b"C"}
STEPS = ("fork", "read", "collect")
WAIT_S = 120.0  # the longest one step may take in a child (a million objects, a busy machine)


# -- the structures a parent builds ---------------------------------------------------------
def _lists(size: int) -> list[Any]:
    """Small lists of an int and a str: mortal objects, and containers the collector examines."""
    return [[i, str(i)] for i in range(size)]


def _tuples(size: int) -> list[Any]:
    """Tuples of an int and a str: the collector untracks them on its first look (a write)."""
    return [(i, str(i)) for i in range(size)]


def _interned(size: int) -> list[Any]:
    """Interned strings: immortal on early 3.12 releases, mortal on 3.11 and 3.13+ (gh-113993)."""
    return [sys.intern(f"key-{i}") for i in range(size)]


def _small_ints(size: int) -> list[Any]:
    """Only None and small ints (-5..256): one shared object each, immortal from 3.12."""
    return [None if i % 2 else i % 257 for i in range(size)]


STRUCTURES: dict[str, Callable[[int], list[Any]]] = {
    "lists": _lists,
    "tuples": _tuples,
    "interned": _interned,
    "small_ints": _small_ints,
}


def _is_immortal(obj: object) -> bool:
    """Read, not assumed: sys._is_immortal (3.14), else the 3.12+ refcount of 2**32 - 1."""
    probe = getattr(sys, "_is_immortal", None)
    if probe is not None:
        return bool(probe(obj))
    return sys.version_info >= (3, 12) and sys.getrefcount(obj) >= 2**31


# -- what a child does at each step -----------------------------------------------------------
def _read(data: list[Any]) -> None:
    """Touch every object and every object inside it, changing nothing (as Python sees it)."""
    for item in data:
        if isinstance(item, (list, tuple)):
            for _ in item:
                pass


def _collect(data: list[Any]) -> None:
    gc.collect()


def _nothing(data: list[Any]) -> None:
    """The control: whatever it dirties, the lockstep itself dirties."""


ROLES: dict[str, dict[bytes, Callable[[list[Any]], None]]] = {
    "control": {},
    "reader": {STEP_BYTES["read"]: _read, STEP_BYTES["collect"]: _collect},
    "collector": {STEP_BYTES["collect"]: _collect},
}


def _child(role: str, data: list[Any], commands: int, done: int) -> None:
    """The child's life: say DONE, then do each step it is told until EOF."""
    actions = ROLES[role]
    os.write(done, DONE)
    while True:
        step = os.read(commands, 1)
        if not step:  # the parent closed its end: the run is over (or the parent died)
            return
        actions.get(step, _nothing)(data)
        os.write(done, DONE)


# -- the parent's side -------------------------------------------------------------------------
class _Child:
    """One forked child and the parent's ends of its two pipes."""

    def __init__(self, role: str, index: int, pid: int, commands: int, done: int) -> None:
        self.role, self.index, self.pid = role, index, pid
        self.commands, self.done = commands, done

    def tell(self, step: str) -> None:
        os.write(self.commands, STEP_BYTES[step])

    def await_done(self) -> None:
        ready, _, _ = select.select([self.done], [], [], WAIT_S)
        if not ready:
            raise RuntimeError(f"{self.role} child {self.pid} did not finish a step")
        if os.read(self.done, 1) != DONE:
            raise RuntimeError(f"{self.role} child {self.pid} died")


def _spawn_child(role: str, index: int, data: list[Any], parent_fds: list[int]) -> _Child:
    commands_read, commands_write = os.pipe()
    done_read, done_write = os.pipe()
    pid = os.fork()
    if pid == 0:
        code = CHILD_FAILED
        try:
            # Close every end the parent keeps (its own and earlier children's):
            # a child holding a write end would never see EOF on its commands.
            for fd in [*parent_fds, commands_write, done_read]:
                os.close(fd)
            _child(role, data, commands_read, done_write)
            code = CHILD_OK
        finally:
            os._exit(code)  # never return into the parent's generator
    os.close(commands_read)
    os.close(done_write)
    parent_fds += [commands_write, done_read]
    return _Child(role, index, pid, commands_write, done_read)


def _reap(children: list[_Child]) -> None:
    """Close the commands (EOF tells each child to leave), then wait for every one."""
    failed = []
    for child in children:
        os.close(child.commands)
        os.close(child.done)
    for child in children:
        _, status = os.waitpid(child.pid, 0)
        if os.waitstatus_to_exitcode(status) != CHILD_OK:
            failed.append(child.pid)
    if failed:
        raise RuntimeError(f"children {failed} did not exit cleanly")


def _batch(
    data: list[Any], frozen: bool, roles: list[str], per_role: int
) -> Iterator[dict[str, Any]]:
    children: list[_Child] = []
    parent_fds: list[int] = []
    first: dict[int, int] = {}
    try:
        for role in roles:
            for index in range(per_role):
                sys.stdout.flush()
                children.append(_spawn_child(role, index, data, parent_fds))
        for step in STEPS:
            if step != "fork":
                for child in children:
                    child.tell(step)
            for child in children:
                child.await_done()
            # Measure only once every child is idle again, so no child copies
            # pages while another is being read.
            for child in children:
                mem = procfs.smaps_rollup_kb(child.pid)
                first.setdefault(child.pid, mem["Private_Dirty"])
                yield {
                    "frozen": frozen,
                    "role": child.role,
                    "child": child.index,
                    "step": step,
                    "private_dirty_mb": mem["Private_Dirty"] / 1024,
                    "unshared_mb": (mem["Private_Dirty"] - first[child.pid]) / 1024,
                    "uss_mb": mem["Uss"] / 1024,
                    "pss_mb": mem["Pss"] / 1024,
                    "rss_mb": mem["Rss"] / 1024,
                }
    finally:
        _reap(children)


def measure(payload: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """Build one structure, then one batch of children per gc.freeze setting."""
    was_enabled = gc.isenabled()
    gc.disable()  # before building: see the module doc (the parent must never collect)
    try:
        data = STRUCTURES[payload["structure"]](payload["size"])
        facts = {
            "structure": payload["structure"],
            "objects": len(data),
            "immortal": _is_immortal(data[-1]),
            "parent_rss_mb": procfs.memory_kb()["VmRSS"] / 1024,
        }
        for frozen in payload["freeze"]:
            if frozen:
                gc.freeze()  # every object so far into the permanent generation
            try:
                for record in _batch(data, frozen, payload["roles"], payload["children"]):
                    yield {**facts, **record}
            finally:
                if frozen:
                    gc.unfreeze()
    finally:
        if was_enabled:
            gc.enable()
