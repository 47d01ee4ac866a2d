"""The two sides of the gate: the working tree (head), and the base in a worktree of its own.

The base is checked out with `git worktree add --detach` under the cache
(.bench/trees/SHA), never over the working tree, so uncommitted head changes
are measured as they are.

One venv, the gate's own, runs both sides: the head venv's packages, less
editable installs, copied once per package set (`pip freeze` names it) and
kept (.bench/venvs/HASH). Each side's code comes from its own folder (pytest and
the counted calls run with the tree as their working directory, first on
sys.path). Why not the developer's venv for head and a new one for base:
what an interpreter loaded at start-up shapes its heap, and the same loop
counted 2% more instructions in a fresh venv than in one with an editable
install and its import hook. With one venv only the code differs.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from lab.errors import LabError, last_line

__all__ = ["Side", "sides"]


@dataclass(frozen=True)
class Side:
    """A tree to benchmark and the interpreter that runs it."""

    name: str  # "base" or "head"
    tree: Path
    python: Path
    commit: str
    ref: str


def _run(argv: list[str], failed: str, **how) -> str:
    """argv's output; if it fails, one LabError: what failed and stderr's last line."""
    done = subprocess.run(argv, capture_output=True, text=True, **how)
    if done.returncode != 0:
        raise LabError(f"{failed}: {last_line(done.stderr)}")
    return done.stdout


def _git(repo: Path, *args: str) -> str:
    return _run(["git", "-C", str(repo), *args], f"git {args[0]} failed in {repo}").strip()


def sides(ref: str, cache: Path, repo: Path | None = None) -> tuple[Side, Side]:
    """(base, head): `ref` checked out under the cache, and the working tree we are in,
    as it is (uncommitted changes too); both run by the gate's venv."""
    top = Path(_git(repo or Path.cwd(), "rev-parse", "--show-toplevel"))
    found = _git(top, "rev-parse", "--verify", "--quiet", f"{ref}^{{commit}}")
    tree = (cache / "trees" / found[:12]).absolute()
    if not (tree / ".git").exists():
        _git(top, "worktree", "prune")  # a cache deleted by hand leaves a record behind
        _git(top, "worktree", "add", "--detach", str(tree), found)
    python = _venv(Path(sys.executable), cache)
    dirty = bool(_git(top, "status", "--porcelain", "--untracked-files=no"))
    head_ref = "working tree" + (" (uncommitted changes)" if dirty else "")
    return (
        Side("base", tree, python, found, ref),
        Side("head", top, python, _git(top, "rev-parse", "HEAD"), head_ref),
    )


def _venv(head_python: Path, cache: Path) -> Path:
    """A venv with the head venv's packages (less editable installs), made once per set."""
    frozen = _pip(head_python, "freeze", "--exclude-editable")
    key = hashlib.sha256(frozen.encode()).hexdigest()[:12]
    where = (cache / "venvs" / key).absolute()
    python = where / "bin" / "python"
    if (where / "ready").exists():
        return python
    # The head's interpreter, not a venv's copy of it: sys._base_executable.
    interpreter = getattr(sys, "_base_executable", None) or sys.executable
    subprocess.run([interpreter, "-m", "venv", "--clear", str(where)], check=True)
    # The head venv's files are the packages pip installed there: copying them
    # is installing them again without the work (8 s against 54 s here). Then
    # pip itself takes the editable installs out of the copy, by their records.
    shutil.copytree(_site_packages(head_python), _site_packages(python), dirs_exist_ok=True)
    listed = _pip(head_python, "list", "--editable", "--format=json")
    editables = [package["name"] for package in json.loads(listed)]
    if editables:
        _pip(python, "uninstall", "--yes", *editables)
    (where / "requirements.txt").write_text(frozen)  # what it holds, for a reader
    (where / "ready").touch()  # last: a venv cut short is made again next time
    return python


def _pip(python: Path, *args: str) -> str:
    return _run(
        [str(python), "-m", "pip", *args],
        f"cannot make the gate's venv: pip {args[0]} failed",
        env={**os.environ, "PIP_DISABLE_PIP_VERSION_CHECK": "1"},
    )


def _site_packages(python: Path) -> str:
    """Where the venv of this interpreter installs packages (purelib)."""
    where = "import sysconfig; print(sysconfig.get_path('purelib'))"
    return _run([str(python), "-c", where], f"{python} cannot say where it installs").strip()
