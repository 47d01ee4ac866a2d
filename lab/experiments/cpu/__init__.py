"""cpu: forking against threading on CPU-bound work, the convoy effect, and the GIL's other exits.

The talk's "forking vs threading in the main method" slide, measured. The same
pure-Python countdown is split across W workers run as threads, as raw forked
processes and as a multiprocessing pool (fork, spawn or forkserver). Under the
GIL only one thread runs Python bytecode at a time, so threads give no
speedup however many cores there are; processes each have their own
interpreter and scale up to the cores this process may use. A second part
puts an I/O-bound thread beside a CPU-bound one: the convoy effect (bpo-7946).

Today's Python has two more exits from the GIL. Subinterpreters with a GIL
each (PEP 684, 3.12; PEP 734's concurrent.interpreters, 3.14) are the
`interpreters` strategy: one per worker, each run from its own thread, in
one process; the convoy part runs its spinner in one too. What may cross
between them is the third part, `crossing`: six facts checked live. The
other exit is a free-threaded build (PEP 703: python3.13t), where plain
threads scale; `--python python3.13t` runs every part there, and each
record says `gil: disabled`.

The measured code (child.py, with scaling.py and convoy.py) is standard
library only and always runs in a child interpreter through
lab.interpreters, this one by default or each one named with `--python`.
That is the one code path: the CLI's progress bar thread or a Jupyter
kernel's threads never share a process with the forks being timed.

Reading map, in order:
    slide.py    the slide: one countdown in two threads, then in two forks; what goes wrong
    scaling.py  the work (a countdown) split across threads, forks and pools, timed
    convoy.py   an echo thread beside a spinning one: the wait for the GIL
    crossing.py what crosses between subinterpreters, and what does not: six facts
    child.py    what lab.interpreters runs: both parts, facts about the interpreter
    verdict.py  whether a run shows the point, or is too noisy to
    plan.py     the run: each interpreter in turn, its steps counted, its verdict said
    plot.py     speedup against workers, and echo latency beside a spinner
    (lab/subinterpreters.py: the one face over 3.12's, 3.13's and 3.14's APIs)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from lab import interpreters
from lab.experiments.cpu import plan
from lab.experiments.cpu.scaling import START_METHODS, STRATEGIES
from lab.params import Params as _Params
from lab.params import option
from lab.report import Column
from lab.runs import Run, collect

__all__ = ["COLUMNS", "FULL", "NAME", "SUMMARY", "TOUR", "Params", "run"]

NAME = "cpu"
SUMMARY = "forking vs threading on CPU-bound work: the GIL, processes, and the convoy effect"

PARTS = ("scaling", "convoy", "crossing")


@dataclass(frozen=True)
class Params(_Params):
    workers: tuple[int, ...] = option((1, 2, 4, 8), "workers sharing the work", minimum=1)
    work: int = option(6_000_000, "countdown steps in total, split across the workers", minimum=1)
    strategy: tuple[str, ...] = option(
        STRATEGIES,
        "how the work is split (sequential always runs: the baseline)",
        choices=STRATEGIES,
        was=("strategies",),
    )
    start_method: tuple[str, ...] = option(
        START_METHODS, "multiprocessing start methods for the pool strategy", choices=START_METHODS
    )
    repeat: int = option(3, "rounds of each strategy and worker count (median)", minimum=1)
    pings: int = option(200, "echo round trips per convoy case", minimum=1)
    fast_switch: float = option(1e-4, "the short switch interval for the convoy, seconds", above=0)
    part: tuple[str, ...] = option(PARTS, "which parts to run", choices=PARTS, was=("parts",))
    python: tuple[str, ...] = option((), interpreters.PYTHON_HELP)
    timeout: float = option(600.0, "seconds one interpreter's run may take", above=0)

    def __post_init__(self) -> None:
        super().__post_init__()
        interpreters.chosen(self.python)  # a missing interpreter is bad input: refuse it now


FULL: dict[str, Any] = {
    "work": 100_000_000,  # Beazley's countdown(100M)
    "workers": (1, 2, 4, 8, 16),
    "repeat": 5,
    "pings": 1000,
}

#: Which interpreter made the record (`--python` runs several side by side).
_PYTHON = Column("python", "python")
#: One table per part. Scaling: the speedup first, then the work phase's median
#: wall time and its spread over the repeats (max - min, in % of the median), then
#: what starting the workers cost; convoy: the echo round trip per case. A table
#: fits 80 columns when its cells' widths add up to 79 less 3 a column (rich's
#: padding and separator): what is left goes behind --wide.
COLUMNS = {
    "scaling": [
        _PYTHON,
        Column("strategy", "strategy"),
        Column("start_method", "start"),
        Column("workers", "W", "d"),
        Column("speedup", "speedup", ".2f"),
        Column("wall_s", "wall s", ".3f"),
        Column("spread_pct", "±%", ".0f"),
        Column("start_s", "start s", ".3f"),
        Column("cpu_s", "cpu s", ".3f", wide=True),
        *(Column(f"wall_s_{m}", f"{m} s", ".3f", wide=True) for m in ("min", "max")),
        Column("usable_cores", "cores", "d", wide=True),
        Column("gil", "GIL", wide=True),
        Column("interpreters_api", "subinterpreters", wide=True),
        Column("note", "note", wide=True),
    ],
    "convoy": [
        _PYTHON,
        Column("case", "echo"),
        Column("switch_interval_ms", "switch ms", ".2f"),
        *(Column(f"{q}_ms", f"{q} ms", ".3f") for q in ("median", "p99", "max")),
        # the spinner's loops, in millions a second (the price of switching); the header
        # is the unit alone, to keep the table within 80 columns
        Column("spinner_mloops_s", "Mloop/s", ".2f"),
        Column("pings", "pings", "d", wide=True),
        Column("gil", "GIL", wide=True),
    ],
    "crossing": [
        Column("number", "#", "d"),
        Column("holds", "holds"),
        _PYTHON,
        Column("fact", "fact"),
        Column("seconds", "s", ".3f", wide=True),
        Column("expected", "expected", wide=True),
        Column("observed", "observed", wide=True),
    ],
}

TOUR = [
    (
        "**Forking vs threading in the main method.** The same pure-Python countdown "
        "(Beazley's GIL talk) split across 1, 2 and 4 workers. Threads share one GIL: "
        "their speedup stays near 1 whatever the cores. Processes (raw `os.fork`, or a "
        "`multiprocessing` pool) each have their own interpreter and scale up to "
        "the cores this process may use (`--wide`: cores). `start s` is what creating the "
        "workers cost, kept out of `wall s`: see how much dearer `spawn` is than `fork`; "
        "`±%` is how far the repeats scattered.",
        {"part": ["scaling"], "workers": [1, 2, 4]},
    ),
    (
        "**The convoy effect** (bpo-7946). A thread answers a socket echo. Alone, a round "
        "trip takes microseconds; beside a thread spinning on Python code it waits for the "
        "GIL, about one switch interval (`sys.getswitchinterval()`, 5 ms). "
        "`sys.setswitchinterval(1e-4)` shortens the wait, at the spinner's expense.",
        {"part": ["convoy"]},
    ),
    (
        "Other interpreters: `daemonlab run cpu --python 3.12,3.13` runs the same measured "
        "code under each and stores the records side by side. There the `interpreters` "
        "strategy gives each worker a subinterpreter with its own GIL (PEP 684), and "
        "`--part crossing` checks what may pass between them; a free-threaded build "
        "(`python3.13t`) is where threads finally scale.",
        None,
    ),
]


def run(params: Params = Params(), progress=None, sink=None) -> Run:
    return collect(NAME, params, plan.measure, progress=progress, sink=sink)
