"""cron: a tick pays its start-up every time, a daemon once; examples/crontab is valid for cron.

Real cron ticks (sh -c, cron's environment), real daemons on the real Redis,
each run in a namespace of its own that nothing outlives. examples/crontab
is installed with Debian's own `crontab`, which checks every line, into a
throwaway spool: a mount namespace binds a temporary folder over
/var/spool/cron/crontabs, so the machine's crontabs are never touched and no
minute is waited for. Its commands are then run the way cron runs them.
"""

from __future__ import annotations

import os
import re
import secrets
import shutil
import subprocess
import time
from pathlib import Path

import pytest

from lab import work
from lab.experiments import cron
from lab.experiments.cron import startup, ticks
from tests.conftest import ROOT, assert_refused, missing, require_service, run_cli
from tests.test_worker import killed_redis_mid_run, refused_without_redis

CRONTAB = ROOT / "examples" / "crontab"
SPOOL = Path("/var/spool/cron/crontabs")
SMALL = {"rate": (2.0,), "duration": 1.0, "idle": 1.0, "wake": 0.25}  # four wake-ups idle


@pytest.fixture
def conn():
    require_service("redis")
    import redis

    from lab import services

    client = redis.Redis.from_url(services.url("redis"))
    yield client
    client.close()


@pytest.fixture
def ns(conn):
    name = f"daemonlab-ct-{secrets.token_hex(4)}"
    yield name
    for key in conn.scan_iter(match=f"*{name}*"):
        conn.delete(key)


def _experiment_keys(conn) -> set[bytes]:
    return set(conn.scan_iter(match="*daemonlab-c-*", count=1000))


# -- the experiment ---------------------------------------------------------------------------
@pytest.mark.timeout(300)
def test_a_tick_pays_its_start_up_every_time_and_a_daemon_once(no_leaks, conn):
    before = _experiment_keys(conn)
    run = cron.run(cron.Params(**SMALL))
    assert run.status == "ok"
    rows = {r["strategy"]: r for r in run.records if r["part"] == "ticks"}
    assert set(rows) == {"cron", "daemon-redis", "daemon-signal"}
    tick, redis_daemon, signal_daemon = rows["cron"], rows["daemon-redis"], rows["daemon-signal"]
    # ~100 ms of interpreter and imports against ~0.1 ms of a wake-up: the margins are wide.
    assert tick["pickup_p50_ms"] > 20 * signal_daemon["pickup_p50_ms"]
    assert tick["pickup_p50_ms"] > 20 * redis_daemon["pickup_p50_ms"]
    assert tick["cpu_ms_per_job"] > 20 * redis_daemon["cpu_ms_per_job"]
    assert tick["boot_ms"] > 0 and tick["import_ms"] > 0 and tick["rss_mb"] > 10
    idle = {r["strategy"]: r for r in run.records if r["part"] == "idle"}
    assert idle["daemon-signal"]["idle_cpu_ms_per_s"] < idle["daemon-redis"]["idle_cpu_ms_per_s"]
    modules = [r["module"] for r in run.records if r["part"] == "imports"]
    assert "redis" in modules and modules[-1] == "(all imports of one tick)"
    crossings = {r["strategy"]: r for r in run.records if r["part"] == "crossing"}
    assert set(crossings) == {"daemon-redis", "daemon-signal"}
    for row in crossings.values():
        assert row["cpu_cross_per_h"] is not None and row["memory_cross_per_s"] > 0
    assert _experiment_keys(conn) <= before, "the experiment left keys in Redis"


def test_the_crossing_is_where_the_two_costs_are_equal():
    from lab.experiments.cron.crossing import Costs

    found = Costs(
        cron_cpu_ms=100.0, cron_mb_s=5.0, job_cpu_ms=0.5, idle_cpu_ms_per_s=0.1, rss_mb=40.0
    )
    at = found.cpu_cross_per_s
    assert at == pytest.approx(0.1 / 99.5)
    assert found.daemon_cpu_ms(at) == pytest.approx(100.0)
    assert found.daemon_mb_s(found.memory_cross_per_s) == pytest.approx(5.0)
    never_wakes = Costs(100.0, 5.0, 0.5, 0.0, 40.0)
    assert never_wakes.cpu_cross_per_s == 0  # cheaper in CPU at any rate


