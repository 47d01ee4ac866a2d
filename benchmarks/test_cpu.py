"""cpu's measured phase under pytest-benchmark: CI tracks it for regressions.

Each benchmark times one strategy's call (2 workers, 3x the quick run's work)
in this process, the same functions the experiment runs in its measuring
child, and summarises its rounds with the experiment's own record function
(lab.experiments.cpu.child.summarise: median and min-max wall time, CPU time,
speedup against sequential), kept in `extra_info`. Each asserts the lesson
with the margins a shared 2-core machine allows, on the fastest round (load
from elsewhere only ever slows a round down): threads never beat sequential
under the GIL; processes do where there are two cores. With
--benchmark-disable (the default in pyproject) each runs its rounds once, as
a plain test.

The subinterpreter target runs under pyenv's 3.13 through lab.interpreters (the
lab's own 3.11 has none), with the processes of the same run beside it.
"""

from __future__ import annotations

import time

import pytest

from lab import interpreters, noise
from lab.env import gil_enabled, usable_cores
from lab.errors import LabError
from lab.experiments import cpu
from lab.experiments.cpu import child, convoy, scaling
from lab.start_methods import stop_multiprocessing_servers

#: a time or a CPU share is asserted: under xdist, nothing beside it (tests/conftest.py)
pytestmark = pytest.mark.alone

WORKERS = 2
#: Three times the quick run's work. At the quick run's 6 M steps (0.11 s one after
#: another on a fast core) a 2-worker pool's own costs (pickling, dispatch, results)
#: are a quarter of its wall time, and its best speedup read 1.29 once: the margin
#: below is for load, not for overhead.
WORK = 3 * cpu.Params().work
ROUNDS = 3
#: How long more rounds may go on where the lesson does not show yet: load from
#: elsewhere slows single rounds for seconds, and only the fastest round is clean.
#: Seven rounds (about 5 s) once were not enough in CI: pool-fork's best of seven
#: read 1.28 while its sequential rounds went from 0.36 to 0.58 s.
MORE_S = 30
#: Under the GIL two threads share one interpreter: at best as fast as sequential
#: (switching costs a little); 1.3 leaves room for a sequential round slowed by load.
THREADS_AT_MOST = 1.3
#: Two processes on two cores: ideally 2x; 1.3 still tells parallel from serial.
PROCESSES_AT_LEAST = 1.3


@pytest.fixture(autouse=True, scope="module")
def _no_multiprocessing_server_left():
    """A spawn pool starts a resource tracker in this process: stopped, not left to pytest."""
    yield
    stop_multiprocessing_servers()


def _measure(strategy: str, start_method: str | None) -> dict:
    return scaling.measure_strategy(strategy, scaling.split(WORK, WORKERS), start_method)


def _rounds(strategy: str, start_method: str | None, benchmark, count: int = ROUNDS):
    """`count` rounds of the strategy, each right after a sequential round of the same work.

    Interleaved as the experiment interleaves them (child.py), so that load
    from elsewhere hits the baseline and the strategy alike; the sequential
    round is pedantic's `setup`, untimed. Disabled (a plain test run),
    pedantic makes one round: the others are made here, so that the lesson
    is always judged on `count` of them. Returns (strategy's, sequential's).
    """
    samples: list[dict] = []
    baseline: list[dict] = []

    def sequential() -> None:
        baseline.append(_measure("sequential", None))

    def once() -> None:
        samples.append(_measure(strategy, start_method))

    if benchmark is not None and not benchmark.disabled:
        benchmark.pedantic(once, setup=sequential, rounds=count)
        return samples, baseline
    for _ in range(count - (benchmark is not None)):
        sequential()
        once()
    if benchmark is not None:
        benchmark.pedantic(once, setup=sequential, rounds=1)
    return samples, baseline


def _summary(samples: list[dict], sequential: list[dict]) -> dict:
    """The experiment's own record of the rounds, and the speedup of the fastest rounds."""
    figures = child.summarise(samples, child.summarise(sequential, 1.0)["wall_s"])
    best = min(s["wall_s"] for s in sequential) / figures["wall_s_min"]
    return {**figures, "speedup_best": round(best, 3)}


