"""fork: what the child gets, and what it does not. Fifteen facts, each checked live.

The talk's fork slide (one program, two processes, `pid == 0` in the child)
grown into what a daemon writer must know. Each fact is a small function that
forks real processes and compares what it expected with what it saw
(lab.experiments.fork.child); plan.py runs the checklist and stores one
record per fact: number, fact, expected, observed, holds, seconds.

The checklist never runs in this process. It forks, and this process may
have threads (the CLI's progress bar, a notebook's kernel, pytest's helpers):
forking a threaded process is the very hazard of facts 5 and 13. So it runs
through lab.interpreters in a child, which is also how `--python 3.12,3.13`
runs it under other interpreters: one code path for both.

Fact 12 needs a real MySQL server: the lab resolves one here (lab.db) and
hands the child its address; without one the fact says "skipped".

Reading map, in order:
    slide.py      the slide: one program, two processes; what goes wrong with it
    probes.py     the one fork primitive every fact uses, bounded waits
    basics.py     facts 1-3 and 15: what fork returns, copies, shares, where the child belongs
    threads.py    facts 4, 5, 13: one thread survives, locks stay locked, 3.12's warning
    lifecycle.py  facts 6-10: how a child ends, zombies, orphans, the wait status
    signals.py    fact 11: signal dispositions across fork and exec
    mysql.py      fact 12: a connection must not cross fork
    platforms.py  fact 14: the start methods, and life without os.fork
    child.py      the checklist lab.interpreters runs
    plan.py       the run: fact 12's server found, the checklist under each interpreter
    plot.py       the checklist, and process diagrams drawn from what was seen
"""

from __future__ import annotations

from dataclasses import dataclass

from lab import interpreters
from lab.experiments.fork import plan
from lab.params import Params as BaseParams
from lab.params import option
from lab.report import Column
from lab.runs import Run, collect

__all__ = ["COLUMNS", "FULL", "NAME", "SUMMARY", "TOUR", "Params", "run"]

NAME = "fork"
SUMMARY = "what a forked child gets and does not: 15 facts checked live"

ALL_FACTS = tuple(range(1, 16))
MYSQL_FACT = 12  # the one fact that needs a MySQL server: plan.py finds one


@dataclass(frozen=True)
class Params(BaseParams):
    fact: tuple[int, ...] = option(
        ALL_FACTS, "which facts to check (1-15)", choices=ALL_FACTS, was=("facts",)
    )
    repeat: int = option(1, "check the list this many times (a flaky fact shows)", minimum=1)
    python: tuple[str, ...] = option((), interpreters.PYTHON_HELP)


FULL = {"repeat": 5}
#: The verdict first; what was expected and seen (long sentences) with --wide.
COLUMNS = [
    Column("number", "#", "d"),
    Column("holds", "holds"),
    Column("python", "python"),
    Column("fact", "fact"),
    Column("seconds", "s", ".3f", wide=True),
    Column("round", "round", "d", wide=True),
    Column("expected", "expected", wide=True),
    Column("observed", "observed", wide=True),
]

TOUR = [
    (
        "**fork: what the child gets.** One call, two returns: 0 in the child, the "
        "child's pid in the parent. The child gets a *copy* of memory, the *same* open "
        "files (one offset between them), only the thread that called fork, every lock "
        "(held or not), the unflushed stdout buffer and the atexit handlers. Each line "
        "below forks real processes and compares what it expected with what it saw.",
        {"fact": (1, 2, 3, 4, 5, 6, 7)},
    ),
    (
        "**How a child ends.** Until its parent waits, an exited child is a zombie; an "
        "orphan is adopted (here by a subreaper); the wait status says exit code or "
        "signal. Handlers survive fork but not exec, and a MySQL connection must not "
        "cross fork at all: connect in the child.",
        {"fact": (8, 9, 10, 11, 12)},
    ),
    (
        "**The platform.** Python 3.12+ warns when a threaded process forks; the start "
        "methods and what the lab says where os.fork does not exist; and the session "
        "picture a daemon changes with setsid. Try `daemonlab run fork --python 3.11,3.13`.",
        {"fact": (13, 14, 15)},
    ),
]


def run(params: Params = Params(), progress=None, sink=None) -> Run:
    return collect(NAME, params, plan.measure, progress=progress, sink=sink)
