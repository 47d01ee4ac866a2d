"""The three events, driven the same way under every manager: kill -9, a crash loop, a stop.

Each event gets a fresh Place and a fresh manager: the daemon's word on the
notify socket (listener.py) says when it is ready, the experiment acts, and
afterwards the manager is stopped and the place swept (manager.py), so one
event cannot leave anything to the next, whatever happened in it.

kill_9      waits `uptime` s after READY (so supervisord counts the daemon as
            RUNNING, not as a failed start), sends SIGKILL, and times kill to
            the new daemon's READY, `repeat` times, split at the new daemon's
            fork (its start time in /proc): kill to fork is the manager's part
            (noticing, deciding, forking), fork to READY the daemon's own start
            (a fresh interpreter, or the harness's warm fork). While it waits it
            asks the manager nothing: a question on supervisord's XML-RPC socket
            wakes its 1 s poll() and would hurry the very restart being timed;
            the daemon's READY on the notify socket, and waitpid on the manager
            (honcho leaves once it stopped everything), are all it watches. A
            manager that does not restart is recorded as such after `patience` s.
crash_loop  runs a daemon that exits right after READY and counts its starts
            until the manager gives up, watching `window` s, or as long as the
            manager's documented give-up may take (gives_up_within_s) when that
            is longer; a manager still restarting then is said to be so.
stop        runs a daemon with a child and a grandchild, asks the manager to
            stop it, and looks at who is still alive afterwards.
"""

from __future__ import annotations

import os
import signal
import statistics
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import psutil

from lab.experiments.managers.daemon import stamp_ns
from lab.experiments.managers.listener import Listener, Notice, started_ns
from lab.experiments.managers.manager import CLOSE_GRACE_S, Manager, Place, sweep

__all__ = ["Session", "crash_loop", "kill_9", "managed", "stop"]

#: Seconds a manager gets to bring its first daemon up: an interpreter start,
#: or monit's first cycle plus a daemonizing launcher, on a loaded machine.
START_TIMEOUT_S = 30.0
#: How often a crash loop asks the manager for its state.
STATE_POLL_S = 0.2
#: After the daemon of the stop event is gone, how long its child may take to die
#: of a signal sent to its group at the same moment. Delivery takes microseconds,
#: but a child runs its handler only once scheduled: in a full CI run (load near
#: 2 on 2 cores) 0.3 s once read a stopped child as a survivor under honcho.
SETTLE_S = 3.0


def _ms(ns: int) -> float:
    return round(ns / 1e6, 1)


@dataclass
class Session:
    """One manager running the daemon in one place, with the experiment listening."""

    manager: Manager
    listener: Listener
    place: Place
    setup_ms: float | None = None
    left: list[str] = field(default_factory=list)  # what the sweep found afterwards
    exit_code: int | None = None  # the manager's own, once closed (-9: it ignored TERM)

    def ready(self, timeout: float, not_pid: int | None = None) -> Notice:
        """The next READY of the daemon (by its pidfile: not honcho's sibling)."""
        deadline = time.monotonic() + timeout
        while True:
            notice = self.listener.next(deadline - time.monotonic(), not_pid=not_pid)
            if notice.fields.get("PIDFILE") == str(self.place.pidfile):
                return notice


@contextmanager
def managed(cls: type[Manager], **daemon: bool) -> Iterator[Session]:
    """Start `cls` on the daemon in a new place; stop it, sweep and remove the place after."""
    place = Place.create()
    try:
        with Listener(place.notify) as listener:
            session = Session(cls(place, **daemon), listener, place)
            try:
                session.manager.start()
                yield session
            finally:
                session.exit_code = session.manager.close()
                session.left = sweep(place)
    finally:
        place.remove()


def _record(cls: type[Manager], event: str, session: Session, **figures: Any) -> dict[str, Any]:
    notes = [note for note in figures.pop("notes", []) if note]
    if session.exit_code == -9:
        notes.append(f"the manager did not stop within {CLOSE_GRACE_S:g} s of TERM: KILLed")
    if session.left:
        notes.append("left running after the manager stopped: " + ", ".join(session.left))
    return {
        "part": event,
        "manager": cls.name,
        "event": event,
        **figures,
        "setup_ms": session.setup_ms,
        "notes": "; ".join(notes),
    }


def kill_9(cls: type[Manager], repeat: int, uptime: float, patience: float) -> dict[str, Any]:
    latencies: list[float] = []
    spawned: list[float] = []
    starting: list[float] = []
    notes: list[str] = []
    with managed(cls) as session:
        began = stamp_ns()
        ready = session.ready(START_TIMEOUT_S)
        session.setup_ms = _ms(ready.stamp_ns - began)
        for _ in range(repeat):
            time.sleep(max(0.0, uptime - (stamp_ns() - ready.stamp_ns) / 1e9))
            killed = stamp_ns()
            os.kill(ready.pid, signal.SIGKILL)
            new = _restarted(session, ready.pid, patience)
            if new is None:
                notes.append(_no_restart(session, killed, patience))
                break
            latencies.append(_ms(new.stamp_ns - killed))
            forked = started_ns(new.pid)
            if forked is not None:
                spawned.append(_ms(max(0, forked - killed)))
                starting.append(_ms(max(0, new.stamp_ns - forked)))
            ready = new
        state = session.manager.state()  # asked once, after the last restart was timed
        seen = session.manager.effective()
        notes.append(session.manager.explain())
    notes.append(cls.notices)
    return _record(
        cls,
        "kill-9",
        session,
        latency_ms=statistics.median(latencies) if latencies else None,
        max_ms=max(latencies) if latencies else None,
        spawned_ms=statistics.median(spawned) if spawned else None,
        starting_ms=statistics.median(starting) if starting else None,
        setting=cls.setting,
        seen_setting=seen,
        restarts=len(latencies),
        kills=len(latencies) + (len(latencies) < repeat),
        latencies_ms=latencies,
        final_state=state,
        notes=notes,
    )


