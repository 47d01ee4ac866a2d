"""The regression gate, proved on a small repository of its own: A/A passes; a 30% slowdown
in wall time and a 2% rise in instructions each fail; a missing or renamed benchmark fails.

The repository (made here, with git) has one wall-time benchmark (a 20 ms
pause: what the machine does meanwhile barely moves it, so the test is not
at the mercy of a neighbour's load) and one counted function (a pure-Python
loop). Each test changes the working tree (the head) and runs the real
`daemonlab bench ab HEAD`: a worktree of the base, the gate's venv (made
once for the module), alternating rounds, callgrind.
"""

from __future__ import annotations

import contextlib
import json
import subprocess
import sys
from pathlib import Path

import pytest

from lab.bench.verdict import Rules, judge
from tests.conftest import ROOT, assert_refused, run_cli

pytestmark = pytest.mark.slow

TOY = {
    "toy.py": (
        "import time\n\nDELAY = 0.02\n\n\ndef pause():\n    time.sleep(DELAY)\n\n\n"
        "def spin(n):\n    total = 0\n    for i in range(n):\n        total += i\n"
        "    return total\n"
    ),
    "benchmarks/test_toy.py": (
        "import toy\n\n\ndef test_pause(benchmark):\n"
        "    benchmark.pedantic(toy.pause, rounds=5, iterations=1)\n"
    ),
    "benchmarks/counted.py": 'COUNTED = {"toy.spin": ("toy", "spin", [20000])}\n',
}


@pytest.fixture(scope="module")
def toy(tmp_path_factory):
    repo = tmp_path_factory.mktemp("toy")
    for name, text in TOY.items():
        (repo / name).parent.mkdir(parents=True, exist_ok=True)
        (repo / name).write_text(text)
    git = ["git", "-C", str(repo), "-c", "user.name=lab", "-c", "user.email=lab@localhost"]
    subprocess.run([*git, "init", "-q"], check=True)
    subprocess.run([*git, "add", "-A"], check=True)
    subprocess.run([*git, "commit", "-qm", "base"], check=True)
    return repo, tmp_path_factory.mktemp("cache")


@contextlib.contextmanager
def head(repo: Path, changes: dict[str, tuple[str, str]]):
    """The working tree with, in each file, old replaced by new; put back after."""
    try:
        for name, (old, new) in changes.items():
            path = repo / name
            text = path.read_text()
            assert old in text, (name, old)
            path.write_text(text.replace(old, new))
        yield
    finally:
        subprocess.run(["git", "-C", str(repo), "checkout", "-q", "--", "."], check=True)


def ab(toy, *extra: str):
    repo, cache = toy
    done = run_cli("bench", "ab", "HEAD", "--cache", str(cache), *extra, cwd=repo, timeout=600)
    results = json.loads((cache / "results.json").read_text())
    return done, results


def test_the_same_code_measured_twice_passes(toy):
    done, results = ab(toy)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "gate: all 2 pass" in done.stdout
    (base,) = results["counts"]["base"].values()
    (head_,) = results["counts"]["head"].values()
    assert abs(max(head_) / min(base) - 1) < 1e-4  # instructions repeat: here to ~1e-7
    assert len(results["wall"]["base"]["benchmarks/test_toy.py::test_pause"]) == 5


def test_a_30_percent_slowdown_in_wall_time_fails(toy):
    repo, cache = toy
    with head(repo, {"toy.py": ("DELAY = 0.02", "DELAY = 0.026")}):
        done, results = ab(toy, "--no-counts")
    assert done.returncode == 1, done.stdout + done.stderr
    assert "1 of 1 fail: benchmarks/test_toy.py::test_pause (1.30x the base's time" in done.stdout
    # The same results judged again with a wider threshold: slower, but under it.
    again = run_cli("bench", "compare", str(cache / "results.json"), "--threshold", "40")
    assert again.returncode == 0, again.stdout


def test_a_2_percent_rise_in_instructions_fails_where_wall_time_sees_nothing(toy):
    repo, _ = toy
    with head(repo, {"toy.py": ("for i in range(n):", "for i in range(n + n // 50):")}):
        done, results = ab(toy)
    assert done.returncode == 1, done.stdout + done.stderr
    assert "1 of 2 fail: toy.spin (+2.0" in done.stdout
    verdicts = {v.name: v for v in judge(results, Rules(0.15, 0.01, 0.01))}
    assert verdicts["benchmarks/test_toy.py::test_pause"].fails is False
    assert 1.015 < verdicts["toy.spin"].ratio < 1.025


def test_a_renamed_and_a_missing_benchmark_fail(toy):
    repo, _ = toy
    renamed = ("def test_pause(", "def test_pause_renamed(")
    gone = ('"toy.spin": ("toy", "spin", [20000])', "")
    with head(repo, {"benchmarks/test_toy.py": renamed, "benchmarks/counted.py": gone}):
        done, _ = ab(toy)
    assert done.returncode == 1, done.stdout + done.stderr
    said = " ".join(done.stdout.split())
    assert "3 of 3 fail" in said
    assert "test_pause (only in base: gone or renamed)" in said
    assert "test_pause_renamed (only in head: new or renamed)" in said
    assert "toy.spin (only in base: gone or renamed)" in said


def test_an_unknown_base_and_missing_results_are_one_line(toy, tmp_path):
    repo, cache = toy
    assert_refused(run_cli("bench", "ab", "no-such-ref", "--cache", str(cache), cwd=repo), "git")
    assert_refused(run_cli("bench", "compare", str(tmp_path / "none.json")), "cannot read")


def test_pytest_benchmark_compare_with_no_baseline_is_a_usage_error_not_internal(tmp_path):
    bench = tmp_path / "test_tiny.py"
    bench.write_text("def test_tiny(benchmark):\n    benchmark(sum, range(10))\n")
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-c", str(ROOT / "pyproject.toml"), str(bench),
         "--rootdir", str(tmp_path), "-p", "no:cacheprovider", "--benchmark-enable",
         f"--benchmark-storage={tmp_path / 'none'}", "--benchmark-compare",
         "--benchmark-compare-fail=median:15%"],
        capture_output=True, text=True, cwd=tmp_path,
    )  # fmt: skip
    said = done.stdout + done.stderr
    assert "INTERNALERROR" not in said
    assert "Can't compare. No benchmark files" in said
    assert "test_tiny" in said and "Name (time in" in said  # the benchmark ran and was shown
    assert done.returncode == 4, said  # pytest's usage error: compare-fail needs a baseline
