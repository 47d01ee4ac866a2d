"""daemonize: becoming a daemon, step by step, read from outside.

The talk's daemonizing slide (fork, setsid, fork, chdir, umask, change user,
pidfile, close the standard streams), run for real: a child script becomes a
daemon with lab.daemon.steps.launch (the order of `man 7 daemon`) and pauses
after every step on a pipe handshake while this process reads it through
/proc: pid, ppid, process group, session, controlling terminal, cwd, umask,
uid/gid and open descriptors. The same is done to python-daemon's
DaemonContext (PEP 3143) for a side-by-side table: its order differs, its
umask defaults to 0, and its launcher exits at the first fork, before the
pidfile exists.

This process is a child subreaper (prctl 36) while it watches, so that the
orphaned daemon is re-parented here and reaped at once; the table shows it
(ppid, with --wide). Without one the ppid would read 1, and PID 1 would reap it.

Reading map, in order:
    slide.py             the slide: the steps in one function, and what goes wrong with them
    lab/daemon/steps.py  the steps themselves, one function each (the lab's daemon)
    probe.py             the daemon being watched: it pauses after every step
    observe.py           reading a process from outside through /proc
    plot.py              the steps as a process timeline, one panel per implementation
"""

from __future__ import annotations

import os
import pwd
import select
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

from lab import children
from lab.daemon.steps import STEPS
from lab.errors import LabError
from lab.experiments.daemonize.observe import observe
from lab.params import Params as _Params
from lab.params import option
from lab.procfs import subreaper
from lab.report import Column
from lab.runs import Run, Session, collect

__all__ = ["COLUMNS", "FULL", "NAME", "SUMMARY", "TOUR", "Params", "run"]

NAME = "daemonize"
SUMMARY = "becoming a daemon step by step (lab vs python-daemon), read from /proc"

IMPLS = ("lab", "python-daemon")
PROBE = "lab.experiments.daemonize.probe"
#: The longest one step may take before the probe is declared stuck.
STEP_TIMEOUT = 20.0


@dataclass(frozen=True)
class Params(_Params):
    impl: tuple[str, ...] = option(IMPLS, "which daemonizing code to watch", choices=IMPLS)
    # Not called user/umask: those are the harness's own options (daemon start --user).
    run_as: str = option("", "when root: drop to this user (e.g. nobody); empty: stay")
    mask: str = option("022", "the umask the lab's daemon sets (octal; python-daemon keeps 0)")
    dwell: float = option(0.0, "seconds to hold each step, to watch it with ps", minimum=0)

    def __post_init__(self) -> None:
        super().__post_init__()
        from lab.daemon.config import parse_umask
        from lab.daemon.steps import user_ids

        parse_umask(self.mask)
        user_ids(self.run_as or None)
        if "python-daemon" in self.impl and PYTHON_DAEMON == "missing":
            raise LabError(
                "python-daemon is not installed: pip install python-daemon, or --impl lab"
            )


FULL: dict[str, Any] = {"dwell": 0.5}

#: One table per implementation (a record's `part` is its impl): what changes at each
#: step first (pid at each fork, sid at setsid, tty, cwd, umask, the launcher's fate).
_STEP_COLUMNS = [
    Column("step", "step"),
    Column("pid", "pid", "d"),
    Column("sid", "sid", "d"),
    Column("tty", "tty"),
    Column("cwd", "cwd"),
    Column("umask", "umask"),
    Column("launcher", "launcher"),
    Column("process", "process", wide=True),
    Column("ppid", "ppid", "d", wide=True),
    Column("pgid", "pgid", "d", wide=True),
    Column("uid", "uid", "d", wide=True),
    Column("gid", "gid", "d", wide=True),
    Column("fds", "fds", wide=True),
    Column("at_ms", "at ms", ".1f", wide=True),
]
COLUMNS = {impl: _STEP_COLUMNS for impl in IMPLS}

