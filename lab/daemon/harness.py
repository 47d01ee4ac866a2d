"""The harness: a daemon that runs the lab's experiments on a schedule.

Its main loop waits for the next scheduled run or a signal, whichever comes
first; signals are only recorded by their handlers (signals.py) and acted on
here, one `handle_<signal>` method each. What the loop promises about a
storm of them (DISPATCH_ORDER): each look at the wakeup pipe acts on each
signal once, and on HUP before USR1, so a status asked after a reload was
asked shows that reload. Records go to the results store as
the experiment yields them (lab.runs.collect with the store as sink), so a
notebook can plot what the harness measured overnight.

Why each run happens in a forked child of the harness:
- TERM must interrupt the experiment *and* get its finished records stored as
  "interrupted". In the child, TERM raises SystemExit inside the experiment,
  and lab.runs.collect marks the run interrupted on its way out. Raising in
  the harness itself would mean an exception leaving the main loop from a
  signal handler, exactly what "handlers only record" forbids.
- The harness must answer status, HUP and USR1 while a run is busy, maybe
  for minutes in one long C call that would delay a Python handler.
- Each child opens its own SQLite connection: connections must not cross
  fork, and a crash in an experiment (or a kill -9 of it) tears nothing the
  harness holds. Every record is committed as it comes, in WAL mode.
- The child leads its own process group, so a stop that must escalate to
  KILL reaches whatever the experiment itself started.
Runs happen one at a time: they measure the machine, and two at once would
distort both.
"""

from __future__ import annotations

import json
import logging
import os
import pwd
import signal
import stat
import time
import traceback
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any

# Imported here, not lazily: after dropping to an unprivileged user the
# interpreter's own library may not be readable (a root-only pyenv in /root).
import lab.env  # noqa: F401
import lab.results.sqlite  # noqa: F401 - the store's backend, and sqlite3 with it
import lab.runs  # noqa: F401
from lab import children, experiments, states
from lab.daemon import config as config_mod
from lab.daemon import sdnotify
from lab.daemon.signals import SignalWakeup
from lab.daemon.steps import open_log
from lab.errors import LabError
from lab.results import ResultsStore, open_store
from lab.runs import Status, failed_run

__all__ = [
    "DISPATCH_ORDER",
    "MOVES",
    "Harness",
    "State",
    "in_dispatch_order",
    "prepare_files",
]

log = logging.getLogger("lab.daemon.harness")

# Exit codes of a run's child: they mean something to the harness.
EXIT_OK = 0
EXIT_FAILED = 1  # the experiment raised, or refused its params
EXIT_INTERRUPTED = 3  # TERM arrived during the run: stored as interrupted
EXIT_NOT_BEGUN = 4  # TERM arrived before the run began: nothing to store, nothing counted

#: How long the harness waits for an interrupted run to store and exit, then KILLs it.
STOP_GRACE = 10.0
#: The longest the loop sleeps without looking around (a lost SIGCHLD byte costs this).
MAX_WAIT = 5.0
#: The order the signals of one look at the wakeup pipe are acted on, each once.
#: Once: a standard signal pending twice is delivered once anyway, and one reload
#: or one status answer serves every HUP or USR1 of the batch. HUP before USR1:
#: when both are pending, Linux sets up both handlers' frames at one return to
#: user space and the one set up last, USR1's (the higher number), runs first, so
#: its byte comes first in the pipe (HUP and USR1 raised while blocked, then
#: unblocked, on Linux 6 here: the pipe reads [10, 1]); in pipe order, a storm of HUP and USR1 was
#: seen to answer 427 status requests with 0 reloads, and `daemon status` right
#: after `kill -HUP` read reloads=0. Both bytes are in the pipe before the loop
#: runs again (the handlers run before any of its code), so they share a batch.
#: CHLD first, so a status answer counts a run that just ended.
DISPATCH_ORDER = (signal.SIGCHLD, signal.SIGHUP, signal.SIGUSR1, signal.SIGTERM, signal.SIGINT)


class State(StrEnum):
    """Where the harness is, as its status file says it (`daemonlab daemon status`)."""

    RUNNING = "running"
    STOPPING = "stopping"
    STOPPED = "stopped"


