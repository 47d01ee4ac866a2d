"""daemonize's costs under pytest-benchmark: becoming a daemon, and holding its pidfile.

The measured phases: the experiment's own watched daemonization (the lab's
`launch`, its twelve steps each read from /proc while the process waits,
READY back on the pipe, the launcher's exit), with the experiment's records
in extra_info (`at_ms` of each step: when it was seen, from the launcher's
start); and the pidfile's open + fcntl lock + write + release. Each asserts
the lesson: the launcher exits only once the daemon said READY, and the
daemon ends up outside the session it was started in. With
--benchmark-disable (the default) each runs once, as a plain test.
"""

from __future__ import annotations

import os

from lab.daemon.pidfile import PidFile
from lab.daemon.steps import STEPS
from lab.experiments import daemonize


def test_daemonize_launch_to_ready(benchmark) -> None:
    run = benchmark.pedantic(
        daemonize.run, args=(daemonize.Params(impl=("lab",)),), rounds=3, iterations=1
    )
    steps = {r["step"]: r for r in run.records}
    assert list(steps) == list(STEPS)
    benchmark.extra_info.update({f"{step}_ms": r["at_ms"] for step, r in steps.items()})
    assert [steps[s]["launcher"] for s in STEPS[:-1]] == ["waiting"] * (len(STEPS) - 1)
    assert steps["ready"]["launcher"] == "exited 0"
    daemon, launcher = steps["ready"], steps["close fds"]
    assert daemon["sid"] != launcher["sid"] and not daemon["session_leader"]


def test_pidfile_lock_and_release(benchmark, tmp_path) -> None:
    path = tmp_path / "d.pid"

    def lock_and_release() -> None:
        PidFile.acquire(path).release()

    benchmark.pedantic(lock_and_release, rounds=200)
    assert path.read_text() == f"{os.getpid()}\n"
