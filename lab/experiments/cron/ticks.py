"""Ticks at a rate, three ways: a fresh interpreter each (cron), or a daemon already waiting.

`cron_ticks` starts each tick the way Debian's cron does (cron(8), crontab(5)):
`/bin/sh -c COMMAND` with the environment cron gives a job (SHELL=/bin/sh,
PATH=/usr/bin:/bin, HOME and LOGNAME of the user, nothing else: no
PYTHONPATH, no virtualenv, so the command names the lab's interpreter in
full), without waiting for the tick before (cron does not). Each tick is
posix_spawn'ed, and reaped by a thread of its own with os.wait4, whose
rusage is the tick's whole bill: CPU of sh and python, peak memory.

`daemon_ticks` sends the same ticks to a daemon started once before: an
RPUSH of "ID TICK_NS" to the list it BLPOPs, or a real-time signal. Its CPU
is read from /proc before and after (usage.on_cpu_s: nanoseconds), its
memory is what it holds resident the whole time.

`idle` watches a daemon with no work: what it costs to be up. The cron
lesson's crossing point rests on that figure (crossing.py).
"""

from __future__ import annotations

import os
import re
import secrets
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lab import children, services, usage, work
from lab.errors import LabError, last_line
from lab.experiments.cron.child import WORK_SIGNAL

__all__ = ["ROOT", "Daemon", "cron_env", "cron_ticks", "daemon_ticks", "idle", "tick_command"]

ROOT = Path(__file__).resolve().parents[3]  # the checkout: cron's command does `cd` here
#: How long the last tick's job may take after it was sent (a cold interpreter on a loaded machine).
TAIL_S = 30.0
START_TIMEOUT_S = 30.0
SETTLE_S = 0.1


def cron_env() -> dict[str, str]:
    """The environment Debian's cron gives a job (crontab(5)): these four, and the
    crontab's own assignments (here: where Redis is, which the lab reads)."""
    import pwd

    user = pwd.getpwuid(os.getuid())
    return {
        "SHELL": "/bin/sh",
        "PATH": "/usr/bin:/bin",
        "HOME": user.pw_dir,
        "LOGNAME": user.pw_name,
        "LAB_REDIS_URL": services.url("redis"),
    }


def tick_command(job: str, job_id: str, ticked: int, ledger: str) -> str:
    """The crontab line's command: cd to the checkout, the lab's own interpreter, -m."""
    return (
        f"cd {ROOT} && {sys.executable} -m lab.experiments.cron.child tick --job {job}"
        f" --id {job_id} --tick {ticked} --ledger {ledger}"
    )


@dataclass
class Tick:
    """One cron tick: sent at `ticked`; its bill once reaped."""

    ticked: int
    pid: int
    ended: int = 0
    status: int = 0
    cpu_s: float = 0.0
    peak_mb: float = 0.0
    done: threading.Event = field(default_factory=threading.Event)

    def reap(self) -> None:
        _, status, rusage = os.wait4(self.pid, 0)
        self.ended = work.stamp()
        self.status = children.exit_code(status)
        self.cpu_s = usage.rusage_cpu_s(rusage)
        self.peak_mb = usage.rusage_peak_mb(rusage)
        self.done.set()


def _schedule(rate: float, duration: float) -> list[float]:
    """Seconds from now of each tick: a fixed period, as cron's minute (at least two ticks)."""
    count = max(2, round(rate * duration))
    return [n / rate for n in range(count)]