@pytest.mark.timeout(120)
def test_a_signal_daemon_runs_one_job_per_tick_even_back_to_back(conn, ns):
    """Real-time signals queue (signal(7)): 40 sent at once are 40 jobs, none merged."""
    daemon = ticks.Daemon("signal", ns, "noop", 0.0)
    daemon.start()
    proc = daemon.proc
    try:
        for _ in range(40):
            daemon.send(conn)
        deadline = time.monotonic() + 30
        while conn.llen(daemon.ledger) < 40 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert conn.llen(daemon.ledger) == 40
    finally:
        daemon.stop(conn)
    assert proc.returncode == 0  # TERM ended its sigwaitinfo loop, not the default action


@pytest.mark.timeout(120)
def test_a_redis_daemon_without_wake_ups_still_stops(conn, ns):
    daemon = ticks.Daemon("redis", ns, "noop", 0.0)  # BLPOP with no timeout at all
    daemon.start()
    proc = daemon.proc
    daemon.send(conn)
    began = time.monotonic()
    daemon.stop(conn)
    assert proc.returncode == 0 and time.monotonic() - began < 1.5


def test_importtime_lines_are_read_with_their_depth():
    sample = (
        "import time: self [us] | cumulative | imported package\n"
        "import time:       120 |        120 |     redis._parsers\n"
        "import time:       473 |      81924 | redis\n"
        "not an import line\n"
    )
    assert startup.parse(sample) == [("redis._parsers", 120, 120, 2), ("redis", 473, 81924, 0)]


def test_crons_environment_is_the_bare_one():
    env = ticks.cron_env()
    assert set(env) == {"SHELL", "PATH", "HOME", "LOGNAME", "LAB_REDIS_URL"}
    assert env["PATH"] == "/usr/bin:/bin" and env["SHELL"] == "/bin/sh"


@pytest.mark.timeout(120)
def test_redis_down_at_start_stores_the_run_failed(results_path):
    refused_without_redis("cron", results_path)


@pytest.mark.timeout(300)
def test_redis_down_mid_run_is_one_line_and_keeps_what_finished(throwaway_redis, results_path):
    options = ["--strategy", "daemon-redis,cron", "--idle", "2", "--duration", "3", "--rate", "2"]
    stored = killed_redis_mid_run("cron", options, throwaway_redis, results_path)
    assert stored.records and not any(r["part"] == "crossing" for r in stored.records)


@pytest.mark.timeout(60)
@pytest.mark.parametrize(
    "options, says",
    [
        (["--rate", "0"], "--rate must be greater than 0, got 0.0"),
        (["--strategy", "anacron"], "--strategy: unknown value 'anacron'"),
        (["--job", "slow"], "--job: unknown value 'slow'"),
        (["--wake", "-1"], "--wake must be at least 0"),
    ],
)
def test_bad_input_is_refused_in_one_line(options, says):
    assert_refused(run_cli("run", "cron", *options, "--no-store"), says)


@pytest.mark.timeout(300)
def test_cli_runs_stores_and_plots(tmp_path, conn):
    done = run_cli("run", "cron", "--rate", "2", "--duration", "1", "--idle", "1")
    assert done.returncode == 0, done.stderr
    png = tmp_path / "cron.png"
    plotted = run_cli("plot", "cron", "-o", str(png))
    assert plotted.returncode == 0, plotted.stderr
    assert png.stat().st_size > 20_000


# -- examples/crontab, for Debian's cron ----------------------------------------------------
def _spool_tools() -> None:
    if os.geteuid() != 0:
        missing("installing into a throwaway cron spool needs root (a mount namespace)")
    for tool in ("crontab", "unshare"):
        if shutil.which(tool) is None:
            missing(
                f"no {tool} on this machine (apt-get install cron util-linux)",
                "LAB_REQUIRE_SERVICES",
            )


def _install(tmp_path: Path, crontab: Path) -> subprocess.CompletedProcess:
    """crontab(1) installs `crontab` for root, into a spool bound over cron's for this command."""
    spool = tmp_path / "spool"
    spool.mkdir()
    script = f"mount --bind {spool} {SPOOL} && crontab -u root {crontab} && crontab -u root -l"
    return subprocess.run(
        ["unshare", "--mount", "sh", "-c", script], capture_output=True, text=True, timeout=30
    )