TOUR = [
    (
        "A daemon is a process with no terminal, no parent that waits for it, and "
        "nothing of the shell that started it. Here a child script goes through "
        "`man 7 daemon`'s steps one by one and stops after each, while the lab reads "
        "it from **/proc**. Watch `pid` change at each fork, `sid` become the pid at "
        "setsid, and the daemon end up *not* a session leader, with no tty, in /, "
        "umask 0022; `--wide` adds its descriptors: 0-2 on /dev/null and the log, and "
        "the pidfile open.",
        {"impl": ["lab"]},
    ),
    (
        "python-daemon's DaemonContext does the same in another order: umask (0 by "
        "default!), chdir, privileges, then detaches, and takes the pidfile last. "
        "Its launcher exits 0 at the first fork: whatever fails afterwards, the shell "
        "was already told all is well.",
        {"impl": ["python-daemon"]},
    ),
]


def _python_daemon_version() -> str:
    try:
        return version("python-daemon")
    except PackageNotFoundError:
        return "missing"


#: Read once, at import: importlib.metadata loads more of the standard library
#: than a daemon that dropped privileges may still be able to read.
PYTHON_DAEMON = _python_daemon_version()


def run(params: Params = Params(), progress=None, sink=None) -> Run:
    return collect(NAME, params, _measure, progress=progress, sink=sink)


#: How many steps each implementation reports (the progress bar's total): the lab's
#: are lab.daemon.steps.STEPS; python-daemon's, as probe.py wraps DaemonContext.
STEP_COUNTS = {"lab": len(STEPS), "python-daemon": 11}


def _measure(params: Params, session: Session) -> Iterator[dict[str, Any]]:
    session.env["observer_pid"] = os.getpid()
    session.env["python_daemon"] = PYTHON_DAEMON
    _remove_stale_run_dirs()
    total, done = sum(STEP_COUNTS[impl] for impl in params.impl), 0
    session.step(done, total, "starting")
    with subreaper() as adopted:
        session.env["subreaper"] = adopted
        for impl in params.impl:
            for record in _watch(impl, params):
                done += 1
                # The pid to watch while the step is held (--dwell): `ps -jf -p PID`.
                pid = record["pid"]
                session.step(done, total, f"{impl}: {record['step']}, pid {pid} (ps -jf -p {pid})")
                yield record
    session.step(done, total, "done")


@dataclass
class _Probe:
    """One watched daemon: the launcher process, the pipes, every pid it became."""

    launcher: subprocess.Popen
    report_fd: int
    go_fd: int
    pids: list[int]
    names: dict[str, str]


#: A watched daemon's folder: /tmp/dzXXXXXXXX, short because the table's cwd column
#: shows it; OWNER inside names the observer that made it (and removes it when done).
RUN_DIR_PREFIX, OWNER = "dz", "observer.pid"


def _remove_stale_run_dirs() -> None:
    """Remove the folders of observers that died without their finally (kill -9).

    A run's own folder goes in _watch's finally; only a KILL, which no finally
    survives, leaves one behind. Its owner's pid says it: gone, the folder is
    nobody's, and the next run takes it away.
    """
    for folder in Path(tempfile.gettempdir()).glob(f"{RUN_DIR_PREFIX}*"):
        try:
            owner = int((folder / OWNER).read_text())
            os.kill(owner, 0)  # signal 0: only "is it there?"
        except ProcessLookupError:
            shutil.rmtree(folder, ignore_errors=True)
        except (OSError, ValueError):
            continue  # not ours (no owner file), or its owner lives (or is not ours to ask)


