"""threads: one process, one reactor thread, a pool of N threads that answer requests.

Puma's shape (and gunicorn's gthread worker's): the main thread is a reactor
that waits, with one selector, on the listening socket and on every idle
kept-alive connection; a connection that has bytes to read goes to a pool
thread, which answers one request and hands the connection back (or closes
it). So N threads serve any number of kept-alive clients, each thread busy
only while a request is really in hand.

What a learner would write first, and why it fails: one thread per
connection for the connection's whole life. With keep-alive and more
clients than threads, the first N clients keep their threads for ever and
the rest wait in the pool's queue until their requests time out.

Under the GIL the pool overlaps waiting (the io app's SLEEP), not Python
work: the cpu app runs one thread at a time, whatever N is.
"""

from __future__ import annotations

import os
import queue
import selectors
import signal
import socket
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from lab.daemon.signals import SignalWakeup
from lab.experiments.prefork import wsgi
from lab.experiments.prefork.worker import CLIENT_TIMEOUT_S

__all__ = ["KEEPALIVE_IDLE_S", "serve"]

#: A kept-alive connection idle this long is closed: gunicorn's --keep-alive default (2 s).
KEEPALIVE_IDLE_S = 2.0

#: How often the reactor looks for idle connections when nothing happens.
SWEEP_S = 0.5


@dataclass
class Connection:
    sock: socket.socket
    buffered: bytes = b""  # read after the last request: the start of the next one
    last_active: float = field(default_factory=time.monotonic)


class Reactor:
    def __init__(self, sock: socket.socket, app: Callable[..., Any], threads: int) -> None:
        self.sock = sock
        self.app = app
        self.address = sock.getsockname()[:2]
        self.selector = selectors.DefaultSelector()
        self.pool = ThreadPoolExecutor(threads, thread_name_prefix="lab-threads")
        # Pool threads never touch the selector (its bookkeeping is not thread-safe):
        # they put a kept-alive connection on this queue and write a byte to wake us.
        self.returned: queue.SimpleQueue[Connection] = queue.SimpleQueue()
        self.wake_r, self.wake_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        self.idle: dict[int, Connection] = {}
        self.running = True
        self.served = 0
        self._count_lock = threading.Lock()

    def run(self, wakeup: SignalWakeup) -> int:
        """Serve until TERM, INT or QUIT; the number of requests the app answered."""
        self.sock.setblocking(False)
        self.selector.register(self.sock, selectors.EVENT_READ)
        self.selector.register(self.wake_r, selectors.EVENT_READ)
        self.selector.register(wakeup.read_fd, selectors.EVENT_READ)
        try:
            while self.running:
                for key, _ in self.selector.select(SWEEP_S):
                    if key.fileobj is self.sock:
                        self._accept_all()
                    elif key.fileobj == self.wake_r:
                        self._take_back()
                    elif key.fileobj == wakeup.read_fd:
                        self.running = not wakeup.wait(0)  # TERM, INT or QUIT: stop
                    else:
                        self._dispatch(key.data)
                self._close_idle()
        finally:
            self._stop()
        return self.served

    def _accept_all(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except (BlockingIOError, ConnectionAbortedError):
                return
            conn.settimeout(CLIENT_TIMEOUT_S)
            self._watch(Connection(conn))

    def _watch(self, conn: Connection) -> None:
        conn.last_active = time.monotonic()
        self.idle[conn.sock.fileno()] = conn
        self.selector.register(conn.sock, selectors.EVENT_READ, conn)

    def _dispatch(self, conn: Connection) -> None:
        self.selector.unregister(conn.sock)
        del self.idle[conn.sock.fileno()]
        self.pool.submit(self._answer, conn)

    def _take_back(self) -> None:
        try:
            while os.read(self.wake_r, 4096):
                pass
        except BlockingIOError:
            pass
        while not self.returned.empty():
            self._watch(self.returned.get())

    def _answer(self, conn: Connection) -> None:
        """In a pool thread: the requests that have arrived on `conn`, then back or closed."""
        try:
            while True:
                request, conn.buffered = wsgi.read_request(conn.sock, conn.buffered)
                if request is None:
                    break  # the client closed its kept-alive connection
                keep = self.running and wsgi.wants_keep_alive(request)
                response = wsgi.respond(
                    self.app, request, self.address, keep_alive=keep, multithread=True,
                    multiprocess=False,
                )  # fmt: skip
                conn.sock.sendall(response)
                with self._count_lock:
                    self.served += 1
                if not keep:
                    break
                if wsgi.HEAD_END not in conn.buffered:  # nothing pipelined: wait in the reactor
                    self.returned.put(conn)
                    os.write(self.wake_w, b"!")
                    return
        except wsgi.BadRequest as exc:
            _send_quietly(conn.sock, wsgi.bad_request(str(exc)))
        except (TimeoutError, ConnectionError):
            pass  # the client is gone or silent
        conn.sock.close()

    def _close_idle(self) -> None:
        oldest = time.monotonic() - KEEPALIVE_IDLE_S
        for conn in [c for c in self.idle.values() if c.last_active < oldest]:
            self.selector.unregister(conn.sock)
            del self.idle[conn.sock.fileno()]
            conn.sock.close()

    def _stop(self) -> None:
        """No new connections; the requests in hand finish; idle connections close."""
        self.running = False  # a pool thread finishing now closes instead of keeping alive
        self.selector.unregister(self.sock)
        self.sock.close()
        self.pool.shutdown(wait=True)
        self._take_back()
        for conn in self.idle.values():
            conn.sock.close()
        self.idle.clear()
        self.selector.close()
        os.close(self.wake_r)
        os.close(self.wake_w)


def serve(sock: socket.socket, app: Callable[..., Any], threads: int) -> int:
    """Run the thread-pool server on `sock` until TERM, INT or QUIT; requests served."""
    wakeup = SignalWakeup((signal.SIGTERM, signal.SIGINT, signal.SIGQUIT))
    try:
        return Reactor(sock, app, threads).run(wakeup)
    finally:
        wakeup.close()


def _send_quietly(sock: socket.socket, data: bytes) -> None:
    try:
        sock.sendall(data)
    except OSError:
        pass
