"""Instructions, not seconds, for CPU-bound work: valgrind's callgrind around one call.

A benchmark's wall time moves with everything else the machine does; the
number of instructions a deterministic pure-Python function executes does
not. Each side's `benchmarks/counted.py` names such functions at a small
size (COUNTED = {name: (module, function, args)}); each runs REPEAT times
per side under `valgrind --tool=callgrind` in the side's own interpreter.

Counting only the call: starting Python and importing the lab cost ten
times the work and vary by a few hundred thousand instructions from run to
run (environment, file system). So the call is made through libffi, as a
ctypes callback, and callgrind is told to count only inside `ffi_call`
(--toggle-collect): start-up and imports count 0. ffi_call is in libffi's
dynamic symbol table, so this works on stripped interpreters too (a static
function of CPython's, such as functools' reduce, would need its debug
symbols). The function runs once uncounted first (its lazy imports, caches
and the interpreter's specialisation settle), then once counted.

How well a count repeats, measured here: cpu's countdown exactly (integers
only); parsing sleep's options to within ~0.1%, because objects hashed by
their address (types as cache keys) land elsewhere in memory each run.
PYTHONHASHSEED=0 keeps string hashing the same; nothing fixes addresses.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path

from lab.bench.trees import Side
from lab.errors import LabError, last_line

__all__ = ["REPEAT", "measure", "require_valgrind"]

#: Runs per side and benchmark, so the results show how far a count repeats.
REPEAT = 3

#: Run by the side's own interpreter (the base may predate this module): the tree on
#: sys.path, the function found, then called once from C through ctypes.
_CALL = """\
import ctypes, importlib, json, sys
sys.path.insert(0, ".")
module, name, args = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
target = getattr(importlib.import_module(module), name)
failed = []
def call():
    try:
        target(*args)
    except BaseException as exc:  # ctypes would print and swallow it
        failed.append(repr(exc))
target(*args)  # once uncounted: lazy imports, caches and specialisation settle first
ctypes.CFUNCTYPE(None)(call)()
sys.exit(failed[0] if failed else 0)
"""

_LIST = """\
import json, runpy, sys
print(json.dumps(runpy.run_path(sys.argv[1]).get("COUNTED", {})))
"""


def require_valgrind() -> None:
    if shutil.which("valgrind") is None:
        raise LabError(
            "valgrind not found (instruction counts): apt-get install valgrind, or --no-counts"
        )


def measure(side: Side, suite: str, logs: Path) -> dict[str, list[int]]:
    """{benchmark: [instructions, ...]} for every function `side` counts."""
    declared = side.tree / suite / "counted.py"
    if not declared.exists():
        return {}
    listed = subprocess.run(
        [str(side.python), "-c", _LIST, str(declared)],
        cwd=side.tree,
        capture_output=True,
        text=True,
    )
    if listed.returncode != 0:
        last = last_line(listed.stderr)
        raise LabError(f"cannot read {declared}: {last}")
    found: dict[str, list[int]] = {}
    for name, (module, function, args) in json.loads(listed.stdout).items():
        found[name] = [
            _count(side, name, module, function, args, logs, n) for n in range(1, REPEAT + 1)
        ]
    return found


def _count(side: Side, name: str, module: str, function: str, args: list, logs: Path, n: int):
    stem = logs / f"{side.name}-{re.sub(r'[^A-Za-z0-9_.-]', '_', name)}-{n}"
    out = Path(f"{stem}.callgrind")
    argv = [
        "valgrind", "--tool=callgrind", "--toggle-collect=ffi_call",
        f"--callgrind-out-file={out}", f"--log-file={stem}.valgrind.log",
        str(side.python), "-I", "-c", _CALL, module, function, json.dumps(args),
    ]  # fmt: skip
    with open(f"{stem}.log", "w") as log:
        done = subprocess.run(
            argv, cwd=side.tree, stdout=log, stderr=subprocess.STDOUT,
            env={**os.environ, "PYTHONHASHSEED": "0"},
        )  # fmt: skip
    if done.returncode != 0:
        raise LabError(f"{side.name}: counting {name} failed (exit {done.returncode}): {stem}.log")
    summary = re.search(r"^summary:\s+(\d+)", out.read_text(), re.MULTILINE)
    if summary is None or int(summary.group(1)) == 0:
        raise LabError(f"{side.name}: callgrind counted nothing for {name}: see {out}")
    out.unlink()  # the count is kept in the results; the profile is large
    return int(summary.group(1))
