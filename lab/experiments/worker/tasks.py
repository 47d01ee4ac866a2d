"""The asyncio model: N slots as N tasks on one event loop (arq's model).

The loop runs in a thread of its own, so the daemon's main thread keeps
doing what it does for every model: wait for signals, beat, recover. Each
task is slot.run_slot with `await` (the same rules, the same order; the
loop below is its twin, since a coroutine cannot call a blocking function
and a thread cannot await). Each task has its own redis.asyncio connection.

io jobs overlap on the one thread; a cpu job blocks the loop, and with it
every other task, until it returns (the heartbeat is unaffected: it beats
from the main thread). At the deadline, tasks still in a job are cancelled:
CancelledError is raised at their current `await`, which threads never
allow; their jobs go back to the queue, reported.
"""

from __future__ import annotations

import asyncio
import logging
import threading

from lab import work
from lab.experiments.worker import queue
from lab.experiments.worker.slot import Board, Retry, Slot, retryable
from lab.experiments.worker.threads import stacks

__all__ = ["Tasks"]

log = logging.getLogger("lab.worker")

#: How long stacks() waits for the loop to answer: a loop stuck in a cpu job answers late.
STACKS_TIMEOUT_S = 1.0


class TaskFlags:
    """quiet and stopping for tasks: plain attributes set on the loop's thread, plus an
    Event set with stopping, so that a pausing task wakes at once when stopping begins.

    The Event is set once and only by stop, as ThreadFlags' is: set it for quiet too
    and every later pause of a quiet task returns at once. Under 3.11 that was a task
    spinning through pauses; from 3.12 it freezes the loop: wait_for is built on
    asyncio.timeout and awaits the Event's wait() in the task itself (gh-96764), and
    wait() on a set Event returns without yielding, so a quiet task never let the
    jobs' sleeps, the TERM or the deadline's cancel run (docs/worker.md).
    """

    def __init__(self) -> None:
        self.quiet = False
        self.stopping = False
        self.stopped = asyncio.Event()  # created outside the loop: fine since 3.10

    async def pause(self, seconds: float) -> None:
        if self.stopping:
            return
        try:
            await asyncio.wait_for(self.stopped.wait(), seconds)
        except TimeoutError:
            pass

    def set_quiet(self) -> None:
        """A task blocked in BLMOVE is woken by the daemon's CLIENT UNBLOCK, a pausing one
        sees quiet when its pause ends: nothing to wake."""
        self.quiet = True

    def set_stopping(self) -> None:
        self.stopping = True
        self.stopped.set()


class Tasks:
    """N slots, one task each, on a loop in a thread."""

    name = "asyncio"

    def __init__(self, slots: list[Slot], board: Board) -> None:
        self.board = board
        self.flags = TaskFlags()
        self._slots = slots
        self._loop = asyncio.new_event_loop()
        self._tasks: list[asyncio.Task] = []
        self._thread = threading.Thread(target=self._run, name="event-loop", daemon=True)

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        try:
            self._loop.run_until_complete(self._main())
        finally:
            self._loop.close()

    async def _main(self) -> None:
        self._tasks = [
            asyncio.create_task(run_slot(s, self.flags), name=f"slot-{s.index}")
            for s in self._slots
        ]
        await asyncio.gather(*self._tasks, return_exceptions=True)

    def start(self) -> None:
        self._thread.start()

    def quiet(self) -> None:
        if self._thread.is_alive():
            self._loop.call_soon_threadsafe(self.flags.set_quiet)

    def stop(self) -> None:
        if self._thread.is_alive():
            self._loop.call_soon_threadsafe(self.flags.set_stopping)

    def alive(self) -> bool:
        return self._thread.is_alive()

    def abandon(self) -> None:
        """At the deadline: cancel the tasks still in a job; their `await` raises."""
        if self._thread.is_alive():
            self._loop.call_soon_threadsafe(lambda: [t.cancel() for t in self._tasks])
            self._thread.join(STACKS_TIMEOUT_S)

    def check(self) -> None:
        """Tasks do not die one by one (an exception in a slot is a bug: it shows in the log)."""

    def stacks(self) -> str:
        text = stacks()
        if not self._thread.is_alive():
            return text
        future = asyncio.run_coroutine_threadsafe(_task_stacks(), self._loop)
        try:
            return text + "\n" + future.result(STACKS_TIMEOUT_S)
        except TimeoutError:
            future.cancel()
            return text + f"\n(the event loop did not answer within {STACKS_TIMEOUT_S:g}s: busy)"


