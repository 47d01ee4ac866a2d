"""Noise, said out loud: when a figure could be noise, the run says so instead of hiding it.

An experiment calls these from its measure(session); each adds one line to
`session.env["warnings"]`, stored with the run, which the CLI prints after
the table (on stderr, so --json stays clean). Nothing is dropped or
corrected: the figures stay what was measured, and the warning says why they
may not carry the lesson this time.

    competing_load(env, cores)    the load average (and the run queue now) says other
                                  processes compete
    compare(env, what, a, b)      two figures whose spread is larger than the
                                  difference between them

Standard library only, cheap, and never an error: a warning is advice.
"""

from __future__ import annotations

import os
import time
from typing import Any, NamedTuple

__all__ = ["WARNINGS", "Figure", "compare", "competing_load", "warn"]

#: The env key the CLI reads.
WARNINGS = "warnings"


class Figure(NamedTuple):
    """One measured figure: its name, its median, and its spread (the least and the most)."""

    name: str
    median: float
    low: float
    high: float


def warn(env: dict[str, Any], text: str) -> None:
    """Add one warning line to a run's env (said once, however often it is found)."""
    found = env.setdefault(WARNINGS, [])
    if text not in found:
        found.append(text)


def competing_load(
    env: dict[str, Any],
    cores: int,
    load: float | None = None,
    others: float | None = None,
) -> str | None:
    """Warn when, before the run, other processes take more than half the cores.

    Two readings of /proc/loadavg (proc(5)) must agree. The 1-minute load
    average counts runnable and uninterruptible tasks, damped over a minute:
    above half the cores, a CPU-bound worker shares a core for part of its
    run, and its times grow and scatter. But it lags: right after the lab's
    own previous run it is still high with nothing left running. So the
    number of tasks runnable right now (its fourth field, less the one
    reading it) is sampled too, and must show someone else at work. `load`,
    `others`: readings taken already (by default both are read here).
    Returns the warning.
    """
    one_minute = os.getloadavg()[0] if load is None else load
    now = _others_runnable() if others is None else others
    env["load_average"] = round(one_minute, 2)
    env["runnable_elsewhere"] = round(now, 2)
    if one_minute <= cores / 2 or now < 0.5:
        return None
    text = (
        f"load average {one_minute:.2f} on {cores} cores before the run, {now:.1f} other "
        "tasks runnable: other processes compete for the CPU, so times are longer and "
        "noisier than the lesson's"
    )
    warn(env, text)
    return text


#: How the run queue is sampled: SAMPLES looks, SAMPLE_GAP_S apart (a tenth of a second).
SAMPLES, SAMPLE_GAP_S = 10, 0.01


def _others_runnable() -> float:
    """The mean number of runnable tasks besides this one, over a tenth of a second."""
    seen = []
    for _ in range(SAMPLES):
        with open("/proc/loadavg") as f:
            running = int(f.read().split()[3].split("/")[0])
        seen.append(max(0, running - 1))  # the one reading it is running
        time.sleep(SAMPLE_GAP_S)
    return sum(seen) / len(seen)


def compare(env: dict[str, Any], what: str, a: Figure, b: Figure, unit: str = "s") -> str | None:
    """Warn when the spread of `a` or `b` is larger than the difference of their medians.

    Then this run cannot tell `a` from `b`: a repeat of the one could land on
    the other. Returns the warning.
    """
    effect = abs(a.median - b.median)
    spread = max(a.high - a.low, b.high - b.low)
    if spread <= effect:
        return None
    text = (
        f"{what}: {a.name} {a.low:.3g}-{a.high:.3g} {unit} and {b.name} "
        f"{b.low:.3g}-{b.high:.3g} {unit}: the spread ({spread:.3g} {unit}) is larger than "
        f"the difference ({effect:.3g} {unit}), so this run cannot tell them apart"
    )
    warn(env, text)
    return text
