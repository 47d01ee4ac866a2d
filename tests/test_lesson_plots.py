"""`daemonlab plot NAME` from several runs: every run shows, nothing under an axis's floor.

First, after the tour: every panel of daemonize, fork, spawn, cow, cpu, signals.

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
from lab.experiments.sleep.plot import label as sleep_label
from lab.results import open_store
from lab.runs import NOISY, NOTES, Run
from tests.conftest import store_again

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
        copies = {store_again(store, run).run_id for run in reversed(store.runs(name))}
        return store.runs(name), copies


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
    assert not below_a_floor(figure), below_a_floor(figure)


# -- every run given is drawn, and nothing under an axis's floor -------------------------
#
# From fixture records (no server, no sweep: each test draws in well under a second), in
# the two shapes a figure is handed runs: the tour's (a slide, then a sweep) and a
# notebook's list (lab.plot("sleep", [sweep, forked]): parts made by different front doors).


def _labels(figure) -> set[str]:
    """What the figure's legends name, and each panel's drawn series."""
    legends = [*figure.legends, *(ax.get_legend() for ax in figure.axes)]
    named = {t.get_text() for legend in legends if legend for t in legend.get_texts()}
    return named | {line.get_label() for ax in figure.axes for line in ax.lines}


def _panel(figure, title: str):
    return next(ax for ax in figure.axes if ax.get_title().startswith(title))


def _series(ax) -> set[str]:
    return {line.get_label() for ax_line in [ax] for line in ax_line.lines}


def below_a_floor(figure) -> list[str]:
    """Every drawn point under its axis's floor: <= 0 on a log axis (matplotlib drops it
    without a word), under the axis's lower limit on a linear one (cut off)."""
    import math

    out = []
    for ax in figure.axes:
        for line in ax.lines:
            xy = line.get_xydata()  # in numbers, also on a categorical axis
            for axis, values in (("x", xy[:, 0]), ("y", xy[:, 1])):
                if line.get_transform() == _axes_fraction(ax, axis):
                    continue  # axhline's x, axvline's y: a fraction of the axes, no value
                scale = ax.get_xscale() if axis == "x" else ax.get_yscale()
                low = (ax.get_xlim() if axis == "x" else ax.get_ylim())[0]
                floor = 0.0 if scale == "log" else low
                under = [v for v in values if math.isfinite(v) and v <= floor and scale == "log"]
                under += [v for v in values if math.isfinite(v) and v < floor - 1e-12]
                if under:
                    out.append(f"{ax.get_title()!r} {line.get_label()!r} {axis}: {under}")
    return out


def _axes_fraction(ax, axis: str):
    return ax.get_yaxis_transform() if axis == "x" else ax.get_xaxis_transform()


def _sleep_records(strategies, clients, seconds=0.5, **over) -> list[dict]:
    """What a sleep run records, shaped as the lesson makes it (sequential takes N sleeps)."""
    records = []
    for n in clients:
        for strategy, variant in strategies:
            wall = seconds * (n if strategy == "sequential" else 1) * 1.004
            records.append({
                "strategy": strategy, "variant": variant, "clients": n, "seconds": seconds,
                "wall_s": wall, "efficiency": seconds / wall, "connect_s": 0.002 * n,
                "mib_per_client": -0.09 if strategy == "threads" and n == 4 else 0.03,
                "server_threads": 40 + n, "server_idle_threads": 40 + n,
                "thread_handling": "one-thread-per-connection", **over,
            })  # fmt: skip
    return records


def _sleep_runs(*parts) -> list[Run]:
    """Runs newest first, numbered: the last part given is the newest."""
    runs = [
        Run("sleep", {}, {"server_version": "10.11"}, records, status="ok", run_id=i + 1)
        for i, records in enumerate(parts)
    ]
    return runs[::-1]


TOUR_SLEEP = (
    _sleep_records([("sequential", ""), ("threads", "")], [2], seconds=1.0),
    _sleep_records([("threads", ""), ("fork", ""), ("asyncio", "asyncio/aiomysql")], [1, 8, 32]),
)
NOTEBOOK_SLEEP = (
    _sleep_records([("threads", ""), ("asyncio", "asyncio/aiomysql")], [1, 4, 16, 64]),
    _sleep_records([("fork", ""), ("pool", "fork")], [1, 4, 16, 64]),
)


