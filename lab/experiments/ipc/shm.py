"""Shared memory: two byte rings in one multiprocessing.shared_memory segment, and semaphores.

Nothing is copied through the kernel: the writer copies a message into the
ring, the reader copies it out. What shared memory does not give is a way to
*wait*: a reader that loops reading a counter gets the message soonest and
burns a whole core while nothing comes. So each ring has two POSIX semaphores
living in the segment itself (sem_init with pshared=1, glibc through ctypes):
`data` counts messages written; `space` is posted by the reader when the
writer has said it waits for room (a full ring: a stream running ahead).

    writer: copy into the ring, advance head, sem_post(data) (no system call
            unless the reader sleeps)
    reader: sem_trywait(data) a few hundred times (~0.3 µs each: the message
            usually comes within the spin when the other side is busy talking),
            then sem_clockwait(data, deadline): asleep in the kernel (a futex),
            no core spinning while idle

glibc's sem_post only makes a system call when someone sleeps on the
semaphore, and it is a release, sem_wait an acquire (sem_overview(7),
futex(7)): what was copied before the post is visible after the wait, on any
CPU. Things that don't work: a Python flag word read in a loop has no memory
barrier (on a weakly ordered CPU the reader could see the flag before the
bytes); a pipe for the wake-up works, but then every message pays for a pipe.

Segment layout, per direction: head (u64, bytes ever written, the writer's),
tail (u64, bytes ever read, the reader's), each on its own cache line so the
two sides do not fight over one line; the two semaphores; then the ring.
A message in the ring is a 4-byte length and its bytes, 8-aligned, and never
cut in two: where it would not fit before the ring's end, a WRAP marker sends
the reader to the start (one slice to copy out, not two).

Python 3.11's SharedMemory registers even a segment it only attaches to with
the attaching process's resource tracker, which unlinks it when that process
exits (python/cpython#82300; 3.13 adds track=False): the peer unregisters it.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import errno
import os
import struct
import time
from typing import Any

from lab.errors import LabError
from lab.experiments.ipc.links import Context, Link
from lab.experiments.ipc.wire import Endpoint, PeerGone

__all__ = ["LINKS", "Ring", "RingEndpoint"]

CACHE_LINE = 64
SEM_SIZE = 32  # sizeof(sem_t) on 64-bit glibc
HEAD, TAIL, SEM_DATA, SEM_SPACE, DATA = 0, 64, 128, 192, 256
# head and "the writer waits for room" share the writer's cache line; tail is the reader's
HEAD_WORD, WAITING_WORD, TAIL_WORD = HEAD // 8, HEAD // 8 + 1, TAIL // 8
ALIGN = 8  # every message starts 8-aligned in a ring whose size is a multiple of 8,
# so its 4-byte length never straddles the ring's end
WRAP = 0xFFFFFFFF  # a length that means: the next message is at the ring's start
#: A writer waiting for room sleeps at most this long between looks (see _wait_for_room).
ROOM_WAIT_S = 0.001
LENGTH = struct.Struct("<I")
#: sem_trywait tries before sleeping, each followed by sched_yield: ~300 x 0.4 µs,
#: about 0.1 ms. A reply that takes longer is not worth a core; one that comes sooner
#: never sleeps. The yield matters when both processes share one core (a busy
#: machine): a pure spin then holds the very core the writer needs for its whole
#: window (measured here: 125 µs round trips, the window itself, against 15 µs).
SPIN_TRIES = 300
CLOCK_MONOTONIC = 1


class _Timespec(ctypes.Structure):
    _fields_ = [("tv_sec", ctypes.c_long), ("tv_nsec", ctypes.c_long)]


def _libc() -> ctypes.CDLL:
    libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
    for name in ("sem_init", "sem_destroy", "sem_post", "sem_trywait", "sem_clockwait"):
        getattr(libc, name).restype = ctypes.c_int
    libc.sem_init.argtypes = (ctypes.c_void_p, ctypes.c_int, ctypes.c_uint)
    libc.sem_destroy.argtypes = libc.sem_post.argtypes = libc.sem_trywait.argtypes = (
        ctypes.c_void_p,
    )
    libc.sem_clockwait.argtypes = (ctypes.c_void_p, ctypes.c_int, ctypes.POINTER(_Timespec))
    return libc


def _aligned(n: int) -> int:
    return (n + ALIGN - 1) // ALIGN * ALIGN


class Ring:
    """One direction of the segment: `base` is its offset, `capacity` its ring's bytes."""

    def __init__(self, buf: memoryview, base: int, capacity: int, libc: ctypes.CDLL) -> None:
        self.buf, self.base, self.capacity, self.libc = buf, base, capacity, libc
        self.words = buf[base : base + DATA].cast("Q")  # head at [0], tail at [8]
        address = ctypes.addressof(ctypes.c_char.from_buffer(buf, base))
        self.sem_data, self.sem_space = address + SEM_DATA, address + SEM_SPACE
        self.ring = buf[base + DATA : base + DATA + capacity]

    @staticmethod
    def footprint(capacity: int) -> int:
        return DATA + capacity

    def init(self) -> None:
        self.words[HEAD_WORD] = self.words[TAIL_WORD] = self.words[WAITING_WORD] = 0
        for sem in (self.sem_data, self.sem_space):
            if self.libc.sem_init(sem, 1, 0) != 0:
                raise OSError(ctypes.get_errno(), "sem_init")

    def destroy(self) -> None:
        for sem in (self.sem_data, self.sem_space):
            self.libc.sem_destroy(sem)

    def release(self) -> None:
        """Drop the views, so the segment can be closed (no exported buffers left)."""
        self.words.release()
        self.ring.release()

    # -- the writer's side
    def write(self, message: bytes, deadline: float, alive=None) -> None:
        words, capacity = self.words, self.capacity
        size = len(message)
        need = _aligned(LENGTH.size + size)
        head = words[HEAD_WORD]
        start = head % capacity
        skip = capacity - start if start + need > capacity else 0  # no room before the end
        if need + skip > capacity:
            raise LabError(f"a {size}-byte message does not fit a {capacity}-B ring")
        if capacity - (head - words[TAIL_WORD]) < need + skip:
            self._wait_for_room(need + skip, deadline, alive)
        if skip:  # a marker says "go on at the start": a message is never cut in two
            LENGTH.pack_into(self.ring, start, WRAP)
            head, start = head + skip, 0
        LENGTH.pack_into(self.ring, start, size)
        self.ring[start + LENGTH.size : start + LENGTH.size + size] = message
        words[HEAD_WORD] = head + need
        self.libc.sem_post(self.sem_data)

    def _wait_for_room(self, need: int, deadline: float, alive=None) -> None:
        """Sleep until the reader frees `need` bytes (it posts `space` when it sees us wait);
        PeerGone at the deadline, or as soon as `alive()` says the reader died.

        The flag and the reader's check of it race (no memory barrier in Python), so
        each sleep is at most ROOM_WAIT_S: a missed post costs that, never a hang.
        """
        words = self.words
        try:
            while self.capacity - (words[HEAD_WORD] - words[TAIL_WORD]) < need:
                words[WAITING_WORD] = 1
                if alive is not None and not alive():
                    raise PeerGone("the peer died mid-run")
                if time.monotonic() > deadline:
                    raise PeerGone("the peer stopped reading the ring")
                self._wait(self.sem_space, min(deadline, time.monotonic() + ROOM_WAIT_S))
        finally:
            words[WAITING_WORD] = 0

    # -- the reader's side
    def read(self, timeout: float) -> bytes | None:
        if not self._take(timeout):
            return None
        words, capacity = self.words, self.capacity
        tail = words[TAIL_WORD]
        start = tail % capacity
        (size,) = LENGTH.unpack_from(self.ring, start)
        if size == WRAP:
            tail += capacity - start
            start = 0
            (size,) = LENGTH.unpack_from(self.ring, 0)
        message = bytes(self.ring[start + LENGTH.size : start + LENGTH.size + size])
        words[TAIL_WORD] = tail + _aligned(LENGTH.size + size)
        if words[WAITING_WORD]:
            self.libc.sem_post(self.sem_space)
        return message

    def _take(self, timeout: float) -> bool:
        trywait, give_way = self.libc.sem_trywait, os.sched_yield
        for _ in range(SPIN_TRIES):
            if trywait(self.sem_data) == 0:
                return True
            give_way()  # if the writer waits for this very core, let it run now
        return self._wait(self.sem_data, time.monotonic() + timeout)

    def _wait(self, sem: int, deadline: float) -> bool:
        """sem_clockwait until `deadline` (monotonic s): True if taken, False at the deadline."""
        while True:
            when = _Timespec(int(deadline), int((deadline % 1) * 1e9))
            if self.libc.sem_clockwait(sem, CLOCK_MONOTONIC, ctypes.byref(when)) == 0:
                return True
            err = ctypes.get_errno()
            if err == errno.ETIMEDOUT:
                return False
            if err != errno.EINTR:  # PEP 475 does not reach into ctypes: retry by hand
                raise OSError(err, os.strerror(err))