@pytest.mark.parametrize(
    "strategy, start_method",
    [
        ("threads", None),
        ("processes", None),
        ("pool", "fork"),
        ("pool", "spawn"),
    ],
    ids=["threads", "processes", "pool-fork", "pool-spawn"],
)
def test_cpu_strategy(benchmark, strategy: str, start_method: str | None) -> None:
    samples, sequential = _rounds(strategy, start_method, benchmark)
    if strategy == "threads":
        if not gil_enabled():
            pytest.skip("a free-threaded interpreter: threads may scale here")
        holds = lambda f: f["speedup_best"] < THREADS_AT_MOST  # noqa: E731
    elif usable_cores() >= 2:
        holds = lambda f: f["speedup_best"] > PROCESSES_AT_LEAST  # noqa: E731
    else:
        holds = lambda f: True  # noqa: E731 - one core: nothing to run in parallel on
    figures = _summary(samples, sequential)
    watch, deadline = noise.Watch(), time.monotonic() + MORE_S
    while not holds(figures) and time.monotonic() < deadline:
        more, baseline = _rounds(strategy, start_method, None, 1)
        samples, sequential = samples + more, sequential + baseline
        figures = _summary(samples, sequential)
    benchmark.extra_info.update(figures, workers=WORKERS, work=WORK, rounds=len(samples))
    assert holds(figures), (figures, [s["wall_s"] for s in sequential], watch.others())
    if start_method == "spawn":  # a fresh interpreter per worker, kept out of the work phase
        assert figures["start_s"] > figures["wall_s"] / 10, figures


def test_cpu_sequential_starts_nothing(benchmark) -> None:
    samples, _ = _rounds("sequential", None, benchmark)
    figures = _summary(samples, samples)
    benchmark.extra_info.update(figures, workers=WORKERS, work=WORK)
    assert figures["start_s"] == 0 and figures["wall_s_min"] > 0


def test_cpu_convoy_echo(benchmark) -> None:
    records = benchmark.pedantic(
        lambda: list(convoy.measure_convoy(pings=50, fast_switch=1e-4)), rounds=1
    )
    benchmark.extra_info.update(
        {f"{r['case']}_{r['switch_interval_ms']}ms": r["median_ms"] for r in records}
    )
    alone, spinner, fast = (r["median_ms"] for r in records)
    if gil_enabled():  # the echo waits for the spinner's GIL; a short interval shortens it
        assert spinner > 5 * alone and fast < spinner / 3, records


#: The issue's target: two subinterpreters, each with its own GIL (PEP 684), on two
#: cores, at least 1.7x faster than one after another, under 3.13. Judged beside the
#: forked processes of the same run: where load keeps processes from 1.7x too, the
#: interpreters must come within 10% of them (and still clearly parallel).
INTERPRETERS_AT_LEAST = 1.7
BESIDE_PROCESSES = 0.9


def _best_speedups(records: list[dict]) -> dict[str, float]:
    """Each strategy's fastest round against sequential's fastest, from the child's records."""
    walls = {r["strategy"]: r["wall_s_min"] for r in records}
    return {s: round(walls["sequential"] / w, 3) for s, w in walls.items() if s != "sequential"}


def test_cpu_subinterpreters_scale_beside_processes_under_313(benchmark) -> None:
    try:
        python = interpreters.resolve("3.13")
    except LabError as exc:
        pytest.skip(f"no Python 3.13 here: {exc}")
    payload = {
        "parts": ["scaling"], "work": WORK, "workers": [WORKERS], "repeat": ROUNDS,
        "strategies": ["processes", "interpreters"], "start_methods": [],
        "pings": 0, "fast_switch": 1e-4,
    }  # fmt: skip
    best: dict[str, float] = {}

    def measure() -> list[dict]:
        return interpreters.run_measured(python, "lab.experiments.cpu.child", payload, 600)

    def holds() -> bool:
        wanted = min(INTERPRETERS_AT_LEAST, BESIDE_PROCESSES * best["processes"])
        return best["interpreters"] >= max(wanted, PROCESSES_AT_LEAST)

    records = benchmark.pedantic(measure, rounds=1)
    watch, deadline = noise.Watch(), time.monotonic() + MORE_S
    while True:  # the best of each strategy's rounds, over more runs while load hides the point
        for strategy, speedup in _best_speedups(records).items():
            best[strategy] = max(best.get(strategy, 0.0), speedup)
        if holds() or usable_cores() < 2 or time.monotonic() > deadline:
            break
        records = measure()
    (interp,) = [r for r in records if r["strategy"] == "interpreters"]
    benchmark.extra_info.update(
        {f"{s}_speedup_best": v for s, v in best.items()},
        api=interp["interpreters_api"], start_s=interp["start_s"], python=python.version,
    )  # fmt: skip
    if usable_cores() < 2:
        pytest.skip("one usable core: nothing to run in parallel on")
    assert holds(), (best, watch.others())
