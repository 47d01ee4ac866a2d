# lab/mysqld.py: a throwaway MariaDB/MySQL server in a temporary directory.
#
# When no server is at hand but `mariadbd` or `mysqld` is installed (the
# mariadb-server package), the lab makes its own, the way pytest-mysql does:
# initialise a data directory under /tmp, start the server on a free
# 127.0.0.1 port, wait until it answers, create database `test`, and on the
# way out stop it (TERM, a grace period, KILL) and delete the directory.
#
# Two lifetimes:
#   throwaway()  a context manager: the server is our child and lives for one
#                `with` block (one CLI run, one test module).
#   up()/down()  `daemonlab db up` / `db down`: the server outlives the
#                process that started it, so notebooks in several kernels can
#                share it; a small JSON state file says where it is.
#
# Things that don't work, and why the code below looks as it does:
# - The distribution's server config (/etc/mysql/my.cnf) names the system
#   server's datadir, socket and port: every command gets --no-defaults first.
# - Without --socket a second server tries the system server's socket file.
# - As root, mariadbd refuses to start unless told --user=root.
# - Popen(start_new_session=True) alone is not enough for `db up`: the server
#   would stay our child, and a notebook kernel that never waits for it keeps
#   a zombie after `db down` runs elsewhere. A launcher process that starts
#   the server and exits at once hands it to init (the talk's double fork,
#   without forking a threaded Python).
# - If the Python process is SIGKILLed, no `finally` runs. So a throwaway
#   server is started through a small launcher that asks the kernel to KILL
#   it when its parent dies (prctl PR_SET_PDEATHSIG, kept across execve). Not
#   TERM: mariadbd loses a TERM that comes while it starts (measured: TERMed
#   0.1 s after its socket opened, it ran on for 100 s), and a throwaway
#   server's data is removed anyway, so a clean shutdown buys nothing. And
#   every data directory holds an owner file (who started it: pid, and when,
#   so a reused pid is not mistaken for the owner). A directory whose owner is
#   dead is found and removed by the next throwaway(), by `db down` and by
#   `daemonlab doctor` (sweep()), its server stopped first if it still runs.

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

import psutil

from lab import children
from lab.errors import LabError, last_line

__all__ = [
    "MAX_CONNECTIONS",
    "THREAD_HANDLINGS",
    "Left",
    "Mysqld",
    "Settings",
    "down",
    "find_binary",
    "running",
    "state_path",
    "sweep",
    "throwaway",
    "up",
]

log = logging.getLogger(__name__)

# Daemons live in sbin, which is often not on a normal user's PATH.
SEARCH_DIRS = ("/usr/sbin", "/usr/local/sbin")
SERVER_NAMES = ("mariadbd", "mysqld")
INSTALL_DB_NAMES = ("mariadb-install-db", "mysql_install_db")
DIR_PREFIX = "daemonlab-mysqld-"  # how down() knows a directory is ours to delete
OWNER_FILE = "daemonlab-owner.json"  # in each data directory: who started the server

# The same limit as docker-compose.yml, so the 1,000-client demo runs as is.
MAX_CONNECTIONS = 1100
# MariaDB's own default listen queue (MySQL 8's is 151).
DEFAULT_BACK_LOG = 80
# A fresh InnoDB starts in ~2 s here; slow CI disks get a generous bound.
START_TIMEOUT_S = 60.0
# TERM makes mariadbd flush and exit (~0.5 s for a fresh datadir).
STOP_GRACE_S = 10.0
# Poll interval while waiting for the server's first answer: start-up takes seconds.
POLL_S = 0.1
# A directory without an owner file is being set up right now (the file is the
# first thing written) or was left by an older lab: removed only once this old.
UNOWNED_GRACE_S = 2 * START_TIMEOUT_S

#: How MariaDB serves connections: a thread of its own each, or a pool of
#: threads shared by all (MariaDB's thread pool; Oracle MySQL has it only in
#: its Enterprise edition).
THREAD_HANDLINGS = ("one-thread-per-connection", "pool-of-threads")
#: A pool adds workers while queries wait and retires them after this long idle
#: (thread_pool_idle_timeout, 60 s by default): short, so that a measurement
#: can start from the pool's own size a moment after the last one.
POOL_IDLE_TIMEOUT_S = 1


