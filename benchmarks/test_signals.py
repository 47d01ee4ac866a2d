"""Signal delivery, timed: the measured phase of `signals` under pytest-benchmark.

What a regression here would mean: a slower path from kill(2) to a Python
handler (a change in how CPython checks for pending signals, in the kernel's
wake-up, in asyncio's signal plumbing). Each benchmark times one state's
latency sampling, send to handler, with a receiver already running, and
keeps the experiment's own record of it (lab.experiments.signals.latency.record:
quartiles, p99, max) in extra_info, the figures to compare (the wall time of
a round is dominated by the receiver's start). Each also asserts the lesson:
a receiver outside a long C call answers at once, one inside it only when the
call returns.
"""

from __future__ import annotations

import time

import pytest

from lab.experiments import signals
from lab.experiments.signals.latency import measure_state, record

#: A latency is asserted: under xdist, nothing beside it (conftest.py). The fact
#: checklist asserts what holds, as tests/test_signals.py does beside other tests.
alone = pytest.mark.alone

SAMPLES = 50
CALL_SIZE = 10**7
#: "At once": a handler runs at the next bytecode boundary, ~0.05 ms here; a
#: loaded machine adds scheduling delays of a few ms, never the C call's ~100 ms.
AT_ONCE_MS = 10.0


def _call_ms() -> float:
    """How long the receiver's one C call, sum(range(CALL_SIZE)), takes here."""
    started = time.perf_counter()
    sum(range(CALL_SIZE))
    return (time.perf_counter() - started) * 1e3


@alone
@pytest.mark.parametrize("state", ["sleep", "python-loop", "asyncio", "wakeup-fd"])
def test_delivery_latency(benchmark, state: str) -> None:
    latencies = benchmark.pedantic(
        measure_state, args=(state, SAMPLES, CALL_SIZE), rounds=3, iterations=1
    )
    figures = record(state, latencies)
    benchmark.extra_info.update(figures)
    assert figures["samples"] == SAMPLES
    # wakeup-fd: the receiver is inside the C call too, but the byte arrives at once
    assert figures["median_ms"] < AT_ONCE_MS, figures


@alone
def test_handler_waits_for_a_long_c_call(benchmark) -> None:
    latencies = benchmark.pedantic(measure_state, args=("c-call", 5, CALL_SIZE), rounds=2)
    figures = record("c-call", latencies)
    benchmark.extra_info.update(figures, call_ms=_call_ms())
    # The signal lands INTO_CALL (5 ms) into the call: the handler waits for the rest.
    assert figures["median_ms"] > max(AT_ONCE_MS, 0.25 * benchmark.extra_info["call_ms"]), figures


def test_fact_checklist(benchmark) -> None:
    """All nine facts, a fresh interpreter each: what `daemonlab run signals --part facts` costs."""
    params = signals.Params(part=("facts",))
    run = benchmark.pedantic(signals.run, args=(params,), rounds=1, iterations=1)
    assert [r["number"] for r in run.records] == list(signals.FACT_NUMBERS)
    assert all(r["holds"] for r in run.records), run.records
