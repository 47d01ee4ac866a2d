"""sleep --scale: each strategy pushed until it breaks, and the break recorded, not crashed.

Each kind of break is made to happen early with a low limit, in a real child
process against a real server of the test's own (a throwaway MariaDB, never
the shared one): too few file descriptors (RLIMIT_NOFILE), too few processes
and threads (RLIMIT_NPROC, as nobody: root is exempt), a small memory budget
(--max-rss), a server whose max_connections cannot be raised, a time limit.
Every run must end by itself, exit 0, store the break's cause and leave no
process behind.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import psutil
import pytest

from lab import db, mysqld
from lab.experiments.sleep import scale
from lab.experiments.sleep.job import Broke
from tests.conftest import ROOT, missing, stored_runs

pytestmark = pytest.mark.db


@pytest.fixture(scope="module")
def server():
    """A throwaway MariaDB with room for the sweeps here (max_connections 1100)."""
    if mysqld.find_binary() is None:
        missing("no mariadbd or mysqld installed")
    with mysqld.throwaway() as m:
        yield db.Server("127.0.0.1", m.port, "root", "", "test", source="scale test", pid=m.pid)


def _url(srv: db.Server) -> str:
    return f"mysql://{srv.user}:{srv.password}@{srv.host}:{srv.port}/{srv.database}"


def sweep(srv: db.Server, *options: str, prefix=(), python=sys.executable, env=None, **kw):
    """`daemonlab run sleep --scale --json OPTIONS` in a child, against `srv`; its run."""
    argv = [*prefix, python, "-m", "lab", "run", "sleep", "--scale", "--seconds", "0.5", "--json"]
    done = subprocess.run(
        [*argv, *options],
        env={
            **os.environ,
            "PYTHONPATH": str(ROOT),
            "LAB_MYSQL_URL": _url(srv),
            "LAB_DB_PATHS": "url",
            **(env or {}),
        },
        capture_output=True,
        text=True,
        timeout=300,
        start_new_session=True,
        **kw,
    )
    assert done.returncode == 0, done.stderr
    assert "Traceback" not in done.stderr
    return json.loads(done.stdout)


def _by_strategy(run: dict) -> dict[str, list[dict]]:
    out: dict[str, list[dict]] = {}
    for record in run["records"]:
        out.setdefault(record["strategy"], []).append(record)
    return out


def _nothing_left(before: set[int]) -> None:
    """No process the sweep started is left: none of ours is new, none runs `lab`."""
    left = [p for p in psutil.Process().children(recursive=True) if p.pid not in before]
    assert not left, left


def test_the_ladder_doubles_from_64_and_ends_at_the_top():
    assert scale.ladder(10_000) == [64, 128, 256, 512, 1000, 2048, 4096, 8192, 10_000]
    assert scale.ladder(128) == [64, 128]
    assert scale.ladder(10) == [10]


def test_the_sweep_stops_at_a_limit_a_budget_or_too_little_overlap():
    """The sweep's own rules, fed measurements: where each one stops, and the cause it says."""

    asked: list[int] = []  # every count a measure was called with

    def measuring(per_client: float, efficiency: float, broke_at: int | None = None):
        def measure(clients: int) -> dict:
            asked.append(clients)
            if clients == broke_at:
                raise Broke("threads", "can't start new thread")
            used = 30 + per_client * clients
            return {"clients": clients, "efficiency": efficiency, "client_mib": used,
                    "mib_per_client": per_client}  # fmt: skip

        return measure

    limit = list(scale.sweep(1000, 8192, measuring(0.03, 0.99, broke_at=256)))
    assert [r["clients"] for r in limit] == [64, 128, 256] and limit[-1]["broke"] == "threads"
    asked.clear()
    budget = list(scale.sweep(10_000, 1000, measuring(2.0, 0.99)))  # 512 x 2 MiB: over 1000
    assert [r["clients"] for r in budget] == [64, 128, 256, 512]
    assert budget[-1]["broke"] == "rss" and "would use about 1,054 MiB" in budget[-1]["detail"]
    assert asked == [64, 128, 256], "looked ahead: 512 was never tried"
    overlap = list(scale.sweep(1000, 8192, measuring(0.03, 0.45)))
    assert [r["broke"] for r in overlap] == ["efficiency"]


def test_out_of_file_descriptors_is_where_threads_and_asyncio_break(server, results_path):
    before = {p.pid for p in psutil.Process().children(recursive=True)}
    run = sweep(
        server, "--top", "128", "--strategy", "threads,asyncio",
        prefix=("prlimit", "--nofile=110:110", "--"),
    )  # fmt: skip
    for strategy, records in _by_strategy(run).items():
        assert [r["clients"] for r in records] == [64, 128], strategy
        first, last = records
        assert "broke" not in first and first["server_peak"] == 64
        assert first["client_fds"] >= 64, "the snapshot counted the sockets"
        assert last["broke"] == "fds" and "out of file descriptors" in last["detail"]
    (stored,) = stored_runs(results_path, "sleep")
    assert stored.status == "ok" and [r.get("broke") for r in stored.records][-1] == "fds"
    _nothing_left(before)


