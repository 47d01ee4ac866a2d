"""Every lesson opens with its slide, and each slide does what the talk says it does.

A slide (lab/experiments/NAME/slide.py) is the talk's point as the shortest
Python that runs. Each test here runs one as a learner would
(`python -m lab.experiments.NAME.slide`, a process of its own) and asserts
that point: the SLEEPs overlap in threads, the daemon is detached, the
handler runs on kill -TERM, two workers answer, a BRPOP worker killed
mid-job loses its job. Every process a slide leaves (a daemon, orphaned
workers) is stopped and waited for.
"""

from __future__ import annotations

import ast
import importlib
import json
import os
import re
import secrets
import select
import signal
import socket
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from urllib.parse import quote

import pytest

from lab import experiments, slides
from lab.procfs import proc_stat, proc_status
from tests.conftest import ROOT, assert_refused, require_service, run_cli, wait_until

NAMES = experiments.names()
#: How long any one line of a slide may take to come: generous on a shared 2-core machine.
LINE_TIMEOUT_S = 10


def code_lines(path: Path) -> int:
    """Lines of code: not blank, not only a comment, not the module's docstring."""
    tree = ast.parse(path.read_text())
    doc = tree.body[0] if ast.get_docstring(tree) else None
    skip = set(range(doc.lineno, doc.end_lineno + 1)) if doc else set()
    return sum(
        1
        for number, line in enumerate(path.read_text().splitlines(), 1)
        if number not in skip and line.strip() and not line.strip().startswith("#")
    )


def argv(name: str, *args: str) -> list[str]:
    return [sys.executable, "-m", f"lab.experiments.{name}.slide", *args]


def environ(env: dict | None) -> dict:
    return {**os.environ, "PYTHONPATH": str(ROOT), **(env or {})}


def start(name: str, *args: str, env: dict | None = None, **kwargs) -> subprocess.Popen:
    """The slide as a learner runs it; stdout unbuffered on our side, so select() sees each line."""
    return subprocess.Popen(
        argv(name, *args), stdout=subprocess.PIPE, bufsize=0, env=environ(env), **kwargs
    )


def next_line(proc: subprocess.Popen) -> str:
    ready, _, _ = select.select([proc.stdout], [], [], LINE_TIMEOUT_S)
    assert ready, f"no line from the slide within {LINE_TIMEOUT_S} s"
    return proc.stdout.readline().decode()


