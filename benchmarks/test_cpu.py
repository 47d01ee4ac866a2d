"""cpu's measured phase under pytest-benchmark: CI tracks it for regressions.

Each benchmark times one strategy's call (2 workers, the quick run's work)
in this process, the same functions the experiment runs in its measuring
child; `extra_info` carries what the experiment records, so a saved run also
says what the work phase and start-up were. With --benchmark-disable (the
default in pyproject) each runs once, as a plain test.
"""

from __future__ import annotations

import pytest

from lab.experiments import cpu
from lab.experiments.cpu import convoy, scaling

WORKERS = 2
WORK = cpu.Params().work


@pytest.mark.parametrize(
    "strategy, start_method",
    [
        ("sequential", None),
        ("threads", None),
        ("processes", None),
        ("pool", "fork"),
        ("pool", "spawn"),
    ],
    ids=["sequential", "threads", "processes", "pool-fork", "pool-spawn"],
)
def test_cpu_strategy(benchmark, strategy: str, start_method: str | None) -> None:
    chunks = scaling.split(WORK, WORKERS)
    timing = benchmark.pedantic(
        scaling.measure_strategy, args=(strategy, chunks, start_method), rounds=3
    )
    benchmark.extra_info.update(timing, workers=WORKERS, work=WORK)
    assert timing["wall_s"] > 0


def test_cpu_convoy_echo(benchmark) -> None:
    records = benchmark.pedantic(
        lambda: list(convoy.measure_convoy(pings=50, fast_switch=1e-4)), rounds=1
    )
    benchmark.extra_info.update(
        {f"{r['case']}_{r['switch_interval_ms']}ms": r["median_ms"] for r in records}
    )
    assert len(records) == 3
