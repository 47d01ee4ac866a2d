"""`daemonlab signals`: every signal of this platform, numbered as `kill -l` numbers them.

For each signal in signal.valid_signals() (the real-time ones SIGRTMIN..SIGRTMAX
included): its number, its name (with the same real-time names bash's
`kill -l` prints: SIGRTMIN+3, SIGRTMAX-2), its aliases, its default action,
whether a process can catch it, what Python itself does with it at start, and
the C library's description (signal.strsignal).

The default action is measured, not looked up: each signal is sent to a child
of its own that has the default disposition for it (and nothing blocked), and
what the kernel did is read back with waitpid(2): killed (terminate), killed
with WCOREDUMP set (core), stopped (stop), or nothing at all. A child on which
nothing happened is then stopped and sent the signal again: if it resumes
(WIFCONTINUED) the action is "continue", otherwise "ignore". signal(7) lists
the same actions; tests/test_signals_table.py holds the two side by side.
Core dumps are made small (coredump_filter 0: headers and registers only) and
land in a temporary folder removed afterwards; where the kernel would hand
them to a program or write them to a fixed path (core_pattern), the children
are made non-dumpable instead, and "core" reads "terminate" with a note.

Python's disposition at start is read, not assumed: a fresh isolated
interpreter (`python -I`) reports signal.getsignal() for every signal. Expect
SIGINT to raise KeyboardInterrupt (signal.default_int_handler) and SIGPIPE and
SIGXFSZ to be ignored (so writes fail with BrokenPipeError and EFBIG instead
of killing the process); a signal the launcher ignored (nohup ignores SIGHUP)
stays ignored, and shows so.
"""

from __future__ import annotations

import json
import os
import select
import signal
import subprocess
import sys
import tempfile
import time
from typing import Any

from lab import children

__all__ = ["core_dumps", "default_actions", "main", "rows", "signal_name"]

_UNCATCHABLE = {signal.SIGKILL, signal.SIGSTOP}  # sigaction(2): EINVAL for these two
#: How long a child is watched for the kernel's answer: a kill or a stop is seen
#: in microseconds (a core dump of headers in a millisecond or two); an ignored
#: signal shows nothing, so this is also how long "nothing" takes to be believed.
_WATCH_S = 0.5
_START_S = 30.0  # sixty-odd fresh interpreters starting at once on a loaded machine

# Runs in a fresh `python -I -S` per signal: argv N WHERE DUMPABLE. The default
# disposition for N and nothing blocked, small core dumps into WHERE, then "r"
# on stdout and a sleep (an idle process: the default action is taken at once).
_PROBE = """
import os, resource, signal, sys, time
number, where, dumpable = int(sys.argv[1]), sys.argv[2], sys.argv[3] == "1"
if number not in (signal.SIGKILL, signal.SIGSTOP):
    signal.signal(number, signal.SIG_DFL)
signal.pthread_sigmask(signal.SIG_SETMASK, [])
os.chdir(where)
if dumpable:
    with open("/proc/self/coredump_filter", "w") as f:
        f.write("0")  # no memory in the core: the ELF headers and notes only
    soft, hard = resource.getrlimit(resource.RLIMIT_CORE)
    resource.setrlimit(resource.RLIMIT_CORE, (hard, hard))
else:
    import ctypes
    ctypes.CDLL(None).prctl(4, 0, 0, 0, 0)  # PR_SET_DUMPABLE 0: no core, anywhere
os.write(1, b"r")
time.sleep(60)
"""

# Runs in a fresh `python -I`: what Python set up, before any code of ours ran.
_DISPOSITIONS = """
import json, signal
def say(handler):
    if handler is signal.SIG_DFL:
        return "default"
    if handler is signal.SIG_IGN:
        return "ignored"
    if handler is signal.default_int_handler:
        return "raises KeyboardInterrupt"
    return "set outside Python" if handler is None else repr(handler)
print(json.dumps({int(s): say(signal.getsignal(s)) for s in signal.valid_signals()}))
"""


