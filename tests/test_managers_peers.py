"""The managers as labelled: settings read back from the manager, and a wait that wakes nobody.

issue 24, point 4: circus's check_delay as circusd reports it; supervisord
left alone while it restarts the daemon (an XML-RPC question wakes its 1 s
loop); the harness able to exec a fresh interpreter as the others do; each
restart split at the new daemon's fork.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from lab.experiments.managers import events
from lab.experiments.managers.circus import Circus, CircusFast
from lab.experiments.managers.harness import Harness, HarnessExec
from lab.experiments.managers.supervisord import Supervisord

pytestmark = pytest.mark.timeout(120)


@pytest.mark.parametrize("cls", [Circus, CircusFast])
def test_circus_runs_at_the_check_delay_its_row_says(cls):
    if cls.missing():
        pytest.skip(cls.missing())
    record = events.kill_9(cls, repeat=1, uptime=1.1, patience=10.0)
    assert record["restarts"] == 1
    assert record["seen_setting"] == record["setting"] == f"check_delay {cls.check_delay:g} s"


class Counted(Supervisord):
    """supervisord, counting every question the experiment asks it."""

    questions = 0

    def _call(self, method, *args):
        type(self).questions += 1
        return super()._call(method, *args)


def test_supervisord_is_asked_nothing_while_it_restarts_the_daemon():
    if Supervisord.missing():
        pytest.skip(Supervisord.missing())
    record = events.kill_9(Counted, repeat=2, uptime=1.1, patience=10.0)
    assert record["restarts"] == 2
    assert Counted.questions == 1  # its state, once, after the last restart was timed
    for key in ("spawned_ms", "starting_ms"):
        assert record[key] is not None and record[key] >= 0
    # The two halves add up to the whole, to the 10 ms of /proc's start time.
    assert abs(record["spawned_ms"] + record["starting_ms"] - record["latency_ms"]) <= 20


def _cmdline(pid: int) -> str:
    return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()


@pytest.mark.parametrize(
    ("cls", "runs"),
    [(Harness, "lab daemon start"), (HarnessExec, "lab.experiments.managers.daemon")],
)
def test_the_harness_runs_the_daemon_warm_or_execs_a_fresh_interpreter(cls, runs):
    with events.managed(cls) as session:
        ready = session.ready(events.START_TIMEOUT_S)
        assert runs in _cmdline(ready.pid)
