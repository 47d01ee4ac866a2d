"""The harness as a real daemon: `daemonlab daemon start|status|stop|reload|logs`.

Everything is read from outside: /proc for what the process is, the pidfile
lock for whether it runs, the results store for what it kept. The experiment
the harness runs is `daemonize --impl lab` (it needs no server; `--dwell`
makes a run last as long as a test needs).
"""

# ruff: noqa: F811 - the fixtures imported below are parameters of the tests

from __future__ import annotations

import json
import os
import signal
import sqlite3
from pathlib import Path

import pytest

from lab.experiments.daemonize.observe import observe
from lab.results import open_store
from tests.test_daemon_access import nobody_world  # noqa: F401 - a fixture
from tests.test_daemon_support import (  # noqa: F401 - subreaper and world are fixtures
    World,
    proc_state,
    subreaper,
    tagged,
    wait_until,
    world,
)

pytestmark = pytest.mark.timeout(180)

QUICK = ("--experiment", "daemonize", "--impl", "lab")
RUN = '[[run]]\nexperiment = "daemonize"\n'
STEPS_PER_RUN = 12  # lab.daemon.steps.STEPS: one record each


def start(world: World, *extra: str, every: str = "1h") -> int:
    done = world.cli("daemon", "start", "--every", every, *QUICK, *extra)
    assert done.returncode == 0, done.stderr
    pid = world.daemon_pid()
    assert pid is not None and f"pid {pid}" in done.stdout
    return pid


def status(world: World) -> dict:
    done = world.cli("daemon", "status", "--pidfile", str(world.pidfile))
    assert done.returncode == 0, done.stderr
    return json.loads(world.pidfile.with_name("daemonlab.status.json").read_text())


def runs(world: World, status: str | None = None) -> list:
    with open_store(world.results) as store:
        return [r for r in store.runs("daemonize") if status is None or r.status == status]


def test_started_daemon_seen_from_outside_is_a_proper_daemon(world: World) -> None:
    """Started from a session whose terminal is a pty, and looked at while it still has it."""
    args = ("daemon", "start", "--every", "1h", *QUICK, "--umask", "027")
    with world.in_terminal(*args) as done:
        assert done.returncode == 0, done.stderr
        pid = world.daemon_pid()
        seen = observe(pid, {str(world.log): "log", str(world.pidfile): "pidfile"})
    assert seen["sid"] != pid, "a session leader could acquire a controlling terminal"
    assert seen["tty"] == "none", "the daemon kept its launcher's terminal"
    assert seen["ppid"] in (1, os.getpid())  # init, or this test (the subreaper)
    assert seen["cwd"] == "/"
    assert seen["umask"] == "0027"
    fds = dict(item.split(":", 1) for item in seen["fds"].split())
    assert fds["0"] == "null" and fds["1"] == "log" and fds["2"] == "log"
    assert "pidfile" in fds.values(), "the lock lives on an open descriptor"
    assert world.pidfile.read_text() == f"{pid}\n"


def test_status_comes_from_the_daemon_and_stop_says_it_took_term(world: World) -> None:
    pid = start(world)
    wait_until(lambda: runs(world, "ok"), 60, "the first run to be stored")
    done = world.cli("daemon", "status")
    assert done.returncode == 0, done.stderr
    assert f"pid        {pid}" in done.stdout and "runs done  1" in done.stdout
    done = world.cli("daemon", "stop")
    assert done.returncode == 0 and f"stopped pid {pid} with TERM" in done.stdout
    world.wait_gone(pid)
    done = world.cli("daemon", "status")
    assert done.returncode == 3 and "not running" in done.stderr
    assert "stopped: 1 run done, 0 failed" in world.cli("daemon", "logs").stdout


def test_stop_interrupts_the_running_experiment_and_keeps_what_it_finished(world: World) -> None:
    start(world, "--dwell", "0.4")  # a run takes ~5 s: 12 steps held 0.4 s each
    wait_until(lambda: (r := runs(world)) and len(r[0].records) >= 3, 60, "a run under way")
    done = world.cli("daemon", "stop", "--timeout", "30")
    assert "with TERM" in done.stdout, done.stdout + done.stderr
    (run,) = runs(world)
    assert run.status == "interrupted"
    assert 3 <= len(run.records) < STEPS_PER_RUN
    assert [r["step_no"] for r in run.records] == list(range(1, len(run.records) + 1))


