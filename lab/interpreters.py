"""`--python`: running an experiment's measured part under other Python interpreters.

The GIL, fork's cost and copy-on-write change between CPython versions (3.12's
immortal objects, 3.13's free-threaded build), so an experiment can run its
measured part under each interpreter the user names and store the records side
by side. This module finds those interpreters and runs the part in each.

The params convention (cpu, spawn and cow share it)::

    python: tuple[str, ...] = option((), PYTHON_HELP)

Empty (the default) means "this interpreter only". When given
(`--python 3.11,python3.13,/opt/py/bin/python3`), the measured part runs under
each one listed, in that order, and the current interpreter is not implied
unless listed. `chosen(params.python)` turns the field into Interpreters.

The measured part is a module of the standard library only (it may import
lab.errors, nothing else of the lab: the other interpreter has none of the
lab's dependencies), which defines::

    def measure(payload: dict) -> Iterator[dict]   # flat JSON-able records

`run_measured` (or `stream_measured`, which yields records as they come) runs
that module in a child: `python -I -c BOOTSTRAP ROOT MODULE`, the params as one
JSON document on stdin, the records as JSON lines on stdout. The experiment
always goes through here, also for the current interpreter (sys.executable):
one code path, and fork-heavy measurements never run inside a multi-threaded
host (rich's refresh thread, a Jupyter kernel).

Where an interpreter lacks what a part needs (gc.freeze before 3.7, immortal
objects before 3.12) the measured module yields a record with a `skipped`
field saying so and carries on; that is the module's business, not this one's.

Things that do not work, and why:
- Taking `python3.12` from PATH as it comes: pyenv's shims are on PATH and
  refuse a version that is not selected ("pyenv: python3.12: command not
  found"). Shims are skipped; pyenv's real binaries under `pyenv root`/versions
  are looked at after PATH.
- `-I` with PYTHONPATH: isolated mode ignores every PYTHON* variable. The
  bootstrap puts the lab's source root on sys.path itself, so the child is
  isolated from the user's site-packages and environment and still finds `lab`.
- Reading stdout to EOF then stderr: a child that fills the stderr pipe blocks
  for ever. Both pipes are read together with selectors.
"""

from __future__ import annotations

import json
import os
import re
import selectors
import shutil
import subprocess
import sys
import sysconfig
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

from lab import children, subinterpreters
from lab.errors import LabError

__all__ = [
    "MIN_VERSION",
    "PYTHON_HELP",
    "Interpreter",
    "chosen",
    "current",
    "installed",
    "resolve",
    "run_measured",
    "stream_measured",
]

#: The oldest Python the measured parts run under; older interpreters are refused
#: by name. The parts live in their topic's package (lab/experiments/cpu/child.py),
#: and a spawn or forkserver worker imports a part by name, its package's
#: __init__ (the lesson) first: the lessons use 3.10's `X | Y` unions and builtin
#: generics at import time (PEP 604, PEP 585).
MIN_VERSION = (3, 10)

PYTHON_HELP = (
    "run the measured part under these interpreters (python3.12, 3.13 or a path); "
    "empty: this one only"
)

#: The lab's source root: the folder holding the `lab` package.
SOURCE_ROOT = str(Path(__file__).resolve().parent.parent)

#: How long a probe of an interpreter may take (a cold start on a busy machine).
PROBE_TIMEOUT_S = 30.0

#: After TERM, how long a measured child gets to stop before KILL.
STOP_GRACE_S = 1.0

# Runs in the probed interpreter, possibly Python 2: no f-strings, print(one arg).
_PROBE = """\
import importlib, json, platform, sys, sysconfig
probe = getattr(sys, "_is_gil_enabled", None)
def subinterpreters():
    if sys.version_info < (3, 12):
        return None  # 3.8-3.11's _xxsubinterpreters: one GIL shared by all (PEP 684 is 3.12)
    for name in ("concurrent.interpreters", "_interpreters", "_xxsubinterpreters"):
        try:
            importlib.import_module(name)
            return name
        except ImportError:
            pass
print(json.dumps({
    "subinterpreters": subinterpreters(),
    "version": platform.python_version(),
    "version_info": list(sys.version_info[:3]),
    "implementation": platform.python_implementation(),
    "executable": sys.executable,
    "free_threaded_build": bool(sysconfig.get_config_var("Py_GIL_DISABLED")),
    "gil_enabled": True if probe is None else bool(probe()),
}))
"""

# Runs in the measuring child: argv is ROOT MODULE. Stray prints (from the
# measured code or a library) must not corrupt the record stream, so records
# go to a private duplicate of stdout, and fd 1 and sys.stdout are pointed at
# stderr (sys.stdout too: its buffer would flush after the traceback and hide it).
_BOOTSTRAP = """\
import importlib, json, os, sys
sys.path.insert(0, sys.argv[1])
records = os.fdopen(os.dup(1), "w")
os.dup2(2, 1)
sys.stdout = sys.stderr
payload = json.load(sys.stdin)
for record in importlib.import_module(sys.argv[2]).measure(payload):
    records.write(json.dumps(record) + "\\n")
    records.flush()
records.close()
"""


