"""gunicorn, the peer: started as a subprocess on the socket the lab bound, the same app.

gunicorn (https://gunicorn.org, a dependency from PyPI) is what Python users
run where Ruby users run Unicorn, and its arbiter is the same design as the
lab's master: bind, fork workers, supervise. Two of its worker classes:

    sync      one request at a time per process, connection closed after it
              (Unicorn's model, and the lab's prefork worker's)
    gthread   a thread pool per process with a reactor for kept-alive
              connections (the lab's threads server, in each of N processes)

The lab binds the socket (so a port in use is refused in the same one line
for every server, and port 0 tells us the port) and hands it over as
`--bind fd://N`. The app is the lab's own (apps.from_environment reads which
one from the environment). This wrapper forwards every signal it gets to
gunicorn's master and waits for it, so `daemonlab serve --server
gunicorn-sync` answers HUP, TTIN, QUIT... with gunicorn's own meaning (TERM
is graceful there). gunicorn runs in a process group of its own: a
terminal's ^C reaches it once, through the wrapper, not twice.
"""

from __future__ import annotations

import importlib.util
import os
import signal
import socket
import subprocess
import sys
from typing import Any

from lab import children
from lab.daemon.signals import SignalWakeup
from lab.errors import LabError
from lab.experiments.prefork import apps
from lab.experiments.prefork.config import ServeConfig
from lab.experiments.prefork.master import SIGNALS as MASTER_SIGNALS

__all__ = ["FORWARDED", "WORKER_CLASS", "command", "serve"]

WORKER_CLASS = {"gunicorn-sync": "sync", "gunicorn-gthread": "gthread"}

#: Every signal gunicorn's arbiter answers: the very set the lab's master answers,
#: each passed on as it comes (SIGCHLD is the wrapper's own: gunicorn has exited).
FORWARDED = tuple(sig for sig in MASTER_SIGNALS if sig != signal.SIGCHLD)

APP = "lab.experiments.prefork.apps:from_environment()"


def command(config: ServeConfig, fd: int) -> list[str]:
    """The gunicorn command line for `config`, serving on descriptor `fd`."""
    sync = WORKER_CLASS[config.server] == "sync"
    return [
        sys.executable, "-m", "gunicorn",
        "--bind", f"fd://{fd}",
        "--workers", str(config.workers),
        "--worker-class", WORKER_CLASS[config.server],
        # gunicorn turns a sync worker with threads > 1 into gthread: 1 keeps it sync.
        "--threads", "1" if sync else str(config.threads),
        "--timeout", str(max(1, round(config.timeout))),
        "--graceful-timeout", str(max(1, round(config.timeout))),
        "--log-level", "warning",
        APP,
    ]  # fmt: skip


def serve(config: ServeConfig, sock: socket.socket, server: Any) -> int:
    """Run gunicorn on `sock` until it exits; its exit code."""
    if importlib.util.find_spec("gunicorn") is None:
        raise LabError("gunicorn is not installed here: pip install gunicorn")
    env = {**os.environ, apps.APP_ENV: config.app}
    if config.count:
        env[apps.COUNT_ENV] = config.count
    if server is not None:
        env[apps.DB_ENV] = apps.server_url(server)
    wakeup = SignalWakeup(MASTER_SIGNALS)
    proc = subprocess.Popen(
        command(config, sock.fileno()),
        pass_fds=(sock.fileno(),),
        env=env,
        stdin=subprocess.DEVNULL,
        process_group=0,
    )
    try:
        while proc.poll() is None:
            for sig in wakeup.wait(1.0):
                if sig != signal.SIGCHLD and proc.poll() is None:
                    proc.send_signal(sig)
    finally:
        wakeup.close()
        code = children.stop_popen(proc, grace=config.timeout, group=True)
    return code