@dataclass(frozen=True)
class Settings:
    """What a throwaway server is started with: the settings the load needs.

    back_log is the listen queue (the kernel caps it at net.core.somaxconn);
    None leaves the server's default (80 on MariaDB 10.11, 151 on MySQL 8).
    """

    max_connections: int = MAX_CONNECTIONS
    back_log: int | None = None
    thread_handling: str = THREAD_HANDLINGS[0]
    #: (certificate, key) PEM files: a server that offers TLS, as a test of the
    #: lab's TLS paths needs (a stock throwaway server offers none).
    tls: tuple[str, str] | None = None

    def argv(self) -> list[str]:
        args = [
            f"--max-connections={self.max_connections}",
            f"--thread-handling={self.thread_handling}",
            # Each connection is a descriptor in the server: ask for them all,
            # or the server lowers max_connections to what its limit allows.
            f"--open-files-limit={self.max_connections + 1000}",
        ]
        if self.back_log is not None:
            args.append(f"--back-log={self.back_log}")
        if self.thread_handling == "pool-of-threads":
            args.append(f"--thread-pool-idle-timeout={POOL_IDLE_TIMEOUT_S}")
        if self.tls is not None:
            args += [f"--ssl-cert={self.tls[0]}", f"--ssl-key={self.tls[1]}"]
        return args


@dataclass(frozen=True)
class Mysqld:
    """A running server we started: everything lives in `datadir`."""

    binary: str
    datadir: str
    port: int
    pid: int


def find_binary() -> str | None:
    """The first mariadbd or mysqld on PATH or in the sbin directories, or None."""
    path = os.pathsep.join([os.environ.get("PATH", ""), *SEARCH_DIRS])
    for name in SERVER_NAMES:
        found = shutil.which(name, path=path)
        if found:
            return found
    return None


def state_path() -> Path:
    """Where `db up` records its server (LAB_MYSQLD_STATE overrides)."""
    from lab.params import check_path

    given = os.environ.get("LAB_MYSQLD_STATE")  # empty counts as unset, as a shell means it
    if not given:
        return Path.home() / ".cache" / "daemonlab" / "mysqld.json"
    return Path(check_path(given, "LAB_MYSQLD_STATE"))


