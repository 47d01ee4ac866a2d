"""worker: the job daemon keeps every job through kill -9, TSTP, TERM and a Redis outage.

Every test drives the real daemon (`daemonlab worker start`, detached by the
lab's own steps) or the real experiment against the real Redis, in a
namespace of its own (a random prefix: others share this Redis), and checks
that nothing of its own is left: no key under its prefix but the jobs' own
record, no process naming it. A throwaway redis-server on a free port stands
in for "Redis goes down": the shared one is never stopped.

`throwaway_redis` (tests/conftest.py) is a redis-server of the test's own.
"""

from __future__ import annotations

import os
import random
import re
import secrets
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import psutil
import pytest

from lab.experiments import worker
from lab.experiments.worker import queue
from tests.conftest import assert_refused, free_port, require_service, run_cli

BOUND_S = 60.0  # the longest any wait here may take: a loaded 2-core machine


# -- fixtures and helpers ---------------------------------------------------------------
@pytest.fixture
def redis_conn():
    require_service("redis")
    from lab import services

    conn = queue.connect(services.url("redis"))
    yield conn
    conn.close()


@pytest.fixture
def ns(redis_conn):
    """A namespace of the test's own; its keys are deleted afterwards (and checked before)."""
    name = f"daemonlab-t-{secrets.token_hex(4)}"
    yield name
    for key in redis_conn.scan_iter(match=f"*{name}*"):
        redis_conn.delete(key)
    assert not list(redis_conn.scan_iter(match=f"*{name}*"))
    assert not _processes_naming(name), "a process of the test is still running"


def _processes_naming(name: str) -> list[psutil.Process]:
    found = []
    for proc in psutil.process_iter(["cmdline"]):
        if any(name in part for part in proc.info["cmdline"] or ()):
            found.append(proc)
    return found


@pytest.fixture
def daemon(ns, tmp_path):
    """The worker daemon of the test's namespace; KILLed afterwards if a failure left it up."""
    made = Daemon(ns, tmp_path)
    yield made
    from lab.daemon.pidfile import holder

    pid = holder(made.pidfile)
    if pid is not None:
        os.kill(pid, signal.SIGKILL)
        made.gone(pid)
    for proc in _processes_naming(ns):  # slot processes orphaned by that: PDEATHSIG ends them
        proc.wait(5)


class Daemon:
    """`daemonlab worker` for one namespace and pidfile."""

    def __init__(self, ns: str, tmp_path: Path) -> None:
        self.ns, self.pidfile, self.log = ns, tmp_path / "worker.pid", tmp_path / "worker.log"

    def cli(self, action: str, *args: str, **kwargs):
        where = ["--namespace", self.ns, "--pidfile", str(self.pidfile)]
        if action == "start":
            where += ["--log", str(self.log)]
        return run_cli("worker", action, *where, *args, **kwargs)

    def start(self, *args: str) -> int:
        done = self.cli("start", *args)
        assert done.returncode == 0, done.stderr
        return self.pid()

    def pid(self) -> int:
        from lab.daemon.pidfile import holder

        pid = holder(self.pidfile)
        assert pid is not None
        return pid

    def gone(self, pid: int, timeout: float = BOUND_S) -> float:
        """Seconds until `pid` is gone (its pidfile lock dropped with it)."""
        began = time.monotonic()
        while psutil.pid_exists(pid) and psutil.Process(pid).status() != psutil.STATUS_ZOMBIE:
            assert time.monotonic() - began < timeout, f"pid {pid} still running"
            time.sleep(0.01)
        return time.monotonic() - began

    def logged(self) -> str:
        return self.log.read_text() if self.log.exists() else ""


def _enqueue(conn, ns: str, kind: str, count: int, first: int = 0) -> list[str]:
    from lab import work

    jobs = [queue.Job(f"{kind}{first + n}", kind, work.stamp()) for n in range(count)]
    queue.enqueue(conn, queue.Keys(ns), jobs)
    return [j.job_id for j in jobs]


def _ledger(conn, ns: str):
    from lab import work

    return [work.Entry.parse(line) for line in conn.lrange(queue.Keys(ns).ledger, 0, -1)]