@pytest.mark.parametrize("parts", [TOUR_SLEEP, NOTEBOOK_SLEEP], ids=["tour", "notebook"])
def test_sleep_draws_every_run_it_is_given_in_its_panels_and_legend(parts) -> None:
    runs = _sleep_runs(*parts)
    figure = plotting.draw("sleep", runs)
    assert f"runs {', '.join(str(r.run_id) for r in runs[::-1])}" in figure._suptitle.get_text()
    shown = _labels(figure)
    wall = _series(_panel(figure, "wall time"))
    for run in runs:
        for record in run.records:
            name = sleep_label(record)
            assert name in shown, (name, sorted(shown))
            assert name in wall, (name, sorted(wall))
    assert not below_a_floor(figure), below_a_floor(figure)


def test_sleep_one_after_another_runs_through_every_sequential_point() -> None:
    seq = _sleep_records([("sequential", "")], [1, 2, 4, 8], seconds=1.0)
    figure = plotting.draw("sleep", _sleep_runs(seq))
    wall = _panel(figure, "wall time")
    line = next(x for x in wall.lines if x.get_label().startswith("one after another"))
    drawn = dict(zip(line.get_xdata(), line.get_ydata(), strict=True))
    for record in seq:  # a straight line through them on a log-log axis, at every count
        assert drawn[record["clients"]] == pytest.approx(record["wall_s"], rel=1e-9)
    assert [float(t) for t in wall.get_xticks()] == [1, 2, 4, 8]  # a tick at every count


def test_sleep_memory_under_what_pss_resolves_is_drawn_at_it_and_said() -> None:
    figure = plotting.draw("sleep", _sleep_runs(*NOTEBOOK_SLEEP))
    memory = _panel(figure, "what a client holds")
    drawn = [y for line in memory.lines for y in line.get_ydata()]
    assert min(drawn) > 0, drawn
    assert "below resolution" in memory.get_xlabel()


def test_sleep_draws_a_peers_run_whose_records_hold_only_its_own_figures() -> None:
    """mysqlslap reports a wall time, not a connect time, memory or server threads: its
    points are in the panels it has figures for, the others are drawn without it."""
    own = ("connect_s", "mib_per_client", "server_threads", "server_idle_threads")
    peer = [{k: v for k, v in r.items() if k not in own}
            for r in _sleep_records([("mysqlslap", "")], [8, 64])]  # fmt: skip
    figure = plotting.draw("sleep", _sleep_runs(*TOUR_SLEEP, peer))
    assert "mysqlslap" in _series(_panel(figure, "wall time"))
    assert "mysqlslap" not in _series(_panel(figure, "what a client costs to make"))


def test_a_run_judged_too_noisy_says_so_under_the_figure() -> None:
    """Its points drawn bare would teach what the run could not show (cpu's tour chapter
    beside a venv being built: processes at 1.07x); the verdict is written under them."""
    noisy, quiet = _sleep_runs(*TOUR_SLEEP)
    why = "too noisy to show the point here (spread 62%), run\n`daemonlab run sleep`"
    noisy.env.update({NOTES: ["a note of another kind", why], NOISY: True})
    said = [t.get_text() for t in plotting.draw("sleep", [noisy, quiet]).texts]
    assert [t for t in said if "noisy" in t] == [f"run {noisy.run_id}: {' '.join(why.split())}"]
    assert not [t for t in plotting.draw("sleep", [quiet]).texts if "noisy" in t.get_text()]


def test_sleep_server_panel_says_what_its_thread_count_holds() -> None:
    figure = plotting.draw("sleep", _sleep_runs(*TOUR_SLEEP))
    legend = _panel(figure, "the server's side").get_legend()
    assert "none subtracted" in legend.get_title().get_text()


def _ipc_records(links, sizes) -> list[dict]:
    return [
        {"transport": t, "pattern": p, "size": s, "rtt_median_us": 10.0 + i, "rtt_p99_us": 40.0,
         "mb_per_s": 100.0 + i}
        for s in sizes for i, (t, p) in enumerate(links)
    ]  # fmt: skip


