"""The whole run's hooks, for tests/ and benchmarks/ alike (a hook in tests/conftest.py
would be called for benchmarks too, and one in both files twice): how pytest-xdist's
workers share this machine. The fixtures are in tests/conftest.py."""

from __future__ import annotations

import contextlib
import fcntl
import signal
import time
from pathlib import Path

import pytest

# -- sharing the machine between pytest-xdist's workers (README: pytest -n 4) ---------
# Most tests wait: for an interpreter to start, a server to answer, a SELECT
# SLEEP to end (test_sleep.py and test_db.py used 66 s of CPU in 195 s of wall
# time), so four workers share two cores well. A test marked `alone` measures a
# time or a CPU share, or reads a figure the whole server shares: it runs with no
# other test beside it, after every other test of the run has ended (an alone test
# that shut the others out as soon as its worker reached it left the others' queued
# tests waiting behind it: -n 6 took longer than -n 4).


def pytest_configure(config) -> None:
    """`pytest &` in a script (a shell without job control) starts with INT ignored, and
    Python then installs no KeyboardInterrupt handler (signal module docs): the tests of
    Ctrl-C in this process need the one a terminal gives."""
    if signal.getsignal(signal.SIGINT) == signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)


def alone(item) -> bool:
    return item.get_closest_marker("alone") is not None


def pytest_collection_modifyitems(config, items) -> None:
    items.sort(key=alone)  # stable: the rest in their order, then the alone ones


@pytest.hookimpl(hookwrapper=True, tryfirst=True)
def pytest_runtest_protocol(item, nextitem):
    """Under xdist: a shared turn for every test, counted when it ends (setup, call and
    teardown: a test skipped by its mark too); the whole machine for an `alone` one, once
    every shared test has ended. Outside pytest-timeout's wrapper: the wait is not the
    test's own time."""
    if not hasattr(item.config, "workerinput"):  # not an xdist worker (a pytest it ran?)
        yield
        return
    # one folder per run, above the workers' own (the tmp_path_factory fixture's object)
    shared = item.config._tmp_path_factory.getbasetemp().parent
    if alone(item):
        _after_the_shared_tests(shared, sum(not alone(i) for i in item.session.items))
    began = time.time()
    with _turn(shared, alone=alone(item)):
        yield
    with open(shared / TURNS, "a") as turns:  # O_APPEND: a line each, whole
        turns.write(f"{'alone' if alone(item) else 'shared'} {began} {time.time()}\n")
    if not alone(item):
        with open(shared / "shared.done", "ab") as done:  # O_APPEND: one byte a test
            done.write(b".")


#: Each test's turn, written by the worker that ran it: the summary's two phases.
TURNS = "turns.log"


def pytest_terminal_summary(terminalreporter, config) -> None:
    """Where the suite's time went, phase by phase: the shared tests side by side,
    then the alone ones one at a time (the part that more workers cannot shorten)."""
    if hasattr(config, "workerinput") or not config.pluginmanager.has_plugin("xdist"):
        return
    path = config._tmp_path_factory.getbasetemp() / TURNS
    if not path.exists():
        return
    spans: dict[str, list[tuple[float, float]]] = {"shared": [], "alone": []}
    for line in path.read_text().splitlines():
        kind, began, ended = line.split()
        spans[kind].append((float(began), float(ended)))
    start = min(b for kind in spans.values() for b, _ in kind)
    said = [
        f"{kind} {len(turns)} tests, {min(b for b, _ in turns) - start:.0f} s to "
        f"{max(e for _, e in turns) - start:.0f} s"
        for kind, turns in spans.items()
        if turns
    ]
    terminalreporter.write_line(f"the machine's turns: {'; '.join(said)}")


#: The longest an alone test waits for the shared ones (a worker that crashed mid-test
#: never counts its test): then it goes ahead, still alone.
SHARED_WAIT_S = 1200


def _after_the_shared_tests(shared: Path, count: int) -> None:
    done = shared / "shared.done"
    deadline = time.monotonic() + SHARED_WAIT_S
    while time.monotonic() < deadline:
        if count == 0 or (done.exists() and done.stat().st_size >= count):
            return
        time.sleep(0.2)


@contextlib.contextmanager
def _turn(shared: Path, alone: bool):
    """A readers-writer lock from two flock(2)s. Everyone passes the gate to enter the
    room; an alone test keeps the gate shut while it waits for the room to empty, so
    no new test slips in ahead of it (flock alone would let shared turns starve it)."""
    with open(shared / "gate.lock", "a") as gate, open(shared / "room.lock", "a") as room:
        fcntl.flock(gate, fcntl.LOCK_EX)
        fcntl.flock(room, fcntl.LOCK_EX if alone else fcntl.LOCK_SH)
        if not alone:
            fcntl.flock(gate, fcntl.LOCK_UN)
        yield  # closing the files lets both locks go
