"""`daemonlab plot NAME` after the tour: every panel of daemonize, fork, spawn, cow, cpu, signals.

The tour runs each lesson in several small runs, one part at a time (cpu's
scaling, then its convoy); `plot NAME` then hands the figure the newest runs,
newest first. Each panel must come from the newest run that has its part, so
the picture is whole: no panel says its part is "not in these runs", and the
title names every run it drew from. The tour's own params are used here,
shrunk where a stop would take more than a few seconds.
"""

from __future__ import annotations

import re

import pytest

from lab import experiments, params, plotting
from lab.results import ResultsStore, open_store
from lab.runs import Run

#: Overrides on top of each tour stop: the same parts, smaller work.
SMALLER = {
    "daemonize": {},
    "fork": {},
    "spawn": {"repeat": 3, "rss": (30,), "rss_repeat": 2, "threads": 50, "processes": 1},
    "cow": {"size": 20_000},
    "cpu": {"work": 100_000, "repeat": 1, "pings": 20},
    "signals": {"fact": (1, 4), "samples": 3},
}


def _tour(name: str) -> tuple[list, set[int]]:
    """Each of the lesson's tour stops run small and stored, then each run stored again
    (a copy, newer): the stored runs, newest first, and the ids of the copies.

    Twice, because each stop's parts are disjoint: with one tour, the newest run with a
    part is also the only one, and a plot that took the oldest would pass."""
    module = experiments.load(name)
    with open_store() as store:  # this test's own store (conftest's LAB_RESULTS)
        for _text, overrides in module.TOUR:
            if overrides is not None:
                chosen = params.from_mapping(module.Params, {**overrides, **SMALLER[name]})
                assert module.run(chosen, sink=store).status == "ok"
        copies = {_stored_again(store, run) for run in reversed(store.runs(name))}
        return store.runs(name), copies


def _stored_again(store: ResultsStore, run: Run) -> int:
    copy = Run(run.experiment, run.params, run.env, started=run.started)
    store.begin(copy)
    for record in run.records:
        copy.records.append(record)  # add() numbers a record by its place in the run
        store.add(copy, record)
    copy.end(run.status, run.error)
    copy.finished = run.finished
    store.finish(copy)
    return copy.run_id


@pytest.mark.timeout(300)
@pytest.mark.parametrize("name", sorted(SMALLER))
def test_plot_after_the_tour_draws_every_panel_from_the_newest_run_with_its_part(name) -> None:
    runs, newest = _tour(name)
    assert len(newest) >= 2, "the tour runs this lesson in parts"
    figure = plotting.draw(name, runs)
    texts = [t.get_text() for t in figure.texts] + [
        t.get_text() for ax in figure.axes for t in [*ax.texts, ax.title]
    ]
    missing = [t for t in texts if "in these runs" in t]
    assert not missing, missing
    title = figure._suptitle.get_text()
    named = {int(n) for n in re.findall(r"\d+", title.split("(", 1)[1].split(";")[0])}
    assert named == newest, title  # the copies: the newest run with each part
