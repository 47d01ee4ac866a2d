"""The slide: processes talking. A parent and its forked child, ping and pong over two pipes.

    python -m lab.experiments.ipc.slide

A pipe goes one way, so a conversation takes two: the parent writes "ping"
into one, the child reads it and writes "pong" into the other.

What goes wrong with it: a pipe carries bytes, not messages, so a read may
return half a message or two of them (here every message is four bytes and
one at a time, which hides it); nothing checks what arrived; one timing of
a thousand round trips says nothing of the slow ones. kernel.py frames
messages with a length prefix, wire.py checksums them, measure.py times
each round trip (median and p99) and floor.c does the same in C, the
floor under every transport of the lesson.
"""

import os
import time

ROUND_TRIPS = 1000


def main() -> None:
    child_reads, parent_writes = os.pipe()
    parent_reads, child_writes = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: answers every ping until the parent closes its end
        os.close(parent_writes)  # else the child holds its own pipe open and never sees the end
        while os.read(child_reads, 4) == b"ping":
            os.write(child_writes, b"pong")
        os._exit(0)
    os.close(child_reads)
    os.close(child_writes)
    pongs = 0
    began = time.perf_counter()
    for _ in range(ROUND_TRIPS):
        os.write(parent_writes, b"ping")
        pongs += os.read(parent_reads, 4) == b"pong"
    each_us = (time.perf_counter() - began) / ROUND_TRIPS * 1e6
    os.close(parent_writes)  # the child reads b"" and ends
    os.waitpid(pid, 0)
    print(f"{pongs} of {ROUND_TRIPS} pongs from child {pid}, {each_us:.0f} µs a round trip")


if __name__ == "__main__":
    main()
