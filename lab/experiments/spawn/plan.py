"""The run's plan: the machine's memory checked first, then one fresh interpreter per call.

run() in __init__.py refuses a parent size this machine cannot hold, then
measure() calls child.py once per call of the plan (a method's creations, one
parent size, one kind of idle worker) under each interpreter, and says the
rss part's verdict (verdict.py) under the tables.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any, NamedTuple

from lab import interpreters
from lab.errors import LabError
from lab.experiments.spawn import verdict
from lab.runs import NOTES, Session

if TYPE_CHECKING:
    from lab.experiments.spawn import Params

__all__ = [
    "MODULE",
    "PART_TIMEOUT_S",
    "RSS_SHARE_OF_AVAILABLE",
    "Call",
    "calls",
    "check_memory",
    "measure",
]

MODULE = "lab.experiments.spawn.child"

#: The most of the machine's available memory one --rss value may ask for:
#: the rest is for the other engineers, the kernel, and the fork's page tables.
RSS_SHARE_OF_AVAILABLE = 0.5

#: Seconds one measured part may take before it is stopped (2 GB on a busy machine).
PART_TIMEOUT_S = 600.0


class Call(NamedTuple):
    """One call of the measuring module (child.py): what the progress bar says, what it gets."""

    label: str
    payload: dict[str, Any]


def check_memory(params: Params) -> None:
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


def calls(params: Params) -> list[Call]:
    """Each call of the measuring module, in order."""
    planned: list[Call] = []
    if "create" in params.part:
        for method in params.method:
            payload = {"part": "create", "methods": [method], "repeat": params.repeat}
            planned.append(Call(f"create {method}", payload))
    if "rss" in params.part:
        for mb in params.rss:
            payload = {
                "part": "rss",
                "rss_mb": mb,
                "methods": list(params.rss_method),
                "repeat": params.rss_repeat,
            }
            planned.append(Call(f"fork from {mb} MB", payload))
    if "memory" in params.part:
        for worker in params.memory_worker:
            # a subinterpreter is held like a process: a few, each a whole interpreter
            count = params.threads if worker == "thread" else params.processes
            payload = {"part": "memory", "method": worker, "count": count}
            planned.append(Call(f"{count} idle {worker}", payload))
    return planned


def measure(
    params: Params, session: Session, pythons: list[interpreters.Interpreter]
) -> Iterator[dict[str, Any]]:
    """One fresh interpreter per call: a part never inherits another's memory."""
    planned = calls(params)
    session.env["interpreters"] = [p.label for p in pythons]
    session.env["page_size"] = _page_size()
    session.env["transparent_hugepages"] = _thp()
    total, done = len(pythons) * len(planned), 0
    for python in pythons:
        measured = []
        for call in planned:
            session.step(done, total, f"{python.version}: {call.label}")
            for record in interpreters.stream_measured(
                python, MODULE, call.payload, PART_TIMEOUT_S
            ):
                if record.get("skipped"):  # said once under the tables, not only as a "-"
                    _note(session, f"{python.label}: {record['method']}: {record['skipped']}")
                measured.append(record)
                yield record
            done += 1
        noisy = verdict.point(measured)  # None where the records show the point
        if noisy:
            session.too_noisy(f"{python.label}: {noisy}")
    session.step(total, total, "done")


def _note(session: Session, said: str) -> None:
    """One line under the tables, said once."""
    if said not in session.env.get(NOTES, []):
        session.note(said)


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