def _held(conn, ns: str) -> int:
    """Jobs sitting in processing lists: taken by some worker, not done."""
    return sum(conn.llen(k) for k in conn.scan_iter(match=f"{ns}:processing:*"))


def _busy(conn, ns: str) -> int:
    """Jobs running, as the workers' last heartbeats say (what `worker status` prints)."""
    return sum(info["busy"] for info in queue.workers(conn, queue.Keys(ns)))


def _settled(conn, ns: str, ids: list[str]) -> None:
    """Wait until every job ran, none waits and none is held (dead workers recovered)."""
    deadline = time.monotonic() + BOUND_S
    while time.monotonic() < deadline:
        ran = {e.job_id for e in _ledger(conn, ns)}
        if ran >= set(ids) and queue.pending(conn, queue.Keys(ns)) == 0 and _held(conn, ns) == 0:
            return
        time.sleep(0.1)
    raise AssertionError(f"not settled: {len(set(ids) - ran)} never ran, {_held(conn, ns)} held")


# -- kill -9 -------------------------------------------------------------------------
@pytest.mark.timeout(240)
@pytest.mark.parametrize("model", ["threads", "processes", "asyncio"])
def test_kill_9_mid_job_loses_no_job_and_reports_every_rerun(model, redis_conn, ns, daemon, capsys):
    """1,000 jobs; kill -9 the worker at random moments, four times; start it again each
    time. Every job runs; one that runs twice is always one reported as retried."""
    ids = _enqueue(redis_conn, ns, "io", 1000)
    options = ("--concurrency-model", model, "--concurrency", "4", "--heartbeat-ttl", "1")
    rng = random.Random()
    kills = 0
    for _ in range(4):
        pid = daemon.start(*options)
        time.sleep(rng.uniform(0.1, 0.6))  # somewhere mid-job: 4 slots of 10 ms jobs
        os.kill(pid, signal.SIGKILL)
        daemon.gone(pid)
        kills += 1
    pid = daemon.start(*options)
    _settled(redis_conn, ns, ids)
    assert (
        run_cli("worker", "stop", "--namespace", ns, "--pidfile", str(daemon.pidfile)).returncode
        == 0
    )
    daemon.gone(pid)

    runs = Counter(e.job_id for e in _ledger(redis_conn, ns))
    retried = {r.decode() for r in redis_conn.lrange(queue.Keys(ns).retried, 0, -1)}
    lost = [i for i in ids if runs[i] == 0]
    twice = {i for i, n in runs.items() if n > 1}
    attempts = max(e.attempt for e in _ledger(redis_conn, ns))
    assert not lost
    assert twice <= retried, f"run twice without a report: {sorted(twice - retried)}"
    # a death takes each job in hand back once: no job is tried more often than that
    assert attempts <= kills + 1, f"a job on attempt {attempts} after {kills} kills"
    assert retried, "four kill -9 mid-job and nothing was taken back: the test killed nothing"
    with capsys.disabled():
        print(
            f"\n[{model}] {kills} kill -9: {len(runs)} of {len(ids)} jobs done, "
            f"{len(retried)} reported retried ({len(twice)} of them ran twice), lost {len(lost)}"
        )
    _only_job_records_left(redis_conn, ns)


def _only_job_records_left(conn, ns: str) -> None:
    """After a clean stop the daemon leaves only what the jobs made: no heartbeat, no
    registration, no processing list (the queue is gone too once empty)."""
    keys = queue.Keys(ns)
    left = {k.decode() for k in conn.scan_iter(match=f"{ns}*")}
    assert left <= {keys.ledger, keys.retried, keys.queue}, left