def test_ipc_lists_the_same_links_at_every_size_and_each_reads_apart() -> None:
    """The tour's two ipc stops time different links at different sizes: a size's panel
    without zmq must say so, not make the links it has look fastest."""
    kernel = [("pipe", "pipe"), ("pipe", "C floor"), ("unix", "stream"), ("unix", "dgram"),
              ("unix", "C floor"), ("tcp", "C floor")]  # fmt: skip
    brokers = [("zmq", "req-rep ipc"), ("zmq", "req-rep tcp"), ("zmq", "push-pull ipc")]
    runs = [
        Run("ipc", {}, {}, _ipc_records(brokers, [64, 65536]), status="ok", run_id=2),
        Run("ipc", {}, {}, _ipc_records(kernel, [64, 1 << 20]), status="ok", run_id=1),
    ]
    figure = plotting.draw("ipc", runs)
    panels = [ax for ax in figure.axes if ax.get_title().endswith(("messages", "timed)"))]
    assert len(panels) == 3
    every = {f"{t} {p}" for t, p in kernel + brokers}
    for ax in panels:
        rows = {t.get_text() for t in ax.get_yticklabels()}
        assert rows == every, (ax.get_title(), every ^ rows)
        said = [t.get_text() for t in ax.texts if t.get_text().startswith("not timed")]
        bars = [b for b in ax.patches if b.get_width() > 0]
        assert len(said) + len(bars) == len(every), ax.get_title()
        looks = [(b.get_facecolor(), b.get_hatch()) for b in bars]
        assert len(set(looks)) == len(looks), ax.get_title()  # zmq's, unix's, the floors'
    assert not below_a_floor(figure), below_a_floor(figure)
    assert "runs 1, 2" in figure._suptitle.get_text()


def _texts(figure) -> list[str]:
    return [t.get_text() for ax in figure.axes for t in ax.texts] + [
        t.get_text() for ax in figure.axes for t in ax.get_yticklabels() + ax.get_xticklabels()
    ]


def test_worker_bars_say_their_values_and_their_axis_has_ticks() -> None:
    """The tour's worker stops measure one count of jobs at once: bars, a hundredfold apart;
    each stop is a run, and both are drawn."""
    records = [
        {"part": "throughput", "system": system, "model": model, "setting": "default",
         "workers": 2, "job": "noop", "jobs_per_s": jobs, "pickup_p50_ms": pickup,
         "pickup_p99_ms": 2 * pickup, "cpu_ms_per_job": cpu}
        for system, model, jobs, pickup, cpu in (
            ("lab", "threads", 4210.0, 0.4, 0.21), ("rq", "fork-per-job", 61.5, 3.2, 14.0),
            ("arq", "asyncio", 1630.0, 480.0, 0.61),
        )
    ]  # fmt: skip
    io = [dict(r, job="io", workers=8) for r in records]  # the tour's second stop, run apart
    runs = [Run("worker", {}, {}, io, status="ok", run_id=2),
            Run("worker", {}, {}, records, status="ok", run_id=1)]  # fmt: skip
    figure = plotting.draw("worker", runs)
    assert "runs 1, 2" in figure._suptitle.get_text()
    titles = {ax.get_title().split(":")[0] for ax in figure.axes}
    assert titles == {"noop jobs", "io jobs"}, titles
    for ax in figure.axes:
        labels = {t.get_text() for t in ax.texts}
        assert len(labels) >= 3, (ax.get_title(), labels)  # a value on every bar
        low, high = ax.get_ylim()
        shown = [t for t in ax.get_yticks() if low <= t <= high]
        assert len(shown) >= 3, (ax.get_title(), shown)  # an axis that can be read
    assert {"4,210", "61.5", "1,630"} <= set(_texts(figure))
    assert not below_a_floor(figure), below_a_floor(figure)


def test_cron_crossings_read_as_numbers_and_both_daemons_show() -> None:
    ticks = [
        {"part": "ticks", "strategy": s, "rate": 2.0, "cpu_ms_per_job": cpu, "mb_s_per_job": mb}
        for s, cpu, mb in (("cron", 223.8, 12.3), ("daemon-redis", 0.65, 19.3),
                           ("daemon-signal", 0.58, 19.3))
    ]  # fmt: skip
    idle = [
        {"part": "idle", "strategy": s, "idle_cpu_ms_per_s": cpu, "rss_mb": 38.6}
        for s, cpu in (("daemon-redis", 0.29), ("daemon-signal", 0.0))
    ]
    figure = plotting.draw("cron", [Run("cron", {}, {}, ticks + idle, status="ok", run_id=1)])
    crossings = [t for t in _texts(figure) if t.endswith("/h")]
    assert "11,300/h" in crossings, crossings  # 3.13/s, never 1.13e+04/h
    for ax in figure.axes[:2]:
        styles = {
            (x.get_linestyle(), x.get_linewidth()) for x in ax.lines if "daemon" in x.get_label()
        }
        assert len(styles) == 2, styles  # the daemons' lines coincide: drawn apart, both seen


