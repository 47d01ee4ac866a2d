"""The job worker against rq on no-op jobs: its target, measured with the lesson's own code.

One round measures three workers one after the other on the same Redis,
each with the same number of jobs at once: the lab's thread worker, rq's
SimpleWorker (no fork) and rq's default Worker (a fork per job). The
figures are the experiment's own (plan.throughput_record per system, then
plan.ratios over those records), kept in extra_info:

    pytest benchmarks/test_worker.py --benchmark-enable --benchmark-autosave

The target: the lab's thread worker at least 1.0x rq's
SimpleWorker and far ahead of its fork per job (here: at least 10x).
"""

from __future__ import annotations

import pytest

from lab.experiments.worker import plan
from lab.experiments.worker.measure import Cell
from tests.conftest import require_service

#: a time or a CPU share is asserted: under xdist, nothing beside it (tests/conftest.py)
pytestmark = pytest.mark.alone

WORKERS = 2
QUEUED, SECONDS, SAMPLES, GAP = 2000, 2.0, 10, 0.02
SYSTEMS = (("lab", "threads"), ("rq", "simple"), ("rq", "fork-per-job"))


def _record(system: str, model: str, setting: str = "default", round_: int = 1) -> dict:
    """One cell measured, as the experiment's own record of it."""
    cell = Cell(system, model, WORKERS, "noop", setting)
    return plan.throughput_record(cell, round_, QUEUED, SECONDS, SAMPLES, GAP)


def _round() -> list[dict]:
    return [_record(system, model) for system, model in SYSTEMS]


@pytest.mark.timeout(300)
def test_lab_threads_against_rq_on_noop_jobs(benchmark):
    require_service("redis")
    records = benchmark.pedantic(_round, rounds=1, iterations=1)
    (ratio,) = plan.ratios(records)
    for r in records:
        name = f"{r['system']}_{r['model']}"
        benchmark.extra_info[f"{name}_jobs_per_s"] = r["jobs_per_s"]
        benchmark.extra_info[f"{name}_pickup_p99_ms"] = r["pickup_p99_ms"]
        benchmark.extra_info[f"{name}_cpu_ms_per_job"] = r["cpu_ms_per_job"]
    benchmark.extra_info["x_rq_simple"] = ratio["vs_simple"]
    benchmark.extra_info["x_rq_fork_per_job"] = ratio["vs_fork"]
    assert ratio["vs_simple"] >= 1.0, ratio
    assert ratio["vs_fork"] >= 10.0, ratio


#: Celery's and Dramatiq's tuned rows (their docs' advice for throughput), threads each:
#: three rounds alternating with the lab's, the ratio as median and range.
TUNED = (
    ("lab", "threads", "default"),
    ("celery", "threads", "tuned"),
    ("dramatiq", "threads", "tuned"),
)
ROUNDS = 3


def _tuned_rounds() -> list[dict]:
    return [_record(*peer, round_=n + 1) for n in range(ROUNDS) for peer in TUNED]


@pytest.mark.timeout(600)
def test_lab_threads_against_celery_and_dramatiq_tuned(benchmark):
    require_service("redis")
    records = benchmark.pedantic(_tuned_rounds, rounds=1, iterations=1)
    (ratio,) = plan.ratios(records)
    assert ratio["rounds"] == ROUNDS
    for key in ("vs_celery", "vs_dramatiq"):
        benchmark.extra_info[f"x_{key[3:]}"] = ratio[key]
        benchmark.extra_info[f"x_{key[3:]}_range"] = ratio[f"{key}_range"]
    # The lab's worker does less per job (three round trips): at least even with both.
    assert ratio["vs_celery"] >= 1.0, ratio
    assert ratio["vs_dramatiq"] >= 1.0, ratio
