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


def test_immortal_interned_strings_stay_shared_and_mortal_ones_are_copied(no_leaks):
    """PEP 683: interned strings were immortal on early 3.12 releases (3.12.1 here).

    gh-113993 made them mortal again in 3.13 and a later 3.12 bugfix release, so
    the test trusts each interpreter's own `immortal` flag, not its version, and
    needs one interpreter of each kind to say anything.
    """
    here = interpreters.current()
    try:
        other = interpreters.resolve("3.12")
    except LabError as exc:
        pytest.skip(f"no Python 3.12 here: {exc}")
    params = cow.Params(
        structure=("interned",),
        size=SIZE,
        role=("control", "reader"),
        freeze=(False,),
        python=tuple(dict.fromkeys((here.path, other.path))),
    )
    records = cow.run(params).records
    immortal = {r["python"]: r["immortal"] for r in records}
    if len(set(immortal.values())) < 2:
        pytest.skip(f"no contrast: interned strings immortal per Python {immortal}")
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
