"""Where the server and the load generator run: on cores of their own where there are two.

On a 2-core machine the load generator competes with the server it
measures: wrk spinning on the core a worker wanted costs that worker its
turn, and the figure measures the contest, not the server. So the lab pins
them apart with sched_setaffinity(2): the load on the last usable core, the
server (master, workers, gunicorn, all its children: affinity is inherited
by fork and kept across exec) on the others. One core: nothing to pin, both
share it, and every record says so (`placement`).

The price on two cores: the server has one. The cpu app then cannot show
what processes buy over threads under the GIL (two cores of Python at
once); `--pin no` lets server and load share both cores, and compete.

The pin is set in the child itself before it execs the real program (a
three-line trampoline), because Popen has no affinity argument and its
preexec_fn is unsafe in a process with threads (the CLI's progress bar has
one). Setting it from outside after the start would be too late for
threads and children the program makes at once (wrk's, gunicorn's).
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass

__all__ = ["Placement", "pinned", "plan"]

_TRAMPOLINE = (
    "import os, sys\n"
    "os.sched_setaffinity(0, {int(c) for c in sys.argv[1].split(',')})\n"
    "os.execvp(sys.argv[2], sys.argv[2:])\n"
)


@dataclass(frozen=True)
class Placement:
    server: tuple[int, ...]  # () means "not pinned"
    load: tuple[int, ...]
    why: str = ""  # why nothing is pinned

    def describe(self) -> str:
        if not self.server:
            return f"shared ({self.why})"
        return f"server cpu {_cpus(self.server)}, load cpu {_cpus(self.load)}"


def plan(pin: bool = True) -> Placement:
    """The load on the last usable core, the server on the rest; unpinned on one core."""
    usable = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else []
    if not pin:
        return Placement((), (), "not pinned: --pin no")
    if len(usable) < 2:
        return Placement((), (), "one usable core: not pinned")
    return Placement(tuple(usable[:-1]), (usable[-1],))


def pinned(argv: list[str], cpus: tuple[int, ...]) -> list[str]:
    """`argv`, run on `cpus` (unchanged when `cpus` is empty)."""
    if not cpus:
        return argv
    return [sys.executable, "-c", _TRAMPOLINE, _cpus(cpus), *argv]


def _cpus(cpus: tuple[int, ...]) -> str:
    return ",".join(map(str, cpus))
