"""The load: wrk (Debian's package) where it is installed, the lab's asyncio clients otherwise.

Both keep a fixed number of connections busy for a fixed time, each sending
its next request when the last answer is in, with keep-alive on (one
connection carries many requests) or off (`Connection: close`: a connect,
a request, a close, every time). Both run in a process of their own, pinned
to their own core where there are two (placement.py).

wrk (https://github.com/wg/wrk) is the C tool most server benchmarks use;
its latency percentiles come from an HdrHistogram, its errors are socket
errors (connect, read, write, timeout) plus answers that were not 2xx or
3xx. It counts whole seconds (`-d2s`). It stops at its deadline without
waiting for the answers in flight, so the server may have answered up to
one request per connection more than wrk counts (launch.py's `served`).
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from lab import children
from lab.errors import LabError, last_line
from lab.experiments.prefork import placement

__all__ = ["TIMEOUT_S", "TOOLS", "Load", "Result", "choose"]

TOOLS = ("auto", "wrk", "asyncio")

#: An answer slower than this is an error: wrk's --timeout, and the asyncio clients'.
TIMEOUT_S = 5

#: wrk's time units (its format_time), to milliseconds.
_UNITS_MS = {"us": 1e-3, "ms": 1.0, "s": 1e3, "m": 60e3, "h": 3600e3}


@dataclass(frozen=True)
class Result:
    tool: str
    requests: int  # answers the generator read in full
    errors: int
    rps: float
    p50_ms: float
    p99_ms: float


def choose(tool: str) -> str:
    """`auto`: wrk when it is on PATH, else the asyncio clients; `wrk` asked for must exist."""
    if tool == "asyncio":
        return tool
    if shutil.which("wrk"):
        return "wrk"
    if tool == "wrk":
        raise LabError("wrk is not installed: apt-get install wrk, or use --load asyncio")
    return "asyncio"


class Load:
    """One load run in the background: start it, do something meanwhile, then `result()`."""

    def __init__(
        self,
        tool: str,
        url: str,
        clients: int,
        seconds: int,
        keepalive: bool,
        cpus: tuple[int, ...],
    ) -> None:
        self.tool = tool
        argv = _wrk(url, clients, seconds, keepalive) if tool == "wrk" else _clients(
            url, clients, seconds, keepalive
        )  # fmt: skip
        self.proc = subprocess.Popen(
            placement.pinned(argv, cpus),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.seconds = seconds

    def result(self) -> Result:
        """Wait for the run to end (bounded) and read what it measured."""
        try:
            out, err = self.proc.communicate(timeout=self.seconds + 4 * TIMEOUT_S)
        except subprocess.TimeoutExpired:
            out, err = "", f"{self.tool} did not finish in time"
        finally:
            children.stop_popen(self.proc)
        if self.proc.returncode != 0 or not out.strip():
            last = last_line(err, f"exit {self.proc.returncode}")
            raise LabError(f"the load generator ({self.tool}) failed: {last}")
        return _parse_wrk(out) if self.tool == "wrk" else _parse_clients(out)

    def stop(self) -> None:
        """Ctrl-C or an error while it runs: it goes too."""
        children.stop_popen(self.proc)


def _wrk(url: str, clients: int, seconds: int, keepalive: bool) -> list[str]:
    # One wrk thread: the load has one core (placement.py); wrk needs connections >= threads.
    argv = ["wrk", "-t1", f"-c{clients}", f"-d{seconds}s", "--latency", f"--timeout={TIMEOUT_S}s"]
    if not keepalive:
        argv += ["-H", "Connection: close"]
    return [*argv, url]


def _clients(url: str, clients: int, seconds: int, keepalive: bool) -> list[str]:
    host, port = url.removeprefix("http://").rstrip("/").rsplit(":", 1)
    cfg = {"host": host, "port": int(port), "clients": clients, "seconds": seconds}
    cfg["keepalive"] = keepalive
    child = Path(__file__).with_name("child.py")
    return [sys.executable, "-I", str(child), json.dumps(cfg)]


def _parse_wrk(text: str) -> Result:
    def number(pattern: str) -> str:
        found = re.search(pattern, text)
        if found is None:
            raise LabError(f"wrk said something this lab cannot read (no {pattern!r}): {text!r}")
        return found.group(1)

    def latency(percent: str) -> float:
        value, unit = re.search(rf"^\s+{percent}%\s+([\d.]+)(\w+)", text, re.M).groups()
        return float(value) * _UNITS_MS[unit]

    socket_errors = re.search(
        r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", text
    )
    errors = sum(map(int, socket_errors.groups())) if socket_errors else 0
    non_2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", text)
    errors += int(non_2xx.group(1)) if non_2xx else 0
    return Result(
        tool="wrk",
        requests=int(number(r"(\d+) requests in")),
        errors=errors,
        rps=float(number(r"Requests/sec:\s+([\d.]+)")),
        p50_ms=latency("50"),
        p99_ms=latency("99"),
    )


def _parse_clients(text: str) -> Result:
    got = json.loads(text.strip().splitlines()[-1])
    return Result(
        tool="asyncio",
        requests=got["requests"],
        errors=got["errors"],
        rps=got["rps"],
        p50_ms=got["p50_ms"],
        p99_ms=got["p99_ms"],
    )
