"""Starting a server the way a user does (`daemonlab serve ...`), and watching it from outside.

The experiment, its benchmark and its tests never serve in their own
process: each server is `python -m lab serve` in a child, on port 0 (the
kernel picks a free port; helpers running tests at once never collide),
pinned where placement.py says, its stderr in a file (a pipe nobody reads
would fill and block the master's log), its stdout read for the one line
`listening on http://HOST:PORT`.

From outside, /proc is the truth: a worker is a child of its master whose
name (/proc/PID/comm, set by worker.set_name) says `prefork w[N]`, which it
takes once it has booted. `served()` is the app's own count (apps.Counted).
What a server spent is read there too (`cpu_seconds` over its `tree`: the
wrapper, the master, the workers), and what a peer runs with (`serving`:
its worker processes, and which HTTP parser their memory maps hold), so a
row's label is checked against the server itself, not against our argv.
"""

from __future__ import annotations

import http.client
import os
import select
import signal
import subprocess
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

from lab import children
from lab.errors import LabError, last_line
from lab.experiments.prefork import placement
from lab.experiments.prefork.config import ServeConfig

__all__ = [
    "STOP_SIGNAL",
    "Launched",
    "cpu_seconds",
    "ready_workers",
    "serving",
    "start",
    "tree",
    "wait_for",
    "worker_pids",
]

#: Starting may include a throwaway mariadbd for the io app (lab.db): seconds, not ms.
START_TIMEOUT_S = 60.0
#: The servers whose workers are processes (the others' are threads or one loop).
PROCESS_WORKERS = ("prefork", "gunicorn-sync", "gunicorn-gthread", "uwsgi")
#: How often a watcher looks at /proc: fine enough for a recovery measured in ms.
POLL_S = 0.001
#: Each server's graceful stop: Unicorn's QUIT for the lab's master, TERM for the rest
#: (gunicorn's graceful signal; the threads and asyncio servers finish in-flight work on it).
STOP_SIGNAL = {"prefork": signal.SIGQUIT}


@dataclass
class Launched:
    config: ServeConfig
    proc: subprocess.Popen
    url: str
    log: Path  # the server's stderr
    count: Path  # the app's count file
    master: int = field(init=False)  # changes after USR2 + QUIT: the new master serves

    def __post_init__(self) -> None:
        self.master = self.proc.pid

    def served(self) -> int:
        """Requests the app has answered so far."""
        try:
            return self.count.stat().st_size
        except FileNotFoundError:
            return 0

    def settled(self, quiet_s: float = 0.05, timeout: float = 2.0) -> int:
        """The count once it stops moving: answers to requests in flight land first."""
        deadline = time.monotonic() + timeout
        last = self.served()
        while time.monotonic() < deadline:
            time.sleep(quiet_s)
            now = self.served()
            if now == last:
                return now
            last = now
        return last

    def stop(self) -> int | None:
        """Stop it gracefully (bounded), then for sure; its exit code (None: not ours to reap)."""
        sig = STOP_SIGNAL.get(self.config.server, signal.SIGTERM)
        grace = self.config.timeout + 5
        if self.master != self.proc.pid:  # the USR2 master, adopted by us (a subreaper)
            code = children.stop_pid(self.master, grace)  # TERM: the load is over anyway
            children.stop_popen(self.proc)
            return code
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(grace)
            except subprocess.TimeoutExpired:
                pass
        return children.stop_popen(self.proc)

    def last_error(self) -> str:
        return last_line(self.log.read_text(errors="replace"), f"exit {self.proc.returncode}")


def start(
    config: ServeConfig,
    where: Path,
    cpus: tuple[int, ...] = (),
    env: dict[str, str] | None = None,
) -> Launched:
    """`daemonlab serve` for `config` on port 0, answering HTTP when this returns.

    `env` is added to the server's environment (LAB_MYSQL_URL: the experiment's server).
    """
    count = where / f"count-{os.getpid()}-{time.monotonic_ns()}"
    log = count.with_suffix(".log")
    config = replace(config, port=0, count=str(count))
    with open(log, "wb") as err:
        proc = subprocess.Popen(
            placement.pinned(config.argv(), cpus),
            stdin=subprocess.DEVNULL,  # not a terminal: WINCH is obeyed (master.handle_winch)
            stdout=subprocess.PIPE,
            stderr=err,
            env={**os.environ, **(env or {})},
        )
    launched = Launched(config, proc, "", log, count)
    try:
        launched.url = _listening(proc)
        if not launched.url:
            proc.wait(START_TIMEOUT_S)
            raise LabError(f"{config.server} did not start: {launched.last_error()}")
        _until_it_answers(launched.url)
        if config.server in PROCESS_WORKERS:
            _until_every_worker_runs(proc.pid, config.workers)
    except BaseException:
        launched.stop()
        raise
    return launched