def test_stop_escalates_to_kill_and_says_so(world: World) -> None:
    pid = start(world)
    os.kill(pid, signal.SIGSTOP)  # a harness that cannot act on TERM
    done = world.cli("daemon", "stop", "--timeout", "1")
    assert done.returncode == 0
    assert "did not stop within 1s of TERM: stopped it with KILL" in done.stdout
    world.wait_gone(pid)


def test_ten_starts_at_once_make_exactly_one_daemon(world: World) -> None:
    args = ("daemon", "start", "--every", "1h", *QUICK)
    launchers = [world.popen(*args) for _ in range(10)]
    outcomes = [(p.wait(timeout=60), *p.communicate()) for p in launchers]
    winners = [o for o in outcomes if o[0] == 0]
    losers = [o for o in outcomes if o[0] != 0]
    assert len(winners) == 1 and len(losers) == 9, outcomes
    pid = world.daemon_pid()
    refusal = f"already running: {world.pidfile} is locked by pid {pid}"
    for _code, _out, err in losers:
        assert err.strip() == f"daemonlab: daemon not started: {refusal}"
    wait_until(lambda: status(world)["running"] is None, 60, "the first run to end")
    daemons = [p for p in tagged(world.tag) if (proc_state(p) or ("", 0))[1] == os.getpid()]
    assert daemons == [pid]


def test_kill_9_then_start_again_needs_no_clean_up_and_tears_nothing(world: World) -> None:
    first = start(world, "--dwell", "0.2", every="1s")
    wait_until(lambda: len(runs(world, "ok")) >= 1, 60, "one finished run")
    wait_until(lambda: (r := runs(world)) and r[0].status == "running", 60, "a second run")
    running = status(world)["running"]
    under_way = runs(world)[0]
    assert under_way.status == "running"
    os.kill(first, signal.SIGKILL)
    os.killpg(running["pid"], signal.SIGKILL)  # the run's child and its daemon, mid-write
    world.wait_gone(first)
    world.wait_gone(running["pid"])  # re-parented to us: reaped, or its pid would look alive
    assert world.pidfile.read_text() == f"{first}\n"  # the file stays; only the lock went
    second = start(world, every="1h")
    assert second != first
    db = sqlite3.connect(world.results)
    try:
        assert db.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    finally:
        db.close()
    stored = {r.run_id: r for r in runs(world)}
    killed = stored[under_way.run_id]
    assert killed.status == "interrupted"  # its writer is gone: read back as interrupted
    assert len(killed.records) >= len(under_way.records)  # nothing it had stored was lost
    assert all(len(r.records) == STEPS_PER_RUN for r in stored.values() if r.status == "ok")


def test_a_storm_of_hup_and_usr1_loses_nothing_and_leaves_no_zombie(world: World) -> None:
    config = world.dir / "harness.toml"
    config.write_text(
        '[[run]]\nexperiment = "daemonize"\nevery = "1s"\n[run.params]\nimpl = ["lab"]\n'
    )
    done = world.cli("daemon", "start", "--config", str(config))
    assert done.returncode == 0, done.stderr
    pid = world.daemon_pid()
    wait_until(lambda: runs(world, "ok"), 60, "a first run")
    for _ in range(1000):
        os.kill(pid, signal.SIGHUP)
        os.kill(pid, signal.SIGUSR1)
    # The promise (harness.DISPATCH_ORDER): a status asked after a HUP shows its reload,
    # whichever status answer `daemon status` returns on, the storm's own USR1s included.
    answer = status(world)
    assert answer["pid"] == pid and answer["state"] == "running"
    assert answer["reloads"] >= 1 and answer["last_reload"].startswith("ok"), answer
    # Each batch acts on a signal once: far fewer reloads than HUPs sent.
    assert answer["reloads"] < 1000 and answer["answers"] < 1001, answer
    done_before = answer["runs_done"]
    wait_until(lambda: status(world)["runs_done"] >= done_before + 2, 60, "two more runs")
    assert world.cli("daemon", "stop").returncode == 0
    world.wait_gone(pid)
    stored = runs(world)
    # Runs start every second: the stop may come in the middle of one, which is then
    # stored interrupted (the stop test's promise); every other run is whole.
    newest, *older = stored  # newest first
    assert all(r.status == "ok" for r in older), [r.status for r in stored]
    assert newest.status in ("ok", "interrupted"), newest.status
    assert all(len(r.records) == STEPS_PER_RUN for r in stored if r.status == "ok")
    assert status_runs(world) == len(stored)
    log = world.log.read_text()
    assert "Traceback" not in log and "reloaded" in log