#: Every move the harness's state may make (Harness.move refuses any other).
MOVES = {
    # RUNNING -> STOPPING: TERM or INT (handle_term): the run in hand is interrupted
    (State.RUNNING, State.STOPPING),
    # STOPPING -> STOPPED: the run in hand has ended (or there was none): serve returns
    (State.STOPPING, State.STOPPED),
    # RUNNING -> STOPPED: serve left on an error (the store refused at start, a bug)
    (State.RUNNING, State.STOPPED),
}


@dataclass
class Running:
    """The run in progress: its child, and the pipe on which it says why it failed."""

    pid: int
    job: config_mod.Job
    since: float
    error_fd: int


@dataclass
class Harness:
    config: config_mod.Config
    started: float = field(default_factory=time.monotonic)
    started_at: str = field(default_factory=lambda: time.strftime("%Y-%m-%dT%H:%M:%S%z"))
    runs_done: int = 0
    runs_failed: int = 0
    running: Running | None = None
    last_error: str | None = None
    reloads: int = 0
    last_reload: str | None = None
    answers: int = 0
    state: State = State.RUNNING
    stop_deadline: float | None = None
    due: dict[int, float] = field(default_factory=dict)
    wakeup: SignalWakeup | None = None

    # -- the main loop --------------------------------------------------------------
    def serve(self, ready: Callable[[], None]) -> int:
        """Run until TERM/INT. `ready()` tells the launcher (or systemd) we are up."""
        self.wakeup = SignalWakeup()
        try:
            with open_store(self.config.results):  # usable by us, now, or refuse to start
                pass
            self.due = {i: self.started for i in range(len(self.config.jobs))}
            self.write_status()
            log.info("started: pid %d, %s", os.getpid(), self._describe_jobs())
            ready()
            sdnotify.notify("READY=1")
            while self.state is State.RUNNING or self.running is not None:
                self._maybe_start_run()
                for sig in in_dispatch_order(self.wakeup.wait(self._timeout())):
                    getattr(self, "handle_" + sig.name[3:].lower())()
                self.reap_children()  # also when a SIGCHLD byte was lost to a full pipe
                self._escalate_stop()
            log.info("stopped: %s", self._tally())
            return 0
        finally:
            self.wakeup.close()
            self.move(State.STOPPED)
            self.write_status()

    def move(self, state: State) -> None:
        """Change state (one of MOVES)."""
        self.state = states.check(MOVES, self.state, state, "the harness")

    def _timeout(self) -> float:
        if self.stop_deadline is not None:
            return max(0.0, min(MAX_WAIT, self.stop_deadline - time.monotonic()))
        if self.running is not None or self.state is not State.RUNNING or not self.due:
            return MAX_WAIT
        return max(0.0, min(MAX_WAIT, min(self.due.values()) - time.monotonic()))

    def _maybe_start_run(self) -> None:
        if self.state is not State.RUNNING or self.running is not None or not self.due:
            return
        index = min(self.due, key=self.due.__getitem__)
        now = time.monotonic()
        if self.due[index] > now:
            return
        job = self.config.jobs[index]
        # Fixed rate from each run's start; a run that overran is not made up for.
        self.due[index] = max(self.due[index] + job.every, now)
        try:
            self.start_run(job)
        except OSError as exc:  # fork or pipe refused (EAGAIN, EMFILE): try at the next turn
            self.runs_failed += 1
            self.last_error = f"{job.experiment}: cannot start: {exc}"
            log.error("run %s not started: %s", job.experiment, exc)

    # -- a run, in its own child ------------------------------------------------------
    def start_run(self, job: config_mod.Job) -> None:
        """Fork the child that runs `job` (fork discipline: the parent returns at once)."""
        assert self.wakeup is not None
        err_r, err_w = os.pipe2(os.O_CLOEXEC)
        # Block our signals across fork: in the window before the child has its own
        # handlers, a TERM meant for the child would be written into the wakeup pipe
        # it shares with us, and the harness would think *it* was told to stop.
        previous = signal.pthread_sigmask(signal.SIG_BLOCK, self.wakeup.signals)
        try:
            pid = os.fork()
        except OSError:
            signal.pthread_sigmask(signal.SIG_SETMASK, previous)
            os.close(err_r)
            os.close(err_w)
            raise
        if pid:
            os.close(err_w)
            signal.pthread_sigmask(signal.SIG_SETMASK, previous)
            try:
                os.setpgid(pid, pid)  # the child does it too: whoever runs first wins the race
            except (PermissionError, ProcessLookupError):
                pass  # the child already did it (EACCES after its exec) or is gone
            self.running = Running(pid, job, time.monotonic(), err_r)
            log.info("run %s started in pid %d", job.experiment, pid)
            self.write_status()
            return
        code = EXIT_FAILED
        try:
            os.close(err_r)
            os.setpgid(0, 0)
            self.wakeup.close()  # our signals are ours again, not the harness's pipe's
            signal.signal(signal.SIGTERM, _interrupt_run)
            signal.signal(signal.SIGINT, signal.default_int_handler)
            signal.pthread_sigmask(signal.SIG_SETMASK, previous)
            code = _run_job(job, self.config.results, err_w)
        finally:
            os._exit(code)

    def reap_children(self) -> None:
        """Reap every child that ended (lab.children.reap_all: waitpid(-1, WNOHANG) until 0)."""
        for pid, code in children.reap_all():
            if self.running is not None and pid == self.running.pid:
                self._run_ended(code)

    def _run_ended(self, code: int) -> None:
        running = self.running
        assert running is not None
        why = _read_waiting(running.error_fd).strip()
        os.close(running.error_fd)
        # A run leads its own process group: whatever it started and left behind
        # goes with it, as it would under a supervisor's stopasgroup (a grandchild
        # that called setsid is in no group, and out of anyone's reach but a cgroup).
        children.signal_group(running.pid, signal.SIGKILL)
        self.running = None
        took = time.monotonic() - running.since
        name = running.job.experiment
        if code == EXIT_OK:
            self.runs_done += 1
            log.info("run %s finished in %.1fs", name, took)
        elif code == EXIT_INTERRUPTED:
            self.runs_done += 1
            log.info("run %s interrupted after %.1fs: stored as interrupted", name, took)
        elif code == EXIT_NOT_BEGUN:
            # Counted as done, it made runs_done one more than the runs stored (seen in
            # the HUP/USR1 storm test, whose stop can come as a run is forked).
            log.info("run %s stopped before it began: nothing stored", name)
        else:
            self.runs_failed += 1
            how = f"killed by {signal.Signals(-code).name}" if code < 0 else f"exit {code}"
            self.last_error = f"{name}: {why or how}"
            log.error("run %s failed (%s): %s", name, how, why or "see above")
        self.write_status()

    def _escalate_stop(self) -> None:
        """TERM, a grace period, a log line, KILL (of the run's whole group), then wait."""
        if self.running is None or self.stop_deadline is None:
            return
        if time.monotonic() < self.stop_deadline:
            return
        log.warning("run %s ignored TERM for %.0fs: KILL", self.running.job.experiment, STOP_GRACE)
        children.signal_group(self.running.pid, signal.SIGKILL)
        self.stop_deadline = None  # the SIGCHLD that follows ends the loop

    # -- signals: one handler each, called from the main loop, never from the signal --
    def handle_term(self) -> None:
        """SIGTERM: stop gracefully. The running experiment is interrupted (its finished
        records stay stored, marked interrupted), then the harness exits 0."""
        if self.state is not State.RUNNING:
            return
        self.move(State.STOPPING)
        sdnotify.notify("STOPPING=1")
        log.info("stop requested")
        if self.running is not None:
            os.kill(self.running.pid, signal.SIGTERM)
            self.stop_deadline = time.monotonic() + STOP_GRACE
        self.write_status()

    def handle_int(self) -> None:
        """SIGINT (Ctrl-C in --foreground): the same graceful stop as TERM."""
        self.handle_term()

    def handle_hup(self) -> None:
        """SIGHUP: reload the configuration file. A bad one is refused and logged;
        the old configuration keeps running."""
        self.reloads += 1
        source = self.config.source
        if source is None:
            self.last_reload = "nothing to reload: started without --config"
            log.info("reload: %s", self.last_reload)
        else:
            try:
                new = config_mod.load(
                    source,
                    foreground=self.config.log is None,
                    launch_dir=self.config.launch_dir,
                )
            except Exception as exc:  # LabError, or an experiment module that no longer imports
                self.last_reload = f"refused, old config kept: {exc}"
                self.last_error = f"reload: {exc}"
                log.error("reload %s", self.last_reload)
            else:
                self._adopt(new)
        self.write_status()

    def _adopt(self, new: config_mod.Config) -> None:
        fixed = ("pidfile", "log", "results", "user", "umask")
        ignored = [k for k in fixed if getattr(new, k) != getattr(self.config, k)]
        old_due = {job: self.due.get(i) for i, job in enumerate(self.config.jobs)}
        now = time.monotonic()
        self.due = {i: old_due.get(job) or now for i, job in enumerate(new.jobs)}
        kept = {k: getattr(self.config, k) for k in (*fixed, "launch_dir")}
        self.config = config_mod.Config(new.jobs, source=new.source, **kept)
        note = f" ({', '.join(ignored)} changed: needs a restart)" if ignored else ""
        self.last_reload = "ok" + note
        if self.last_error and self.last_error.startswith("reload: "):
            self.last_error = None  # the config that was refused is no longer the one in force
        log.info("reloaded %s: %s%s", new.source, self._describe_jobs(), note)

    def handle_usr1(self) -> None:
        """SIGUSR1: reopen the log (after logrotate moved it) and answer status."""
        if self.config.log is not None:
            try:
                fd = open_log(str(self.config.log))
            except LabError as exc:  # keep writing to the old file rather than die
                self.last_error = f"log: {exc}"
                log.error("cannot reopen the log, still writing the old one: %s", exc)
            else:
                os.dup2(fd, 1)
                os.dup2(fd, 2)
                os.close(fd)
        self.answers += 1
        status = self.write_status()
        running = status["running"]["experiment"] if status["running"] else "nothing"
        log.info("status: up %.0fs, %s, running %s", status["uptime_s"], self._tally(), running)

    def handle_chld(self) -> None:
        """SIGCHLD: a run's child ended; reap it (and anything else that ended)."""
        self.reap_children()

    # -- status, as the daemon itself says it -----------------------------------------
    def write_status(self) -> dict[str, Any]:
        """Write the status file atomically (rename), so a reader never sees half of it."""
        now = time.monotonic()
        running = None
        if self.running is not None:
            running = {
                "experiment": self.running.job.experiment,
                "pid": self.running.pid,
                "for_s": round(now - self.running.since, 3),
            }
        status = {
            "pid": os.getpid(),
            "state": self.state.value,
            "started": self.started_at,
            "uptime_s": round(now - self.started, 3),
            "runs_done": self.runs_done,
            "runs_failed": self.runs_failed,
            "running": running,
            "last_error": self.last_error,
            "reloads": self.reloads,
            "last_reload": self.last_reload,
            "answers": self.answers,
            "jobs": [
                {
                    "experiment": job.experiment,
                    "every_s": job.every,
                    "next_in_s": round(self.due.get(i, now) - now, 3),
                }
                for i, job in enumerate(self.config.jobs)
            ],
            "config": str(self.config.source) if self.config.source else None,
            "log": str(self.config.log) if self.config.log else None,
            "results": str(self.config.results),
            "uid": os.getuid(),
        }
        path = self.config.status
        tmp = path.with_name(path.name + ".tmp")
        try:
            tmp.write_text(json.dumps(status, indent=2) + "\n")
            os.replace(tmp, path)
        except OSError as exc:  # a full disk must not kill the harness; `status` will time out
            log.error("cannot write status %s: %s", path, exc)
        return status

    def _tally(self) -> str:
        """ "1 run done, 0 failed" / "3 runs done, 1 failed" """
        return f"{_count(self.runs_done, 'run')} done, {self.runs_failed} failed"

    def _describe_jobs(self) -> str:
        return ", ".join(f"{j.experiment} every {j.every:g}s" for j in self.config.jobs)