def core_dumps() -> str | None:
    """None when a core can be dumped where we say (a relative core_pattern), else why not.

    core(5): a pattern starting with "|" pipes the core to a program (systemd-
    coredump, apport: it would be kept system-wide), one starting with "/" names
    a fixed folder; both would leave files outside the lab. A relative pattern
    puts the core in the dying process's working directory: ours to remove.
    """
    import resource

    try:
        with open("/proc/sys/kernel/core_pattern") as f:
            pattern = f.read().strip()
    except OSError:
        return "core_pattern unreadable"
    if pattern.startswith(("|", "/")):
        return f"core_pattern is {pattern.split()[0]!r}"
    if resource.getrlimit(resource.RLIMIT_CORE)[1] == 0:
        return "the hard RLIMIT_CORE is 0"
    return None


def default_actions() -> dict[int, str]:
    """Every valid signal's default action, by number, as this kernel takes it."""
    numbers = sorted(int(s) for s in signal.valid_signals())
    dumpable = core_dumps() is None
    reaped: set[int] = set()  # never signal a reaped pid: it may be someone else's by now
    with tempfile.TemporaryDirectory(prefix="daemonlab-signals-") as where:
        probes: dict[int, tuple[int, int]] = {}
        try:
            for number in numbers:
                probes[number] = _start_probe(number, os.path.join(where, str(number)), dumpable)
            _await_ready(probes)
            for number, (pid, _) in probes.items():
                os.kill(pid, number)
            actions = _watch({pid: n for n, (pid, _) in probes.items()}, reaped)
            quiet = {pid: n for n, (pid, _) in probes.items() if n not in actions}
            for pid in quiet:  # nothing happened: stopped, does it resume?
                os.kill(pid, signal.SIGSTOP)
            stopped = _watch(dict(quiet), reaped)
            for pid, number in quiet.items():
                os.kill(pid, number)
            resumed = _watch(dict(quiet), reaped, until_continued=True)
            for number in quiet.values():
                # "stop" here is SIGSTOP's doing; a child it did not stop proves nothing
                seen = stopped.get(number) == "stop"
                actions[number] = resumed.get(number, "ignore") if seen else "?"
        finally:
            alive = [pid for pid, _ in probes.values() if pid not in reaped]
            children.signal_pids(alive, signal.SIGKILL)
            for _, read_fd in probes.values():
                os.close(read_fd)
            for pid in alive:
                children.wait_pid(pid, children.GRACE_S)  # KILL cannot be caught: at once
    return actions


def _start_probe(number: int, where: str, dumpable: bool) -> tuple[int, int]:
    """(pid, read end of its stdout) of a fresh interpreter holding `number`'s default.

    posix_spawn with setsigdef: every disposition the child starts with is the
    default, even one this process inherited as ignored (nohup's SIGHUP);
    setpgroup: a group of its own, whose parent (us) is in another group of the
    same session, so the group is not orphaned and the kernel does not discard
    the terminal's stop signals (TSTP, TTIN, TTOU) sent to it.
    """
    os.mkdir(where)
    read_fd, write_fd = os.pipe()
    try:
        argv = [sys.executable, "-I", "-S", "-c", _PROBE, str(number), where, str(int(dumpable))]
        pid = os.posix_spawn(
            sys.executable,
            argv,
            os.environ,
            file_actions=[(os.POSIX_SPAWN_DUP2, write_fd, 1)],
            setsigdef=[s for s in signal.valid_signals() if s not in _UNCATCHABLE],
            setsigmask=(),
            setpgroup=0,
        )
    finally:
        os.close(write_fd)
    return pid, read_fd


def _await_ready(probes: dict[int, tuple[int, int]]) -> None:
    waiting = {read_fd for _, read_fd in probes.values()}
    deadline = time.monotonic() + _START_S
    while waiting:
        ready, _, _ = select.select(list(waiting), [], [], max(0.0, deadline - time.monotonic()))
        if not ready:
            raise RuntimeError(f"{len(waiting)} signal probes did not start within {_START_S:g} s")
        for fd in ready:
            if os.read(fd, 1) != b"r":
                raise RuntimeError("a signal probe died before it was ready")
            waiting.discard(fd)


