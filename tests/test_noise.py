"""lab.noise: the warnings a run carries when its figures could be noise."""

from __future__ import annotations

from lab import noise


def test_load_above_half_the_cores_with_others_at_work_warns_and_the_readings_are_kept() -> None:
    env: dict = {}
    assert noise.competing_load(env, cores=2, load=0.9, others=2.0) is None
    assert env == {"load_average": 0.9, "runnable_elsewhere": 2.0}
    # the load average lags: high with nothing runnable now is the lab's own last run
    assert noise.competing_load(env, cores=2, load=3.4, others=0.1) is None
    said = noise.competing_load(env, cores=2, load=3.4, others=1.5)
    assert said and "load average 3.40 on 2 cores before the run, 1.5 other" in said
    assert env["warnings"] == [said] and env["load_average"] == 3.4


def test_the_readings_come_from_the_kernel_and_a_spinner_is_seen(no_leaks) -> None:
    import os
    import subprocess
    import sys

    env: dict = {}
    spinner = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        noise.competing_load(env, cores=os.cpu_count() or 1)
    finally:
        spinner.kill()
        spinner.wait()
    assert env["load_average"] >= 0
    assert env["runnable_elsewhere"] >= 0.5, env  # the spinner, runnable all along


def test_a_spread_larger_than_the_difference_warns_once() -> None:
    apart = (noise.Figure("threads", 1.0, 0.95, 1.05), noise.Figure("processes", 0.5, 0.48, 0.6))
    env: dict = {}
    assert noise.compare(env, "2 workers", *apart) is None and env == {}
    close = (noise.Figure("threads", 1.0, 0.7, 1.3), noise.Figure("processes", 0.9, 0.85, 0.95))
    said = noise.compare(env, "2 workers", *close)
    noise.compare(env, "2 workers", *close)
    assert env["warnings"] == [said]
    assert "threads 0.7-1.3 s and processes 0.85-0.95 s" in said and "cannot tell" in said
