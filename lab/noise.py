"""Noise, said out loud: when a figure could be noise, the run says so instead of hiding it.

Two sources, each said in one line, and nothing dropped or corrected: the
figures stay what was measured, and the line says why they may not carry the
lesson this time.

- Other processes took the CPU while the lab ran. The CLI starts a `Watch`
  before a run and prints its `warning()` after it (on stderr, so --json
  stays clean). It counts the CPU time the whole machine spent during the
  run (/proc/stat) less what the lab's own processes spent (/proc/PID/stat):
  this process, its descendants, and, in a tour, every process carrying the
  tour's mark (a daemon a chapter started, adopted by init since). The rest
  is other people's work, however it came and went.
- The figures that carry a lesson's point scatter more than the point is
  large: a lesson's verdict (lab/experiments/cpu/verdict.py, spawn's) asks
  `apart` of the figures it compares, and when the spread is what hides or
  reverses the point it says `too_noisy` (a note under the table, and the
  report's sentence) instead of letting the table teach the opposite.

Things that did not work, and why:
- The load average: it counts the past minutes, the lab's own previous run
  included, so each chapter of a tour warned about the one before it (21
  warnings in one tour at load 0.7).
- The run queue (/proc/stat procs_running) sampled as a run begins: a moment
  before the run, not the run; and it counts the lab's own leftovers too.

Standard library only, Linux only (elsewhere nothing is said), never an error.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterable
from typing import NamedTuple

from lab import procfs

__all__ = ["OTHERS_CORES", "Figure", "Others", "Watch", "apart", "too_noisy"]

#: Other processes' CPU, in cores over the run, from which a run says they competed.
#: Half a core: then on a 2-core machine a lesson that needs both (cpu's processes)
#: finds one taken a quarter of the time. Far above what a quiet machine does: 0.00 to
#: 0.10 cores here in 30 quiet moments (kdamond, the VM's init, Redis), and the shared
#: servers a lesson talks to: RabbitMQ took 0.025 cores and Redis 0.020 through ipc's
#: zmq/amqp/redis run (4.4 s). A busy loop beside a run takes what the scheduler gives
#: it, a whole core on a quiet 2-core machine.
OTHERS_CORES = 0.5

#: A warning fits 80 columns after the CLI's "daemonlab: warning: " (20 characters).
WIDTH = 60

#: /proc/stat's "cpu" line: user nice system idle iowait irq softirq steal ...; the busy
#: ones. guest time is already inside user; steal is the hypervisor's, not a process's.
_BUSY_FIELDS = (0, 1, 2, 5, 6)


class Others(NamedTuple):
    """What other processes took while the lab ran."""

    cores: float  # their CPU time over the wall time: 1.0 is one core kept busy throughout
    lab: float  # the same for the lab's own processes
    of: int  # the machine's cores
    seconds: float  # the wall time watched
    most: str | None  # the command name of the one that took most, if it is still there


class Watch:
    """Started before a run, read after it: did other processes take the CPU meanwhile?"""

    def __init__(self) -> None:
        from lab.tour import MARK  # the tour's processes are the lab's, whoever their parent

        self.mark = f"{MARK}={os.environ[MARK]}".encode() if MARK in os.environ else None
        self.began = time.monotonic()
        self.busy = _busy_ticks()
        self.before = _processes()

    def others(self) -> Others | None:
        """Other processes' share of the CPU since the watch began; None without /proc."""
        wall, busy = time.monotonic() - self.began, _busy_ticks()
        if busy is None or self.busy is None or wall <= 0:
            return None
        now = _processes()
        # A process the watch saw begin counts in full; one it saw before, its growth. A
        # child reaped meanwhile is in its parent's figure (cutime, cstime), all its life:
        # a child of the lab's older than the run makes the others look smaller, never larger.
        was = {key: ticks for key, (_, ticks, _) in self.before.items()}
        used = {key: ticks - was.get(key, 0) for key, (_, ticks, _) in now.items()}
        ours = self._ours(now, used)
        lab = sum(used[key] for key in ours)
        theirs = max(busy - self.busy - lab, 0)
        most = max((k for k in now if k not in ours and used[k] > 0), key=used.get, default=None)
        cores = os.sysconf("SC_CLK_TCK") * wall  # ticks in a core kept busy throughout
        return Others(
            theirs / cores,
            lab / cores,
            os.cpu_count() or 1,
            wall,
            None if most is None else now[most][2],
        )

    def warning(self) -> str | None:
        """One line when other processes took at least OTHERS_CORES during the run."""
        others = self.others()
        if others is None or others.cores < OTHERS_CORES:
            return None
        text = f"other processes took {others.cores:.1f} of {others.of} cores"
        if others.most is None:
            return text
        room = WIDTH - len(text) - len(" (most: )")
        return f"{text} (most: {others.most[:room]})"

    def _ours(self, now: dict, used: dict) -> set:
        """The lab's processes in `now`: this one, its descendants, and those with the mark."""
        children: dict[int, list] = {}
        for key, (ppid, _, _) in now.items():
            children.setdefault(ppid, []).append(key)
        ours, todo = set(), [os.getpid()]
        while todo:
            for key in children.get(todo.pop(), ()):
                ours.add(key)
                todo.append(key[0])
        ours.update(k for k in now if k[0] == os.getpid())
        if self.mark is not None:  # read only where it matters: others that used the CPU
            ours.update(k for k in now if k not in ours and used[k] > 0 and self._marked(k[0]))
        return ours

    def _marked(self, pid: int) -> bool:
        try:
            with open(f"/proc/{pid}/environ", "rb") as f:
                return self.mark in f.read().split(b"\0")
        except OSError:  # gone, or another user's: not ours
            return False


def _busy_ticks() -> int | None:
    """Clock ticks all cores spent on work since boot (/proc/stat), or None without it."""
    try:
        with open("/proc/stat") as f:
            fields = f.readline().split()[1:]
    except OSError:
        return None
    return sum(int(fields[i]) for i in _BUSY_FIELDS)


def _processes() -> dict[tuple[int, int], tuple[int, int, str]]:
    """Every process now: (pid, starttime) -> (ppid, cpu ticks with reaped children, comm)."""
    found = {}
    try:
        pids = [int(name) for name in os.listdir("/proc") if name.isdigit()]
    except OSError:
        return found
    for pid in pids:
        try:
            stat = procfs.proc_stat(pid)
        except OSError:  # not ours to read
            continue
        if stat is not None:
            found[(pid, stat["starttime"])] = (stat["ppid"], stat["cpu_ticks"], stat["comm"])
    return found


class Figure(NamedTuple):
    """One measured figure: its name, its median, and its spread (the least and the most)."""

    name: str
    median: float
    low: float
    high: float

    @property
    def spread_pct(self) -> float:
        """The spread in % of the median: the `±%` of the lessons' tables."""
        return (self.high - self.low) / self.median * 100 if self.median else 0.0


def apart(a: Figure, b: Figure) -> bool:
    """Whether this run tells `a` from `b`: the difference of their medians is larger
    than the spread of either. If not, a repeat of the one could land on the other."""
    return abs(a.median - b.median) > max(a.high - a.low, b.high - b.low)


def too_noisy(figures: Iterable[Figure], command: str) -> str:
    """What a lesson says instead of a point its figures cannot carry: the widest spread
    among them, and the command that measures again."""
    spread = max(f.spread_pct for f in figures)
    # two lines, each well inside 80 columns; a report joins them
    return f"too noisy to show the point here (spread {spread:.0f}%), run\n`{command}`"