@contextlib.contextmanager
def throwaway(settings: Settings = Settings()) -> Iterator[Mysqld]:
    """Start a server for one `with` block; stop it and delete its directory on exit.

    Leftovers of dead runs go first (sweep): their servers hold memory and ports.
    """
    binary = _require_binary()
    sweep()
    datadir = _new_datadir("throwaway")
    proc: subprocess.Popen[bytes] | None = None
    try:
        _initialise(binary, datadir)
        port = _free_port()
        # Its own session: a Ctrl-C at the terminal goes to our process group
        # only, so the server is stopped by our `finally`, in order, not by
        # the same signal at the same moment. The launcher ties its life to
        # ours, for the one case no `finally` runs: kill -9 (see the header).
        proc = subprocess.Popen(
            _dies_with_parent(_server_argv(binary, datadir, port, settings)),
            start_new_session=True,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        _wait_until_ready(proc.pid, port, datadir)
        yield Mysqld(binary, datadir, port, proc.pid)
    finally:
        if proc is not None:
            _stop(proc.pid)
            proc.wait()  # already reaped by _stop; this tells Popen so
        _remove(datadir)


def up() -> tuple[Mysqld, bool]:
    """Start a detached server and record it; reuse the recorded one if it runs.

    Returns the server and whether this call started it.
    """
    with _state_lock():
        live = _running_locked()
        if live is not None:
            return live, False
        binary = _require_binary()
        datadir = _new_datadir("db up")
        pid = None
        try:
            _initialise(binary, datadir)
            port = _free_port()
            pid = _launch_detached(_server_argv(binary, datadir, port))
            _wait_until_ready(pid, port, datadir)
            srv = Mysqld(binary, datadir, port, pid)
            _write_state(srv)
            return srv, True
        except BaseException:
            if pid is not None:
                _stop(pid)
            _remove(datadir)
            raise


def down() -> tuple[bool, list[Left]]:
    """`db down`: stop the `db up` server, delete its directory and state file, and
    sweep every server and directory left by a dead run.

    Returns whether a `db up` server was stopped, and what else was found:
    leftovers removed, and throwaway servers still in use by a live run (left
    alone: stopping them would break that run)."""
    with _state_lock():
        srv = _read_state()
        stopped = srv is not None
        if srv is not None:
            if _is_ours(srv):
                _stop(srv.pid)
            _forget(srv)
    return stopped, sweep(report_in_use=True)


@dataclass(frozen=True)
class Left:
    """A data directory sweep() found: removed (its owner is dead) or in use."""

    datadir: str
    owner_pid: int | None
    server_pid: int | None  # the mariadbd using it, if one ran
    removed: bool


def sweep(report_in_use: bool = False) -> list[Left]:
    """Find every throwaway data directory whose owner is dead: stop its server, remove it.

    A `db up` directory is left alone while its server runs (running() and
    down() look after it). Returns what was removed (and, with
    `report_in_use`, the directories still in use too)."""
    found = []
    for path in sorted(Path(tempfile.gettempdir()).glob(DIR_PREFIX + "*")):
        owner = _read_owner(path)
        server = _server_using(path)
        if _in_use(owner, path, server):
            if report_in_use:
                found.append(Left(str(path), owner and owner.get("pid"), server, removed=False))
            continue
        if server is not None:
            _stop(server)
        shutil.rmtree(path, ignore_errors=True)
        log.info("removed %s, left by a run that died (pid %s)", path, owner and owner.get("pid"))
        found.append(Left(str(path), owner and owner.get("pid"), server, removed=True))
    return found


def running() -> Mysqld | None:
    """The `db up` server if its state file names a live one; a dead one's leftovers are removed."""
    with _state_lock():
        return _running_locked()


# -- starting -----------------------------------------------------------------


def _require_binary() -> str:
    binary = find_binary()
    if binary is None:
        raise LabError(
            "no mariadbd or mysqld found on PATH or in /usr/sbin, /usr/local/sbin: "
            "install mariadb-server"
        )
    return binary


def _is_mysql(binary: str) -> bool:
    """Oracle MySQL rather than MariaDB (Debian's /usr/sbin/mysqld is MariaDB, renamed)."""
    out = subprocess.run([binary, "--version"], capture_output=True, text=True, check=False)
    return "mariadb" not in out.stdout.lower()


def _initialise(binary: str, datadir: str) -> None:
    """Create the system tables in `datadir`, with a root account that has no password."""
    if _is_mysql(binary):
        argv = [binary, "--no-defaults", f"--datadir={datadir}", "--initialize-insecure"]
    else:
        argv = [
            _install_db_script(binary),
            "--no-defaults",
            f"--datadir={datadir}",
            # MariaDB's default lets root in only through the unix socket; the
            # lab connects over TCP like a remote client, so use a password (empty).
            "--auth-root-authentication-method=normal",
            "--skip-test-db",
        ]
    # Bootstrap's temporary tables go to /tmp by default under names that two
    # servers initialised at once can share: 7 of 24 such starts failed here with
    # "Unknown table 'mysql.tmp_user_sys'". Its own directory, as the server has.
    argv += [f"--tmpdir={datadir}", *_as_root()]
    done = subprocess.run(argv, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise LabError(f"{Path(argv[0]).name} failed (exit {done.returncode}): {_reason(done)}")


def _reason(done: subprocess.CompletedProcess) -> str:
    """Its first ERROR line: the last is only "[ERROR] Aborting", which says nothing."""
    text = done.stderr or done.stdout
    errors = [line for line in text.splitlines() if "ERROR" in line and "Aborting" not in line]
    return errors[0].strip() if errors else last_line(text)


def _install_db_script(binary: str) -> str:
    """mariadb-install-db sits in bin/ while the server is in sbin/: look beside it too."""
    here = Path(binary).parent
    path = os.pathsep.join([os.environ.get("PATH", ""), str(here), str(here.parent / "bin")])
    for name in INSTALL_DB_NAMES:
        found = shutil.which(name, path=path)
        if found:
            return found
    raise LabError(f"found {binary} but no mariadb-install-db beside it: reinstall mariadb-server")


def _as_root() -> list[str]:
    """mysqld refuses to run as root unless told to; as anyone else it runs as that user."""
    return ["--user=root"] if os.geteuid() == 0 else []


def _server_argv(
    binary: str, datadir: str, port: int, settings: Settings = Settings()
) -> list[str]:
    d = Path(datadir)
    argv = [
        binary,
        "--no-defaults",
        f"--datadir={d}",
        f"--port={port}",
        "--bind-address=127.0.0.1",
        f"--socket={d / 'mysqld.sock'}",
        f"--pid-file={d / 'mysqld.pid'}",
        f"--log-error={d / 'error.log'}",
        f"--tmpdir={d}",  # its temporary tables in its own directory, not the shared /tmp
        "--skip-log-bin",  # a throwaway server needs no replication log
        *settings.argv(),
        *_as_root(),
    ]
    if _is_mysql(binary):
        # MySQL's X Protocol listens on 33060 by default: a second server would clash.
        argv.append("--mysqlx=OFF")
    return argv


def _free_port() -> int:
    """A port the kernel just gave out. Another process may take it before the server
    binds it; the server then exits with 'Address already in use', reported as a LabError."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


_LAUNCHER = """\
import subprocess, sys
p = subprocess.Popen(sys.argv[1:], start_new_session=True, stdin=subprocess.DEVNULL,
                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
print(p.pid)
"""


# PR_SET_PDEATHSIG survives execve (prctl(2)); the parent may have died before
# the prctl, so the launcher then checks it still has the parent it was given.
_WITH_PARENT = """\
import ctypes, os, signal, sys
ctypes.CDLL(None).prctl(1, signal.SIGKILL, 0, 0, 0)
if os.getppid() != int(sys.argv[1]):
    sys.exit("daemonlab: the process that started this server is gone")
os.execv(sys.argv[2], sys.argv[2:])
"""


def _dies_with_parent(argv: list[str]) -> list[str]:
    """argv run so that the kernel KILLs it when this process dies (see the header).

    The kernel sends the signal when the *thread* that started the child
    exits, so a throwaway server must be started by a thread that outlives
    it: the lab starts it from the thread that runs the experiment.
    """
    return [sys.executable, "-c", _WITH_PARENT, str(os.getpid()), *argv]


def _launch_detached(argv: list[str]) -> int:
    """Start argv in its own session as init's child (see the header), return its pid."""
    out = subprocess.run(
        [sys.executable, "-c", _LAUNCHER, *argv], capture_output=True, text=True, check=True
    )
    return int(out.stdout)


def _wait_until_ready(pid: int, port: int, datadir: str) -> None:
    """Poll until the server answers, then create database `test`; bounded by START_TIMEOUT_S."""
    import pymysql

    deadline = time.monotonic() + START_TIMEOUT_S
    while True:
        if not _alive(pid):
            raise LabError(f"the throwaway server exited during start-up: {_last_error(datadir)}")
        try:
            conn = pymysql.connect(
                host="127.0.0.1",
                port=port,
                user="root",
                password="",
                connect_timeout=1,
                read_timeout=1,  # connect_timeout does not bound waiting for the greeting
                ssl_disabled=True,
            )
            break
        except pymysql.err.OperationalError:
            if time.monotonic() > deadline:  # the caller stops it and deletes datadir
                raise LabError(
                    f"the throwaway server did not answer within {START_TIMEOUT_S:.0f} s: "
                    f"{_last_error(datadir)}"
                ) from None
            time.sleep(POLL_S)
    with contextlib.closing(conn), conn.cursor() as cur:
        cur.execute("CREATE DATABASE IF NOT EXISTS test")


def _alive(pid: int) -> bool:
    """True while the process runs; an exited child (zombie) counts as gone."""
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def _last_error(datadir: str) -> str:
    """The last [ERROR] line of the server's log: usually the reason it stopped."""
    try:
        lines = (Path(datadir) / "error.log").read_text(errors="replace").splitlines()
    except FileNotFoundError:
        return "no error log"
    errors = [line for line in lines if "[ERROR]" in line]
    return (errors or lines or ["empty error log"])[-1].strip()


# -- stopping -----------------------------------------------------------------


def _stop(pid: int) -> None:
    """TERM, a grace period, KILL, wait (lab.children): a `db up` server is init's
    child, and its zombie, already gone from its port and files, counts as stopped."""
    children.stop_process(pid, STOP_GRACE_S)


# -- who owns a data directory ------------------------------------------------


def _new_datadir(kind: str) -> str:
    """A fresh data directory, `DIR_PREFIX*/data`, with the owner file beside it.

    Beside, not inside: MySQL's --initialize refuses a data directory that
    holds any file. The owner file is written first thing (see sweep)."""
    top = Path(tempfile.mkdtemp(prefix=DIR_PREFIX))
    me = psutil.Process()
    owner = {"kind": kind, "pid": me.pid, "created": me.create_time(), "argv": sys.argv[:3]}
    (top / OWNER_FILE).write_text(json.dumps(owner))
    (top / "data").mkdir()
    return str(top / "data")


def _read_owner(path: Path) -> dict | None:
    try:
        owner = json.loads((path / OWNER_FILE).read_text())
    except (OSError, ValueError):
        return None
    return owner if isinstance(owner, dict) else None


def _in_use(owner: dict | None, path: Path, server: int | None) -> bool:
    """Is the directory still someone's? A throwaway's: while the pid that made it
    runs (the same process, not a reuse of its pid). A `db up` server's: while
    its server runs. One without an owner file: while it is young."""
    if owner is None or owner.get("kind") == "db up":
        if server is not None:
            return True
        try:
            return time.time() - path.stat().st_mtime < UNOWNED_GRACE_S
        except FileNotFoundError:
            return True  # removed under us: nothing to do
    try:
        proc = psutil.Process(int(owner["pid"]))
        # create_time is read from /proc in 1/100 s ticks: compare loosely.
        return abs(proc.create_time() - float(owner["created"])) < 1 and _alive(proc.pid)
    except (psutil.NoSuchProcess, KeyError, TypeError, ValueError):
        return False


def _server_using(top: Path) -> int | None:
    """The pid of the mariadbd/mysqld whose --datadir is in `top`, if one runs
    (`top/data`; an older lab used `top` itself)."""
    flags = {f"--datadir={top / 'data'}", f"--datadir={top}"}
    for proc in psutil.process_iter(["name", "cmdline"]):
        try:
            if proc.info["name"] in SERVER_NAMES and flags & set(proc.info["cmdline"] or ()):
                return proc.pid
        except psutil.Error:
            continue
    return None


# -- the `db up` state file ---------------------------------------------------


@contextlib.contextmanager
def _state_lock() -> Iterator[None]:
    """Serialise up/down/running across processes, so two `db up` start one server.

    The lock is on a separate file: the state file itself is replaced, not rewritten."""
    lock_path = state_path().with_suffix(".lock")
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    with open(lock_path, "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes
        yield


def _running_locked() -> Mysqld | None:
    srv = _read_state()
    if srv is None:
        return None
    if _is_ours(srv):
        return srv
    log.warning("the `db up` server (pid %d) is gone: removing %s", srv.pid, srv.datadir)
    _forget(srv)
    return None


def _read_state() -> Mysqld | None:
    try:
        srv = Mysqld(**json.loads(state_path().read_text()))
    except FileNotFoundError:
        return None
    except (ValueError, TypeError, OSError) as exc:  # torn, hand-edited, a directory
        raise LabError(f"{state_path()} is not a daemonlab state file ({exc}): delete it") from None
    # The right keys with the wrong kinds of value (a pid in quotes) would reach
    # os.kill as they are: a file of that shape is no state file of ours either.
    kinds = {"binary": str, "datadir": str, "port": int, "pid": int}
    wrong = [key for key, kind in kinds.items() if type(getattr(srv, key)) is not kind]
    if wrong:
        raise LabError(f"{state_path()} is not a daemonlab state file (bad {', '.join(wrong)})")
    return srv


def _write_state(srv: Mysqld) -> None:
    """Write-then-rename, so a reader sees the old file or the new one, never half of one."""
    path = state_path()
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(asdict(srv)))
    os.replace(tmp, path)


def _is_ours(srv: Mysqld) -> bool:
    """The pid runs, and it is our server, not a newer process that reused the pid."""
    if not _alive(srv.pid):
        return False
    try:
        return f"--datadir={srv.datadir}" in psutil.Process(srv.pid).cmdline()
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return False


def _forget(srv: Mysqld) -> None:
    """Delete the server's directory and the state file."""
    _remove(srv.datadir)
    state_path().unlink(missing_ok=True)


def _remove(datadir: str) -> None:
    """Delete a data directory and its `DIR_PREFIX*` parent: only ever one of ours."""
    top = Path(datadir).parent
    if top.name.startswith(DIR_PREFIX):
        shutil.rmtree(top, ignore_errors=True)
