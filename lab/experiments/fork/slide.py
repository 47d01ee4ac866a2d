"""The slide: fork. One program, two processes; fork() returns 0 in the child.

    python -m lab.experiments.fork.slide            # at a terminal: "before fork" once
    python -m lab.experiments.fork.slide | cat      # into a pipe: "before fork" twice

What goes wrong with it: the child gets a copy of everything, the parent's
unflushed output too, so into a pipe or a file the first line is printed
twice; a child that returned instead of calling os._exit would run the
parent's code after the fork, its finally blocks and atexit handlers; a
parent with threads hands the child locks nobody will release. basics.py
checks what is copied and what is shared, threads.py the locks,
lifecycle.py how a child ends and is reaped, and probes.py is the fork
every fact uses (os._exit always, in a finally; every wait bounded).
"""

import os
import sys


def main() -> None:
    print(f"before fork: pid {os.getpid()}")  # buffered when stdout is not a terminal
    x = 1
    pid = os.fork()
    if pid == 0:  # the child: a copy of the parent's memory
        x = 2
        print(f"child: pid {os.getpid()}, parent {os.getppid()}, x = {x}")
        sys.stdout.flush()  # os._exit flushes nothing
        os._exit(0)  # never return into the parent's code
    os.waitpid(pid, 0)  # reap it, or it stays a zombie
    print(f"parent: pid {os.getpid()}, child {pid}, x = {x}")


if __name__ == "__main__":
    main()
