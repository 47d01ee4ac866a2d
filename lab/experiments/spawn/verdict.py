"""Did the rss part show the lesson's point, or is it too noisy to? Judged from the records.

The point: fork's latency grows with the parent (it copies the page tables),
while posix_spawn and a thread stay flat. Where the spread of the creations
hides that (posix_spawn 3.9 ms at 30 MB and 0.73 ms at 500 MB, in one tour on
a busy 2-core machine: "flat" read as a fivefold drop), the chapter says so
instead of a table that teaches the opposite. What stands clear of the spread
is what the machine did, and the table says it as measured.

Used by the lesson (a note under its table) and by lab.sentences (the report).
"""

from __future__ import annotations

from typing import Any

from lab import noise

__all__ = ["AGAIN", "FLAT", "MOVED", "point"]

#: What measures the point again: the tour's sizes, more creations for a steadier median.
AGAIN = "daemonlab run spawn --part rss --rss 30,500 --rss-repeat 20"
#: The methods the lesson calls flat: glibc's posix_spawn clones with CLONE_VM |
#: CLONE_VFORK (sysdeps/unix/sysv/linux/spawni.c), a thread shares the address space:
#: nothing either does grows with the parent's pages.
FLAT = ("posix_spawn", "thread")
#: Flat no longer reads as flat when one size's median is this many times the other's
#: (a halving or a doubling), however fork grew (about 40 ms a GB: docs/spawn.md).
MOVED = 2.0


def point(records: list[dict[str, Any]]) -> str | None:
    """'too noisy ...' when the spread hides fork growing, or moves a flat method by
    MOVED or more; None when the records show the point, or show the opposite clear of
    the spread, or have one parent size only."""
    sizes: dict[str, dict[int, noise.Figure]] = {}
    for r in records:
        if r.get("part") == "rss" and r.get("median_ms") is not None:
            figure = noise.Figure(r["method"], r["median_ms"], r["min_ms"], r["max_ms"])
            sizes.setdefault(r["method"], {})[r["rss_target_mb"]] = figure
    fork = _ends(sizes.get("fork", {}))
    if fork is None:
        return None
    if not noise.apart(*fork):
        return noise.too_noisy(fork, AGAIN)
    if fork[1].median <= fork[0].median:
        return None  # fork did not grow, clear of the spread: what this machine did
    for method in FLAT:
        ends = _ends(sizes.get(method, {}))
        if ends is None:
            continue
        moved = max(f.median for f in ends) / min(f.median for f in ends)
        if moved >= MOVED and not noise.apart(*ends):
            return noise.too_noisy(ends, AGAIN)
    return None


def _ends(by_size: dict[int, noise.Figure]) -> tuple[noise.Figure, noise.Figure] | None:
    """The figures at the smallest and the largest parent, or None with fewer than two."""
    if len(by_size) < 2:
        return None
    return by_size[min(by_size)], by_size[max(by_size)]
