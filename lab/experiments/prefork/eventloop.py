"""asyncio: one process, one thread, one event loop serving every connection.

Each connection is a task that reads a request (`await`: the loop serves
others meanwhile), calls the WSGI app, writes the answer and, kept alive,
waits for the next one. Waiting for clients costs almost nothing, so the
loop holds any number of idle connections.

But a WSGI app is a plain function: while it runs, nothing else does. The
hello app returns in microseconds, so that does not show; the cpu app holds
the loop for its ~2 ms, and the io app for its whole SELECT SLEEP, since a
blocking pymysql call never yields to the loop: one request at a time, 20
a second. asyncio overlaps only what awaits (the sleep experiment's aiomysql
clients); an ASGI app would, a WSGI app cannot.

Signals come as asyncio delivers them: loop.add_signal_handler, which is
set_wakeup_fd underneath, so the handler runs in the loop, not in the middle
of a task.
"""

from __future__ import annotations

import asyncio
import signal
import socket
from collections.abc import Callable
from typing import Any

from lab.experiments.prefork import wsgi
from lab.experiments.prefork.threads import KEEPALIVE_IDLE_S
from lab.experiments.prefork.worker import CLIENT_TIMEOUT_S

__all__ = ["serve"]

#: On a stop, the requests in hand get this long to finish before their tasks are cancelled.
STOP_GRACE_S = 5.0


class EventLoopServer:
    def __init__(self, sock: socket.socket, app: Callable[..., Any]) -> None:
        self.sock = sock
        self.app = app
        self.address = sock.getsockname()[:2]
        self.served = 0
        self.stopping = False
        self.tasks: set[asyncio.Task[None]] = set()

    async def run(self) -> int:
        loop = asyncio.get_running_loop()
        stop = asyncio.Event()
        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGQUIT):
            loop.add_signal_handler(sig, stop.set)  # records only: the loop acts below
        server = await asyncio.start_server(self._connection, sock=self.sock, limit=wsgi.MAX_HEAD)
        try:
            await stop.wait()
        finally:
            self.stopping = True
            server.close()  # no new connections
            # 3.11's wait_closed() does not wait for connections (3.12's does): we do.
            if self.tasks:
                await asyncio.wait(self.tasks, timeout=STOP_GRACE_S)
            for task in self.tasks:
                task.cancel()
            await server.wait_closed()
            for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGQUIT):
                loop.remove_signal_handler(sig)
        return self.served

    async def _connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self.tasks.add(task)
        try:
            await self._requests(reader, writer)
        except wsgi.BadRequest as exc:
            writer.write(wsgi.bad_request(str(exc)))
        except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, TimeoutError):
            pass  # the client left, sent too much, or went silent
        except ConnectionError:
            pass
        finally:
            self.tasks.discard(task)
            writer.close()
            try:
                await writer.wait_closed()
            except ConnectionError:
                pass

    async def _requests(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        wait = CLIENT_TIMEOUT_S  # for the first request; KEEPALIVE_IDLE_S between later ones
        while not reader.at_eof():
            try:
                head = await asyncio.wait_for(reader.readuntil(wsgi.HEAD_END), wait)
            except asyncio.IncompleteReadError as exc:
                if exc.partial:
                    raise wsgi.BadRequest("connection closed in the middle of a request") from None
                return  # closed between requests: the normal end of keep-alive
            request = wsgi.parse_head(head[: -len(wsgi.HEAD_END)])
            request.body = await reader.readexactly(request.content_length)
            keep = not self.stopping and wsgi.wants_keep_alive(request)
            writer.write(
                wsgi.respond(
                    self.app,
                    request,
                    self.address,
                    keep_alive=keep,
                    multithread=False,
                    multiprocess=False,
                )  # fmt: skip
            )
            await writer.drain()
            self.served += 1
            if not keep:
                return
            wait = KEEPALIVE_IDLE_S


def serve(sock: socket.socket, app: Callable[..., Any]) -> int:
    """Run the event-loop server on `sock` until TERM, INT or QUIT; requests served."""
    return asyncio.run(EventLoopServer(sock, app).run())
