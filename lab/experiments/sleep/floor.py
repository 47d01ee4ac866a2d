"""The C floor: floor.c, built on first use, run as a strategy like any other.

`c-floor` is the demo with no Python in the client: one thread, one epoll
set, MariaDB Connector/C's non-blocking calls (variant `epoll`), or one
blocking thread per connection as mysqlslap does it (variant `threads`).
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

__all__ = ["INSTALL", "MODES", "binary", "c_floor"]

SOURCE = Path(__file__).with_name("floor.c")
MODES = ("epoll", "threads")
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
    """Run floor.c as one strategy's measurement: connect, release, read every reply."""
    if job.server.tls:
        raise LabError("the C floor speaks plain TCP: this server asks for TLS")
    if job.server.unix_socket:
        raise LabError("the C floor speaks TCP: this server is reached over a Unix socket")
    args = [str(binary()), mode, str(job.clients), job.server.host, str(job.server.port)]
    args += [job.server.user, job.server.database]
    env = os.environ | {"LAB_FLOOR_PASSWORD": job.server.password}
    with subprocess.Popen(
        args, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        text=True, env=env,
    ) as proc:  # fmt: skip
        try:
            return _converse(job, proc)
        finally:
            _finish(proc, job)


def _converse(job: Job, proc: subprocess.Popen) -> Timings:
    assert proc.stdin is not None and proc.stdout is not None
    proc.stdin.write(job.sql + "\n")
    proc.stdin.flush()
    ready, _, _ = select.select([proc.stdout], [], [], job.time_limit)
    if not ready:
        raise Broke("time", f"{job.clients} floor clients not connected in {job.time_limit:g} s")
    word, _, rest = proc.stdout.readline().partition(" ")
    _check(job, word, rest, proc)
    timings = Timings(connect_ns=int(rest))
    job.connected()
    proc.stdin.write("go\n")
    proc.stdin.flush()
    ready, _, _ = select.select([proc.stdout], [], [], job.seconds + AFTER_S)
    if not ready:
        raise LabError(f"the C floor gave no replies in {job.seconds + AFTER_S:g} s")
    word, _, rest = proc.stdout.readline().partition(" ")
    _check(job, word, rest, proc)
    timings.go_ns = int(rest)
    for _ in range(job.clients):
        start, end, server_start, server_end = proc.stdout.readline().split()
        timings.add(int(start), int(end), float(server_start), float(server_end))
    return timings


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
