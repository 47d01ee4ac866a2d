"""SELECT SLEEP benchmarks: each strategy at 32 clients, 0.2 s, for regression tracking.

Each round is one strategy run end to end (connect, release, query, goodbye),
timed by pytest-benchmark; the query phase's own figures from the same round
(wall, efficiency, release skew, connect) go into extra_info, where
`--benchmark-json` keeps them for comparison across commits:

    pytest benchmarks/test_sleep.py --benchmark-enable --benchmark-autosave
    pytest benchmarks/test_sleep.py --benchmark-enable --benchmark-compare \
        --benchmark-compare-fail=median:15%
"""

from __future__ import annotations

import functools
import statistics

import pytest

from lab import db
from lab.experiments.sleep import processes, tasks, threads
from lab.experiments.sleep.job import Job, measured_phase

CLIENTS, SECONDS = 32, 0.2

STRATEGIES = {
    "threads": threads.threads,
    "fork": processes.fork,
    "pool-fork": functools.partial(processes.pool, start_method="fork"),
    "asyncio": tasks.asyncio_clients,
    "asyncio-uvloop": functools.partial(tasks.asyncio_clients, loop="uvloop"),
}

pytestmark = pytest.mark.db


@pytest.mark.parametrize("name", STRATEGIES)
def test_sleep_strategy(benchmark, mysql_server, name):
    job = Job(mysql_server, CLIENTS, SECONDS, tag="bench")
    phases = []

    def one_round():
        with measured_phase():
            timings = STRATEGIES[name](job)
        phases.append(timings)

    with db.capacity(mysql_server, CLIENTS):
        benchmark.pedantic(one_round, rounds=3, iterations=1, warmup_rounds=1)
    walls = [(max(t.ends) - t.go_ns) / 1e9 for t in phases]
    benchmark.extra_info.update(
        clients=CLIENTS,
        seconds=SECONDS,
        wall_s_median=statistics.median(walls),
        efficiency_median=SECONDS / statistics.median(walls),
        skew_s_median=statistics.median((max(t.starts) - t.go_ns) / 1e9 for t in phases),
        connect_s_median=statistics.median(t.connect_ns / 1e9 for t in phases),
    )
    # Physics, not a speed target: the queries overlapped, and none beat its sleep.
    assert SECONDS <= min(walls) < CLIENTS * SECONDS / 4
