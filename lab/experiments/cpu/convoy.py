"""The convoy effect (bpo-7946): an I/O thread waits for the GIL behind a CPU-bound one.

A thread answers a socket echo. Alone, a ping comes back in tens of
microseconds. With a second thread spinning on pure-Python work, every
arriving ping finds the spinner holding the GIL: the echo thread's recv()
returns in the kernel at once, but to run the next bytecode it must ask for
the GIL, and the spinner gives it up only when the switch interval
(sys.getswitchinterval(), 5 ms by default) runs out. So each echo waits about
one interval. sys.setswitchinterval(1e-4) shortens the wait, paid for by more
switching in the spinner. A free-threaded build has no GIL to wait for, and
nor has a spinner in a subinterpreter of its own (PEP 684): the fourth case
runs the same spinner there, from its own thread, with its own GIL, beside
the echo in the main interpreter.

The client that sends the pings is a forked process, not a third thread:
its own clock must not wait for this process's GIL, or the figure would
count the wait twice. It is forked before any thread exists here, and told
how many pings to send per case over a pipe.

Standard library only, Python 3.8+ (run under other interpreters by --python).
"""

from __future__ import annotations

import os
import socket
import statistics
import struct
import sys
import threading
import time
from collections.abc import Iterator

from lab import subinterpreters
from lab.experiments.cpu.scaling import read_exactly

__all__ = ["measure_convoy"]

#: Exit codes of the forked client.
EXIT_OK = 0
EXIT_CLIENT_FAILED = 70  # EX_SOFTWARE: its traceback is on stderr

#: Longest any one case may take before the part is declared broken (200
#: pings at 5 ms are one second; a loaded machine gets far more slack).
CASE_TIMEOUT_S = 120.0

#: The client's pause before each ping. Without it the next ping is already
#: waiting when the echo thread comes back to recv(), which then returns at
#: once without the thread ever losing the GIL: back-to-back pings starve the
#: spinner instead of showing the convoy. Real requests arrive at an idle server.
PING_GAP_S = 0.001

_COUNT = struct.Struct("<I")  # parent -> client: pings to send in this case
_RTT = struct.Struct("<q")  # client -> parent: one round trip, in ns


#: The spinner as a subinterpreter runs it: the same loop, told to stop by a
#: byte on a pipe (an Event cannot cross), its count written back as text.
#: The pipe is looked at every million loops (tens of ms): select() releases the
#: GIL, and a spinner that let go every millisecond would hide the convoy
#: wherever the GIL is shared (the legacy config the tests use as the control).
#: In a function, as _spin is: module-level names are slower than locals.
INTERPRETER_SPINNER = """\
import os, select
def spin():
    n = 0
    while not select.select([stop_fd], [], [], 0)[0]:
        for _ in range(1000000):
            n += 1
    return n
os.write(count_fd, str(spin()).encode())
"""


def measure_convoy(
    pings: int, fast_switch: float, beside_interpreter: bool = False
) -> Iterator[dict]:
    """Echo latency alone, beside a spinner at the default switch interval, then `fast_switch`;
    with `beside_interpreter`, also beside a spinner in a subinterpreter of its own."""
    default = sys.getswitchinterval()
    cases = [("alone", default, False), ("spinner", default, True), ("spinner", fast_switch, True)]
    if beside_interpreter:
        cases.append(("interpreter", default, True))
    server, client = socket.socketpair()
    ctl_r, ctl_w = os.pipe()
    res_r, res_w = os.pipe()
    # Fork first, while this process has one thread (fork copies only the
    # calling thread; forking beside live threads risks their held locks).
    pid = os.fork()
    if pid == 0:
        _client_main(client, [server.fileno(), ctl_w, res_r], ctl_r, res_w)
    for fd in (ctl_r, res_w):
        os.close(fd)
    client.close()
    echo = threading.Thread(target=_echo, args=(server,), name="echo")
    echo.start()
    try:
        for case, interval, spin in cases:
            if case == "interpreter" and subinterpreters.unavailable():
                skipped = {"part": "convoy", "case": case, "pings": 0}
                yield {
                    **skipped,
                    "switch_interval_ms": round(interval * 1e3, 4),
                    "skipped": subinterpreters.unavailable(),
                }
                continue
            yield _measure_case(case, interval, spin, pings, ctl_w, res_r)
    finally:
        # Closing the control pipe ends the client; its exit closes its end of
        # the socket, so the echo thread's recv() returns b"" and it ends too.
        os.close(ctl_w)
        _, status = os.waitpid(pid, 0)
        echo.join(CASE_TIMEOUT_S)
        server.close()
        os.close(res_r)
        sys.setswitchinterval(default)
    if status != 0:
        raise RuntimeError(f"the convoy client ended with status {status}")


