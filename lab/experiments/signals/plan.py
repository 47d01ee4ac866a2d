"""The run's plan: the clock checked, each fact in an interpreter of its own, then each state timed.

run() in __init__.py hands measure() the params. A fact runs in a fresh
interpreter (check_in_child) because its check changes handlers and the
signal mask of its main thread; one that hangs is stopped at FACT_TIMEOUT and
recorded as a fact that did not hold.
"""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from lab.errors import LabError, last_line
from lab.runs import Session

if TYPE_CHECKING:
    from lab.experiments.signals import Params

__all__ = ["FACT_TIMEOUT", "check_in_child", "measure"]

FACT_TIMEOUT = 60.0  # seconds one fact's interpreter may take, its own waits included


def measure(params: Params, session: Session) -> Iterator[dict[str, Any]]:
    import signal

    from lab.experiments.signals.facts import CHILD_CODE
    from lab.experiments.signals.latency import measure_state, record

    _check_clock(session.env)
    session.env["sigrtmin"], session.env["sigrtmax"] = signal.SIGRTMIN, signal.SIGRTMAX
    facts = params.fact if "facts" in params.part else ()
    states = params.state if "latency" in params.part else ()
    total, done = len(facts) + len(states), 0
    for number in facts:
        session.step(done, total, f"fact {number}")
        yield {"part": "facts", **check_in_child(CHILD_CODE, number, params.call_size)}
        done += 1
    for state in states:
        session.step(done, total, f"latency: {state}")
        yield record(state, measure_state(state, params.samples, params.call_size))
        done += 1
    session.step(done, total, "done")


def _check_clock(env: dict[str, Any]) -> None:
    """Latencies subtract two processes' perf_counter readings: one system-wide clock needed."""
    implementation = time.get_clock_info("perf_counter").implementation
    env["perf_counter"] = implementation
    if "CLOCK_MONOTONIC" not in implementation:
        raise LabError(
            f"perf_counter here is {implementation}, not CLOCK_MONOTONIC: "
            "readings of two processes cannot be compared"
        )


def check_in_child(code: str, number: int, call_size: int) -> dict[str, Any]:
    """Fact `number` checked by `code` in a fresh interpreter: its record, or one that
    does not hold with the child's last words (a crash, or no answer in FACT_TIMEOUT)."""
    from lab import children
    from lab.experiments.signals.waits import python

    with python(
        ["-c", code, str(number), str(call_size)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    ) as proc:  # leaving the block closes its pipes, whatever happened
        try:
            out, err = proc.communicate(timeout=FACT_TIMEOUT)
        except subprocess.TimeoutExpired:
            out, err = "", f"no answer within {FACT_TIMEOUT:g} s"
        finally:
            children.stop_popen(proc, 1.0)  # on Ctrl-C too: TERM, a grace, KILL, reaped
    lines = out.strip().splitlines()
    if proc.returncode == 0 and lines:
        return json.loads(lines[-1])
    from lab.experiments.signals.facts import FACTS

    statement, expected, _ = FACTS[number]
    last = last_line(err, f"exit {proc.returncode}")
    return {
        "number": number,
        "fact": statement,
        "expected": expected,
        "observed": last,
        "holds": False,
    }
