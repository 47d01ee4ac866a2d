"""gunicorn, the peer: started as a subprocess on the socket the lab bound, the same app.

gunicorn (https://gunicorn.org, a dependency from PyPI) is what Python users
run where Ruby users run Unicorn, and its arbiter is the same design as the
lab's master: bind, fork workers, supervise. Two of its worker classes:

    sync      one request at a time per process, connection closed after it
              (Unicorn's model, and the lab's prefork worker's)
    gthread   a thread pool per process with a reactor for kept-alive
              connections (the lab's threads server, in each of N processes)

Three setups (config.SETUPS), each a labelled row in the comparison:

    default   what `pip install gunicorn` runs: the pure-Python HTTP parser
              (`--http-parser python`, said out loud since this lab installs
              gunicorn_h1c, which `auto` would pick), the heartbeat file in
              the temporary directory (/tmp), the workers the lab asks for
    tuned     as gunicorn's docs tune it: (2 x cores) + 1 workers (the
              experiment counts the server's cores), `--worker-tmp-dir
              /dev/shm` (the heartbeat's utime on a memory file system, "Blocking
              OS calls" in its FAQ), `--http-parser fast` (gunicorn_h1c, the C
              parser that `gunicorn[fast]` installs)
    abrupt    the default with its close drain patched out (gunicorn_abrupt.py):
              what the RFC 9112 §9.6 wait costs gunicorn

What a sync worker does per request, read in gunicorn 27's workers/sync.py,
http/message.py and http/wsgi.py: touch its heartbeat file, accept, parse
and validate the request into objects, build the environ, call the app,
write head and body in two calls, then close gracefully (shutdown, read to
the client's FIN: one more round trip with `Connection: close`).

The lab binds the socket (so a port in use is refused in the same one line
for every server, and port 0 tells us the port) and hands it over as `--bind
fd://N`; peers.py runs the command and forwards signals (TERM is graceful
for gunicorn).
"""

from __future__ import annotations

import importlib.util
import socket
import sys
from typing import Any

from lab.errors import LabError
from lab.experiments.prefork import peers
from lab.experiments.prefork.config import ServeConfig

__all__ = ["PARSER", "WORKER_CLASS", "command", "serve"]

WORKER_CLASS = {"gunicorn-sync": "sync", "gunicorn-gthread": "gthread"}
#: The HTTP parser of each setup: what a plain install gets, and the C one experts add.
PARSER = {"default": "python", "abrupt": "python", "tuned": "fast"}

APP = "lab.experiments.prefork.apps:from_environment()"


def command(config: ServeConfig, fd: int) -> list[str]:
    """The gunicorn command line for `config`, serving on descriptor `fd`."""
    sync = WORKER_CLASS[config.server] == "sync"
    argv = [
        sys.executable, "-m", "gunicorn",
        "--bind", f"fd://{fd}",
        "--workers", str(config.workers),
        "--worker-class", WORKER_CLASS[config.server],
        # gunicorn turns a sync worker with threads > 1 into gthread: 1 keeps it sync.
        "--threads", "1" if sync else str(config.threads),
        "--timeout", str(max(1, round(config.timeout))),
        "--graceful-timeout", str(max(1, round(config.timeout))),
        "--log-level", "warning",
        "--http-parser", PARSER[config.setup],
    ]  # fmt: skip
    if config.setup == "tuned":
        argv += ["--worker-tmp-dir", "/dev/shm"]
    if config.setup == "abrupt":
        argv += ["-c", "python:lab.experiments.prefork.gunicorn_abrupt"]
    return [*argv, APP]


def serve(config: ServeConfig, sock: socket.socket, server: Any) -> int:
    """Run gunicorn on `sock` until it exits; its exit code."""
    if importlib.util.find_spec("gunicorn") is None:
        raise LabError("gunicorn is not installed here: pip install gunicorn")
    if config.setup == "tuned" and importlib.util.find_spec("gunicorn_h1c") is None:
        raise LabError("--setup tuned needs gunicorn's C parser: pip install gunicorn_h1c")
    return peers.run(command(config, sock.fileno()), config, sock, server)
