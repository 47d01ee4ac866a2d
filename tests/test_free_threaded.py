"""Free-threaded builds recognised everywhere, tested with a fake python3.13t.

No free-threaded CPython installs here, so a stand-in plays one: a real
CPython 3.13 behind a script that reports Py_GIL_DISABLED and
sys._is_gil_enabled() false before it runs what the lab asked. The detection
and the labelling are what is tested; the stand-in's GIL is of course still
there. Its control is the same script without the two lies: everything must
then say the GIL is enabled.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from lab import doctor, env, interpreters
from lab.errors import LabError
from tests.conftest import ROOT, run_cli

LIES = """\
_real = sysconfig.get_config_var
sysconfig.get_config_var = lambda name: 1 if name == "Py_GIL_DISABLED" else _real(name)
sys._is_gil_enabled = lambda: False
"""

FAKE = """\
#!{real}
# A stand-in for a free-threaded python3.13t (tests/test_free_threaded.py).
import sys, sysconfig
{lies}
args = sys.argv[1:]
if args[:1] == ["-I"]:  # what lab.interpreters passes before -c
    args.pop(0)
if args[:1] != ["-c"]:
    sys.exit("fake python3.13t: only -c CODE is supported")
sys.argv = ["-c", *args[2:]]
exec(compile(args[1], "<string>", "exec"), {{"__name__": "__main__"}})
"""


def _real_313() -> str:
    try:
        return interpreters.resolve("3.13").path
    except LabError as exc:
        pytest.skip(f"no Python 3.13 here to play a free-threaded one: {exc}")


@pytest.fixture(params=["disabled", "enabled"])
def fake(request, tmp_path: Path, monkeypatch) -> tuple[str, dict[str, str]]:
    """A python3.13t on PATH: the GIL it reports ("disabled"; "enabled" is the control)."""
    script = tmp_path / "python3.13t"
    lies = LIES if request.param == "disabled" else ""
    script.write_text(FAKE.format(real=_real_313(), lies=lies))
    script.chmod(0o755)
    path = f"{tmp_path}{os.pathsep}{os.environ['PATH']}"
    monkeypatch.setenv("PATH", path)
    interpreters.resolve.cache_clear()
    yield request.param, {"PATH": path}
    interpreters.resolve.cache_clear()


def test_the_fake_is_recognised_as_free_threaded(fake) -> None:
    gil, _ = fake
    found = interpreters.resolve("python3.13t")
    assert found.gil == gil
    assert found.free_threaded_build == (gil == "disabled")
    assert found.label == ("CPython 3.13.0t, no GIL" if gil == "disabled" else "CPython 3.13.0")


def test_doctor_lists_it_as_free_threaded_and_offering_subinterpreters(fake) -> None:
    gil, _ = fake
    rows = dict(doctor.other_exits(interpreters.installed()))
    if gil == "disabled":
        assert "3.13.0t at " in rows["free-threaded"] and "python3.13t" in rows["free-threaded"]
        assert rows["free-threaded"].endswith("GIL disabled")
    else:
        assert rows["free-threaded"] == "none found"
    assert "3.13.0 (_interpreters)" in rows["subinterpreters"]


def test_cpu_records_say_gil_disabled(fake) -> None:
    gil, path_env = fake
    result = run_cli(
        "run", "cpu", "--python", "python3.13t", "--part", "scaling,convoy",
        "--strategy", "threads,processes,interpreters", "--workers", "2",
        "--work", "100000", "--repeat", "1", "--pings", "10", "--json", env=path_env,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    run = json.loads(result.stdout)
    assert {r["gil"] for r in run["records"]} == {gil}
    assert {r["gil_enabled"] for r in run["records"]} == {gil == "enabled"}
    assert run["env"]["interpreters"][0]["free_threaded_build"] == (gil == "disabled")


def test_spawn_records_say_gil_disabled(fake) -> None:
    gil, path_env = fake
    result = run_cli(
        "run", "spawn", "--python", "python3.13t", "--part", "create",
        "--method", "thread,interpreter", "--repeat", "2", "--json", env=path_env,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    records = json.loads(result.stdout)["records"]
    assert [r["gil"] for r in records] == [gil, gil]


def test_the_run_fingerprint_says_gil_disabled(monkeypatch) -> None:
    """Every run's env (sleep's too, which runs in the lab's own interpreter)."""
    assert env.fingerprint()["gil"] == ("enabled" if env.gil_enabled() else "disabled")
    monkeypatch.setattr(sys, "_is_gil_enabled", lambda: False, raising=False)
    assert env.fingerprint()["gil"] == "disabled"


@pytest.mark.db
def test_sleep_runs_under_the_fake_and_its_run_says_gil_disabled(fake, mysql_server) -> None:
    """sleep has no --python: the lab itself runs under the fake (pymysql from this venv)."""
    gil, path_env = fake
    site = [p for p in sys.path if p.endswith("site-packages")]
    code = (
        "import json\n"
        "from lab.experiments import sleep\n"
        "run = sleep.run(sleep.Params(strategy=('threads',), clients=(2,), seconds=0.2))\n"
        "print(json.dumps(run.env['gil']))\n"
    )
    # PYTHONPATH, not sys.path: the watcher the lesson starts is a child that needs it too
    python_path = os.pathsep.join([str(ROOT), *site])
    out = subprocess.run(
        ["python3.13t", "-c", code],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, **path_env, "PYTHONPATH": python_path},
    )
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout.splitlines()[-1]) == gil
