"""ipc: processes talking. Every way this machine offers, each timed against the kernel's floor.

The talk's slide names five: Socket, ØMQ, AMQP, DRb (remote objects) and
Jabber (XMPP). This lesson runs a parent and a peer process that exchange the
same messages over each of them and over what lies under them (a pipe, a
socketpair, a Unix socket, loopback TCP, multiprocessing's Pipe and Queue,
shared memory), and what machines use today where the talk used Jabber
(MQTT, NATS). For each: the round trip (median and p99) at 64 B, 4 KiB,
64 KiB and 1 MiB, the one-way stream (messages and MB a second), and the
set-up (connect, declare, log in). The pipe, Unix socket and TCP rows have a
floor: the same ping-pong and stream written in C (floor.c), so the table
says how much of a round trip is the kernel and how much is Python and the
library on top. Every message carries a checksum, checked at the peer, and
every echo is compared byte for byte: a fast transport that damages data is
a failed run, not a figure.

Where the scheduler puts the two processes decides the small-message figures
more than any library does: on one CPU a write runs the reader at once (a
C pipe round trip in 2 µs), on two the other CPU may first wake from idle
(40-60 µs, in C and Python alike), and shared memory wins only when each side
has a CPU to spin on for a moment. `--cores same|apart` pins both (and the C
floor) to one CPU or one each; the default leaves it to the scheduler, as a
program usually does, and then gives no `x C` (the floor runs on one CPU,
Python wherever it lands: two placements, no ratio). floor.c does the same
checks as the Python side (crc32 at the peer, sequence numbers, the echo
compared), in one run as Python has one.

What a learner would try first, and why it does not do here:
- Time `conn.send(x); conn.recv()` once with time.time(): one sample of a few
  microseconds is below time.time()'s resolution and is mostly the first
  call's page faults. Here: perf_counter_ns around each of thousands of round
  trips, after a warm-up, median and p99.
- Stream by writing as fast as possible and dividing by the time the writes
  took: a broker accepts messages into a queue far faster than the consumer
  takes them (Redis would hold gigabytes). Here the stream has a window (the
  peer acknowledges every half window) and the clock stops when the peer has
  counted everything.
- Read a pipe or stream socket with one recv() per message: it may return half
  a message or two. Messages are length-prefixed (kernel.py).
- Spin on a shared-memory flag: fastest, and a core burnt while idle, with no
  memory barrier in Python. shm.py spins briefly, then sleeps on a semaphore.
- fork() the peer: this process may be a Jupyter kernel with threads; the peer
  is a fresh interpreter (subprocess, or multiprocessing's spawn).

Sources: pipe(7), unix(7), tcp(7) (TCP_NODELAY), shm_overview(7),
sem_overview(7), futex(7) (https://man7.org/linux/man-pages/); RFC 896
(Nagle's algorithm, https://www.rfc-editor.org/rfc/rfc896); the ØMQ guide
(https://zguide.zeromq.org/); RabbitMQ's RPC tutorial
(https://www.rabbitmq.com/tutorials/tutorial-six-python); Redis BRPOP and
Pub/Sub (https://redis.io/docs/latest/develop/interact/pubsub/); Pyro5
(https://pyro5.readthedocs.io/); XMPP, RFC 6120 and 6121
(https://www.rfc-editor.org/rfc/rfc6120); MQTT 3.1.1
(https://docs.oasis-open.org/mqtt/mqtt/v3.1.1/mqtt-v3.1.1.html); NATS
(https://docs.nats.io/); shared memory and the resource tracker,
https://github.com/python/cpython/issues/82300. Published C figures from
other machines: https://github.com/goldsborough/ipc-bench (100 B: pipes
162,441 msg/s, Unix sockets 130,372, TCP 70,221, ØMQ over TCP 24,901) and
https://github.com/rigtorp/ipc-bench (ping-pong latency).

Reading map:
  slide.py        the slide: ping and pong over two pipes; what goes wrong with it
  wire.py         what travels: the message, its checksum, the peer's answers
  measure.py      the parent's side: round trips, the stream, their figures
  links.py        a link (transport and pattern) and a conversation over it
  peer.py         the peer process every link starts
  kernel.py       pipe, socketpair, Unix stream and datagram, TCP
  floor.c         the same in C; floor.py builds, caches and runs it
  mpchannels.py   multiprocessing's Pipe and Queue (pickling included)
  shm.py          shared memory: rings and semaphores
  zeromq.py       ØMQ REQ/REP and PUSH/PULL, ipc:// and tcp://
  rabbitmq.py     AMQP: an RPC with reply_to and correlation_id, a work queue
  redis_queue.py  Redis: LPUSH/BRPOP, and pub/sub;  brokers.py: broker errors
  remote_objects.py  DRb's heirs: Pyro5 and multiprocessing.managers
  jabber.py       XMPP through prosody.py, a throwaway server;  aio.py
  mosquitto.py    MQTT;  nats_subjects.py: NATS
  transports.py   every --transport, in the slide's order
  plan.py         the run: what is refused first, every link in turn beside its C floor
  plot.py         the figures (round trip per transport with the floor; MB/s)
"""

