"""spawn: what one worker costs, against real threads, forks and interpreters.

Timings on a shared 2-core machine are noisy, so only the ratios the lesson
rests on are asserted, with wide margins, and on the fastest sample (min_ms):
the floor of a cost is what the parent's size changes; noise only adds to it.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import psutil
import pytest

from lab import interpreters
from lab.errors import LabError
from lab.experiments import spawn
from lab.experiments.spawn import child as spawn_child
from lab.results import open_store
from tests.conftest import ROOT, assert_refused, run_cli

#: The tests of the measured fixture assert times and sizes: under xdist, nothing
#: beside them (conftest.py). The others (reaping, signals, bad input) share the machine.
alone = pytest.mark.alone

SMALL_MB, LARGE_MB = 30, 1024


def _one(records, **match):
    found = [r for r in records if all(r.get(k) == v for k, v in match.items())]
    assert len(found) == 1, (match, found)
    return found[0]


@pytest.fixture(scope="module")
def measured():
    """One run of every part, small: the tests below read its records."""
    params = spawn.Params(
        method=("thread", "fork", "posix_spawn"),
        repeat=10,
        rss=(SMALL_MB, LARGE_MB),
        rss_repeat=5,
        threads=500,
        processes=2,
    )
    return spawn.run(params).records


@alone
def test_fork_from_a_large_parent_is_clearly_slower(measured):
    small = _one(measured, part="rss", method="fork", rss_target_mb=SMALL_MB)
    large = _one(measured, part="rss", method="fork", rss_target_mb=LARGE_MB)
    assert large["rss_mb"] > 0.9 * LARGE_MB, "the ballast is really resident"
    assert large["page_tables_kb"] > 5 * small["page_tables_kb"]
    assert large["min_ms"] > 3 * small["min_ms"], (small, large)


@alone
def test_posix_spawn_does_not_grow_like_fork(measured):
    def growth(method: str) -> float:
        small = _one(measured, part="rss", method=method, rss_target_mb=SMALL_MB)
        large = _one(measured, part="rss", method=method, rss_target_mb=LARGE_MB)
        return large["min_ms"] / small["min_ms"]

    assert growth("posix_spawn") < growth("fork") / 3
    assert growth("thread") < growth("fork") / 3


@alone
def test_a_thread_costs_far_less_memory_than_its_stack_reservation(measured):
    thread = _one(measured, part="memory", method="thread")
    assert thread["count"] == 500
    reservation_kb = thread["stack_limit_kb"] or 8192
    assert thread["virtual_kb_each"] > reservation_kb / 2, "the reservation is real (virtual)"
    assert thread["rss_kb_each"] < reservation_kb / 16, "but only a few pages are touched"


@alone
def test_a_forked_worker_holds_far_less_of_its_own_than_a_spawned_one(measured):
    fork = _one(measured, part="memory", method="fork")
    spawned = _one(measured, part="memory", method="mp_spawn")
    assert fork["uss_kb_each"] < spawned["uss_kb_each"] / 2


@alone
def test_the_records_say_which_python_made_them(measured):
    assert {r["python"] for r in measured} == {interpreters.current().version}
    create = [r for r in measured if r["part"] == "create"]
    assert [r["method"] for r in create] == ["thread", "fork", "posix_spawn"]
    for r in create:
        assert r["min_ms"] <= r["median_ms"] <= r["p95_ms"] <= r["p99_ms"]


def test_every_method_creates_and_reaps_leaving_nothing_behind(no_leaks):
    run = spawn.run(spawn.Params(part=("create",), repeat=2))
    assert run.status == "ok"
    assert [r["method"] for r in run.records] == list(spawn.METHODS)


def test_the_measuring_module_reaps_its_idle_workers_even_when_stopped_early(no_leaks):
    """In this process, without the child interpreter's group kill to clean up after it."""
    records = list(spawn_child.measure({"part": "memory", "method": "fork", "count": 3}))
    assert records[0]["uss_kb_each"] > 0
    parts = spawn_child.measure({"part": "memory", "method": "fork", "count": 3})
    next(parts)
    parts.close()  # GeneratorExit at the yield: the finally still releases and reaps


def test_under_another_python_the_records_carry_its_version(no_leaks):
    try:
        other = interpreters.resolve("3.12")
    except LabError as exc:
        pytest.skip(f"no Python 3.12 here: {exc}")
    run = spawn.run(spawn.Params(part=("create",), method=("fork",), repeat=3, python=("3.12",)))
    assert [(r["python"], r["interpreter"]) for r in run.records] == [(other.version, other.path)]


def test_cli_runs_stores_and_plots(tmp_path):
    out = run_cli(
        "run", "spawn", "--part", "create,memory", "--method", "thread,fork", "--repeat", "3",
        "--threads", "50", "--processes", "1", "--json",
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    run = json.loads(out.stdout)
    assert run["status"] == "ok" and run["run_id"] is not None
    assert {r["part"] for r in run["records"]} == {"create", "memory"}
    png = tmp_path / "spawn.png"
    plotted = run_cli("plot", "spawn", "-o", str(png))
    assert plotted.returncode == 0, plotted.stderr
    assert png.stat().st_size > 10_000


def _wait_for(condition, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = condition()
        if found:
            return found
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def test_ctrl_c_stops_the_measuring_child_and_every_worker(results_path):
    """SIGINT to the CLI while a 500 MB parent forks: exit 130, run stored, nothing left."""
    cli = subprocess.Popen(
        [sys.executable, "-m", "lab", "run", "spawn", "--part", "rss", "--rss", "500",
         "--rss-repeat", "100000", "--rss-method", "fork"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )  # fmt: skip
    try:
        me = psutil.Process(cli.pid)

        def grown_parent():
            return [p for p in me.children(recursive=True) if p.memory_info().rss > 400 << 20]

        measuring = _wait_for(grown_parent, 60, "the measuring child to grow to 500 MB")[0]
        workers = _wait_for(measuring.children, 30, "a forked worker")  # in the fork loop
        descendants = [measuring, *workers]
        cli.send_signal(signal.SIGINT)
        _, stderr = cli.communicate(timeout=30)
    finally:
        if cli.poll() is None:
            cli.kill()
            cli.communicate()
    assert cli.returncode == 130, stderr
    assert "interrupted" in stderr and "Traceback" not in stderr
    # is_running() is False once the process is reaped (a zombie still runs, to psutil),
    # and it compares start times, so a recycled pid does not count as ours.
    _wait_for(lambda: not any(p.is_running() for p in descendants), 10, "every descendant to go")
    with open_store(results_path) as store:
        assert [r.status for r in store.runs("spawn")] == ["interrupted"]


@pytest.mark.parametrize(
    "options, says",
    [
        (["--method", "thread,vfork"], "unknown value 'vfork'"),
        (["--rss", "0"], "--rss must be at least 1"),
        (["--repeat", "0"], "--repeat must be at least 1"),
        (["--python", "python9.9"], "no interpreter 'python9.9'"),
        (["--rss", "100000000"], "more than half"),
        (["--threads", "many"], "not a valid int"),
    ],
)
def test_bad_input_is_refused_in_one_line(options, says):
    assert_refused(run_cli("run", "spawn", *options, timeout=60), says)
