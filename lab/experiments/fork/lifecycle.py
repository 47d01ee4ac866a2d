"""Facts 6-10: how a forked child ends, and what its ending leaves for the parent.

- 6: unflushed stdout is in the copied memory: a child that exits normally
  prints it again. Only where stdout is a pipe or file (block-buffered); a
  terminal flushes every line.
- 7: atexit handlers are copied too: they run in a child that ends with
  sys.exit, and not in one that ends with os._exit (why forked children leave
  by os._exit).
- 8: an exited child is a zombie (state Z) until the parent waits for it.
- 9: an orphan is adopted: by init, or by the nearest subreaper above it.
- 10: the wait status tells an exit code from death by a signal.

6 and 7 are about a whole program's exit, which a forked child of the
checklist cannot show (its sys.exit would unwind through the checklist's own
frames): they run a small script under this same interpreter with stdout a
pipe. The script forks through SCRIPT_FORK, which tests replace.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable

from lab import children, procfs
from lab.experiments.fork import probes
from lab.experiments.fork.probes import Outcome

__all__ = [
    "atexit_runs_again",
    "exit_status_decoded",
    "orphan_is_adopted",
    "stdout_printed_twice",
    "zombie_until_waited",
]

#: The fork call the scripts of facts 6 and 7 make (an expression).
SCRIPT_FORK = "os.fork"
#: A script's whole run: an interpreter start plus two forks.
SCRIPT_TIMEOUT_S = 20.0

_STDOUT_SCRIPT = """\
import os, sys
fork = {fork}
print("written before fork")
{flush}
pid = fork()
if pid == 0:
    sys.exit(0)  # a normal exit: the interpreter flushes stdout on the way out
os.waitpid(pid, 0)
"""

_ATEXIT_SCRIPT = """\
import atexit, os, sys
fork = {fork}
role = "parent"
atexit.register(lambda: print("atexit ran in the", role, flush=True))
for how in ("sys.exit", "os._exit"):
    pid = fork()
    if pid == 0:
        role = how + " child"
        if how == "sys.exit":
            sys.exit(0)
        os._exit(0)
    os.waitpid(pid, 0)
"""


def _script(template: str, **fill: str) -> str:
    """Run a script under this interpreter, stdout a pipe; its stdout (or the error)."""
    code = template.format(fork=SCRIPT_FORK, **fill)
    try:
        done = subprocess.run(
            [sys.executable, "-I", "-c", code],
            capture_output=True,
            text=True,
            timeout=SCRIPT_TIMEOUT_S,
            stdin=subprocess.DEVNULL,
        )
    except subprocess.TimeoutExpired:
        return "script timed out"
    return done.stdout if done.returncode == 0 else f"script failed: {done.stderr.strip()}"


def stdout_printed_twice(options: dict) -> Outcome:
    unflushed = _script(_STDOUT_SCRIPT, flush="").count("written before fork")
    flushed = _script(_STDOUT_SCRIPT, flush="sys.stdout.flush()").count("written before fork")
    expected = "the line appears twice without a flush before fork, once with one"
    observed = f"without flush: {unflushed} copies; with sys.stdout.flush() first: {flushed}"
    return Outcome(expected, observed, unflushed == 2 and flushed == 1)


def atexit_runs_again(options: dict) -> Outcome:
    out = _script(_ATEXIT_SCRIPT)
    prefix = "atexit ran in the "
    ran = [line[len(prefix) :] for line in out.splitlines() if line.startswith(prefix)]
    expected = "handler runs in the sys.exit child and the parent, not the os._exit child"
    observed = "ran in: " + (", ".join(ran) if ran else out or "nothing")
    return Outcome(expected, observed, ran == ["sys.exit child", "parent"])


ZOMBIE_EXIT = 0


def _watch_until_zombie(pid: int) -> list[str]:
    """The states /proc/PID/stat shows, in order, until Z (or the process is gone)."""
    states: list[str] = []
    deadline = time.monotonic() + probes.WAIT_S
    while time.monotonic() < deadline:
        stat = probes.proc_stat(pid)
        state = stat["state"] if stat else "gone"
        if not states or states[-1] != state:
            states.append(state)
        if state in ("Z", "gone"):
            break
        time.sleep(0.001)
    return states


def _say_pid_then_exit(code: int) -> Callable[[int], int]:
    """A child's body: write its pid on the pipe, then exit with `code`."""

    def body(w: int) -> int:
        os.write(w, f"{os.getpid()}\n".encode())
        return code

    return body