def test_a_batch_of_signals_is_acted_on_once_each_hup_before_usr1() -> None:
    from lab.daemon.harness import DISPATCH_ORDER, in_dispatch_order
    from lab.daemon.signals import HANDLED

    # The order Linux writes them in when both are pending: USR1's byte first.
    batch = [signal.SIGUSR1, signal.SIGHUP, signal.SIGUSR1, signal.SIGCHLD, signal.SIGHUP]
    assert in_dispatch_order(batch) == [signal.SIGCHLD, signal.SIGHUP, signal.SIGUSR1]
    assert in_dispatch_order([]) == []
    assert sorted(DISPATCH_ORDER) == sorted(HANDLED)  # no handled signal is dropped


def test_hup_and_usr1_pending_together_reload_once_then_answer(world: World) -> None:
    """Both pending at once (the harness stopped while they are sent): one look at the
    wakeup pipe holds USR1's byte before HUP's; the reload still comes first, once."""
    config = world.dir / "harness.toml"
    config.write_text(
        '[[run]]\nexperiment = "daemonize"\nevery = "1h"\n[run.params]\nimpl = ["lab"]\n'
    )
    assert world.cli("daemon", "start", "--config", str(config)).returncode == 0
    pid = world.daemon_pid()
    before = status(world)
    log_before = world.log.read_text().splitlines()
    os.kill(pid, signal.SIGSTOP)
    try:
        for sig in (signal.SIGHUP, signal.SIGUSR1, signal.SIGHUP, signal.SIGUSR1):
            os.kill(pid, sig)
    finally:
        os.kill(pid, signal.SIGCONT)

    def acted() -> list[str] | None:
        lines = world.log.read_text().splitlines()[len(log_before) :]
        said = [w for line in lines for w in ("reloaded", "status:") if w in line]
        return said if len(said) >= 2 else None

    said = wait_until(acted, 10, "the reload and the answer in the log")
    assert said == ["reloaded", "status:"], said
    after = json.loads(world.pidfile.with_name("daemonlab.status.json").read_text())
    assert after["reloads"] == before["reloads"] + 1, after
    assert after["answers"] == before["answers"] + 1, after


def status_runs(world: World) -> int:
    return json.loads(world.pidfile.with_name("daemonlab.status.json").read_text())["runs_done"]


def test_no_zombie_stays_under_the_harness(world: World) -> None:
    pid = start(world, every="1s")
    wait_until(lambda: status(world)["runs_done"] >= 3, 60, "three runs")

    def zombies() -> list[int]:
        return [
            p
            for p in map(int, filter(str.isdigit, os.listdir("/proc")))
            if (proc_state(p) or ("", 0)) == ("Z", pid)
        ]

    # A run's child is a zombie only for the instant between its exit and the reap.
    wait_until(lambda: not zombies(), 2, "the harness to reap its children", step=0.01)


def test_reload_with_a_bad_config_keeps_the_old_one(world: World) -> None:
    config = world.dir / "harness.toml"
    good = '[[run]]\nexperiment = "daemonize"\nevery = "1h"\n[run.params]\nimpl = ["lab"]\n'
    config.write_text(good)
    assert world.cli("daemon", "start", "--config", str(config)).returncode == 0
    config.write_text(good.replace('"1h"', '"often"'))
    done = world.cli("daemon", "reload", "--config", str(config))
    assert done.returncode == 1
    assert f"{config} line 3: [[run]] #1 key 'every': bad interval 'often'" in done.stdout
    answer = status(world)
    assert answer["state"] == "running" and answer["jobs"][0]["every_s"] == 3600
    assert "refused, old config kept" in world.log.read_text()
    config.write_text(good.replace('"1h"', '"2h"'))
    done = world.cli("daemon", "reload", "--config", str(config))
    assert done.returncode == 0 and "reload ok" in done.stdout
    answer = status(world)
    assert answer["jobs"][0]["every_s"] == 7200
    assert answer["last_error"] is None, "the refused config is no longer the one in force"
    assert "last error -" in world.cli("daemon", "status").stdout


