"""A worker: take a connection from the shared socket, answer one request, close, repeat.

It runs in a child the master forked (master.py `spawn`), and ends only by
`os._exit` with the code `run` returns, never by returning into the master's
code. Its loop is the one Unicorn's `worker_loop` and gunicorn's sync worker
(`run_for_one`) share:

    beat the heartbeat
    was I told to stop (QUIT), or is my master gone?   -> finish, exit 0
    accept() without blocking                          -> serve it, loop
    nothing waiting: select() on the socket, my signals and the master's pipe

One request per connection, then close, as Unicorn and gunicorn's sync
workers do: a sync worker serves one client at a time, so a kept-alive idle
client would hold it hostage; keep-alive is for servers with a reactor
(threads.py, eventloop.py, gunicorn's gthread).

Stopping, seen from the worker (Unicorn's SIGNALS, "Worker Processes":
https://github.com/defunkt/unicorn/blob/master/SIGNALS; gunicorn's
https://github.com/benoitc/gunicorn/blob/master/gunicorn/workers/base.py
init_signals makes the opposite choice, TERM graceful and QUIT quick):
- QUIT: graceful. The handler only records; the loop notices between
  requests, so the request in hand is finished, and no new one is taken.
- TERM, INT: quick. No handler at all: the default action of both is to end
  the process at once, which is what "quick" means.
- The master dies (even by kill -9): the read end of a pipe only the master
  holds open reads EOF at once, the kernel's own "your parent is gone"
  (Unicorn does the same; gunicorn compares getppid() with the master's pid
  when idle). The worker finishes its request and exits.
- HUP, TTIN, TTOU, USR1, USR2, WINCH are the master's: ignored here, since a
  terminal sends WINCH (a resize) and ^C to the whole process group.
"""

from __future__ import annotations

import select
import signal
import socket
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from lab.daemon.signals import SignalWakeup
from lab.experiments.prefork import apps, wsgi
from lab.experiments.prefork.scoreboard import Scoreboard, WorkerState

__all__ = ["CLIENT_TIMEOUT_S", "IGNORED", "Worker", "set_name"]

#: A client that sends nothing for this long loses its connection: a sync worker
#: serves one client at a time, so a silent one must not hold it (Unicorn leaves
#: slow clients to nginx in front of it; there is no nginx here).
CLIENT_TIMEOUT_S = 10.0

#: The master's signals, which a worker ignores (see the module notes).
IGNORED = (
    signal.SIGHUP,
    signal.SIGTTIN,
    signal.SIGTTOU,
    signal.SIGUSR1,
    signal.SIGUSR2,
    signal.SIGWINCH,
)


def set_name(name: str) -> None:
    """What `ps -o comm`, top and /proc/PID/comm show (15 bytes at most).

    Unicorn renames its processes "unicorn master" and "unicorn worker[0]";
    here the name is also how a test or the experiment sees, from outside,
    that a worker has finished booting.
    """
    try:
        with open("/proc/self/comm", "w") as comm:
            comm.write(name[:15])
    except OSError:  # not Linux: only the name is lost
        pass


@dataclass
class Worker:
    """What the master hands a worker at its fork."""

    slot: int
    listener: socket.socket
    app: Callable[..., Any]
    board: Scoreboard
    master_alive: int  # read end of a pipe only the master can write: EOF = the master is gone
    timeout: float  # the master kills a worker whose heartbeat is older than this
    linger: bool = False  # close gracefully (wsgi.graceful_close), as gunicorn does
    address: tuple[str, int] = field(init=False, default=("", 0))  # SERVER_NAME and PORT

    def run(self) -> int:
        """Serve until told to stop or orphaned; the exit code (0: a clean stop)."""
        for sig in IGNORED:
            signal.signal(sig, signal.SIG_IGN)
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, signal.SIG_DFL)  # quick stop: the kernel's own, no handler
        wakeup = SignalWakeup((signal.SIGQUIT,))
        # The master forked us with its signals blocked (master._fork): ours are in place now.
        signal.pthread_sigmask(signal.SIG_SETMASK, set())
        self.address = self.listener.getsockname()[:2]
        set_name(f"prefork w[{self.slot}]")
        self.board.set_state(self.slot, WorkerState.IDLE)
        try:
            self._loop(wakeup)
        finally:
            self.board.set_state(self.slot, WorkerState.QUITTING)
            apps.close(self.app)
            wakeup.close()
        return 0

    def _loop(self, wakeup: SignalWakeup) -> None:
        served = 0
        # Between requests: look without waiting. Idle: wait at most half the timeout,
        # so the heartbeat is fresh whenever the master looks.
        watch = [wakeup.read_fd, self.master_alive]
        while not self._told_to_stop(wakeup, select.select(watch, [], [], 0)[0]):
            self.board.beat(self.slot)
            try:
                conn, _ = self.listener.accept()
            except (BlockingIOError, InterruptedError, ConnectionAbortedError):
                # Another worker took it, or the client gave up: wait for the next one.
                ready, _, _ = select.select([self.listener, *watch], [], [], self.timeout / 2)
                if self._told_to_stop(wakeup, ready):
                    return
                continue
            self.board.set_state(self.slot, WorkerState.BUSY)
            if self._serve(conn):
                served += 1
                self.board.served_one(self.slot, served)
            self.board.set_state(self.slot, WorkerState.IDLE)

    def _told_to_stop(self, wakeup: SignalWakeup, ready: list[Any]) -> bool:
        if self.master_alive in ready:
            return True  # readable with nothing ever written: EOF, the master is gone
        return wakeup.read_fd in ready and signal.SIGQUIT in wakeup.wait(0)

    def _serve(self, conn: socket.socket) -> bool:
        """One request on `conn`, then close it; True when the app answered it."""
        with conn:
            conn.settimeout(CLIENT_TIMEOUT_S)
            try:
                request, _ = wsgi.read_request(conn)
                if request is None:  # connected and left without asking
                    return False
                response = wsgi.respond(
                    self.app,
                    request,
                    self.address,
                    keep_alive=False,
                    multithread=False,
                    multiprocess=True,
                )
                conn.sendall(response)
                if self.linger:  # one more round trip: the client's FIN answers ours
                    wsgi.graceful_close(conn)
                return True
            except wsgi.BadRequest as exc:
                _send_quietly(conn, wsgi.bad_request(str(exc)))
            except (TimeoutError, ConnectionError):
                pass  # the client is gone or silent: nothing to answer
            return False


def _send_quietly(conn: socket.socket, data: bytes) -> None:
    try:
        conn.sendall(data)
    except OSError:
        pass