def zombie_until_waited(options: dict) -> Outcome:
    with probes.forked(_say_pid_then_exit(ZOMBIE_EXIT)) as (pid, r):
        said = probes.read_line(r)
        probes.read_to_eof(r)  # EOF: the child's descriptors are closed, it is exiting
        states = _watch_until_zombie(pid)
        status = probes.wait_bounded(pid)
    after = probes.proc_stat(pid)
    after_state = after["state"] if after else "gone"
    expected = "state Z in /proc/PID/stat after exit; /proc/PID gone once waited for"
    if said is None or int(said) != pid:
        return Outcome(expected, f"no child of ours reported (fork gave {pid})", False)
    holds = states[-1] == "Z" and status is not None and after is None
    observed = (
        f"child {pid}: states {' -> '.join(states)} before wait; after waitpid: {after_state}"
    )
    picture = {"parent": os.getpid(), "child": pid, "before": states[-1], "after": after_state}
    return Outcome(expected, observed, holds, picture)


def orphan_is_adopted(options: dict) -> Outcome:
    """We become a subreaper; our child forks a grandchild and exits at once.

    The grandchild, orphaned, watches getppid change, and says who adopted it.
    Without the subreaper it would go to PID 1, which reaps adopted orphans
    late on some machines (1.2-1.6 s here): a subreaper reaps its own at once.
    """
    was = procfs.is_subreaper()
    if not procfs.set_subreaper(True):
        raise OSError("prctl(PR_SET_CHILD_SUBREAPER) failed: Linux 3.4 or newer is needed")
    r, w = os.pipe()
    try:
        middle = probes.fork()
        if middle == 0:
            try:
                os.close(r)
                me = os.getpid()
                if probes.fork() == 0:  # the grandchild, orphaned as soon as `middle` exits
                    code = probes.CHILD_FAILED
                    try:
                        deadline = time.monotonic() + probes.WAIT_S
                        while os.getppid() == me and time.monotonic() < deadline:
                            time.sleep(0.0005)
                        line = f"{os.getpid()} {me} {os.getppid()}\n"
                        os.write(w, line.encode())
                        code = probes.CHILD_OK
                    finally:
                        os._exit(code)
            finally:
                os._exit(probes.CHILD_OK)  # the middle leaves its child behind
        os.close(w)
        w = -1
        probes.wait_bounded(middle)
        said = probes.read_line(r)
        orphan = int(said.split()[0]) if said else None
        reaped = probes.wait_bounded(orphan) if orphan else None
    finally:
        os.close(r)
        if w != -1:
            os.close(w)
        procfs.set_subreaper(was)
    me = os.getpid()
    expected = f"the orphan's getppid() becomes the subreaper ({me}), which reaps it"
    if said is None:
        return Outcome(expected, f"no orphan reported (fork gave {middle})", False)
    _, old_parent, new_parent = map(int, said.split())
    holds = old_parent == middle and new_parent == me and reaped is not None
    observed = (
        f"orphan {orphan}: parent {old_parent} exited; getppid() now {new_parent} "
        f"(subreaper {me}); reaped by it: {reaped is not None}"
    )
    picture = {"subreaper": me, "middle": middle, "orphan": orphan, "adopter": new_parent}
    return Outcome(expected, observed, holds, picture)


#: The code the first child exits with; any small number would do, it only has to come back.
DEMO_EXIT_CODE = 3


def _die_by_sigterm() -> dict:
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    os.kill(os.getpid(), signal.SIGTERM)
    return {"survived": True}  # not reached: the default action of TERM ends the process


def exit_status_decoded(options: dict) -> Outcome:
    """One child exits with a code, one dies by a signal; the status says which."""
    with probes.forked(_say_pid_then_exit(DEMO_EXIT_CODE)) as (exiting, r):
        said = probes.read_line(r)
        exited = probes.wait_bounded(exiting)
    killed_pid, report, killed = probes.run_child(_die_by_sigterm)
    expected = f"exit({DEMO_EXIT_CODE}) -> {DEMO_EXIT_CODE}; death by SIGTERM -> -15"
    if said is None or exited is None or killed is None or killed_pid <= 0:
        return Outcome(expected, "the children did not report", False)
    code = children.exit_code(exited)
    by_signal = children.exit_code(killed)
    holds = (
        int(said) == exiting
        and os.WIFEXITED(exited)
        and code == DEMO_EXIT_CODE
        and os.WIFSIGNALED(killed)
        and by_signal == -signal.SIGTERM
        and report is None  # the signalled child never got to report "survived"
    )
    observed = (
        f"raw {exited} -> WIFEXITED, code {code}; raw {killed} -> WIFSIGNALED, {by_signal} "
        f"({signal.Signals(-by_signal).name if by_signal < 0 else 'no signal'})"
    )
    picture = {"exited": exiting, "exit_raw": exited, "killed": killed_pid, "kill_raw": killed}
    return Outcome(expected, observed, holds, picture)
