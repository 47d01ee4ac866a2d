"""What the lab's state machines share: a state changes only along a move its table names.

Each machine keeps its states as a StrEnum (stored and printed as their
values) and its moves as a table beside them, each edge with a comment
saying what causes it: a run (lab/runs.py), the harness
(lab/daemon/harness.py), the prefork master and its workers' scoreboard
slots, the job worker's daemon. `check` is the guard every change of state
goes through, as supervisor's ProcessStates go through change_state() and
_assertInState() (supervisor/process.py): a move the table does not name is
a bug, said at the line that tried it instead of as a wrong state later.
"""

from __future__ import annotations

from collections.abc import Collection
from enum import StrEnum
from typing import TypeVar

__all__ = ["check"]

S = TypeVar("S", bound=StrEnum)


def check(moves: Collection[tuple[S, S]], before: S, after: S, what: str) -> S:
    """`after`, when `moves` names before -> after; ValueError naming `what` otherwise."""
    if (before, after) not in moves:
        raise ValueError(f"{what} cannot go from {before} to {after}")
    return after
