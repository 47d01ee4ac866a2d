"""Facts 6, 8 and 9 of `signals`: signals between processes.

6: SIGKILL and SIGSTOP reach a process whatever it asks for.
8: the graceful stop: a TERM handler that only records, against one that works
   (and logs) inside the handler, the reentrancy bug gunicorn hit
   (#2816, #3004, #3198; its arbiter now only queues the signal).
9: SIGCHLD and reaping; who a signal reaches: one pid, a process group, and
   a terminal's ^C (a real pty: its driver signals the foreground group).

The other processes are fresh interpreters running the `_child_*` functions
below (`python -c "from ... import f; f()" ARGS`): real processes, readable
code. Each asks to die with its parent and has a lifetime, so nothing
outlives a check that timed out; the check itself kills and reaps all of them.
"""

from __future__ import annotations

import fcntl
import logging
import os
import signal
import subprocess
import sys
import termios
import time

from lab import children
from lab.experiments.signals import send
from lab.experiments.signals.facts import fact
from lab.experiments.signals.waits import (
    WAIT,
    die_with_parent,
    python,
    read_lines,
    wait_readable,
)
from lab.procfs import set_subreaper

__all__ = ["children_and_groups", "graceful_stop", "kill_and_stop_cannot_be_caught"]

_LIFETIME = 20.0  # seconds any child here lives at most, whatever happens to its parent
_START = 20.0  # seconds for a fresh interpreter to say it is ready, on a loaded machine
EXIT_OK = 0
EXIT_CHILD = 3  # fact 9's forked child: an exit code the reaper must read back


def _child(function: str, *args: object, **popen: object) -> subprocess.Popen:
    code = f"from {__name__} import {function}; {function}()"
    return python(["-c", code, *map(str, args)], **popen)


def _live_out_lifetime() -> None:
    deadline = time.monotonic() + _LIFETIME
    while time.monotonic() < deadline:
        time.sleep(0.02)


