"""prefork's peers as labelled: each row's settings read back from the peer's own processes.

A table that says "gunicorn-sync tuned w3, C parser" must be what gunicorn
ran: its worker processes counted in /proc, its parser seen in their memory
maps, its heartbeat file open in /dev/shm; uWSGI's processes counted alike.
And what the lab's own server owes: a Date header, headers checked, a
graceful close that waits for the client's FIN (issue 24, point 1).
"""

from __future__ import annotations

import os
import socket
import threading
import urllib.request
from email.utils import parsedate_to_datetime
from pathlib import Path

import pytest

from lab.experiments import prefork
from lab.experiments.prefork import launch, plan, wsgi
from lab.experiments.prefork.config import ServeConfig
from tests.conftest import run_cli

pytestmark = pytest.mark.timeout(180)


def _heartbeat_dirs(workers: list[int]) -> set[str]:
    """Where gunicorn's workers keep their heartbeat file: an open, unlinked temp file."""
    dirs = set()
    for pid in workers:
        for fd in os.listdir(f"/proc/{pid}/fd"):
            try:
                target = os.readlink(f"/proc/{pid}/fd/{fd}")
            except FileNotFoundError:
                continue  # a client's socket, closed since the listing
            if "wgunicorn-" in target:
                dirs.add(str(Path(target.removesuffix(" (deleted)")).parent))
    return dirs


@pytest.mark.parametrize(
    ("setup", "workers", "parser", "tmp"),
    [("default", 2, "python", "/tmp"), ("tuned", 3, "fast", "/dev/shm")],
)
def test_gunicorn_runs_the_workers_parser_and_heartbeat_dir_its_row_says(
    tmp_path, no_leaks, setup, workers, parser, tmp
):
    config = ServeConfig(server="gunicorn-sync", setup=setup, workers=workers)
    server = launch.start(config, tmp_path)
    try:
        # started means every worker runs (one answers before the rest have forked)
        assert launch.serving(server.proc.pid)["seen_workers"] == workers
        for _ in range(10):  # a worker loads its parser with its first request
            urllib.request.urlopen(server.url, timeout=10).close()
        seen = launch.serving(server.proc.pid)
        pids = launch.tree(server.proc.pid)
        leaves = [p for p in pids[1:] if not launch.worker_pids(p)]
        assert seen == {"seen_workers": workers, "seen_parser": parser}
        assert _heartbeat_dirs(leaves) == {tmp}
    finally:
        server.stop()


def test_the_experiment_labels_every_peer_row_with_what_the_peer_ran(tmp_path):
    params = prefork.Params(
        part="compare", server=("prefork", "gunicorn-sync", "uwsgi"),
        setup=("default", "tuned"), repeat=1, duration=1, load="auto",
    )  # fmt: skip
    run = prefork.run(params)
    rows = [r for r in run.records if r["part"] == "compare"]
    assert {(r["server"], r["setup"]) for r in rows} == {
        ("prefork", "default"), ("gunicorn-sync", "default"), ("gunicorn-sync", "tuned"),
        ("uwsgi", "default"), ("uwsgi", "tuned"),
    }  # fmt: skip
    cores = len(os.sched_getaffinity(0)) - 1 or 1  # the server's share (placement.py)
    for row in rows:
        want = plan.tuned_workers(cores) if row["setup"] == "tuned" else 2
        assert (row["workers"], row["seen_workers"]) == (want, want), row
        if row["server"] == "gunicorn-sync":
            assert row["seen_parser"] == ("fast" if row["setup"] == "tuned" else "python"), row
        assert row["cpu_us"] > 0 and row["served"] > 0
    assert {r["peer"].rsplit(" ", 1)[0] for r in run.records if r["part"] == "ratios"} == {
        "gunicorn-sync default", "gunicorn-sync tuned", "uwsgi default", "uwsgi tuned",
    }  # fmt: skip


def test_a_ratio_whose_rounds_disagree_is_a_tie():
    def row(server, rnd, rps):
        return {"part": "compare", "server": server, "setup": "default", "app": "hello",
                "workers": 2, "concurrency": 16, "keepalive": False, "round": rnd,
                "rps": rps, "cpu_us": 100.0}  # fmt: skip

    apart = [row("prefork", n, 300.0) for n in (1, 2, 3)]
    apart += [row("uwsgi", 1, 100.0), row("uwsgi", 2, 120.0), row("uwsgi", 3, 150.0)]
    (ratio,) = plan.ratios(apart)
    assert (ratio["ratio"], ratio["low"], ratio["high"]) == (2.5, 2.0, 3.0)
    assert ratio["verdict"] == "prefork faster"
    crossing = [row("prefork", n, 300.0) for n in (1, 2, 3)]
    crossing += [row("uwsgi", 1, 250.0), row("uwsgi", 2, 350.0), row("uwsgi", 3, 280.0)]
    (tie,) = plan.ratios(crossing)
    assert tie["verdict"] == "tie" and tie["low"] < 1.0 < tie["high"]


def test_the_lab_answers_with_a_date_and_refuses_malformed_headers():
    answer = wsgi.render("200 OK", [("Content-Type", "text/plain")], b"hi", keep_alive=False)
    head = dict(
        line.split(": ", 1) for line in answer.decode().split("\r\n\r\n")[0].split("\r\n")[1:]
    )
    assert parsedate_to_datetime(head["Date"]).tzname() == "UTC"
    for bad in (
        b"GET / HTTP/1.1\r\nHost : x",  # space before the colon (RFC 9112 §5.1)
        b"GET / HTTP/1.1\r\nX-A: a\nb",  # a bare LF in a value
        b"GET / HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2",
    ):
        with pytest.raises(wsgi.BadRequest):
            wsgi.parse_head(bad)


def test_a_graceful_close_sends_fin_first_and_waits_for_the_clients():
    server, client = socket.socketpair()
    closing = threading.Thread(target=wsgi.graceful_close, args=(server,))
    closing.start()
    try:
        client.settimeout(5)
        assert client.recv(10) == b""  # our FIN came first: the response is whole
        closing.join(0.2)
        assert closing.is_alive()  # and the server lingers, reading, until the client's
    finally:
        client.close()
        closing.join(5)
    assert not closing.is_alive() and server.fileno() == -1


def test_a_setup_the_server_does_not_have_is_refused_in_one_line():
    done = run_cli("serve", "--server", "uwsgi", "--setup", "linger", "--port", "0")
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [
        "daemonlab: --setup: uwsgi has no setup 'linger' (choose from default, tuned)"
    ]
