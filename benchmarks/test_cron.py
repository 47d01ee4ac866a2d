"""A cron tick against a daemon already waiting, per job: the lesson's own measuring code.

One round ticks a fresh interpreter (cron's way) and a daemon blocked on Redis
at the same rate, then watches the daemon idle; crossing.crossings turns the
records into the rates at which a daemon starts to cost less, kept with the
per-job figures in extra_info:

    pytest benchmarks/test_cron.py --benchmark-enable --benchmark-autosave

What a regression here would mean: a slower interpreter start or a heavier
import of the lab (cpu per tick up), or a daemon that wakes more when idle
(its CPU crossing moves to higher rates).
"""

from __future__ import annotations

import pytest

from lab.experiments import cron
from tests.conftest import require_service

PARAMS = cron.Params(strategy=("cron", "daemon-redis"), rate=(2.0,), duration=2.0, idle=2.0)


@pytest.mark.timeout(300)
def test_a_tick_against_a_waiting_daemon(benchmark):
    require_service("redis")
    run = benchmark.pedantic(cron.run, args=(PARAMS,), rounds=1, iterations=1)
    ticks = {r["strategy"]: r for r in run.records if r["part"] == "ticks"}
    (crossing,) = [r for r in run.records if r["part"] == "crossing"]
    for strategy, r in ticks.items():
        for key in ("pickup_p50_ms", "pickup_p99_ms", "cpu_ms_per_job", "rss_mb", "mb_s_per_job"):
            benchmark.extra_info[f"{strategy}_{key}"] = r[key]
    benchmark.extra_info["cpu_cross_per_h"] = crossing["cpu_cross_per_h"]
    benchmark.extra_info["memory_cross_per_s"] = crossing["memory_cross_per_s"]
    total = next(r for r in run.records if r.get("module") == "(all imports of one tick)")
    benchmark.extra_info["tick_import_ms"] = total["cumulative_ms"]
    # The lesson: a tick pays its interpreter and imports every time, the daemon once.
    assert ticks["cron"]["cpu_ms_per_job"] > 20 * ticks["daemon-redis"]["cpu_ms_per_job"]
    assert crossing["cpu_cross_per_h"] < 3600  # the daemon is cheaper in CPU above a job a second
