"""uWSGI, the other peer: `pyuwsgi` from PyPI (uWSGI built as a Python extension), preforking.

uWSGI (https://uwsgi-docs.readthedocs.io) is the C server many Python sites
run: with `--master --processes N` it is the same design as the lab's
master (bind, fork N workers that accept on one socket, supervise), with
the HTTP parsing and the response's writing in C and only the app in
Python. Its `--http-socket fd://N` takes the socket the lab bound.

Two setups (config.SETUPS):

    default   its quickstart: `--master --processes N`, N as the lab asks;
              every request logged to stderr (uWSGI's default), one
              interpreter per app mount point (its default)
    tuned     as its docs and its users tune it: (2 x cores) + 1 processes,
              `--disable-logging` (no line per request), `--single-interpreter`,
              `--thunder-lock` (accept() serialised: "Serializing accept(), AKA
              Thundering Herd" in its docs)

Both say `--die-on-term`: uWSGI 2.0 answers TERM with a reload, not a stop
("Things to know" in its docs), and the lab stops its servers with TERM.
What uWSGI does per request: accept, parse in C, build the environ, call
the app, write, close at once (no drain: with unread bytes the kernel may
answer with RST, see docs/prefork.md). It sends no Date header of its own.
"""

from __future__ import annotations

import importlib.util
import shutil
import socket
import sys
from pathlib import Path
from typing import Any

from lab.errors import LabError
from lab.experiments.prefork import peers
from lab.experiments.prefork.config import ServeConfig

__all__ = ["TUNING", "command", "serve"]

#: What `tuned` adds to the quickstart's command line (see the module notes).
TUNING = ("--disable-logging", "--single-interpreter", "--thunder-lock")
#: uWSGI's entry point is a module-level callable; the lab's app is built by a call.
ENTRY = "import lab.experiments.prefork.apps as apps; application = apps.from_environment()"


def _binary() -> str | None:
    return shutil.which("uwsgi", path=str(Path(sys.executable).parent))


def command(config: ServeConfig, fd: int) -> list[str]:
    """The uWSGI command line for `config`, serving HTTP on descriptor `fd`."""
    argv = [
        _binary() or "uwsgi",
        "--http-socket", f"fd://{fd}",
        "--master",
        "--processes", str(config.workers),
        "--eval", ENTRY,
        "--die-on-term",
    ]  # fmt: skip
    return argv + list(TUNING) * (config.setup == "tuned")


def serve(config: ServeConfig, sock: socket.socket, server: Any) -> int:
    """Run uWSGI on `sock` until it exits; its exit code."""
    if importlib.util.find_spec("pyuwsgi") is None or _binary() is None:
        raise LabError("uWSGI is not installed here: pip install pyuwsgi")
    return peers.run(command(config, sock.fileno()), config, sock, server)
