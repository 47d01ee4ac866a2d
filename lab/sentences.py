"""One sentence per experiment that says what its figures show, built from the figures.

The report (lab/htmlreport.py) puts one under each lesson's plot: not a
caption written in advance, but the run's own numbers, so that a machine
where threads did not overlap says so ("2 clients: threads 1.99 s against
2.00 s one after another"), and a run too noisy to show its lesson's point
says that instead of figures that teach the opposite (cpu's and spawn's
verdict.py: "too noisy to show the point here (spread 142%), run ...").
The lessons of the talk get a sentence of their own; any other experiment
gets the range of its figure (lab.compare picks which figure and what names
a case). A run whose records are not what its sentence expects (an old run,
one part only) gets the range too.
"""

from __future__ import annotations

import statistics
from collections.abc import Callable
from typing import Any

from lab.report import fmt
from lab.runs import Record, Run

__all__ = ["sentence"]


def sentence(module: Any, run: Run) -> str:
    """What `run` of experiment `module` shows, in one sentence."""
    own = _OWN.get(module.NAME)
    if own is not None:
        try:
            said = own(run.records)
        except (KeyError, TypeError, ValueError, ZeroDivisionError, statistics.StatisticsError):
            said = None
        if said:
            return said
    return _range(module, run)


def _range(module: Any, run: Run) -> str:
    from lab.compare import case_text, compare
    from lab.errors import LabError

    try:
        result = compare(module, [run], "machine")  # one run: one group, whatever it is
    except LabError:
        return f"{len(run.records)} records, none with a figure to sum up."
    cells = [(next(iter(by_group.values())), case) for case, by_group in result.cells.items()]
    (low, low_case), (high, high_case) = min(cells), max(cells)

    if low == high:
        return f"{result.figure} {fmt(low)} in every case."
    return (
        f"{result.figure} from {fmt(low)} ({case_text(result, low_case)}) "
        f"to {fmt(high)} ({case_text(result, high_case)})."
    )


def _sentence(clauses: list[str]) -> str | None:
    """Clauses joined with semicolons, the first letter made a capital, a full stop."""
    if not clauses:
        return None
    text = "; ".join(clauses)
    return text[0].upper() + text[1:] + "."


def _way(*parts: Any) -> str:
    """A strategy and its variant, once each: "pool fork", "asyncio" (not "asyncio asyncio")."""
    return " ".join(dict.fromkeys(str(p) for p in parts if p))


def _seconds(value: float) -> str:
    return f"{value:.2f} s" if value >= 0.1 else f"{value * 1000:.1f} ms"


def _ms(value: float) -> str:
    return f"{value:.3g} ms"


def _sleep(records: list[Record]) -> str | None:
    clients = max(r["clients"] for r in records)
    at = [r for r in records if r["clients"] == clients]
    seconds = at[0]["seconds"]
    walls: dict[str, list[float]] = {}
    for r in at:
        name = _way(r["strategy"], r.get("variant"))
        walls.setdefault(name, []).append(r["wall_s"])
    median = {name: statistics.median(v) for name, v in walls.items()}
    serial = median.pop("sequential", None)
    shown = ", ".join(f"{name} {_seconds(w)}" for name, w in median.items())
    head = f"{clients} clients each sleeping {seconds:g} s: "
    if serial is None:
        return head + shown + "."
    if not shown:
        return head + f"{_seconds(serial)} one after another."
    return head + f"{shown} against {_seconds(serial)} one after another."


def _too_noisy(point: Callable[[list[Record]], str | None], records: list[Record]) -> str | None:
    """A lesson's verdict (its verdict.point), one interpreter at a time: the first
    "too noisy to show the point" it says, or None where the records show it."""
    by_python: dict[Any, list[Record]] = {}
    for r in records:
        by_python.setdefault(r.get("python"), []).append(r)
    for python, group in by_python.items():
        said = point(group)
        if said:
            said = said.replace("\n", " ")  # the lesson's two lines, as one sentence
            return f"{python}: {said}" if len(by_python) > 1 else said
    return None


