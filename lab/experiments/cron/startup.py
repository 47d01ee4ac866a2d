"""Where a cron tick's start-up goes: one tick under `python -X importtime`.

`-X importtime` (Python 3.7) writes one line per module imported, to stderr:

    import time: self [us] | cumulative | imported package
    import time:       473 |      81924 | redis

`cumulative` includes the modules that one imported (indented under it by
two spaces a level). The lines at depth 0 are what the interpreter itself,
`-m` (the lab's packages) and the tick's own imports asked for; their
cumulative times add up to the whole import bill of one tick. The tick runs
exactly as cron runs it (ticks.cron_env, `sh -c`), once, not timed otherwise.
"""

from __future__ import annotations

import re
import subprocess
from typing import Any

from lab.errors import LabError, last_line
from lab.experiments.cron import ticks

__all__ = ["TOP", "imports", "parse"]

TOP = 10  # the imports shown: the rest are listed under "(the others)"
_LINE = re.compile(r"^import time:\s+(\d+) \|\s+(\d+) \| ( *)(\S+)")


def parse(stderr: str) -> list[tuple[str, int, int, int]]:
    """(module, self µs, cumulative µs, depth) for each importtime line, in order."""
    found = []
    for line in stderr.splitlines():
        match = _LINE.match(line)
        if match:
            own, cumulative, indent, module = match.groups()
            found.append((module, int(own), int(cumulative), len(indent) // 2))
    return found


def imports(ns: str, job: str) -> list[dict[str, Any]]:
    """The top-level imports of one tick by cumulative time, then the others, then the total."""
    command = ticks.tick_command(job, f"{ns}-importtime", 0, f"{ns}:ledger")
    command = command.replace(" -m lab.", " -X importtime -m lab.", 1)
    done = subprocess.run(
        ["/bin/sh", "-c", command],
        env=ticks.cron_env(),
        capture_output=True,
        text=True,
        timeout=ticks.TAIL_S,
    )
    rows = [(m, s, c) for m, s, c, depth in parse(done.stderr) if depth == 0]
    if done.returncode != 0 or not rows:
        last = last_line(done.stderr)
        raise LabError(f"the tick under -X importtime failed (exit {done.returncode}): {last}")
    rows.sort(key=lambda row: -row[2])
    total = sum(c for _, _, c in rows)
    shown = [
        {
            "part": "imports",
            "module": m,
            "cumulative_ms": c / 1000,
            "self_ms": s / 1000,
            "share": c / total,
        }
        for m, s, c in rows[:TOP]
    ]
    rest = rows[TOP:]
    if rest:
        shown.append(
            {
                "part": "imports",
                "module": f"(the other {len(rest)})",
                "cumulative_ms": sum(c for _, _, c in rest) / 1000,
                "self_ms": sum(s for _, s, _ in rest) / 1000,
                "share": sum(c for _, _, c in rest) / total,
            }
        )
    shown.append(
        {
            "part": "imports",
            "module": "(all imports of one tick)",
            "cumulative_ms": total / 1000,
            "share": 1.0,
        }
    )
    return shown
