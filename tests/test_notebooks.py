"""Every notebook under notebooks/ runs top to bottom on a fresh kernel.

The walkthroughs are lessons: one that no longer runs teaches nothing. Each is
executed with nbclient in its own folder, with a throwaway results store, and
must finish without an error cell. (Outputs are not compared: timings vary.)
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

NOTEBOOKS = sorted((Path(__file__).resolve().parent.parent / "notebooks").glob("*.ipynb"))


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook_runs_clean(path: Path, results_path: Path) -> None:
    import nbformat
    from nbclient import NotebookClient

    notebook = nbformat.read(path, as_version=4)
    # The kernel is a child of this process: it inherits LAB_RESULTS and finds
    # this checkout's `lab` through PYTHONPATH even when it is not installed.
    root = str(path.parent.parent)
    os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [root, os.environ.get("PYTHONPATH")]))
    client = NotebookClient(
        notebook, timeout=300, kernel_name="python3", resources={"metadata": {"path": path.parent}}
    )
    client.execute()
    errors = [
        output
        for cell in notebook.cells
        if cell.cell_type == "code"
        for output in cell.get("outputs", [])
        if output.get("output_type") == "error"
    ]
    assert not errors, errors
    assert results_path.exists(), "a walkthrough stores what it ran"
