"""The fork checklist: every fact holds on Linux, and fails when its demonstration is broken.

The checklist runs for real (in a child, through lab.interpreters) and each
fact must hold. Then each fact runs in this process with a fork that does not
fork (a /bin/true started in its place: the parent branch runs, no copy of
this process does) and must stop holding: a fact that held without forking
would be a printed assertion, not a demonstration. A fork that does not fork
mostly trips a fact's "no child reported" guard, so the facts whose property
is easy to break are also run with a real fork and the property broken: the
memory shared, the file reopened by path, no setsid, no subreaper.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import time

import pytest

from lab import interpreters, start_methods
from lab.errors import LabError
from lab.experiments import fork
from lab.experiments.fork import basics, lifecycle, platforms, probes
from lab.experiments.fork.child import FACTS, check
from tests.conftest import assert_refused, children, open_fds, run_cli

FORKING_FACTS = [1, 2, 3, 4, 5, 8, 9, 10, 11, 13, 15]
SCRIPT_FACTS = [6, 7]
FAKE_SCRIPT_FORK = "lambda: os.posix_spawn('/bin/true', ['true'], os.environ)"


def fake_fork() -> int:
    """Return like the parent of a new child, but without copying this process."""
    return os.posix_spawn("/bin/true", ["true"], os.environ)


def zombies_of(pid: int) -> list[int]:
    """Processes in state Z whose parent is `pid`, from /proc."""
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            stat = probes.proc_stat(entry)
            if stat and stat["ppid"] == pid and stat["state"] == "Z":
                found.append(int(entry))
    return found


@pytest.fixture(scope="module")
def checklist():
    """The whole checklist, once, with what it left behind measured around it."""
    fds, kids = open_fds(), {p.pid for p in children()}
    run = fork.run(fork.Params())
    left = {
        "fds": open_fds() - fds,
        "children": [p.pid for p in children() if p.pid not in kids],
        "zombies": zombies_of(os.getpid()),
    }
    return run, left


def by_number(run) -> dict[int, dict]:
    return {r["number"]: r for r in run.records}


@pytest.mark.parametrize("number", [n for n in FACTS if n != fork.MYSQL_FACT])
def test_fact_holds_on_linux(checklist, number: int) -> None:
    record = by_number(checklist[0])[number]
    assert record["holds"] is True, record


@pytest.mark.db
def test_mysql_connection_shared_across_fork_breaks_and_one_per_process_works(
    checklist, mysql_server
) -> None:
    record = by_number(checklist[0])[fork.MYSQL_FACT]
    assert record["holds"] is True, record
    assert "After fork: child" in record["observed"]


def test_whole_checklist_leaves_no_child_zombie_or_descriptor(checklist) -> None:
    run, left = checklist
    assert run.status == "ok"
    assert [r["number"] for r in run.records] == sorted(FACTS)
    assert left == {"fds": set(), "children": [], "zombies": []}


def test_checklist_records_are_the_documented_columns(checklist) -> None:
    record = checklist[0].records[0]
    assert {c.key for c in fork.COLUMNS} - {"round"} <= set(record)
    assert isinstance(record["seconds"], float) and record["seconds"] > 0
    json.dumps(checklist[0].records)  # storable as they are


def test_selected_facts_repeat_and_leave_nothing_behind(no_leaks) -> None:
    run = fork.run(fork.Params(fact=(8, 9, 10), repeat=2))
    assert [(r["round"], r["number"]) for r in run.records] == [
        (1, 8),
        (1, 9),
        (1, 10),
        (2, 8),
        (2, 9),
        (2, 10),
    ]
    assert all(r["holds"] for r in run.records)
    assert zombies_of(os.getpid()) == []


# -- a demonstration that does not fork must not hold --------------------------------


@pytest.fixture
def no_fork(monkeypatch):
    monkeypatch.setattr(probes, "fork", fake_fork)
    monkeypatch.setattr(lifecycle, "SCRIPT_FORK", FAKE_SCRIPT_FORK)


@pytest.mark.parametrize("number", FORKING_FACTS + SCRIPT_FACTS)
def test_fact_fails_when_fork_does_not_fork(no_fork, no_leaks, number: int) -> None:
    handlers = {s: signal.getsignal(s) for s in (signal.SIGUSR1, signal.SIGUSR2)}
    record = check(number, {})
    assert record["holds"] is False, record
    assert zombies_of(os.getpid()) == []
    assert {s: signal.getsignal(s) for s in handlers} == handlers  # fact 11 put them back


# -- a real fork, with the property itself broken -------------------------------------


def test_memory_fact_fails_when_the_page_is_shared(monkeypatch, no_leaks) -> None:
    """MAP_SHARED: the same page in both processes, as multiprocessing's shared memory is."""
    import mmap

    monkeypatch.setattr(basics, "MAPPING", mmap.MAP_SHARED)
    record = check(2, {})
    assert record["holds"] is False, record
    assert "page byte 'C'" in record["observed"]  # the parent saw the child's write


