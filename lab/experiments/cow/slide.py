"""The slide: copy-on-write. A forked child that only reads the parent's data still copies it.

    python -m lab.experiments.cow.slide

After fork the child shares every page with the parent until one side writes
it. Reading a Python object writes it: its reference count goes up and down.
So a child that only iterates a list of strings copies the page of each one.

What goes wrong with it, and what the lesson adds: this is one structure
and one step. The garbage collector writes too, into every container it
examines, which gc.freeze() (3.7) stops, while nothing stops the reference
counts but immortal objects (PEP 683, 3.12). child.py measures each step
(fork, read, collect) for a control child, readers and collectors, with
and without gc.freeze, for lists, strings and immortal objects.
"""

import os


def private_mb() -> float:
    """Pages this process has written since it was forked, from the kernel's own count."""
    with open("/proc/self/smaps_rollup") as f:
        kb = sum(int(line.split()[1]) for line in f if line.startswith("Private_Dirty"))
    return kb / 1024


def main() -> None:
    data = [str(i) for i in range(1_000_000)]  # about 60 MB of objects, built once
    pid = os.fork()
    if pid == 0:
        before = private_mb()
        for _item in data:  # only reads, as Python sees it
            pass
        after = private_mb()
        print(f"child's private memory: {before:.1f} MB after fork, {after:.1f} MB after reading")
        os._exit(0)
    os.waitpid(pid, 0)


if __name__ == "__main__":
    main()
