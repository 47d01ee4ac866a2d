"""The load generator for machines without wrk: asyncio clients, standard library only.

Run as `python -I child.py '{"host": ..., "port": ..., "clients": 16, "seconds": 2,
"keepalive": false}'`; prints one JSON line: requests, errors, seconds, rps,
p50_ms, p99_ms. It is a child process (placement.py pins it to a core of its
own), never a thread of the experiment.

Like wrk: a fixed number of connections, each sending its next request as
soon as the last answer is in (a closed loop), for a fixed time; latency is
from writing a request to having read its whole answer; keep-alive off adds
a `Connection: close` header and connects anew for every request. Unlike
wrk, it stops sending at the deadline and waits for the answers in flight,
so its count and the server's agree exactly. It is slower than wrk (a
Python client is costlier than the C one), which is why wrk comes first.

Every client connects first; one event then starts them all, so the
measured time holds requests, not connection set-up (keep-alive on).
"""

from __future__ import annotations

import asyncio
import json
import sys
import time

#: An answer that takes longer counts as an error (wrk's --timeout, which load.py sets alike).
TIMEOUT_S = 5.0


async def _client(
    cfg: dict, ready: asyncio.Future, start: asyncio.Event, stats: dict, latencies: list[int]
) -> None:
    host, port = cfg["host"], cfg["port"]
    close = b"" if cfg["keepalive"] else b"Connection: close\r\n"
    request = b"GET / HTTP/1.1\r\nHost: " + host.encode() + b"\r\n" + close + b"\r\n"
    reader = writer = None
    try:
        if cfg["keepalive"]:
            try:
                reader, writer = await asyncio.open_connection(host, port)
            except OSError:
                stats["errors"] += 1  # tried again in the loop
        ready.set_result(None)
        await start.wait()
        deadline = stats["deadline"]
        while time.monotonic() < deadline:
            try:
                if writer is None:
                    reader, writer = await asyncio.open_connection(host, port)
                sent = time.perf_counter_ns()
                writer.write(request)
                # A client that sent `close` sends nothing more on that connection
                # (RFC 9112 §9.6), whether or not the answer says `close` too: uWSGI's
                # does not, and a next request there would meet a closed socket.
                keep = await asyncio.wait_for(_answer(reader), TIMEOUT_S) and cfg["keepalive"]
                latencies.append(time.perf_counter_ns() - sent)
                stats["requests"] += 1
                if not keep:
                    writer.close()
                    reader = writer = None
            except (TimeoutError, OSError, asyncio.IncompleteReadError, ValueError):
                stats["errors"] += 1
                if writer is not None:
                    writer.close()
                reader = writer = None
    finally:
        if writer is not None:
            writer.close()


async def _answer(reader: asyncio.StreamReader) -> bool:
    """Read one whole answer; whether the connection stays open. Not 200: ValueError."""
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    if lines[0].split(" ")[1] != "200":
        await reader.read()  # drain, then count it as an error
        raise ValueError(lines[0])
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    await reader.readexactly(int(headers.get("content-length", "0")))
    return headers.get("connection", "").lower() != "close"


def _percentile(ordered: list[int], fraction: float) -> float:
    """The nearest-rank percentile, in ms (wrk's HdrHistogram reports the same kind)."""
    if not ordered:
        return float("nan")
    rank = max(0, min(len(ordered) - 1, round(fraction * len(ordered)) - 1))
    return ordered[rank] / 1e6


async def _main(cfg: dict) -> dict:
    start = asyncio.Event()
    stats = {"requests": 0, "errors": 0, "deadline": 0.0}
    latencies: list[int] = []
    loop = asyncio.get_running_loop()
    ready = [loop.create_future() for _ in range(cfg["clients"])]
    clients = [asyncio.ensure_future(_client(cfg, r, start, stats, latencies)) for r in ready]
    await asyncio.gather(*ready)  # every client connected (or failed): now the clock starts
    began = time.perf_counter()
    stats["deadline"] = time.monotonic() + cfg["seconds"]
    start.set()
    await asyncio.gather(*clients)
    seconds = time.perf_counter() - began
    latencies.sort()
    return {
        "requests": stats["requests"],
        "errors": stats["errors"],
        "seconds": seconds,
        "rps": stats["requests"] / seconds,
        "p50_ms": _percentile(latencies, 0.50),
        "p99_ms": _percentile(latencies, 0.99),
    }


if __name__ == "__main__":
    print(json.dumps(asyncio.run(_main(json.loads(sys.argv[1])))), flush=True)
