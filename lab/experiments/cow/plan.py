"""The run's plan: one fresh interpreter per structure, under each interpreter asked for.

run() in __init__.py resolves the interpreters first (a missing one is
refused, not stored), then measure() runs child.py once per structure: each
parent holds only what it built, so one structure's pages never blur another's.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from lab import interpreters
from lab.runs import Session

if TYPE_CHECKING:
    from lab.experiments.cow import Params

__all__ = ["MODULE", "PART_TIMEOUT_S", "measure"]

MODULE = "lab.experiments.cow.child"

#: Seconds one structure's batches may take under one interpreter.
PART_TIMEOUT_S = 600.0


def measure(
    params: Params, session: Session, pythons: list[interpreters.Interpreter]
) -> Iterator[dict[str, Any]]:
    """One fresh interpreter per structure: each parent holds only what it built."""
    session.env["interpreters"] = [p.label for p in pythons]
    total, done = len(pythons) * len(params.structure), 0
    for python in pythons:
        for structure in params.structure:
            session.step(done, total, f"{python.version}: {params.size:,} {structure}")
            payload = {
                "structure": structure,
                "size": params.size,
                "children": params.children,
                "roles": list(params.role),
                "freeze": list(params.freeze),
            }
            yield from interpreters.stream_measured(python, MODULE, payload, PART_TIMEOUT_S)
            done += 1
    session.step(total, total, "done")
