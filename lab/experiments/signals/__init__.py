"""signals: trap TERM, HUP, USR1. What a Python signal handler is, checked live and timed.

The talk's slide: `trap` a signal, send it with `kill -SIGTERM <pid>`, list
them with `kill -l` (here: `daemonlab signals`). This experiment checks nine
facts a daemon's signal handling rests on, each by running real processes,
threads and signals (the facts: facts.py and the modules it names), then
measures how long a signal takes from a sender process to the first
instruction of the handler with the receiver's main thread in different
states (latency.py).

Every fact runs in a fresh interpreter of its own, not in this process: a
check changes handlers and the signal mask of its main thread, and this
process may be a notebook kernel (not single-threaded) or the daemon harness
(whose TERM handler must stay its own). A check that hangs is killed at its
timeout and recorded as a fact that did not hold.

Reading map, in order:
    slide.py      the slide: a TERM handler, and what goes wrong with it
    send.py       the four ways a signal leaves (kill, a thread, a group, the terminal's key)
    waits.py      waits that always end, children that die with their parent
    facts.py      the registry of facts, and how one is checked in a fresh interpreter
    handlers.py   facts 1-5 and 7: what a Python handler is, inside one process
    processes.py  facts 6, 8, 9: signals between processes
    latency.py    delivery latency per receiver state
    table.py      `daemonlab signals`: the platform's signals as `kill -l` numbers them
    plot.py       latency per state, as boxes on a log scale
"""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from lab.errors import LabError, last_line
from lab.experiments.signals.latency import STATES as _STATE_MEANINGS
from lab.params import Params as _Params
from lab.params import option
from lab.report import Column
from lab.runs import Run, Session, collect

__all__ = ["COLUMNS", "FULL", "NAME", "SUMMARY", "TOUR", "Params", "run"]

NAME = "signals"
SUMMARY = "trap TERM, HUP, USR1: nine facts about handlers checked live, delivery latency timed"

FACT_NUMBERS = tuple(range(1, 10))
STATES = tuple(_STATE_MEANINGS)  # in the order the table and the plot show them
PARTS = ("facts", "latency")
_FACT_TIMEOUT = 60.0  # seconds one fact's interpreter may take, its own waits included


@dataclass(frozen=True)
class Params(_Params):
    part: tuple[str, ...] = option(PARTS, "which parts to run", choices=PARTS)
    fact: tuple[int, ...] = option(
        FACT_NUMBERS, "which facts to check", choices=FACT_NUMBERS, was=("facts",)
    )
    state: tuple[str, ...] = option(
        STATES,
        "what the receiver's main thread is doing: "
        + "; ".join(f"{name}: {meaning}" for name, meaning in _STATE_MEANINGS.items()),
        choices=STATES,
        was=("states",),
    )
    samples: int = option(20, "signals timed per state", minimum=1)
    call_size: int = option(
        10**7,
        "N in the long C call sum(range(N)) (10**7: ~0.1 s here; the signal comes 5 ms in)",
        minimum=10**6,
    )


FULL = {"samples": 100, "call_size": 10**8}

#: One table per part: the facts (verdict first; the evidence with --wide), and the
#: latency per state (the median first; quartiles and the fastest with --wide).
COLUMNS = {
    "facts": [
        Column("number", "#", "d"),
        Column("holds", "holds"),
        Column("fact", "fact"),
        Column("expected", "expected", wide=True),
        Column("observed", "observed", wide=True),
    ],
    "latency": [
        Column("state", "receiver state"),
        *(Column(f"{q}_ms", f"{q} ms", ".3f") for q in ("median", "p99", "max")),
        Column("samples", "samples", "d"),
        *(Column(f"{q}_ms", f"{q} ms", ".3f", wide=True) for q in ("min", "p25", "p75")),
    ],
}

TOUR = [
    (
        "**Signals.** A daemon is steered by signals: TERM to stop, HUP to reload, USR1 "
        "to report. `daemonlab signals` lists every signal of this machine with its "
        "default action; `kill -l` numbers them the same way. In Python a handler is not "
        "an interrupt: CPython's C handler only notes the signal, and the main thread runs "
        "your Python handler at its next bytecode boundary. The nine facts below follow "
        "from that, each checked live.",
        {"part": ("facts",)},
    ),
    (
        "**How long does a signal take?** From `kill` in one process to the first line of "
        "the handler in another: a few hundredths of a millisecond when the receiver "
        "sleeps, waits in select or runs Python; the whole rest of the call when it is "
        "inside one long C call (`sum(range(N))`), while `set_wakeup_fd`'s byte still "
        "arrives at once. That is why a daemon's handler only records, and its main "
        "loop acts.",
        {"part": ("latency",), "samples": 10},
    ),
]


def run(params: Params = Params(), progress=None, sink=None) -> Run:
    return collect(NAME, params, _measure, progress=progress, sink=sink)


def _measure(params: Params, session: Session) -> Iterator[dict[str, Any]]:
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
        yield {"part": "facts", **_check_in_child(CHILD_CODE, number, params.call_size)}
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


def _check_in_child(code: str, number: int, call_size: int) -> dict[str, Any]:
    from lab import children
    from lab.experiments.signals.waits import python

    with python(
        ["-c", code, str(number), str(call_size)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    ) as proc:  # leaving the block closes its pipes, whatever happened
        try:
            out, err = proc.communicate(timeout=_FACT_TIMEOUT)
        except subprocess.TimeoutExpired:
            out, err = "", f"no answer within {_FACT_TIMEOUT:g} s"
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
