"""The run of the managers lesson: every manager through every event, or be the daemon.

`measure` is what run() hands to lab.runs.collect. With --daemon this process
is the daemon under test (the harness's run child, see harness.py); otherwise
each manager asked for is found (or said missing) and put through kill -9,
the crash loop and the stop (events.py), one record each.
"""

from __future__ import annotations

import importlib
import os
import shlex
import sys
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from lab.errors import LabError
from lab.runs import Session

if TYPE_CHECKING:
    from lab.experiments.managers import Params
    from lab.experiments.managers.manager import Manager

__all__ = ["PATIENCE_S", "RESTART_VARIANTS", "be_the_daemon", "manager", "measure"]

#: Managers that differ from another only in how soon they restart (circus at check_delay
#: 0.1, the harness exec'ing a fresh interpreter): they take part in the kill -9 alone.
RESTART_VARIANTS = ("circus-fast", "lab-exec")
#: How long a kill may wait for the new daemon before it counts as not restarted:
#: monit's cycle, plus a zombie cycle (see monit.py), plus a loaded machine.
PATIENCE_S = 10.0


def manager(name: str) -> type[Manager]:
    """The class that drives the manager called `name` (MANAGERS: its module and class)."""
    from lab.experiments.managers import MANAGERS  # the lesson imports this module as it loads

    module, cls = MANAGERS[name]
    return getattr(importlib.import_module(f"lab.experiments.managers.{module}"), cls)


def measure(params: Params, session: Session) -> Iterator[dict[str, Any]]:
    if params.daemon:
        yield from be_the_daemon(params.daemon, params.exec_daemon)
        return
    from lab.experiments.managers import events

    session.env["missing"] = {}
    plan = [
        (name, event)
        for name in params.manager
        for event in params.event
        if event == "kill-9" or name not in RESTART_VARIANTS
    ]
    total, done = len(plan), 0
    for name in params.manager:
        cls = manager(name)
        why = cls.missing()
        if why is not None:
            session.env["missing"][name] = why
        for event in [e for n, e in plan if n == name]:
            session.step(done, total, f"{name}: {event}")
            done += 1
            if why is not None:
                yield {"part": event, "manager": name, "event": event, "skipped": why,
                       "final_state": "missing", "notes": why}  # fmt: skip
            elif event == "kill-9":
                yield events.kill_9(cls, params.repeat, params.uptime, PATIENCE_S)
            elif event == "crash-loop":
                yield _with_backoff(events.crash_loop(cls, params.window))
            else:
                yield events.stop(cls)
    session.step(done, total, "done")


def _with_backoff(record: dict[str, Any]) -> dict[str, Any]:
    """The gaps between starts, readable in a table: "1.1 2.3" (seconds)."""
    record["backoff"] = " ".join(f"{gap / 1000:.1f}" for gap in record["gaps_ms"]) or "-"
    return record


def be_the_daemon(options: str, fresh: bool) -> Iterator[dict[str, Any]]:
    """This process becomes the daemon under test (the harness's run child does this):
    in process, warm, or (`fresh`) by exec of a new interpreter, as other managers do."""
    # Imported here, not above: in the harness's warm run child every import is part of
    # the daemon's start (fork>READY in the kill -9 table), and the measuring side's
    # (events.py, psutil) would be weight it carries for nothing.
    from lab.experiments.managers import daemon

    if fresh:
        from lab.daemon import steps

        # What a manager's fork + exec starts from: default signal dispositions and an
        # empty mask (both survive exec; the harness's run child has handlers of its own).
        steps.reset_signal_handlers()
        steps.reset_signal_mask()
        argv = [sys.executable, "-m", daemon.__name__, *shlex.split(options)]
        os.execv(sys.executable, argv)
    code = daemon.main(shlex.split(options))
    if code:
        raise LabError(f"the daemon exited {code}")
    yield from ()
