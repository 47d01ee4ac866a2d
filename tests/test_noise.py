"""lab.noise: the warnings a run carries when its figures could be noise."""

from __future__ import annotations

import os
import re

from lab import noise, procfs
from lab.tour import MARK
from tests.conftest import wait_until


def test_figures_are_apart_only_when_their_difference_is_larger_than_their_spread() -> None:
    clear = (noise.Figure("threads", 1.0, 0.95, 1.05), noise.Figure("processes", 0.5, 0.48, 0.6))
    assert noise.apart(*clear) and noise.apart(*reversed(clear))
    close = (noise.Figure("threads", 1.0, 0.7, 1.3), noise.Figure("processes", 0.9, 0.85, 0.95))
    assert not noise.apart(*close)
    said = noise.too_noisy(close, "daemonlab run cpu")
    assert said == "too noisy to show the point here (spread 60%), run\n`daemonlab run cpu`"


# -- other processes during a run: lab.noise.Watch, against real processes ---------------

#: A CPU-bound loop that names itself (PR_SET_NAME), so the warning can be read for it.
BURN = (
    "import ctypes, sys, time\n"
    "ctypes.CDLL(None).prctl(15, sys.argv[1].encode(), 0, 0, 0)\n"
    "end = time.monotonic() + float(sys.argv[2])\n"
    "while time.monotonic() < end: pass\n"
)
#: The lab's own work in a watched window: one child kept busy for this long, then reaped.
LAB_BURN_S = 0.5


def _outside(name: str, env: dict) -> int:
    """A busy loop outside this process's tree: started by a shell that exits at once, so
    init adopts it; its pid."""
    import subprocess
    import sys

    shell = subprocess.run(
        ["sh", "-c", '"$0" -c "$1" "$2" 600 </dev/null >/dev/null 2>&1 & echo $!',
         sys.executable, BURN, name],
        capture_output=True, text=True, env=env, check=True,
    )  # fmt: skip
    pid = int(shell.stdout)
    wait_until(lambda: (procfs.proc_stat(pid) or {}).get("comm") == name, 5, f"{name} to run")
    assert procfs.proc_stat(pid)["ppid"] != os.getpid()  # not a child of ours
    return pid


def _lab_work() -> None:
    """What a run does meanwhile: a busy child of ours, waited for."""
    import subprocess
    import sys

    subprocess.run([sys.executable, "-c", BURN, "lab-burner", str(LAB_BURN_S)], check=True)


def _stop(pid: int) -> None:
    from lab import children

    children.stop_process(pid, grace=1.0)


def _busy_s() -> float:
    """CPU seconds the machine has spent on work, read apart from lab.noise (psutil)."""
    import psutil

    t = psutil.cpu_times()
    return t.user + t.nice + t.system + t.irq + t.softirq


def test_the_labs_own_processes_are_not_other_processes(monkeypatch) -> None:
    """On a quiet machine, a run that keeps the cores busy itself gives no warning: through a
    child it waits for, a child still running (a server), and a marked process init adopted
    (a tour's daemon). The test's own reading of the machine says whether it was quiet."""
    import resource
    import subprocess
    import sys

    monkeypatch.setenv(MARK, "noise-test")  # as a tour sets it before its chapters
    adopted = _outside("lab-daemon", dict(os.environ))
    unmarked = {k: v for k, v in os.environ.items() if k != MARK}  # ours as our child alone
    server = subprocess.Popen([sys.executable, "-c", BURN, "lab-server", "600"], env=unmarked)
    try:
        wait_until(lambda: procfs.proc_stat(server.pid)["comm"] == "lab-server", 5, "a server")
        watch, machine = noise.Watch(), _busy_s()
        alive = {pid: procfs.proc_stat(pid)["cpu_ticks"] for pid in (adopted, server.pid)}
        waited = resource.getrusage(resource.RUSAGE_CHILDREN)
        _lab_work()
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        others, machine = watch.others(), _busy_s() - machine
        ticks = sum(procfs.proc_stat(pid)["cpu_ticks"] - was for pid, was in alive.items())
        said = watch.warning()
    finally:
        _stop(adopted)
        server.kill()
        server.wait()
    # what the three took, seen from them, is the lab's in the watch's figure (ticks: 10 ms)
    spent = after.ru_utime + after.ru_stime - waited.ru_utime - waited.ru_stime
    spent += ticks / os.sysconf("SC_CLK_TCK")
    assert others.lab * others.seconds >= spent - 0.05, others
    assert others.most not in ("lab-burner", "lab-server", "lab-daemon"), others
    # The rest of the machine by this test's own count (psutil, less what the three said
    # they spent): the watch's figure for the others, to a few ticks (0.02 cores measured).
    neighbours = (machine - spent) / others.seconds
    assert abs(others.cores - neighbours) < 0.2, (neighbours, others)
    # Quiet: the rest stayed clear of the line. A shared machine often does not; then the
    # assertions above still hold.
    if neighbours < noise.OTHERS_CORES - 0.2:
        assert said is None, f"{said}; the others by psutil: {neighbours:.2f} cores"


def test_a_busy_loop_outside_the_lab_is_one_line_of_80_columns(monkeypatch) -> None:
    monkeypatch.delenv(MARK, raising=False)
    neighbour = _outside("busy-neighbour", dict(os.environ))
    try:
        watch = noise.Watch()
        _lab_work()
        others = watch.others()
        said = watch.warning()
    finally:
        _stop(neighbour)
    assert others.cores >= noise.OTHERS_CORES, others
    assert said is not None and "\n" not in said
    # read again as it speaks: the figure may have moved by a tick since
    cores = os.cpu_count()
    assert re.fullmatch(rf"other processes took \d+\.\d of {cores} cores \(most: .+\)", said)
    assert len(f"daemonlab: warning: {said}") <= 80


def test_a_long_name_is_cut_to_fit_80_columns(monkeypatch) -> None:
    crowded = noise.Others(12.3, 0.1, 128, 1.0, "x" * 15)  # comm is at most 15 characters
    monkeypatch.setattr(noise.Watch, "others", lambda self: crowded)
    said = noise.Watch().warning()
    assert said.endswith("x)") and len(f"daemonlab: warning: {said}") <= 80
