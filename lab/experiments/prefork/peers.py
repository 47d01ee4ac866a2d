"""A peer server run as a child on the lab's socket, with every signal passed on to it.

gunicorn.py and uwsgi.py each say what command line runs their server; this
module runs it the same way for both: the socket the lab bound is handed
over by number (it stays open across exec, `pass_fds`), the lab's app is
named in the environment (apps.from_environment reads it), and this wrapper
forwards every signal it gets to the peer's master and waits for it, so
`daemonlab serve --server gunicorn-sync` answers HUP, TTIN, QUIT... with
the peer's own meaning. The peer runs in a process group of its own: a
terminal's ^C reaches it once, through the wrapper, not twice.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
from typing import Any

from lab import children
from lab.daemon.signals import SignalWakeup
from lab.experiments.prefork import apps
from lab.experiments.prefork.config import ServeConfig
from lab.experiments.prefork.master import SIGNALS as MASTER_SIGNALS

__all__ = ["run"]


def run(argv: list[str], config: ServeConfig, sock: socket.socket, server: Any) -> int:
    """Run the peer `argv` on `sock` until it exits; its exit code."""
    env = {**os.environ, apps.APP_ENV: config.app}
    if config.count:
        env[apps.COUNT_ENV] = config.count
    if server is not None:
        env[apps.DB_ENV] = apps.server_url(server)
    # Every signal the lab's master answers is passed on as it comes; SIGCHLD is the
    # wrapper's own (the peer has exited).
    wakeup = SignalWakeup(MASTER_SIGNALS)
    proc = subprocess.Popen(
        argv,
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
