"""The fork checklist as pictures: which facts held, and process diagrams drawn from what was seen.

Each fact comes from the newest run that checked it (lab.plotting.newest_with),
so the tour's three runs (facts 1-7, 8-12, 13-15) make one checklist; the
title says which runs. One panel is the checklist (facts down, interpreters
across: held, failed, skipped; over repeated rounds one failure fails it).
The others are small process diagrams for the facts a picture teaches best,
drawn with matplotlib patches from the pids, offsets and states the run
stored (each record's `picture`), never from made-up numbers:

- 1: one call, two returns (parent and child, their pids, what fork gave each)
- 3: two processes, one open file description, one offset
- 8: the zombie, and what waitpid leaves
- 9: the orphan, adopted by the subreaper
- 10: the wait status, an exit code against a signal
- 15: the session and process group, before and after setsid
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from lab.errors import LabError
from lab.plotting import newest_with, used
from lab.runs import Record, Run

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

__all__ = ["draw", "newest_facts", "pictures"]

HELD, FAILED, SKIPPED = "#4caf50", "#e53935", "#bdbdbd"
PARENT, CHILD, GONE = "#bbdefb", "#ffe0b2", "#eeeeee"


def newest_facts(runs: Sequence[Run]) -> tuple[list[Run | None], list[Record]]:
    """The runs used and the records of every fact, each from the newest run that has it."""
    used_runs: list[Run | None] = []
    records: list[Record] = []
    for number in sorted({r["number"] for run in runs for r in run.records}):
        run, found = newest_with(runs, lambda r, n=number: r["number"] == n)
        used_runs.append(run)
        records += found
    return used_runs, records


def pictures(records: Sequence[Record]) -> dict[int, dict[str, str]]:
    """Fact number -> its picture values, from the first record (interpreter, round) with one."""
    found: dict[int, dict[str, str]] = {}
    for record in records:
        text = record.get("picture")
        if text and record["number"] not in found:
            pairs = (item.partition("=") for item in text.split())
            found[record["number"]] = {key: value for key, _, value in pairs}
    return found


def draw(runs: Sequence[Run]) -> Figure:
    from matplotlib.figure import Figure

    used_runs, records = newest_facts(runs)
    if not records:
        raise LabError("the chosen fork runs hold no facts")
    figure = Figure(figsize=(20, 9), layout="constrained")
    grid = figure.add_gridspec(2, 4, width_ratios=(1.1, 1, 1, 1))
    _checklist(figure.add_subplot(grid[:, 0]), records)
    seen = pictures(records)
    panels: list[tuple[int, Callable[[Axes, dict[str, str]], None]]] = [
        (1, _fork_returns),
        (3, _shared_offset),
        (15, _session),
        (8, _zombie),
        (9, _orphan),
        (10, _exit_status),
    ]
    spots = [grid[row, col] for row in (0, 1) for col in (1, 2, 3)]
    for (number, painter), spot in zip(panels, spots, strict=True):
        ax = figure.add_subplot(spot)
        _blank(ax)
        if number in seen:
            painter(ax, seen[number])
        else:
            ax.text(5, 5, f"fact {number} not in these runs", ha="center", color="grey")
    pythons = ", ".join(dict.fromkeys(str(r.get("python", "?")) for r in records))
    figure.suptitle(f"fork: what the child gets ({used(used_runs)}; Python {pythons})")
    return figure


def _blank(ax: Axes) -> None:
    ax.set_xlim(0, 10)
    ax.set_ylim(0, 10)
    ax.set_axis_off()


def _box(ax: Axes, x: float, y: float, text: str, color: str, *, w=3.6, h=1.8, dashed=False):
    from matplotlib.patches import FancyBboxPatch

    ax.add_patch(
        FancyBboxPatch(
            (x - w / 2, y - h / 2),
            w,
            h,
            boxstyle="round,pad=0.1",
            facecolor=color,
            edgecolor="black",
            linestyle="--" if dashed else "-",
        )
    )
    ax.text(x, y, text, ha="center", va="center", fontsize=9)


def _arrow(ax: Axes, start, end, text: str = "", *, dashed=False, offset=(0.0, 0.3)) -> None:
    from matplotlib.patches import FancyArrowPatch

    ax.add_patch(
        FancyArrowPatch(
            start,
            end,
            arrowstyle="-|>",
            mutation_scale=14,
            linestyle="--" if dashed else "-",
            color="black",
        )
    )
    if text:
        mid = ((start[0] + end[0]) / 2 + offset[0], (start[1] + end[1]) / 2 + offset[1])
        ax.text(*mid, text, ha="center", va="bottom", fontsize=8)


def _checklist(ax: Axes, records: Sequence[Record]) -> None:
    from matplotlib.patches import Rectangle

    columns = list(dict.fromkeys(str(r.get("python", "?")) for r in records))
    rows: dict[int, str] = {}
    verdict: dict[tuple[int, str], Any] = {}
    for r in records:
        rows.setdefault(r["number"], r["fact"])
        key = (r["number"], str(r.get("python", "?")))
        before = verdict.get(key, True)
        # Over repeated rounds: one failure fails it; skipped only if never checked.
        verdict[key] = False if r["holds"] is False or before is False else (r["holds"] and before)
    numbers = sorted(rows)
    for y, number in enumerate(reversed(numbers)):
        for x, column in enumerate(columns):
            held = verdict.get((number, column))
            color = SKIPPED if held is None else HELD if held else FAILED
            ax.add_patch(Rectangle((x, y), 0.9, 0.9, facecolor=color))
            mark = "-" if held is None else "✓" if held else "✗"
            ax.text(x + 0.45, y + 0.45, mark, ha="center", va="center", color="white")
    ax.set_xlim(0, max(1, len(columns)))
    ax.set_ylim(0, len(numbers))
    # At 12 pt: the report shows this figure at about half its size on a 1,280 px screen,
    # so its facts are 10 px high there (at 7 pt they were 6 px, unreadable).
    ax.set_xticks([x + 0.45 for x in range(len(columns))], columns, fontsize=12)
    ax.set_yticks(
        [y + 0.45 for y in range(len(numbers))],
        [f"{n}. {rows[n]}" for n in reversed(numbers)],
        fontsize=12,
    )
    ax.tick_params(length=0)
    for side in ax.spines.values():
        side.set_visible(False)
    ax.set_title("the checklist (green: holds, red: does not, grey: skipped)", fontsize=10)


def _fork_returns(ax: Axes, p: dict[str, str]) -> None:
    ax.set_title("1. one call, two returns", fontsize=10)
    _box(ax, 2.2, 7.5, f"parent\npid {p['parent']}", PARENT)
    _box(ax, 7.8, 7.5, f"child\npid {p['child']}", CHILD)
    _arrow(ax, (4.1, 7.5), (5.9, 7.5), "fork()")
    ax.text(2.2, 5.5, f"fork() returned\n{p['child']}", ha="center", fontsize=9)
    ax.text(7.8, 5.5, "fork() returned\n0", ha="center", fontsize=9)
    _arrow(ax, (7.8, 4.6), (2.2, 4.6), f"getppid() = {p['child_ppid']}", dashed=True)
    ax.text(5, 2.2, "same program, same next line:\nthe return value is how each knows which it is",
            ha="center", fontsize=8, style="italic")  # fmt: skip


def _shared_offset(ax: Axes, p: dict[str, str]) -> None:
    ax.set_title("3. one open file, one offset", fontsize=10)
    _box(ax, 2.2, 8, f"parent {p['parent']}\nfd {p['fd']}", PARENT)
    _box(ax, 7.8, 8, f"child {p['child']}\nfd {p['fd']}", CHILD)
    _box(ax, 5, 3.8, f"open file description\noffset {p['before']} → {p['after']}", GONE, w=5)
    _arrow(ax, (2.6, 7), (4.2, 4.8))
    _arrow(ax, (7.4, 7), (5.8, 4.8), "child writes", offset=(1.0, 0))
    ax.text(5, 1.3, f"the parent never wrote, yet its offset is {p['after']}:\n"
            "the descriptor table was copied, the file description shared",
            ha="center", fontsize=8, style="italic")  # fmt: skip


def _zombie(ax: Axes, p: dict[str, str]) -> None:
    ax.set_title("8. exited, not yet waited for: a zombie", fontsize=10)
    _box(ax, 2.2, 7.5, f"parent\npid {p['parent']}", PARENT)
    _box(ax, 7.8, 7.5, f"child {p['child']}\nexited: state {p['before']}", GONE, dashed=True)
    _arrow(ax, (4.1, 7.5), (5.9, 7.5), "has not waited")
    _box(ax, 2.2, 3, "parent\nwaitpid(child)", PARENT)
    _box(ax, 7.8, 3, f"child {p['child']}\n/proc entry: {p['after']}", "white", dashed=True)
    _arrow(ax, (4.1, 3), (5.9, 3), "reaped")
    ax.text(5, 5.2, "↓ waitpid", ha="center", fontsize=9)


def _orphan(ax: Axes, p: dict[str, str]) -> None:
    ax.set_title("9. the orphan is adopted by the subreaper", fontsize=10)
    _box(ax, 5, 8.5, f"subreaper {p['subreaper']}\nprctl(PR_SET_CHILD_SUBREAPER)", PARENT, w=6)
    _box(ax, 2.4, 5, f"middle {p['middle']}\nexited", GONE, dashed=True)
    _box(ax, 5, 1.5, f"orphan {p['orphan']}\ngetppid() = {p['adopter']}", CHILD, w=4)
    _arrow(ax, (4, 7.5), (2.6, 6), "fork")
    _arrow(ax, (2.6, 4), (4, 2.5), "fork")
    _arrow(ax, (6.2, 7.5), (5.8, 2.5), "adopted, then reaped", dashed=True, offset=(1.6, 0))


def _exit_status(ax: Axes, p: dict[str, str]) -> None:
    ax.set_title("10. the wait status: exit code or signal", fontsize=10)
    exit_raw, kill_raw = int(p["exit_raw"]), int(p["kill_raw"])
    _box(ax, 2.2, 7.5, f"child {p['exited']}\nos._exit({exit_raw >> 8})", CHILD)
    _box(ax, 2.2, 3, f"child {p['killed']}\nkilled by signal {kill_raw & 0x7F}", CHILD)
    _box(ax, 7.8, 7.5, f"status {exit_raw}\n-> exit code {exit_raw >> 8}", PARENT)
    _box(ax, 7.8, 3, f"status {kill_raw}\n-> exit code -{kill_raw & 0x7F}", PARENT)
    _arrow(ax, (4.1, 7.5), (5.9, 7.5), "waitpid")
    _arrow(ax, (4.1, 3), (5.9, 3), "waitpid")
    ax.text(5, 0.6, "os.waitstatus_to_exitcode: n for exit(n), -N for death by signal N",
            ha="center", fontsize=8, style="italic")  # fmt: skip


def _session(ax: Axes, p: dict[str, str]) -> None:
    from matplotlib.patches import Rectangle

    ax.set_title("15. session and group, before and after setsid", fontsize=10)
    ax.add_patch(Rectangle((0.3, 4.6), 9.4, 5, facecolor="none", edgecolor="grey", ls="--"))
    ax.text(0.5, 9.2, f"session {p['parent_sid']}, terminal {p['tty']}", fontsize=8)
    _box(ax, 2.6, 7, f"leader {p['parent']}\ngroup {p['parent_sid']}", PARENT)
    _box(ax, 7.4, 7, f"child {p['child']}\nafter fork: same", CHILD)
    ax.add_patch(Rectangle((4.6, 0.3), 5.1, 3.7, facecolor="none", edgecolor="grey", ls="--"))
    ax.text(
        4.8, 3.6, f"session {p['child_sid_after']}, terminal {p['child_tty_after']}", fontsize=8
    )
    _box(ax, 7.2, 1.8, f"child {p['child']}\nleads group and session", CHILD, w=4)
    _arrow(ax, (7.4, 6), (7.3, 2.8), "setsid()", offset=(-1.3, 0))
