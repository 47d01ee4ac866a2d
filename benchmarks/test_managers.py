"""Restart after kill -9, per manager: the kill-9 event of `managers` under pytest-benchmark.

What a regression here would mean: a manager (or the lab's harness) that
notices a dead daemon later, or takes longer to bring it back: a changed poll
timeout, check_delay or cycle, a slower spawn. Each round starts the manager,
kills its daemon twice and times kill to the new daemon's own READY; the
figures in extra_info come from the experiment's own record (events.kill_9),
not recomputed. The wall time of a round is dominated by start-up and the
daemon's uptime before each kill: compare extra_info's median_ms instead.
"""

from __future__ import annotations

import pytest

from lab.experiments.managers import events, plan

KILLS = 2


@pytest.mark.timeout(180)
@pytest.mark.parametrize(
    "name", ["supervisord", "circus", "circus-fast", "monit", "lab", "lab-exec"]
)
def test_restart_after_kill_9(benchmark, name: str, no_leaks) -> None:
    cls = plan.manager(name)
    if cls.missing() is not None:
        pytest.skip(cls.missing())
    record = benchmark.pedantic(
        events.kill_9, args=(cls, KILLS, 1.1, plan.PATIENCE_S), rounds=1, iterations=1
    )
    # The lesson's property: the daemon really came back, every time, as a new
    # ready process (kill_9 counts a restart only on READY from a new pid).
    assert record["restarts"] == KILLS, record
    benchmark.extra_info.update(
        median_ms=record["latency_ms"],
        max_ms=record["max_ms"],
        forked_ms=record["spawned_ms"],
        starting_ms=record["starting_ms"],
        setting=record["setting"],
        seen_setting=record["seen_setting"],
        latencies_ms=record["latencies_ms"],
        notices=cls.notices,
    )
