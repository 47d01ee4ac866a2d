"""`daemonlab signals`: every signal of this platform, numbered as `kill -l` numbers them.

For each signal in signal.valid_signals() (the real-time ones SIGRTMIN..SIGRTMAX
included): its number, its name (with the same real-time names bash's
`kill -l` prints: SIGRTMIN+3, SIGRTMAX-2), its aliases, the kernel's default
action, whether a process can catch it, what Python itself does with it at
start, and the C library's description (signal.strsignal).

Python's disposition at start is read, not assumed: a fresh isolated
interpreter (`python -I`) reports signal.getsignal() for every signal. Expect
SIGINT to raise KeyboardInterrupt (signal.default_int_handler) and SIGPIPE and
SIGXFSZ to be ignored (so writes fail with BrokenPipeError and EFBIG instead
of killing the process); a signal the launcher ignored (nohup ignores SIGHUP)
stays ignored, and shows so.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from typing import Any

__all__ = ["DEFAULT_ACTIONS", "main", "rows", "signal_name"]

#: The default action of each standard signal: the "Standard signals" table of
#: signal(7), Linux man-pages (man7.org/linux/man-pages/man7/signal.7.html).
#: "Term" terminate, "Core" terminate and dump core, "Ign" ignore, "Stop"
#: stop, "Cont" continue if stopped. Real-time signals: "The default action
#: for an unhandled real-time signal is to terminate the receiving process".
DEFAULT_ACTIONS = {
    "SIGABRT": "core",
    "SIGALRM": "terminate",
    "SIGBUS": "core",
    "SIGCHLD": "ignore",
    "SIGCONT": "continue",
    "SIGEMT": "terminate",
    "SIGFPE": "core",
    "SIGHUP": "terminate",
    "SIGILL": "core",
    "SIGINT": "terminate",
    "SIGIO": "terminate",
    "SIGKILL": "terminate",
    "SIGPIPE": "terminate",
    "SIGPROF": "terminate",
    "SIGPWR": "terminate",
    "SIGQUIT": "core",
    "SIGSEGV": "core",
    "SIGSTKFLT": "terminate",
    "SIGSTOP": "stop",
    "SIGTSTP": "stop",
    "SIGSYS": "core",
    "SIGTERM": "terminate",
    "SIGTRAP": "core",
    "SIGTTIN": "stop",
    "SIGTTOU": "stop",
    "SIGURG": "ignore",
    "SIGUSR1": "terminate",
    "SIGUSR2": "terminate",
    "SIGVTALRM": "terminate",
    "SIGXCPU": "core",
    "SIGXFSZ": "core",
    "SIGWINCH": "ignore",
}
_REALTIME_ACTION = "terminate"
_UNCATCHABLE = {signal.SIGKILL, signal.SIGSTOP}  # sigaction(2): EINVAL for these two

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
    aliases = _aliases()
    table = []
    for number in sorted(int(s) for s in signal.valid_signals()):
        name = signal_name(number)
        realtime = signal.SIGRTMIN <= number <= signal.SIGRTMAX
        table.append(
            {
                "number": number,
                "name": name,
                "aliases": aliases.get(number, []),
                "default_action": _REALTIME_ACTION if realtime else DEFAULT_ACTIONS.get(name, "?"),
                "catchable": number not in _UNCATCHABLE,
                "python_at_start": at_start.get(number, "?"),
                "description": signal.strsignal(number) or "",
            }
        )
    return table


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
        caption="default action: signal(7); Python at start: signal.getsignal() in a fresh "
        "`python -I`; description: signal.strsignal()",
        caption_justify="left",
    )
    for column in ("#", "name", "default action", "catch", "Python at start", "description"):
        out.add_column(column, justify="right" if column == "#" else "left")
    for row in table:
        also = f" ({', '.join(row['aliases'])})" if row["aliases"] else ""
        out.add_row(
            str(row["number"]),
            row["name"] + also,
            row["default_action"],
            "yes" if row["catchable"] else "no",
            row["python_at_start"],
            row["description"],
        )
    console().print(out)
    return 0