def _measure_case(case: str, interval: float, spin: bool, pings: int, ctl_w: int, res_r: int):
    stop = threading.Event()
    spins = [0]
    spin_in = _spin_in_interpreter if case == "interpreter" else _spin
    spinner = threading.Thread(target=spin_in, args=(stop, spins), name="spinner")
    previous = sys.getswitchinterval()
    sys.setswitchinterval(interval)
    try:
        if spin:
            spinner.start()
        started = time.perf_counter_ns()
        os.write(ctl_w, _COUNT.pack(pings))
        got = read_exactly(res_r, pings * _RTT.size, CASE_TIMEOUT_S, "convoy client")
        rtts = [value for (value,) in _RTT.iter_unpack(got)]
        elapsed_s = (time.perf_counter_ns() - started) / 1e9
    finally:
        stop.set()
        if spin:
            spinner.join(CASE_TIMEOUT_S)
        sys.setswitchinterval(previous)  # put back what we found, error or not
    rtts_ms = sorted(ns / 1e6 for ns in rtts)
    return {
        "part": "convoy",
        "case": case,
        "switch_interval_ms": round(interval * 1e3, 4),
        "pings": pings,
        "median_ms": round(statistics.median(rtts_ms), 4),
        "p99_ms": round(rtts_ms[min(len(rtts_ms) - 1, int(0.99 * len(rtts_ms)))], 4),
        "max_ms": round(rtts_ms[-1], 4),
        # What the spinner got done meanwhile: the price of switching more often.
        "spinner_mloops_s": round(spins[0] / elapsed_s / 1e6, 2) if spin else None,
    }


def _spin(stop: threading.Event, spins: list) -> None:
    """Pure-Python work that never blocks: it holds the GIL until told to switch."""
    n = 0
    while not stop.is_set():
        for _ in range(1000):
            n += 1
    spins[0] = n


def _spin_in_interpreter(stop: threading.Event, spins: list) -> None:
    """The same spinner in a subinterpreter: this thread holds that one's GIL, not ours."""
    stop_r, stop_w = os.pipe()
    count_r, count_w = os.pipe()
    try:
        with subinterpreters.Subinterpreter() as interp:
            interp.bind(stop_fd=stop_r, count_fd=count_w)
            # A helper thread turns our Event into the byte the spinner looks for.
            relay = threading.Thread(target=lambda: (stop.wait(), os.write(stop_w, b"s")))
            relay.start()
            try:
                interp.exec(INTERPRETER_SPINNER)
            finally:
                stop.set()
                relay.join(CASE_TIMEOUT_S)
            spins[0] = int(os.read(count_r, 32))
    finally:
        for fd in (stop_r, stop_w, count_r, count_w):
            os.close(fd)


def _echo(server: socket.socket) -> None:
    """The I/O-bound thread: answer every byte until the client hangs up."""
    while True:
        data = server.recv(64)
        if not data:
            return
        server.sendall(data)


def _client_main(sock: socket.socket, parent_ends: list[int], ctl_r: int, res_w: int) -> None:
    """The forked client: per count read on `ctl_r`, that many pings, timed; always os._exit."""
    code = EXIT_CLIENT_FAILED
    try:
        for fd in parent_ends:
            os.close(fd)
        while True:
            header = os.read(ctl_r, _COUNT.size)
            if not header:
                break  # the parent closed the control pipe: done
            (count,) = _COUNT.unpack(header)
            rtts = bytearray()
            for _ in range(count):
                time.sleep(PING_GAP_S)
                sent = time.perf_counter_ns()
                sock.sendall(b"x")
                if not sock.recv(1):
                    raise RuntimeError("the echo thread hung up")
                rtts += _RTT.pack(time.perf_counter_ns() - sent)
            view = memoryview(bytes(rtts))
            while view:
                view = view[os.write(res_w, view) :]
        code = EXIT_OK
    finally:
        os._exit(code)
