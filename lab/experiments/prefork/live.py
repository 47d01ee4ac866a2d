"""`daemonlab serve --live`: the master and its workers on screen, as signals arrive.

What a workshop projects while someone sends signals from another terminal:
one row for the master and one per worker (pid, state, requests served,
resident memory, age), and the signals as they came, each with what the
master did about it. `kill -TTIN <master>` and a row appears; `kill -9
<worker>` and its row is replaced by a new pid.

Two rules from the master's side of the screen:
- No refresh thread. rich's Live refreshes from a thread of its own by
  default, and a master that forks must have no other thread (only the
  forking thread survives a fork, and a lock another thread held stays
  locked in the child: the fork experiment's facts 4 and 5). The master's
  loop draws a frame on each tick instead (auto_refresh=False).
- A resize of the terminal sends WINCH to the whole foreground group; the
  master ignores WINCH while stdin is a terminal (master.handle_winch).

`snapshot` reads (psutil for memory); `render` only draws, so a test can
render a snapshot to a string. The master's events say a worker died (CHLD);
its successor, forked by the master's loop, is seen here as a new pid in the
same slot (`replacements`), and said as an event of its own.
"""

from __future__ import annotations

import os
import time
from typing import TYPE_CHECKING, Any

from lab.experiments.prefork.scoreboard import SERVING

if TYPE_CHECKING:
    from rich.console import Console, RenderableType

    from lab.experiments.prefork.master import Master

__all__ = ["LiveView", "render", "replacements", "snapshot"]


def snapshot(master: Master) -> dict[str, Any]:
    """What the screen shows, read now: the master, its workers, its recent events."""
    now = time.monotonic()
    workers = []
    for proc in sorted(master.workers.values(), key=lambda p: p.slot):
        slot = master.board.read(proc.slot)
        state = "retiring" if proc.retiring and slot.state in SERVING else slot.state
        workers.append(
            {
                "name": f"w[{proc.slot}]",
                "pid": proc.pid,
                "state": state,
                "served": slot.served,
                "rss_mb": _rss_mb(proc.pid),
                "age_s": now - proc.born,
                "generation": proc.generation,
            }
        )
    return {
        "master": {
            "name": "oldbin" if master.reexec_pid else "master",
            "pid": os.getpid(),
            "state": master.state,
            "served": master.served(),
            "rss_mb": _rss_mb(os.getpid()),
            "age_s": now - master.started,
            "generation": master.generation,
        },
        "workers": workers,
        "target": master.target,
        "events": [(now - at, what, text) for at, what, text in master.events],
    }


def render(snap: dict[str, Any]) -> RenderableType:
    """The frame for `snap`: a process table, then the latest signals."""
    from rich import box
    from rich.console import Group
    from rich.table import Table

    title = f"prefork: {len(snap['workers'])} workers (target {snap['target']})"
    procs = Table(title=title, title_justify="left", box=box.SIMPLE_HEAD)
    rows = [snap["master"], *snap["workers"]]
    for header in ("process", "pid", "state", "served", "RSS MB", "age s", "gen"):
        procs.add_column(header, justify="left" if header in ("process", "state") else "right")
    for row in rows:
        procs.add_row(
            row["name"],
            str(row["pid"]),
            row["state"],
            f"{row['served']:,}",
            "-" if row["rss_mb"] is None else f"{row['rss_mb']:.1f}",
            f"{row['age_s']:.1f}",
            str(row["generation"]),
        )
    events = Table(title="signals, newest last", title_justify="left", box=box.SIMPLE_HEAD)
    events.add_column("s ago", justify="right")
    events.add_column("signal")
    events.add_column("what the master did", overflow="fold")
    for ago, what, text in snap["events"]:
        events.add_row(f"{ago:.1f}", what, text)
    return Group(procs, events)


def replacements(before: dict[str, int], workers: list[dict[str, Any]]) -> list[str]:
    """A line for each slot whose worker is a new process since `before` (slot -> pid)."""
    return [
        f"{w['name']}: new worker, pid {w['pid']}, in place of pid {before[w['name']]}"
        for w in workers
        if before.get(w["name"], w["pid"]) != w["pid"]
    ]


class LiveView:
    """A rich Live display the master's loop refreshes (master.show)."""

    def __init__(self, console: Console | None = None) -> None:
        from rich.live import Live

        self.pids: dict[str, int] = {}  # each slot's worker in the last frame
        self.live = Live(
            console=console,
            auto_refresh=False,  # no refresh thread in a process that forks (module notes)
            redirect_stdout=False,
            redirect_stderr=False,
        )

    def __call__(self, master: Master) -> None:
        if not self.live.is_started:  # the first frame comes after `listening on ...`
            self.live.start()
        snap = snapshot(master)
        new = replacements(self.pids, snap["workers"])
        for line in new:
            master.record("fork", line)
        self.pids = {w["name"]: w["pid"] for w in snap["workers"]}
        self.live.update(render(snapshot(master) if new else snap), refresh=True)

    def close(self) -> None:
        self.live.stop()


def _rss_mb(pid: int) -> float | None:
    import psutil

    try:
        return psutil.Process(pid).memory_info().rss / 1e6
    except psutil.Error:  # ended between the master's look and ours
        return None