# -- in the run's child ------------------------------------------------------------------
def in_dispatch_order(batch: list[signal.Signals]) -> list[signal.Signals]:
    """The signals of one batch, each once, in DISPATCH_ORDER."""
    return [sig for sig in DISPATCH_ORDER if sig in batch]


def _interrupt_run(signum: int, frame: object) -> None:
    """TERM in a run's child: leave the experiment; collect() stores it as interrupted.

    This handler raises on purpose, unlike the harness's: the child has no main
    loop to come back to, and unwinding the experiment is exactly the goal.
    """
    raise SystemExit(EXIT_INTERRUPTED)


def _run_job(job: config_mod.Job, results: Path, err_fd: int) -> int:
    """The run's child: the run goes to the store, and so does a failure before it began."""
    sink: _Watched | None = None
    try:
        with open_store(results) as store:
            sink = _Watched(store)
            try:
                module = experiments.load(job.experiment)
                run = module.run(job.params, sink=sink)
            except Exception as exc:
                if sink.begun is None:  # it failed before collect() stored a run: store one
                    failed = failed_run(job.experiment, asdict(job.params), _reason(exc))
                    store.begin(failed)
                    store.finish(failed)
                raise
        return EXIT_OK if run.status is Status.OK else EXIT_FAILED
    except (SystemExit, KeyboardInterrupt) as exc:
        code = getattr(exc, "code", EXIT_INTERRUPTED)
        code = code if isinstance(code, int) else EXIT_INTERRUPTED
        if code == EXIT_INTERRUPTED and (sink is None or sink.begun is None):
            return EXIT_NOT_BEGUN
        return code
    except Exception as exc:
        if not isinstance(exc, LabError):
            traceback.print_exc()  # to the log: a bug in an experiment deserves its traceback
        os.write(err_fd, _reason(exc).encode())
        return EXIT_FAILED


