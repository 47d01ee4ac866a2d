"""Fact 11: signal dispositions across fork and exec, and pending signals across fork.

fork copies the whole disposition table: a handler in the parent is a
handler in the child. exec cannot keep a handler (the code it points to is
gone with the old program), so caught signals go back to their default;
ignored ones stay ignored, which is why a daemon resets every disposition
before it execs anything (man 7 daemon). A signal pending in the parent is
not pending in the child: the child starts with an empty pending set.

Evidence is the kernel's: SigCgt, SigIgn and ShdPnd in /proc/PID/status, the
bit masks of caught, ignored and process-wide pending signals; after exec
the new program (cat) prints its own status, so nothing Python does at
start-up can blur the picture.
"""

from __future__ import annotations

import os
import signal

from lab import procfs
from lab.experiments.fork import probes
from lab.experiments.fork.probes import Outcome

__all__ = ["signals_across_fork_and_exec"]

CAUGHT = signal.SIGUSR1  # given a handler in the parent
IGNORED = signal.SIGUSR2  # set to SIG_IGN in the parent
CAT = "/bin/cat"


def _has(mask: str, signum: int) -> bool:
    """Is `signum` set in a /proc/PID/status signal mask (hex, bit signum-1)?"""
    return bool(int(mask, 16) >> (signum - 1) & 1)


def _status_after_exec() -> dict[str, str]:
    """The status of a program exec'd by a forked child: cat printing /proc/self/status."""

    def exec_cat(w: int) -> int:
        os.dup2(w, 1)
        try:
            os.execv(CAT, [CAT, "/proc/self/status"])
        except OSError:
            pass
        return probes.EXEC_FAILED  # reached only if exec failed

    with probes.forked(exec_cat) as (_, r):
        return procfs.parse_status(probes.read_to_eof(r).decode())


def signals_across_fork_and_exec(options: dict) -> Outcome:
    delivered = []

    def record(signum, frame) -> None:  # handlers only record
        delivered.append(signum)

    def in_child() -> dict:
        caught = signal.getsignal(CAUGHT) is record and _has(procfs.proc_status()["SigCgt"], CAUGHT)
        os.kill(os.getpid(), CAUGHT)  # the inherited handler runs in the child
        return {"handler": caught, "ran": CAUGHT in delivered}

    old_caught = signal.signal(CAUGHT, record)
    old_ignored = signal.signal(IGNORED, signal.SIG_IGN)
    try:
        _, forked, _ = probes.run_child(in_child)
        status = _status_after_exec()
        # A pending signal: blocked, then sent. The child reads its own pending sets.
        signal.pthread_sigmask(signal.SIG_BLOCK, {CAUGHT})
        try:
            os.kill(os.getpid(), CAUGHT)
            parent_pending = CAUGHT in signal.sigpending()
            _, pend, _ = probes.run_child(
                lambda: {
                    "pending": CAUGHT in signal.sigpending(),
                    "shdpnd": _has(procfs.proc_status()["ShdPnd"], CAUGHT),
                }
            )
        finally:
            signal.signal(CAUGHT, signal.SIG_IGN)  # setting SIG_IGN discards the pending one
            signal.pthread_sigmask(signal.SIG_UNBLOCK, {CAUGHT})
    finally:
        signal.signal(CAUGHT, old_caught)
        signal.signal(IGNORED, old_ignored)
    expected = (
        "fork: USR1 handler inherited and runs; exec: USR1 back to default, USR2 still "
        "ignored; a signal pending in the parent is not pending in the child"
    )
    if forked is None or pend is None or "SigCgt" not in status:
        return Outcome(expected, "a child never reported", False)
    after_exec_caught = _has(status["SigCgt"], CAUGHT)
    after_exec_ignored = _has(status["SigIgn"], IGNORED)
    holds = (
        forked["handler"]
        and forked["ran"]
        and not after_exec_caught
        and after_exec_ignored
        and parent_pending
        and not pend["pending"]
        and not pend["shdpnd"]
    )
    observed = (
        f"after fork: USR1 handler {'kept' if forked['handler'] else 'lost'}, "
        f"{'ran' if forked['ran'] else 'did not run'}; after exec (cat's SigCgt/SigIgn): "
        f"USR1 {'caught' if after_exec_caught else 'default'}, USR2 "
        f"{'ignored' if after_exec_ignored else 'default'}; USR1 pending in the parent: "
        f"{parent_pending}, in the child: {pend['pending'] or pend['shdpnd']}"
    )
    return Outcome(expected, observed, bool(holds))
