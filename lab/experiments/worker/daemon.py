"""The worker daemon's main loop: signals, heartbeat, recovery. Its slots do the jobs.

`Worker.serve` is the daemon's life after it has detached (cli.py runs the
lab's own daemonizing steps, lab/daemon/steps.py, then calls it) or in the
foreground (`--foreground`, and the experiment's runner):

    1  signals recorded from here on (a wakeup pipe: a TERM during set-up waits its turn)
    2  Redis answers, or one line says it does not (the launcher prints it, exits 1)
    3  heartbeat, then registration (queue.beat), then recovery of dead workers' jobs
    4  ready: the launcher may exit 0 (`ready()`); the slots start (after `gate()`, if any)
    5  the loop: wait for a signal or the next beat; beat; recover; reap (processes)
    6  stop: no new jobs, the jobs in hand finish until the deadline; what still
       runs then is abandoned and every job left in a slot goes back to the
       queue, reported; deregister, drop the heartbeat, exit 0

Signals, as Sidekiq's (https://github.com/sidekiq/sidekiq/wiki/Signals); the
handlers only record (lab.daemon.signals), the loop calls one handle_<signal> each:

    TSTP  quiet: take no new jobs, finish the ones in hand, keep beating
    TERM  stop within --deadline (Sidekiq's -t, default 25 s) and push back what did not finish
    INT   the same as TERM (Ctrl-C in the foreground)
    TTIN  every thread's stack to the log (tasks' too; slot processes write their own)
    CHLD  a slot process ended (the processes model): reap it, give back its job, refork

The heartbeat is beaten by this main thread, never by a slot: a slot busy
with a long job must not make its worker look dead. It beats every
TTL/3, so two late beats in a row still keep the worker alive.
"""

from __future__ import annotations

import datetime as _dt
import logging
import os
import secrets
import signal
import socket
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from enum import StrEnum

from lab import services, states
from lab.daemon.signals import SignalWakeup
from lab.errors import LabError
from lab.experiments.worker import queue
from lab.experiments.worker.slot import Board, Outage, Slot

__all__ = ["HANDLED", "MODELS", "MOVES", "Config", "State", "Worker"]

log = logging.getLogger("lab.worker")

MODELS = ("threads", "processes", "asyncio")
HANDLED = (signal.SIGTERM, signal.SIGINT, signal.SIGTSTP, signal.SIGTTIN, signal.SIGCHLD)
BEATS_PER_TTL = 3
#: While stopping, how often the loop looks whether the slots are done (and wakes
#: any that went back to BLMOVE after the last CLIENT UNBLOCK).
STOP_POLL_S = 0.05


class State(StrEnum):
    """Where the worker is, as Sidekiq names it (`daemonlab worker status` says it)."""

    WORKING = "working"
    QUIET = "quiet"  # takes no new job; the ones in hand finish; TERM must still come
    STOPPING = "stopping"  # the jobs in hand finish until the deadline, then go back


#: Every move the worker's state may make (Worker.move refuses any other).
MOVES = {
    # WORKING -> QUIET: TSTP (handle_tstp)
    (State.WORKING, State.QUIET),
    # WORKING -> STOPPING: TERM or INT (handle_term)
    (State.WORKING, State.STOPPING),
    # QUIET -> STOPPING: TERM or INT after TSTP, Sidekiq's order for a deploy
    (State.QUIET, State.STOPPING),
}


