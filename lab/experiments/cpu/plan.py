"""The run's plan: every part under each interpreter in a child, its verdict said under the tables.

run() in __init__.py hands measure() the params; measure() sends child.py
what it needs (payload), counts the steps ahead for the progress bar, and
after each interpreter says whether its scaling showed the point
(verdict.py) and which subinterpreter API ran, or why none did.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import asdict
from typing import TYPE_CHECKING, Any

from lab import interpreters
from lab.experiments.cpu import child, crossing, verdict
from lab.runs import Session

if TYPE_CHECKING:
    from lab.experiments.cpu import Params

__all__ = ["WORK_MODULE", "measure", "payload"]

WORK_MODULE = "lab.experiments.cpu.child"


def payload(params: Params) -> dict[str, Any]:
    """What the measuring child gets (see child.py): the params it needs, as JSON."""
    return {
        "parts": list(params.part),
        "work": params.work,
        "workers": list(params.workers),
        "strategies": list(params.strategy),
        "start_methods": list(params.start_method),
        "repeat": params.repeat,
        "pings": params.pings,
        "fast_switch": params.fast_switch,
    }


def measure(params: Params, session: Session) -> Iterator[dict[str, Any]]:
    chosen = interpreters.chosen(params.python)
    session.env["interpreters"] = [asdict(i) for i in chosen]
    sent = payload(params)
    convoy_cases = 4 if "interpreters" in params.strategy else 3
    per_interpreter = (
        (len(child.scaling_plan(sent)) if "scaling" in params.part else 0)
        + (convoy_cases if "convoy" in params.part else 0)
        + (len(crossing.FACTS) if "crossing" in params.part else 0)
    )
    total, done = per_interpreter * len(chosen), 0
    for interpreter in chosen:
        scaling = []
        for record in interpreters.stream_measured(interpreter, WORK_MODULE, sent, params.timeout):
            done += 1
            session.step(done, total, f"{interpreter.label}: {_describe(record)}")
            if record["part"] == "scaling" and not record.get("skipped"):
                scaling.append(record)
            yield record
        noisy = verdict.point(scaling)  # None where the records show the point
        if noisy:
            session.too_noisy(f"{interpreter.label}: {noisy}")
        _say_subinterpreters(session, interpreter, params)


def _say_subinterpreters(session: Session, interpreter, params: Params) -> None:
    """One line per interpreter under the tables: which API ran them, or why none did."""
    if "interpreters" not in params.strategy and "crossing" not in params.part:
        return
    api = interpreter.subinterpreters
    said = f"subinterpreters by {api}" if api else f"no subinterpreters in {interpreter.version}"
    session.note(f"{interpreter.label}: {said}")


def _describe(record: dict[str, Any]) -> str:
    if record["part"] == "crossing":
        return f"fact {record['number']}"
    if record["part"] == "convoy":
        return f"convoy, {record['case']} at {record['switch_interval_ms']} ms"
    method = f" ({record['start_method']})" if record.get("start_method") else ""
    return f"{record['strategy']}{method} x{record['workers']}"
