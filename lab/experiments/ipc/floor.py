"""The C floor: floor.c built with the system's cc on first use, cached, and run.

The binary is cached outside the repository by a hash of floor.c and the
compiler (lab/cbuild.py), so an edited floor.c never runs stale.

Where there is no compiler or no zlib.h (Debian's zlib1g-dev: floor.c checks
each message with zlib's crc32, as the Python peer does), or the build fails,
`measure` says so in its record (`skipped`) and the Python rows simply have
no floor to compare with.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

from lab import cbuild
from lab.errors import LabError

__all__ = ["FLOOR_TRANSPORTS", "binary", "measure"]

#: The transports floor.c speaks (its unix is a stream socketpair: the same kernel path
#: as a Unix socket on a path, without the file).
FLOOR_TRANSPORTS = ("pipe", "unix", "tcp")
SOURCE = Path(__file__).with_name("floor.c")
#: One floor measurement is a ping-pong and a stream of `seconds` each; 60 s is far
#: beyond any of them, and bounds a floor that hangs.
RUN_TIMEOUT_S = 60.0


def binary() -> Path:
    """The compiled floor, built now if needed; LabError saying why when it cannot be."""
    return cbuild.build(SOURCE, "floor", ["-lz"], install="apt-get install zlib1g-dev")


#: One fresh pair, as the Python side has one conversation per link: the best of two
#: against a single run would credit C with the luck of a draw. (Placement matters far
#: more: the experiment pins the pair, see --cores; left to the scheduler a pair lands
#: across CPUs at times, 61.5 against 4.6 µs for TCP at 4 KiB in one run.)
RUNS = 1


def measure(
    transport: str,
    size: int,
    seconds: float,
    max_samples: int,
    placement: tuple[int, int] | None = None,
) -> dict:
    """The C ping-pong and stream over `transport`: the best of RUNS fresh pairs.

    `placement` (parent CPU, peer CPU) pins the two, as links.Context does for Python.

    rtt_median_us and rtt_p99_us from the pair with the lowest median, msgs_per_s and
    mb_per_s from the pair with the highest throughput, and `runs`.
    """
    args = [transport, str(size), str(seconds), str(max_samples)]
    args += [str(cpu) for cpu in placement] if placement else []
    pairs = [_measure_once(args) for _ in range(RUNS)]
    quickest = min(pairs, key=lambda p: p["rtt_median_us"])
    widest = max(pairs, key=lambda p: p["mb_per_s"])
    return {
        "samples": quickest["samples"],
        "rtt_median_us": quickest["rtt_median_us"],
        "rtt_p99_us": quickest["rtt_p99_us"],
        "msgs_per_s": widest["msgs_per_s"],
        "mb_per_s": widest["mb_per_s"],
        "runs": RUNS,
    }


def _measure_once(args: list[str]) -> dict:
    program = binary()
    done = subprocess.run(
        [str(program), *args],
        capture_output=True,
        text=True,
        timeout=RUN_TIMEOUT_S,
    )
    lines = done.stdout.strip().splitlines()
    figures = json.loads(lines[-1]) if lines else {"error": done.stderr.strip() or "no output"}
    if done.returncode != 0 or "error" in figures:
        raise LabError(f"the C floor over {args[0]} failed: {figures.get('error')}")
    return figures