def _watch(
    pids: dict[int, int], reaped: set[int], *, until_continued: bool = False
) -> dict[int, str]:
    """{signal number: action} for the children in `pids` (pid -> its signal) that changed
    state within _WATCH_S: killed (with a core or not), stopped, or continued.

    The killed ones are reaped here, and added to `reaped`.
    """
    flags = os.WNOHANG | (os.WCONTINUED if until_continued else os.WUNTRACED)
    seen: dict[int, str] = {}
    left = dict(pids)
    deadline = time.monotonic() + _WATCH_S
    while left and time.monotonic() < deadline:
        for pid, number in list(left.items()):
            found, status = os.waitpid(pid, flags)
            if not found:
                continue
            del left[pid]
            if os.WIFCONTINUED(status):
                seen[number] = "continue"
            elif os.WIFSTOPPED(status):
                seen[number] = "stop"
            elif os.WIFSIGNALED(status):
                seen[number] = "core" if os.WCOREDUMP(status) else "terminate"
                reaped.add(pid)
        time.sleep(0.002)
    return seen


def signal_name(number: int) -> str:
    """The name `kill -l` prints: SIGRTMIN+k up to the middle of the range, SIGRTMAX-k after."""
    low, high = signal.SIGRTMIN, signal.SIGRTMAX
    if low <= number <= high:
        if number - low <= (high - low) // 2:
            return "SIGRTMIN" + (f"+{number - low}" if number > low else "")
        return "SIGRTMAX" + (f"-{high - number}" if number < high else "")
    return signal.Signals(number).name


def _aliases() -> dict[int, list[str]]:
    found: dict[int, list[str]] = {}
    for name, member in signal.Signals.__members__.items():
        if name != member.name:  # SIGIOT is SIGABRT, SIGCLD SIGCHLD, SIGPOLL SIGIO
            found.setdefault(int(member), []).append(name)
    return found


def python_dispositions() -> dict[int, str]:
    """signal.getsignal() of every signal, in a fresh isolated interpreter."""
    out = subprocess.run(
        [sys.executable, "-I", "-c", _DISPOSITIONS],
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    ).stdout
    return {int(number): said for number, said in json.loads(out).items()}


def rows() -> list[dict[str, Any]]:
    """One dict per signal of this platform, by number."""
    at_start = python_dispositions()
    actions = default_actions()
    aliases = _aliases()
    table = []
    for number in sorted(int(s) for s in signal.valid_signals()):
        table.append(
            {
                "number": number,
                "name": signal_name(number),
                "aliases": aliases.get(number, []),
                "default_action": actions.get(number, "?"),
                "catchable": number not in _UNCATCHABLE,
                "python_at_start": at_start.get(number, "?"),
                "description": signal.strsignal(number) or "",
            }
        )
    return table


def _no_cores() -> str:
    why = core_dumps()
    return f"; no core dumps here, {why}: core reads terminate" if why else ""


def main(as_json: bool = False) -> int:
    """Print the table (or, as_json, the rows as JSON) on stdout."""
    table = rows()
    if as_json:
        print(json.dumps(table, indent=2))
        return 0
    from rich.table import Table

    from lab.report import console

    out = Table(
        title=f"signals of this platform ({len(table)}; `kill -l` numbers them the same)",
        title_justify="left",
        caption="default action: measured, each signal sent to a child with the default "
        f"disposition (waitpid; core: WCOREDUMP{_no_cores()}); Python at start: "
        "signal.getsignal() in a fresh `python -I`; description: signal.strsignal()",
        caption_justify="left",
        pad_edge=False,
    )
    cells_of = [
        (
            str(row["number"]),
            row["name"] + (f" ({', '.join(row['aliases'])})" if row["aliases"] else ""),
            row["default_action"],
            "yes" if row["catchable"] else "no",
            row["python_at_start"],
            row["description"],
        )
        for row in table
    ]
    titles = ("#", "name", "default action", "catch", "Python at start", "description")
    for index, column in enumerate(titles):
        # At 80 columns rich squeezed "Python at start" and cut a word ("KeyboardInter…")
        # while it kept "name" and "default action" wide: each is held to its longest word.
        widest = max(len(word) for cells in cells_of for word in cells[index].split())
        out.add_column(
            column,
            justify="right" if column == "#" else "left",
            min_width=widest if column == "Python at start" else None,
            max_width=widest if column in ("name", "default action") else None,
        )
    for cells in cells_of:
        out.add_row(*cells)
    console().print(out)
    return 0