def _reason(exc: Exception) -> str:
    """A refusal says itself; anything else is named by its type too."""
    return str(exc) if isinstance(exc, LabError) else f"{type(exc).__name__}: {exc}"


@dataclass
class _Watched:
    """The store as a run's sink, noting whether collect() began a run in it."""

    store: ResultsStore
    begun: Any = None

    def begin(self, run: Any) -> None:
        self.store.begin(run)
        self.begun = run

    def __getattr__(self, name: str) -> Any:  # add, finish, rescue_path: the store's own
        return getattr(self.store, name)


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}" + ("" if n == 1 else "s")


def _read_waiting(fd: int) -> str:
    """What the run wrote on its error pipe, without waiting for the pipe to close.

    The run is reaped, so all it wrote is in the pipe; but a child it left
    behind inherited the write end, and a read to EOF would block the main
    loop (and every signal it answers) for as long as that child lives.
    """
    os.set_blocking(fd, False)
    chunks = []
    try:
        while chunk := os.read(fd, 4096):
            chunks.append(chunk)
    except BlockingIOError:
        pass  # empty for now: the writer left is not the run
    return b"".join(chunks).decode(errors="replace")


# -- files the daemon keeps using after it drops privileges ---------------------------------
def prepare_files(config: config_mod.Config, owner: tuple[int, int] | None) -> None:
    """Create the daemon's folders and log; make them usable by `owner` (uid, gid), if any.

    Done by the launcher, as root, before the daemon drops privileges.
    Directories we create are given to the user; existing directories must
    already be writable by it (we do not chown someone's /tmp or /var/lib);
    existing files the daemon writes (log, status, results and its WAL
    files) are chowned. The pidfile stays root's: the daemon keeps its locked
    descriptor, and the lock, not the file's owner, is what counts.
    """
    dirs = {config.results.parent, config.status.parent}
    if config.log is not None:
        dirs.add(config.log.parent)
    for folder in sorted(dirs):
        # Make it, then look: "exists? then mkdir" races with a launcher
        # started at the same moment (ten starts at once), and loses with a traceback.
        try:
            folder.mkdir(parents=True, mode=0o755)
        except FileExistsError:
            if owner is not None and not _writable_by(folder, *owner):
                uid = owner[0]
                raise LabError(
                    f"{folder} is not writable by uid {uid}: chown it or choose another"
                ) from None
            continue
        if owner is not None:
            os.chown(folder, *owner)
    if config.log is not None:
        os.close(open_log(str(config.log)))
    if owner is None:
        return
    files = [config.results, Path(f"{config.results}-wal"), Path(f"{config.results}-shm")]
    files += [config.status] + ([config.log] if config.log is not None else [])
    for path in files:
        if path.exists():
            os.chown(path, *owner)


def _writable_by(folder: Path, uid: int, gid: int) -> bool:
    st = folder.stat()
    groups = os.getgrouplist(_user_name(uid), gid) if uid != 0 else [0]
    if st.st_uid == uid:
        return bool(st.st_mode & stat.S_IWUSR)
    if st.st_gid in groups:
        return bool(st.st_mode & stat.S_IWGRP)
    return bool(st.st_mode & stat.S_IWOTH)


def _user_name(uid: int) -> str:
    return pwd.getpwuid(uid).pw_name
