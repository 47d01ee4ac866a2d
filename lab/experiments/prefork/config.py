"""What `daemonlab serve` is asked to run: one frozen ServeConfig, and its command line.

One description of a server serves four users: the CLI parses into it, the
master reads it, a master re-executed by USR2 gets it back as the same
command line (`argv()`), and the experiment starts every server it measures
from it. So the five servers cannot drift apart in what an option means.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass

from lab.errors import LabError

__all__ = ["APPS", "MAX_WORKERS", "SERVERS", "SETUPS", "ServeConfig"]

#: The servers, in the order the lesson compares them: the lab's own preforking
#: master, a thread pool, one event loop, and the peers Python users pick.
SERVERS = ("prefork", "threads", "asyncio", "gunicorn-sync", "gunicorn-gthread", "uwsgi")

#: How each server can be set up, beside `default` (what its users get as installed).
#: A peer's `tuned` is what its own docs tell an expert to set (gunicorn.py, uwsgi.py);
#: the lab's `linger` closes as gunicorn does since 23 (RFC 9112 §9.6: shutdown the
#: write side, read to the client's FIN), and gunicorn's `abrupt` is the reverse (its
#: drain patched out, gunicorn_abrupt.py), so the one wait is measured on each side.
SETUPS = {
    "prefork": ("default", "linger"),
    "threads": ("default",),
    "asyncio": ("default",),
    "gunicorn-sync": ("default", "tuned", "abrupt"),
    "gunicorn-gthread": ("default", "tuned"),
    "uwsgi": ("default", "tuned"),
}

#: The built-in WSGI apps (apps.py); `module:callable` names any other one.
APPS = ("hello", "cpu", "io")

#: The scoreboard has room for twice this many workers: a HUP starts a full
#: new set while the old one finishes (scoreboard.py).
MAX_WORKERS = 128


@dataclass(frozen=True)
class ServeConfig:
    server: str = "prefork"
    workers: int = 2  # processes (prefork, gunicorn) or threads (threads); asyncio has one loop
    threads: int = 4  # threads per gunicorn-gthread worker
    app: str = "hello"
    host: str = "127.0.0.1"
    port: int = 8000
    timeout: float = 30.0  # a worker silent this long is killed; a graceful stop waits this long
    pid: str | None = None  # the master's pidfile (PID.oldbin while a USR2 child runs)
    no_db: bool = False  # the io app sleeps in Python instead of SELECT SLEEP on MySQL
    live: bool = False
    count: str | None = None  # a file the app appends one byte to per request it answers
    setup: str = "default"  # SETUPS: as installed, as tuned by experts, or one wait changed

    def __post_init__(self) -> None:
        if self.server not in SERVERS:
            raise LabError(
                f"--server: unknown server {self.server!r} (choose from {', '.join(SERVERS)})"
            )
        if not 1 <= self.workers <= MAX_WORKERS:
            raise LabError(f"--workers must be from 1 to {MAX_WORKERS}, got {self.workers}")
        if self.threads < 1:
            raise LabError(f"--threads must be at least 1, got {self.threads}")
        if not 0 <= self.port <= 65535:
            raise LabError(f"--port must be from 0 to 65535, got {self.port}")
        if not self.timeout > 0:
            raise LabError(f"--timeout must be greater than 0, got {self.timeout}")
        if self.app not in APPS and ":" not in self.app:
            raise LabError(
                f"--app: unknown app {self.app!r} (choose from {', '.join(APPS)}, "
                "or name one as module:callable)"
            )
        if self.setup not in SETUPS[self.server]:
            raise LabError(
                f"--setup: {self.server} has no setup {self.setup!r} "
                f"(choose from {', '.join(SETUPS[self.server])})"
            )
        if self.live and self.server != "prefork":
            raise LabError("--live shows a prefork master and its workers: use --server prefork")

    def argv(self, python: str = sys.executable) -> list[str]:
        """The command line that runs this config: what USR2 re-executes, what the lab starts."""
        args = [python, "-m", "lab", "serve", "--server", self.server]
        args += ["--workers", str(self.workers), "--threads", str(self.threads)]
        args += ["--app", self.app, "--host", self.host, "--port", str(self.port)]
        args += ["--timeout", f"{self.timeout:g}", "--setup", self.setup]
        if self.pid:
            args += ["--pid", self.pid]
        if self.count:
            args += ["--count-file", self.count]
        if self.no_db:
            args.append("--no-db")
        if self.live:
            args.append("--live")
        return args
