"""Benchmarks for `cow`: one batch of forked children reading and collecting.

The measured phase is the child interpreter building 200,000 small lists,
forking a control, a reader and a collector without and with gc.freeze(),
and measuring each from /proc after every step. Time is what pytest-benchmark
tracks; the memory each child copied is the lesson, kept in extra_info so a
saved run shows it beside the time, from the experiment's own records (the
measured module's), and asserted with the margins of tests/test_cow.py:
reading copies, gc.freeze stops the collector's copies.
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
    assert len(records) == 2 * 3 * 3
    copied = {}
    for r in records:
        if r["step"] != "fork":
            frozen = "frozen" if r["frozen"] else "unfrozen"
            copied[f"{r['role']}_{r['step']}_{frozen}_mb"] = r["unshared_mb"]
    benchmark.extra_info.update(copied)
    # reading is writing: the reader copies, the control next to nothing
    assert copied["reader_read_unfrozen_mb"] > 10 * copied["control_read_unfrozen_mb"] + 5
    # gc.freeze: the collector no longer copies what it would have examined
    without, with_ = copied["collector_collect_unfrozen_mb"], copied["collector_collect_frozen_mb"]
    assert without > 5 and with_ < without / 10, copied
