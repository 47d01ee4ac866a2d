"""wire: a Python client that comes close to the C floor, and where asyncio's time goes.

Read tasks.py first. One asyncio loop sends its queries one after another,
and at thousands of clients the last leaves long after the first. Measured
against the C floor at 1,000 clients (docs/sleep.md, "Against a C floor"),
asyncio sent the same queries in 1.6 to 5 times the floor's time, and with
aiomysql took 150-330 ms more to read the replies. Around each send is work
that is the same for every client: the driver builds the query and its packet
again (aiomysql: cursor.execute -> mogrify -> _execute_command ->
transport.write), the task wakes from the shared Event through the loop's
ready queue, and a Future waits for the reply; around each reply, aiomysql
parses the three column definitions in pure Python before the one row
(cProfile: _get_descriptions, 0.97 s cumulative for 1,000 replies).

So this client keeps only what each query must cost, and nothing else:

- the COM_QUERY packet is encoded once (every client sends the same query),
  and each send is one socket.send of those bytes: a system call each, as in
  the C floor;
- the replies are read by one selector (epoll) per process and parsed just
  enough to find the row and the end of the result set: every reply read
  whole, the server's NOW(6) and SYSDATE(6) taken from its row;
- the clients are split over one process per core (--loops), each with its
  own loop: the production shape of gunicorn with uvicorn workers.

What stays honest: every client is a real MySQL connection (pymysql's
handshake, its own socket), every query a real SELECT SLEEP on it, every
reply read and parsed. Connections are made after fork (processes.py says
why), and each says goodbye (COM_QUIT) after every result is in.

The children talk to the parent over pipes, one pickled message each way
at a time: ("connected", ns) or ("failed", kind, text) up, one "go" byte
down, ("done", rows) or ("failed", kind, text) up.
"""

from __future__ import annotations

import contextlib
import os
import pickle
import select
import selectors
import signal
import struct
import time
from typing import Any, NoReturn

from lab import children
from lab.errors import LabError
from lab.experiments.sleep.job import Broke, Job, Timings, connect_blocking, failure, from_line

__all__ = ["CORES", "packet", "send_query", "wire_clients"]

#: One loop per core by default: more processes than cores only take turns.
CORES = os.cpu_count() or 1

EXIT_OK, EXIT_FAILED = 0, 1
COM_QUERY = 0x03
#: The results may take the sleep and this long, past which the run is stuck.
RESULTS_GRACE_S = 40.0
GRACE_S = 5.0


def packet(sql: str) -> bytes:
    """A COM_QUERY packet: a 3-byte little-endian length, sequence number 0, the
    command byte, the query (MySQL client/server protocol, "COM_QUERY")."""
    payload = bytes([COM_QUERY]) + sql.encode()
    return struct.pack("<I", len(payload))[:3] + b"\x00" + payload


