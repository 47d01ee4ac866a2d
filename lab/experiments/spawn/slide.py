"""The slide: what one worker costs to make. A thread, a fork, a posix_spawn, each made and reaped.

    python -m lab.experiments.spawn.slide

A thread shares the process; fork copies its page tables; posix_spawn starts
a new program without copying them.

What goes wrong with it: the median says nothing of the slow ones (p99),
the first of each pays for warming up, and this parent is small, while
fork's cost grows with the parent's memory (80 ms at 2 GB in docs/spawn.md)
and a thread's or posix_spawn's does not. child.py measures each method's
median, p95 and p99 after a warm-up, fork against a parent of 30 MB to
2 GB, multiprocessing's three start methods, and the memory an idle
worker of each kind holds.
"""

import os
import statistics
import threading
import time

TIMES = 100


def median_us(make) -> float:
    took = []
    for _ in range(TIMES):
        began = time.perf_counter()
        make()
        took.append(time.perf_counter() - began)
    return statistics.median(took) * 1e6


def fork() -> None:
    pid = os.fork()
    if pid == 0:
        os._exit(0)
    os.waitpid(pid, 0)


def thread() -> None:
    worker = threading.Thread(target=int)
    worker.start()
    worker.join()


def spawn() -> None:
    os.waitpid(os.posix_spawn("/bin/true", ["true"], os.environ), 0)


def main() -> None:
    for make in (fork, spawn, thread):  # fork before this process has had a thread
        print(f"{make.__name__:>6}: {median_us(make):8.0f} µs each (median)")


if __name__ == "__main__":
    main()
