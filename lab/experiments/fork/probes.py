"""The few process tools every fork fact uses: one fork primitive, bounded waits, /proc readers.

Every fact forks through `fork()` below, never os.fork directly, so a test can
swap in a fork that does not fork and watch the fact stop holding: a
demonstration that still "holds" without forking demonstrates nothing.

Every wait here has a deadline. A child that does not finish in time is
killed and reaped, so a broken demonstration fails instead of hanging.
"""

from __future__ import annotations

import json
import os
import select
import signal
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from lab import children
from lab.procfs import proc_stat

__all__ = [
    "CHILD_FAILED",
    "CHILD_OK",
    "EXEC_FAILED",
    "Outcome",
    "WAIT_S",
    "fork",
    "forked",
    "loads",
    "proc_stat",
    "read_line",
    "read_to_eof",
    "run_child",
    "wait_bounded",
]

# Exit codes of the facts' children (sysexits.h where one fits).
CHILD_OK = 0
CHILD_FAILED = 70  # EX_SOFTWARE: the child's body raised
EXEC_FAILED = 127  # the shell's "command not found": exec itself failed

#: How long a fact waits for a child that should answer in milliseconds.
WAIT_S = 3.0


@dataclass
class Outcome:
    """What one fact found: the expectation, the observation, and whether they agree.

    `picture` holds the numbers a diagram needs (pids, offsets, states), flat.
    """

    expected: str
    observed: str
    holds: bool | None  # None: not checked here (skipped, with the reason in observed)
    picture: dict[str, Any] = field(default_factory=dict)


def fork() -> int:
    """os.fork, reached through this module so tests can replace it."""
    return os.fork()


def read_to_eof(fd: int, timeout: float = WAIT_S) -> bytes:
    """Everything written to pipe `fd` until every writer closed it, or the deadline."""
    deadline = time.monotonic() + timeout
    chunks = []
    while True:
        left = deadline - time.monotonic()
        if left <= 0 or not select.select([fd], [], [], left)[0]:
            break
        chunk = os.read(fd, 65536)
        if not chunk:
            break
        chunks.append(chunk)
    return b"".join(chunks)


def read_line(fd: int, timeout: float = WAIT_S) -> bytes | None:
    """One newline-terminated message from pipe `fd` (read byte by byte: nothing over-read)."""
    deadline = time.monotonic() + timeout
    line = bytearray()
    while not line.endswith(b"\n"):
        left = deadline - time.monotonic()
        if left <= 0 or not select.select([fd], [], [], left)[0]:
            return None
        byte = os.read(fd, 1)
        if not byte:
            return None
        line += byte
    return bytes(line)


def wait_bounded(pid: int, timeout: float = WAIT_S) -> int | None:
    """waitpid with a deadline: the raw status, or None if `pid` is not our child.

    Past the deadline the child is killed (it is stuck: every fact's child
    finishes in milliseconds) and then reaped, so nothing is ever left behind.
    The raw status, not the exit code: fact 10 is about decoding it.
    """
    try:
        status = children.wait_status(pid, timeout)
        if status is None:
            children.signal_pids([pid], signal.SIGKILL)
            status = children.wait_status(pid, WAIT_S)  # KILL cannot be caught: at once
        return status
    except ChildProcessError:
        return None


@contextmanager
def forked(body: Callable[[int], int | None]) -> Iterator[tuple[int, int]]:
    """Fork; the child runs body(w) and leaves by os._exit; the parent gets (pid, r).

    Fork discipline: the parent's branch returns at once; the child's runs in
    try/finally and always ends in os._exit, with body's exit code (CHILD_OK
    for None) or CHILD_FAILED if it raised, so it never returns into the
    checklist. `w` is the write end of a pipe whose read end `r` the parent
    reads; after the block the parent closes `r` and reaps the child (a
    no-op if the block already did).
    """
    r, w = os.pipe()
    pid = fork()
    if pid == 0:
        code = CHILD_FAILED
        try:
            os.close(r)
            code = body(w) or CHILD_OK
        finally:
            os._exit(code)
    os.close(w)
    try:
        yield pid, r
    finally:
        os.close(r)
        wait_bounded(pid)


def run_child(
    body: Callable[[], dict[str, Any]], timeout: float = WAIT_S
) -> tuple[int, dict[str, Any] | None, int | None]:
    """Fork; the child runs `body` and sends back its dict (plus its own pid).

    Returns (pid fork gave the parent, the child's report or None, raw wait
    status or None). A report is None when no child of ours ran the body:
    that is how every fact notices a fork that did not fork.
    """

    def report_back(w: int) -> None:
        os.write(w, json.dumps({"pid": os.getpid(), **body()}).encode())

    with forked(report_back) as (pid, r):
        data = read_to_eof(r, timeout)
        status = wait_bounded(pid, timeout)
    return pid, loads(data), status


def loads(data: bytes) -> Any:
    """A child's JSON report, or None if it sent none (or half of one)."""
    try:
        return json.loads(data) if data else None
    except ValueError:
        return None