# -- TSTP, TERM, the deadline ----------------------------------------------------------------
@pytest.mark.timeout(120)
@pytest.mark.parametrize("model", ["threads", "processes", "asyncio"])
@pytest.mark.parametrize(
    "deadline, finished", [(3.0, True), (0.3, False)], ids=["finish", "give-back"]
)
def test_tstp_then_term_finishes_or_gives_back_within_the_deadline(
    model, deadline, finished, redis_conn, ns, daemon
):
    slow = _enqueue(redis_conn, ns, "slow", 4)  # 2 s each: in flight when the signals come
    # Five slots for four jobs: one idle slot, which would take new jobs unless quiet.
    options = ("--concurrency-model", model, "--concurrency", "5", "--deadline", str(deadline))
    pid = daemon.start(*options, "--heartbeat-ttl", "0.6")  # a beat every 0.2 s: status is fresh
    # Started, not only taken: a job taken in the instant TSTP comes is given back unstarted.
    _wait(lambda: _busy(redis_conn, ns) == 4, "4 slow jobs running")
    os.kill(pid, signal.SIGTSTP)
    _wait(lambda: "TSTP: quiet" in daemon.logged(), "the quiet line in the log")
    later = _enqueue(redis_conn, ns, "noop", 20)
    time.sleep(0.3)
    assert queue.pending(redis_conn, queue.Keys(ns)) == 20, "quiet, yet it took new jobs"
    sent = time.monotonic()
    os.kill(pid, signal.SIGTERM)
    took = daemon.gone(pid)
    assert took < deadline + 1.5, f"TERM took {took:.2f}s against a {deadline:g}s deadline"

    entries = _ledger(redis_conn, ns)
    waiting = [queue.Job.parse(p) for p in redis_conn.lrange(queue.Keys(ns).queue, 0, -1)]
    retried = {r.decode() for r in redis_conn.lrange(queue.Keys(ns).retried, 0, -1)}
    if finished:
        assert sorted(e.job_id for e in entries) == sorted(slow)
        assert not retried
    else:
        assert not entries, "a job finished although the deadline was shorter than it"
        assert retried == set(slow)
        assert all(j.attempt == 2 for j in waiting if j.job_id in slow)
    accounted = {e.job_id for e in entries} | {j.job_id for j in waiting}
    assert accounted == set(slow) | set(later), "a job is neither done nor waiting: lost"
    assert _held(redis_conn, ns) == 0
    assert time.monotonic() - sent < BOUND_S
    _only_job_records_left(redis_conn, ns)


def test_a_quiet_task_pauses_and_only_stopping_wakes_it():
    """TaskFlags: quiet must not cut a pause short (a quiet task that never waits froze
    the loop from 3.12 on, gh-96764: the finish-asyncio case above); stopping must."""
    import asyncio

    from lab.experiments.worker.tasks import TaskFlags

    async def paused(flags: TaskFlags, seconds: float) -> float:
        began = time.monotonic()
        await flags.pause(seconds)
        return time.monotonic() - began

    async def check() -> None:
        flags = TaskFlags()
        flags.set_quiet()
        assert await paused(flags, 0.3) >= 0.25, "quiet woke a pause"
        pausing = asyncio.create_task(paused(flags, BOUND_S))
        await asyncio.sleep(0.05)
        flags.set_stopping()
        assert await pausing < 5.0, "stopping did not wake a pause"
        assert await paused(flags, BOUND_S) < 5.0

    asyncio.run(check())


