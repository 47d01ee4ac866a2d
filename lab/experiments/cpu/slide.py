"""The slide: forking vs threading for CPU-bound work. The same countdown, split two ways.

    python -m lab.experiments.cpu.slide

Under the GIL one thread runs Python at a time: two threads take as long as
one loop. Two forked processes each have their own interpreter and, given
two free cores, take half as long.

What goes wrong with it: three rounds on a machine that may be busy, with
two workers only and no look at how many cores this process may use.
scaling.py splits the same countdown across 1 to N threads, forks,
multiprocessing pools and subinterpreters, repeated; convoy.py shows what a
spinning thread does to an I/O thread beside it (bpo-7946).
"""

import os
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


def main() -> None:
    best = dict.fromkeys((one_loop, in_processes, in_threads), float("inf"))
    for _ in range(3):  # rounds, each way in turn: a busy moment of the machine hits all alike
        for way in best:
            began = time.perf_counter()
            way()
            best[way] = min(best[way], time.perf_counter() - began)
    for way, seconds in best.items():
        print(f"{way.__name__:>12}: {seconds:.2f} s, the best of three")


if __name__ == "__main__":
    main()