async def _task_stacks() -> str:
    """Each slot task's chain of awaits, outermost first: where it is suspended right now.

    Task.get_stack() gives a suspended coroutine's own frame only; the chain
    it waits on hangs off cr_await, coroutine by coroutine.
    """
    parts = []
    for task in sorted(asyncio.all_tasks(), key=lambda t: t.get_name()):
        if not task.get_name().startswith("slot-"):
            continue
        where, coro = [], task.get_coro()
        while coro is not None and getattr(coro, "cr_frame", None) is not None:
            frame = coro.cr_frame
            where.append(f"{frame.f_code.co_name} ({frame.f_code.co_filename}:{frame.f_lineno})")
            coro = coro.cr_await
        parts.append(f"task {task.get_name()}:\n  " + "\n  ".join(where or ["(not started)"]))
    return "\n".join(parts)


async def run_slot(slot: Slot, flags: TaskFlags) -> None:
    """slot.run_slot, awaiting: fetch, run, ack, until stopping."""
    conn = queue.connect_async(slot.url, slot.fetch_timeout)
    retry = Retry(slot.outage)
    try:
        while not flags.stopping:
            if flags.quiet:
                await flags.pause(slot.fetch_timeout)
                continue
            try:
                if not slot.board.client(slot.index):
                    slot.board.set_client(slot.index, await conn.client_id())
                payload = await conn.blmove(
                    slot.keys.queue, _processing(slot), slot.fetch_timeout, "RIGHT", "LEFT"
                )
                retry.ok()
                if payload is None:
                    continue
                if flags.quiet or flags.stopping:
                    await conn.lmove(_processing(slot), slot.keys.queue, "RIGHT", "RIGHT")
                    continue
                await _run_and_ack(conn, slot, flags, payload)
            except retryable() as exc:
                await flags.pause(retry.failed(exc))
    finally:
        await conn.aclose()


def _processing(slot: Slot) -> str:
    return slot.keys.processing(slot.worker_id, slot.index)


async def _run_and_ack(conn, slot: Slot, flags: TaskFlags, payload: bytes) -> None:
    """The job, its ledger line, the ack. Cancelled at the deadline: the daemon gives it back."""
    job = queue.Job.parse(payload)
    slot.board.set_busy(slot.index, True)
    try:
        start = work.stamp()
        await work.do_async(job.kind)
        line = work.entry(job.job_id, job.attempt, job.queued, start).line()
        try:
            await conn.rpush(slot.keys.ledger, line)
        except retryable() as exc:
            log.error(
                "slot %d: job could not record itself (%s), back to the queue: %s",
                slot.index,
                exc,
                payload.decode(),
            )
            keys = (_processing(slot), slot.keys.queue, slot.keys.retried)
            await _persist(lambda: conn.eval(queue.REQUEUE, 3, *keys), slot, flags)
            return
        if await _persist(lambda: conn.lrem(_processing(slot), 1, payload), slot, flags) == 0:
            log.warning("slot %d: job was taken back while it ran: %s", slot.index, payload)
        slot.board.add_done(slot.index)
    finally:
        slot.board.set_busy(slot.index, False)


async def _persist(call, slot: Slot, flags: TaskFlags):
    """await call() until Redis answers, backing off (slot._persist, awaiting); None if stopping."""
    retry = Retry(slot.outage)
    while True:
        try:
            result = await call()
            retry.ok()
            return result
        except retryable() as exc:
            delay = retry.failed(exc)
            if flags.stopping:
                return None
            await flags.pause(delay)
