"""The scoreboard: a page of memory the master and its workers share, one slot per worker.

Each worker writes only its own slot: a heartbeat (CLOCK_MONOTONIC seconds,
the same clock in every process), how many requests it has served, and its
state. The master only reads: to kill a worker whose heartbeat stopped
(`--timeout`), and to show requests and states in the live view.

Unicorn keeps the same facts in shared memory (its raindrops counters);
gunicorn touches a temporary file per worker and the master reads its
mtime. An anonymous MAP_SHARED mapping made before fork is the cheapest of
the three: writing a slot is a store to memory, no system call.

A slot is three fields written one at a time, so a reader may see a served
count one request old: fine for a heartbeat and a display, which is all
this is. (An 8-byte aligned store does not tear on x86-64 or arm64.)
"""

from __future__ import annotations

import mmap
import struct
import time
from dataclasses import dataclass

from lab.experiments.prefork.config import MAX_WORKERS

__all__ = ["SLOTS", "STATES", "Scoreboard", "Slot"]

#: Room for MAX_WORKERS of the current generation and as many of the one a HUP retires.
SLOTS = 2 * MAX_WORKERS

#: What a worker is doing, as its slot says it.
STATES = ("free", "booting", "idle", "busy", "quitting")

# heartbeat (float64 s), served (uint64), state (uint32), 4 bytes of padding: 24 bytes.
_SLOT = struct.Struct("=dQI4x")
_HEARTBEAT, _SERVED, _STATE = 0, 8, 16


@dataclass(frozen=True)
class Slot:
    heartbeat: float
    served: int
    state: str


class Scoreboard:
    def __init__(self, slots: int = SLOTS) -> None:
        self.slots = slots
        # mmap(-1, ...) is anonymous and MAP_SHARED: a fork shares it, it is not copied.
        self.memory = mmap.mmap(-1, _SLOT.size * slots)

    def _at(self, slot: int) -> int:
        return slot * _SLOT.size

    # -- written by the master, before the fork and after the reaping ---------
    def claim(self, slot: int) -> None:
        """A fresh slot for a worker about to be forked: heartbeat now, nothing served."""
        _SLOT.pack_into(self.memory, self._at(slot), time.monotonic(), 0, STATES.index("booting"))

    def release(self, slot: int) -> None:
        _SLOT.pack_into(self.memory, self._at(slot), 0.0, 0, STATES.index("free"))

    # -- written by the worker in the slot --------------------------------------
    def beat(self, slot: int) -> None:
        struct.pack_into("=d", self.memory, self._at(slot) + _HEARTBEAT, time.monotonic())

    def set_state(self, slot: int, state: str) -> None:
        struct.pack_into("=I", self.memory, self._at(slot) + _STATE, STATES.index(state))

    def served_one(self, slot: int, served: int) -> None:
        """`served` is the worker's own running count: it alone writes it, so no read is needed."""
        struct.pack_into("=Q", self.memory, self._at(slot) + _SERVED, served)

    # -- read by the master ------------------------------------------------------
    def read(self, slot: int) -> Slot:
        heartbeat, served, state = _SLOT.unpack_from(self.memory, self._at(slot))
        return Slot(heartbeat, served, STATES[state] if state < len(STATES) else "?")

    def close(self) -> None:
        self.memory.close()
