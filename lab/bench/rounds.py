"""`bench ab`: base and head benchmarked in alternating rounds, in the same job.

Round 1 runs base then head, round 2 head then base, and so on: whatever
the machine does meanwhile (a neighbour's test run, a CPU throttling) falls
on both sides alike, and neither always goes first. Each round is a fresh
`pytest BENCHMARKS --benchmark-enable` process per side; a benchmark's
sample from it is that round's median (pytest-benchmark's own statistics),
so the rank test later compares rounds with rounds. Both trees are compiled
to bytecode first, so that round 1 does not pay for it on one side.

What a round printed goes to a log beside the results (.bench/logs/).
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import subprocess
from pathlib import Path
from typing import Any

from lab.bench import counts, trees
from lab.errors import LabError

__all__ = ["ab"]


def ab(
    base_ref: str,
    *,
    rounds: int,
    select: str | None,
    suite: str,
    counts_too: bool = True,
    cache: Path,
    repo: Path | None = None,
) -> dict[str, Any]:
    """Measure both sides; write and return the results (cache/results.json)."""
    from lab.env import fingerprint
    from lab.report import console

    out = console(stderr=True)
    if counts_too:
        counts.require_valgrind()
    base, head = trees.sides(base_ref, cache, repo)
    if not (head.tree / suite).is_dir():
        raise LabError(f"no benchmark suite {suite!r} in {head.tree}")
    out.print(
        f"base {base.ref} ({base.commit[:12]}) in {base.tree}; head: {head.ref}", markup=False
    )
    logs = (cache / "logs").absolute()
    logs.mkdir(parents=True, exist_ok=True)
    for side in (base, head):
        _compile(side)
    wall: dict[str, dict[str, list[float]]] = {"base": {}, "head": {}}
    failures: list[str] = []
    loads = [os.getloadavg()]
    for number in range(1, rounds + 1):
        order = (base, head) if number % 2 else (head, base)
        took = []
        for side in order:
            seconds, code = _round(side, number, suite, select, logs, wall[side.name])
            took.append(f"{side.name} {seconds:.1f} s")
            if code not in (0, 1):  # 1: a benchmark failed (it then shows as missing)
                raise LabError(f"pytest exited {code} in {side.name} round {number}: see {logs}")
            if code == 1:
                failures.append(f"{side.name} round {number}")
        out.print(f"round {number}/{rounds}: {', '.join(took)}")
    counted: dict[str, dict[str, list[int]]] = {"base": {}, "head": {}}
    if counts_too:
        for side in (base, head):
            counted[side.name] = counts.measure(side, suite, logs)
            out.print(f"counted {side.name}: {len(counted[side.name])} benchmarks")
    loads.append(os.getloadavg())
    results = {
        "when": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
        "base": {"ref": base.ref, "commit": base.commit},
        "head": {"ref": head.ref, "commit": head.commit},
        "rounds": rounds,
        "select": select,
        "wall": wall,
        "counts": counted,
        "failed_rounds": failures,
        "loadavg": [list(load) for load in loads],
        "machine": fingerprint(),
    }
    path = cache / "results.json"
    path.write_text(json.dumps(results, indent=1) + "\n")
    out.print(f"results in {path}; judge them again: daemonlab bench compare {path}", markup=False)
    return results


def _compile(side: trees.Side) -> None:
    subprocess.run(
        [str(side.python), "-m", "compileall", "-q", "-x", r"/\.(venv|bench|git)/", "."],
        cwd=side.tree,
        stdout=subprocess.DEVNULL,
        check=False,  # a file that does not compile fails in its round, where the log says why
    )


def _round(
    side: trees.Side,
    number: int,
    suite: str,
    select: str | None,
    logs: Path,
    samples: dict[str, list[float]],
) -> tuple[float, int]:
    """One pytest run of the suite on one side; each benchmark's median joins `samples`."""
    import time

    report = logs / f"{side.name}-{number}.json"
    report.unlink(missing_ok=True)
    argv = [
        str(side.python), "-m", "pytest", suite, "--benchmark-enable",
        f"--benchmark-json={report}", "-p", "no:cacheprovider", "-q",
    ]  # fmt: skip
    if select:
        argv += ["-k", select]
    # pytest-benchmark turns itself off where PYTEST_XDIST_WORKER is set, and a pytest
    # started from an xdist worker (the lab's own suite runs `bench ab`) inherits it.
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST_XDIST_")}
    began = time.monotonic()
    with open(logs / f"{side.name}-{number}.log", "w") as log:
        done = subprocess.run(argv, cwd=side.tree, stdout=log, stderr=subprocess.STDOUT, env=env)
    took = time.monotonic() - began
    if report.exists():
        for bench in json.loads(report.read_text())["benchmarks"]:  # fullname: file::test[id]
            samples.setdefault(bench["fullname"], []).append(bench["stats"]["median"])
    return took, done.returncode