@pytest.fixture
def open_to_nobody():
    """A results store folder and a Python that the user nobody can use.

    The venv's interpreter lives under /root (mode 700 here): nobody runs the
    system's python3.11 with this checkout and the venv's packages on its path.
    A checkout nobody cannot read (a fresh clone in a 0700 folder: "No module
    named lab") is copied first, the lab and the venv's packages, into a folder
    nobody may read (the packages hard-linked where the file system allows)."""
    python = shutil.which("python3.11", path="/usr/bin:/usr/local/bin")
    if os.geteuid() != 0 or python is None:
        pytest.skip("needs root (to become nobody) and a system python3.11")
    folder = Path(tempfile.mkdtemp(prefix="lab-scale-"))
    folder.chmod(0o777)
    site = next(Path(sys.prefix).glob("lib/python3.*/site-packages"))
    path = f"{ROOT}:{site}"
    try:
        if not _nobody_imports(python, path):
            copy = folder / "readable"
            skip = shutil.ignore_patterns("__pycache__")
            shutil.copytree(ROOT / "lab", copy / "lab", ignore=skip)
            shutil.copytree(site, copy / "site", copy_function=_link_or_copy, symlinks=True)
            path = f"{copy}:{copy / 'site'}"
            assert _nobody_imports(python, path), "nobody cannot import the copy either"
        yield python, folder, path
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def _nobody_imports(python: str, path: str) -> bool:
    """Can nobody import the lab and its MySQL client from `path`?"""
    done = subprocess.run(
        [python, "-c", "import lab.cli, pymysql"],
        env={"PYTHONPATH": path, "PATH": os.environ.get("PATH", "")},
        user=65534, group=65534, extra_groups=[], cwd="/",
        capture_output=True, timeout=60,
    )  # fmt: skip
    return done.returncode == 0


def _link_or_copy(source: str, target: str) -> None:
    try:
        os.link(source, target)
    except OSError:  # another file system (EXDEV), or links not allowed
        shutil.copy2(source, target)


def _tasks_of(uid: int) -> int:
    """Every task (process or thread) uid runs now: what RLIMIT_NPROC counts."""
    count = 0
    for proc in psutil.process_iter(["uids", "num_threads"]):
        if proc.info["uids"] and proc.info["uids"].real == uid:
            count += proc.info["num_threads"] or 0
    return count


def test_too_few_processes_is_where_threads_and_fork_break(server, open_to_nobody):
    python, folder, path = open_to_nobody
    nobody = 65534
    # The run's own tasks (its main thread, the progress bar's, the watcher) and 64
    # clients fit; 128 do not.
    limit = _tasks_of(nobody) + 100
    before = {p.pid for p in psutil.Process().children(recursive=True)}
    run = sweep(
        server, "--top", "128", "--strategy", "threads,fork",
        prefix=("prlimit", f"--nproc={limit}:{limit}", "--"), python=python,
        env={"PYTHONPATH": path, "LAB_RESULTS": str(folder / "lab.db"), "HOME": str(folder)},
        user=nobody, group=nobody, extra_groups=[],
    )  # fmt: skip
    found = _by_strategy(run)
    assert found["threads"][-1]["broke"] == "threads", found["threads"][-1]
    assert "a thread could not be created" in found["threads"][-1]["detail"]
    assert found["fork"][-1]["broke"] == "processes", found["fork"][-1]
    for records in found.values():
        assert [r["clients"] for r in records] == [64, 128]
    _nothing_left(before)


def test_a_small_memory_budget_stops_the_sweep(server):
    run = sweep(server, "--top", "256", "--strategy", "fork", "--max-rss", "50")
    (record,) = run["records"]  # the first step already used more than 50 MiB
    assert record["clients"] == 64 and record["broke"] == "rss"
    assert record["client_mib"] > 50 and "over --max-rss 50" in record["detail"]


@pytest.fixture
def low_limit_account(server):
    """An account that may sleep but not SET GLOBAL, on a server whose limit is 100."""
    name, password = f"lab_s_{secrets.token_hex(4)}", secrets.token_hex(8)
    with db.connect(server, autocommit=True) as admin, admin.cursor() as cur:
        cur.execute("SET GLOBAL max_connections = 100")
        cur.execute("CREATE USER %s@'%%' IDENTIFIED BY %s", (name, password))
        cur.execute("GRANT ALL ON test.* TO %s@'%%'", (name,))
    try:
        yield db.Server(server.host, server.port, name, password, "test", source="low limit")
    finally:
        with db.connect(server, autocommit=True) as admin, admin.cursor() as cur:
            cur.execute("DROP USER IF EXISTS %s@'%%'", (name,))
            cur.execute(f"SET GLOBAL max_connections = {mysqld.MAX_CONNECTIONS}")


def test_a_server_that_refuses_connections_is_where_the_sweep_stops(low_limit_account):
    run = sweep(low_limit_account, "--top", "128", "--strategy", "asyncio,threads")
    for strategy, records in _by_strategy(run).items():
        assert [r["clients"] for r in records] == [64, 128], strategy
        assert records[-1]["broke"] == "refused", records[-1]
        assert "Too many connections" in records[-1]["detail"]
    assert "could not be raised" in run["env"]["servers"][0]["room"] or (
        "max_connections is 100" in run["env"]["servers"][0]["room"]
    )


def test_a_time_limit_is_a_break_not_a_hang(server):
    run = sweep(
        server, "--top", "128", "--strategy", "threads,fork,asyncio", "--time-limit", "0.001"
    )
    for strategy, records in _by_strategy(run).items():
        assert [r.get("broke") for r in records] == ["time"], (strategy, records)
        assert "0.001 s" in records[0]["detail"]
