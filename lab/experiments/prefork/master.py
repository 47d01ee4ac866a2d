"""The master: bind once, fork the workers, then only supervise.

The master never serves a request. Its main loop is a short list of named
steps, as gunicorn's `Arbiter.run` and Unicorn's `HttpServer#join` are:

    maintain_worker_count    fork the missing workers, retire the extra ones
    retire_old_generation    after a HUP: the old workers go once the new ones are up
    wait for a signal        (or a tick); each one dispatched to its handle_<signal>
    murder_lazy_workers      a worker whose heartbeat is older than --timeout is killed

Signals, as Unicorn's SIGNALS file names them (gunicorn differs on TERM and
QUIT: see handle_term):

    CHLD   a worker ended: reap it (and count a crash loop); the loop forks its successor
    TTIN   one worker more;  TTOU  one fewer
    QUIT   graceful stop: workers finish the request in hand, then everything exits
    TERM   quick stop (INT too): workers end at once
    HUP    reload the app, start a fresh set of workers, retire the old set once it is up
    USR2   re-execute: a new master (new code, same socket) starts beside this one;
           this one's pidfile becomes PID.oldbin; QUIT this one when the new one serves
    WINCH  stop the workers, keep the master (TTIN brings them back)
    USR1   log the master's state (Unicorn and gunicorn reopen their logs; there are none)

The handlers only record: signal.set_wakeup_fd writes each signal's number
into a pipe (lab.daemon.signals.SignalWakeup), and the loop reads the pipe
and acts. Work inside a handler runs in the middle of whatever the main
thread was doing; that is how gunicorn got its reentrancy bugs (#2816,
#3004, #3198) until 24.0 made its handlers only queue the signal.

Sources, read for their behaviour, not copied:
https://github.com/benoitc/gunicorn/blob/master/gunicorn/arbiter.py,
https://github.com/benoitc/gunicorn/blob/master/gunicorn/workers/base.py,
https://github.com/defunkt/unicorn/blob/master/lib/unicorn/http_server.rb and
https://github.com/defunkt/unicorn/blob/master/SIGNALS.
"""

from __future__ import annotations

import collections
import os
import signal
import socket
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from lab import children, states
from lab.daemon.pidfile import PidFile
from lab.daemon.signals import SignalWakeup
from lab.experiments.prefork import apps, listener
from lab.experiments.prefork.config import MAX_WORKERS, ServeConfig
from lab.experiments.prefork.scoreboard import SERVING, SLOTS, Scoreboard
from lab.experiments.prefork.worker import Worker, set_name

__all__ = [
    "CRASH_LIMIT",
    "CRASH_WINDOW_S",
    "MOVES",
    "OLDBIN_ENV",
    "SIGNALS",
    "Master",
    "MasterState",
]

#: What the master answers; every other signal keeps its default.
SIGNALS = (
    signal.SIGCHLD,
    signal.SIGHUP,
    signal.SIGINT,
    signal.SIGQUIT,
    signal.SIGTERM,
    signal.SIGTTIN,
    signal.SIGTTOU,
    signal.SIGUSR1,
    signal.SIGUSR2,
    signal.SIGWINCH,
)

#: Set in a master re-executed by USR2: the pid of the master that started it.
OLDBIN_ENV = "LAB_PREFORK_OLDBIN"

#: A crash loop: this many workers in a row died on their own within CRASH_WINDOW_S
#: of their fork. Forking on for ever would only heat the machine; the master stops
#: and says why, and its manager (systemd's Restart= and StartLimitBurst=) decides
#: what next. gunicorn halts on the first worker that fails to boot; Unicorn respawns
#: for ever.
CRASH_LIMIT = 5
CRASH_WINDOW_S = 1.0

#: How long the loop waits for a signal when none comes. 1 s is gunicorn's; the live
#: view wants four frames a second; a handover (HUP) looks every few ms for the new
#: workers to come up, so the old ones do not serve a moment longer than needed.
TICK_S, LIVE_TICK_S, HANDOVER_TICK_S = 1.0, 0.25, 0.005

#: A quick stop's grace between TERM and KILL: TERM's default action ends a worker
#: at once, so this only matters for one stuck in the kernel.
QUICK_GRACE_S = 1.0

#: The events the live view keeps, newest last.
EVENTS_KEPT = 12


class MasterState(StrEnum):
    """Where the master is (the live view prints it)."""

    RUNNING = "running"
    QUITTING = "quitting"  # a graceful stop: the workers finish the request in hand
    STOPPING = "stopping"  # a quick stop: the workers end at once