def _listening(proc: subprocess.Popen) -> str:
    """The URL from the server's first line of stdout; "" if it ended without one."""
    fd = proc.stdout.fileno()
    deadline = time.monotonic() + START_TIMEOUT_S
    data = b""
    while b"\n" not in data and time.monotonic() < deadline:
        ready, _, _ = select.select([fd], [], [], max(0.0, deadline - time.monotonic()))
        chunk = os.read(fd, 4096) if ready else b""
        if not chunk:
            break
        data += chunk
    line = data.decode().partition("\n")[0]
    return line.removeprefix("listening on ") if line.startswith("listening on ") else ""


def _until_it_answers(url: str, timeout: float = START_TIMEOUT_S) -> None:
    """GET / until a 200: the socket is bound before a worker accepts (gunicorn boots its own)."""
    host, port = url.removeprefix("http://").rsplit(":", 1)
    deadline = time.monotonic() + timeout
    while True:
        conn = http.client.HTTPConnection(host, int(port), timeout=5)
        try:
            conn.request("GET", "/")
            if conn.getresponse().status == 200:
                return
        except OSError:
            if time.monotonic() > deadline:
                raise LabError(f"nothing answers on {url} after {timeout:g} s") from None
            time.sleep(0.01)
        finally:
            conn.close()


def _until_every_worker_runs(pid: int, workers: int) -> None:
    """Until `workers` processes serve: one answers before the rest have forked
    (gunicorn spawns them one by one, up to 0.1 s apart), and a measurement that
    began then would charge the server for its own start."""
    deadline = time.monotonic() + START_TIMEOUT_S
    while (seen := serving(pid)["seen_workers"]) < workers:
        if time.monotonic() > deadline:
            raise LabError(f"only {seen} of {workers} workers started in {START_TIMEOUT_S:g} s")
        time.sleep(0.01)


# -- seen from outside, in /proc -------------------------------------------------------
def worker_pids(master: int) -> list[int]:
    """The children of `master` (a single-threaded process: its main task has them all)."""
    try:
        with open(f"/proc/{master}/task/{master}/children") as f:
            return [int(pid) for pid in f.read().split()]
    except (FileNotFoundError, ProcessLookupError):
        return []


def ready_workers(master: int) -> list[int]:
    """The children of `master` that have booted into workers (named `prefork w[N]`)."""
    ready = []
    for pid in worker_pids(master):
        try:
            with open(f"/proc/{pid}/comm") as f:
                if f.read().startswith("prefork w["):
                    ready.append(pid)
        except (FileNotFoundError, ProcessLookupError):
            continue  # ended between the two reads
    return ready


def wait_for(condition, timeout: float = 10.0) -> bool:
    """Look at /proc every POLL_S until `condition()` holds (True) or `timeout` passes."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(POLL_S)
    return True


def tree(pid: int) -> list[int]:
    """`pid` and all its descendants, as /proc has them now."""
    found, todo = [], [pid]
    while todo:
        found.append(todo.pop())
        todo += worker_pids(found[-1])
    return found


def cpu_seconds(pids: list[int]) -> float:
    """User + system CPU time of `pids` (/proc/PID/stat fields 14 and 15, in clock ticks:
    10 ms each here, so a round of thousands of requests is counted to within 1%)."""
    ticks = 0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except (FileNotFoundError, ProcessLookupError):
            continue  # ended meanwhile (a replaced worker): its time is its parent's now
        ticks += int(fields[11]) + int(fields[12])
    return ticks / os.sysconf("SC_CLK_TCK")


def serving(pid: int) -> dict[str, object]:
    """What the server under `pid` really runs: its workers (the processes of the tree
    that have no children: prefork's, gunicorn's and uWSGI's workers), and for gunicorn
    the HTTP parser its workers loaded (gunicorn_h1c is a shared object in their maps,
    once a worker has parsed a request: ask after some load)."""
    pids = tree(pid)
    workers = [p for p in pids[1:] if not worker_pids(p)]
    parser = None
    for worker in workers:
        try:
            cmdline = Path(f"/proc/{worker}/cmdline").read_bytes()
            maps = Path(f"/proc/{worker}/maps").read_text()
        except OSError:
            continue
        if b"gunicorn" in cmdline:  # a worker is a fork of gunicorn's master: its argv
            parser = "fast" if parser == "fast" or "gunicorn_h1c" in maps else "python"
    return {"seen_workers": len(workers), "seen_parser": parser}
