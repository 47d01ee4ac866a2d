"""The WSGI apps every server runs, byte for byte the same under all five.

    hello   a 14-byte answer: what a server costs per request when the app costs nothing
    cpu     ~2 ms of pure Python (Beazley's countdown): the GIL decides who runs
    io      SELECT SLEEP(0.05) on the real MySQL (lab.db): waiting, which threads overlap
            and one event loop does not (a WSGI app blocks; nothing here awaits)

`--no-db` makes io wait in time.sleep instead. Any other WSGI app is named
as module:callable, as gunicorn names them; a HUP reloads it (`load(...,
fresh=True)`).

Two things every server gets from here, so they count and connect alike:
`Counted` appends one byte to a file per request the app answers (the
server's own request count, checked against the load generator's), and
`Io` opens its MySQL connection in the process and thread that uses it,
never before a fork (a connection shared across fork corrupts the protocol:
the fork experiment's fact 12).
"""

from __future__ import annotations

import importlib
import os
import sys
import threading
import time
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from lab.errors import LabError

if TYPE_CHECKING:
    from lab.db import Server

__all__ = [
    "CPU_STEPS",
    "IO_SECONDS",
    "Counted",
    "Io",
    "close",
    "cpu",
    "from_environment",
    "hello",
    "load",
    "server_url",
]

HELLO = b"Hello, world!\n"
#: ~2 ms of countdown on this machine's cores (Python 3.11): "a few ms of pure-Python work".
CPU_STEPS = 100_000
#: The io app's wait: 50 ms, long against a request's own cost (tens of µs), short enough
#: that a few seconds of load make hundreds of requests.
IO_SECONDS = 0.05

_TEXT = [("Content-Type", "text/plain")]

#: What gunicorn's workers read to build the same app (gunicorn.py sets them).
APP_ENV, COUNT_ENV, DB_ENV = "LAB_PREFORK_APP", "LAB_PREFORK_COUNT", "LAB_PREFORK_DB"


def hello(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
    start_response("200 OK", [*_TEXT, ("Content-Length", str(len(HELLO)))])
    return [HELLO]


def cpu(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
    n = CPU_STEPS
    while n > 0:
        n -= 1
    body = f"counted down from {CPU_STEPS}\n".encode()
    start_response("200 OK", [*_TEXT, ("Content-Length", str(len(body)))])
    return [body]


class Io:
    """SELECT SLEEP(IO_SECONDS) over one connection per thread, opened on first use."""

    def __init__(self, server: Server | None) -> None:
        self.server = server  # None: --no-db, time.sleep stands in for the server
        self._lock = threading.Lock()
        self._forget()

    def _forget(self) -> None:
        """Start with no connection, in a new process: an inherited one is never touched."""
        self._pid = os.getpid()
        self._local = threading.local()
        self._connections: list[Any] = []

    def _connection(self) -> Any:
        if self._pid != os.getpid():  # forked since: the parent's connections are not ours
            self._forget()
        conn = getattr(self._local, "conn", None)
        if conn is None:
            from lab import db

            conn = db.connect(self.server, autocommit=True)
            self._local.conn = conn
            with self._lock:
                self._connections.append(conn)
        return conn

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]):
        if self.server is None:
            time.sleep(IO_SECONDS)
        else:
            with self._connection().cursor() as cur:
                cur.execute("SELECT SLEEP(%s)", (IO_SECONDS,))
                cur.fetchall()
        body = f"slept {IO_SECONDS:g} s\n".encode()
        start_response("200 OK", [*_TEXT, ("Content-Length", str(len(body)))])
        return [body]

    def close(self) -> None:
        """Say goodbye (COM_QUIT) on every connection this process opened."""
        if self._pid != os.getpid():
            return
        with self._lock:
            connections, self._connections = self._connections, []
        for conn in connections:
            try:
                conn.close()
            except Exception:  # a server already gone: nothing left to say goodbye to
                pass


class Counted:
    """The app, plus one byte appended to `path` per request: the server's own count.

    O_APPEND makes each write land at the end even when many processes share
    the file, so the file's size is the number of requests the app answered,
    whichever server ran it; one write(2) of one byte costs about a microsecond.
    """

    def __init__(self, app: Callable[..., Any], path: str) -> None:
        self.app = app
        self.fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o600)

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]):
        os.write(self.fd, b".")
        return self.app(environ, start_response)

    def close(self) -> None:
        close(self.app)
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1


def load(
    spec: str, server: Server | None = None, *, count: str | None = None, fresh: bool = False
) -> Callable[..., Any]:
    """The app `spec` names (hello, cpu, io or module:callable); `fresh` re-imports its module.

    `server` is the MySQL server of the io app (None: it sleeps instead).
    """
    if spec in ("hello", "cpu", "io"):
        module = sys.modules[__name__]
        if fresh:
            module = importlib.reload(module)
        app = module.Io(server) if spec == "io" else getattr(module, spec)
    else:
        app = _import(spec, fresh)
    return Counted(app, count) if count else app


def _import(spec: str, fresh: bool) -> Callable[..., Any]:
    name, _, attr = spec.partition(":")
    try:
        module = importlib.import_module(name)
        if fresh:
            module = importlib.reload(module)
    except Exception as exc:  # ImportError, or the module's own SyntaxError/NameError...
        raise LabError(f"--app {spec}: cannot import {name}: {type(exc).__name__}: {exc}") from None
    app = getattr(module, attr, None)
    if not callable(app):
        raise LabError(f"--app {spec}: {name} has no callable {attr!r}")
    return app


def close(app: Any) -> None:
    """Let the app release what it holds (Io's connections, Counted's file)."""
    closer = getattr(app, "close", None)
    if callable(closer):
        closer()


def server_url(server: Server) -> str:
    """A LAB_MYSQL_URL for `server`, password and all: for a child's environment, never a log."""
    user, password = quote(server.user, safe=""), quote(server.password, safe="")
    ssl = "required" if server.tls else "disabled"
    return f"mysql://{user}:{password}@{server.host}:{server.port}/{server.database}?ssl={ssl}"


def from_environment() -> Callable[..., Any]:
    """gunicorn's app factory (`lab.experiments.prefork.apps:from_environment()`).

    gunicorn loads the app in each worker after its fork, so the io app's
    connections are each worker's own; they say goodbye when it exits.
    """
    import atexit

    from lab import db

    url = os.environ.get(DB_ENV)
    server = db.parse_url(url)[0] if url else None
    app = load(os.environ.get(APP_ENV, "hello"), server, count=os.environ.get(COUNT_ENV))
    atexit.register(close, app)
    return app
