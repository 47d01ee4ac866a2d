"""The run of the daemonize lesson: a daemon started, watched step by step, taken away.

`measure` is what run() hands to lab.runs.collect. For each implementation it
starts probe.py as a launcher with two pipes, reads each step's "STEP PID"
line, reads that pid through /proc (observe.py) while the process waits on
the go pipe, and yields one record per step; then it closes the pipes, stops
every pid the daemon was, and removes the daemon's folder.
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
from typing import TYPE_CHECKING, Any

from lab import children
from lab.daemon.steps import STEPS
from lab.errors import LabError
from lab.experiments.daemonize.observe import observe
from lab.procfs import proc_stat, subreaper
from lab.runs import Session

if TYPE_CHECKING:  # the lesson imports this module as it loads: Params is not yet there
    from lab.experiments.daemonize import Params

__all__ = ["OWNER", "PYTHON_DAEMON", "RUN_DIR_PREFIX", "STEP_COUNTS", "measure"]

PROBE = "lab.experiments.daemonize.probe"
#: The longest one step may take before the probe is declared stuck.
STEP_TIMEOUT = 20.0


def _python_daemon_version() -> str:
    try:
        return version("python-daemon")
    except PackageNotFoundError:
        return "missing"


#: Read once, at import: importlib.metadata loads more of the standard library
#: than a daemon that dropped privileges may still be able to read.
PYTHON_DAEMON = _python_daemon_version()


#: How many steps each implementation reports (the progress bar's total): the lab's
#: are lab.daemon.steps.STEPS; python-daemon's, as probe.py wraps DaemonContext.
STEP_COUNTS = {"lab": len(STEPS), "python-daemon": 11}


def measure(params: Params, session: Session) -> Iterator[dict[str, Any]]:
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
    survives, leaves one behind. Its owner file names the observer by pid and
    start time: a pid alone could name a later process (pids are reused), and
    the folder would then stay until that one ended.
    """
    for folder in Path(tempfile.gettempdir()).glob(f"{RUN_DIR_PREFIX}*"):
        try:
            pid, *start = (int(word) for word in (folder / OWNER).read_text().split())
        except (OSError, ValueError):
            continue  # not ours: no owner file, or not one we wrote
        stat = proc_stat(pid)
        if stat is None or start and stat["starttime"] != start[0]:
            shutil.rmtree(folder, ignore_errors=True)


def _owner() -> str:
    """This process, as _remove_stale_run_dirs reads it: its pid and its start time."""
    return f"{os.getpid()} {proc_stat()['starttime']}\n"


def _watch(impl: str, params: Params) -> Iterator[dict[str, Any]]:
    run_dir = Path(tempfile.mkdtemp(prefix=RUN_DIR_PREFIX))
    probe: _Probe | None = None
    try:
        (run_dir / OWNER).write_text(_owner())
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