def test_reload_of_a_config_without_paths_changes_nothing_it_did_not_say(world: World) -> None:
    """The default results path is relative (./results/lab.db, or a relative LAB_RESULTS):
    taken from where the launcher ran, at start and at every reload alike, never from /,
    the daemon's own working directory."""
    config = world.dir / "harness.toml"
    config.write_text(RUN + 'every = "1h"\n[run.params]\nimpl = ["lab"]\n')
    relative = {"LAB_RESULTS": "results/lab.db"}  # world.dir is every command's cwd
    done = world.cli("daemon", "start", "--config", str(config), **relative)
    assert done.returncode == 0, done.stderr
    pid = world.daemon_pid()
    done = world.cli("daemon", "reload", "--config", str(config), **relative)
    assert done.stdout == f"pid {pid}: reload ok\n", done.stdout + done.stderr
    assert status(world)["results"] == str(world.results)


def test_check_says_what_start_would_run_without_starting_it(world: World) -> None:
    config = world.dir / "harness.toml"
    config.write_text(
        '[daemon]\numask = "027"\n' + RUN + 'every = "2h"\n[run.params]\nimpl = ["lab"]\n'
    )
    done = world.cli("daemon", "check", "--config", str(config))
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == [
        f"ok: {config}",
        "run        daemonize every 7200s (impl=lab)",
        f"pidfile    {world.pidfile} (free)",
        f"log        {world.log}",
        f"results    {world.results}",
        "umask      027",
        "user       (the one who starts it)",
    ]
    assert world.daemon_pid() is None and not world.pidfile.exists() and not tagged(world.tag)
    assert world.cli("daemon", "start", "--config", str(config)).returncode == 0
    pid = world.daemon_pid()
    done = world.cli("daemon", "check", "--config", str(config))
    assert f"pidfile    {world.pidfile} (locked by pid {pid})" in done.stdout


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            '[[run]]\nexperiment = "nope"\n',
            "line 2: [[run]] #1 key 'experiment': unknown experiment",
        ),
        (
            '[[run]]\nexperiment = "daemonize"\n[run.params]\ndwell = -1\n',
            "line 4: [[run]] #1 params key 'dwell': --dwell must be at least 0",
        ),
        (
            '[daemon]\numask = "000"\n[[run]]\nexperiment = "daemonize"\n',
            "line 2: [daemon] key 'umask'",
        ),
        ("[[run]\n", "Expected"),
        # issue 10: each was accepted (and ran back to back) or ended in a traceback
        (RUN + "every = nan\n", "line 3: [[run]] #1 key 'every': interval nan must be a finite"),
        (RUN + "every = inf\n", "line 3: [[run]] #1 key 'every': interval inf must be a finite"),
        (RUN + "params = 3\n", "line 3: [[run]] #1 key 'params': must be a table"),
        ("[daemon]\nuser = 65534\n" + RUN, "line 2: [daemon] key 'user': must be a user name"),
        ('[daemon]\nuser = ""\n' + RUN, "line 2: [daemon] key 'user': --user needs a user name"),
        ("[daemon]\npidfile = 3\n" + RUN, "line 2: [daemon] key 'pidfile': must be a path"),
        ("daemon = 3\n" + RUN, "line 1: top level key 'daemon': must be a table"),
        (RUN.encode() + b"# caf\xe9\n", "not UTF-8 text (TOML files must be) at byte 38"),
    ],
)
def test_bad_config_refuses_to_start_naming_line_and_key(world: World, text, expected) -> None:
    """`start` and `check` refuse it alike: one line naming the line and key, no daemon."""
    config = world.dir / "bad.toml"
    if isinstance(text, bytes):
        config.write_bytes(text)
    else:
        config.write_text(text)
    for action in ("start", "check"):
        done = world.cli("daemon", action, "--config", str(config))
        assert done.returncode == 2, (action, done.stdout, done.stderr)
        assert len(done.stderr.strip().splitlines()) == 1 and "Traceback" not in done.stderr
        assert expected in done.stderr, (action, done.stderr)
    assert world.daemon_pid() is None


