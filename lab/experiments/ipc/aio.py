"""A blocking face on an asyncio client (slixmpp, nats-py): one event loop per endpoint.

The measuring loops are plain blocking code, the same for every transport;
an asyncio client library gets an endpoint that owns a private event loop
and runs it for each call (loop.run_until_complete: ~7 µs a call here, on
top of the client's own work). Sends queued by the client are written
whenever the loop next runs, at the latest in the next recv.
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any

from lab.experiments.ipc.wire import Endpoint

__all__ = ["LoopEndpoint"]


class LoopEndpoint(Endpoint):
    """An Endpoint with its own event loop; subclasses await their client inside `run`."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()

    def run(self, coroutine: Coroutine[Any, Any, Any], timeout: float | None = None) -> Any:
        """Run `coroutine` to its end (asyncio.TimeoutError after `timeout` s)."""
        if timeout is not None:
            coroutine = asyncio.wait_for(coroutine, timeout)
        return self.loop.run_until_complete(coroutine)

    def close_loop(self) -> None:
        """Let cancelled tasks finish, then close the loop (no 'Task was destroyed' warning)."""
        pending = asyncio.all_tasks(self.loop)
        for task in pending:
            task.cancel()
        if pending:
            self.loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
        self.loop.run_until_complete(self.loop.shutdown_asyncgens())
        self.loop.close()
