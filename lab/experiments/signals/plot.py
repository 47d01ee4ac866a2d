"""The figure for `signals`: delivery latency per receiver state, as boxes on a log scale.

One box per state and run (runs side by side, newest first in the legend):
the box spans the quartiles, the line is the median, the whiskers reach from
the fastest sample to p99 and a dot marks the slowest. A log scale because
the states differ by three orders of magnitude: a sleeping or looping
receiver answers in hundredths of a millisecond, one inside a long C call
only when the call returns. The title counts the facts that held.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from lab.errors import LabError
from lab.runs import Run

if TYPE_CHECKING:
    from matplotlib.figure import Figure

__all__ = ["draw"]


def _box(record: dict[str, Any]) -> dict[str, Any]:
    """matplotlib's bxp() statistics from the quantiles a latency record stores."""
    return {
        "med": record["median_ms"],
        "q1": record["p25_ms"],
        "q3": record["p75_ms"],
        "whislo": record["min_ms"],
        "whishi": record["p99_ms"],
        "fliers": [record["max_ms"]],
    }


def _facts_line(runs: Sequence[Run]) -> str:
    facts = [r for r in runs[0].records if "holds" in r]
    if not facts:
        return "facts not checked in this run"
    failed = [str(r["number"]) for r in facts if not r["holds"]]
    held = f"facts held: {len(facts) - len(failed)} of {len(facts)}"
    return held + (f" (not: {', '.join(failed)})" if failed else "")


def draw(runs: Sequence[Run]) -> Figure:
    from matplotlib.figure import Figure

    measured = [(run, [r for r in run.records if "state" in r]) for run in runs]
    measured = [(run, records) for run, records in measured if records]
    if not measured:
        raise LabError("these signals runs timed no latency: run with --part latency or all")
    states = list(dict.fromkeys(r["state"] for _, records in measured for r in records))
    figure = Figure(figsize=(max(7.0, 1.3 * len(states)), 4.8), layout="constrained")
    ax = figure.subplots()
    width = 0.8 / len(measured)
    for i, (run, records) in enumerate(measured):
        by_state = {r["state"]: r for r in records}
        shown = [s for s in states if s in by_state]
        offset = (i - (len(measured) - 1) / 2) * width
        artists = ax.bxp(
            [_box(by_state[s]) for s in shown],
            positions=[states.index(s) + offset for s in shown],
            widths=width * 0.8,
            patch_artist=True,
            manage_ticks=False,
        )
        colour = f"C{i}"
        for patch in artists["boxes"]:
            patch.set_facecolor(colour)
            patch.set_alpha(0.5)
        samples = records[0]["samples"]
        artists["boxes"][0].set_label(f"run {run.run_id} ({samples} samples a state)")
    ax.set_yscale("log")
    ax.set_xticks(range(len(states)), states, rotation=20, ha="right")
    ax.set_ylabel("send -> handler's first instruction, ms (wakeup-fd: -> its byte)")
    ax.set_xlabel("what the receiver's main thread was doing")
    ax.grid(axis="y", which="both", alpha=0.3)
    ax.legend(loc="upper left", fontsize="small")
    ax.set_title(f"signal delivery latency per state; {_facts_line(runs)}")
    return figure
