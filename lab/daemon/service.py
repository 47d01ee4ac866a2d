"""A daemon's life around its main loop: detached (after steps.launch) or in the foreground.

Every daemon of the lab (the harness, the job worker) has a main loop
`serve(ready) -> exit code` that calls `ready()` once it holds everything it
needs. This module is what runs around that loop, written once:

- `serve_detached`: in the process steps.launch made (steps 1-13 done): log
  to fd 2 (the log file by now), run the loop, tell the launcher why not if
  it refused to start, and release the pidfile whatever happened.
- `serve_foreground`: new-style (`man 7 daemon`): no fork, no setsid; the
  umask, the locked pidfile, the user, the log on fds 1 and 2, the loop.
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Callable

from lab.daemon import steps
from lab.errors import LabError

__all__ = ["Serve", "log_to_stderr", "serve_detached", "serve_foreground"]

#: A daemon's main loop: serve(ready) runs until it stops, calls ready() once it runs.
Serve = Callable[[Callable[[], None]], int]


def log_to_stderr(logger: str, tag: str) -> None:
    """`logger` writes to fd 2 (the log once daemonized), each line tagged `tag[pid]`."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(
        logging.Formatter(f"%(asctime)s {tag}[%(process)d] %(levelname)s %(message)s")
    )
    root = logging.getLogger(logger)
    root.handlers[:] = [handler]
    root.setLevel(logging.INFO)
    root.propagate = False


def serve_detached(
    detached: steps.Detached, serve: Serve, *, logger: str, tag: str, refused: int
) -> int:
    """The daemon's life after steps 1-13; tells the launcher when it runs, or why not."""
    log_to_stderr(logger, tag)
    try:
        return serve(lambda: steps.report_ready(detached.ready))
    except LabError as exc:
        detached.ready.failed(str(exc))  # only heard if we were not ready yet
        logging.getLogger(logger).error("cannot run: %s", exc)
        return refused
    finally:
        detached.pidfile.release()


def serve_foreground(
    serve: Serve,
    *,
    pidfile: str,
    log: str | None,
    umask: int,
    user: str | None,
    logger: str,
    tag: str,
) -> int:
    """New-style (`man 7 daemon`): no fork, no setsid; umask, pidfile, user, log, the loop."""
    steps.set_umask(umask)
    held = steps.take_pidfile(pidfile)
    try:
        steps.drop_privileges(user)
        if log is not None:
            fd = steps.open_log(log)
            os.dup2(fd, 1)
            os.dup2(fd, 2)
            os.close(fd)
        log_to_stderr(logger, tag)
        return serve(lambda: None)
    finally:
        held.release()
