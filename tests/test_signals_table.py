"""`daemonlab signals` lists this machine's signals as `kill -l` numbers them.

Compared name for name with two independent listings: bash's builtin
`kill -l` (real-time signals included, as SIGRTMIN+k / SIGRTMAX-k) and
util-linux's `/bin/kill -L` (standard signals, without the SIG prefix).
Real-time names are normalised to numbers, so RTMAX-14 and RTMIN+16 are the
same signal whichever way a tool names it. The default actions, measured
live by the table, are compared with the ones signal(7) documents.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
from pathlib import Path

import pytest

from tests.conftest import run_cli


def _canonical(name: str) -> str:
    """SIGRTMIN+3 / RTMAX-2 -> 'RT50'-style numbers; SIGTERM / TERM -> 'TERM'."""
    name = name.removeprefix("SIG")
    match = re.fullmatch(r"RT(MIN|MAX)([+-]\d+)?", name)
    if match:
        base = signal.SIGRTMIN if match[1] == "MIN" else signal.SIGRTMAX
        return f"RT{base + int(match[2] or 0)}"
    return name


@pytest.fixture(scope="module")
def table_rows() -> list[dict]:
    """`daemonlab signals --json`, run as a daemon would run it: leading a session of its
    own, so its process group is orphaned (the kernel discards TSTP, TTIN and TTOU sent
    to an orphaned group: the table's probes must not be in it)."""
    done = run_cli("signals", "--json", timeout=60, start_new_session=True)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


@pytest.fixture(scope="module")
def listed(table_rows) -> dict[int, set[str]]:
    """number -> every name `daemonlab signals` gives it (its name and its aliases)."""
    return {
        row["number"]: {_canonical(n) for n in [row["name"], *row["aliases"]]} for row in table_rows
    }


def test_agrees_with_bash_kill_l_name_for_name(listed) -> None:
    if not shutil.which("bash"):
        pytest.skip("no bash here")
    out = subprocess.run(["bash", "-c", "kill -l"], capture_output=True, text=True, timeout=10)
    bash = {int(n): _canonical(name) for n, name in re.findall(r"(\d+)\) (\S+)", out.stdout)}
    assert len(bash) >= 31
    assert set(bash) == set(listed)
    for number, name in bash.items():
        assert name in listed[number], (number, name, listed[number])


def test_agrees_with_util_linux_kill_name_for_name(listed) -> None:
    if not shutil.which("kill", path="/bin:/usr/bin"):
        pytest.skip("no /bin/kill here")
    out = subprocess.run(["/bin/kill", "-L"], capture_output=True, text=True, timeout=10)
    util = {int(n): _canonical(name) for n, name in re.findall(r"(\d+) (\w+)", out.stdout)}
    assert len(util) >= 31
    for number, name in util.items():  # SIGIO is POLL here: an alias, also listed
        assert name in listed[number], (number, name, listed[number])


def test_real_time_signals_are_all_listed(listed) -> None:
    for number in range(signal.SIGRTMIN, signal.SIGRTMAX + 1):
        assert f"RT{number}" in listed[number]


#: signal(7), "Standard signals" (https://man7.org/linux/man-pages/man7/signal.7.html):
#: Term, Core, Ign, Stop, Cont. Real-time signals: "The default action for an
#: unhandled real-time signal is to terminate the receiving process."
SIGNAL_7 = {
    "SIGABRT": "core", "SIGALRM": "terminate", "SIGBUS": "core", "SIGCHLD": "ignore",
    "SIGCONT": "continue", "SIGFPE": "core", "SIGHUP": "terminate", "SIGILL": "core",
    "SIGINT": "terminate", "SIGIO": "terminate", "SIGKILL": "terminate",
    "SIGPIPE": "terminate", "SIGPROF": "terminate", "SIGPWR": "terminate",
    "SIGQUIT": "core", "SIGSEGV": "core", "SIGSTKFLT": "terminate", "SIGSTOP": "stop",
    "SIGTSTP": "stop", "SIGSYS": "core", "SIGTERM": "terminate", "SIGTRAP": "core",
    "SIGTTIN": "stop", "SIGTTOU": "stop", "SIGURG": "ignore", "SIGUSR1": "terminate",
    "SIGUSR2": "terminate", "SIGVTALRM": "terminate", "SIGXCPU": "core", "SIGXFSZ": "core",
    "SIGWINCH": "ignore",
}  # fmt: skip


def test_default_actions_measured_live_are_the_ones_signal_7_documents(table_rows) -> None:
    from lab.experiments.signals.table import core_dumps

    if core_dumps() is not None:  # no core can be made here: "core" is seen as terminate
        pytest.skip(f"core dumps cannot be measured here: {core_dumps()}")
    measured = {row["name"]: row["default_action"] for row in table_rows}
    standard = {name: action for name, action in measured.items() if name in SIGNAL_7}
    assert standard == {name: SIGNAL_7[name] for name in standard}
    assert set(SIGNAL_7) - set(standard) <= {"SIGEMT"}  # not on Linux x86
    realtime = {a for name, a in measured.items() if name.startswith(("SIGRTMIN", "SIGRTMAX"))}
    assert realtime == {"terminate"}


def test_measuring_the_actions_leaves_no_child_and_no_core_behind(no_leaks, tmp_path) -> None:
    import tempfile

    from lab.experiments.signals.table import default_actions

    before = set(os.listdir(tempfile.gettempdir()))
    default_actions()
    left = set(os.listdir(tempfile.gettempdir())) - before
    assert not [name for name in left if name.startswith("daemonlab-signals-")]
    assert not list(Path.cwd().glob("core*"))


def test_python_dispositions_are_read_from_a_fresh_interpreter() -> None:
    from lab.experiments.signals.table import rows

    by_name = {row["name"]: row for row in rows()}
    assert by_name["SIGINT"]["python_at_start"] == "raises KeyboardInterrupt"
    assert by_name["SIGPIPE"]["python_at_start"] == "ignored"
    assert by_name["SIGXFSZ"]["python_at_start"] == "ignored"
    assert by_name["SIGTERM"]["python_at_start"] == "default"
    assert not by_name["SIGKILL"]["catchable"] and not by_name["SIGSTOP"]["catchable"]
    assert by_name["SIGCHLD"]["default_action"] == "ignore"
    assert by_name["SIGTSTP"]["default_action"] == "stop"
    assert by_name["SIGQUIT"]["default_action"] == "core"
    assert by_name["SIGRTMIN+1"]["default_action"] == "terminate"
    assert by_name["SIGTERM"]["description"] == "Terminated"


def test_the_table_prints_at_80_columns_with_no_word_cut() -> None:
    done = run_cli("signals", timeout=60, env={"COLUMNS": "80"})
    assert done.returncode == 0, done.stderr
    words = done.stdout.split()
    # rich cuts a word with "…" (KeyboardInter…), or crops the right edge (Trace/breakp)
    assert "SIGRTMAX" in words and "KeyboardInterrupt" in words, done.stdout
    assert "Trace/breakpoint" in words and "…" not in done.stdout, done.stdout
