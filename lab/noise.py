"""Noise, said out loud: when a figure could be noise, the run says so instead of hiding it.

An experiment calls `compare` from its measure(session) for the figures its
lesson compares; a spread larger than their difference adds one line to
`session.env["warnings"]`, stored with the run, which the CLI prints after
the table (on stderr, so --json stays clean; the CLI adds its own warning
when the load average says other processes compete). Nothing is dropped or
corrected: the figures stay what was measured, and the warning says why they
may not carry the lesson this time. Standard library only, never an error.
"""

from __future__ import annotations

from typing import Any, NamedTuple

__all__ = ["WARNINGS", "Figure", "compare", "warn"]

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