def _wait(predicate, what: str, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"waited {timeout:g}s for {what}"
        time.sleep(0.02)


@pytest.mark.timeout(120)
@pytest.mark.parametrize(
    "model, says",
    [("threads", "thread slot-1"), ("asyncio", "task slot-1:"), ("processes", "Current thread")],
)
def test_ttin_writes_every_slots_stack_to_the_log(model, says, redis_conn, ns, daemon):
    _enqueue(redis_conn, ns, "slow", 2)
    pid = daemon.start("--concurrency-model", model, "--concurrency", "2", "--deadline", "0")
    _wait(lambda: _held(redis_conn, ns) == 2, "2 slow jobs in flight")
    # A job is held in Redis a moment before its slot says busy: ask again until both do
    # (each TTIN is a fresh look).
    for _ in range(50):
        dumps = daemon.logged().count("TTIN:")
        os.kill(pid, signal.SIGTTIN)
        _wait(lambda: daemon.logged().count("TTIN:") > dumps, "a TTIN dump")  # noqa: B023
        if "TTIN: 2 of 2 slots busy" in daemon.logged():
            break
    _wait(lambda: says in daemon.logged() and "work.py" in daemon.logged(), "the stacks")
    if model == "processes":  # each slot process writes its own dump, when it gets there
        _wait(lambda: daemon.logged().count("Current thread") >= 2, "one dump per slot")
    assert "TTIN: 2 of 2 slots busy" in daemon.logged()
    os.kill(pid, signal.SIGTERM)
    daemon.gone(pid)


def test_the_crash_table_stops_killing_once_the_jobs_left_are_lost(redis_conn, ns):
    """rq's row waited 120 s and failed: one job lost to a kill (rq waits 180 s to give it
    back), every other one ended, and the next kill waited for a ledger line that could
    not come. Nothing ended for the quiet time: no job is in hand, no more kills."""
    from lab.experiments.worker import crash

    ledger = queue.Keys(ns).ledger
    redis_conn.rpush(ledger, *[f"job{n}" for n in range(99)])  # 99 of 100 ended, 1 lost
    began = time.monotonic()
    assert crash._running(redis_conn, ledger, 100, 100, quiet_s=0.3) is False
    assert time.monotonic() - began < 5
    assert crash._running(redis_conn, ledger, 50, 100, quiet_s=0.3) is True  # reached


# -- the command line ----------------------------------------------------------------------
@pytest.mark.timeout(120)
def test_status_stop_and_a_second_start(redis_conn, ns, daemon):
    pid = daemon.start("--concurrency", "3", "--heartbeat-ttl", "3")
    second = daemon.cli("start")
    assert second.returncode == 1 and "already running" in second.stderr, second.stderr
    assert len(second.stderr.strip().splitlines()) == 1
    status = daemon.cli("status")
    assert status.returncode == 0, status.stderr
    assert f"pid        {pid}" in status.stdout and "3 (threads), working" in status.stdout
    age = re.search(r"heartbeat  (\d+) s ago, at ", status.stdout)  # how old "working" is
    assert age and int(age[1]) <= 3, status.stdout  # --heartbeat-ttl 3: a beat each second
    stopped = daemon.cli("stop")
    assert stopped.returncode == 0 and "with TERM" in stopped.stdout, stopped.stdout
    daemon.gone(pid)
    after = daemon.cli("status")
    assert after.returncode == 3 and "not running" in after.stderr
    _only_job_records_left(redis_conn, ns)


@pytest.mark.timeout(60)
def test_redis_down_at_start_refuses_in_one_line_and_quickly(ns, daemon):
    url = f"redis://127.0.0.1:{free_port()}/0"
    began = time.monotonic()
    done = daemon.cli("start", env={"LAB_REDIS_URL": url})
    assert done.returncode == 1
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "Redis does not answer" in lines[0], done.stderr
    assert time.monotonic() - began < 15


@pytest.mark.timeout(60)
@pytest.mark.parametrize(
    "args, says",
    [
        (["start", "--concurrency-model", "fibers"], "--concurrency-model: unknown value 'fibers'"),
        (["start", "--concurrency", "0"], "--concurrency: '0' is not from 1 to"),
        (["start", "--umask", "000"], "lets every user write"),
        (["enqueue", "--job", "nap"], "--job: unknown value 'nap'"),
    ],
)
def test_bad_worker_options_are_refused_in_one_line(args, says, ns, tmp_path):
    done = run_cli("worker", *args, "--namespace", ns, "--pidfile", str(tmp_path / "w.pid"))
    assert_refused(done, says)


# -- the experiment ----------------------------------------------------------------------------
SMALL = {
    "system": ("lab", "rq", "arq"),  # Celery and Dramatiq: tests/test_worker_peers.py
    "workers": (2,),
    "queued": 300,
    "seconds": 1.0,
    "samples": 6,
    "gap": 0.02,
    "crash": 0,
}
#: The same, small, from the command line: the lab's threads and rq's SimpleWorker only.
SMALL_CLI = (
    "--system",
    "lab,rq",
    "--model",
    "threads,simple",
    "--queued",
    "200",
    "--seconds",
    "1",
    "--samples",
    "4",
    "--crash",
    "0",
)


def _experiment_keys(conn) -> set[bytes]:
    return set(conn.scan_iter(match="*daemonlab-w-*", count=1000))


@pytest.mark.timeout(300)
@pytest.mark.alone  # its ratios are times; and "no key left" reads every run's keys
def test_run_measures_every_system_and_leaves_nothing(no_leaks, redis_conn):
    before = _experiment_keys(redis_conn)
    run = worker.run(worker.Params(**SMALL))
    assert run.status == "ok"
    rows = {(r["system"], r["model"]): r for r in run.records if r["part"] == "throughput"}
    assert set(rows) == {
        ("lab", "threads"),
        ("lab", "asyncio"),
        ("rq", "fork-per-job"),
        ("rq", "simple"),
        ("arq", "asyncio"),
    }
    for row in rows.values():
        assert row["jobs"] > 0 and row["jobs_per_s"] > 0 and row["samples"] == 6
        assert 0 < row["pickup_p50_ms"] <= row["pickup_p99_ms"]
        assert row["cpu_ms_per_job"] > 0
    # The fork lesson on a library people use: a fork per job costs milliseconds a job.
    assert rows[("lab", "threads")]["jobs_per_s"] > 3 * rows[("rq", "fork-per-job")]["jobs_per_s"]
    assert (
        rows[("rq", "fork-per-job")]["cpu_ms_per_job"]
        > 3 * rows[("lab", "threads")]["cpu_ms_per_job"]
    )
    (ratio,) = [r for r in run.records if r["part"] == "ratio"]
    assert ratio["vs_fork"] > 1 and ratio["vs_simple"] is not None
    assert _experiment_keys(redis_conn) <= before, "the experiment left keys in Redis"


@pytest.mark.timeout(300)
def test_every_lab_model_runs_every_job_kind(redis_conn):
    params = worker.Params(
        system=("lab",),
        model=("threads", "processes", "asyncio"),
        job=("noop", "io", "cpu"),
        workers=(2,),
        queued=60,
        samples=3,
    )
    rows = [r for r in worker.run(params).records if r["part"] == "throughput"]
    assert {(r["model"], r["job"]) for r in rows} == {
        (m, j) for m in ("threads", "processes", "asyncio") for j in ("noop", "io", "cpu")
    }
    for row in rows:
        assert row["jobs"] == 60, row
        if row["job"] == "io":  # two slots of 10 ms jobs: at most 200 a second
            assert row["jobs_per_s"] < 200 * 1.1, row


def refused_without_redis(experiment: str, results_path: Path) -> None:
    """`daemonlab run EXPERIMENT` with nobody at LAB_REDIS_URL: one line, quickly, and
    the run stored as failed, with nothing in it."""
    from lab.results import open_store

    began = time.monotonic()
    done = run_cli("run", experiment, env={"LAB_REDIS_URL": f"redis://127.0.0.1:{free_port()}/0"})
    assert_refused(done, "Redis does not answer")
    assert time.monotonic() - began < 20
    with open_store(results_path) as store:
        (stored,) = store.runs(experiment)
    assert stored.status == "failed" and not stored.records


def _running(process: psutil.Process) -> bool:
    try:
        return process.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def killed_redis_mid_run(experiment: str, options: list[str], throwaway, results_path: Path):
    """`daemonlab run EXPERIMENT OPTIONS` on a throwaway Redis, killed (-9) once the run
    has stored a record. Asserts the promise (one line naming Redis, soon after, exit 2,
    no process left) and returns the stored run."""
    from lab.results import open_store

    url, server = throwaway
    env = {**os.environ, "LAB_REDIS_URL": url, "PYTHONPATH": str(Path(__file__).parent.parent)}
    before = {p.pid for p in psutil.Process().children(recursive=True)}
    cli = subprocess.Popen(
        [sys.executable, "-m", "lab", "run", experiment, *options],
        env=env,
        text=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        _wait(lambda: _stored_records(results_path, experiment) >= 1, "a first record", timeout=120)
        server.kill()
        server.wait()
        killed = time.monotonic()
        _, err = cli.communicate(timeout=BOUND_S)
    finally:
        if cli.poll() is None:
            cli.kill()
            cli.communicate()
    assert time.monotonic() - killed < 45, "the run did not notice Redis was gone in time"
    lines = err.strip().splitlines()
    assert cli.returncode == 2 and len(lines) == 1, err
    assert "Redis at 127.0.0.1" in lines[0] and "stopped answering mid-run" in lines[0], lines[0]
    # Running, and new: this process may be a subreaper (an earlier test in this worker
    # made it one), so another test's orphans, and zombies, can be its children too.
    left = [p for p in psutil.Process().children(recursive=True) if p.pid not in before]
    assert not [p for p in left if _running(p)], left
    with open_store(results_path) as store:
        (stored,) = store.runs(experiment)
    assert stored.status == "failed"
    return stored


@pytest.mark.timeout(120)
def test_redis_down_at_start_stores_the_run_failed(results_path):
    refused_without_redis("worker", results_path)


@pytest.mark.timeout(300)
def test_redis_down_mid_run_is_one_line_and_keeps_what_finished(throwaway_redis, results_path):
    stored = killed_redis_mid_run(
        "worker", [*SMALL_CLI, "--workers", "1,2,3"], throwaway_redis, results_path
    )
    assert 1 <= len(stored.records) < 6  # 6 measurements asked for: not all finished


def _stored_records(path: Path, experiment: str = "worker") -> int:
    """How many records the newest stored run of `experiment` has so far (0 if none)."""
    from lab.results import open_store

    if not path.exists():
        return 0
    with open_store(path) as store:
        runs = store.runs(experiment)
    return len(runs[0].records) if runs else 0


@pytest.mark.timeout(60)
@pytest.mark.parametrize(
    "options, says",
    [
        (["--workers", "0"], "--workers must be at least 1, got 0"),
        (["--model", "greenlets"], "--model: unknown value 'greenlets'"),
        (["--system", "sidekiq"], "--system: unknown value 'sidekiq'"),
        (["--setting", "fast"], "--setting: unknown value 'fast'"),
        (["--crash", "-1"], "--crash must be at least 0, got -1"),
        (["--job", "sleep"], "--job: unknown value 'sleep'"),
        (["--seconds", "0"], "--seconds must be greater than 0"),
    ],
)
def test_bad_experiment_input_is_refused_in_one_line(options, says):
    assert_refused(run_cli("run", "worker", *options, "--no-store"), says)


@pytest.mark.timeout(300)
def test_cli_runs_stores_and_plots(tmp_path, redis_conn):
    done = run_cli("run", "worker", *SMALL_CLI, "--workers", "1,2")
    assert done.returncode == 0, done.stderr
    png = tmp_path / "worker.png"
    plotted = run_cli("plot", "worker", "-o", str(png))
    assert plotted.returncode == 0, plotted.stderr
    assert png.stat().st_size > 20_000


@pytest.mark.parametrize(
    "args",
    [
        ["start", "--ready-timeout", "nan"],
        ["start", "--ready-timeout", "-1"],
        ["start", "--deadline", "nan"],
        ["start", "--heartbeat-ttl", "nan"],
        ["start", "--concurrency", "١"],
        ["stop", "--timeout", "nan"],
    ],
)
def test_worker_timeouts_are_checked_before_anything_forks(tmp_path, args):
    """`--ready-timeout nan` was a traceback with the worker left running; `stop
    --timeout nan` KILLed at once. Refused now in one line, before any fork: no pidfile."""
    pidfile = tmp_path / "w.pid"
    result = run_cli("worker", *args, "--pidfile", str(pidfile))
    assert_refused(result, args[1])
    assert not pidfile.exists()


def test_the_worker_daemon_moves_only_along_its_table():
    from lab.experiments.worker.daemon import MOVES, State, Worker

    worker = Worker.__new__(Worker)  # its state alone: no Redis, no slots
    worker.state = State.WORKING
    worker.move(State.QUIET)
    assert worker.handle_tstp() is None and worker.state == "quiet"  # TSTP twice: one quiet
    worker.move(State.STOPPING)
    worker.handle_term()  # TERM and INT in one batch: one stop, nothing else touched
    with pytest.raises(ValueError, match="from stopping to quiet"):
        worker.move(State.QUIET)
    assert all(after is not State.WORKING for _, after in MOVES), "nothing wakes it again"