def _cpu(records: list[Record]) -> str | None:
    from lab.experiments.cpu import verdict

    said = []
    scaling = [r for r in records if r.get("part") == "scaling" and r.get("speedup") is not None]
    noisy = _too_noisy(verdict.point, scaling)
    if noisy:  # not figures that teach the opposite of the lesson
        said.append(noisy)
    elif scaling:
        workers = max(r["workers"] for r in scaling)
        at = [r for r in scaling if r["workers"] == workers and r["strategy"] != "sequential"]
        ways = ", ".join(
            f"{_way(r['strategy'], r.get('start_method'))} {r['speedup']:.2f}x" for r in at
        )
        said.append(f"{workers} workers against one after another: {ways}")
    convoy = {r.get("case"): r for r in records if r.get("part") == "convoy"}
    alone = convoy.pop("alone", None)
    if alone is not None and convoy:
        worst = max(convoy.values(), key=lambda r: r["median_ms"])
        said.append(
            f"an echo beside a spinning thread took {_ms(worst['median_ms'])} (median) "
            f"against {_ms(alone['median_ms'])} alone"
        )
    return _sentence(said)


def _spawn(records: list[Record]) -> str | None:
    from lab.experiments.spawn import verdict

    said = []
    # measured ones only: a method this Python lacks (a subinterpreter before 3.12) is a
    # record with a note and no figure
    create = [r for r in records if r.get("part") == "create" and r.get("median_ms") is not None]
    if create:
        ordered = sorted(create, key=lambda r: r["median_ms"])
        ways = ", ".join(f"{r['method']} {_ms(r['median_ms'])}" for r in ordered)
        ratio = ordered[-1]["median_ms"] / ordered[0]["median_ms"]
        said.append(f"to create and reap one worker (median): {ways}; {ratio:,.0f}x apart")
    noisy = _too_noisy(verdict.point, records)  # fork against the parent's size
    return _sentence(said + ([f"fork against parent size: {noisy}"] if noisy else []))


def _cow(records: list[Record]) -> str | None:
    worst: dict[tuple[str, bool], float] = {}
    for r in records:
        if r.get("role") in (None, "control"):
            continue
        key = (r["role"], bool(r["frozen"]))
        worst[key] = max(worst.get(key, 0.0), r["unshared_mb"])
    said = [
        f"a {role} child unshared {worst[(role, False)]:.1f} MB, "
        f"{worst[(role, True)]:.1f} MB after gc.freeze()"
        for role in dict.fromkeys(role for role, _ in worst)
        if (role, False) in worst and (role, True) in worst
    ]
    if not said:
        said = [f"a {role} child unshared {mb:.1f} MB" for (role, _), mb in worst.items()]
    return _sentence(said)


def _facts(records: list[Record]) -> str | None:
    facts = [r for r in records if "holds" in r]
    if not facts:
        return None
    failed = [str(r["number"]) for r in facts if not r["holds"]]
    held = f"{len(facts) - len(failed)} of {len(facts)} facts held"
    return held + (f" (not: {', '.join(failed)})" if failed else "")


def _fork(records: list[Record]) -> str | None:
    return _sentence([s for s in [_facts(records)] if s])


def _signals(records: list[Record]) -> str | None:
    said = [s for s in [_facts(records)] if s]
    latency = {r["state"]: r["median_ms"] for r in records if "state" in r}
    if latency:
        fast, slow = min(latency, key=latency.get), max(latency, key=latency.get)
        said.append(
            f"a signal reached its handler in {_ms(latency[fast])} with the receiver in "
            f"{fast}, {_ms(latency[slow])} in {slow} (medians)"
        )
    return _sentence(said)


def _daemonize(records: list[Record]) -> str | None:
    said = []
    for impl in dict.fromkeys(r["impl"] for r in records):
        last = [r for r in records if r["impl"] == impl][-1]
        leader = "a session leader" if last["session_leader"] else "not a session leader"
        said.append(
            f"the {impl} daemon (pid {last['pid']}) after {last['step']!r}: parent "
            f"{last['ppid']}, {leader}, tty {last['tty']}, cwd {last['cwd']}, "
            f"umask {last['umask']}"
        )
    return _sentence(said)


_OWN: dict[str, Callable[[list[Record]], str | None]] = {
    "sleep": _sleep,
    "cpu": _cpu,
    "spawn": _spawn,
    "cow": _cow,
    "fork": _fork,
    "signals": _signals,
    "daemonize": _daemonize,
}
