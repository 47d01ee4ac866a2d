"""The C floor: floor.c, built on first use, run as a strategy like any other.

`c-floor` is the demo with no Python in the client: one thread, one epoll
set, MariaDB Connector/C's non-blocking calls (variant `epoll`), the same in
one process per core (`per-core`, the floor for wire's loop per core), or
one blocking thread per connection as mysqlslap does it (`threads`).
It takes the same Job and returns the same Timings as the Python
strategies, on the same server, through the same watcher, so each Python
strategy's efficiency divided by the floor's (`floor_ratio`) is what Python
itself costs at that many clients, and the floor's own figures say what
the machine and the server allow.

floor.c speaks to this module one line at a time: the query, then
"connected" once every client is, then "go" from here once the watcher has
seen them all idle (Job.connected), then its timings. It reads the clock
the Python strategies read (CLOCK_MONOTONIC, which perf_counter_ns is on
Linux) and takes its own release instant after reading "go": the pipe's
wake-up is not the floor's cost.

What it needs: a C compiler and MariaDB Connector/C's headers
(`apt-get install libmariadb-dev`); without them a run says so in one line.
"""

from __future__ import annotations

import contextlib
import os
import select
import shlex
import shutil
import subprocess
from pathlib import Path

from lab import cbuild
from lab.errors import LabError
from lab.experiments.sleep.job import LIMITS, Broke, Job, Timings, from_line

__all__ = ["CORES", "INSTALL", "MODES", "binary", "c_floor"]

SOURCE = Path(__file__).with_name("floor.c")
MODES = ("epoll", "threads", "per-core")
CORES = os.cpu_count() or 1
INSTALL = "apt-get install libmariadb-dev"

#: After the release the floor needs `seconds` and the replies; this much more
#: bounds one that hangs (the same allowance the asyncio strategy gives a goodbye).
AFTER_S = 30.0


def _flags() -> list[str]:
    """mariadb_config's compile and link flags, else Debian's paths for libmariadb-dev."""
    config = shutil.which("mariadb_config")
    if config is None:
        return ["-I/usr/include/mariadb", "-lmariadb", "-lpthread"]
    said = subprocess.run([config, "--cflags", "--libs"], capture_output=True, text=True)
    return [*shlex.split(said.stdout), "-lpthread"]


def binary() -> Path:
    """The compiled floor; LabError with the install line when it cannot be built."""
    return cbuild.build(SOURCE, "SELECT SLEEP C floor", _flags(), INSTALL)


def c_floor(job: Job, mode: str = "epoll") -> Timings:
    """Run floor.c as one strategy's measurement: connect, release, read every reply.

    `per-core` runs the epoll floor in one process per core, the clients split
    between them, released together: the floor for a Python client that uses
    every core (wire's --loops), where one thread's floor would be no floor."""
    if job.server.tls:
        raise LabError("the C floor speaks plain TCP: this server asks for TLS")
    if job.server.unix_socket:
        raise LabError("the C floor speaks TCP: this server is reached over a Unix socket")
    count = min(CORES, job.clients) if mode == "per-core" else 1
    shares = [job.clients // count + (i < job.clients % count) for i in range(count)]
    env = os.environ | {"LAB_FLOOR_PASSWORD": job.server.password}
    with contextlib.ExitStack() as stack:
        procs = []
        for share in shares:
            args = [str(binary()), "threads" if mode == "threads" else "epoll", str(share)]
            args += [job.server.host, str(job.server.port), job.server.user, job.server.database]
            proc = stack.enter_context(
                subprocess.Popen(
                    args,
                    stdin=subprocess.PIPE,
                    stdout=subprocess.PIPE,
                    stderr=subprocess.PIPE,
                    text=True,
                    env=env,
                )  # fmt: skip
            )
            stack.callback(_finish, proc, job)  # before Popen's own exit, which waits
            procs.append((proc, share))
        return _converse(job, procs)


def _converse(job: Job, procs: list[tuple[subprocess.Popen, int]]) -> Timings:
    for proc, _ in procs:
        proc.stdin.write(job.sql + "\n")  # type: ignore[union-attr]
        proc.stdin.flush()  # type: ignore[union-attr]
    connects = [_line(job, proc, job.time_limit, "connected") for proc, _ in procs]
    timings = Timings(connect_ns=max(connects))  # they connect side by side
    job.connected()
    for proc, _ in procs:
        proc.stdin.write("go\n")  # type: ignore[union-attr]
        proc.stdin.flush()  # type: ignore[union-attr]
    goes = [_line(job, proc, job.seconds + AFTER_S, "go") for proc, _ in procs]
    timings.go_ns = min(goes)  # the first to be released: the others' wake-ups count
    for proc, share in procs:
        for _ in range(share):
            start, end, server_start, server_end = proc.stdout.readline().split()  # type: ignore[union-attr]
            timings.add(int(start), int(end), float(server_start), float(server_end))
    return timings


def _line(job: Job, proc: subprocess.Popen, timeout: float, word: str) -> int:
    """The number on floor.c's next line, which must start with `word`; bounded in time."""
    ready, _, _ = select.select([proc.stdout], [], [], timeout)
    if not ready and word == "connected":
        raise Broke("time", f"{job.clients} floor clients not connected in {timeout:g} s")
    if not ready:
        raise LabError(f"the C floor gave no replies in {timeout:g} s")
    said, _, rest = proc.stdout.readline().partition(" ")  # type: ignore[union-attr]
    _check(job, said, rest, proc)
    return int(rest)


def _check(job: Job, word: str, rest: str, proc: subprocess.Popen) -> None:
    """floor.c's "error KIND CODE TEXT" in the words every strategy uses (job.py)."""
    if word in ("connected", "go"):
        return
    if word != "error":
        proc.wait()
        assert proc.stderr is not None
        said = proc.stderr.read().strip() or f"exit {proc.returncode}"
        raise LabError(f"the C floor failed: {said}")
    kind, _, text = rest.strip().partition(" ")
    code, _, text = text.partition(" ")
    if kind in LIMITS or kind == "lost":
        raise from_line(job, kind, text)
    raise LabError(f"a C floor client failed: ({code}) {text}")


def _finish(proc: subprocess.Popen, job: Job) -> None:
    """Close its stdin (no "go" comes now: it says goodbye on every connection), then
    drain and wait (after a Ctrl-C its report may still fill the pipe); a floor that
    will not end in time is killed."""
    with contextlib.suppress(BrokenPipeError):
        proc.stdin.close()  # type: ignore[union-attr]
    proc.stdin = None  # closed: communicate() now only drains what it still prints
    try:
        proc.communicate(timeout=job.seconds + AFTER_S)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