def test_bad_start_options_are_refused_in_one_line(world: World) -> None:
    for args, expected in [
        (("daemon", "start"), "start needs --config FILE or --experiment NAME"),
        (("daemon", "start", "--experiment", "nope"), "unknown experiment 'nope'"),
        (("daemon", "start", "--umask", "0", *QUICK), "lets every user write"),
        (("daemon", "start", "--every", "soon", *QUICK), "bad interval 'soon'"),
        (("daemon", "start", "--user", "no-such-user", *QUICK), "no such user 'no-such-user'"),
        # issue 10: "" ran as root without a word; -1 said "not started" about a daemon
        # that ran; nan was a traceback (and the daemon ran anyway)
        (("daemon", "start", "--user", "", *QUICK), "--user needs a user name"),
        (("daemon", "start", "--ready-timeout", "-1", *QUICK), "must be above 0 seconds"),
        (("daemon", "start", "--ready-timeout", "nan", *QUICK), "must be a finite number"),
        (("daemon", "start", *QUICK, "--ready-timeout", "inf"), "must be a finite number"),
        (("daemon", "start", "--every", "nan", *QUICK), "bad interval 'nan'"),
        (("daemon", "status", "--timeout", "nan"), "must be a finite number"),
        (("daemon", "reload", "--timeout", "0"), "must be above 0 seconds"),
    ]:
        done = world.cli(*args)
        assert done.returncode == 2 and expected in done.stderr, (args, done.stderr)
        assert len(done.stderr.strip().splitlines()) == 1, (args, done.stderr)
        assert "Traceback" not in done.stderr
    assert world.daemon_pid() is None
    assert not tagged(world.tag), "a refused start left a daemon running"


def test_stop_with_a_timeout_of_nan_is_refused_and_kills_nothing(world: World) -> None:
    """Before issue 10 `stop --timeout nan` waited no time at all and sent KILL at once."""
    pid = start(world)
    done = world.cli("daemon", "stop", "--timeout", "nan")
    assert done.returncode == 2 and "--timeout: 'nan': a timeout must be a finite" in done.stderr
    assert world.daemon_pid() == pid  # still running, still holding its pidfile
    done = world.cli("daemon", "stop", "--timeout", "0")  # 0: KILL right after TERM, if need be
    assert done.returncode == 0 and f"pid {pid}" in done.stdout
    world.wait_gone(pid)


@pytest.mark.skipif(os.geteuid() != 0, reason="dropping privileges needs root")
def test_started_as_root_with_user_nobody_runs_as_nobody_and_its_files_work(
    no_leaks, nobody_world
) -> None:
    """Run from a copy of the lab that nobody may read (test_daemon_access's fixture), not
    from the checkout: a checkout in a 0700 folder, as a fresh clone under /root is, is
    refused in one line instead, and test_daemon_access tests that refusal."""
    import pwd

    world, checkout = nobody_world
    nobody = pwd.getpwnam("nobody")
    started = world.cli(
        "daemon", "start", "--every", "1h", *QUICK, "--user", "nobody", PYTHONPATH=str(checkout)
    )
    assert started.returncode == 0, started.stderr
    pid = world.daemon_pid()
    seen = observe(pid, {})
    assert (seen["uid"], seen["gid"]) == (nobody.pw_uid, nobody.pw_gid)
    groups = Path(f"/proc/{pid}/status").read_text().split("Groups:")[1].split("\n")[0].split()
    assert "0" not in groups, "root's supplementary groups kept: initgroups missing"
    answer = status(world)  # the status file is written by nobody
    assert answer["uid"] == nobody.pw_uid
    assert os.stat(world.results).st_uid == nobody.pw_uid  # the store is nobody's
    assert os.stat(world.log).st_uid == nobody.pw_uid
    assert world.cli("daemon", "reload").returncode == 0  # HUP works across the uid change
    assert "status:" in world.log.read_text()  # USR1 reopened the log as nobody
    # The run itself is stored by nobody. (Here the daemonize run then fails:
    # it execs a Python that lives under root-only /root; elsewhere it passes.)
    (run,) = wait_until(lambda: runs(world), 30, "a run stored by nobody")
    assert run.status in ("ok", "failed"), run.status
    assert run.status == "ok" or "Permission" in (run.error or ""), run.error
    done = world.cli("daemon", "stop")
    assert "with TERM" in done.stdout
    world.wait_gone(pid)


# -- any value for any key: a config, or one line ------------------------------------------


def _toml(value) -> str:
    """A Python value as a TOML literal (json's string escapes are TOML's too)."""
    import math

    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and not math.isfinite(value):
        return "nan" if math.isnan(value) else ("inf" if value > 0 else "-inf")
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, list):
        return "[" + ", ".join(map(_toml, value)) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{json.dumps(k)} = {_toml(v)}" for k, v in value.items()) + "}"
    return json.dumps(value)


