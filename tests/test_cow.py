"""cow: forked children that only read, measured from outside in /proc.

Private_Dirty is counted by the kernel page by page, so these figures are
far steadier than timings: the margins below are still wide (a factor of
five or ten) because the lesson is the order of magnitude, not the megabyte.
"""

from __future__ import annotations

import json

import pytest

from lab import interpreters
from lab.errors import LabError
from lab.experiments import cow
from lab.experiments.cow import child as cow_child
from tests.conftest import assert_refused, run_cli

SIZE = 300_000  # ~45 MB of small lists: quick, and far above the control's noise


def _unshared(records, **match) -> float:
    found = [r["unshared_mb"] for r in records if all(r.get(k) == v for k, v in match.items())]
    assert found, match
    return sum(found) / len(found)


@pytest.fixture(scope="module")
def measured():
    return cow.run(cow.Params(structure=("lists", "small_ints"), size=SIZE)).records


def test_a_child_that_only_reads_dirties_clearly_more_than_the_control(measured):
    reader = _unshared(measured, structure="lists", frozen=False, role="reader", step="read")
    control = _unshared(measured, structure="lists", frozen=False, role="control", step="read")
    assert reader > 10 * control + 10, (reader, control)


def test_gc_freeze_makes_a_childs_collect_dirty_far_less(measured):
    without = _unshared(measured, structure="lists", frozen=False, role="collector", step="collect")
    with_ = _unshared(measured, structure="lists", frozen=True, role="collector", step="collect")
    assert without > 10, without
    assert with_ < without / 10, (without, with_)


def test_gc_freeze_does_not_stop_the_reference_counts(measured):
    without = _unshared(measured, structure="lists", frozen=False, role="reader", step="read")
    with_ = _unshared(measured, structure="lists", frozen=True, role="reader", step="read")
    assert with_ > 0.8 * without, (without, with_)


def test_references_to_none_and_small_ints_stay_shared(measured):
    """A few hundred referents on a few pages: the list of pointers itself is only read."""
    reader = _unshared(measured, structure="small_ints", frozen=False, role="reader", step="read")
    lists = _unshared(measured, structure="lists", frozen=False, role="reader", step="read")
    assert reader < 2 and reader < lists / 10, (reader, lists)


def test_every_child_is_measured_at_every_step(measured):
    steps = [(r["structure"], r["frozen"], r["role"], r["step"]) for r in measured]
    assert len(steps) == len(set(steps)) == 2 * 2 * 3 * 3


def test_right_after_fork_a_child_shares_nearly_everything(measured):
    """Fork copies no page: a fresh child has written only its own stack and a few of
    the interpreter's pages (under 1 MB here), against a parent of ~70 MB."""
    for r in (r for r in measured if r["step"] == "fork" and r["structure"] == "lists"):
        assert r["private_dirty_mb"] < 0.05 * r["parent_rss_mb"], r
        assert r["rss_mb"] > 0.5 * r["parent_rss_mb"], r  # it maps the parent's pages


#: Why the test below may find nothing to compare (conftest.ALLOWED_SKIPS lets CI skip it):
#: which interpreters a machine has is the machine's, not the lab's, and the lesson is
#: that the same line of Python is shared or copied depending on the release.
NO_CONTRAST = "no contrast in interned strings"


def test_immortal_interned_strings_stay_shared_and_mortal_ones_are_copied(no_leaks):
    """PEP 683: interned strings were immortal on 3.12.0 to 3.12.5 (3.12.1 here).

    gh-113993 made them mortal again in 3.13 and 3.12.6 (free-threaded builds keep
    them immortal), so the test trusts each interpreter's own `immortal` flag, not
    its version, and compares this one with every other 3.11-3.13 it finds: under
    3.12.1 with 3.11 and 3.13, elsewhere with 3.12.1.
    """
    here = interpreters.current()
    found = {here.version: here.path}
    for spec in ("3.11", "3.12", "3.13"):
        try:
            other = interpreters.resolve(spec)
        except LabError:
            continue
        found.setdefault(other.version, other.path)
    params = cow.Params(
        structure=("interned",),
        size=SIZE,
        role=("control", "reader"),
        freeze=(False,),
        python=tuple(found.values()),
    )
    records = cow.run(params).records
    immortal = {r["python"]: r["immortal"] for r in records}
    if len(set(immortal.values())) < 2:
        kind = "immortal" if all(immortal.values()) else "mortal"
        pytest.skip(
            f"{NO_CONTRAST}: {kind} on every Python here ({', '.join(immortal)}); immortal "
            "only on 3.12.0-3.12.5 and free-threaded builds (PEP 683, gh-113993)"
        )
    for python, is_immortal in immortal.items():
        copied = _unshared(records, python=python, role="reader", step="read")
        if is_immortal:
            assert copied < 2, (python, copied)
        else:
            assert copied > 5, (python, copied)


def test_the_measuring_module_reaps_its_children_even_when_stopped_early(no_leaks):
    """In this process: no zombie, no pipe end left, and the collector turned back on."""
    import gc

    payload = {
        "structure": "lists",
        "size": 1000,
        "children": 2,
        "roles": list(cow.ROLES),
        "freeze": [False, True],
    }
    assert len(list(cow_child.measure(payload))) == 2 * 6 * 3
    records = cow_child.measure(payload)
    next(records)
    records.close()
    assert gc.isenabled()


def test_a_cli_run_leaves_no_child_behind_and_plots(no_leaks, tmp_path):
    out = run_cli("run", "cow", "--structure", "lists", "--size", "20000", "--json")
    assert out.returncode == 0, out.stderr
    run = json.loads(out.stdout)
    assert run["status"] == "ok" and len(run["records"]) == 2 * 3 * 3
    png = tmp_path / "cow.png"
    plotted = run_cli("plot", "cow", "-o", str(png))
    assert plotted.returncode == 0, plotted.stderr
    assert png.stat().st_size > 10_000


@pytest.mark.parametrize(
    "options, says",
    [
        (["--size", "0"], "--size must be at least 1"),
        (["--children", "0"], "--children must be at least 1"),
        (["--structure", "dicts"], "unknown value 'dicts'"),
        (["--role", "writer"], "unknown value 'writer'"),
        (["--freeze", "maybe"], "not a valid bool"),
        (["--python", "python9.9"], "no interpreter 'python9.9'"),
    ],
)
def test_bad_input_is_refused_in_one_line(options, says):
    assert_refused(run_cli("run", "cow", *options, timeout=60), says)
