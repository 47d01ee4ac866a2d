"""The facts `signals` checks live: a registry, and how one fact is checked.

Every fact is a small function that runs real threads, processes and signals
and returns what it observed and whether the fact held. The experiment runs
each in a fresh interpreter started for it alone (`CHILD_CODE N CALL_SIZE`):
it owns that main thread, its handlers and its signal mask, and whatever it
breaks dies with it. The facts themselves live by subject:
handlers.py (1-5, 7: a handler inside one process) and processes.py
(6, 8, 9: signals between processes).

Rules every check keeps: handlers only record (append to a list, write to a
pipe), never log or work; every wait has a timeout; every signal goes out
through lab.experiments.signals.send, so a test can silence it and watch the
fact fail.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from typing import Any

__all__ = ["CHILD_CODE", "FACTS", "check", "fact", "main"]

Check = Callable[[int], tuple[str, bool]]  # call_size -> (observed, holds)
#: number -> (the fact, what should be seen, the check)
FACTS: dict[int, tuple[str, str, Check]] = {}
#: What a fresh interpreter runs to check one fact (argv: N CALL_SIZE). Not
#: `-m` this module: run as __main__ it would be a second copy with its own,
#: empty FACTS, next to the one the fact modules register into.
CHILD_CODE = "from lab.experiments.signals.facts import main; main()"


def fact(number: int, statement: str, expected: str) -> Callable[[Check], Check]:
    """Register a check as fact `number`."""

    def register(check: Check) -> Check:
        FACTS[number] = (statement, expected, check)
        return check

    return register


def check(number: int, call_size: int) -> dict[str, Any]:
    """Run fact `number` here; a check that crashes is a fact that did not hold."""
    statement, expected, run = FACTS[number]
    try:
        observed, holds = run(call_size)
    except Exception as exc:  # the record says what broke; the other facts still run
        observed, holds = f"{type(exc).__name__}: {exc}", False
    return {
        "number": number,
        "fact": statement,
        "expected": expected,
        "observed": observed,
        "holds": holds,
    }


def main() -> None:
    """In the fresh interpreter: check fact argv[1] with call size argv[2], print its record."""
    print(json.dumps(check(int(sys.argv[1]), int(sys.argv[2]))))


# The fact modules register themselves through `fact` above, so they come last.
from lab.experiments.signals import handlers, processes  # noqa: E402, F401