def cron_ticks(conn, ns: str, job: str, rate: float, duration: float) -> dict[str, Any]:
    """Ticks at `rate` per second, a fresh `sh -c python ...` each; figures per tick."""
    ledger = f"{ns}:ledger"
    env = cron_env()
    ticks: list[Tick] = []
    with tempfile.TemporaryFile() as err:
        actions = [
            (os.POSIX_SPAWN_DUP2, err.fileno(), 1),
            (os.POSIX_SPAWN_DUP2, err.fileno(), 2),
            (os.POSIX_SPAWN_OPEN, 0, os.devnull, os.O_RDONLY, 0),
        ]
        began = time.monotonic()
        try:
            for n, at in enumerate(_schedule(rate, duration)):
                time.sleep(max(0.0, began + at - time.monotonic()))
                ticked = work.stamp()
                command = tick_command(job, f"{ns}-{n}", ticked, ledger)
                pid = os.posix_spawn(
                    "/bin/sh", ["/bin/sh", "-c", command], env, file_actions=actions
                )
                tick = Tick(ticked, pid)
                threading.Thread(target=tick.reap, name=f"reap-{pid}", daemon=True).start()
                ticks.append(tick)
        finally:
            for tick in ticks:  # on Ctrl-C too: every tick is reaped before we go
                if not tick.done.wait(TAIL_S):
                    children.signal_pids([tick.pid], 9)
                    tick.done.wait(TAIL_S)
        failed = [t for t in ticks if t.status != 0]
        if failed:
            err.seek(0)
            last = last_line(err.read().decode(errors="replace"))
            raise LabError(
                f"{len(failed)} of {len(ticks)} cron ticks failed (exit {failed[0].status}): {last}"
            )
    entries = _entries(conn, ledger, len(ticks))
    lifetimes = [(t.ended - t.ticked) / 1e9 for t in ticks]
    peak = _median([t.peak_mb for t in ticks])
    return {
        "jobs": len(ticks),
        **work.pickup([e.pickup_ns for e in entries]),
        "cpu_ms_per_job": round(1000 * _median([t.cpu_s for t in ticks]), 3),
        "rss_mb": round(peak, 1),
        "mb_s_per_job": round(peak * _median(lifetimes), 3),
        "boot_ms": round(_median([(e.booted - e.queued) / 1e6 for e in entries]), 2),
        "import_ms": round(_median([(e.ready - e.booted) / 1e6 for e in entries]), 2),
        "lifetime_ms": round(1000 * _median(lifetimes), 1),
    }


@dataclass
class Daemon:
    """A waiting daemon (child.py wait ...), started once; `send()` is one tick to it."""

    how: str  # "redis" or "signal"
    ns: str
    job: str
    wake: float
    proc: subprocess.Popen | None = None
    sent: list[int] = field(default_factory=list)
    start_s: float = 0.0
    err: Any = None  # its stderr: a temporary file, read when it fails

    @property
    def ledger(self) -> str:
        return f"{self.ns}:ledger"

    @property
    def queue(self) -> str:
        return f"{self.ns}:queue"

    def start(self) -> None:
        import select

        command = [
            sys.executable,
            "-m",
            "lab.experiments.cron.child",
            "wait",
            self.how,
            "--job",
            self.job,
            "--queue",
            self.queue,
            "--ledger",
            self.ledger,
            "--prefix",
            f"{self.ns}-s",
            "--wake",
            str(self.wake),
        ]
        began = time.perf_counter()
        # cron's environment and folder for the daemon too: only how the job starts differs.
        self.err = tempfile.TemporaryFile()
        try:
            self.proc = subprocess.Popen(
                command, stdout=subprocess.PIPE, stderr=self.err, env=cron_env(), cwd=ROOT
            )
        except OSError:
            self.err.close()
            raise
        if (
            not select.select([self.proc.stdout], [], [], START_TIMEOUT_S)[0]
            or not self.proc.stdout.readline()
        ):
            raise LabError(f"the {self.how} daemon did not start: {self.last_words()}")
        self.start_s = time.perf_counter() - began

    def last_words(self) -> str:
        self.err.seek(0)
        return last_line(
            self.err.read().decode(errors="replace"), f"no word within {START_TIMEOUT_S:g}s"
        )

    def send(self, conn) -> None:
        ticked = work.stamp()
        if self.how == "redis":
            conn.rpush(self.queue, f"{self.ns}-r{len(self.sent)} {ticked}")
        else:
            os.kill(self.proc.pid, WORK_SIGNAL)
        self.sent.append(ticked)

    def stop(self, conn) -> None:
        if self.proc is None:
            return
        if self.how == "redis":  # a daemon blocked in BLPOP with no timeout sees this at once
            _quietly(lambda: conn.rpush(self.queue, "stop 0"))
            try:  # and leaves: a TERM now would land in its finalization, where
                self.proc.wait(children.GRACE_S)  # Python has put TERM's default back
            except subprocess.TimeoutExpired:
                pass  # not answering: TERM, a grace, KILL
        children.stop_popen(self.proc)
        self.err.close()
        self.proc = None

    def cpu_s(self) -> float:
        return usage.on_cpu_s(self.proc.pid)