@dataclass(frozen=True)
class Interpreter:
    """A Python interpreter as it describes itself (run once by `resolve`)."""

    spec: str  # what the user asked for: "python3.13", "3.13", a path
    path: str  # the executable that answered
    version: str  # "3.13.0"
    version_info: tuple[int, ...]
    implementation: str  # "CPython"
    free_threaded_build: bool  # built with Py_GIL_DISABLED (python3.13t)
    gil_enabled: bool  # at run time: a free-threaded build can still turn it on
    #: the module offering subinterpreters with their own GIL (lab.subinterpreters), or None
    subinterpreters: str | None = None

    @property
    def gil(self) -> str:
        """What every record says: "enabled", or "disabled" (a free-threaded build without it)."""
        return "enabled" if self.gil_enabled else "disabled"

    @property
    def label(self) -> str:
        """Short name for tables and legends: "CPython 3.13.0" (+ "t, no GIL")."""
        flavour = "t" if self.free_threaded_build else ""
        gil = "" if self.gil_enabled else ", no GIL"
        return f"{self.implementation} {self.version}{flavour}{gil}"


def current() -> Interpreter:
    """The interpreter running the lab, read in-process (no probe needed)."""
    import platform

    probe = getattr(sys, "_is_gil_enabled", None)
    return Interpreter(
        spec="current",
        path=sys.executable,
        version=platform.python_version(),
        version_info=tuple(sys.version_info[:3]),
        implementation=platform.python_implementation(),
        free_threaded_build=bool(sysconfig.get_config_var("Py_GIL_DISABLED")),
        gil_enabled=True if probe is None else bool(probe()),
        subinterpreters=subinterpreters.api(),
    )


def chosen(specs: Sequence[str]) -> list[Interpreter]:
    """The params convention: () is this interpreter, else each spec resolved, in order."""
    if not specs:
        return [current()]
    return [resolve(spec) for spec in specs]


@cache
def resolve(spec: str) -> Interpreter:
    """Find and probe the interpreter `spec` names, or refuse in one line.

    "3.13" means python3.13; a name is looked up on PATH (pyenv shims
    skipped), then in pyenv's versions; anything with a "/" is a path.
    """
    spec = spec.strip()
    if not spec:
        raise LabError("--python: an empty interpreter name")
    for path in _candidates(spec):
        found = _probe(spec, path)
        if found is not None:
            _check_usable(found)
            return found
    where = "that path" if "/" in spec else "PATH or pyenv's versions"
    raise LabError(f"--python: no interpreter {spec!r} in {where}")


#: The names `installed` looks for: each CPython the lab's parts run under, and
#: its free-threaded twin (PEP 703's python3.13t, installed beside python3.13).
KNOWN_NAMES = tuple(f"python3.{minor}{t}" for minor in range(10, 16) for t in ("", "t"))


def installed() -> list[Interpreter]:
    """Every interpreter on this machine under KNOWN_NAMES (PATH, then pyenv's), each once.

    For `daemonlab doctor`: which offer subinterpreters, which are free-threaded.
    """
    seen: set[str] = set()
    found = []
    for name in KNOWN_NAMES:
        for path in _candidates(name):
            if os.path.realpath(path) in seen:
                continue
            seen.add(os.path.realpath(path))
            probed = _probe(name, path)
            if probed is not None:
                found.append(probed)
    return found


def _command_name(spec: str) -> str:
    """ "3.13" -> "python3.13"; "3" -> "python3"; names and paths unchanged."""
    return f"python{spec}" if re.fullmatch(r"\d+(\.\d+)?t?", spec) else spec


def _candidates(spec: str) -> Iterator[str]:
    if "/" in spec:
        path = os.path.expanduser(spec)
        if os.path.isfile(path) and os.access(path, os.X_OK):
            yield path
        return
    name = _command_name(spec)
    shims = os.path.join(_pyenv_root() or "/nonexistent", "shims")
    for folder in os.environ.get("PATH", "").split(os.pathsep):
        if folder and os.path.realpath(folder) != os.path.realpath(shims):
            found = shutil.which(name, path=folder)
            if found:
                yield found
    root = _pyenv_root()
    if root:
        for bin_dir in sorted(Path(root, "versions").glob("*/bin"), reverse=True):
            found = shutil.which(name, path=str(bin_dir))
            if found:
                yield found


@cache
def _pyenv_root() -> str | None:
    """`pyenv root` when pyenv is installed (PYENV_ROOT or ~/.pyenv otherwise)."""
    pyenv = shutil.which("pyenv")
    if pyenv:
        try:
            out = subprocess.run(
                [pyenv, "root"], capture_output=True, text=True, timeout=PROBE_TIMEOUT_S
            )
            if out.returncode == 0 and out.stdout.strip():
                return out.stdout.strip()
        except (OSError, subprocess.TimeoutExpired):
            pass
    guess = os.environ.get("PYENV_ROOT") or os.path.expanduser("~/.pyenv")
    return guess if os.path.isdir(guess) else None