def test_offset_fact_fails_when_the_child_reopens_the_file_by_path(monkeypatch, no_leaks) -> None:
    """A second open(2) is a new open file description, with an offset of its own."""
    monkeypatch.setattr(basics, "child_descriptor", lambda fd, path: os.open(path, os.O_WRONLY))
    record = check(3, {})
    assert record["holds"] is False, record
    assert "offset 0 -> 0" in record["observed"]


def test_session_fact_fails_when_the_child_does_not_call_setsid(monkeypatch, no_leaks) -> None:
    monkeypatch.setattr(basics, "leave_session", lambda: os.getsid(0))
    record = check(15, {})
    assert record["holds"] is False, record
    assert "tty pts/" in record["observed"].split("after:")[1]  # it kept the terminal


def test_orphan_fact_fails_without_the_subreaper(monkeypatch, no_leaks) -> None:
    """The orphan then goes to PID 1 (or a subreaper further up), not to us."""
    monkeypatch.setattr(lifecycle.procfs, "set_subreaper", lambda on: True)
    record = check(9, {})
    assert record["holds"] is False, record


def _aborted_clients(srv) -> int:
    from lab import db

    conn = db.connect(srv)
    try:
        with conn.cursor() as cursor:
            cursor.execute("SHOW GLOBAL STATUS LIKE 'Aborted_clients'")
            return int(cursor.fetchone()[1])
    finally:
        conn.close()


@pytest.mark.db
def test_mysql_fact_says_goodbye_on_every_connection(mysql_server, no_leaks) -> None:
    """Even the shared connection the demonstration broke ends with COM_QUIT."""
    before = _aborted_clients(mysql_server)
    run = fork.run(fork.Params(fact=(fork.MYSQL_FACT,), repeat=3))
    assert all(r["holds"] is True for r in run.records), run.records
    assert _aborted_clients(mysql_server) == before


@pytest.mark.db
def test_mysql_fact_fails_when_fork_does_not_fork(no_fork, no_leaks, mysql_server) -> None:
    kwargs = mysql_server.pymysql_kwargs()
    tls = kwargs.pop("ssl", None) is not None
    record = check(fork.MYSQL_FACT, {"mysql": {**kwargs, "tls": tls}})
    assert record["holds"] is False, record


def test_start_methods_fact_fails_when_the_refusal_is_missing(monkeypatch) -> None:
    assert check(14, {})["holds"] is True
    monkeypatch.setattr(platforms.start_methods, "require_fork", lambda what: None)
    record = check(14, {})
    assert record["holds"] is False
    assert "None" in record["observed"]


def test_zombie_fact_fails_when_the_child_does_not_report(monkeypatch, no_leaks) -> None:
    """A real fork whose child dies before saying who it is: the zombie seen is not proof."""
    real = probes.fork

    def fork_then_die() -> int:
        pid = real()
        if pid == 0:
            os._exit(0)  # the child leaves before the fact's body runs
        return pid

    monkeypatch.setattr(probes, "fork", fork_then_die)
    assert check(8, {})["holds"] is False


# -- the refusal where os.fork does not exist ----------------------------------------


def test_require_fork_passes_where_fork_exists() -> None:
    start_methods.require_fork("the fork strategy")


def test_require_fork_refuses_without_os_fork_and_points_to_spawn(monkeypatch) -> None:
    monkeypatch.delattr(os, "fork")
    with pytest.raises(LabError) as refused:
        start_methods.require_fork("the fork strategy")
    message = str(refused.value)
    assert "needs os.fork" in message and "spawn" in message and "forkserver" in message
    assert "\n" not in message


def test_expected_default_start_method_follows_the_documentation() -> None:
    expect = start_methods.expected_default_start_method
    assert expect("linux", (3, 11)) == "fork"
    assert expect("linux", (3, 14)) == "forkserver"
    assert expect("darwin", (3, 12)) == "spawn"
    assert expect("win32", (3, 11)) == "spawn"


def test_no_lesson_default_follows_the_interpreters_start_method() -> None:
    """Every lesson's defaults are the same whatever multiprocessing's default is: 3.14
    makes it forkserver on Linux (gh-84559), and a lesson that took the default would
    measure another thing after an upgrade, under the same command."""
    import subprocess

    script = (
        "import multiprocessing, sys\n"
        "multiprocessing.set_start_method(sys.argv[1])\n"
        "from lab import experiments\n"
        "for name in experiments.names():\n"
        "    print(name, experiments.load(name).Params())\n"
    )
    seen = {}
    for method in ("fork", "spawn"):
        done = subprocess.run(
            [sys.executable, "-c", script, method], capture_output=True, text=True, timeout=120
        )
        assert done.returncode == 0, done.stderr
        seen[method] = done.stdout.splitlines()
    differ = [(f, s) for f, s in zip(seen["fork"], seen["spawn"], strict=True) if f != s]
    assert not differ, differ