#: Every move the master's state may make (Master.move refuses any other).
MOVES = {
    # RUNNING -> QUITTING: QUIT (handle_quit), or the main loop left on an error (stop)
    (MasterState.RUNNING, MasterState.QUITTING),
    # RUNNING -> STOPPING: TERM or INT (handle_term), or a crash loop (_count_crash)
    (MasterState.RUNNING, MasterState.STOPPING),
    # QUITTING -> STOPPING: TERM or INT while the workers finish (handle_term, stop)
    (MasterState.QUITTING, MasterState.STOPPING),
}


@dataclass
class WorkerProc:
    """The master's own record of one worker (the worker's word is in the scoreboard)."""

    pid: int
    slot: int
    generation: int  # bumped by every HUP
    born: float  # time.monotonic() at its fork
    retiring: bool = False  # the master told it to go: its end is no crash
    killed: bool = False  # murdered for a silent heartbeat (killed once, not every tick)


@dataclass
class Master:
    config: ServeConfig
    sock: socket.socket
    app: Callable[..., Any]
    db: Any = None  # the io app's lab.db.Server, reloaded with the app on HUP
    log: Callable[[str], None] | None = None  # where events are said (stderr), besides `events`
    show: Callable[[Master], None] | None = None  # the live view's refresh
    started_hook: Callable[[], None] | None = None  # once signals and pidfile are in place

    def __post_init__(self) -> None:
        self.target = self.config.workers
        self.generation = 0
        self.workers: dict[int, WorkerProc] = {}
        self.state = MasterState.RUNNING
        self.failure: str | None = None  # why the master stopped itself (a crash loop)
        self.crashes = 0  # workers in a row that died young
        self.retired_served = 0  # requests served by workers already reaped
        self.reexec_pid = 0  # the new master USR2 started, while it runs
        self.old_master = int(os.environ.pop(OLDBIN_ENV, "0"))  # who started us, after USR2
        self.events: collections.deque[tuple[float, str, str]] = collections.deque(
            maxlen=EVENTS_KEPT
        )
        self.started = time.monotonic()
        self.pidfile: PidFile | None = None

    # -- the main loop ------------------------------------------------------------
    def run(self) -> int:
        """Serve until a stop signal (or a crash loop); 0, or 1 with `failure` saying why."""
        self.start()
        try:
            while self.state is MasterState.RUNNING:
                self.maintain_worker_count()
                self.retire_old_generation()
                if self.show is not None:
                    self.show(self)
                for signum in self.wakeup.wait(self.tick()):
                    self.dispatch(signal.Signals(signum))
                self.murder_lazy_workers()
                self.notice_old_master_gone()
        finally:
            self.stop()
            self.finish()
        return 0 if self.failure is None else 1

    def start(self) -> None:
        # Signals first, the pidfile after: whoever reads the pidfile may signal at
        # once (Unicorn's start: "setup signal handlers before writing pid file").
        self.wakeup = SignalWakeup(SIGNALS)
        self.board = Scoreboard()
        # The pipe whose EOF tells every worker the master is gone: only the master
        # holds the write end (each worker closes its copy; exec closes it for USR2's
        # child, since Python opens it close-on-exec).
        self.alive_r, self.alive_w = os.pipe()
        self.sock.setblocking(False)  # workers accept without blocking (worker.py)
        if self.config.pid:
            try:
                self.pidfile = PidFile.acquire(self.config.pid)
            except BaseException:  # another master holds it: undo the above, say why
                self.finish(quietly=True)
                raise
        set_name("prefork master")
        if self.old_master:
            self.record("start", f"re-executed by master {self.old_master}; serving beside it")
        host, port = self.sock.getsockname()[:2]
        self.record("start", f"listening on {host}:{port}, {self.target} workers")
        if self.started_hook is not None:
            self.started_hook()

    def tick(self) -> float:
        """How long to wait for a signal now (see TICK_S)."""
        if self._handover_pending():
            return HANDOVER_TICK_S
        wait = LIVE_TICK_S if self.show is not None else TICK_S
        return min(wait, self.config.timeout / 4)  # look at heartbeats often enough

    def dispatch(self, sig: signal.Signals) -> None:
        handler = getattr(self, "handle_" + sig.name.removeprefix("SIG").lower())
        self.record(sig.name.removeprefix("SIG"), handler())

    def record(self, what: str, text: str) -> None:
        """An event: kept for the live view, logged on stderr."""
        if not text:
            return
        self.events.append((time.monotonic(), what, text))
        if self.log is not None:
            self.log(f"{what}: {text}")

    # -- one handler per signal; each returns what it did, for the log -------------
    def handle_chld(self) -> str:
        """CHLD: reap every ended child; a worker's successor is forked by the loop."""
        said = []
        for pid, code in children.reap_all():
            if pid == self.reexec_pid:
                said.append(self._reexec_failed(code))
            else:
                said.append(self._forget(pid, code))
        return "; ".join(filter(None, said))

    def _forget(self, pid: int, code: int | None) -> str:
        """A reaped worker: keep its count, free its slot, and see whether it crashed."""
        proc = self.workers.pop(pid, None)
        if proc is None:
            return ""  # not ours to count (an orphan adopted, had we been PID 1)
        self.retired_served += self.board.read(proc.slot).served
        self.board.release(proc.slot)
        if not proc.retiring:
            self._count_crash(proc)
        return f"worker {pid} (w[{proc.slot}]) ended, exit {code}"

    def handle_ttin(self) -> str:
        """TTIN: one worker more."""
        if self.target >= MAX_WORKERS:
            return f"ignored: {MAX_WORKERS} workers at most"
        self.target += 1
        return f"workers {self.target - 1} -> {self.target}"

    def handle_ttou(self) -> str:
        """TTOU: one worker fewer (down to none, as Unicorn allows; gunicorn keeps one)."""
        if self.target == 0:
            return "ignored: no workers left to remove"
        self.target -= 1
        return f"workers {self.target + 1} -> {self.target}"

    def handle_quit(self) -> str:
        """QUIT: graceful stop. Unicorn's graceful signal (gunicorn's is TERM)."""
        if self.state is not MasterState.RUNNING:
            return f"ignored: {self.state} already"
        self.move(MasterState.QUITTING)
        return "graceful stop: workers finish the requests in hand"

    def handle_term(self) -> str:
        """TERM: quick stop, as Unicorn and nginx mean it.

        gunicorn, systemd (it sends TERM, then KILL after TimeoutStopSec) and
        Sidekiq mean graceful by TERM; Unicorn and nginx by QUIT (docs/prefork.md).
        """
        if self.state is MasterState.STOPPING:
            return "ignored: stopping already"
        self.move(MasterState.STOPPING)
        return "quick stop: workers end at once"

    def move(self, state: MasterState) -> None:
        """Change state (one of MOVES)."""
        self.state = states.check(MOVES, self.state, state, "the master")

    def handle_int(self) -> str:
        """INT (^C): quick stop, as TERM."""
        return self.handle_term()

    def handle_hup(self) -> str:
        """HUP: reload the app, fork a fresh set of workers, retire the old set once it is up.

        The app is reloaded here, in the master, before anything is stopped: a
        reload that fails leaves the old workers serving. Only the app's own
        module is re-imported (importlib.reload), not what it imports.
        """
        try:
            app = apps.load(self.config.app, self.db, count=self.config.count, fresh=True)
        except Exception as exc:  # noqa: BLE001 - any error of the new code must not stop us
            return f"reload failed, the old workers go on serving: {exc}"
        apps.close(self.app)  # the master's copy only; each worker closes its own
        self.app = app
        self.generation += 1
        return f"app reloaded; generation {self.generation}: {self.target} fresh workers"

    def handle_usr2(self) -> str:
        """USR2: fork and exec a new master that inherits the listening socket."""
        return self.reexec()

    def handle_winch(self) -> str:
        """WINCH: stop every worker gracefully, keep the master (TTIN brings workers back).

        Ignored when stdin is a terminal, as Unicorn does: resizing the terminal
        window sends WINCH to the foreground process group, master included.
        """
        if sys.stdin is not None and sys.stdin.isatty():
            return "ignored: stdin is a terminal, where a window resize sends WINCH"
        self.target = 0
        return "workers stop; the master stays (TTIN to start one)"

    def handle_usr1(self) -> str:
        """USR1: say how the master is."""
        return (
            f"{len(self.workers)} workers (target {self.target}), "
            f"generation {self.generation}, {self.served()} requests served"
        )

    # -- the steps of the loop ----------------------------------------------------
    def maintain_worker_count(self) -> None:
        """Fork workers until the current generation has `target`; retire any beyond it."""
        current = self._current()
        for _ in range(self.target - len(current)):
            if not self.spawn():
                break
        extra = len(current) - self.target
        if extra > 0:
            newest_first = sorted(current, key=lambda p: p.born, reverse=True)
            self._retire(newest_first[:extra])

    def retire_old_generation(self) -> None:
        """After a HUP: once the new workers are all up, QUIT the old ones (never before)."""
        old = [p for p in self.workers.values() if p.generation < self.generation]
        waiting = [p for p in old if not p.retiring]
        if waiting and self._ready(self._current()) >= self.target:
            self._retire(waiting)

    def murder_lazy_workers(self) -> None:
        """KILL a worker whose heartbeat is older than --timeout (Unicorn takes no prisoners)."""
        now = time.monotonic()
        for proc in list(self.workers.values()):
            silent = now - self.board.read(proc.slot).heartbeat
            if silent > self.config.timeout and not proc.killed:
                proc.killed = True
                children.signal_pids([proc.pid], signal.SIGKILL)
                self.record(
                    "timeout",
                    f"worker {proc.pid} silent {silent:.1f} s > --timeout "
                    f"{self.config.timeout:g}: killed",
                )

    def notice_old_master_gone(self) -> None:
        """A master started by USR2 serves alone once its old master exits (we are orphaned)."""
        if self.old_master and os.getppid() != self.old_master:
            self.record("promoted", f"old master {self.old_master} is gone: serving alone")
            self.old_master = 0

    # -- forking --------------------------------------------------------------------
    def spawn(self) -> bool:
        """Fork one worker into a free slot; False when no slot is free or fork failed."""
        taken = {p.slot for p in self.workers.values()}
        free = [s for s in range(SLOTS) if s not in taken]
        if not free:
            return False
        slot = free[0]
        self.board.claim(slot)
        try:
            pid = self._fork()
        except OSError as exc:  # EAGAIN (a process limit), ENOMEM: try again next tick
            self.board.release(slot)
            self.record("fork", f"failed: {exc.strerror}; trying again")
            return False
        if pid == 0:  # the child: never returns into the master's code
            code = 1
            try:
                code = self._become_worker(slot)
            finally:
                os._exit(code)
        self.workers[pid] = WorkerProc(pid, slot, self.generation, time.monotonic())
        return True

    def _fork(self) -> int:
        """os.fork with our signals blocked across it.

        Between the fork and the child's own handlers, a signal meant for the
        new worker would run the master's handler in the child, which writes
        the signal's number into the wakeup pipe the child shares with the
        master: a QUIT sent to a brand new worker would stop the whole server.
        Blocked, it waits until the child has installed its own handlers
        (gunicorn avoids this with an in-process queue; Unicorn checks the pid
        in its handler).
        """
        signal.pthread_sigmask(signal.SIG_BLOCK, SIGNALS)
        try:
            pid = os.fork()
        except BaseException:
            signal.pthread_sigmask(signal.SIG_UNBLOCK, SIGNALS)
            raise
        if pid != 0:
            signal.pthread_sigmask(signal.SIG_UNBLOCK, SIGNALS)
        return pid

    def _become_worker(self, slot: int) -> int:
        """In the child: drop the master's state, serve."""
        self.wakeup.close()  # the master's handlers and pipe are not the worker's
        os.close(self.alive_w)  # else the master's death would never read as EOF here
        if self.pidfile is not None:
            os.close(self.pidfile.fd)  # fcntl locks are per process: closing ours frees nothing
        worker = Worker(
            slot, self.sock, self.app, self.board, self.alive_r, self.config.timeout,
            linger=self.config.setup == "linger",
        )  # fmt: skip
        return worker.run()  # it unblocks the signals once its own handlers are in place

    def reexec(self) -> str:
        """USR2's work: the pidfile moves aside to PID.oldbin, a child execs a new master."""
        if self.reexec_pid:
            return f"ignored: the new master {self.reexec_pid} is still running"
        if self.old_master:
            return f"ignored: this master's own old master {self.old_master} is still running"
        if self.pidfile is not None:
            oldbin = self.pidfile.path.with_name(self.pidfile.path.name + ".oldbin")
            os.rename(self.pidfile.path, oldbin)  # the lock stays on the file, now named .oldbin
            self.pidfile.path = oldbin
        try:
            pid = self._fork()
        except OSError as exc:
            self._reexec_failed(None)  # the pidfile back under its own name
            return f"cannot fork the new master: {exc.strerror}"
        if pid == 0:
            try:
                signal.set_wakeup_fd(-1)  # a signal now must not reach the master's pipe
                env = {**os.environ, **listener.for_exec(self.sock), OLDBIN_ENV: str(os.getppid())}
                signal.pthread_sigmask(signal.SIG_SETMASK, set())  # a mask survives exec
                argv = self.config.argv()
                os.execve(argv[0], argv, env)
            finally:
                os._exit(127)  # exec failed: the parent reaps this and puts the pidfile back
        self.reexec_pid = pid
        set_name("prefork oldbin")
        return f"new master {pid} starting with the inherited socket; QUIT me when it serves"

    def _reexec_failed(self, code: int | None) -> str:
        """The new master ended while we still run: we are the master again."""
        self.reexec_pid = 0
        if self.pidfile is not None and self.pidfile.path.name.endswith(".oldbin"):
            original = self.pidfile.path.with_name(self.pidfile.path.name.removesuffix(".oldbin"))
            os.rename(self.pidfile.path, original)
            self.pidfile.path = original
        set_name("prefork master")
        return f"the new master ended (exit {code}): this one goes on"

    # -- stopping -------------------------------------------------------------------
    def stop(self) -> None:
        """Close the socket, stop every worker (gracefully or quickly), reap them all."""
        self.sock.close()  # no new connections for this master (a USR2 child keeps its copy)
        for proc in self.workers.values():
            proc.retiring = True
        if self.state is MasterState.RUNNING:  # the loop left on an error: stop as QUIT does
            self.move(MasterState.QUITTING)
        if self.state is MasterState.QUITTING:
            children.signal_pids(list(self.workers), signal.SIGQUIT)
            deadline = time.monotonic() + self.config.timeout
            quitting = MasterState.QUITTING
            while self.workers and self.state is quitting and time.monotonic() < deadline:
                for signum in self.wakeup.wait(min(0.1, deadline - time.monotonic())):
                    if signum in (signal.SIGTERM, signal.SIGINT):
                        self.handle_term()  # a quick stop asked for meanwhile
                self.record("CHLD", self.handle_chld())
                if self.show is not None:
                    self.show(self)
        # TERM, a grace, KILL, reaped (lab.children): whatever is left
        ended = children.stop_pids(list(self.workers), grace=QUICK_GRACE_S)
        self.record("stop", "; ".join(self._forget(pid, code) for pid, code in ended))
        if self.show is not None:
            self.show(self)  # the last frame: every worker gone

    def finish(self, quietly: bool = False) -> None:
        if not quietly:
            self.record("exit", f"served {self.served()} requests in all")
        if self.pidfile is not None:
            oldbin = self.pidfile.path.name.endswith(".oldbin")
            self.pidfile.release()
            if oldbin:  # only an old master ever takes this name: nobody races us for it
                self.pidfile.path.unlink(missing_ok=True)
        for fd in (self.alive_r, self.alive_w):
            os.close(fd)
        self.board.close()
        self.wakeup.close()
        apps.close(self.app)

    # -- what the loop and the live view read -----------------------------------------
    def served(self) -> int:
        return self.retired_served + sum(
            self.board.read(p.slot).served for p in self.workers.values()
        )

    def _current(self) -> list[WorkerProc]:
        return [
            p for p in self.workers.values() if p.generation == self.generation and not p.retiring
        ]

    def _ready(self, procs: list[WorkerProc]) -> int:
        return sum(self.board.read(p.slot).state in SERVING for p in procs)

    def _handover_pending(self) -> bool:
        return any(p.generation < self.generation and not p.retiring for p in self.workers.values())

    def _retire(self, procs: list[WorkerProc]) -> None:
        for proc in procs:
            proc.retiring = True
        children.signal_pids([p.pid for p in procs], signal.SIGQUIT)

    def _count_crash(self, proc: WorkerProc) -> None:
        if time.monotonic() - proc.born >= CRASH_WINDOW_S:
            self.crashes = 0  # it lived: one death is no loop
            return
        self.crashes += 1
        if self.crashes >= CRASH_LIMIT and self.state is MasterState.RUNNING:
            self.failure = (
                f"workers keep dying: {self.crashes} in a row within {CRASH_WINDOW_S:g} s "
                "of their fork; the master stops"
            )
            self.move(MasterState.STOPPING)
            self.record("crash loop", self.failure)
