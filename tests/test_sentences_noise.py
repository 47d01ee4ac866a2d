"""A chapter shows the lesson's point or says it is too noisy to: cpu and spawn, judged from
synthetic records (the verdicts read records only, so no run is needed), through the lesson
(its note under the table) and the report's sentence (lab.sentences)."""

from __future__ import annotations

import pytest

from lab import experiments, interpreters
from lab.experiments import cpu, spawn
from lab.runs import NOISY, Run
from lab.sentences import sentence

PYTHON = "CPython 3.12.3"


def _scaling(strategy: str, workers: int, wall: float, low: float, high: float) -> dict:
    return {
        "part": "scaling", "python": PYTHON, "strategy": strategy, "start_method": None,
        "workers": workers, "wall_s": wall, "wall_s_min": low, "wall_s_max": high,
        "spread_pct": (high - low) / wall * 100, "speedup": 0.40 / wall,
        "usable_cores": 2, "gil_enabled": True,
    }  # fmt: skip


#: A quiet 2-core machine: threads stay at one core's time, processes take half of it.
CPU_SHOWN = [
    _scaling("sequential", 1, 0.40, 0.39, 0.41),
    _scaling("sequential", 2, 0.40, 0.39, 0.41),
    _scaling("threads", 2, 0.41, 0.40, 0.42),
    _scaling("processes", 2, 0.21, 0.20, 0.22),
]
#: The tour's chapter at load 0.7: processes at 2 workers 0.75x with the repeats 142% apart.
CPU_NOISY = [
    *CPU_SHOWN[:3],
    _scaling("processes", 2, 0.533, 0.20, 0.957),
]


def _rss(method: str, mb: int, median: float, low: float, high: float) -> dict:
    return {
        "part": "rss", "python": PYTHON, "method": method, "rss_target_mb": mb,
        "rss_mb": float(mb), "median_ms": median, "min_ms": low, "max_ms": high,
    }  # fmt: skip


#: Fork grows fivefold from 30 MB to 500 MB; posix_spawn and a thread stay put.
SPAWN_SHOWN = [
    _rss("fork", 30, 0.60, 0.55, 0.70), _rss("fork", 500, 3.0, 2.8, 3.3),
    _rss("posix_spawn", 30, 0.80, 0.75, 0.90), _rss("posix_spawn", 500, 0.85, 0.78, 0.95),
    _rss("thread", 30, 0.05, 0.04, 0.06), _rss("thread", 500, 0.05, 0.04, 0.07),
]  # fmt: skip
#: The tour's: posix_spawn 3.9 ms at 30 MB (one creation at 9 ms) and 0.73 ms at 500 MB.
SPAWN_NOISY = [*SPAWN_SHOWN[:2], _rss("posix_spawn", 30, 3.9, 0.7, 9.0),
               _rss("posix_spawn", 500, 0.73, 0.70, 0.80), *SPAWN_SHOWN[4:]]  # fmt: skip


def _said(name: str, records: list[dict]) -> str:
    return sentence(experiments.load(name), Run(name, {}, {}, records, status="ok"))


def test_cpu_shows_the_point_when_processes_stand_clear_of_threads() -> None:
    assert cpu.verdict.point(CPU_SHOWN) is None
    said = _said("cpu", CPU_SHOWN)
    assert "threads 0.98x, processes 1.90x" in said and "noisy" not in said


def test_cpu_too_noisy_says_so_instead_of_the_figures() -> None:
    said = cpu.verdict.point(CPU_NOISY)
    assert said == (
        "too noisy to show the point here (spread 142%), run\n"
        "`daemonlab run cpu --part scaling --workers 1,2,4 --repeat 5`"
    )
    assert all(len(line) <= 80 for line in said.splitlines())
    report = _said("cpu", CPU_NOISY)
    assert report.startswith("Too noisy to show the point here (spread 142%), run `daemonlab")
    assert "0.75x" not in report


def test_cpu_processes_slower_clear_of_the_spread_is_shown_as_measured() -> None:
    slower = [*CPU_SHOWN[:3], _scaling("processes", 2, 0.60, 0.59, 0.61)]
    assert cpu.verdict.point(slower) is None


def test_spawn_shows_the_point_when_fork_grows_and_the_others_stay_flat() -> None:
    assert spawn.verdict.point(SPAWN_SHOWN) is None
    assert "noisy" not in _said("spawn", SPAWN_SHOWN)


def test_spawn_a_flat_method_that_moved_clear_of_its_spread_is_shown_as_measured() -> None:
    moved = [*SPAWN_SHOWN[:2], _rss("posix_spawn", 30, 0.8, 0.75, 0.9),
             _rss("posix_spawn", 500, 2.4, 2.3, 2.5)]  # fmt: skip
    assert spawn.verdict.point(moved) is None


@pytest.mark.parametrize(
    "records, spread",
    [
        (SPAWN_NOISY, 213),  # posix_spawn "flat" but fivefold apart, within its spread
        ([_rss("fork", 30, 0.6, 0.5, 2.0), _rss("fork", 500, 1.2, 0.6, 2.5)], 250),  # no growth
    ],
)
def test_spawn_too_noisy_says_so(records, spread) -> None:
    said = spawn.verdict.point(records)
    assert said == (
        f"too noisy to show the point here (spread {spread}%), run\n"
        "`daemonlab run spawn --part rss --rss 30,500 --rss-repeat 20`"
    )
    assert "Fork against parent size: too noisy" in _said("spawn", records)


def test_the_lessons_put_the_verdict_under_their_tables(monkeypatch) -> None:
    """Through each lesson's run(): the measuring child is replaced by the records."""
    given = {"lab.experiments.cpu.child": CPU_NOISY, "lab.experiments.spawn.child": SPAWN_NOISY}
    monkeypatch.setattr(
        interpreters, "stream_measured", lambda python, module, payload, timeout: given[module]
    )
    ran = cpu.run(cpu.Params(part=("scaling",), workers=(1, 2), repeat=1))
    assert any("too noisy to show the point here (spread 142%)" in n for n in ran.env["notes"])
    assert ran.env[NOISY] is True  # the tour prints the note in place of the table
    ran = spawn.run(spawn.Params(part=("rss",), rss=(30, 500)))
    assert any("too noisy to show the point here (spread 213%)" in n for n in ran.env["notes"])
    assert ran.env[NOISY] is True
