"""The gate says when it cannot fail: too few rounds for the rank test to reach alpha.

Fast, on synthetic results: the real `bench ab` runs are in test_bench.py (slow).
"""

from __future__ import annotations

import argparse
import json
from math import comb

import pytest

from lab import bench
from lab.bench import ALPHA, ROUNDS
from lab.bench.verdict import Rules, judge, rounds_needed, smallest_p
from lab.errors import LabError

BENCH = "benchmarks/test_toy.py::test_pause"


def _results(rounds: int, slower: float) -> dict:
    """`bench ab`'s results.json: `rounds` a side, head `slower` times the base, no overlap."""
    base = [0.020 + i * 1e-5 for i in range(rounds)]
    return {
        "rounds": rounds,
        "base": {"ref": "main", "commit": "0" * 40},
        "head": {"ref": "working tree", "commit": "1" * 40},
        "wall": {"base": {BENCH: base}, "head": {BENCH: [b * slower for b in base]}},
        "counts": {"base": {}, "head": {}},
    }


def test_the_smallest_p_is_one_over_the_orderings() -> None:
    for rounds in range(2, 8):
        assert abs(smallest_p(rounds, rounds) - 1 / comb(2 * rounds, rounds)) < 1e-12
    assert round(smallest_p(2, 2), 3) == 0.167


def test_the_fewest_rounds_that_can_reach_alpha() -> None:
    assert rounds_needed(0.01) == 5 == ROUNDS and ALPHA == 0.01  # 4 a side: 1/70 = 0.014
    assert rounds_needed(0.05) == 4  # 3 a side: exactly 0.05, not below it


def test_two_rounds_cannot_fail_and_say_so_instead_of_pass() -> None:
    (verdict,) = judge(_results(2, slower=2.0), Rules(0.15, 0.01, 0.01))
    assert verdict.undecided and not verdict.fails
    assert verdict.why == "cannot decide with 2 rounds (p >= 0.167)"
    (decided,) = judge(_results(5, slower=2.0), Rules(0.15, 0.01, 0.01))
    assert decided.fails and not decided.undecided


def test_compare_of_two_rounds_prints_cannot_decide_not_pass(tmp_path, capsys) -> None:
    path = tmp_path / "results.json"
    path.write_text(json.dumps(_results(2, slower=1.0)))
    code = bench.cmd_compare(_args(results=str(path)))
    out = capsys.readouterr().out
    said = out.splitlines()[-1]
    assert code == 1, out
    assert said == "gate: cannot decide with 2 rounds (1 of 1 in wall time); --rounds 5 can"
    assert "pass" not in out


def test_ab_refuses_too_few_rounds_in_one_line_naming_enough(tmp_path) -> None:
    with pytest.raises(LabError) as refused:  # before any worktree, venv or round
        bench.cmd_ab(_args(base="HEAD", rounds=2, cache=str(tmp_path)))
    said = str(refused.value)
    assert "\n" not in said and refused.value.exit_code == 2
    assert said == "--rounds 2 cannot fail: p >= 0.167, alpha 0.01; use --rounds 5"
    assert list(tmp_path.iterdir()) == []


def _args(**given) -> argparse.Namespace:
    """The options `bench ab` and `bench compare` parse, at their defaults."""
    defaults = {"threshold": 15.0, "count_threshold": 1.0, "alpha": ALPHA}
    return argparse.Namespace(**{**defaults, **given})
