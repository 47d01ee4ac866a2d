"""`daemonlab doctor`: every tool and server a lesson needs, found or named with its line.

The rest of what doctor says (Python, fork, the MySQL server) is in tests/test_cli.py.
"""

from __future__ import annotations

from lab import doctor, services
from tests.conftest import ROOT


def test_a_missing_tool_is_one_row_with_its_install_line(monkeypatch):
    monkeypatch.setenv("PATH", "/nonexistent")
    rows = dict(doctor.tools())
    assert rows["wrk"] == "missing: apt-get install wrk, for " + doctor.TOOLS[1].used_by
    for tool in doctor.TOOLS:
        assert rows[tool.commands[0]].startswith(f"missing: apt-get install {tool.package}, for ")


def test_a_tool_found_is_shown_with_its_path(tmp_path, monkeypatch):
    wrk = tmp_path / "wrk"
    wrk.write_text("#!/bin/sh\n")
    wrk.chmod(0o755)
    monkeypatch.setenv("PATH", str(tmp_path))
    assert dict(doctor.tools())["wrk"].startswith(f"{wrk}, for ")


def test_a_server_that_does_not_answer_is_one_row_with_its_start_line(monkeypatch):
    for service in services.SERVICES.values():  # port 1: refused at once
        monkeypatch.setenv(service.env, service.default_url.split("://")[0] + "://127.0.0.1:1")
    rows = dict(doctor.servers())
    assert set(rows) == {"redis", "amqp", "mqtt", "nats"}  # xmpp: the lab starts its own
    for name, said in rows.items():
        assert "does not answer on 127.0.0.1:1" in said
        assert f"`{services.SERVICES[name].start}`" in said, said


def test_the_readme_lists_every_tool_and_server_doctor_checks():
    """The prerequisites a reader meets first name the same packages doctor asks for."""
    with open(ROOT / "README.md") as f:
        readme = f.read()
    prerequisites = readme.split("## Prerequisites", 1)[1].split("\n## ", 1)[0]
    for tool in doctor.TOOLS:
        assert f"`{tool.package}`" in prerequisites, tool
    for service in services.SERVICES.values():
        assert service.what.split(" (")[0].lower() in prerequisites.lower(), service
