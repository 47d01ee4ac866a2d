"""prefork under pytest-benchmark: its three targets, measured in one run each.

    throughput    at least gunicorn sync's, its p99 no worse (plan.RATIO_TARGET, plan.P99_NOISE)
    signals       no failed request across a HUP, or across a USR2 then QUIT
    a dead worker replaced within 100 ms (plan.RECOVERY_TARGET_MS)

What a regression here would mean: the lab's master or worker got slower per
request than gunicorn's sync worker (a heavier accept loop, an extra system
call per request), a signal began to cost requests (a socket closed during a
handover, old workers retired before the new ones were up), or replacing a
dead worker began to take longer (a slower fork, a master that no longer
wakes on SIGCHLD). The figures in extra_info are the experiment's own
`targets` records, never recomputed here.
"""

from __future__ import annotations

import pytest

from lab.experiments import prefork
from lab.experiments.prefork import plan

pytestmark = [pytest.mark.timeout(300), pytest.mark.alone]  # times asserted: nothing beside


def _targets(run) -> dict[str, dict]:
    """The run's own target records, by what they claim (without the conditions)."""
    return {r["target"].split(" (")[0]: r for r in run.records if r.get("part") == "targets"}


#: Rounds of the comparison, the servers taking turns. One round's p99 is one scheduler
#: hiccup away from either server on a shared 2-core machine (7 ms in one round, 150 ms
#: in the next, measured here): the targets compare medians over three.
ROUNDS = 3


def test_prefork_serves_hello_at_least_as_fast_as_gunicorn_sync(benchmark):
    params = prefork.Params(
        part="compare",
        server=("prefork", "gunicorn-sync"),
        setup=("default",),
        app=("hello",),
        repeat=ROUNDS,
    )
    run = benchmark.pedantic(prefork.run, args=(params,), rounds=1, iterations=1)
    found = _targets(run)
    ratio = found["prefork req/s >= 1x gunicorn-sync"]
    tail = found["prefork p99 <= gunicorn-sync p99"]
    compared = [r for r in run.records if r.get("part") == "compare"]
    benchmark.extra_info.update(
        ratio=ratio["value"],
        ratio_target=plan.RATIO_TARGET,
        prefork_p99_ms_median=tail["value"],
        p99=tail["measured"],
        rounds=ROUNDS,
        placement=run.env["placement"],
        load=run.env["load"],
    )
    for record in compared:
        key = f"{record['server']}_rps"
        benchmark.extra_info.setdefault(key, []).append(record["rps"])
    assert ratio["met"], ratio["measured"]
    assert tail["met"], tail["measured"]
    for record in compared:  # the server's own count agrees with the generator's
        assert record["requests"] <= record["served"] <= record["requests"] + record["concurrency"]


def test_no_request_fails_across_hup_and_usr2_and_a_killed_worker_is_back_in_100_ms(benchmark):
    params = prefork.Params(part="events", event=("HUP", "USR2", "kill-worker"))
    run = benchmark.pedantic(prefork.run, args=(params,), rounds=1, iterations=1)
    found = _targets(run)
    shocks = {r["event"]: r for r in run.records if r.get("part") == "events"}
    benchmark.extra_info.update(
        {f"{event}_failed": r["failed"] for event, r in shocks.items()}
        | {f"{event}_recovery_ms": r["recovery_ms"] for event, r in shocks.items()}
    )
    zero = found["0 failed requests across HUP and USR2 + QUIT under load"]
    quick = found["a killed worker replaced within 100 ms"]
    assert zero["met"], zero["measured"]
    assert quick["met"], quick["measured"]