def wire_clients(job: Job, loops: int = CORES) -> Timings:
    loops = max(1, min(loops, job.clients))
    shares = [job.clients // loops + (i < job.clients % loops) for i in range(loops)]
    kids: list[tuple[int, Any, int]] = []  # (pid, reader of its messages, its go pipe)
    timings = Timings()
    try:
        began = time.perf_counter_ns()
        for share in shares:
            kids.append(_spawn(job, share, kids))
        _await_all(job, kids, "connected", job.time_limit)
        timings.connect_ns = time.perf_counter_ns() - began
        job.connected()
        timings.go_ns = time.perf_counter_ns()
        for _, _, go in kids:
            os.write(go, b"g")
        for (rows,) in _await_all(job, kids, "done", job.seconds + RESULTS_GRACE_S):
            for row in rows:
                timings.add(*row)
    finally:
        for _, reader, go in kids:
            os.close(go)  # no go (an error, a Ctrl-C): each child says goodbye and exits
            reader.close()
        # Patience first: a child in its query finishes it and says goodbye by itself.
        children.stop_pids([pid for pid, _, _ in kids], GRACE_S, patience=job.seconds + GRACE_S)
    return timings


def _spawn(job: Job, share: int, siblings: list) -> tuple[int, Any, int]:
    up_r, up_w = os.pipe()
    go_r, go_w = os.pipe()
    try:
        pid = os.fork()
    except OSError as exc:
        for fd in (up_r, up_w, go_r, go_w):
            os.close(fd)
        raise Broke("processes", f"fork: {exc}") from None
    if pid == 0:  # the child: never returns
        os.close(up_r)
        os.close(go_w)
        for _, reader, sibling_go in siblings:  # else a sibling's go pipe never reads EOF
            os.close(reader.fileno())
            os.close(sibling_go)
        _child(job, share, os.fdopen(up_w, "wb"), go_r)
    os.close(up_w)
    os.close(go_r)
    return pid, os.fdopen(up_r, "rb"), go_w


def _await_all(job: Job, kids, expect: str, timeout: float) -> list[tuple]:
    """One message from every child, or the first failure said once; bounded in time."""
    deadline = time.monotonic() + timeout
    waiting = {reader.fileno(): reader for _, reader, _ in kids}
    got = []
    while waiting:
        left = deadline - time.monotonic()
        ready, _, _ = select.select(list(waiting), [], [], max(left, 0))
        if not ready:
            if expect == "connected":
                raise Broke("time", f"{job.clients:,} clients not connected in {timeout:g} s")
            raise LabError(f"the wire clients gave no results in {timeout:g} s")
        for fd in ready:
            try:
                message = pickle.load(waiting.pop(fd))
            except EOFError:
                raise LabError("a wire client ended without a word") from None
            if message[0] == "failed":
                raise from_line(job, message[1], message[2])
            got.append(message[1:])
    return got


def _child(job: Job, share: int, up, go: int) -> NoReturn:
    """Connect `share` clients, wait for go, send, read every reply, report, say goodbye."""
    status = EXIT_FAILED
    conns: list[Any] = []
    try:
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent decides; see processes.py
        during = "connect"
        try:
            for _ in range(share):
                conns.append(connect_blocking(job.server))
            pickle.dump(("connected", 0), up)
            up.flush()
            if os.read(go, 1) != b"g":
                status = EXIT_OK  # no go: the parent stopped
                return  # the finally says goodbye and exits
            during = "query"
            rows = _release(conns, packet(job.sql))
        except Exception as exc:
            pickle.dump(("failed", *failure(exc, during)), up)
            up.flush()
            return
        _goodbye(conns)  # first, so the parent's stop never finds a connection open
        conns = []
        pickle.dump(("done", rows), up)
        up.flush()
        status = EXIT_OK
    finally:
        _goodbye(conns)
        with contextlib.suppress(Exception):
            up.close()
        os._exit(status)


def _release(conns: list[Any], query: bytes) -> list[tuple[int, int, float, float]]:
    """Send the one packet on every connection, then read every reply as it comes."""
    socks = [conn._sock for conn in conns]  # pymysql's socket: the handshake was its
    starts = []
    for sock in socks:
        starts.append(time.perf_counter_ns())
        send_query(sock, query)
    rows: list[tuple[int, int, float, float]] = [(0, 0, 0.0, 0.0)] * len(socks)
    replies = [_Reply() for _ in socks]
    with selectors.EpollSelector() as selector:
        for i, sock in enumerate(socks):
            selector.register(sock, selectors.EVENT_READ, i)
        pending = len(socks)
        while pending:
            for key, _ in selector.select():
                i = key.data
                data = socks[i].recv(65536)
                if not data:
                    raise ConnectionError(2013, "Lost connection to server during query")
                if replies[i].feed(data):
                    end = time.perf_counter_ns()
                    selector.unregister(socks[i])
                    rows[i] = (starts[i], end, *replies[i].times)
                    pending -= 1
    return rows


def send_query(sock: Any, query: bytes) -> None:
    """One query, one system call: ~100 bytes into an empty socket buffer go whole."""
    sock.send(query)


class _Reply:
    """A text result set, read as it arrives: the column count, its column
    definitions, an EOF packet, the rows, a closing EOF (pymysql does not ask
    for CLIENT_DEPRECATE_EOF, so both EOFs come). Done at the second EOF."""

    def __init__(self) -> None:
        self.buffer = b""
        self.columns = -1
        self.eofs = 0
        self.times = (0.0, 0.0)

    def feed(self, data: bytes) -> bool:
        self.buffer += data
        while len(self.buffer) >= 4:
            size = int.from_bytes(self.buffer[:3], "little")
            if len(self.buffer) < 4 + size:
                return False
            payload, self.buffer = self.buffer[4 : 4 + size], self.buffer[4 + size :]
            if self._packet(payload):
                return True
        return False

    def _packet(self, payload: bytes) -> bool:
        if payload[0] == 0xFF:  # an ERR packet: error code, then the message
            code = int.from_bytes(payload[1:3], "little")
            raise ConnectionError(code, payload[9:].decode(errors="replace"))
        if self.columns < 0:
            self.columns = payload[0]  # three columns: fits one byte of a length-encoded int
        elif payload[0] == 0xFE and len(payload) < 9:  # an EOF packet
            self.eofs += 1
            return self.eofs == 2
        elif self.eofs == 1:  # the row: three length-encoded strings (each under 251 bytes)
            values, at = [], 0
            for _ in range(3):
                length = payload[at]
                values.append(payload[at + 1 : at + 1 + length])
                at += 1 + length
            self.times = (float(values[0]), float(values[2]))
        return False


def _goodbye(conns: list[Any]) -> None:
    for conn in conns:
        with contextlib.suppress(Exception):
            conn.close()  # COM_QUIT, then the socket closed
