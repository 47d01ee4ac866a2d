"""`daemonlab serve`: check everything that can be refused, bind, then run the chosen server.

The order is the lesson's "refuse before you start" rule: a bad app name,
an unreachable database and a port in use are each found here, before any
process is forked, and leave as one line and a non-zero exit (LabError).

    load the app          hello, cpu, io or module:callable (a typo is refused here)
    the database          io only: the server lab.db resolves, logged into once
    the socket            inherited after a USR2, else bound (port in use: refused)
    serve                 prefork (master.py), threads, asyncio, gunicorn sync/gthread, uwsgi

stdout says two things a script can read: `listening on http://HOST:PORT`
once the socket is bound, and `served N requests` at the end. What the
master does on the way goes to stderr (or into the --live view).
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterator
from typing import Any

from lab.errors import LabError
from lab.experiments.prefork import apps, listener
from lab.experiments.prefork.config import ServeConfig

__all__ = ["CrashLoop", "run"]


class CrashLoop(LabError):
    """The master stopped itself: its workers kept dying (master.CRASH_LIMIT)."""

    exit_code = 1


def run(config: ServeConfig) -> int:
    """Serve `config` until told to stop; the exit code."""
    with _database(config) as server:
        app = apps.load(config.app, server, count=config.count)
        try:
            sock = listener.inherited() or listener.bind(config.host, config.port)
        except BaseException:
            apps.close(app)
            raise
        served = _serve(config, sock, app, server)
    if served is not None:
        print(f"served {served} requests", flush=True)
    return 0


def _serve(config: ServeConfig, sock: Any, app: Any, server: Any) -> int | None:
    """Run the server; requests served (None where a peer counted them, not us)."""
    if config.server == "prefork":
        return _prefork(config, sock, app, server)
    _announce(sock)
    try:
        if config.server == "threads":
            from lab.experiments.prefork import threads

            return threads.serve(sock, app, config.workers)
        if config.server == "asyncio":
            from lab.experiments.prefork import eventloop

            return eventloop.serve(sock, app)
        if config.server == "uwsgi":
            from lab.experiments.prefork import uwsgi as peer  # its workers build their own app
        else:
            from lab.experiments.prefork import gunicorn as peer

        code = peer.serve(config, sock, server)
        if code not in (0, -15):  # -15: the peer's own quick exit after a forwarded TERM
            raise LabError(f"{config.server} exited with {code}")
        return None
    finally:
        apps.close(app)
        sock.close()


def _prefork(config: ServeConfig, sock: Any, app: Any, server: Any) -> int:
    from lab.experiments.prefork.master import Master

    view = None
    if config.live:
        from lab.experiments.prefork.live import LiveView

        view = LiveView()
    master = Master(
        config,
        sock,
        app,
        db=server,
        log=None if view else _log,
        show=view,
        started_hook=lambda: _announce(sock),  # after the pidfile: a second master is refused first
    )
    try:
        master.run()
    finally:
        if view is not None:
            view.close()
    if master.failure:
        raise CrashLoop(master.failure)
    return master.served()


def _announce(sock: Any) -> None:
    host, port = sock.getsockname()[:2]
    print(f"listening on http://{host}:{port}", flush=True)


def _log(text: str) -> None:
    print(f"prefork {os.getpid()}: {text}", file=sys.stderr, flush=True)


@contextlib.contextmanager
def _database(config: ServeConfig) -> Iterator[Any]:
    """The io app's MySQL server (logged into once, so a wrong one is refused now), or None."""
    if config.app != "io" or config.no_db:
        yield None
        return
    from lab import db

    with db.server() as server:
        db.connect(server).close()
        yield server
