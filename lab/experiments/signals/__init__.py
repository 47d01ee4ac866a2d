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
    plan.py       the run: the clock checked, each fact in a fresh interpreter, each state timed
    table.py      `daemonlab signals`: the platform's signals as `kill -l` numbers them
    plot.py       latency per state, as boxes on a log scale
"""

from __future__ import annotations

from dataclasses import dataclass

from lab.experiments.signals import plan
from lab.experiments.signals.latency import STATES as _STATE_MEANINGS
from lab.params import Params as _Params
from lab.params import option
from lab.report import Column
from lab.runs import Run, collect

__all__ = ["COLUMNS", "FULL", "NAME", "SUMMARY", "TOUR", "Params", "run"]

NAME = "signals"
SUMMARY = "trap TERM, HUP, USR1: nine facts about handlers checked live, delivery latency timed"

FACT_NUMBERS = tuple(range(1, 10))
STATES = tuple(_STATE_MEANINGS)  # in the order the table and the plot show them
PARTS = ("facts", "latency")


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
    return collect(NAME, params, plan.measure, progress=progress, sink=sink)