def test_lab_code_names_a_start_method_wherever_it_starts_processes() -> None:
    """No call that takes multiprocessing's default context: each goes through
    get_context(METHOD) (or a ProcessPoolExecutor given mp_context)."""
    import ast

    from tests.conftest import ROOT

    takes_default = {"Process", "Pool", "Queue", "SimpleQueue", "JoinableQueue", "Pipe",
                     "Manager", "Event", "Lock", "RLock", "Semaphore", "Barrier", "Value",
                     "Array", "set_start_method"}  # fmt: skip
    found = []
    for path in sorted((ROOT / "lab").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if not isinstance(node, ast.Call):
                continue
            func = node.func
            named = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
            module = getattr(getattr(func, "value", None), "id", None)
            if (module == "multiprocessing" and named in takes_default) or (
                named == "ProcessPoolExecutor"
                and not any(k.arg == "mp_context" for k in node.keywords)
            ):
                found.append(f"{path.relative_to(ROOT)}:{node.lineno}: {ast.unparse(node)}")
    assert not found, found


# -- other interpreters ------------------------------------------------------------


def _interpreter(spec: str):
    try:
        return interpreters.resolve(spec)
    except LabError as exc:
        pytest.skip(f"no Python {spec} here: {exc}")


@pytest.mark.parametrize("spec", ["3.12", "3.13"])
def test_newer_python_warns_on_threaded_fork_and_skips_mysql_without_pymysql(spec: str) -> None:
    _interpreter(spec)
    run = fork.run(fork.Params(fact=(12, 13), python=(spec,)))
    records = by_number(run)
    assert records[13]["holds"] is True
    assert "DeprecationWarning" in records[13]["observed"]
    assert records[13]["python"].startswith(spec)
    assert records[12]["holds"] is None
    assert records[12]["observed"] == "skipped: needs pymysql"


def test_python_311_forks_a_threaded_process_silently() -> None:
    spec = "3.11"
    if sys.version_info[:2] != (3, 11):
        _interpreter(spec)
    run = fork.run(fork.Params(fact=(13,), python=(spec,)))
    record = run.records[0]
    assert record["holds"] is True
    assert record["observed"].endswith("no warning")


# -- the command line -----------------------------------------------------------------


def test_cli_prints_the_checklist_as_json() -> None:
    done = run_cli("run", "fork", "--fact", "1,3", "--json", "--no-store", timeout=120)
    assert done.returncode == 0, done.stderr
    records = json.loads(done.stdout)["records"]
    assert [(r["number"], r["holds"]) for r in records] == [(1, True), (3, True)]


@pytest.mark.parametrize(
    "args, says",
    [
        (["--fact", "16"], "--fact: unknown value 16"),
        (["--fact", "one"], "--fact: 'one' is not a valid int"),
        (["--repeat", "0"], "--repeat must be at least 1"),
        (["--python", "python9.9"], "--python: no interpreter 'python9.9'"),
    ],
)
def test_cli_refuses_bad_input_in_one_line(args: list[str], says: str) -> None:
    assert_refused(run_cli("run", "fork", *args, "--no-store", timeout=60), says)


def test_ctrl_c_stops_the_checklist_and_leaves_no_process_behind() -> None:
    import subprocess

    import psutil

    from tests.conftest import ROOT

    cli = subprocess.Popen(
        [sys.executable, "-m", "lab", "run", "fork", "--fact", "5", "--repeat", "50"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    try:
        time.sleep(2.0)  # an interpreter start, then fact 5's 0.3 s lock timeouts
        family = [cli.pid] + [p.pid for p in psutil.Process(cli.pid).children(recursive=True)]
        assert len(family) > 1, "the checklist child should be running by now"
        cli.send_signal(signal.SIGINT)
        _, err = cli.communicate(timeout=30)
    finally:
        if cli.poll() is None:
            cli.kill()
            cli.communicate()
    assert cli.returncode == 130
    assert "interrupted" in err and "Traceback" not in err
    deadline = time.monotonic() + 5
    while any(psutil.pid_exists(pid) for pid in family) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert [pid for pid in family if psutil.pid_exists(pid)] == []


# -- the picture -------------------------------------------------------------------


def test_plot_draws_the_checklist_and_diagrams_from_observed_pids(checklist) -> None:
    from lab.experiments.fork import plot as fork_plot

    run = checklist[0]
    figure = fork_plot.draw([run])
    assert len(figure.axes) == 7  # the checklist and six process diagrams
    texts = " ".join(t.get_text() for ax in figure.axes for t in ax.texts)
    seen = fork_plot.pictures(run.records)
    assert f"pid {seen[1]['child']}" in texts  # the pid fork really returned
    assert f"offset 0 → {seen[3]['after']}" in texts
    assert "state Z" in texts