@dataclass(frozen=True)
class Config:
    """What `daemonlab worker start` takes (checked before anything forks)."""

    namespace: str = "daemonlab"
    model: str = "threads"
    concurrency: int = 5  # Sidekiq 7's default
    deadline: float = 25.0  # Sidekiq's -t default: Heroku gives a process 30 s after TERM
    heartbeat_ttl: float = (
        60.0  # Sidekiq Pro's super_fetch: a process is dead 60 s after its last beat
    )
    fetch_timeout: float = queue.FETCH_TIMEOUT_S

    def __post_init__(self) -> None:
        if self.model not in MODELS:
            known = ", ".join(MODELS)
            raise LabError(
                f"--concurrency-model: unknown value {self.model!r} (choose from {known})"
            )
        if self.concurrency < 1:
            raise LabError(f"--concurrency must be at least 1, got {self.concurrency}")
        if self.deadline < 0:
            raise LabError(f"--deadline must be at least 0, got {self.deadline:g}")
        if self.heartbeat_ttl < 0.3:
            raise LabError(f"--heartbeat-ttl must be at least 0.3 s, got {self.heartbeat_ttl:g}")
        if self.fetch_timeout <= 0:
            raise LabError(f"--fetch-timeout must be greater than 0, got {self.fetch_timeout:g}")
        if not self.namespace or any(c.isspace() for c in self.namespace):
            raise LabError(f"--namespace must be a word without spaces, got {self.namespace!r}")


def _now() -> str:
    return _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds")


