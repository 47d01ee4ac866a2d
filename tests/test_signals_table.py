"""`daemonlab signals` lists this machine's signals as `kill -l` numbers them.

Compared name for name with two independent listings: bash's builtin
`kill -l` (real-time signals included, as SIGRTMIN+k / SIGRTMAX-k) and
util-linux's `/bin/kill -L` (standard signals, without the SIG prefix).
Real-time names are normalised to numbers, so RTMAX-14 and RTMIN+16 are the
same signal whichever way a tool names it.
"""

from __future__ import annotations

import json
import re
import shutil
import signal
import subprocess

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
def listed() -> dict[int, set[str]]:
    """number -> every name `daemonlab signals` gives it (its name and its aliases)."""
    done = run_cli("signals", "--json", timeout=60)
    assert done.returncode == 0, done.stderr
    return {
        row["number"]: {_canonical(n) for n in [row["name"], *row["aliases"]]}
        for row in json.loads(done.stdout)
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


def test_the_table_prints() -> None:
    done = run_cli("signals", timeout=60)
    assert done.returncode == 0, done.stderr
    assert "SIGRTMAX" in done.stdout and "KeyboardInterrupt" in done.stdout
