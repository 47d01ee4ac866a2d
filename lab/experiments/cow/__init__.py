"""Copy-on-write and reference counts: forked children that only read still copy.

A preforking server builds its data once and forks workers that share it page
by page, copy-on-write. Under CPython the sharing does not last: reading an
object writes its reference count, and the garbage collector writes its own
bookkeeping into every container it examines. Measured from outside, in the
children's /proc/PID/smaps_rollup (child.py, standard library only, so
`--python` runs it under other CPythons side by side):

  the parent builds `size` objects (small lists, tuples, interned strings, or
  references to None and small ints), then per gc.freeze setting forks a
  control child (does nothing), readers (iterate everything, then
  gc.collect()) and collectors (only gc.collect()), and measures every child's
  Private_Dirty after each step: fork, read, collect.

The lesson: reading is writing under reference counting; gc.freeze() in the
parent (Instagram's recipe, bpo-31558) stops the collector's writes, not the
reference counts'; immortal objects (PEP 683, 3.12) are never written.

Reading map, in order:
    slide.py  the slide: a child that only reads still copies; what goes wrong with it
    child.py  the parent's data, the children that read or collect, their private pages
    plan.py   the run: one fresh interpreter per structure, under each interpreter asked for
    plot.py   private MB per child and step, with and without gc.freeze
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

from lab import interpreters
from lab.experiments.cow import plan
from lab.params import Params as _Params
from lab.params import option
from lab.report import Column
from lab.runs import Run, collect

__all__ = ["COLUMNS", "FULL", "NAME", "SUMMARY", "TOUR", "Params", "run"]

NAME = "cow"
SUMMARY = "copy-on-write: what forked children that only read stop sharing, with/without gc.freeze"

STRUCTURES = ("lists", "tuples", "interned", "small_ints")
ROLES = ("control", "reader", "collector")

#: What each child copied since fork first; the kernel's other figures with --wide.
COLUMNS = [
    Column("python", "python"),
    Column("structure", "structure"),
    Column("immortal", "immortal"),
    Column("frozen", "gc.freeze"),
    Column("role", "child"),
    Column("step", "step"),
    Column("unshared_mb", "copied MB", ".1f"),
    Column("private_dirty_mb", "private MB", ".1f", wide=True),
    Column("pss_mb", "PSS MB", ".1f", wide=True),
    Column("uss_mb", "USS MB", ".1f", wide=True),
    Column("child", "#", "d", wide=True),
]


@dataclass(frozen=True)
class Params(_Params):
    structure: tuple[str, ...] = option(
        ("lists", "interned", "small_ints"),
        "what the parent builds",
        choices=STRUCTURES,
        was=("structures",),
    )
    size: int = option(1_000_000, "objects in the structure", minimum=1)
    children: int = option(1, "children per role", minimum=1)
    role: tuple[str, ...] = option(ROLES, "which children to fork", choices=ROLES, was=("roles",))
    freeze: tuple[bool, ...] = option(
        (False, True), "without and/or with gc.freeze() in the parent before fork"
    )
    python: tuple[str, ...] = option((), interpreters.PYTHON_HELP)


FULL = {"structure": STRUCTURES, "size": 3_000_000, "children": 3}

TOUR = [
    (
        "**Reading is writing.** The parent builds a million small lists and forks "
        "three children: a control that does nothing, a reader that iterates every "
        "object, a collector that runs `gc.collect()`. `copied MB` is what each "
        "child has copied since fork. The reader copies nearly every page: each "
        "object's reference count lives in its header. Without `gc.freeze()` the "
        "collector copies the pages of every list it examines; with it, almost nothing.",
        {"structure": ("lists",)},
    ),
    (
        "**Immortal objects.** A list of a million interned strings: on the first 3.12 "
        "releases they are immortal (PEP 683) and a reader copies nothing; on 3.11, and "
        "on 3.13 where strings interned at run time became mortal again (gh-113993), it "
        "copies them all (the `immortal` column says which). A list "
        "of references to None and small ints stays shared everywhere: there are only "
        "a few hundred of them, on a few pages. Try `--python 3.11,3.12`.",
        {"structure": ("interned", "small_ints"), "role": ("control", "reader")},
    ),
]


def run(params: Params = Params(), progress=None, sink=None) -> Run:
    # Resolved before the run begins: a missing interpreter is refused, not stored.
    pythons = interpreters.chosen(params.python)
    measure = functools.partial(plan.measure, pythons=pythons)
    return collect(NAME, params, measure, progress=progress, sink=sink)
