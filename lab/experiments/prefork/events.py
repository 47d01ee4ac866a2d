"""Zero downtime, measured: a signal sent to the master under load, and what it cost.

For each event, a fresh prefork server and a fresh load (LOAD_S seconds,
one connection per request: a sync worker closes each one anyway); AT_S
into the load the event happens, and a watcher reads /proc every
millisecond until the master has recovered:

    HUP          every worker replaced by a fresh one (the app reloaded first)
    USR2         a new master with all its workers up, then QUIT to the old
                 one, until the old master is gone: the new one serves alone
    TTIN, TTOU   one worker more, one fewer
    kill-worker  kill -9 of one worker, until its successor has booted

`failed` is every request the load generator saw fail (refused, reset,
timed out, not 200) in the whole run. HUP, USR2 and TTIN/TTOU should cost
none: the socket is never closed while anyone serves (listener.py), and a
retired worker finishes the request in hand. A worker killed with -9 takes
the request it was answering with it: that one is counted, not hidden. What
it had in hand is read before the kill (the worker is stopped, its
connections counted, then killed: `in_hand`), so the record says what the
kill cost: under load a worker is nearly always busy (wrk's connections
queue on the socket), and a busy worker's kill fails its one request (not
if it had just answered and not yet closed); the connections still queued
on the socket are the kernel's and lose nothing.
`recovery_ms` is from the signal to recovered, as seen from outside.
"""

from __future__ import annotations

import os
import secrets
import signal
import subprocess
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

from lab.daemon.pidfile import holder
from lab.experiments.prefork import launch
from lab.experiments.prefork.config import ServeConfig
from lab.experiments.prefork.launch import Launched, ready_workers, wait_for, worker_pids
from lab.experiments.prefork.load import Load
from lab.experiments.prefork.placement import Placement

__all__ = ["AT_S", "EVENTS", "LOAD_S", "measure", "sockets_of"]

EVENTS = ("HUP", "USR2", "TTIN", "TTOU", "kill-worker")
#: Seconds of load around each event (wrk counts whole seconds).
LOAD_S = 2
#: The event comes this far into the load: every connection is busy by then.
AT_S = 0.5
#: A master not recovered by then has failed to: recovery_ms is left empty.
RECOVERY_TIMEOUT_S = 10.0


def measure(
    event: str, config: ServeConfig, *, clients: int, tool: str, where: Placement, tmp: Path
) -> dict[str, Any]:
    pidfile = tmp / f"prefork-{secrets.token_hex(4)}.pid"
    config = replace(config, server="prefork", pid=str(pidfile))
    server = launch.start(config, tmp, where.server)
    try:
        wait_for(lambda: len(ready_workers(server.master)) == config.workers)
        load = Load(tool, server.url, clients, LOAD_S, False, where.load)
        try:
            time.sleep(AT_S)
            fired = FIRE[event](server, config.workers)
        except BaseException:
            load.stop()
            raise
        result = load.result()
    finally:
        server.stop()
    return {
        "part": "events",
        "event": event,
        "failed": result.errors,
        "recovery_ms": fired.pop("recovery_ms"),
        "requests": result.requests,
        "p99_ms": result.p99_ms,
        "workers": config.workers,
        "concurrency": clients,
        "load": result.tool,
        "placement": where.describe(),
        **fired,  # detail, and what else the event knows (in_hand)
    }


def _after(sent_ns: int, recovered: bool) -> float | None:
    return (time.perf_counter_ns() - sent_ns) / 1e6 if recovered else None


def _fired(recovery_ms: float | None, detail: str, **more: Any) -> dict[str, Any]:
    return {"recovery_ms": recovery_ms, "detail": detail, **more}


def _hup(server: Launched, n: int) -> dict[str, Any]:
    old = set(worker_pids(server.master))
    sent = _send(server.master, signal.SIGHUP)

    def all_fresh() -> bool:
        none_old = not old & set(worker_pids(server.master))
        return none_old and len(ready_workers(server.master)) == n

    return _fired(_after(sent, wait_for(all_fresh, RECOVERY_TIMEOUT_S)), f"{n} workers, all fresh")


def _usr2(server: Launched, n: int) -> dict[str, Any]:
    old_master = server.master
    sent = _send(old_master, signal.SIGUSR2)

    def new_master_serves() -> bool:
        pid = holder(server.config.pid)  # who holds its lock: the truth, not the text
        return pid not in (None, old_master) and len(ready_workers(pid)) == n

    if not wait_for(new_master_serves, RECOVERY_TIMEOUT_S):
        return _fired(None, "no new master came up")
    up_ms = _after(sent, True)
    server.master = holder(server.config.pid)  # ours to stop from now on (launch.Launched)
    os.kill(old_master, signal.SIGQUIT)
    try:
        server.proc.wait(RECOVERY_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        return _fired(None, f"the old master {old_master} did not leave")
    gone_ms = _after(sent, True)
    detail = (
        f"new master {server.master} serving after {up_ms:.0f} ms; "
        f"old master {old_master} gone after {gone_ms:.0f} ms"
    )
    return _fired(gone_ms, detail)


def _ttin(server: Launched, n: int) -> dict[str, Any]:
    sent = _send(server.master, signal.SIGTTIN)

    def one_more() -> bool:
        return len(ready_workers(server.master)) == n + 1

    return _fired(_after(sent, wait_for(one_more, RECOVERY_TIMEOUT_S)), f"workers {n} -> {n + 1}")


def _ttou(server: Launched, n: int) -> dict[str, Any]:
    sent = _send(server.master, signal.SIGTTOU)

    def one_fewer() -> bool:
        return len(worker_pids(server.master)) == n - 1

    return _fired(_after(sent, wait_for(one_fewer, RECOVERY_TIMEOUT_S)), f"workers {n} -> {n - 1}")


def _kill_worker(server: Launched, n: int) -> dict[str, Any]:
    victim = ready_workers(server.master)[0]
    # Stopped first, so what it holds cannot change while we look: a connection the
    # master does not hold is a client's, accepted and not yet closed (a sync worker
    # holds one at a time).
    os.kill(victim, signal.SIGSTOP)
    in_hand = len(sockets_of(victim) - sockets_of(server.master))
    sent = _send(victim, signal.SIGKILL)

    def replaced() -> bool:
        gone = victim not in worker_pids(server.master)
        return gone and len(ready_workers(server.master)) == n

    recovered = _after(sent, wait_for(replaced, RECOVERY_TIMEOUT_S))
    held = "a request in hand (lost, unless just answered)" if in_hand else "nothing in hand"
    return _fired(recovered, f"worker {victim} killed (-9) with {held}", in_hand=in_hand)


def sockets_of(pid: int) -> set[str]:
    """The sockets `pid` holds, by inode (/proc/PID/fd links read "socket:[INODE]")."""
    found = set()
    try:
        fds = os.listdir(f"/proc/{pid}/fd")
    except OSError:
        return found
    for fd in fds:
        try:
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
        except OSError:
            continue
        if target.startswith("socket:"):
            found.add(target)
    return found


def _send(pid: int, sig: signal.Signals) -> int:
    sent = time.perf_counter_ns()
    os.kill(pid, sig)
    return sent


FIRE: dict[str, Callable[[Launched, int], dict[str, Any]]] = {
    "HUP": _hup,
    "USR2": _usr2,
    "TTIN": _ttin,
    "TTOU": _ttou,
    "kill-worker": _kill_worker,
}
