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
from enum import StrEnum

from lab.experiments.prefork.config import MAX_WORKERS

__all__ = ["MOVES", "SERVING", "SLOTS", "STATES", "Scoreboard", "Slot", "WorkerState"]

#: Room for MAX_WORKERS of the current generation and as many of the one a HUP retires.
SLOTS = 2 * MAX_WORKERS


class WorkerState(StrEnum):
    """What a worker is doing, as its slot says it (and the live view prints it)."""

    FREE = "free"
    BOOTING = "booting"
    IDLE = "idle"
    BUSY = "busy"
    QUITTING = "quitting"


#: A slot holds its state as a place in this tuple (shared memory holds numbers, not
#: strings); FREE first, so a page fresh from mmap (zeros) is all free slots.
STATES = tuple(WorkerState)
#: The states of a worker that has booted and not begun to leave: it answers requests.
SERVING = {WorkerState.IDLE, WorkerState.BUSY}

_FREE, _BOOTING, _IDLE, _BUSY, _QUITTING = STATES
#: Every move a slot's state may make (claim, set_state and release refuse any other).
MOVES = {
    # FREE -> BOOTING: the master claims the slot just before it forks a worker (claim)
    (_FREE, _BOOTING),
    # BOOTING -> IDLE: the worker's signals are in place: it is about to accept
    (_BOOTING, _IDLE),
    # IDLE -> BUSY: accept() gave the worker a connection
    (_IDLE, _BUSY),
    # BUSY -> IDLE: that request is answered (or failed), the connection closed
    (_BUSY, _IDLE),
    # IDLE -> QUITTING: QUIT, or the master gone (EOF on its pipe), seen between requests
    (_IDLE, _QUITTING),
    # BUSY -> QUITTING: an error escaped the request: the worker leaves through its finally
    (_BUSY, _QUITTING),
    # any -> FREE: the master reaped the worker (release): whatever it was doing, it is
    # gone (a worker killed for a silent heartbeat dies BUSY; one killed at once, BOOTING)
    *((state, _FREE) for state in (_BOOTING, _IDLE, _BUSY, _QUITTING)),
}

_CODE = {state: code for code, state in enumerate(STATES)}
_CODED_MOVES = {(_CODE[before], _CODE[after]) for before, after in MOVES}

# heartbeat (float64 s), served (uint64), state (uint32), 4 bytes of padding: 24 bytes.
_SLOT = struct.Struct("=dQI4x")
_HEARTBEAT, _SERVED, _STATE = 0, 8, 16


@dataclass(frozen=True)
class Slot:
    heartbeat: float
    served: int
    state: WorkerState | str  # "?" if the slot holds no state we know


class Scoreboard:
    def __init__(self, slots: int = SLOTS) -> None:
        self.slots = slots
        # mmap(-1, ...) is anonymous and MAP_SHARED: a fork shares it, it is not copied.
        self.memory = mmap.mmap(-1, _SLOT.size * slots)

    def _at(self, slot: int) -> int:
        return slot * _SLOT.size

    def _check_move(self, slot: int, state: WorkerState) -> int:
        """The number `state` is stored as, once the move to it is found in MOVES (in
        numbers: a worker moves twice a request, and this costs it one 4-byte read)."""
        (now,) = struct.unpack_from("=I", self.memory, self._at(slot) + _STATE)
        new = _CODE[state]
        if (now, new) not in _CODED_MOVES:
            said = STATES[now] if now < len(STATES) else "?"
            raise ValueError(f"scoreboard slot {slot} cannot go from {said} to {state}")
        return new

    # -- written by the master, before the fork and after the reaping ---------
    def claim(self, slot: int) -> None:
        """A fresh slot for a worker about to be forked: heartbeat now, nothing served."""
        state = self._check_move(slot, WorkerState.BOOTING)
        _SLOT.pack_into(self.memory, self._at(slot), time.monotonic(), 0, state)

    def release(self, slot: int) -> None:
        state = self._check_move(slot, WorkerState.FREE)
        _SLOT.pack_into(self.memory, self._at(slot), 0.0, 0, state)

    # -- written by the worker in the slot --------------------------------------
    def beat(self, slot: int) -> None:
        struct.pack_into("=d", self.memory, self._at(slot) + _HEARTBEAT, time.monotonic())

    def set_state(self, slot: int, state: WorkerState) -> None:
        struct.pack_into("=I", self.memory, self._at(slot) + _STATE, self._check_move(slot, state))

    def served_one(self, slot: int, served: int) -> None:
        """`served` is the worker's own running count: it alone writes it, so no read is needed."""
        struct.pack_into("=Q", self.memory, self._at(slot) + _SERVED, served)

    # -- read by the master ------------------------------------------------------
    def read(self, slot: int) -> Slot:
        heartbeat, served, state = _SLOT.unpack_from(self.memory, self._at(slot))
        return Slot(heartbeat, served, STATES[state] if state < len(STATES) else "?")

    def close(self) -> None:
        self.memory.close()
