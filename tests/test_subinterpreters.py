"""Subinterpreters with their own GIL: the cpu strategy and convoy case, spawn's cost,
sleep's clients, and the crossing facts, each with a control that must make it fail.

The lab itself runs on 3.11 here, which has none (PEP 684 is 3.12), so what needs
them runs under pyenv's 3.13 through lab.interpreters, as `--python 3.13` does.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import pytest

from lab import interpreters, subinterpreters
from lab.errors import LabError
from tests.conftest import ROOT, assert_refused, run_cli

HERE = f"{sys.version_info[0]}.{sys.version_info[1]}"


def _python(spec: str) -> interpreters.Interpreter:
    try:
        return interpreters.resolve(spec)
    except LabError as exc:
        pytest.skip(f"no Python {spec} here: {exc}")


def _cpu(spec: str, payload: dict) -> list[dict]:
    full = {"parts": [], "workers": [2], "strategies": ["interpreters"], "start_methods": []}
    full |= {"work": 200_000, "repeat": 1, "pings": 50, "fast_switch": 1e-4, **payload}
    return interpreters.run_measured(_python(spec), "lab.experiments.cpu.child", full, 300)


def test_only_312_and_newer_count_as_having_subinterpreters() -> None:
    """3.8-3.11 have a _xxsubinterpreters too, but one GIL for all: no exit from it."""
    assert _python("3.13").subinterpreters == "_interpreters"
    assert _python("3.12").subinterpreters == "_xxsubinterpreters"
    assert _python("3.11").subinterpreters is None
    if sys.version_info < (3, 12):
        assert subinterpreters.api() is None
        assert (
            subinterpreters.unavailable()
            == f"no subinterpreters in Python {sys.version.split()[0]}"
        )


def test_cpu_draws_threads_processes_and_interpreters_side_by_side() -> None:
    """The issue's `done when`: 3.11 says "no subinterpreters", 3.13 measures them."""
    result = run_cli(
        "run", "cpu", "--strategy", "threads,processes,interpreters", "--python", "3.11,3.13",
        "--part", "scaling", "--workers", "1,2", "--work", "300000", "--repeat", "1",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    rows = [line.split() for line in result.stdout.splitlines() if "interpreters" in line]
    by_python = {row[0][:4]: row for row in rows if row[0][:2] == "3."}
    assert by_python["3.11"][4:6] == ["-", "-"], rows  # no speedup, no wall time: none ran
    assert float(by_python["3.13"][5]) > 0, rows
    assert "3.11" in result.stdout and "no subinterpreters in 3.11" in result.stdout
    assert "CPython 3.13.0: subinterpreters by _interpreters" in result.stdout


def test_interpreter_records_say_which_api_ran_them() -> None:
    """The records say which API ran them; the work is really done (cpu time counted)."""
    (seq, interp) = _cpu("3.13", {"parts": ["scaling"], "work": 2_000_000})
    assert (seq["strategy"], interp["strategy"]) == ("sequential", "interpreters")
    assert interp["interpreters_api"] == "_interpreters" and interp["gil"] == "enabled"
    assert interp["start_s"] > 0 and interp["cpu_s"] > 0.5 * seq["cpu_s"]


def test_a_spinner_in_another_interpreter_does_not_convoy_the_echo() -> None:
    """Beside a spinning thread the echo waits about a switch interval (5 ms); beside a
    spinner in a subinterpreter with its own GIL it does not wait at all."""
    records = _cpu("3.13", {"parts": ["convoy"], "pings": 100})
    cases = {(r["case"], r["switch_interval_ms"]): r for r in records}
    thread, interp = cases["spinner", 5.0], cases["interpreter", 5.0]
    assert interp["spinner_mloops_s"] > 0.2, interp  # it did spin
    assert interp["median_ms"] < thread["median_ms"] / 5, (thread, interp)


def test_the_convoy_comes_back_when_the_spinner_shares_the_main_gil() -> None:
    """The control: the same spinner in a legacy subinterpreter (one GIL for all)."""
    code = "\n".join(
        [
            "import functools, json, sys",
            f"sys.path.insert(0, {str(ROOT)!r})",
            "from lab import subinterpreters",
            "from lab.experiments.cpu import convoy",
            "legacy = functools.partial(subinterpreters.Subinterpreter, isolated=False)",
            "subinterpreters.Subinterpreter = legacy",
            "print(json.dumps(list(convoy.measure_convoy(100, 1e-4, True))))",
        ]
    )
    out = subprocess.run(
        [_python("3.13").path, "-I", "-c", code], capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 0, out.stderr
    cases = {(r["case"], r["switch_interval_ms"]): r for r in json.loads(out.stdout)}
    alone, shared = cases["alone", 5.0], cases["interpreter", 5.0]
    assert shared["median_ms"] > 5 * alone["median_ms"], (alone, shared)


# -- the crossing facts, each against a control that must make it fail -------------------
def _facts(spec: str, before: str = "") -> dict[int, dict]:
    """crossing.check_facts() under `spec`, after running `before` (a control's swap)."""
    code = "\n".join(
        [
            "import json, sys",
            f"sys.path.insert(0, {str(ROOT)!r})",
            "from lab import subinterpreters",
            "from lab.experiments.cpu import crossing",
            before,
            'print(json.dumps(list(crossing.check_facts(("readline", "json")))))',
        ]
    )
    out = subprocess.run(
        [_python(spec).path, "-I", "-c", code], capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 0, out.stderr
    return {r["number"]: r for r in json.loads(out.stdout)}


@pytest.mark.parametrize("spec", ["3.12", "3.13"])
def test_every_crossing_fact_holds(spec: str) -> None:
    facts = _facts(spec)
    expected = {n: True for n in range(1, 7)}
    if spec == "3.12":
        expected[3] = None  # no cross-interpreter queue module on 3.12: said, not checked
    assert {n: f["holds"] for n, f in facts.items()} == expected, facts
    assert "readline refuses, json loads" == facts[5]["observed"]


def test_crossing_facts_say_skipped_where_there_are_none() -> None:
    facts = _facts("3.11")
    assert {f["holds"] for f in facts.values()} == {None}
    assert all(f["observed"].startswith("skipped: no subinterpreters") for f in facts.values())


IN_MAIN = """\
import os
def in_main(code, **values):
    read, write = os.pipe()
    exec(code, {"out": write, **values})
    os.close(write)
    return os.read(read, 65536).decode()
crossing.probe_here = in_main
"""

CONTROLS = {
    # binding nothing: no value (nor the pipe back) arrives, and nothing is refused:
    # every fact that passes anything fails; only fact 5 (an import) passes nothing
    "bind_nothing": (
        "subinterpreters.Subinterpreter.bind = lambda self, **v: None",
        {1, 2, 3, 4, 6},
    ),
    # shareable values in place of the dict and the socket: they cross
    "shareable_values": ("crossing.REFUSED = {'bytes': lambda: b'x'}", {2}),
    # the probe run in this interpreter: the mark is seen, the handler is set, and
    # a dict or a socket "crosses" into the interpreter it never left
    "probe_in_main": (IN_MAIN, {2, 4, 6}),
    # the legacy config: one shared GIL, no check of extensions, readline loads
    "legacy_config": ("crossing.ISOLATED = False", {5}),
}


@pytest.mark.parametrize("control", sorted(CONTROLS))
def test_each_fact_fails_against_its_control(control: str) -> None:
    swap, broken = CONTROLS[control]
    facts = _facts("3.13", swap)
    failed = {n for n, f in facts.items() if f["holds"] is False}
    assert failed == broken, {n: f["observed"] for n, f in facts.items()}


# -- spawn: what one costs to make and to hold ------------------------------------------
def test_spawn_measures_a_subinterpreter_and_says_when_there_is_none() -> None:
    result = run_cli(
        "run", "spawn", "--python", f"{sys.executable},3.13", "--part", "create,memory",
        "--method", "thread,interpreter", "--memory-worker", "fork,interpreter",
        "--repeat", "3", "--processes", "2", "--json",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    run = json.loads(result.stdout)
    got = {(r["python"][:4], r["part"], r["method"]): r for r in run["records"]}
    made = got["3.13", "create", "interpreter"]
    assert made["median_ms"] > got["3.13", "create", "thread"]["median_ms"]
    held = got["3.13", "memory", "interpreter"]
    assert held["pss_kb_each"] > 100 and held["count"] == 2  # a whole interpreter's objects
    if sys.version_info < (3, 12):
        assert got[HERE, "create", "interpreter"]["skipped"].startswith("no subinterpreters")
        assert any("interpreter: no subinterpreters" in note for note in run["env"]["notes"])


# -- sleep: one subinterpreter per client ----------------------------------------------
@pytest.mark.skipif(sys.version_info >= (3, 12), reason="this Python has subinterpreters")
def test_sleep_interpreters_refuses_in_one_line_without_subinterpreters() -> None:
    result = run_cli("run", "sleep", "--strategy", "interpreters", "--clients", "2")
    assert_refused(result, "no subinterpreters in Python")
    assert "subinterpreters" not in run_cli("results", "sleep").stdout  # no run was stored


@pytest.mark.db
def test_sleep_clients_in_subinterpreters_overlap_their_sleeps(mysql_server) -> None:
    """Under 3.13, with the lab's pure-Python dependencies (pymysql) from this venv."""
    site = [p for p in sys.path if p.endswith("site-packages")]
    code = textwrap.dedent(
        """\
        import json
        from lab.experiments import sleep
        params = sleep.Params(strategy=("interpreters",), clients=(4,), seconds=0.5)
        print(json.dumps(sleep.run(params).records))
        """
    )
    env = {"PYTHONPATH": ":".join([str(ROOT), *site]), "PATH": "/usr/bin:/bin"}
    out = subprocess.run(
        [_python("3.13").path, "-c", code], capture_output=True, text=True, timeout=120, env=env
    )
    assert out.returncode == 0, out.stderr
    (record,) = json.loads(out.stdout.splitlines()[-1])
    assert record["server_peak"] == 4 and record["wall_s"] < 0.9, record


def test_the_tables_fit_80_columns_with_the_new_rows() -> None:
    """Natural width, not what a terminal cropped: rich measures what it is given."""
    import os

    from rich.console import Console

    from lab import report
    from lab.experiments import cpu, spawn

    runs = [
        (cpu, cpu.run(cpu.Params(
            python=(sys.executable, "3.13"), workers=(2,), work=50_000, repeat=1, pings=5,
            start_method=("forkserver",), strategy=("threads", "pool", "interpreters"),
        ))),
        (spawn, spawn.run(spawn.Params(
            python=(sys.executable, "3.13"), part=("create", "memory"), repeat=2, processes=2,
            method=("mp_forkserver", "interpreter"), memory_worker=("fork", "interpreter"),
        ))),
    ]  # fmt: skip
    with open(os.devnull, "w") as devnull:
        out = Console(width=300, record=True, file=devnull)
        for module, run in runs:
            for table in report.records_tables(run, module.COLUMNS):
                out.print(table)
    lines = out.export_text().splitlines()
    assert max(map(len, (line.rstrip() for line in lines))) <= 80, "\n".join(lines)
