"""`bench compare`: each benchmark's verdict, and the table that shows all of them.

Wall time (one sample per round and side): the ratio of medians, head over
base, with a 95% bootstrap interval (scipy.stats.bootstrap, percentile, a
fixed seed so the same results print the same interval); the one-sided
Mann-Whitney U test (scipy.stats.mannwhitneyu: is head's distribution
shifted above base's?). A benchmark fails only when both hold: slower by
more than the threshold, and p below alpha. Either alone cries wolf: a big
ratio from two wild rounds, or a tiny but consistent slowdown nobody
would act on.

Instructions (a few counts a side, equal to within ~1e-7): the ratio of
medians, its range (the extreme counts against each other), and a failure
when head has more than the threshold more AND every head count is above
every base count.

Present on one side only, whatever the kind: a failure, so that a
benchmark deleted or renamed in a change cannot quietly take its
regression with it.

scipy over a hand-written U test: its exact null distribution for small
samples and its tie handling are tested and maintained; the lab would
otherwise carry its own copy of both. It is imported only here.
"""

from __future__ import annotations

import statistics
import warnings
from dataclasses import dataclass
from typing import Any

__all__ = ["Rules", "Verdict", "judge", "rounds_needed", "smallest_p", "table"]

#: The bootstrap's resamples: its interval's ends move by well under 1% beyond this.
RESAMPLES = 2000
#: More rounds a side than anyone runs: where the search for enough rounds gives up.
MOST_ROUNDS = 100


@dataclass(frozen=True)
class Rules:
    wall: float  # slower by more than this fraction fails (when significant)
    counts: float  # more instructions by more than this fraction fails (when separated)
    alpha: float

    def describe(self) -> str:
        return (
            f"wall time fails slower than +{self.wall:.0%} with p < {self.alpha}; "
            f"instructions fail above +{self.counts:.1%}"
        )


@dataclass(frozen=True)
class Verdict:
    name: str
    kind: str  # "wall" or "instructions"
    base: list[float]
    head: list[float]
    ratio: float | None  # median(head) / median(base)
    low: float | None  # the ratio's interval (wall) or range (instructions)
    high: float | None
    p: float | None
    fails: bool
    why: str
    undecided: bool = False  # too few rounds for p to reach alpha: it could not have failed


def smallest_p(head: int, base: int) -> float:
    """The smallest p the wall-time test can give with `head` and `base` samples.

    It is the p of every head sample above every base sample, asked of the test
    the verdict uses (one-sided Mann-Whitney U, scipy's exact distribution at
    these sizes): 1/C(head + base, base), 1/6 = 0.167 at 2 a side, 1/252 = 0.004
    at 5. Below alpha or not, this says whether the gate can fail at all.
    (Tied samples take the normal approximation, which can go lower; wall times
    measured in nanoseconds do not tie.)
    """
    from scipy import stats

    above = [base + i for i in range(head)]
    return float(stats.mannwhitneyu(above, list(range(base)), alternative="greater").pvalue)


def rounds_needed(alpha: float) -> int:
    """The fewest rounds a side for which the wall-time test can give p below `alpha`."""
    for rounds in range(2, MOST_ROUNDS + 1):
        if smallest_p(rounds, rounds) < alpha:
            return rounds
    return MOST_ROUNDS


def judge(results: dict[str, Any], rules: Rules) -> list[Verdict]:
    verdicts = []
    for kind, samples in (("wall", results["wall"]), ("instructions", results["counts"])):
        base, head = samples["base"], samples["head"]
        for name in sorted(set(base) | set(head)):
            if name not in head:
                verdicts.append(_alone(name, kind, base[name], [], "only in base: gone or renamed"))
            elif name not in base:
                verdicts.append(_alone(name, kind, [], head[name], "only in head: new or renamed"))
            elif kind == "wall":
                verdicts.append(_wall(name, base[name], head[name], rules))
            else:
                verdicts.append(_counts(name, base[name], head[name], rules))
    return verdicts


def _alone(name: str, kind: str, base: list, head: list, why: str) -> Verdict:
    return Verdict(name, kind, base, head, None, None, None, None, True, why)


def _wall(name: str, base: list[float], head: list[float], rules: Rules) -> Verdict:
    import numpy as np
    from scipy import stats

    ratio = statistics.median(head) / statistics.median(base)
    p = float(stats.mannwhitneyu(head, base, alternative="greater").pvalue)
    with warnings.catch_warnings():  # identical samples make a degenerate interval: fine
        warnings.simplefilter("ignore")
        interval = stats.bootstrap(
            (np.asarray(head), np.asarray(base)),
            lambda h, b: np.median(h) / np.median(b),
            n_resamples=RESAMPLES,
            method="percentile",
            vectorized=False,
            rng=np.random.default_rng(0),
        ).confidence_interval
    slower = ratio > 1 + rules.wall
    significant = p < rules.alpha
    fails = slower and significant
    floor = smallest_p(len(head), len(base))
    undecided = floor >= rules.alpha
    if undecided:
        why = f"cannot decide with {min(len(head), len(base))} rounds (p >= {floor:.3g})"
    elif fails:
        why = f"{ratio:.2f}x the base's time, p = {p:.3g}"
    elif slower:
        why = f"{ratio:.2f}x but not significant (p = {p:.3g})"
    elif significant and ratio > 1:
        why = f"slower (p = {p:.3g}) by less than {rules.wall:.0%}"
    else:
        why = "faster" if ratio < 1 and p > 1 - rules.alpha else "same"
    return Verdict(
        name, "wall", base, head, ratio, interval.low, interval.high, p, fails, why, undecided
    )