def test_any_value_for_any_config_key_is_a_config_or_one_line(tmp_path) -> None:
    """Hypothesis throws values at every key of [daemon] and [[run]] (issue 10)."""
    import math

    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st

    from lab.daemon import config as config_mod
    from lab.errors import LabError

    atoms = st.one_of(
        st.integers(min_value=-(10**6), max_value=10**6),
        st.floats(allow_nan=True, allow_infinity=True),
        st.sampled_from(["", " ", "nan", "inf", "0", "-1s", "10m", "022", "000", "nobody", "∞"]),
        st.text(max_size=8),
        st.booleans(),
    )
    values = st.one_of(
        atoms, st.lists(atoms, max_size=3), st.dictionaries(st.text(max_size=4), atoms, max_size=2)
    )
    keys = st.sampled_from(
        [("daemon", k) for k in ("pidfile", "log", "results", "umask", "user")]
        + [("run", k) for k in ("experiment", "every", "params")]
        + [("params", k) for k in ("impl", "dwell", "mask", "run_as")]
    )

    @settings(
        max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
    )
    @given(key=keys, value=values)
    def check(key, value) -> None:
        table, name = key
        daemon = f"[daemon]\n{name} = {_toml(value)}\n" if table == "daemon" else ""
        run = dict(experiment='"daemonize"')
        if table == "run":
            run[name] = _toml(value)
        body = "".join(f"{k} = {v}\n" for k, v in run.items())
        params = f"[run.params]\n{name} = {_toml(value)}\n" if table == "params" else ""
        path = tmp_path / "any.toml"
        path.write_text(daemon + "[[run]]\n" + body + params)
        try:
            config = config_mod.load(path)
        except LabError as exc:
            assert "\n" not in str(exc) and str(exc), repr(exc)
            return
        assert all(math.isfinite(job.every) and job.every > 0 for job in config.jobs)
        assert config.user is None or (isinstance(config.user, str) and config.user.strip())

    check()


def test_a_results_url_is_refused_in_one_line_that_never_shows_its_password(world: World) -> None:
    """Issue 22 #3: taken as a path, it was printed by check and status, stored in the
    status JSON, and a folder was named after the password."""
    url = "mysql://hp:s3cr3t@127.0.0.1:3306/test"
    config = world.dir / "url.toml"
    config.write_text(f'[daemon]\nresults = "{url}"\n' + RUN)
    before = set(world.dir.rglob("*"))
    for args in [
        ("daemon", "start", "--results", url, *QUICK),
        ("daemon", "start", "--results", " MySQL://hp:s3cr3t@h/test", *QUICK),
        ("daemon", "start", "--config", str(config)),
        ("daemon", "check", "--config", str(config)),
        ("daemon", "status", "--config", str(config)),
        ("daemon", "stop", "--config", str(config)),
    ]:
        done = world.cli(*args)
        assert done.returncode == 2 and "must be a file" in done.stderr, (args, done.stderr)
        assert len(done.stderr.strip().splitlines()) == 1, (args, done.stderr)
        assert "s3cr3t" not in done.stdout + done.stderr, args
    assert set(world.dir.rglob("*")) == before, "nothing created, no folder named for it"
    assert world.daemon_pid() is None


def test_a_stop_before_the_run_began_stores_nothing_and_counts_nothing(tmp_path, monkeypatch):
    """TERM as a run's child starts (before collect() began a run): exit EXIT_NOT_BEGUN,
    which the harness does not count as a run done, and the store stays empty."""
    from lab.daemon import harness
    from lab.daemon.config import Job
    from lab.experiments import daemonize

    def interrupted(name: str):
        raise SystemExit(harness.EXIT_INTERRUPTED)  # what _interrupt_run raises

    monkeypatch.setattr(harness.experiments, "load", interrupted)
    job = Job("daemonize", 1.0, daemonize.Params())
    read_fd, write_fd = os.pipe()
    try:
        assert harness._run_job(job, tmp_path / "lab.db", write_fd) == harness.EXIT_NOT_BEGUN
    finally:
        os.close(read_fd)
        os.close(write_fd)
    with open_store(tmp_path / "lab.db") as store:
        assert store.runs("daemonize") == []


def test_the_harness_moves_only_along_its_table() -> None:
    from lab.daemon.harness import MOVES, Harness, State

    harness = Harness(config=None)  # type: ignore[arg-type]  (moving needs no config)
    assert harness.state == "running"  # as the status file said it before the enum
    harness.move(State.STOPPING)
    harness.move(State.STOPPED)
    with pytest.raises(ValueError, match="from stopped to running"):
        harness.move(State.RUNNING)
    assert all(after is not State.RUNNING for _, after in MOVES), "nothing starts it again"
