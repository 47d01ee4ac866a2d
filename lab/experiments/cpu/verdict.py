"""Did this run show the lesson's point, or is it too noisy to? Judged from the records.

The point of the scaling part: on two cores or more, under the GIL, forked
processes finish the work faster than threads. Where the spread of the repeats
hides that (processes 0.75x at 2 workers, ±142%, in one tour on a busy 2-core
machine, and 1.77-2.04x three minutes later), the chapter says so instead of
showing a table that teaches the opposite. A difference that stands clear of
the spread is what the machine did, and the table says it as measured.

Used by the lesson (a note under its table) and by lab.sentences (the report).
"""

from __future__ import annotations

from typing import Any

from lab import noise

__all__ = ["AGAIN", "point"]

#: What measures the point again: the tour's sizes, more repeats for a steadier median.
AGAIN = "daemonlab run cpu --part scaling --workers 1,2,4 --repeat 5"


def point(records: list[dict[str, Any]]) -> str | None:
    """'too noisy ...' when threads and processes at some W >= 2 are closer than their
    spread; None when they stand apart (processes faster: the point; slower: what this
    machine did, shown as measured), or where no difference is expected (one core, no
    GIL) or nothing was measured to compare."""
    by = {(r["strategy"], r["workers"]): r for r in records if r.get("part") == "scaling"}
    hidden = []
    for (strategy, workers), threads in sorted(by.items()):
        processes = by.get(("processes", workers))
        if strategy != "threads" or processes is None or workers < 2:
            continue
        if threads.get("usable_cores", 1) < 2 or not threads.get("gil_enabled"):
            continue  # no difference is expected (or an old record does not say): nothing to show
        figures = [_figure(threads), _figure(processes)]
        if not noise.apart(*figures):  # either way round: a point within the noise is none
            hidden += figures
    return noise.too_noisy(hidden, AGAIN) if hidden else None


def _figure(record: dict[str, Any]) -> noise.Figure:
    return noise.Figure(
        record["strategy"], record["wall_s"], record["wall_s_min"], record["wall_s_max"]
    )
