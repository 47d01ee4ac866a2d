"""daemonize's costs under pytest-benchmark: becoming a daemon, and holding its pidfile.

The measured phases: a whole detach (launcher start, the man 7 daemon steps,
READY back on the pipe, launcher exit) for the lab's `launch`, and the
pidfile's open + fcntl lock + write + release. With --benchmark-disable (the
default) each runs once, as a plain test. A daemonization is done in a child
script (launch() closes the caller's descriptors), so its figure includes
that interpreter's start-up; `extra_info` says how long the steps alone took.
"""

# ruff: noqa: F811 - the fixture imported below is a parameter of the tests

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

from lab.daemon.pidfile import PidFile, holder
from tests.conftest import ROOT
from tests.test_daemon_support import subreaper  # noqa: F401 - a fixture

SCRIPT = textwrap.dedent(
    """
    import json, os, sys, time
    from lab.daemon.steps import Options, launch
    began = time.perf_counter_ns()
    result = launch(Options(sys.argv[1]), lambda detached: detached.ready.ready() or 0)
    took = (time.perf_counter_ns() - began) / 1e6
    print(json.dumps({"ok": result.ok, "pid": result.pid, "steps_ms": took}))
    """
)


def _daemonize_once(pidfile: str) -> dict:
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT, pidfile],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    facts = json.loads(done.stdout)
    assert facts["ok"], done.stderr
    _reap(facts["pid"])
    return facts


def _reap(pid: int) -> None:
    """The daemon exits right after READY; it was re-parented to us (the subreaper)."""
    try:
        os.waitpid(pid, 0)
    except ChildProcessError:
        pass  # already reaped, or not ours (no subreaper): nothing to wait for


def test_daemonize_launch_to_ready(benchmark, tmp_path, subreaper) -> None:
    pidfile = str(tmp_path / "d.pid")
    facts = benchmark.pedantic(_daemonize_once, args=(pidfile,), rounds=5)
    benchmark.extra_info.update(steps_ms=facts["steps_ms"])
    assert holder(pidfile) is None  # each daemon left; its lock went with it


def test_pidfile_lock_and_release(benchmark, tmp_path) -> None:
    path = tmp_path / "d.pid"

    def lock_and_release() -> None:
        PidFile.acquire(path).release()

    benchmark.pedantic(lock_and_release, rounds=200)
    assert path.read_text() == f"{os.getpid()}\n"