from __future__ import annotations

from dataclasses import dataclass

from lab.errors import LabError
from lab.experiments.ipc import plan
from lab.experiments.ipc.transports import TRANSPORTS
from lab.params import Params as _Params
from lab.params import option
from lab.report import BYTES, Column
from lab.runs import Run, collect

__all__ = ["COLUMNS", "FULL", "NAME", "SUMMARY", "TOUR", "Params", "run"]

NAME = "ipc"
SUMMARY = "processes talking: pipes to XMPP, round trip and throughput, against a C floor"

SIZES = (64, 4096, 65536, 1 << 20)
CORES = ("any", "same", "apart")
#: The lab's ceiling on a message: far above what any lesson here needs, and it keeps
#: a typo (--size 10000000000) from asking a broker for gigabytes.
MAX_SIZE = 64 << 20


@dataclass(frozen=True)
class Params(_Params):
    transport: tuple[str, ...] = option(
        TRANSPORTS, "ways to talk (all by default; a broker that does not answer is skipped)",
        choices=TRANSPORTS,
    )  # fmt: skip
    size: tuple[int, ...] = option(SIZES, "message sizes in bytes (16: the header)", minimum=16)
    seconds: float = option(0.05, "seconds of round trips per size, and as long a stream", above=0)
    samples: int = option(2000, "most round trips timed per size (after 20 warm-up)", minimum=1)
    floor: bool = option(True, "time the C floor (floor.c) for pipe, unix and tcp too")
    cores: str = option(
        "any",
        "where the two processes run: any (the scheduler's choice), same (one CPU for "
        "both), apart (one CPU each); the C floor is placed alike",
        choices=CORES,
    )

    def __post_init__(self) -> None:
        super().__post_init__()
        for size in self.size:
            if size > MAX_SIZE:
                raise LabError(f"--size must be at most {MAX_SIZE} (64 MiB), got {size}")


FULL = {"seconds": 1.0, "samples": 100_000, "size": (64, 512, 4096, 16384, 65536, 262144, 1 << 20)}

COLUMNS = [
    Column("transport", "transport"),
    Column("pattern", "pattern"),
    Column("size", "size", BYTES),
    Column("rtt_median_us", "rtt µs", ".1f"),
    Column("rtt_p99_us", "p99 µs", ".1f"),
    Column("mb_per_s", "MB/s", ".1f"),
    Column("floor_ratio", "x C", ".1f"),
    Column("setup_ms", "setup ms", ".2f", wide=True),
    Column("msgs_per_s", "msg/s", ",.0f", wide=True),
    Column("floor_rtt_median_us", "C rtt µs", ".1f", wide=True),
    Column("overhead_us", "py +µs", ".1f", wide=True),
    Column("samples", "samples", ",d", wide=True),
    Column("peer_start_ms", "peer start ms", ".0f", wide=True),
    Column("skipped", "skipped"),
    Column("why", "why skipped", wide=True),
]

TOUR = [
    (
        "**Processes talking: the kernel's floor.** A parent and a peer process ping-pong "
        "messages over a pipe, a Unix socket, loopback TCP and shared memory, and stream "
        "them one way. The `C floor` rows are the same exchange written in C (floor.c, "
        "compiled on first use): `x C` is how many times longer Python's round trip is. "
        "Small messages pay Python's own work per message; at 1 MiB both mostly copy bytes.",
        {"transport": ["pipe", "unix", "tcp", "shm"], "size": [64, 1 << 20]},
    ),
    (
        "**ØMQ, AMQP, Redis.** The slide's messaging layers. ØMQ is a library (sockets that "
        "know a pattern: REQ/REP, PUSH/PULL), so it costs little over the socket under it. "
        "RabbitMQ and Redis are servers in the middle: every message crosses two sockets and "
        "a process that routes or stores it, which is what a queue that outlives its "
        "consumers costs.",
        {"transport": ["zmq", "amqp", "redis"], "size": [64, 65536]},
    ),
    (
        "**DRb and Jabber, and what replaced Jabber.** A remote object turns a method call "
        "into a round trip (Pyro5, multiprocessing.managers); XMPP carries each message as "
        "XML through a server, base64 for bytes, with a stanza limit. Machines today talk "
        "MQTT or NATS instead: much the same idea, binary and leaner.",
        {"transport": ["remote-objects", "xmpp", "mqtt", "nats"], "size": [64]},
    ),
]


def run(params: Params = Params(), progress=None, sink=None) -> Run:
    plan.refuse_sizes_nothing_carries(params)
    plan.placement(params.cores)  # refused now, in one line, if this machine cannot
    return collect(NAME, params, plan.measure, progress=progress, sink=sink)
