"""The harness under managers, in the foreground: supervisord, honcho, systemd's sd_notify.

The shipped examples are what runs: examples/supervisord.conf and
examples/Procfile with examples/harness.toml. systemd itself is not on this
machine; its Type=notify protocol is checked by playing systemd's part (a
datagram socket in NOTIFY_SOCKET) around `daemon start --foreground`.
"""

# ruff: noqa: F811 - the fixtures imported below are parameters of the tests

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from lab.results import open_store
from tests.conftest import ROOT
from tests.test_daemon_support import (  # noqa: F401 - subreaper and world are fixtures
    World,
    proc_state,
    subreaper,
    wait_until,
    world,
)

pytestmark = pytest.mark.timeout(180)

EXAMPLES = ROOT / "examples"
BIN = Path(sys.executable).parent


def _supervisorctl(env: dict, *args: str) -> str:
    done = subprocess.run(
        [str(BIN / "supervisorctl"), "-c", str(EXAMPLES / "supervisord.conf"), *args],
        capture_output=True,
        text=True,
        timeout=30,
        env=env,
    )
    return done.stdout


def _harness_pid(env: dict) -> int | None:
    line = _supervisorctl(env, "status", "daemonlab")
    if "RUNNING" not in line:
        return None
    return int(line.split("pid", 1)[1].split(",")[0])


def test_supervisord_runs_the_harness_and_restarts_it_after_kill_9(world: World) -> None:
    supervisor_dir = world.dir / "supervisor"
    supervisor_dir.mkdir()
    env = world.env(
        SUPERVISOR_DIR=str(supervisor_dir),
        DAEMONLAB_PYTHON=sys.executable,
        DAEMONLAB_HOME=str(ROOT),
    )
    supervisord = subprocess.Popen(
        [str(BIN / "supervisord"), "-n", "-c", str(EXAMPLES / "supervisord.conf")],
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        first = wait_until(lambda: _harness_pid(env), 60, "supervisord to start the harness")
        assert proc_state(first)[1] == supervisord.pid  # its child: it did not detach
        wait_until(lambda: world.daemon_pid() == first, 30, "the harness to hold its pidfile")
        os.kill(first, signal.SIGKILL)
        second = wait_until(
            lambda: (pid := _harness_pid(env)) not in (None, first) and pid,
            60,
            "supervisord to restart the harness",
        )
        wait_until(lambda: world.daemon_pid() == second, 30, "the new harness to take the lock")
        status = world.cli("daemon", "status")
        assert status.returncode == 0 and f"pid        {second}" in status.stdout
        _supervisorctl(env, "shutdown")
        supervisord.wait(timeout=60)
        assert world.daemon_pid() is None
    finally:
        if supervisord.poll() is None:
            supervisord.terminate()
            try:
                supervisord.wait(timeout=30)
            except subprocess.TimeoutExpired:
                supervisord.kill()
                supervisord.wait(timeout=10)


def _stored(world: World) -> list:
    with open_store(world.results) as store:
        return store.runs("daemonize")


@pytest.mark.skipif(shutil.which("honcho", path=str(BIN)) is None, reason="honcho not installed")
def test_honcho_runs_the_harness_from_the_procfile(world: World) -> None:
    env = world.env(PATH=f"{BIN}{os.pathsep}{os.environ['PATH']}")
    honcho = subprocess.Popen(
        [str(BIN / "honcho"), "-f", str(EXAMPLES / "Procfile"), "-d", str(ROOT), "start"],
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,  # honcho's own TERM goes to it, not to pytest's group
    )
    try:
        pid = wait_until(world.daemon_pid, 60, "honcho to start the harness")
        wait_until(lambda: _stored(world), 60, "a run stored")
        honcho.send_signal(signal.SIGTERM)  # honcho passes it on: the harness stops gracefully
        out, _ = honcho.communicate(timeout=60)
        assert "stopped:" in out, out
        world.wait_gone(pid)
    finally:
        if honcho.poll() is None:
            honcho.kill()
            honcho.wait(timeout=10)


def test_foreground_tells_systemd_ready_then_stopping(world: World) -> None:
    address = str(world.dir / "notify.sock")
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as listener:
        listener.bind(address)
        listener.settimeout(60)
        harness = world.popen(
            "daemon",
            "start",
            "--foreground",
            "--experiment",
            "daemonize",
            "--impl",
            "lab",
            "--every",
            "1h",
            NOTIFY_SOCKET=address,
        )
        try:
            assert listener.recv(256) == b"READY=1"
            pid = world.daemon_pid()
            assert pid == harness.pid  # not forked: systemd's main pid is the harness
            harness.send_signal(signal.SIGTERM)
            assert listener.recv(256) == b"STOPPING=1"
            assert harness.wait(timeout=60) == 0
        finally:
            if harness.poll() is None:
                harness.kill()
            harness.communicate(timeout=10)