def test_managers_draws_both_tour_runs_and_its_stop_boxes_hold_their_words() -> None:
    managers = ("supervisord", "circus", "honcho", "monit", "lab")
    records = [
        {"event": "stop", "manager": m, "final_state": "stopped", "signal": "TERM",
         "children_stopped": m != "honcho", "grandchild_survived": True}
        for m in managers
    ] + [
        {"event": "kill-9", "manager": m, "final_state": "running", "latency_ms": 40.0 + i,
         "latencies_ms": [40.0 + i]}
        for i, m in enumerate(managers)
    ]  # fmt: skip
    kills = [r for r in records if r["event"] == "kill-9"]
    stops = [r for r in records if r["event"] == "stop"]
    runs = [Run("managers", {}, {}, stops, status="ok", run_id=2),
            Run("managers", {}, {}, kills, status="ok", run_id=1)]  # fmt: skip
    figure = plotting.draw("managers", runs)
    assert "runs 1, 2" in figure._suptitle.get_text()
    for title in ("kill -9", "after a stop"):
        ticks = {t.get_text() for t in _panel(figure, title).get_xticklabels()}
        assert ticks == set(managers), (title, ticks)
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    renderer = FigureCanvasAgg(figure).get_renderer()
    figure.draw(renderer)
    stops = _panel(figure, "after a stop")
    boxes = [p.get_window_extent(renderer) for p in stops.patches]
    words = [t for t in stops.texts if t.get_text() in ("alive", "stopped")]
    assert len(words) == 2 * len(managers) == len(boxes)
    for word in words:
        extent = word.get_window_extent(renderer)
        assert any(
            b.x0 <= extent.x0 and extent.x1 <= b.x1 and b.y0 <= extent.y0 and extent.y1 <= b.y1
            for b in boxes
        ), (word.get_text(), extent)


def test_prefork_draws_both_of_notebook_10s_runs_and_its_legend_covers_no_bar() -> None:
    """Notebook 10 compares six servers in one group (their legend sat on their bars),
    and draws it with the signals' run: both runs show."""
    servers = ("prefork", "threads", "asyncio", "gunicorn-sync", "gunicorn-gthread", "uwsgi")
    records = [
        {"part": "compare", "app": "hello", "workers": 3, "concurrency": 32, "keepalive": True,
         "server": s, "rps": 9000.0 - 50 * i, "p99_ms": 3.0 + i}
        for i, s in enumerate(servers)
    ]  # fmt: skip
    events = [
        {"part": "events", "event": e, "recovery_ms": 120.0, "failed": 0}
        for e in ("HUP", "TTIN", "kill -9")
    ]
    shocked = Run("prefork", {}, {}, events, status="ok", run_id=2)
    compared = Run("prefork", {}, {}, records, status="ok", run_id=1)
    figure = plotting.draw("prefork", [shocked, compared])  # notebook 10's list
    assert "runs 1, 2" in figure._suptitle.get_text()
    ticks = {t.get_text() for t in _panel(figure, "signals under load").get_xticklabels()}
    assert ticks == {"HUP", "TTIN", "kill -9"}, ticks
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    renderer = FigureCanvasAgg(figure).get_renderer()
    figure.draw(renderer)
    legends = [*figure.legends, *(ax.get_legend() for ax in figure.axes if ax.get_legend())]
    assert {t.get_text() for legend in legends for t in legend.get_texts()} == set(servers)
    colours = {tuple(h.get_facecolor()) for legend in legends for h in legend.legend_handles}
    assert len(colours) == len(servers), colours  # gunicorn-gthread and uwsgi were one pink
    for legend in legends:
        box = legend.get_window_extent(renderer)
        for ax in figure.axes:
            for bar in ax.patches:
                assert not box.overlaps(bar.get_window_extent(renderer)), ax.get_title()


def test_fork_checklist_facts_read_at_ten_px_where_the_report_shows_it() -> None:
    """The report shows a figure at the page's width, 1,248 px on a 1,280 px screen."""
    facts = [
        {"number": n, "fact": f"fact number {n}", "holds": True, "python": "3.11.7"}
        for n in range(1, 16)
    ]
    figure = plotting.draw("fork", [Run("fork", {}, {}, facts, status="ok", run_id=1)])
    shown = 1248 / (figure.get_figwidth() * 120)  # plotting.save writes 120 dpi
    checklist = _panel(figure, "the checklist")
    for tick in checklist.get_yticklabels():
        px = tick.get_fontsize() * 120 / 72 * shown
        assert px >= 9.5, (tick.get_text(), round(px, 1))
