"""The fork checklist: fifteen facts about fork, each checked by forking real processes.

This package is the checklist's measured part (see lab.interpreters): standard
library only (pymysql for fact 12 where the interpreter has it), run in a
child process of its own under whichever Python `--python` names. Its own
process matters: the facts fork, and forking from a process with threads (the
CLI's progress bar, a Jupyter kernel, pytest's helpers) is itself fact 5.

    measure({"facts": [1, 5, 12], "mysql": {...} | None}) -> one record per fact

The facts live by theme: basics (1-3, 15), threads (4, 5, 13), lifecycle
(6-10), signals (11), mysql (12), platforms (14).
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator
from typing import Any, NamedTuple

from lab.experiments.fork import basics, lifecycle, mysql, platforms, signals, threads
from lab.experiments.fork.probes import Outcome

__all__ = ["FACTS", "Fact", "check", "measure"]

#: The checklist process's exit code if a forked child ever returns into it.
ESCAPED_CHILD = 71  # EX_OSERR


class Fact(NamedTuple):
    number: int
    text: str
    check: Callable[[dict], Outcome]


FACTS = {
    f.number: f
    for f in [
        Fact(
            1,
            "fork returns 0 in the child, the child's pid in the parent",
            basics.fork_returns_twice,
        ),
        Fact(2, "memory is copied: neither side sees the other's changes", basics.memory_is_copied),
        Fact(3, "open descriptors are shared, with one file offset", basics.offset_is_shared),
        Fact(4, "only the thread that called fork exists in the child", threads.only_caller_thread),
        Fact(
            5, "a lock held by another thread stays locked in the child", threads.lock_stays_locked
        ),
        Fact(
            6,
            "unflushed stdout is printed twice when stdout is a pipe",
            lifecycle.stdout_printed_twice,
        ),
        Fact(
            7,
            "atexit runs again in a child ending with sys.exit, not os._exit",
            lifecycle.atexit_runs_again,
        ),
        Fact(
            8, "an exited child is a zombie until the parent waits", lifecycle.zombie_until_waited
        ),
        Fact(9, "an orphan is re-parented to a subreaper (or init)", lifecycle.orphan_is_adopted),
        Fact(10, "the wait status tells an exit code from a signal", lifecycle.exit_status_decoded),
        Fact(
            11,
            "handlers survive fork, not exec; ignored survives exec; pending does not",
            signals.signals_across_fork_and_exec,
        ),
        Fact(
            12,
            "a MySQL connection shared across fork corrupts the protocol",
            mysql.connection_across_fork,
        ),
        Fact(
            13,
            "3.12+ warns when a multi-threaded process forks; 3.11 is silent",
            threads.threaded_fork_warning,
        ),
        Fact(
            14,
            "the start methods offered, the default, and no os.fork",
            platforms.offered_start_methods,
        ),
        Fact(
            15,
            "the child shares group and session; setsid leaves both and the tty",
            basics.session_picture,
        ),
    ]
}


def _picture(values: dict[str, Any]) -> str | None:
    """The numbers a diagram needs, as one flat "key=value ..." string (None: no picture).

    Values never hold a space (one becomes "_"), so the string splits back apart.
    """
    items = (f"{k}={str(v).replace(' ', '_')}" for k, v in values.items())
    return " ".join(items) if values else None


def check(number: int, options: dict[str, Any]) -> dict[str, Any]:
    """Check one fact; a fact that raises is reported as not holding, with the error."""
    fact = FACTS[number]
    started = time.perf_counter_ns()
    try:
        outcome = fact.check(options)
    except Exception as exc:
        outcome = Outcome("(see the fact)", f"error: {type(exc).__name__}: {exc}", False)
    return {
        "number": number,
        "fact": fact.text,
        "expected": outcome.expected,
        "observed": outcome.observed,
        "holds": outcome.holds,
        "seconds": (time.perf_counter_ns() - started) / 1e9,
        "picture": _picture(outcome.picture),
    }


def measure(payload: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """The measured part's entry point (lab.interpreters runs it in a child)."""
    owner = os.getpid()
    for number in payload.get("facts") or sorted(FACTS):
        record = check(number, payload)
        if os.getpid() != owner:
            # A forked child returned into the checklist: a bug in a fact. It must
            # not go on writing records as if it were the checklist.
            os._exit(ESCAPED_CHILD)
        yield record