def _restarted(session: Session, killed: int, patience: float) -> Notice | None:
    """The new daemon's READY, or None once the manager left or `patience` ran out.

    Only the notify socket and waitpid on the manager (our child) are watched:
    nothing here talks to the manager while it restarts the daemon.
    """
    deadline = time.monotonic() + patience
    while time.monotonic() < deadline:
        try:
            return session.ready(STATE_POLL_S, not_pid=killed)
        except TimeoutError:
            if not session.manager.running():
                return None
    return None


def _no_restart(session: Session, killed: int, patience: float) -> str:
    """What happened instead of a restart: who else was stopped, and how soon."""
    if not session.manager.gave_up(session.manager.state()):
        return f"not restarted within {patience:g} s"
    session.listener.drain()
    stopped = [n for n in session.listener.seen if n.state == "STOPPING" and n.stamp_ns > killed]
    told = ", ".join(f"{n.fields['SIGNAL']} after {_ms(n.stamp_ns - killed)} ms" for n in stopped)
    return "no restart; the other process got " + told if told else "no restart"


def crash_loop(cls: type[Manager], window: float) -> dict[str, Any]:
    starts: list[Notice] = []
    with managed(cls, crash=True) as session:
        began = stamp_ns()
        starts.append(session.ready(START_TIMEOUT_S))
        session.setup_ms = _ms(starts[0].stamp_ns - began)
        watch = max(window, cls.gives_up_within_s or 0.0)
        deadline = time.monotonic() + watch
        state = session.manager.state()
        while not cls.gave_up(state) and time.monotonic() < deadline:
            try:
                starts.append(session.ready(STATE_POLL_S))
            except TimeoutError:
                pass
            state = session.manager.state()
        daemon = str(session.place.pidfile)
        starts += [
            n
            for n in session.listener.drain()
            if n.state == "READY" and n.fields.get("PIDFILE") == daemon
        ]
        watched_s = watch - max(0.0, deadline - time.monotonic())
    stamps = [n.stamp_ns for n in starts]
    gaps = [_ms(b - a) for a, b in zip(stamps, stamps[1:], strict=False)]
    # Each start's fork and READY, in ms after the first fork: the manager's schedule
    # itself, without the daemon's own start-up (an import, a daemonizing launcher).
    first = int(starts[0].fields.get("FORKED_NS") or 0)
    forks = [_ms(int(n.fields.get("FORKED_NS") or 0) - first) for n in starts]
    readies = [_ms(n.stamp_ns - first) for n in starts]
    gave_up = cls.gave_up(state)
    notes = [cls.gives_up]
    if not gave_up:
        notes.append(f"still trying after {watched_s:.1f} s")
    return _record(
        cls,
        "crash-loop",
        session,
        latency_ms=_ms(stamps[-1] - stamps[0]),
        restarts=len(starts) - 1,
        gaps_ms=gaps,
        forks_ms=forks,
        readies_ms=readies,
        gave_up=gave_up,
        final_state=state,
        notes=notes,
    )


def stop(cls: type[Manager]) -> dict[str, Any]:
    with managed(cls, children=True) as session:
        began = stamp_ns()
        ready = session.ready(START_TIMEOUT_S)
        session.setup_ms = _ms(ready.stamp_ns - began)
        helpers = {name: int(ready.fields[name]) for name in ("CHILD", "GRANDCHILD")}
        asked = stamp_ns()
        session.manager.stop_daemon()
        gone = _wait_gone(ready.pid, cls.stop_wait_s + 10.0)
        ended = stamp_ns()
        try:
            stopping = session.listener.next(0.5, state="STOPPING")
            signal_name = stopping.fields.get("SIGNAL", "?")
        except TimeoutError:
            signal_name = "none (killed)" if gone else "none"
        # The helpers got their TERM with the daemon (or not at all): give a stopped
        # one time to go, on a loaded machine too, before calling it a survivor.
        deadline = time.monotonic() + SETTLE_S
        while _alive(helpers["CHILD"], session.place) and time.monotonic() < deadline:
            time.sleep(0.02)
        alive = {name: _alive(pid, session.place) for name, pid in helpers.items()}
        state = session.manager.state()
    return _record(
        cls,
        "stop",
        session,
        latency_ms=_ms(ended - asked) if gone else None,
        signal=signal_name,
        wait_s=cls.stop_wait_s,
        children_stopped=not alive["CHILD"],
        grandchild_survived=alive["GRANDCHILD"],
        final_state=state,
        notes=[cls.stop_signal],
    )


def _wait_gone(pid: int, timeout: float) -> bool:
    """Wait for a process that is not our child to end (psutil polls /proc)."""
    try:
        psutil.Process(pid).wait(timeout)
    except psutil.NoSuchProcess:
        pass
    except psutil.TimeoutExpired:
        return False
    return True


def _alive(pid: int, place: Place) -> bool:
    """Is `pid` still the daemon's helper (not a zombie, not a reused pid)?"""
    try:
        proc = psutil.Process(pid)
        return proc.status() != psutil.STATUS_ZOMBIE and str(place.dir) in " ".join(proc.cmdline())
    except psutil.Error:
        return False