def daemon_ticks(conn, daemon: Daemon, rate: float, duration: float) -> dict[str, Any]:
    """Ticks at `rate` per second to a daemon already up; figures per job."""
    first = len(daemon.sent)
    cpu0 = daemon.cpu_s()
    began = time.monotonic()
    for at in _schedule(rate, duration):
        time.sleep(max(0.0, began + at - time.monotonic()))
        daemon.send(conn)
    sent = daemon.sent[first:]
    entries = _entries(conn, daemon.ledger, len(daemon.sent))[first:]
    cpu = daemon.cpu_s() - cpu0
    rss = usage.rss_mb(daemon.proc.pid)
    if daemon.how == "signal":  # the n-th signal is the n-th job: the tick moment is ours
        pickups = [e.start - t for e, t in zip(entries, sent, strict=True)]
    else:
        pickups = [e.pickup_ns for e in entries]
    return {
        "jobs": len(sent),
        **work.pickup(pickups),
        "cpu_ms_per_job": round(1000 * cpu / len(sent), 3),
        "rss_mb": round(rss, 1),
        "mb_s_per_job": round(rss / rate, 3),  # held all along: 1/rate seconds of it per job
        "start_s": round(daemon.start_s, 3),
    }


def idle(daemon: Daemon, seconds: float) -> dict[str, Any]:
    """A daemon with nothing to do for `seconds`: its CPU per second, what it holds."""
    time.sleep(SETTLE_S)  # its last steps after saying "ready" are start-up, not idling
    cpu0, began = daemon.cpu_s(), time.monotonic()
    time.sleep(seconds)
    cpu, window = daemon.cpu_s() - cpu0, time.monotonic() - began
    return {
        "seconds": round(window, 2),
        "idle_cpu_ms_per_s": round(1000 * cpu / window, 5),
        "rss_mb": round(usage.rss_mb(daemon.proc.pid), 1),
    }


def _entries(conn, ledger: str, count: int) -> list[work.Entry]:
    """The first `count` lines of the ledger, waiting up to TAIL_S for the last to arrive."""
    deadline = time.monotonic() + TAIL_S
    while conn.llen(ledger) < count:
        if time.monotonic() > deadline:
            raise LabError(
                f"{count - conn.llen(ledger)} of {count} jobs did not run within {TAIL_S:g}s"
            )
        time.sleep(0.002)
    lines = conn.lrange(ledger, 0, count - 1)
    entries = [work.Entry.parse(line) for line in lines]
    return sorted(entries, key=lambda e: _number(e.job_id))


def _number(job_id: str) -> int:
    """The tick's number at the end of a job id (NS-7, NS-r7, NS-s-7): the order sent."""
    return int(re.search(r"(\d+)$", job_id).group(1))


def _median(values: list[float]) -> float:
    import statistics

    return statistics.median(values) if values else float("nan")


def _quietly(call) -> None:
    import redis

    try:
        call()
    except (redis.ConnectionError, redis.TimeoutError):
        pass


def namespace() -> str:
    return f"daemonlab-c-{secrets.token_hex(4)}"
