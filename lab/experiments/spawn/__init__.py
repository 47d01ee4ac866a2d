"""What one worker costs: creating and reaping it, as the parent grows, and in memory.

The talk's "forking vs threading" slide says a thread is cheap and a process
is not. Measured three ways, each in a fresh child interpreter
(child.py, standard library only, so `--python` runs it under other
CPythons side by side):

  create  one worker created and reaped, `repeat` times, by each method:
          threading.Thread, os.fork + os._exit, os.posix_spawn(/bin/true),
          subprocess.run(/bin/true), multiprocessing fork / forkserver / spawn,
          and a subinterpreter with its own GIL (PEP 684, 3.12+: created, its
          first call, destroyed; "no subinterpreters" on older Pythons).
          Median, p95 and p99 latency per method.
  rss     the same for os.fork (and posix_spawn and a thread, for contrast)
          while the parent holds about 30 MB, 500 MB, 2 GB: fork copies the
          parent's page tables (VmPTE), so its cost grows with the parent;
          posix_spawn borrows the parent's memory until exec, and a thread
          shares it, so theirs do not.
  memory  many idle workers at once: the RSS each thread adds against its
          8 MiB stack reservation (virtual, touched lazily), the USS and
          PSS of each forked or spawned process, and what each idle
          subinterpreter adds to this process's PSS.

Reading map, in order:
    slide.py    a thread, a fork, a posix_spawn: the slide, and what goes wrong with it
    child.py    creating and reaping each kind of worker; fork against parent size; memory
    verdict.py  whether the rss part shows fork growing and the others flat, or is too noisy
    plan.py     the run: memory checked first, one fresh interpreter per call of child.py
    plot.py     creation latency per method, fork against parent size, memory per worker
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

from lab import interpreters
from lab.experiments.spawn import plan
from lab.params import Params as _Params
from lab.params import option
from lab.report import Column
from lab.runs import Run, collect

__all__ = ["COLUMNS", "FULL", "NAME", "SUMMARY", "TOUR", "Params", "run"]

NAME = "spawn"
SUMMARY = (
    "what one worker costs: thread, fork, posix_spawn, multiprocessing, subinterpreter;"
    " fork vs parent size"
)

METHODS = (
    "thread",
    "fork",
    "posix_spawn",
    "subprocess",
    "mp_fork",
    "mp_forkserver",
    "mp_spawn",
    "interpreter",
)
RSS_METHODS = ("fork", "posix_spawn", "thread", "interpreter")
MEMORY_WORKERS = ("thread", "fork", "mp_spawn", "interpreter")
PARTS = ("create", "rss", "memory")

#: Which interpreter made the record (`--python` runs several side by side).
_PYTHON = Column("python", "python")
#: One table per part: creation latency per method (median first, its spread as
#: quartiles with --wide), latency against the parent's size (VmPTE: the page
#: tables fork copies), and memory per idle worker (kB each, of `held` at once).
COLUMNS = {
    "create": [
        _PYTHON,
        Column("method", "method"),
        *(Column(f"{q}_ms", f"{q} ms", ".3f") for q in ("median", "p95", "p99", "first")),
        Column("repeat", "n", "d"),
        *(Column(f"{q}_ms", f"{q} ms", ".3f", wide=True) for q in ("min", "p25", "p75")),
        # a subinterpreter's median split: created, its first call, destroyed
        *(
            Column(f"{q}_ms", f"{q} ms", ".3f", wide=True)
            for q in ("create", "first_call", "destroy")
        ),
    ],
    "rss": [
        _PYTHON,
        Column("method", "method"),
        Column("rss_mb", "parent MB", ".0f"),
        Column("page_tables_kb", "VmPTE kB", ",d"),
        *(Column(f"{q}_ms", f"{q} ms", ".3f") for q in ("median", "p95", "min")),
        Column("repeat", "n", "d", wide=True),
        Column("rss_target_mb", "asked MB", "d", wide=True),
    ],
    "memory": [
        _PYTHON,
        Column("method", "worker"),
        Column("count", "held", ",d"),
        *(Column(f"{m.lower()}_kb_each", f"{m} kB", ",.0f") for m in ("RSS", "USS", "PSS")),
        Column("virtual_kb_each", "virtual kB", ",.0f"),
        Column("stack_limit_kb", "stack limit kB", ",d", wide=True),
    ],
}


@dataclass(frozen=True)
class Params(_Params):
    part: tuple[str, ...] = option(PARTS, "which parts to measure", choices=PARTS, was=("parts",))
    method: tuple[str, ...] = option(
        METHODS, "how to create a worker", choices=METHODS, was=("methods",)
    )
    repeat: int = option(30, "workers created per method (after one warm-up)", minimum=1)
    rss: tuple[int, ...] = option((30, 500, 2048), "parent sizes to fork from, in MB", minimum=1)
    rss_method: tuple[str, ...] = option(
        RSS_METHODS, "methods timed at each parent size", choices=METHODS, was=("rss_methods",)
    )
    rss_repeat: int = option(5, "workers created per method at each parent size", minimum=1)
    threads: int = option(1000, "idle threads held at once for the memory part", minimum=1)
    processes: int = option(4, "idle processes held at once for the memory part", minimum=1)
    memory_worker: tuple[str, ...] = option(
        MEMORY_WORKERS,
        "workers whose memory is measured",
        choices=MEMORY_WORKERS,
        was=("memory_workers",),
    )
    python: tuple[str, ...] = option((), interpreters.PYTHON_HELP)


FULL = {
    "repeat": 200,
    "rss": (30, 250, 500, 1024, 2048, 4096),
    "rss_repeat": 20,
    "processes": 16,
}

TOUR = [
    (
        "**What one worker costs.** Each method creates a worker that does nothing and "
        "reaps it, many times. A thread shares everything and costs tens of "
        "microseconds; `fork` copies the page tables and costs a millisecond; "
        "multiprocessing's `spawn` starts a whole new interpreter and costs tens of "
        "milliseconds. `forkserver` forks from a small server process instead of from "
        "you, so it pays a round trip but not your size.",
        {"part": ("create",), "repeat": 20},
    ),
    (
        "**Fork grows with the parent.** The parent grows to 30 MB, then 500 MB, "
        "resident, and forks again: fork copies one page-table entry per resident page "
        "(`VmPTE kB`), so its latency grows with the parent. `posix_spawn` and a "
        "thread do not copy them, and stay flat.",
        {"part": ("rss",), "rss": (30, 500)},
    ),
    (
        "**Memory per worker.** A thousand idle threads: each reserves an 8 MiB stack "
        "(virtual) but touches a few pages of it. A forked child shares almost "
        "everything with its parent until someone writes (its USS is small); a spawned "
        "interpreter holds all of its own.",
        {"part": ("memory",)},
    ),
]


def run(params: Params = Params(), progress=None, sink=None) -> Run:
    # Checked before the run begins: what cannot run is refused, not stored as failed.
    plan.check_memory(params)
    pythons = interpreters.chosen(params.python)
    measure = functools.partial(plan.measure, pythons=pythons)
    return collect(NAME, params, measure, progress=progress, sink=sink)
