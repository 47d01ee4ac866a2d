"""`--python`: finding other interpreters and running a measured module under them."""

from __future__ import annotations

import sys
import textwrap
from pathlib import Path

import pytest

from lab import interpreters
from lab.errors import LabError

# A measured module as the experiments write them: standard library only.
DEMO = textwrap.dedent(
    """\
    import os, sys, time

    def measure(payload):
        print("a stray print must not corrupt the records")
        if payload.get("fail"):
            raise ValueError("the demo was told to fail")
        if payload.get("grandchild"):
            if os.fork() == 0:
                try:
                    time.sleep(60)
                finally:
                    os._exit(0)
        for i in range(payload["count"]):
            yield {"i": i, "version": list(sys.version_info[:2])}
        time.sleep(payload.get("linger", 0))
    """
)


@pytest.fixture
def demo_module(tmp_path: Path, monkeypatch) -> str:
    """The measured module `demo_measured`, importable by the child from a tmp root."""
    (tmp_path / "demo_measured.py").write_text(DEMO)
    monkeypatch.setattr(interpreters, "SOURCE_ROOT", str(tmp_path))
    return "demo_measured"


def _installed(spec: str) -> interpreters.Interpreter:
    try:
        return interpreters.resolve(spec)
    except LabError as exc:
        pytest.skip(f"{spec} is not installed here: {exc}")


def test_version_spec_finds_the_real_binary_not_a_pyenv_shim() -> None:
    found = _installed("3.12")
    assert found.version.startswith("3.12")
    assert "/shims/" not in found.path
    assert found.gil_enabled and not found.free_threaded_build


def test_current_interpreter_is_the_default_choice() -> None:
    (only,) = interpreters.chosen(())
    assert only.path == sys.executable
    assert only.version_info[:2] == tuple(sys.version_info[:2])


@pytest.mark.parametrize("spec", ["python9.9", "9.9", "/nonexistent/bin/python3"])
def test_missing_interpreter_is_refused_in_one_line(spec: str) -> None:
    with pytest.raises(LabError, match="no interpreter") as refused:
        interpreters.resolve(spec)
    assert spec in str(refused.value) and "\n" not in str(refused.value)


def test_too_old_interpreter_is_refused_by_name() -> None:
    try:
        interpreters.resolve("2.7")
    except LabError as exc:
        if "no interpreter" in str(exc):
            pytest.skip("no Python 2.7 here")
        assert "2.7" in str(exc) and "3.10 or newer" in str(exc)
    else:
        pytest.fail("Python 2.7 was accepted")


def test_records_come_back_tagged_with_their_interpreter(demo_module, no_leaks) -> None:
    here = interpreters.current()
    records = interpreters.run_measured(here, demo_module, {"count": 3}, timeout=60)
    assert [r["i"] for r in records] == [0, 1, 2]
    assert {r["python"] for r in records} == {here.version}
    assert {r["interpreter"] for r in records} == {sys.executable}


def test_another_version_runs_the_same_module_for_real(demo_module, no_leaks) -> None:
    other = _installed("3.12")
    (record,) = interpreters.run_measured(other, demo_module, {"count": 1}, timeout=60)
    assert record["version"] == [3, 12] and record["python"] == other.version


def test_a_failing_child_is_reported_with_its_last_stderr_line(demo_module, no_leaks) -> None:
    here = interpreters.current()
    with pytest.raises(LabError, match="ValueError: the demo was told to fail"):
        interpreters.run_measured(here, demo_module, {"count": 1, "fail": True}, timeout=60)


def test_a_child_over_its_timeout_is_stopped_with_what_it_started(demo_module, no_leaks) -> None:
    here = interpreters.current()
    payload = {"count": 1, "grandchild": True, "linger": 60}
    with pytest.raises(LabError, match="took over"):
        interpreters.run_measured(here, demo_module, payload, timeout=3)


def test_a_consumer_stopping_early_still_reaps_the_child(demo_module, no_leaks) -> None:
    stream = interpreters.stream_measured(
        interpreters.current(), demo_module, {"count": 5, "linger": 60}, timeout=60
    )
    assert next(stream)["i"] == 0
    stream.close()