class RingEndpoint(Endpoint):
    """Send on one ring, receive on the other."""

    def __init__(self, shm: Any, outgoing: Ring, incoming: Ring, owner: bool) -> None:
        self.shm, self.outgoing, self.incoming, self.owner = shm, outgoing, incoming, owner

    def send(self, message: bytes) -> None:
        from lab.experiments.ipc.wire import TIMEOUT_S

        self.outgoing.write(message, time.monotonic() + TIMEOUT_S, self.other_alive)

    def poll(self, timeout: float) -> bytes | None:
        return self.incoming.read(timeout)

    def close(self) -> None:
        if self.owner:  # the parent's rings and segment are cleanup's to remove
            return
        for ring in (self.outgoing, self.incoming):
            ring.release()
        self.shm.close()


class SharedRing(Link):
    transport, pattern = "shm", "ring"

    def prepare(self, ctx: Context) -> dict[str, Any]:
        from multiprocessing import shared_memory

        capacity = _aligned(ctx.largest * 2 + 2 * CACHE_LINE)
        name = f"{ctx.prefix}-shm"
        shm = shared_memory.SharedMemory(name, create=True, size=2 * Ring.footprint(capacity))
        rings = self._rings(shm, capacity)
        for ring in rings:
            ring.init()
        return {
            **super().prepare(ctx),
            "name": name,
            "capacity": capacity,
            "_shm": shm,
            "_rings": rings,
        }

    @staticmethod
    def _rings(shm: Any, capacity: int) -> tuple[Ring, Ring]:
        libc = _libc()
        return (
            Ring(shm.buf, 0, capacity, libc),
            Ring(shm.buf, Ring.footprint(capacity), capacity, libc),
        )

    def open_peer_end(self, spec: dict[str, Any]) -> Endpoint:
        from multiprocessing import resource_tracker, shared_memory

        shm = shared_memory.SharedMemory(spec["name"])
        resource_tracker.unregister(shm._name, "shared_memory")  # the parent owns it
        to_peer, from_peer = self._rings(shm, spec["capacity"])
        return RingEndpoint(shm, from_peer, to_peer, owner=False)

    def connect(self, spec: dict[str, Any], info: dict[str, Any]) -> Endpoint:
        to_peer, from_peer = spec["_rings"]
        return RingEndpoint(spec["_shm"], to_peer, from_peer, owner=True)

    def cleanup(self, spec: dict[str, Any]) -> None:
        shm = spec["_shm"]
        for ring in spec["_rings"]:
            ring.destroy()
            ring.release()
        shm.close()
        shm.unlink()

    def leftovers(self, prefix: str) -> list[str]:
        return [f"/dev/shm/{n}" for n in os.listdir("/dev/shm") if n.startswith(prefix)]


LINKS = (SharedRing(),)
