"""Every notebook under notebooks/ runs top to bottom on a fresh kernel.

The walkthroughs are lessons: one that no longer runs teaches nothing. Each is
executed with nbclient in its own folder, with a results store of its own, and
must finish without an error cell. (Outputs are not compared: timings vary.)

Three notebooks run at a time, each in a process of its own (`RUNNER`): a
walkthrough asserts nothing about speed, and much of its time is spent
waiting (a kernel starting, a daemon restarting, a sleep). Measured on 2
cores: two at a time 167 s, three 131 s, four 132 s.
The next selected notebook starts while the test before it waits, so
`pytest -k sleep` still runs only the one asked for.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from lab import children

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))

#: How many notebooks run at once.
AT_ONCE = 3
#: nbclient's bound on one cell; a whole notebook gets this many cells' worth.
CELL_TIMEOUT_S = 300

# Runs in its own process: argv is the notebook; prints the error outputs as JSON.
RUNNER = """\
import json, sys
import nbformat
from nbclient import NotebookClient
path = sys.argv[1]
notebook = nbformat.read(path, as_version=4)
folder = path.rsplit("/", 1)[0]
NotebookClient(notebook, timeout=int(sys.argv[2]), kernel_name="python3",
               resources={"metadata": {"path": folder}}).execute()
errors = [o for c in notebook.cells if c.cell_type == "code"
          for o in c.get("outputs", []) if o.get("output_type") == "error"]
print(json.dumps(errors))
"""


class Runs:
    """The selected notebooks, started AT_ONCE at a time, in order, as tests ask for them."""

    def __init__(self, paths: list[Path], stores: Path) -> None:
        self.waiting = list(paths)
        self.stores = stores
        self.running: dict[Path, subprocess.Popen] = {}

    def store(self, path: Path) -> Path:
        return self.stores / f"{path.stem}.db"

    def _start(self, path: Path) -> None:
        self.waiting.remove(path)
        # The kernel is a child of the runner: it inherits LAB_RESULTS and finds
        # this checkout's `lab` through PYTHONPATH even when it is not installed.
        pythonpath = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))
        env = {**os.environ, "PYTHONPATH": pythonpath, "LAB_RESULTS": str(self.store(path))}
        self.running[path] = subprocess.Popen(
            [sys.executable, "-c", RUNNER, str(path), str(CELL_TIMEOUT_S)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
            start_new_session=True,  # its kernel and what the kernel starts: one group
        )

    def result(self, path: Path) -> tuple[int, str, str]:
        if path not in self.running:
            self._start(path)
        while len(self.running) < AT_ONCE and self.waiting:
            self._start(self.waiting[0])
        proc = self.running.pop(path)
        try:
            out, err = proc.communicate(timeout=CELL_TIMEOUT_S * 4)
        finally:
            children.stop_popen(proc, group=True)
        return proc.returncode, out, err

    def stop(self) -> None:
        for proc in self.running.values():
            children.stop_popen(proc, group=True)


@pytest.fixture(scope="session")
def notebook_runs(request, tmp_path_factory):
    selected = [
        item.callspec.params["path"]
        for item in request.session.items
        if getattr(item, "originalname", "") == "test_notebook_runs_clean"
    ]
    runs = Runs(selected, tmp_path_factory.mktemp("notebook-stores"))
    yield runs
    runs.stop()


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook_runs_clean(path: Path, notebook_runs: Runs) -> None:
    code, out, err = notebook_runs.result(path)
    assert code == 0, err[-3000:]
    errors = json.loads(out.strip().splitlines()[-1])
    assert not errors, errors
    assert notebook_runs.store(path).exists(), "a walkthrough stores what it ran"
