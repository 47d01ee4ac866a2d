"""Signal delivery, timed: the measured phase of `signals` under pytest-benchmark.

What a regression here would mean: a slower path from kill(2) to a Python
handler (a change in how CPython checks for pending signals, in the kernel's
wake-up, in asyncio's signal plumbing). Each benchmark times one state's
latency sampling, send to handler, with a receiver already running, and
keeps the state's median latency in extra_info, the figure to compare
(the wall time of a round is dominated by the receiver's start).
"""

from __future__ import annotations

import pytest

from lab.experiments import signals
from lab.experiments.signals.latency import measure_state, summary

SAMPLES = 50
CALL_SIZE = 10**7


@pytest.mark.parametrize("state", ["sleep", "python-loop", "asyncio", "wakeup-fd"])
def test_delivery_latency(benchmark, state: str) -> None:
    latencies = benchmark.pedantic(
        measure_state, args=(state, SAMPLES, CALL_SIZE), rounds=3, iterations=1
    )
    assert len(latencies) == SAMPLES
    benchmark.extra_info.update(summary(latencies))


def test_handler_waits_for_a_long_c_call(benchmark) -> None:
    latencies = benchmark.pedantic(measure_state, args=("c-call", 5, CALL_SIZE), rounds=2)
    benchmark.extra_info.update(summary(latencies))


def test_fact_checklist(benchmark) -> None:
    """All nine facts, a fresh interpreter each: what `daemonlab run signals --part facts` costs."""
    params = signals.Params(part=("facts",))
    run = benchmark.pedantic(signals.run, args=(params,), rounds=1, iterations=1)
    assert [r["number"] for r in run.records] == list(signals.FACT_NUMBERS)
    assert all(r["holds"] for r in run.records), run.records
