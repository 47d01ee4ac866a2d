"""The figure for `signals`: the nine facts, and delivery latency per receiver state.

Two panels, each from the newest run that has its part (lab.plotting.newest_with),
so the tour's two runs (facts, then latency) make one figure; the title says
which runs.

- left: the checklist, one row per fact: green held, red did not.
- right: one box per state: the box spans the quartiles (the spread of the
  samples), the line is the median, the whiskers reach from the fastest
  sample to p99 and a dot marks the slowest. A log scale because the states
  differ by three orders of magnitude: a sleeping or looping receiver answers
  in hundredths of a millisecond, one inside a long C call only when the
  call returns. The C call's box is red: there the handler waits, while
  set_wakeup_fd's byte (wakeup-fd, the same call) does not.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from lab.errors import LabError
from lab.plotting import newest_with, plain_log_axis, used
from lab.runs import Run

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

__all__ = ["draw"]

HELD, FAILED = "#4caf50", "#e53935"
#: The boxes: the receiver waits out its C call (red) or answers at once (blue).
WAITS, AT_ONCE = "#d62728", "#1f77b4"


def _is_fact(record: dict[str, Any]) -> bool:
    # Runs stored before records carried their part: a fact has a verdict.
    return record.get("part") == "facts" or ("part" not in record and "holds" in record)


def _is_latency(record: dict[str, Any]) -> bool:
    return record.get("part") == "latency" or ("part" not in record and "state" in record)


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


def draw(runs: Sequence[Run]) -> Figure:
    from matplotlib.figure import Figure

    facts_run, facts = newest_with(runs, _is_fact)
    latency_run, latencies = newest_with(runs, _is_latency)
    if not (facts or latencies):
        raise LabError("these signals runs hold no facts and no latency")
    figure = Figure(figsize=(15, 5.2), layout="constrained")
    left, right = figure.subplots(1, 2, gridspec_kw={"width_ratios": (1, 1.3)})
    _checklist(left, facts)
    _latency(right, latencies)
    figure.suptitle(f"signals: what a Python handler is ({used([facts_run, latency_run])})")
    return figure


def _checklist(ax: Axes, facts: list[dict[str, Any]]) -> None:
    ax.set_axis_off()
    if not facts:
        ax.set_title("the facts")
        ax.text(
            0.5,
            0.5,
            "no facts in these runs:\ndaemonlab run signals --part facts",
            ha="center",
            va="center",
            transform=ax.transAxes,
        )
        return
    held = sum(bool(r["holds"]) for r in facts)
    ax.set_title(f"the facts, checked live: {held} of {len(facts)} held")
    rows = sorted(facts, key=lambda r: r["number"])
    for y, record in enumerate(reversed(rows)):
        mark, colour = ("✓", HELD) if record["holds"] else ("✗", FAILED)
        ax.text(0.0, y, mark, color=colour, fontsize=13, va="center", fontweight="bold")
        ax.text(0.06, y, f"{record['number']}. {record['fact']}", va="center", fontsize=9)
    ax.set_xlim(0, 1)
    ax.set_ylim(-0.7, len(rows) - 0.3)


def _latency(ax: Axes, records: list[dict[str, Any]]) -> None:
    ax.set_title("kill(2) to the handler's first line (wakeup-fd: to its byte)")
    if not records:
        ax.text(
            0.5,
            0.5,
            "no latency in these runs:\ndaemonlab run signals --part latency",
            ha="center",
            va="center",
            transform=ax.transAxes,
        )
        ax.set_axis_off()
        return
    states = [r["state"] for r in records]
    artists = ax.bxp(
        [_box(r) for r in records],
        positions=range(len(records)),
        widths=0.6,
        patch_artist=True,
        manage_ticks=False,
    )
    for patch, state in zip(artists["boxes"], states, strict=True):
        patch.set_facecolor(WAITS if state == "c-call" else AT_ONCE)
        patch.set_alpha(0.5)
    ax.set_yscale("log")
    plain_log_axis(ax, "y")
    ax.set_xticks(range(len(states)), states, rotation=20, ha="right")
    ax.set_ylabel(f"ms, log ({records[0]['samples']} samples a state; box: quartiles)")
    ax.set_xlabel("what the receiver's main thread was doing")
    ax.grid(axis="y", which="both", alpha=0.3)