def _wait_status(pid: int, flags: int, timeout: float = WAIT) -> int | None:
    """waitpid(pid, WNOHANG | flags) until it reports, or None after `timeout`."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found, status = os.waitpid(pid, os.WNOHANG | flags)
        if found:
            return status
        time.sleep(0.005)
    return None


# -- 6 -------------------------------------------------------------------------------
def _child_stubborn() -> None:
    """Tries to catch and ignore KILL and STOP, blocks every signal, reports, waits."""
    die_with_parent(int(sys.argv[1]))
    answers = []
    for sig in (signal.SIGKILL, signal.SIGSTOP):
        for disposition in (signal.SIG_IGN, lambda signum, frame: None):
            try:
                signal.signal(sig, disposition)
                answers.append("accepted")
            except OSError as exc:
                answers.append(exc.strerror or "refused")
    # The kernel leaves KILL and STOP out of any mask, silently (sigprocmask(2)).
    signal.pthread_sigmask(signal.SIG_BLOCK, signal.valid_signals())
    print(";".join(answers), flush=True)
    _live_out_lifetime()


@fact(
    6,
    "SIGKILL and SIGSTOP cannot be caught or ignored",
    "signal.signal(KILL or STOP, ...) refused; a process blocking every signal "
    "is still stopped by SIGSTOP and killed by SIGKILL",
)
def kill_and_stop_cannot_be_caught(call_size: int) -> tuple[str, bool]:
    proc = _child("_child_stubborn", os.getpid(), stdout=subprocess.PIPE)
    stopped = killed = None
    try:
        answers = read_lines(proc.stdout.fileno(), 1, _START)
        send.send(proc.pid, signal.SIGSTOP)
        stopped = _wait_status(proc.pid, os.WUNTRACED)
        send.send(proc.pid, signal.SIGKILL)
        killed = _wait_status(proc.pid, 0)
        if killed is not None:
            proc.returncode = os.waitstatus_to_exitcode(killed)  # reaped here, not by Popen
    finally:
        proc.stdout.close()
        if proc.returncode is None:
            proc.kill()
            proc.wait()
    said = answers[0].split(";") if answers else []
    refused = [answer for answer in said if answer != "accepted"]
    was_stopped = stopped is not None and os.WIFSTOPPED(stopped)
    was_killed = killed is not None and os.WIFSIGNALED(killed)
    by = signal.Signals(os.WTERMSIG(killed)).name if was_killed else "nothing"
    observed = (
        f"signal.signal(KILL or STOP, handler or SIG_IGN) refused {len(refused)} of {len(said)} "
        f"({', '.join(sorted(set(refused))) or '-'}); every signal blocked, yet SIGSTOP "
        f"stopped it: {was_stopped}, and it was killed by {by}"
    )
    return observed, len(said) == len(refused) == 4 and was_stopped and by == "SIGKILL"


# -- 8 -------------------------------------------------------------------------------
_LINE = 1000  # bytes a log line takes: under PIPE_BUF, so each write(2) is all or nothing
_LINES_PER_UNIT = 70  # 70 kB a unit: more than a 64 KiB pipe, so unit 0 blocks in write
_UNIT_WORK = 0.05  # seconds of "work" per unit, besides its logging
_GRACE = 1.5  # seconds between TERM and KILL
#: What a handler that logs mid-write gets from the stream it interrupted: binary
#: buffered streams are not reentrant and raise RuntimeError rather than corrupt
#: their buffer (https://docs.python.org/3/library/io.html#reentrancy).
REENTRANT = "reentrant call inside"


def _child_worker() -> None:
    """argv: MODE PARENT LINES. A worker whose every unit logs LINES kB to fd 1.

    TERM is handled the way MODE says. The log stream is opened the way a log
    file is (FileHandler): buffered, so a BufferedWriter holds its lock while
    it writes. Not sys.stdout, which PYTHONUNBUFFERED or -u make a raw,
    lock-free stream. The units' journal goes to stderr.
    """
    mode, lines_per_unit = sys.argv[1], int(sys.argv[3])
    die_with_parent(int(sys.argv[2]))
    log_file = open(1, "w", closefd=False)  # the process's log, open as long as it lives
    logging.basicConfig(stream=log_file, level=logging.INFO, format="%(message)s")
    log = logging.getLogger("worker")
    stop_requested: list[int] = []

    def journal(line: str) -> None:
        print(line, file=sys.stderr, flush=True)

    def record_term(signum, frame) -> None:
        """TERM: stop after this unit. Only recorded; the main loop acts on it."""
        stop_requested.append(signum)

    def clean_up_in_handler(signum, frame) -> None:
        """TERM, the tempting way: log, clean up and exit right in the handler."""
        log.warning("TERM received, cleaning up")
        journal("cleaned up")
        sys.exit(EXIT_OK)

    handler = record_term if mode == "flag" else clean_up_in_handler
    signal.signal(signal.SIGTERM, handler)
    padding = "x" * (_LINE - 40)
    deadline = time.monotonic() + _LIFETIME
    unit = 0
    while not stop_requested and time.monotonic() < deadline:
        journal(f"begin {unit}")
        for line in range(lines_per_unit):
            log.info("unit %06d line %03d %s", unit, line, padding)
        time.sleep(_UNIT_WORK)
        journal(f"end {unit}")
        unit += 1
    journal("cleaned up")
    sys.exit(EXIT_OK)


def _wait_until_full(fd: int, timeout: float) -> bool:
    """True once the pipe is more than half full and has stopped filling: its writer blocks.

    Not "size less one line": small writes share pages, so a pipe of 64 KiB
    counts as full with 64,000 bytes of 1,000-byte lines in it.
    """
    half = fcntl.fcntl(fd, fcntl.F_GETPIPE_SZ) // 2
    deadline = time.monotonic() + timeout
    before = -1
    while time.monotonic() < deadline:
        queued = int.from_bytes(fcntl.ioctl(fd, termios.FIONREAD, b"\0\0\0\0"), sys.byteorder)
        if queued > half and queued == before:
            return True
        before = queued
        time.sleep(0.05)
    return False


def _stop_worker(mode: str) -> dict[str, object]:
    """Start a worker, let it block writing its log, TERM it, drain, escalate if needed."""
    proc = _child(
        "_child_worker",
        mode,
        os.getpid(),
        _LINES_PER_UNIT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    killed = False
    try:
        # A full pipe is the evidence that the worker is inside write(2), not
        # between writes: only there does TERM interrupt a write in progress.
        full = _wait_until_full(proc.stdout.fileno(), _START)
        # It is now in write(2) with nothing written: the TERM interrupts that
        # call (EINTR), and PEP 475 runs the handler inside the stream's write.
        send.send(proc.pid, signal.SIGTERM)
        try:
            out, err = proc.communicate(timeout=_GRACE)
        except subprocess.TimeoutExpired:
            proc.kill()  # the TERM went unanswered: escalate, visibly (the record says so)
            killed = True
            out, err = proc.communicate(timeout=WAIT)
    finally:
        children.stop_popen(proc, 1.0)
    journal = err.decode().split("\n")
    begun = [line for line in journal if line.startswith("begin")]
    # logging's handleError prints what went wrong in emit() to sys.stderr: the journal.
    errors = [line for line in journal if line.startswith("RuntimeError")]
    return {
        "full": full,
        "exit": proc.returncode,
        "killed": killed,
        "units_done": sum(line.startswith("end") for line in journal),
        "unit_finished": bool(begun) and f"end {begun[-1].split()[1]}" in journal,
        "cleaned_up": "cleaned up" in journal,
        "error": errors[-1] if errors else None,
    }


@fact(
    8,
    "graceful stop: TERM only sets a flag; the main loop finishes its unit and exits 0",
    "TERM while the log pipe is full (the worker blocked in write): flag: unit finished, "
    "cleaned up, exit 0; logging and exiting in the handler: 'reentrant call' error, "
    "the unit left half done",
)
def graceful_stop(call_size: int) -> tuple[str, bool]:
    flag = _stop_worker("flag")
    in_handler = _stop_worker("handler")
    graceful = (
        flag["full"]
        and flag["exit"] == EXIT_OK
        and not flag["killed"]
        and flag["unit_finished"]
        and flag["cleaned_up"]
        and flag["error"] is None
    )
    # The bug itself, not merely a unit cut short (which exiting anywhere would cause):
    # the handler re-entered the write it interrupted, and the stream said so.
    reentered = (
        in_handler["full"]
        and REENTRANT in str(in_handler["error"])
        and not in_handler["unit_finished"]
    )
    stopped = "TERM lost, KILL after the grace" if in_handler["killed"] else "stopped"
    observed = (
        f"pipe full when TERM came: {flag['full']} and {in_handler['full']}; flag: exit "
        f"{flag['exit']}, unit finished {flag['unit_finished']}, cleaned up "
        f"{flag['cleaned_up']}; in the handler: {in_handler['error'] or 'no error'}, {stopped}, "
        f"exit {in_handler['exit']}, unit finished {in_handler['unit_finished']}"
    )
    return observed, bool(graceful and reentered)


# -- 9 -------------------------------------------------------------------------------
def _child_group_member() -> None:
    """argv: ROLE PARENT. The leader takes the pty as its terminal and starts a second member."""
    role, parent = sys.argv[1], int(sys.argv[2])
    die_with_parent(parent)
    second = None
    if role == "leader":
        # A session leader (start_new_session) without a terminal: TIOCSCTTY makes
        # stdin, the pty, its controlling terminal, and its group the foreground.
        fcntl.ioctl(0, termios.TIOCSCTTY, 0)
        code = f"from {__name__} import _child_group_member; _child_group_member()"
        second = subprocess.Popen([sys.executable, "-c", code, "member", str(os.getpid())])

    def report(signum, frame) -> None:
        os.write(1, f"{os.getpid()} {signal.Signals(signum).name}\n".encode())

    for sig in (signal.SIGINT, signal.SIGUSR1):
        signal.signal(sig, report)
    os.write(1, f"ready {os.getpid()} {os.getpgid(0)}\n".encode())
    _live_out_lifetime()
    if second is not None:
        children.stop_popen(second, 1.0)


def _sigchld_then_reap() -> tuple[float | None, list[tuple[int, int]]]:
    """Fork a child that exits EXIT_CHILD; SIGCHLD wakes us; the main loop reaps it."""
    woken_r, woken_w = os.pipe()
    old = signal.signal(signal.SIGCHLD, lambda signum, frame: os.write(woken_w, b"c"))
    try:
        started = time.perf_counter()
        pid = os.fork()
        if pid == 0:  # the child: nothing to do but exit with a code the parent will read
            try:
                pass
            finally:
                os._exit(EXIT_CHILD)
        woke = wait_readable([woken_r], WAIT)
        after = (time.perf_counter() - started) * 1e3 if woke else None
        return after, children.reap_all(WAIT)  # waitpid(-1, WNOHANG) until ECHILD
    finally:
        signal.signal(signal.SIGCHLD, old)
        os.close(woken_r)
        os.close(woken_w)


def _who_got_what(report_fd: int, expected: int) -> dict[int, str]:
    # One line more than expected, within a bound: an extra report would be a wrong answer.
    lines = read_lines(report_fd, expected + 1, WAIT if expected > 1 else 0.5)
    return {int(pid): name for pid, name in (line.split() for line in lines)}


def _signal_a_group() -> dict[str, object]:
    set_subreaper(True)  # the second member's parent is killed too: it must come back to us
    master, terminal = os.openpty()
    report_r, report_w = os.pipe()
    leader = _child(
        "_child_group_member",
        "leader",
        os.getpid(),
        stdin=terminal,
        stdout=report_w,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    os.close(terminal)
    os.close(report_w)
    try:
        ready = [line.split() for line in read_lines(report_r, 2, _START)]
        pids = sorted(int(pid) for _, pid, _ in ready)
        pgid = leader.pid
        second = next(pid for pid in pids if pid != leader.pid)
        send.send(second, signal.SIGUSR1)
        one = _who_got_what(report_r, 1)
        send.send_to_group(pgid, signal.SIGUSR1)
        group = _who_got_what(report_r, 2)
        send.type_interrupt_key(master)
        terminal_got = _who_got_what(report_r, 2)
    finally:
        try:
            os.killpg(leader.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        leader.wait(WAIT)
        children.reap_all(WAIT)
        os.close(master)
        os.close(report_r)
    return {"pids": pids, "second": second, "one": one, "group": group, "terminal": terminal_got}


@fact(
    9,
    "signals and children: SIGCHLD, reaping; kill reaches a pid, killpg and ^C a group",
    "SIGCHLD on exit, reaped with its exit code; kill -> 1 of 2 group members, "
    "os.killpg -> 2 of 2, ^C typed on a pty -> SIGINT to 2 of 2",
)
def children_and_groups(call_size: int) -> tuple[str, bool]:
    woke_after, reaped = _sigchld_then_reap()
    seen = _signal_a_group()
    both = dict.fromkeys(seen["pids"], "SIGUSR1")
    holds = (
        woke_after is not None
        and [code for _, code in reaped] == [EXIT_CHILD]
        and seen["one"] == {seen["second"]: "SIGUSR1"}
        and seen["group"] == both
        and seen["terminal"] == dict.fromkeys(seen["pids"], "SIGINT")
    )
    woke = f"{woke_after:.2f} ms" if woke_after is not None else "never"
    observed = (
        f"SIGCHLD after {woke}, reaped exit codes {[code for _, code in reaped]}; "
        f"kill: {len(seen['one'])} of 2 got it, killpg: {len(seen['group'])} of 2, "
        f"^C: {sorted(seen['terminal'].values())}"
    )
    return observed, holds
