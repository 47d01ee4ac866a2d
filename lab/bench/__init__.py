"""`daemonlab bench ab BASE_REF` and `bench compare`: a regression gate that does not cry wolf.

What a learner would try first, and why it fails on a shared CI machine:
- pytest-benchmark's --benchmark-compare-fail compares against one run saved
  some other day, on whatever the machine was doing then, with no test of
  significance: identical code measured twice on this 2-core machine differs
  by several percent in median, so a tight threshold fails at random and a
  loose one misses real regressions.
- Timing base and head one after the other in the same job still lets a
  neighbour's load land on one side only.

So, as asv's `continuous` does, base and head are measured in the same job,
interleaved: `bench ab` checks the base out into a git worktree with a venv
of its own (the head's packages, so only the code differs), then runs the
pytest-benchmark suite in alternating rounds (base, head, then head, base,
...), each round a fresh process. `bench compare` fails a benchmark only when
it is slower by more than the threshold AND its samples are separated
(Mann-Whitney U, one-sided, at alpha), fails when a benchmark exists on one
side only, and prints every ratio with its 95% interval either way.

Where the work is CPU-bound, seconds are the wrong unit: instructions repeat
exactly whatever else the machine does. The functions named in the tree's
benchmarks/counted.py run at a small size under valgrind's callgrind, which
counts only inside the one call (counts.py says how), and a change of a
fraction of a percent shows.

Reading map: trees.py (the base worktree and its venv), rounds.py (the
alternating rounds), counts.py (instructions under callgrind), verdict.py
(the statistics and the table).
"""

from __future__ import annotations

import argparse
from typing import Any

from lab import params

__all__ = ["ALPHA", "COUNT_THRESHOLD", "ROUNDS", "WALL_THRESHOLD", "add_parser"]

#: Slower by more than this (median against median) fails, when also significant.
#: Measured A/A here (`bench ab HEAD`, 5 rounds a side, the whole suite, load average
#: 24 falling to 5; docs/benchmarks.md): the 21 benchmarks of 100 ms or more moved by
#: 9% in median (0.73x to 1.47x at the extremes, none significant); the one A/A shift
#: that came near significance (p = 0.016) was 7%. 15% stands above both.
WALL_THRESHOLD = 0.15
#: Instructions: A/A, cpu's countdown repeated to 1 in a million, parsing sleep's
#: options to 0.21% (addresses: counts.py); 1% is five times that and half the 2%
#: a CPU-bound change must not slip through.
COUNT_THRESHOLD = 0.01
#: One-sided Mann-Whitney U at 5 rounds a side: p is at least 1/252 = 0.004, so 0.01 is
#: reachable with one round out of order. No A/A benchmark went below 0.016 here.
ALPHA = 0.01
#: Rounds per side: the fewest for which ALPHA is reachable at all (4 a side: p >= 0.014;
#: verdict.smallest_p), one round out of order included.
ROUNDS = 5
#: Where `ab` keeps the base's worktree, its venv and the results (gitignored).
CACHE = ".bench"


def add_parser(subparsers: Any) -> None:
    bench = subparsers.add_parser(
        "bench",
        help="the regression gate: base and head benchmarked in one job, compared honestly",
        description=__doc__.split("\n\n")[0],
        allow_abbrev=False,
    )
    actions = bench.add_subparsers(dest="bench_action", required=True, metavar="ACTION")
    p = actions.add_parser(
        "ab",
        help="benchmark BASE_REF (a worktree) and the working tree in alternating rounds",
        allow_abbrev=False,
    )
    p.add_argument("base", metavar="BASE_REF", help="a commit, branch or tag: origin/main")
    p.add_argument(
        "--rounds", type=params.whole_number(2), default=ROUNDS, help=f"per side (default {ROUNDS})"
    )
    p.add_argument("-k", dest="select", metavar="EXPR", help="only benchmarks pytest -k selects")
    p.add_argument("--benchmarks", default="benchmarks", help="the suite, in each tree")
    p.add_argument("--no-counts", action="store_true", help="skip the callgrind counts")
    p.add_argument("--cache", default=CACHE, help=f"worktrees, venvs, results (default {CACHE})")
    _thresholds(p)
    p.set_defaults(func=cmd_ab)
    p = actions.add_parser(
        "compare", help="judge the results `ab` saved (again, with other thresholds)"
    )
    p.add_argument("results", nargs="?", help=f"results.json (default {CACHE}/results.json)")
    _thresholds(p)
    p.set_defaults(func=cmd_compare)


def _thresholds(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--threshold",
        type=params.number(above=0, maximum=1000),
        default=WALL_THRESHOLD * 100,
        help=f"percent slower in wall time that fails (default {WALL_THRESHOLD * 100:g}%%)",
    )
    p.add_argument(
        "--count-threshold",
        type=params.number(above=0, maximum=1000),
        default=COUNT_THRESHOLD * 100,
        help=f"percent more instructions that fails (default {COUNT_THRESHOLD * 100:g}%%)",
    )
    p.add_argument(
        "--alpha",
        type=params.number(above=0, below=1),
        default=ALPHA,
        help=f"significance (default {ALPHA})",
    )


def cmd_ab(args: argparse.Namespace) -> int:
    from pathlib import Path

    from lab.bench import rounds, verdict
    from lab.errors import LabError

    needed = verdict.rounds_needed(args.alpha)
    if args.rounds < needed:  # refused before minutes of rounds that could not fail
        floor = verdict.smallest_p(args.rounds, args.rounds)
        raise LabError(
            f"--rounds {args.rounds} cannot fail: p >= {floor:.3g}, alpha {args.alpha:g}; "
            f"use --rounds {needed}"
        )
    results = rounds.ab(
        args.base,
        rounds=args.rounds,
        select=args.select,
        suite=args.benchmarks,
        counts_too=not args.no_counts,
        cache=Path(args.cache),
    )
    return _judge(results, args)


def cmd_compare(args: argparse.Namespace) -> int:
    import json
    from pathlib import Path

    from lab.errors import LabError

    path = Path(args.results or Path(CACHE) / "results.json")
    try:
        results = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise LabError(
            f"cannot read {path}: {exc}; run `daemonlab bench ab BASE_REF` first"
        ) from None
    return _judge(results, args)


def _judge(results: dict, args: argparse.Namespace) -> int:
    from rich.markup import escape

    from lab.bench import verdict
    from lab.report import console

    rules = verdict.Rules(args.threshold / 100, args.count_threshold / 100, args.alpha)
    verdicts = verdict.judge(results, rules)
    out = console()
    out.print(verdict.table(verdicts, results, rules))
    failed = [v for v in verdicts if v.fails]
    if failed:
        out.print(f"[red]gate: {len(failed)} of {len(verdicts)} fail:[/red] "
                  + escape("; ".join(f"{v.name} ({v.why})" for v in failed)))  # fmt: skip
        return 1
    undecided = [v for v in verdicts if v.undecided]
    if undecided:  # a gate that could not have failed does not say pass
        out.print(
            f"[yellow]gate: cannot decide with {results['rounds']} rounds[/yellow] "
            f"({len(undecided)} of {len(verdicts)} in wall time); "
            f"--rounds {verdict.rounds_needed(rules.alpha)} can"
        )
        return 1
    out.print(f"gate: all {len(verdicts)} pass ({rules.describe()})")
    return 0
