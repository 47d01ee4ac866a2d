"""The threads model: N slots as N threads of the daemon (Sidekiq's own model).

Every slot is a daemon thread running slot.run_slot. A thread blocked in
BLMOVE or in a 10 ms sleep releases the GIL, so io jobs overlap; cpu jobs
take turns on one core, whatever N is (the cpu lesson, once more).

What threads cannot do: be stopped from outside. Python has no Thread.kill
(Sidekiq raises an exception into a Ruby thread; CPython offers nothing as
safe). So at the deadline a thread still in its job is *abandoned*: the
daemon gives its job back to the queue (reported as a retry) and exits; the
thread dies with the process (daemon=True), mid-job. That is the
at-least-once contract: the job will run again from its start.
"""

from __future__ import annotations

import sys
import threading
import traceback

from lab.experiments.worker.slot import Board, Slot, run_slot

__all__ = ["ThreadFlags", "Threads", "stacks"]


class ThreadFlags:
    """quiet and stopping for slots that are threads: two Events the main thread sets."""

    def __init__(self) -> None:
        self._quiet = threading.Event()
        self._stop = threading.Event()

    @property
    def quiet(self) -> bool:
        return self._quiet.is_set()

    @property
    def stopping(self) -> bool:
        return self._stop.is_set()

    def pause(self, seconds: float) -> None:
        self._stop.wait(seconds)

    def set_quiet(self) -> None:
        self._quiet.set()

    def set_stopping(self) -> None:
        self._stop.set()


class Threads:
    """N slots, one thread each."""

    name = "threads"

    def __init__(self, slots: list[Slot], board: Board) -> None:
        self.board = board
        self.flags = ThreadFlags()
        self._threads = [
            threading.Thread(
                target=run_slot, args=(s, self.flags), name=f"slot-{s.index}", daemon=True
            )
            for s in slots
        ]

    def start(self) -> None:
        for thread in self._threads:
            thread.start()

    def quiet(self) -> None:
        self.flags.set_quiet()

    def stop(self) -> None:
        self.flags.set_stopping()

    def alive(self) -> bool:
        return any(t.is_alive() for t in self._threads)

    def abandon(self) -> None:
        """Nothing to do: a running thread cannot be ended; it dies with the process."""

    def check(self) -> None:
        """Threads do not die one by one (an exception in a slot is a bug: it shows in the log)."""

    def stacks(self) -> str:
        return stacks()


def stacks() -> str:
    """Every thread's stack, named (TTIN's answer): what each slot is doing right now."""
    frames = sys._current_frames()
    parts = []
    for thread in threading.enumerate():
        frame = frames.get(thread.ident or -1)
        if frame is not None:
            stack = "".join(traceback.format_stack(frame))
            parts.append(f"thread {thread.name} (ident {thread.ident}):\n{stack}")
    return "\n".join(parts)
