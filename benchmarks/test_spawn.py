"""Benchmarks for `spawn`: creating and reaping one worker, the experiment's measured phase.

The in-process methods run here, in the benchmark's own process, exactly as
lab/experiments/spawn_child.py times them in its child interpreter.
multiprocessing's spawn and forkserver are left out here: from pytest a
spawned child would import pytest itself as its main module, which is not
what a worker costs. The fork-from-a-large-parent benchmark runs the `rss`
part in a child interpreter (growing pytest to 500 MB would slow every later
test's forks) and keeps fork's median in extra_info for comparison.
"""

from __future__ import annotations

import pytest

from lab import interpreters
from lab.experiments.spawn import child as spawn_child

METHODS = ("thread", "fork", "posix_spawn", "subprocess", "mp_fork")


@pytest.mark.parametrize("method", METHODS)
def test_create_and_reap_one_worker(benchmark, method):
    elapsed_ns = benchmark.pedantic(
        spawn_child.create_and_reap, args=(method,), rounds=30, warmup_rounds=2
    )
    assert elapsed_ns > 0


def test_fork_from_a_500_mb_parent(benchmark):
    payload = {"part": "rss", "rss_mb": 500, "methods": ["fork", "posix_spawn"], "repeat": 5}

    def measure():
        return interpreters.run_measured(
            interpreters.current(), "lab.experiments.spawn.child", payload, 300
        )

    records = benchmark.pedantic(measure, rounds=2, warmup_rounds=0)
    by_method = {r["method"]: r for r in records}
    benchmark.extra_info.update({f"{m}_median_ms": r["median_ms"] for m, r in by_method.items()})
    assert by_method["fork"]["rss_mb"] > 400
