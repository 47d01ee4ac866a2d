"""floor.c does the Python side's work: checksums, sequence numbers, echoes compared; one run.

The floor is "what the kernel needs for the same exchange": it must refuse a
damaged message as wire.Receiver does, run as often as the Python side, and
give no `x C` when the two ran on different placements (issue 24, point 5).
"""

from __future__ import annotations

import json
import os
import subprocess

import pytest

from lab.experiments import ipc
from lab.experiments.ipc import floor

pytestmark = pytest.mark.timeout(120)


def _floor(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(floor.binary()), *args],
        capture_output=True, text=True, timeout=60, env={**os.environ, **(env or {})},
    )  # fmt: skip


@pytest.mark.parametrize("transport", floor.FLOOR_TRANSPORTS)
def test_the_floor_peer_refuses_a_damaged_message_as_the_python_peer_does(transport):
    done = _floor(transport, "4096", "0.05", "200", env={"FLOOR_DAMAGE": "25"})
    assert done.returncode != 0
    assert "message 25 failed its checksum" in done.stderr
    assert "error" in json.loads(done.stdout.strip().splitlines()[-1])


def test_an_undamaged_floor_checks_every_message_and_counts_the_stream():
    done = _floor("pipe", "65536", "0.05", "200", "0", "0")
    assert done.returncode == 0, done.stderr
    figures = json.loads(done.stdout)
    assert figures["samples"] > 0 and figures["msgs_per_s"] > 0


def test_the_floor_runs_once_like_python_and_gives_x_c_only_on_a_shared_placement():
    assert floor.RUNS == 1
    quick = {"transport": ("pipe",), "size": (64,), "seconds": 0.02, "samples": 100}
    anywhere = ipc.run(ipc.Params(**quick, cores="any"))
    placed = ipc.run(ipc.Params(**quick, cores="same"))
    (c_floor,) = [r for r in anywhere.records if r["pattern"] == "C floor"]
    assert c_floor["runs"] == 1
    (python_any,) = [r for r in anywhere.records if r["pattern"] != "C floor"]
    (python_same,) = [r for r in placed.records if r["pattern"] != "C floor"]
    assert "floor_ratio" not in python_any and "overhead_us" not in python_any
    assert any("placements differ" in w for w in anywhere.env["warnings"])
    assert python_same["floor_ratio"] > 0
