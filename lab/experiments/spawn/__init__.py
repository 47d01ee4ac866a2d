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
    plot.py     creation latency per method, fork against parent size, memory per worker
"""

from __future__ import annotations

import functools
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from lab import interpreters
from lab.errors import LabError
from lab.experiments.spawn import verdict
from lab.params import Params as _Params
from lab.params import option
from lab.report import Column
from lab.runs import Run, Session, collect

__all__ = ["COLUMNS", "FULL", "NAME", "SUMMARY", "TOUR", "Params", "run"]

NAME = "spawn"
SUMMARY = (
    "what one worker costs: thread, fork, posix_spawn, multiprocessing, subinterpreter;"
    " fork vs parent size"
)

MODULE = "lab.experiments.spawn.child"
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

#: The most of the machine's available memory one --rss value may ask for:
#: the rest is for the other engineers, the kernel, and the fork's page tables.
RSS_SHARE_OF_AVAILABLE = 0.5

#: Seconds one measured part may take before it is stopped (2 GB on a busy machine).
PART_TIMEOUT_S = 600.0

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


def _check_memory(params: Params) -> None:
    """Refuse a parent size the machine cannot hold (the run would swap or be OOM-killed)."""
    if "rss" not in params.part:
        return
    available = _available_mb()
    too_big = [mb for mb in params.rss if mb > available * RSS_SHARE_OF_AVAILABLE]
    if too_big:
        raise LabError(
            f"--rss {too_big[0]} MB is more than half of the {available} MB"
            " this machine has available"
        )


def _available_mb() -> int:
    """MemAvailable from /proc/meminfo, in MB: what can be had without swapping."""
    with open("/proc/meminfo") as f:
        for line in f:
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) // 1024
    raise LabError("no MemAvailable in /proc/meminfo: the rss part needs Linux")


def run(params: Params = Params(), progress=None, sink=None) -> Run:
    # Checked before the run begins: what cannot run is refused, not stored as failed.
    _check_memory(params)
    pythons = interpreters.chosen(params.python)
    measure = functools.partial(_measure, pythons=pythons)
    return collect(NAME, params, measure, progress=progress, sink=sink)


def _payloads(params: Params) -> list[tuple[str, dict[str, Any]]]:
    """(progress label, payload) for each call of the measuring module, in order."""
    calls: list[tuple[str, dict[str, Any]]] = []
    if "create" in params.part:
        for method in params.method:
            calls.append(
                (
                    f"create {method}",
                    {"part": "create", "methods": [method], "repeat": params.repeat},
                )
            )
    if "rss" in params.part:
        for mb in params.rss:
            payload = {
                "part": "rss",
                "rss_mb": mb,
                "methods": list(params.rss_method),
                "repeat": params.rss_repeat,
            }
            calls.append((f"fork from {mb} MB", payload))
    if "memory" in params.part:
        for worker in params.memory_worker:
            # a subinterpreter is held like a process: a few, each a whole interpreter
            count = params.threads if worker == "thread" else params.processes
            calls.append(
                (f"{count} idle {worker}", {"part": "memory", "method": worker, "count": count})
            )
    return calls


def _measure(
    params: Params, session: Session, pythons: list[interpreters.Interpreter]
) -> Iterator[dict[str, Any]]:
    """One fresh interpreter per call: a part never inherits another's memory."""
    calls = _payloads(params)
    session.env["interpreters"] = [p.label for p in pythons]
    session.env["page_size"] = _page_size()
    session.env["transparent_hugepages"] = _thp()
    total, done = len(pythons) * len(calls), 0
    for python in pythons:
        measured = []
        for label, payload in calls:
            session.step(done, total, f"{python.version}: {label}")
            for record in interpreters.stream_measured(python, MODULE, payload, PART_TIMEOUT_S):
                if record.get("skipped"):  # said once under the tables, not only as a "-"
                    _note(session, f"{python.label}: {record['method']}: {record['skipped']}")
                measured.append(record)
                yield record
            done += 1
        said = verdict.point(measured)  # the lesson's point, or "too noisy to show it"
        if said:
            _note(session, f"{python.label}: {said}")
    session.step(total, total, "done")


def _note(session: Session, said: str) -> None:
    """One line under the tables, said once."""
    notes = session.env.setdefault("notes", [])
    notes.extend([said] if said not in notes else [])


def _page_size() -> int:
    import os

    return os.sysconf("SC_PAGE_SIZE")


def _thp() -> str | None:
    """The transparent huge page mode (`[madvise]`): huge pages would make fork cheaper."""
    try:
        with open("/sys/kernel/mm/transparent_hugepage/enabled") as f:
            text = f.read()
    except OSError:
        return None
    return text[text.find("[") + 1 : text.find("]")] or None