def output(name: str, *args: str, env: dict | None = None) -> str:
    done = subprocess.run(
        argv(name, *args), capture_output=True, text=True, timeout=30, env=environ(env)
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def figures(text: str) -> list[float]:
    return [float(x) for x in re.findall(r"(\d+\.?\d*) (?:s|ms|µs|MB)\b", text)]


def ancestors() -> set[int]:
    """This process's parent, its parent, ... up to 1: where an orphan of ours may go."""
    found, pid = set(), os.getpid()
    while pid > 1:
        pid = proc_stat(pid)["ppid"]
        found.add(pid)
    return found


def written_pid(pidfile: Path, unlike: Sequence[int] = ()) -> int:
    """The pid a daemon wrote into `pidfile`, once a whole line is there and not one of `unlike`."""

    def pid() -> int:
        text = pidfile.read_text() if pidfile.exists() else ""
        return int(text) if text.endswith("\n") and int(text) not in unlike else 0

    return wait_until(pid, 5, f"a new pid in {pidfile}")


def stop(pid: int, sig: int = signal.SIGTERM) -> None:
    """Signal a process that need not be our child, and wait until it has exited."""
    try:
        pidfd = os.pidfd_open(pid)
    except ProcessLookupError:
        return
    try:
        os.kill(pid, sig)
        ready, _, _ = select.select([pidfd], [], [], LINE_TIMEOUT_S)
        assert ready, f"pid {pid} still alive {LINE_TIMEOUT_S} s after signal {sig}"
    finally:
        os.close(pidfd)
    try:
        os.waitpid(pid, os.WNOHANG)  # ours to reap when this process is a subreaper
    except ChildProcessError:
        pass


# -- every lesson opens with its slide ---------------------------------------------
@pytest.mark.parametrize("name", NAMES)
def test_every_lesson_opens_with_a_slide_of_10_to_40_lines(name, capsys):
    path = slides.path(name)
    assert 10 <= code_lines(path) <= 40, f"{path.name}: {code_lines(path)} lines of code"
    module = importlib.import_module(slides.module_name(name))
    assert callable(module.main)
    assert capsys.readouterr() == ("", ""), "importing a slide must not run it"
    doc = module.__doc__
    assert "What goes wrong with it" in doc
    parts = {p.name for p in path.parent.glob("*.py")} - {"slide.py", "__init__.py"}
    named = set(re.findall(r"(?<![/\w])([a-z_]+\.py)\b", doc))
    paths = [p for p in re.findall(r"\blab/[\w/]+\.py\b", doc) if (ROOT / p).exists()]
    assert named & parts or paths, "the docstring names no part of the lesson that fixes it"
    assert named <= parts, f"names files the lesson does not have: {named - parts}"


@pytest.mark.parametrize("name", NAMES)
def test_the_reading_map_notebook_and_page_start_with_the_slide(name):
    lesson = ROOT / "lab" / "experiments" / name / "__init__.py"
    doc = ast.get_docstring(ast.parse(lesson.read_text()))
    map_text = doc[doc.index("Reading map") :]
    assert re.findall(r"[a-z_]+\.py", map_text)[0] == "slide.py", "the map's first file"
    number = experiments.ORDER.index(name) + 1
    notebook = json.loads((ROOT / "notebooks" / f"{number:02d}_{name}.ipynb").read_text())
    code = next(c for c in notebook["cells"] if c["cell_type"] == "code")
    assert f'slides.source("{name}")' in "".join(code["source"]), "the first code cell"
    assert f"lab/experiments/{name}/slide.py" in (ROOT / "docs" / f"{name}.md").read_text()


def test_the_cli_prints_a_slide_and_refuses_a_lesson_it_does_not_have():
    shown = run_cli("slide", "sleep")
    assert shown.returncode == 0, shown.stderr
    assert shown.stdout == slides.source("sleep")  # into a pipe: the file, byte for byte
    assert_refused(run_cli("slide", "slep"), "no lesson 'slep'", "did you mean sleep?")
    assert "daemonlab slide NAME" in (ROOT / "README.md").read_text()


def test_the_cli_runs_a_slide_with_its_arguments(tmp_path):
    pidfile = tmp_path / "slide.pid"
    ran = run_cli("slide", "daemonize", "--run", str(pidfile), timeout=30)
    assert ran.returncode == 0, ran.stderr
    stop(written_pid(pidfile))


# -- each slide's point --------------------------------------------------------------
@pytest.mark.db
def test_sleep_two_sleeps_take_two_seconds_in_a_row_and_one_in_two_threads(mysql_server):
    s = mysql_server
    url = f"mysql://{quote(s.user)}:{quote(s.password)}@{s.host}:{s.port}/{s.database}"
    sequential, threads = figures(output("sleep", env={"LAB_MYSQL_URL": url}))
    assert 1.95 <= sequential < 3.5
    assert 0.95 <= threads < 1.6


def test_daemonize_the_daemon_has_no_parent_terminal_or_session_of_ours(tmp_path):
    pidfile = tmp_path / "slide.pid"
    output("daemonize", str(pidfile))  # the launcher returns at once
    pid = written_pid(pidfile)
    try:
        # The first child may not have exited yet when its child writes the pidfile (3 of 40
        # runs here): the daemon is orphaned, and adopted by init or a subreaper, a moment later.
        adopters = ancestors() | {1, os.getpid()}
        wait_until(lambda: proc_stat(pid)["ppid"] in adopters, 5, "init or a subreaper")
        stat = proc_stat(pid)
        assert stat["tty_nr"] == 0, "no controlling terminal"
        assert stat["session"] != os.getsid(0), "a session of its own"
        assert stat["session"] != pid, "not its session's leader: it can never get a terminal"
        assert os.readlink(f"/proc/{pid}/cwd") == "/"
        assert [os.readlink(f"/proc/{pid}/fd/{fd}") for fd in (0, 1, 2)] == ["/dev/null"] * 3
        assert proc_status(pid)["Umask"] == "0022"
    finally:
        stop(pid)


def test_daemonize_a_second_start_overwrites_the_first_ones_pidfile(tmp_path):
    """What goes wrong with it: nothing refuses a second start; two run, the file names one."""
    pidfile = tmp_path / "slide.pid"
    daemons: list[int] = []
    try:
        for _ in range(2):
            output("daemonize", str(pidfile))
            daemons.append(written_pid(pidfile, unlike=daemons))
        assert all(proc_stat(pid) is not None for pid in daemons), "both run"
        assert int(pidfile.read_text()) == daemons[1]
    finally:
        for pid in daemons:
            stop(pid)


def test_signals_the_handler_runs_on_kill_term():
    proc = start("signals")
    try:
        assert next_line(proc).startswith(f"pid {proc.pid}: waiting")
        proc.send_signal(signal.SIGTERM)
        assert next_line(proc) == "got SIGTERM: cleaning up, bye\n"
        assert proc.wait(LINE_TIMEOUT_S) == 0
    finally:
        proc.kill()
        proc.wait()
        proc.stdout.close()


def get(port: int) -> int:
    """GET / from the preforking slide: the pid that answered."""
    with socket.create_connection(("127.0.0.1", port), timeout=LINE_TIMEOUT_S) as conn:
        conn.sendall(b"GET / HTTP/1.0\r\n\r\n")
        reply = b"".join(iter(lambda: conn.recv(4096), b""))
    return int(reply.split()[-1])


def test_prefork_two_forked_workers_answer_on_one_socket():
    proc = start("prefork", "0", start_new_session=True)  # its workers: in its group
    answered: set[int] = set()
    try:
        port = int(next_line(proc).split()[-1])
        for _ in range(100):  # the kernel alternates between waiting workers: two do
            answered.add(get(port))
            if len(answered) == 2:
                break
        assert len(answered) == 2, f"only pid {answered} answered"
        assert all(proc_stat(pid)["ppid"] == proc.pid for pid in answered), "the master's children"
        # What goes wrong with it: the master's TERM leaves its workers serving, as orphans.
        proc.terminate()
        proc.wait()
        assert get(port) in answered
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        proc.stdout.close()
        for pid in answered:  # orphans once the master is gone
            stop(pid, signal.SIGKILL)


def test_worker_a_brpop_worker_killed_mid_job_loses_the_job():
    # The hardened worker's side: test_worker.py, test_kill_9_mid_job_loses_no_job_and_...
    require_service("redis")
    import redis

    from lab import services

    queue = f"daemonlab-slide-{secrets.token_hex(4)}"
    r = redis.Redis.from_url(services.url("redis"))
    r.lpush(queue, b"0", b"60")  # BRPOP takes from the right: "0" first, then "60"
    proc = start("worker", queue, env={"LAB_REDIS_URL": services.url("redis")})
    try:
        assert next_line(proc).startswith(f"worker {proc.pid} waiting")
        assert next_line(proc) == "took 0\n"
        assert next_line(proc) == "took 60\n"  # mid-job from here: a minute of it
        proc.kill()
        proc.wait()
        held = {key: r.lrange(key, 0, -1) for key in r.scan_iter(f"{queue}*")}
        assert held == {f"{queue}:done".encode(): [b"0"]}, "the job is nowhere: lost"
    finally:
        proc.kill()
        proc.wait()
        proc.stdout.close()
        r.delete(queue, *r.scan_iter(f"{queue}:*"))
        r.close()


def test_fork_two_processes_copied_memory_and_output_printed_twice():
    lines = output("fork", env={"PYTHONUNBUFFERED": ""}).splitlines()  # "": not set, to Python
    assert len(lines) == 4, lines
    child = re.fullmatch(r"child: pid (\d+), parent (\d+), x = 2", lines[1])
    parent = re.fullmatch(r"parent: pid (\d+), child (\d+), x = 1", lines[3])
    assert child and parent, lines
    assert child[1] == parent[2] != parent[1] == child[2]
    assert lines[0] == lines[2] == f"before fork: pid {parent[1]}", "the copied buffer, twice"


def test_cow_a_child_that_only_reads_copies_the_data():
    after_fork, after_reading = figures(output("cow"))
    assert after_reading - after_fork > 30  # of ~60 MB of strings


def test_spawn_a_thread_costs_less_than_a_process():
    fork, spawn, thread = figures(output("spawn"))
    assert thread * 3 < min(fork, spawn)  # medians: ~60 µs against 600-3,000 under load


def test_cpu_two_threads_keep_one_core_busy_never_two():
    said = output("cpu")
    cores = dict(re.findall(r"(\w+): [\d.]+ s, ([\d.]+) cores busy", said))
    assert set(cores) == {"one_loop", "in_processes", "in_threads"}, said
    # The GIL: CPU time over wall time stays at one core (a busy machine only lowers it);
    # the processes' figure depends on free cores, so it is shown, not asserted.
    assert float(cores["in_threads"]) <= 1.25, said


def test_ipc_every_ping_gets_its_pong_from_the_child():
    said = output("ipc")
    assert re.match(r"1000 of 1000 pongs from child \d+, \d+ µs a round trip", said), said


def test_cron_a_tick_costs_far_more_than_a_daemon_running_the_job():
    cron, daemon = figures(output("cron"))
    assert cron > 5  # ms: a shell and an interpreter starting, at the least
    assert cron > 100 * daemon


def test_managers_a_killed_daemon_is_noticed_and_started_again_at_once():
    proc = start("managers")
    try:
        seen = []
        for number in (1, 2, 3):
            pid = int(re.fullmatch(rf"start {number}: daemon pid (\d+)\n", next_line(proc))[1])
            os.kill(pid, signal.SIGKILL)  # before its crash, half a second after its start
            assert next_line(proc).startswith(f"pid {pid} exited -9 after")
            seen.append(pid)
        assert next_line(proc) == "a crash loop: 3 starts, given up\n"
        assert len(set(seen)) == 3
        assert proc.wait(LINE_TIMEOUT_S) == 0
    finally:
        proc.kill()
        proc.wait()
        proc.stdout.close()