def _probe(spec: str, path: str) -> Interpreter | None:
    """Ask `path` what it is; None when it does not answer like a Python."""
    try:
        out = subprocess.run(
            [path, "-c", _PROBE],
            capture_output=True,
            text=True,
            timeout=PROBE_TIMEOUT_S,
            stdin=subprocess.DEVNULL,
        )
        facts = json.loads(out.stdout) if out.returncode == 0 else None
    except (OSError, subprocess.TimeoutExpired, ValueError):
        return None
    if not isinstance(facts, dict):
        return None
    if re.fullmatch(r"\d+(\.\d+)*", spec) and not facts["version"].startswith(spec):
        return None  # "3.13" must not be answered by a python3.13 that is really 3.12
    return Interpreter(
        spec=spec,
        path=path,
        version=facts["version"],
        version_info=tuple(facts["version_info"]),
        implementation=facts["implementation"],
        free_threaded_build=facts["free_threaded_build"],
        gil_enabled=facts["gil_enabled"],
        subinterpreters=facts.get("subinterpreters"),
    )


def _check_usable(interpreter: Interpreter) -> None:
    if interpreter.version_info[:2] < MIN_VERSION:
        want = ".".join(map(str, MIN_VERSION))
        raise LabError(
            f"--python {interpreter.spec}: {interpreter.path} is Python {interpreter.version}; "
            f"the measured parts need {want} or newer"
        )


def run_measured(
    interpreter: Interpreter, module: str, payload: dict[str, Any], timeout: float
) -> list[dict[str, Any]]:
    """All records of `module.measure(payload)` run under `interpreter` (see the module doc)."""
    return list(stream_measured(interpreter, module, payload, timeout))


def stream_measured(
    interpreter: Interpreter, module: str, payload: dict[str, Any], timeout: float
) -> Iterator[dict[str, Any]]:
    """Like run_measured, but yields each record the moment the child writes it.

    Each record gains `python` (the version), `interpreter` (its path) and
    `gil` ("enabled", or "disabled" on a free-threaded build running without it)
    unless the measured module said it itself.
    A child that fails raises LabError with its last stderr line; one that
    outlives `timeout` seconds is stopped. Whatever happens (an error, Ctrl-C,
    the consumer stopping early) the child and everything it started is
    stopped and reaped before this returns.
    """
    # A session of its own: the terminal's Ctrl-C reaches only the lab, which
    # then stops the whole group, grandchildren (pool workers, forkserver) too.
    child = subprocess.Popen(
        [interpreter.path, "-I", "-c", _BOOTSTRAP, SOURCE_ROOT, module],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )
    deadline = time.monotonic() + timeout
    stderr = bytearray()
    try:
        _send(child, payload)
        for line in _lines(child, stderr, deadline):
            record = json.loads(line)
            record["python"] = interpreter.version
            record["interpreter"] = interpreter.path
            record.setdefault("gil", interpreter.gil)
            yield record
        returncode = child.wait(timeout=max(0.1, deadline - time.monotonic()))
        if returncode != 0:
            raise LabError(f"{module} under {interpreter.label} failed: {_last_line(stderr)}")
    except subprocess.TimeoutExpired:
        raise LabError(f"{module} under {interpreter.label} took over {timeout:g} s") from None
    finally:
        # TERM the child's whole group (pool workers, a forkserver), a grace, KILL, reap.
        children.stop_popen(child, STOP_GRACE_S, group=True)


def _send(child: subprocess.Popen, payload: dict[str, Any]) -> None:
    """The params, then EOF: the child reads stdin whole before measuring."""
    assert child.stdin is not None
    try:
        child.stdin.write(json.dumps(payload).encode())
    except BrokenPipeError:
        pass  # it died at start; its stderr says why, reported after the wait
    finally:
        child.stdin.close()


def _lines(child: subprocess.Popen, stderr: bytearray, deadline: float) -> Iterator[bytes]:
    """Complete stdout lines as they arrive, stderr kept, until both pipes reach EOF."""
    assert child.stdout is not None and child.stderr is not None
    pending = bytearray()
    with selectors.DefaultSelector() as selector:
        selector.register(child.stdout, selectors.EVENT_READ, pending)
        selector.register(child.stderr, selectors.EVENT_READ, stderr)
        while selector.get_map():
            left = deadline - time.monotonic()
            if left <= 0:
                raise subprocess.TimeoutExpired(child.args, 0)
            for key, _ in selector.select(timeout=left):
                chunk = os.read(key.fd, 65536)
                if not chunk:
                    selector.unregister(key.fileobj)
                    continue
                key.data.extend(chunk)
                if key.data is stderr and len(stderr) > 65536:
                    del stderr[:-16384]  # only the end says what went wrong
                while key.data is pending and b"\n" in pending:
                    line, _, rest = bytes(pending).partition(b"\n")
                    pending[:] = rest
                    yield line


def _last_line(stderr: bytes | bytearray) -> str:
    lines = [line.strip() for line in bytes(stderr).decode(errors="replace").splitlines()]
    last = next((line for line in reversed(lines) if line), "no message on stderr")
    return last.removeprefix("lab.errors.")