@pytest.mark.timeout(60)
def test_examples_crontab_installs_in_a_throwaway_spool(tmp_path):
    _spool_tools()
    before = sorted(os.listdir(SPOOL)) if SPOOL.exists() else []
    done = _install(tmp_path, CRONTAB)
    assert done.returncode == 0, done.stderr
    assert done.stdout == CRONTAB.read_text()  # what cron holds is the file, every line kept
    assert (tmp_path / "spool" / "root").exists()  # it went to the throwaway spool...
    assert (sorted(os.listdir(SPOOL)) if SPOOL.exists() else []) == before  # ...not the machine's


@pytest.mark.timeout(60)
def test_a_broken_crontab_is_refused_by_the_same_check(tmp_path):
    """The twin of the test above: the install really checks (a minute 61 does not exist)."""
    _spool_tools()
    broken = tmp_path / "broken"
    broken.write_text(CRONTAB.read_text().replace("* * * * *  cd", "61 * * * *  cd"))
    done = _install(tmp_path, broken)
    assert done.returncode != 0 and "bad minute" in done.stderr, done.stderr


def _crontab_lines(ns: str, tmp_path: Path) -> tuple[dict[str, str], dict[str, str]]:
    """The crontab's assignments and its two commands, pointed at this checkout and test."""
    from lab import services

    env, commands = {"HOME": str(tmp_path), "LOGNAME": "root"}, {}
    for line in CRONTAB.read_text().splitlines():
        if not line.strip() or line.startswith("#"):
            continue
        if re.match(r"^[A-Z_]+=", line):
            key, _, value = line.partition("=")
            env[key] = value
            continue
        when = "@reboot" if line.startswith("@reboot") else "minute"
        command = re.split(r"\s+", line, maxsplit=1 if when == "@reboot" else 5)[-1]
        command = command.replace("/opt/daemonlab", str(ROOT)).replace(
            "/tmp/daemonlab-cron.log", str(tmp_path / "cron.log")
        )
        commands[when] = command.replace(
            "tick --job noop", f"tick --job noop --ledger {ns}:ledger"
        ).replace("cron-demo", ns)
    env["LAB_REDIS_URL"] = services.url("redis")
    env["LAB_RESULTS"] = str(tmp_path / "lab.db")  # where @reboot's worker keeps its pidfile
    return env, commands


@pytest.mark.timeout(120)
def test_examples_crontab_commands_run_as_cron_runs_them(conn, ns, tmp_path):
    """Each line's command through /bin/sh -c with cron's environment: the tick leaves
    its ledger line; the @reboot line starts a worker, which then takes a job."""
    if not (ROOT / ".venv" / "bin" / "python").exists():
        missing("the crontab names the checkout's .venv, and there is none", "LAB_REQUIRE_SERVICES")
    env, commands = _crontab_lines(ns, tmp_path)
    tick = subprocess.run(["/bin/sh", "-c", commands["minute"]], env=env, cwd=tmp_path, timeout=60)
    assert tick.returncode == 0, (tmp_path / "cron.log").read_text()
    (line,) = conn.lrange(f"{ns}:ledger", 0, -1)
    assert work.Entry.parse(line).job_id.startswith("tick-")
    boot = subprocess.run(["/bin/sh", "-c", commands["@reboot"]], env=env, cwd=tmp_path, timeout=60)
    assert boot.returncode == 0, (tmp_path / "cron.log").read_text()
    try:
        queued = run_cli(
            "worker", "enqueue", "--namespace", ns, env={"LAB_RESULTS": env["LAB_RESULTS"]}
        )
        assert queued.returncode == 0, queued.stderr
        deadline = time.monotonic() + 30
        while conn.llen(f"{ns}:ledger") < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert conn.llen(f"{ns}:ledger") == 2
    finally:
        stopped = run_cli(
            "worker", "stop", "--namespace", ns, env={"LAB_RESULTS": env["LAB_RESULTS"]}
        )
        assert stopped.returncode == 0 and "stopped pid" in stopped.stdout, stopped.stdout
