"""worker against Celery and Dramatiq: each started for real, and the crash table's verdicts.

Every test runs on a redis-server of its own (`throwaway_redis`, tests/conftest.py),
so "nothing left" is exact: the server holds no key at all afterwards, and no
process started with its address is still running (a Celery prefork child or a
Dramatiq worker process orphaned by a kill -9 would be). Job counts are small:
the crash table's point shows in a hundred jobs.
"""

from __future__ import annotations

import time

import psutil
import pytest

from lab.experiments import worker
from lab.experiments.worker import crash

BOUND_S = 30.0


@pytest.fixture
def private_redis(throwaway_redis, monkeypatch):
    """LAB_REDIS_URL at a server of the test's own; afterwards: no key, no process of it."""
    import redis

    url, _server = throwaway_redis
    monkeypatch.setenv("LAB_REDIS_URL", url)
    conn = redis.Redis.from_url(url)
    yield conn
    deadline = time.monotonic() + BOUND_S
    while _processes_using(url) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not _processes_using(url), "a worker process outlived the run"
    left = sorted(k.decode() for k in conn.scan_iter())
    conn.close()
    assert not left, f"keys left in Redis: {left[:10]}"


def _processes_using(url: str) -> list[int]:
    found = []
    for proc in psutil.process_iter(["cmdline"]):
        if "lab.experiments.worker.runner" not in " ".join(proc.info["cmdline"] or ()):
            continue
        try:
            if proc.environ().get("LAB_REDIS_URL") == url:
                found.append(proc.pid)
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
    return found


@pytest.mark.timeout(300)
def test_celery_and_dramatiq_run_the_jobs_default_and_tuned(private_redis):
    params = worker.Params(
        system=("celery", "dramatiq"),
        model=("threads",),
        workers=(2,),
        queued=60,
        seconds=10.0,
        samples=3,
        gap=0.02,
        crash=0,
    )
    run = worker.run(params)
    assert run.status == "ok"
    rows = {(r["system"], r["setting"]): r for r in run.records if r["part"] == "throughput"}
    assert set(rows) == {(s, t) for s in ("celery", "dramatiq") for t in ("default", "tuned")}
    for row in rows.values():
        # jobs: those ended within `seconds` of the first (a loaded machine may not finish
        # all 60); every pick-up job must run, or the run fails.
        assert 0 < row["jobs"] <= 60 and row["jobs_per_s"] > 0 and row["samples"] == 3, row
        assert 0 < row["pickup_p50_ms"] <= row["pickup_p99_ms"]
        assert row["cpu_ms_per_job"] > 0
    assert run.env["celery"] != "missing" and run.env["dramatiq"] != "missing"


@pytest.mark.timeout(300)
@pytest.mark.parametrize(
    "system, model, setting",
    [
        ("lab", "threads", "default"),
        ("celery", "prefork", "default"),
        ("celery", "prefork", "acks-late+reject"),
    ],
)
def test_crash_verdicts(system, model, setting, private_redis):
    """The table's verdicts, from a run: the lab loses none and reports what it took back;
    Celery as installed loses the job a killed prefork child held; with acks_late and
    task_reject_on_worker_lost it loses none and runs it again."""
    row = crash.crash_row(system, model, setting, jobs=100)
    assert row["kills"] == crash.KILLS
    assert row["done"] + row["lost"] == 100
    if system == "lab":
        assert row["lost"] == 0 and row["twice"] >= 1, row  # 4 slots busy at every kill
        assert crash.verdict(row) == "runs twice"
    elif setting == "default":
        assert row["hit"] >= 1, row  # a kill found a job in hand...
        assert row["lost"] >= 1 and row["twice"] == 0, row  # ...and it was never run again
        assert crash.verdict(row) == "loses jobs"
    else:
        assert row["lost"] == 0 and crash.verdict(row) != "loses jobs", row
        if row["hit"]:  # its main process rejects the job back at once: no visibility wait
            assert row["twice"] >= 1, row


@pytest.mark.timeout(300)
@pytest.mark.parametrize("signame, warm", [("TERM", True), ("QUIT", False)], ids=["warm", "cold"])
def test_celery_warm_shutdown_finishes_the_jobs_in_hand_and_cold_loses_them(
    signame, warm, private_redis
):
    """Celery as installed: TERM lets the prefork children finish their 2 s jobs; QUIT
    stops them at once, and (acked as they began) they never run again."""
    from lab.experiments.worker import stop

    row = stop.stop_row("celery", "prefork", "default", signame, None)
    assert row["in_hand"] >= 1, row
    if warm:
        assert row["finished"] == row["in_hand"] and row["lost"] == 0, row
    else:
        assert row["finished"] == 0 and row["lost"] == row["in_hand"], row