class Worker:
    """One worker daemon: `concurrency` slots of one model, one heartbeat, one main loop."""

    def __init__(self, config: Config) -> None:
        self.config = config
        self.keys = queue.Keys(config.namespace)
        self.worker_id = f"{socket.gethostname()}-{os.getpid()}-{secrets.token_hex(3)}"
        self.started = _now()
        self.state = State.WORKING
        self.outage = Outage()
        self.board = Board(config.concurrency, shared=config.model == "processes")
        self._conn = None
        self._model = None
        self._wakeup: SignalWakeup | None = None
        self._next_beat = 0.0

    # -- the life ------------------------------------------------------------------
    def serve(self, ready: Callable[[], None], gate: Callable[[], None] | None = None) -> int:
        self._wakeup = SignalWakeup(HANDLED)
        try:
            services.require("redis")  # one line, within a second, if nobody is there
            url = services.url("redis")
            self._conn = queue.connect(url)
            self._beat()
            self._recover()
            self._model = self._make_model(url)
            ready()
            if gate is not None:
                gate()
            self._model.start()
            log.info(
                "started: %s, %d %s slots, namespace %s, deadline %gs, heartbeat ttl %gs",
                self.worker_id,
                self.config.concurrency,
                self.config.model,
                self.config.namespace,
                self.config.deadline,
                self.config.heartbeat_ttl,
            )
            self._loop()
            self._shutdown()
            return 0
        finally:
            self._wakeup.close()
            if self._conn is not None:
                self._conn.close()

    def _make_model(self, url: str):
        slots = [
            Slot(
                i,
                self.worker_id,
                self.keys,
                url,
                self.board,
                self.outage,
                self.config.fetch_timeout,
            )
            for i in range(self.config.concurrency)
        ]
        if self.config.model == "threads":
            from lab.experiments.worker.threads import Threads

            return Threads(slots, self.board)
        if self.config.model == "asyncio":
            from lab.experiments.worker.tasks import Tasks

            return Tasks(slots, self.board)
        from lab.experiments.worker.processes import Processes

        return Processes(slots, self.board, in_child=self._in_child)

    def _in_child(self) -> None:
        """In a new slot process: the daemon's wakeup pipe and connection are not its own."""
        self._wakeup.close()
        self._conn = None  # redis-py drops a connection inherited across fork (it checks the pid)

    def _loop(self) -> None:
        while self.state is not State.STOPPING:
            for sig in self._wakeup.wait(max(self._next_beat - time.monotonic(), 0)):
                self._dispatch(sig)
            if time.monotonic() >= self._next_beat:
                self._beat()
                self._recover()
            self._model.check()

    def _dispatch(self, sig: signal.Signals) -> None:
        getattr(self, "handle_" + sig.name.removeprefix("SIG").lower())()

    def move(self, state: State) -> None:
        """Change state (one of MOVES)."""
        self.state = states.check(MOVES, self.state, state, "the worker")

    # -- one handler per signal (called from the loop, never from a signal handler) -----
    def handle_term(self) -> None:
        """TERM: stop within the deadline; what does not finish goes back to the queue."""
        if self.state is State.STOPPING:
            return  # TERM and INT in one batch: one stop
        log.info(
            "TERM: stopping, %d jobs in hand, deadline %gs",
            self.board.busy_count(),
            self.config.deadline,
        )
        self.move(State.STOPPING)

    def handle_int(self) -> None:
        """INT (Ctrl-C): as TERM."""
        self.handle_term()

    def handle_tstp(self) -> None:
        """TSTP: quiet. No new jobs; the ones in hand finish; TERM must still come."""
        if self.state is not State.WORKING:
            return  # quiet already, or stopping, which takes no new job either
        self.move(State.QUIET)
        self._model.quiet()
        self._unblock()
        # Said once it holds: logged before the slots were told, a slot process could take
        # a job queued on seeing this line (the test did, beside three others' tests).
        log.info("TSTP: quiet, %d jobs in hand; waiting for TERM", self.board.busy_count())

    def handle_ttin(self) -> None:
        """TTIN: every thread's stack to the log: what is each slot doing right now?"""
        log.info(
            "TTIN: %d of %d slots busy\n%s",
            self.board.busy_count(),
            self.config.concurrency,
            self._model.stacks(),
        )

    def handle_chld(self) -> None:
        """CHLD: a slot process ended; the model reaps it (and reforks it while running)."""
        self._model.check()

    # -- beat, recover, stop ------------------------------------------------------------
    def _info(self) -> dict:
        return {
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "started": self.started,
            "beat": _now(),
            "busy": self.board.busy_count(),
            "done": self.board.done(),
            "quiet": self.state is not State.WORKING,  # Sidekiq's: a stopping one is quiet
            **asdict(self.config),
        }

    def _beat(self) -> None:
        self._next_beat = time.monotonic() + self.config.heartbeat_ttl / BEATS_PER_TTL
        self._redis(
            queue.beat,
            self.worker_id,
            self.config.concurrency,
            self.config.heartbeat_ttl,
            self._info(),
        )

    def _recover(self) -> None:
        moved = self._redis(queue.recover, self.worker_id) or {}
        for dead, count in moved.items():
            log.warning(
                "worker %s is dead (no heartbeat): %d of its jobs back to the queue", dead, count
            )

    def _redis(self, call, *args):
        """call(conn, keys, *args) on the main connection; an outage is logged, not fatal."""
        import redis

        try:
            result = call(self._conn, self.keys, *args)
        except (redis.ConnectionError, redis.TimeoutError) as exc:
            self.outage.failed(exc)
            return None
        self.outage.ok()
        return result

    def _unblock(self) -> None:
        """Wake every slot blocked in BLMOVE (it returns nil, as at its timeout)."""
        for slot in range(self.config.concurrency):
            client = self.board.client(slot)
            if client:
                self._redis(lambda conn, keys, c=client: conn.client_unblock(c))

    def _shutdown(self) -> None:
        self._model.stop()
        deadline = time.monotonic() + self.config.deadline
        while self._model.alive() and time.monotonic() < deadline:
            self._unblock()
            for sig in self._wakeup.wait(min(STOP_POLL_S, max(deadline - time.monotonic(), 0))):
                if sig == signal.SIGTTIN:
                    self.handle_ttin()
        if self._model.alive():
            log.warning(
                "deadline: %d jobs still running after %gs: giving them back",
                self.board.busy_count(),
                self.config.deadline,
            )
            self._model.abandon()
        given = sum(
            self._redis(queue.requeue, self.worker_id, s) or 0
            for s in range(self.config.concurrency)
        )
        self._redis(queue.retire, self.worker_id)
        log.info("stopped: %d jobs done, %d given back to the queue", self.board.done(), given)
