"""The processes model: one forked child per slot (a prefork worker, as resque and rq's pool).

The daemon forks N children once, at start; each runs one slot.run_slot
with a Redis connection it opens itself (a connection must not cross fork:
two processes reading one socket read each other's replies). cpu jobs use
every core; each child costs a whole interpreter's memory.

The children are steered by signals from the daemon, and keep its rules:
- their handlers only record (a SignalWakeup of their own; the daemon's
  wakeup pipe is closed in the child first, else the daemon's signals and
  the child's would land in one pipe);
- TSTP: quiet; TERM or INT: finish the job in hand, then exit 0;
- TTIN: faulthandler writes every thread's stack to the log at once, from C,
  without running Python in the handler (a child stuck in a job is exactly
  the one to ask, and it would never reach a Python-level check);
- PR_SET_PDEATHSIG: a daemon killed with -9 takes its children with it, so
  no orphan goes on taking jobs for a worker whose heartbeat has stopped.

A child that dies on its own (a crash, a kill -9 of just that pid) is reaped
by the daemon, its slot's job given back (reported as a retry), and a new
child forked for the slot (gunicorn's arbiter does the same for its workers).
"""

from __future__ import annotations

import faulthandler
import logging
import os
import signal
from collections.abc import Callable

from lab import children, procfs
from lab.daemon.signals import SignalWakeup
from lab.experiments.worker import queue
from lab.experiments.worker.slot import Board, Slot, run_slot
from lab.experiments.worker.threads import stacks

__all__ = ["ChildFlags", "Processes"]

log = logging.getLogger("lab.worker")

# Exit codes of a slot's child: they mean something to the daemon.
EXIT_OK = 0
EXIT_FAILED = 70  # EX_SOFTWARE: the slot raised (its traceback is in the log)

_CHILD_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGTSTP)


class ChildFlags:
    """quiet and stopping in a child: read from the signals its own wakeup pipe recorded."""

    def __init__(self) -> None:
        self._wakeup = SignalWakeup(_CHILD_SIGNALS)
        self._quiet = self._stop = False

    def _note(self, received: list[signal.Signals]) -> None:
        for sig in received:
            if sig == signal.SIGTSTP:
                self._quiet = True
            else:
                self._stop = True

    @property
    def quiet(self) -> bool:
        self._note(self._wakeup.wait(0))
        return self._quiet

    @property
    def stopping(self) -> bool:
        self._note(self._wakeup.wait(0))
        return self._stop

    def pause(self, seconds: float) -> None:
        if not self.stopping:
            self._note(self._wakeup.wait(seconds))


class Processes:
    """N slots, one forked child each, forked at start and again when one dies."""

    name = "processes"

    def __init__(self, slots: list[Slot], board: Board, in_child: Callable[[], None]) -> None:
        self.board = board
        self._slots = slots
        self._in_child = in_child  # the daemon's clean-up in a new child (its wakeup pipe)
        self._pids: dict[int, int] = {}  # pid -> slot
        self._stopping = False
        self._master = os.getpid()

    def start(self) -> None:
        for slot in self._slots:
            self._fork(slot)

    def _fork(self, slot: Slot) -> None:
        pid = os.fork()
        if pid:
            self._pids[pid] = slot.index
            return
        code = EXIT_FAILED
        try:
            self._in_child()
            procfs.prctl(procfs.PR_SET_PDEATHSIG, signal.SIGKILL)
            if os.getppid() != self._master:  # the daemon died before prctl took effect
                return
            faulthandler.register(signal.SIGTTIN, all_threads=True)
            run_slot(slot, ChildFlags())
            code = EXIT_OK
        except BaseException:
            log.exception("slot %d's process failed", slot.index)
        finally:
            os._exit(code)

    def quiet(self) -> None:
        children.signal_pids(self._pids, signal.SIGTSTP)

    def stop(self) -> None:
        self._stopping = True
        children.signal_pids(self._pids, signal.SIGTERM)

    def alive(self) -> bool:
        self.check()
        return bool(self._pids)

    def abandon(self) -> None:
        """At the deadline: KILL the children still in a job, and reap them."""
        children.stop_pids(list(self._pids), grace=0.0)
        self._pids.clear()

    def check(self) -> None:
        """Reap children that ended; while running, give back a dead child's job and refork."""
        for pid, code in children.reap_all():
            index = self._pids.pop(pid, None)
            if index is None or self._stopping:
                continue
            slot = self._slots[index]
            log.error(
                "slot %d's process %d died (exit %d): its job goes back, a new one starts",
                index,
                pid,
                code,
            )
            take_back(slot)
            self._fork(slot)

    def stacks(self) -> str:
        children.signal_pids(self._pids, signal.SIGTTIN)  # each child writes its own, from C
        return stacks() + f"\n(slot processes {sorted(self._pids)} write their stacks below)"


def take_back(slot: Slot) -> None:
    """A slot that ended without finishing its job: the job back, attempt + 1, reported."""
    import redis

    conn = queue.connect(slot.url)
    try:
        queue.requeue(conn, slot.keys, slot.worker_id, slot.index)
    except (redis.ConnectionError, redis.TimeoutError) as exc:
        log.error("slot %d: cannot give its job back now (%s); recovery will", slot.index, exc)
    finally:
        conn.close()
        slot.board.set_busy(slot.index, False)
