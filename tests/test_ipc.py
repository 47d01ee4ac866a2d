"""ipc: every transport delivers every byte intact both ways, and leaves nothing behind.

Real processes, real brokers (RabbitMQ, Redis, Mosquitto, NATS on this
machine; a throwaway prosody and, for the broker that dies, a throwaway
redis-server). A missing broker skips here, and fails under
LAB_REQUIRE_SERVICES=1 (CI). What "nothing left" means is checked through
the servers themselves, for the run's own prefix only: rabbitmqctl
list_queues, Redis SCAN, /dev/shm and the socket files.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time

import psutil
import pytest

import lab
from lab.errors import LabError
from lab.experiments import ipc
from lab.experiments.ipc import links, plan, transports, wire
from lab.start_methods import stop_multiprocessing_servers
from tests.conftest import ROOT, assert_refused, free_port, missing, require_service, run_cli

pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="the lesson is Linux's")

SIZES = (64, 4096, 65536, 1 << 20)
QUICK = {"seconds": 0.01, "samples": 30, "floor": False}
#: transport -> what it needs running here (None: only this machine's kernel)
NEEDS = {
    "amqp": "amqp",
    "redis": "redis",
    "mqtt": "mqtt",
    "nats": "nats",
}
#: transports whose links leave something a crash could leave behind
LEAVING_TRACES = ("unix", "shm", "zmq", "amqp", "redis")


def _require(transport: str) -> None:
    if transport in NEEDS:
        require_service(NEEDS[transport])
    if (
        transport == "xmpp"
        and shutil.which("prosody") is None
        and not os.environ.get("LAB_XMPP_URL")
    ):
        missing("prosody is not installed (apt-get install prosody)", "LAB_REQUIRE_SERVICES")


def _leftovers(prefix: str, names=transports.TRANSPORTS) -> list[str]:
    found = []
    for transport in names:
        for link in transports.links(transport):
            found += link.leftovers(prefix)
    return sorted(set(found))


def _sizes_for(transport: str) -> tuple[int, ...]:
    return tuple(
        s for s in SIZES if any(not link.too_big(s) for link in transports.links(transport))
    )


@pytest.mark.timeout(180)
@pytest.mark.parametrize("transport", transports.TRANSPORTS)
def test_every_size_arrives_intact_both_ways_and_nothing_is_left(transport, no_leaks) -> None:
    _require(transport)
    sizes = _sizes_for(transport)
    run = ipc.run(ipc.Params(transport=(transport,), size=sizes, **QUICK))
    assert run.status == "ok"
    measured = [r for r in run.records if "skipped" not in r]
    # Every link of the transport measured every size it can carry (the peer checked each
    # checksum and each sequence number; the parent compared each echo byte for byte).
    for link in transports.links(transport):
        carried = [s for s in sizes if not link.too_big(s)]
        mine = [r for r in measured if r["pattern"] == link.pattern]
        assert [r["size"] for r in mine] == carried, (link.name, run.records)
        for record in mine:
            if "rtt" in link.measures:
                assert record["samples"] >= 1 and record["rtt_median_us"] > 0
            if "stream" in link.measures:
                assert record["messages"] >= 1 and record["mb_per_s"] > 0
    assert _leftovers(run.env["prefix"], (transport,)) == []


def test_a_size_over_a_links_limit_is_skipped_with_the_reason(no_leaks) -> None:
    run = ipc.run(ipc.Params(transport=("unix",), size=(64, 1 << 20), **QUICK))
    (skipped,) = [r for r in run.records if "skipped" in r]
    assert skipped["pattern"] == "dgram" and skipped["size"] == 1 << 20
    assert "SO_SNDBUF" in skipped["why"]


@pytest.mark.timeout(60)
@pytest.mark.parametrize("name", ["pipe/pipe", "shm/ring", "zmq/push-pull ipc"])
def test_the_peer_refuses_a_damaged_or_out_of_order_message(name, no_leaks) -> None:
    link = transports.find(name)
    ctx = links.Context(largest=4096)
    messages = wire.Messages(64)
    try:
        with links.conversation(link, ctx) as talk:
            damaged = bytearray(messages.make(wire.PING, 0))
            damaged[-1] ^= 0xFF  # one bit pattern changed in the payload
            answer = talk.endpoint.request(bytes(damaged))
            assert wire.kind_of(answer) == wire.ERROR
            assert b"failed its checksum" in answer
        with links.conversation(link, ctx) as talk:
            talk.endpoint.send(messages.make(wire.DATA, 1))  # 0 was due
            answer = talk.endpoint.recv()
            assert wire.kind_of(answer) == wire.ERROR
            assert b"arrived where 0 was due" in answer
    finally:
        ctx.remove()
        stop_multiprocessing_servers()  # shared memory started multiprocessing's tracker


@pytest.mark.timeout(60)
@pytest.mark.parametrize("name", ["pipe/pipe", "shm/ring"])
def test_an_echo_that_comes_back_damaged_fails_the_measurement_in_one_line(name, no_leaks) -> None:
    """The parent's own compare: the peer checks what it gets, the parent what comes back.
    Here the peer is real and its echo is damaged on the way back (one bit of the last
    byte): the round trips stop with the one line that names the message."""
    from lab.experiments.ipc import measure

    link = transports.find(name)
    ctx = links.Context(largest=4096)
    try:
        with links.conversation(link, ctx) as talk:
            endpoint = talk.endpoint
            real_poll = endpoint.poll

            def damaged_poll(timeout: float) -> bytes | None:
                message = real_poll(timeout)
                if message is None or wire.kind_of(message) != wire.PING:
                    return message
                return bytes(message[:-1]) + bytes([message[-1] ^ 0x01])

            endpoint.poll = damaged_poll
            with pytest.raises(wire.PeerGone) as said:
                measure.round_trips(endpoint, 64, 0.2, 50)
            assert str(said.value) == "the echo of message 0 (64 bytes) came back different"
    finally:
        ctx.remove()
        stop_multiprocessing_servers()


@pytest.mark.timeout(60)
def test_the_lab_unlinks_its_shm_segment_itself(no_leaks) -> None:
    """Checked before multiprocessing's resource tracker stops: the tracker would unlink a
    segment the lab forgot (its safety net for a parent killed with -9), hiding the bug."""
    link, ctx = transports.find("shm/ring"), links.Context(largest=4096)
    try:
        with links.conversation(link, ctx) as talk:
            assert link.leftovers(ctx.prefix) == [f"/dev/shm/{ctx.prefix}-shm"]
            talk.endpoint.request(wire.Messages(64).make(wire.PING, 0))
        assert link.leftovers(ctx.prefix) == []
    finally:
        ctx.remove()
        stop_multiprocessing_servers()


@pytest.mark.timeout(60)
def test_a_shm_peer_spins_no_core_while_idle(no_leaks) -> None:
    link, ctx = transports.find("shm/ring"), links.Context(largest=4096)
    try:
        with links.conversation(link, ctx) as talk:
            messages = wire.Messages(64)
            assert talk.endpoint.request(messages.make(wire.PING, 0)) == messages.make(wire.PING, 0)
            peer = psutil.Process(talk.peer_pid)
            before = sum(peer.cpu_times()[:2])
            time.sleep(1.0)  # nothing to say: the peer waits for the next message
            used = sum(peer.cpu_times()[:2]) - before
    finally:
        ctx.remove()
        stop_multiprocessing_servers()
    # A spinning peer would use ~1 s of CPU here; a sleeping one a few ms of slices.
    assert used < 0.1, f"the idle shm peer used {used:.3f} s of CPU in 1 s"


def _peers_of(pid: int) -> list[psutil.Process]:
    return [
        p
        for p in psutil.Process(pid).children(recursive=True)
        if "lab.experiments.ipc.peer" in " ".join(p.cmdline())
    ]


def _start_cli(*args: str, env: dict | None = None) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "lab", "run", "ipc", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT), **(env or {})},
    )


def _wait_for_peer(proc: subprocess.Popen, timeout: float = 30.0) -> psutil.Process:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        peers = _peers_of(proc.pid)
        if peers:
            time.sleep(0.3)  # let it get into the measured phase
            return peers[0]
        time.sleep(0.02)
    proc.kill()
    raise AssertionError(f"no peer appeared: {proc.communicate()}")


def _stored_run() -> lab.runs.Run:
    (run,) = lab.load_runs("ipc")
    return run


SLOW = ["--size", "64,4096", "--seconds", "3", "--samples", "1000000", "--floor", "no"]


@pytest.mark.timeout(120)
@pytest.mark.parametrize("transport", LEAVING_TRACES)
def test_ctrl_c_mid_run_cleans_up_and_keeps_the_records(transport) -> None:
    _require(transport)
    proc = _start_cli("--transport", transport, *SLOW)
    peer = _wait_for_peer(proc)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert err.strip().splitlines()[-1].startswith("daemonlab: ipc interrupted"), err
    assert not peer.is_running()
    run = _stored_run()
    assert run.status == "interrupted"
    assert _leftovers(run.env["prefix"], (transport,)) == []


@pytest.mark.timeout(120)
@pytest.mark.parametrize("transport", LEAVING_TRACES)
def test_a_peer_killed_with_9_mid_run_fails_the_run_in_one_line(transport) -> None:
    _require(transport)
    proc = _start_cli("--transport", transport, *SLOW)
    peer = _wait_for_peer(proc)
    peer.send_signal(signal.SIGKILL)
    started = time.monotonic()
    out, err = proc.communicate(timeout=60)
    waited = time.monotonic() - started
    lines = err.strip().splitlines()
    assert proc.returncode == 2, err
    assert len(lines) == 1 and "Traceback" not in err, err
    assert "peer" in lines[0], lines[0]
    assert waited < wire.TIMEOUT_S, f"noticed after {waited:.1f} s"  # not by the long timeout
    run = _stored_run()
    assert run.status == "failed"
    assert _leftovers(run.env["prefix"], (transport,)) == []


def _wait_for_a_record(timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        runs = lab.load_runs("ipc")
        if runs and runs[0].records:
            return
        time.sleep(0.1)
    raise AssertionError("the run stored no record in time")


@pytest.mark.timeout(120)
def test_a_broker_that_dies_mid_run_fails_the_run_in_one_line_and_keeps_records(
    throwaway_redis,
):
    url, broker = throwaway_redis
    proc = _start_cli(
        "--transport", "redis", "--size", "64,4096,65536", "--seconds", "1",
        "--samples", "1000000", "--floor", "no", env={"LAB_REDIS_URL": url},
    )  # fmt: skip
    _wait_for_peer(proc)
    _wait_for_a_record()  # a record to keep
    broker.kill()
    broker.wait()
    out, err = proc.communicate(timeout=60)
    lines = err.strip().splitlines()
    assert proc.returncode == 2, err
    assert len(lines) == 1 and "Traceback" not in err, err
    assert "Redis went away mid-run" in lines[0]
    run = _stored_run()
    assert run.status == "failed" and "Redis went away" in run.error
    assert run.records, "the records finished before the broker died are kept"


def test_a_broker_that_does_not_answer_is_skipped_in_one_line_and_the_rest_run(no_leaks):
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("LAB_REDIS_URL", f"redis://127.0.0.1:{free_port()}/0")
        run = ipc.run(ipc.Params(transport=("pipe", "redis"), size=(64,), **QUICK))
    assert run.status == "ok"
    skipped = [r for r in run.records if r.get("skipped") == "unavailable"]
    assert [r["pattern"] for r in skipped] == ["list", "pubsub"]
    assert "Redis does not answer on 127.0.0.1" in skipped[0]["why"]
    assert "docker compose up -d redis" in skipped[0]["why"]
    assert any(r["transport"] == "pipe" and "rtt_median_us" in r for r in run.records)


@pytest.mark.timeout(60)
def test_xmpp_uses_the_server_lab_xmpp_url_names_and_starts_none(tmp_path, no_leaks) -> None:
    _require("xmpp")
    from lab.experiments.ipc import prosody

    server = prosody.start(tmp_path / "theirs")  # stands in for docker compose's server
    try:
        url = f"xmpp://{server.user}:{server.password}@127.0.0.1:{server.port}/{server.domain}"
        with pytest.MonkeyPatch.context() as patch:
            patch.setenv("LAB_XMPP_URL", url)
            # As if prosody were not installed: starting one would now be refused.
            patch.setattr(prosody.shutil, "which", lambda _name: None)
            run = ipc.run(ipc.Params(transport=("xmpp",), size=(64,), **QUICK))
    finally:
        prosody.stop(server)
    assert run.status == "ok" and run.records[0]["rtt_median_us"] > 0


@pytest.mark.timeout(120)
def test_the_c_floor_is_timed_beside_python_and_without_a_compiler_says_so(tmp_path, no_leaks):
    run = ipc.run(
        ipc.Params(transport=("pipe", "tcp"), size=(64,), seconds=0.05, samples=200, cores="same")
    )
    floors = {r["transport"]: r for r in run.records if r["pattern"] == "C floor"}
    assert set(floors) == {"pipe", "tcp"}
    python = {r["transport"]: r for r in run.records if r["pattern"] != "C floor"}
    for name, record in python.items():
        # The floor was measured (not the copy of it the record carries, which restated
        # the code): C round trips timed, each faster than Python's, which does strictly
        # more work per round trip than the same exchange in C.
        assert floors[name]["samples"] >= 1 and floors[name]["rtt_median_us"] > 0, floors
        assert record["overhead_us"] > 0, record
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("CC", "no-such-compiler")
        patch.setenv("XDG_CACHE_HOME", str(tmp_path))  # no binary built before
        run = ipc.run(ipc.Params(transport=("pipe",), size=(64,), **{**QUICK, "floor": True}))
    (floor,) = [r for r in run.records if r["pattern"] == "C floor"]
    assert floor["skipped"] == "no floor" and floor["why"].startswith("no compiler")


@pytest.mark.timeout(60)
def test_cores_apart_pins_each_side_to_its_own_cpu_and_puts_the_parent_back(no_leaks) -> None:
    if len(os.sched_getaffinity(0)) < 2:
        pytest.skip("one usable CPU")
    before = os.sched_getaffinity(0)
    where = plan.placement("apart")
    ctx = links.Context(largest=4096, placement=where)
    try:
        with links.conversation(transports.find("pipe/pipe"), ctx) as talk:
            assert os.sched_getaffinity(0) == {where[0]}
            assert psutil.Process(talk.peer_pid).cpu_affinity() == [where[1]]
    finally:
        ctx.remove()
    assert os.sched_getaffinity(0) == before


def test_cores_apart_on_one_cpu_is_refused_in_one_line() -> None:
    taskset = shutil.which("taskset")
    if taskset is None:
        pytest.skip("no taskset (util-linux)")
    done = subprocess.run(
        [taskset, "-c", "0", sys.executable, "-m", "lab", "run", "ipc", "--cores", "apart"],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    assert_refused(done, "--cores apart needs two usable CPUs")


@pytest.mark.timeout(60)
@pytest.mark.parametrize(
    "options, says",
    [
        (["--transport", "carrier-pigeon"], "--transport: unknown value 'carrier-pigeon'"),
        (["--size", "0"], "--size must be at least 16, got 0"),
        (["--size", "-64"], "--size must be at least 16, got -64"),
        (["--size", "100000000"], "--size must be at most 67108864"),
        (["--transport", "xmpp", "--size", "1048576"], "--size 1048576 is over the limit"),
        (["--transport", "nats", "--size", "2000000"], "max_payload"),
        (["--seconds", "0"], "--seconds must be greater than 0"),
        (["--cores", "both"], "--cores: unknown value 'both'"),
    ],
)
def test_bad_input_is_refused_in_one_line(options, says) -> None:
    assert_refused(run_cli("run", "ipc", *options, "--no-store"), says)


@pytest.mark.timeout(120)
def test_cli_runs_stores_and_plots(tmp_path) -> None:
    done = run_cli(
        "run", "ipc", "--transport", "pipe,shm", "--size", "64,65536", "--seconds", "0.02",
        "--json",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    records = json.loads(done.stdout)["records"]
    assert {(r["transport"], r["pattern"]) for r in records} == {
        ("pipe", "C floor"), ("pipe", "pipe"), ("shm", "ring"),
    }  # fmt: skip
    png = tmp_path / "ipc.png"
    plotted = run_cli("plot", "ipc", "-o", str(png))
    assert plotted.returncode == 0, plotted.stderr
    assert png.stat().st_size > 20_000


def test_the_plot_refuses_runs_without_round_trips() -> None:
    from lab.errors import LabError
    from lab.experiments.ipc import plot
    from lab.runs import Run

    with pytest.raises(LabError, match="timed no round trip"):
        plot.draw([Run("ipc", {}, {}, [{"transport": "amqp", "skipped": "unavailable"}], run_id=1)])


@pytest.mark.parametrize(
    ("script", "error", "said"),
    [
        (
            "import sys; sys.stderr.write('no broker here\\n'); sys.exit(3)",
            LabError,  # the transport is unavailable here: its row says why
            "the peer did not start: no broker here",
        ),
        (
            "import os, signal; os.kill(os.getpid(), signal.SIGKILL)",
            wire.PeerGone,  # the run fails, as for a peer killed mid-way
            "the peer was killed as it started: killed by signal 9",
        ),
    ],
    ids=["exit-3", "kill-9"],
)
def test_a_peer_that_ends_before_it_is_ready_is_one_line_with_its_last_words(script, error, said):
    proc = subprocess.Popen(
        [sys.executable, "-c", script],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    with pytest.raises(LabError, match=f"^{said}$") as raised:
        links.Peer(proc).ready()
    assert raised.type is error
    assert proc.returncode is not None and proc.stderr.closed
