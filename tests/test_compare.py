"""`daemonlab compare`: the same figure from several machines, Pythons or labels.

The runs here are stored as a shared store would hold them: real rows in a
real store, with the environments of two machines written in (this machine
cannot be two), then read back and compared through the command line.
"""

from __future__ import annotations

import pytest

from lab import experiments
from lab.compare import compare
from lab.env import fingerprint
from lab.results import open_store
from lab.runs import Run, Status
from tests.conftest import run_cli


def store_run(store, experiment, records, *, label=None, **env):
    run = Run(experiment, {}, {**fingerprint(), **env}, started="now")
    store.label = label
    store.begin(run)
    for record in records:
        run.records.append(record)
        store.add(run, record)
    run.end(Status.OK)
    run.finished = "now"
    store.finish(run)
    return run


def sleep_records(threads_efficiency):
    one = {"variant": "", "clients": 2}
    return [
        {"strategy": "sequential", **one, "wall_s": 2.0, "efficiency": 0.5},
        {"strategy": "threads", **one, "wall_s": 1.0, "efficiency": threads_efficiency},
    ]


@pytest.fixture
def two_attendees(results_path):
    with open_store(results_path) as store:
        store_run(store, "sleep", sleep_records(0.9), label="old", hostname="a")
        store_run(store, "sleep", sleep_records(0.98), label="alice", hostname="a")
        store_run(store, "sleep", sleep_records(0.5), label="bob", hostname="b", cpu_model="Z80")
        return store.runs("sleep")


def test_each_label_shows_its_newest_run_and_the_ratio(two_attendees):
    result = compare(experiments.load("sleep"), two_attendees, "label")
    assert result.figure == "efficiency" and result.keys == ["strategy", "variant", "clients"]
    assert result.groups == ["old", "alice", "bob"]
    threads = ("threads", "", 2)
    assert result.cells[threads] == {"old": 0.9, "alice": 0.98, "bob": 0.5}


def test_by_machine_takes_each_machines_newest_run(two_attendees):
    result = compare(experiments.load("sleep"), two_attendees, "machine")
    assert len(result.groups) == 2
    b = next(g for g in result.groups if g.startswith("b ("))
    assert "Z80" in b
    cells = result.cells[("threads", "", 2)]
    assert sorted(cells.values()) == [0.5, 0.98]  # machine a: alice's run, not the old one
    assert result.ratio(("sequential", "", 2)) == pytest.approx(1.0)


def test_by_python_reads_the_records_own_python(results_path):
    records = [
        {"python": py, "part": "scaling", "strategy": "processes", "workers": 2, "speedup": s}
        for py, s in (("3.12.1", 1.9), ("3.13.0", 1.7))
    ]
    with open_store(results_path) as store:
        store_run(store, "cpu", records)
        runs = store.runs("cpu")
    result = compare(experiments.load("cpu"), runs, "python")
    assert result.groups == ["Python 3.12.1", "Python 3.13.0"]
    assert result.cells[("scaling", "processes", 2)] == {"Python 3.12.1": 1.9, "Python 3.13.0": 1.7}


def test_the_command_prints_the_table_and_writes_the_figure(two_attendees, tmp_path):
    png = tmp_path / "cmp.png"
    done = run_cli("compare", "sleep", "--by", "label", "-o", str(png))
    assert done.returncode == 0, done.stderr
    assert "alice" in done.stdout and "bob" in done.stdout and "0.980" in done.stdout
    assert png.stat().st_size > 10_000 and png.read_bytes()[:4] == b"\x89PNG"


def test_nothing_to_compare_is_one_line(results_path):
    open_store(results_path).close()
    done = run_cli("compare", "sleep", "--by", "label")
    assert done.returncode == 2 and "no stored runs of 'sleep'" in done.stderr
    done = run_cli("compare", "nosuch")
    assert done.returncode == 2 and "unknown experiment" in done.stderr


def test_by_label_leaves_unlabelled_runs_out_so_two_labels_get_their_ratio(results_path):
    """An unlabelled run made a "(no label)" group: three groups, and alice vs bob no ratio."""
    with open_store(results_path) as store:
        store_run(store, "sleep", sleep_records(0.9), hostname="a")  # no label
        store_run(store, "sleep", sleep_records(0.98), label="alice", hostname="a")
        store_run(store, "sleep", sleep_records(0.49), label="bob", hostname="b")
        runs = store.runs("sleep")
    result = compare(experiments.load("sleep"), runs, "label")
    assert result.groups == ["alice", "bob"]
    assert result.ratio(("threads", "", 2)) == pytest.approx(0.5)


def test_notes_and_measured_text_are_no_part_of_a_case(results_path):
    """managers' notes carry pids (no two runs alike: nothing matched, and axis labels ran
    to 100 characters) and its gaps are measured: a case is the manager and the event."""
    note = "TERM to the process group; left running after the manager stopped: pid 31357"
    with open_store(results_path) as store:
        for label, pid, gaps in (("alice", 1, "1.5 2.4"), ("bob", 2, "1.5 2.5")):
            record = {"part": "crash-loop", "manager": "supervisord", "latency_ms": 3900.0 + pid,
                      "backoff": gaps, "final_state": "FATAL", "notes": f"{note}{pid}"}  # fmt: skip
            store_run(store, "managers", [record], label=label)
        runs = store.runs("managers")
    result = compare(experiments.load("managers"), runs, "label")
    assert result.keys == ["part", "manager"]
    (case,) = result.cells
    assert result.ratio(case) == pytest.approx(3902 / 3901)


def test_a_long_case_folds_on_the_figure_and_matplotlib_says_nothing():
    """A 100-character label squeezed the axes away, and matplotlib's warning about it
    reached the terminal (pyproject makes any warning a failure here)."""
    import io

    from lab.compare import Comparison, draw

    names = ("one-thread-per-connection-pool", "a-long-strategy-name-of-its-own", "x" * 30)
    cells = {(*names[:2], f"{names[2]}{n}"): {"alice": 1.0 + n, "bob": 2.0} for n in range(6)}
    result = Comparison("sleep", "efficiency", "label", ["a", "b", "c"], ["alice", "bob"], cells,
                        {"alice": 1, "bob": 2})  # fmt: skip
    figure = draw(result)
    figure.savefig(io.BytesIO(), format="png", bbox_inches="tight")
    labels = [t.get_text() for t in figure.axes[0].get_yticklabels()]
    assert all(max(map(len, label.splitlines())) <= 32 for label in labels), labels
