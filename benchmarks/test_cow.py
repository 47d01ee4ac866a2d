"""Benchmarks for `cow`: one batch of forked children reading and collecting.

The measured phase is the child interpreter building 200,000 small lists,
forking a control, a reader and a collector without and with gc.freeze(),
and measuring each from /proc after every step. Time is what pytest-benchmark
tracks; the memory each child copied is the lesson, kept in extra_info so a
saved run shows it beside the time.
"""

from __future__ import annotations

from lab import interpreters

PAYLOAD = {
    "structure": "lists",
    "size": 200_000,
    "children": 1,
    "roles": ["control", "reader", "collector"],
    "freeze": [False, True],
}


def test_fork_read_and_collect_a_small_list_structure(benchmark):
    def measure():
        return interpreters.run_measured(
            interpreters.current(), "lab.experiments.cow.child", PAYLOAD, 300
        )

    records = benchmark.pedantic(measure, rounds=3, warmup_rounds=1)
    for r in records:
        if r["step"] != "fork" and r["role"] != "control":
            frozen = "frozen" if r["frozen"] else "unfrozen"
            benchmark.extra_info[f"{r['role']}_{r['step']}_{frozen}_mb"] = r["unshared_mb"]
    assert len(records) == 2 * 3 * 3
