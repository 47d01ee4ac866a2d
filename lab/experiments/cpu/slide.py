"""The slide: forking vs threading for CPU-bound work. The same countdown, split two ways.

    python -m lab.experiments.cpu.slide

Under the GIL one thread runs Python at a time: two threads keep one core
busy, never two, and take as long as one loop. Two forked processes each
have their own interpreter and, given two free cores, keep both busy and
take half as long. "cores busy" is CPU time over wall time: what the GIL
allows shows there even on a busy machine, where the seconds wander.

What goes wrong with it: one timing of each, with two workers only and no
look at how many cores this process may use. scaling.py splits the same
countdown across 1 to N threads, forks, multiprocessing pools and
subinterpreters, repeated; convoy.py shows what a spinning thread does to
an I/O thread beside it (bpo-7946).
"""

import os
import resource
import threading
import time

N = 4_000_000


def countdown(n: int) -> None:
    while n > 0:
        n -= 1


def one_loop() -> None:
    countdown(N)


def in_threads() -> None:
    threads = [threading.Thread(target=countdown, args=(N // 2,)) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()


def in_processes() -> None:
    pids = []
    for _ in range(2):
        pid = os.fork()
        if pid == 0:
            countdown(N // 2)
            os._exit(0)
        pids.append(pid)
    for pid in pids:
        os.waitpid(pid, 0)


def cpu_seconds() -> float:
    """CPU time of this process's threads, and of its children once they are reaped."""
    me, children = (resource.getrusage(r) for r in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN))
    return me.ru_utime + me.ru_stime + children.ru_utime + children.ru_stime


def main() -> None:
    for way in (one_loop, in_processes, in_threads):  # fork before this process has had a thread
        wall, cpu = time.perf_counter(), cpu_seconds()
        way()
        wall, cpu = time.perf_counter() - wall, cpu_seconds() - cpu
        print(f"{way.__name__:>12}: {wall:.2f} s, {cpu / wall:.1f} cores busy")


if __name__ == "__main__":
    main()