def _watch(impl: str, params: Params) -> Iterator[dict[str, Any]]:
    run_dir = Path(tempfile.mkdtemp(prefix=RUN_DIR_PREFIX))
    probe: _Probe | None = None
    try:
        (run_dir / OWNER).write_text(f"{os.getpid()}\n")
        os.chmod(run_dir, 0o755)
        if params.run_as and os.geteuid() == 0:
            # Like systemd's RuntimeDirectory=: the daemon's own folder is the
            # user's, so python-daemon (which drops privileges before taking its
            # pidfile) can create its pidfile at all.
            entry = pwd.getpwnam(params.run_as)
            os.chown(run_dir, entry.pw_uid, entry.pw_gid)
        probe = _start(impl, params, run_dir)
        began = time.perf_counter_ns()
        for number, (step, pid) in enumerate(_steps(probe), 1):
            facts = observe(pid, probe.names)
            if pid not in probe.pids:
                probe.pids.append(pid)
            if step == "ready":
                # The lab's launcher exits the moment it reads READY: give it that moment.
                try:
                    probe.launcher.wait(timeout=STEP_TIMEOUT)
                except subprocess.TimeoutExpired:
                    pass
            code = probe.launcher.poll()
            yield {
                "part": impl,  # one table per implementation
                "impl": impl,
                "step_no": number,
                "step": step,
                "process": ("launcher", "child", "daemon")[min(probe.pids.index(pid), 2)],
                **facts,
                "launcher": "waiting" if code is None else f"exited {code}",
                "at_ms": round((time.perf_counter_ns() - began) / 1e6, 3),
            }
            if params.dwell:
                time.sleep(params.dwell)
            os.write(probe.go_fd, b"g")
        code = probe.launcher.wait(timeout=STEP_TIMEOUT)
        if impl == "lab" and code != 0:
            raise LabError(f"the lab's launcher exited {code}: see {run_dir}")
    finally:
        if probe is not None:
            _clean_up(probe)
        shutil.rmtree(run_dir, ignore_errors=True)


def _start(impl: str, params: Params, run_dir: Path) -> _Probe:
    report_r, report_w = os.pipe2(os.O_CLOEXEC)
    go_r, go_w = os.pipe2(os.O_CLOEXEC)
    pidfile, log = run_dir / "daemon.pid", run_dir / "daemon.log"
    names = {str(pidfile): "pidfile", str(log): "log"}
    for fd in (report_r, report_w, go_r, go_w):
        names[os.readlink(f"/proc/self/fd/{fd}")] = "probe"
    argv = children.main_argv(PROBE, impl, str(report_w), str(go_r), str(pidfile))
    argv += [str(log), params.mask, params.run_as]
    try:
        with open(run_dir / "launcher.err", "w") as err:
            launcher = subprocess.Popen(
                argv,
                pass_fds=(report_w, go_r),
                stdin=subprocess.DEVNULL,
                stdout=err,
                stderr=err,
                cwd=run_dir,  # so that "chdir /" shows
                env={**os.environ, "PYTHONPATH": _import_path()},
            )
    except BaseException:
        for fd in (report_r, report_w, go_r, go_w):
            os.close(fd)
        raise
    os.close(report_w)
    os.close(go_r)
    return _Probe(launcher, report_r, go_w, [launcher.pid], names)


def _import_path() -> str:
    """This checkout first, so the probe runs the same lab as the observer."""
    from lab.interpreters import SOURCE_ROOT

    return os.pathsep.join(filter(None, [SOURCE_ROOT, os.environ.get("PYTHONPATH")]))


def _steps(probe: _Probe) -> Iterator[tuple[str, int]]:
    """(step, pid) lines from the probe until it closes the pipe; errors become LabError."""
    buffer = b""
    while True:
        while b"\n" not in buffer:
            ready, _, _ = select.select([probe.report_fd], [], [], STEP_TIMEOUT)
            if not ready:
                raise LabError(f"the daemon being watched stalled for {STEP_TIMEOUT:g}s")
            chunk = os.read(probe.report_fd, 4096)
            if not chunk:
                return
            buffer += chunk
        line, buffer = buffer.split(b"\n", 1)
        step, pid, *why = line.decode().split("\t")
        if step == "error":
            raise LabError(f"the watched daemon failed: {why[0] if why else '?'}")
        yield step, int(pid)


def _clean_up(probe: _Probe) -> None:
    """Close the pipes (a paused process then leaves by itself), then stop every pid seen.

    With the subreaper on, the daemon is ours once its parent has exited; the
    middle child is its launcher's to reap. lab.children.stop_process handles both.
    """
    for fd in (probe.report_fd, probe.go_fd):
        os.close(fd)
    for pid in probe.pids[1:]:
        children.stop_process(pid, grace=2.0, patience=2.0)
    children.stop_popen(probe.launcher, grace=0.0)
