"""The harness as `--user nobody`: refused at start when nobody cannot read the lab,
and every run that fails, for whatever reason, stored as failed with its reason.

Each test runs the lab from a copy of its own `lab/` package (PYTHONPATH
puts it before the installed one), so that it can take read access away
from nobody without touching the checkout.
"""

# ruff: noqa: F811 - the fixtures imported below are parameters of the tests

from __future__ import annotations

import os
import pwd
import shutil
import tempfile
from pathlib import Path

import pytest

from lab.daemon.pidfile import holder
from lab.results import open_store
from tests.conftest import ROOT
from tests.test_daemon_support import World, subreaper, wait_until  # noqa: F401 - a fixture

pytestmark = [
    pytest.mark.timeout(180),
    pytest.mark.skipif(os.geteuid() != 0, reason="dropping privileges needs root"),
]

RUN = ("--experiment", "fork", "--fact", "1")


@pytest.fixture
def nobody_world(subreaper):
    """A folder nobody may write (results, pidfile, log) and a copy of the lab in it."""
    base = Path(tempfile.mkdtemp(prefix="daemonlab-access-"))  # pytest's tmp is root-only
    os.chmod(base, 0o755)
    world = World(base / "w")
    world.dir.mkdir()
    os.chown(world.dir, pwd.getpwnam("nobody").pw_uid, -1)
    checkout = base / "checkout"
    shutil.copytree(ROOT / "lab", checkout / "lab", ignore=shutil.ignore_patterns("__pycache__"))
    try:
        yield world, checkout
    finally:
        world.clean_up()
        shutil.rmtree(base, ignore_errors=True)


def test_a_checkout_nobody_can_read_is_refused_at_start_naming_the_path(nobody_world):
    world, checkout = nobody_world
    os.chmod(checkout, 0o700)  # as a home folder is: nobody cannot look inside
    started = world.cli(
        "daemon", "start", "--every", "1h", "--user", "nobody", *RUN, PYTHONPATH=str(checkout)
    )
    assert started.returncode != 0, started.stdout
    (line,) = started.stderr.strip().splitlines()
    assert f"--user nobody cannot read {checkout}" in line, line
    assert "Traceback" not in started.stderr
    assert holder(world.pidfile) is None  # no daemon was left running


def test_one_unreadable_module_is_named(nobody_world):
    world, checkout = nobody_world
    module = checkout / "lab" / "experiments" / "fork" / "__init__.py"
    os.chmod(module, 0o600)
    started = world.cli(
        "daemon", "start", "--every", "1h", "--user", "nobody", *RUN, PYTHONPATH=str(checkout)
    )
    assert started.returncode != 0
    assert f"cannot read {module}" in started.stderr


def test_a_run_that_fails_before_it_measures_is_stored_as_failed_with_its_reason(nobody_world):
    world, checkout = nobody_world
    started = world.cli(
        "daemon", "start", "--every", "2s", "--user", "nobody", *RUN, PYTHONPATH=str(checkout)
    )
    assert started.returncode == 0, started.stderr

    def stored(why: str = ""):
        with open_store(world.results) as store:
            return [r for r in store.runs("fork") if why in (r.error or "")]

    # The first run is stored (here as failed: fork execs a Python under root-only /root).
    wait_until(stored, 30, "the first run")
    # Now the experiments folder goes out of nobody's reach: the next run cannot find fork.
    os.chmod(checkout / "lab" / "experiments", 0o700)
    (run, *_) = wait_until(lambda: stored("unknown experiment"), 30, "a failed run stored")
    assert run.status == "failed" and "unknown experiment 'fork'" in run.error, run.error
    assert run.records == [] and run.params["fact"] == [1]
