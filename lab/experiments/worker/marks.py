"""Start marks: each run of a job says when it began, for the crash table (crash.py).

The ledger (lab.work) has a line per job that *finished*. A
job killed mid-run leaves none, so a second run of it would look like a first.
With marks on, a job pushes `JOB_ID START_NS PID` to LEDGER:started as it
begins: a job with two marks ran twice (its side effects happened twice),
whether or not the first run finished. The lab's worker needs no marks (its
retried list and the attempt in each ledger line say the same); the peers'
job functions write them when the crash table asks.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

__all__ = ["Mark", "key", "line"]


def key(ledger_key: str) -> str:
    return f"{ledger_key}:started"


def line(job_id: str, start: int) -> str:
    return f"{job_id} {start} {os.getpid()}"


@dataclass(frozen=True)
class Mark:
    job_id: str
    start: int
    pid: int

    @classmethod
    def parse(cls, raw: str | bytes) -> Mark:
        if isinstance(raw, bytes):
            raw = raw.decode()
        job_id, start, pid = raw.split()
        return cls(job_id, int(start), int(pid))
