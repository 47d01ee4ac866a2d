"""A blocking face on an asyncio client (slixmpp, nats-py): its own event loop, in its own thread.

The measuring loops are plain blocking code, the same for every transport;
an asyncio client gets an endpoint that owns a private event loop running in
a thread of its own, and each call hands a coroutine to it
(asyncio.run_coroutine_threadsafe) and waits for the result.

Things that don't work: loop.run_until_complete in the calling thread is
quicker (~7 µs a call here against a thread hand-off's tens), but it cannot
run where a loop is already running in that thread, and a Jupyter kernel's
main thread always has one ("Cannot run the event loop while another loop
is running"); nest_asyncio patches asyncio itself, for the whole process.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading
from collections.abc import Coroutine
from typing import Any

from lab.experiments.ipc.wire import Endpoint

__all__ = ["LoopEndpoint"]


class LoopEndpoint(Endpoint):
    """An Endpoint whose client lives on a private loop; subclasses await it inside `run`."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="ipc-loop", daemon=True)
        self.thread.start()

    def run(self, coroutine: Coroutine[Any, Any, Any], timeout: float | None = None) -> Any:
        """Run `coroutine` on the endpoint's loop; asyncio.TimeoutError after `timeout` s."""
        if timeout is not None:
            coroutine = asyncio.wait_for(coroutine, timeout)
        future = asyncio.run_coroutine_threadsafe(coroutine, self.loop)
        try:
            return future.result()
        except concurrent.futures.CancelledError:
            raise TimeoutError() from None

    def close_loop(self) -> None:
        """Cancel what is left, stop the loop, join its thread, close it: nothing left running."""

        async def cancel_the_rest() -> None:
            tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            await self.loop.shutdown_asyncgens()

        asyncio.run_coroutine_threadsafe(cancel_the_rest(), self.loop).result()
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join()
        self.loop.close()