def _counts(name: str, base: list[float], head: list[float], rules: Rules) -> Verdict:
    ratio = statistics.median(head) / statistics.median(base)
    low, high = min(head) / max(base), max(head) / min(base)
    separated = min(head) > max(base)
    fails = separated and ratio > 1 + rules.counts
    if fails:
        why = f"{ratio - 1:+.2%} instructions"
    elif ratio > 1 + rules.counts:
        why = "more, but the counts overlap"
    else:
        why = f"{ratio - 1:+.3%}"
    return Verdict(name, "instructions", base, head, ratio, low, high, None, fails, why)


def _amount(kind: str, samples: list[float]) -> str:
    if not samples:
        return "-"
    middle = statistics.median(samples)
    if kind == "instructions":
        return f"{middle / 1e6:,.2f} M"
    return f"{middle * 1e3:,.2f} ms" if middle < 10 else f"{middle:,.1f} s"


#: The figures' columns: (header, width); a benchmark's name has a line of its own above
#: them (a test id runs to 90 characters, and a table column that wide left no room).
_FIGURES = (("", 14), ("base", 10), ("head", 10), ("ratio", 9), ("95% / range", 15), ("p", 7))
#: The table's width: an 80-column terminal (STYLE.md), the verdict folding under itself.
WIDTH = 80


def table(verdicts: list[Verdict], results: dict[str, Any], rules: Rules):
    """Each benchmark's name on a line, then a line per kind it was measured in: base,
    head, their ratio with its interval or range, p, and the verdict (folding at spaces
    under its own column); every line within WIDTH."""
    from rich.text import Text

    base = results["base"]
    lines = [
        *_folded(
            f"head ({results['head']['ref']}) against base {base['ref']} "
            f"({base['commit'][:12]}): {results['rounds']} rounds a side; {rules.describe()}",
            "",
        ),
        "",
        _figures_line([h for h, _ in _FIGURES], "verdict"),
    ]
    by_name: dict[str, list[Verdict]] = {}
    for v in verdicts:
        by_name.setdefault(v.name, []).append(v)
    for name, kinds in by_name.items():
        lines += _folded(name, "  ", at="_/:.")
        for v in kinds:
            digits = 3 if v.kind == "wall" else 4  # instruction counts agree to ~1e-7
            interval = "-" if v.low is None else f"{v.low:.{digits}f}-{v.high:.{digits}f}"
            ratio = (
                "-"
                if v.ratio is None
                else f"{v.ratio:.4f}x"
                if v.kind != "wall"
                else f"{v.ratio:.2f}x"
            )
            cells = ["  " + v.kind, _amount(v.kind, v.base), _amount(v.kind, v.head), ratio,
                     interval, "-" if v.p is None else f"{v.p:.3g}"]  # fmt: skip
            lines.append(_figures_line(cells, ("FAIL " if v.fails else "") + v.why))
    text = Text("\n".join(lines), no_wrap=True)
    text.highlight_regex(r"\bFAIL\b", "red")
    return text


def _figures_line(cells: list[str], verdict: str) -> str:
    """The figures in their columns, the verdict after them, folded under itself."""
    import textwrap

    line = "".join(
        f"{cell:<{width}}" if n == 0 else f"{cell:>{width}}"
        for n, (cell, (_, width)) in enumerate(zip(cells, _FIGURES, strict=True))
    )
    indent = len(line) + 2
    said = textwrap.wrap(verdict, WIDTH - indent, break_long_words=False) or [""]
    return "\n".join([line + "  " + said[0], *(" " * indent + more for more in said[1:])])


def _folded(text: str, indent: str, at: str = " ") -> list[str]:
    """`text` in lines of at most WIDTH, broken after one of the characters `at` (a test
    id has no spaces, but underscores and slashes), the lines after the first indented."""
    lines, rest, first = [], text, True
    while True:
        room = WIDTH - (0 if first else len(indent))
        if len(rest) <= room:
            lines.append(rest if first else indent + rest)
            return lines
        cut = max(rest.rfind(c, 0, room) for c in at) + 1 or room  # no such place: cut at room
        lines.append(rest[:cut].rstrip() if first else indent + rest[:cut].rstrip())
        rest, first = rest[cut:].lstrip(), False
