"""A link: one way two processes talk (a transport and a pattern), and a conversation over it.

Each transport module defines Link subclasses; a Link says what it needs
and does four things, each in the process where it belongs:

    prepare(ctx)        parent, before the peer: make what both sides use (pipes,
                        a shm segment, a queue name) and return the peer's spec (JSON;
                        keys starting with "_" are the parent's own objects, not sent)
    serve(spec, ready)  peer: open its end, call ready(info), answer until QUIT
    connect(spec, info) parent, once the peer is ready: open its own end (the
                        set-up that is timed: connect, declare, log in)
    cleanup(spec)       parent, always: remove what prepare made (files, segments,
                        queues, keys), also after an error, Ctrl-C or a dead peer

`conversation(link, ctx)` runs them in that order around the caller's block
and stops the peer whatever happens. The peer is a fresh interpreter
(`python -m lab.experiments.ipc.peer SPEC`), never a fork of this process:
this may be a Jupyter kernel, which is multi-threaded, and a fork there
can inherit a lock held by another thread for ever.
"""

from __future__ import annotations

import importlib
import json
import os
import secrets
import select
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lab import children
from lab.errors import LabError, last_line
from lab.experiments.ipc import wire
from lab.experiments.ipc.wire import Endpoint, PeerGone

__all__ = ["Context", "Conversation", "Link", "NamedLink", "Peer", "conversation", "new_prefix"]

#: A fresh interpreter importing a broker client starts in 0.1-0.5 s here; 30 s
#: bounds a peer that hangs on start (a broker accepting but never answering).
START_TIMEOUT_S = 30.0
#: After QUIT a peer closes its end and exits in milliseconds; then TERM, then KILL.
QUIT_GRACE_S = 2.0


def new_prefix() -> str:
    """A name prefix for one run: its queues, keys, sockets and segments carry it."""
    return f"lab-ipc-{secrets.token_hex(4)}"


@dataclass
class Context:
    """What one run gives every link: its name prefix, and a private directory."""

    prefix: str = field(default_factory=new_prefix)
    largest: int = 1 << 20  # the largest message of the run, bytes (a ring is sized for it)
    placement: tuple[int, int] | None = None  # (parent CPU, peer CPU), or the scheduler's choice
    directory: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="lab-ipc-")))

    def remove(self) -> None:
        shutil.rmtree(self.directory, ignore_errors=True)


class Link:
    """One way of talking. Subclasses set the names and implement the four steps."""

    transport = ""  # the --transport name
    pattern = ""  # how the two sides use it: stream, dgram, req-rep, rpc, list...
    measures: tuple[str, ...] = ("rtt", "stream")
    service: str | None = None  # a lab.services name this link needs running
    limit: int | None = None  # the largest message it carries, bytes (None: no limit here)
    limit_why = ""
    #: client libraries imported before the set-up is timed: an import is not a connect
    imports: tuple[str, ...] = ()

    @property
    def name(self) -> str:
        return f"{self.transport}/{self.pattern}"

    def too_big(self, size: int) -> str | None:
        """Why a message of `size` bytes cannot go this way, or None."""
        limit = self.max_size()
        if limit is not None and size > limit:
            return f"> {limit:,} B ({self.limit_why})"
        return None

    def max_size(self) -> int | None:
        return self.limit

    def prepare(self, ctx: Context) -> dict[str, Any]:
        return {"prefix": ctx.prefix, "directory": str(ctx.directory)}

    def pass_fds(self, spec: dict[str, Any]) -> tuple[int, ...]:
        """Descriptors the peer inherits (pipes, a socketpair's end)."""
        return ()

    def start_peer(self, spec: dict[str, Any]) -> Peer:
        return Peer.start(self, spec)

    def serve(self, spec: dict[str, Any], ready: Callable[[dict[str, Any]], None]) -> None:
        endpoint = self.open_peer_end(spec)
        try:
            ready({})
            wire.serve(endpoint, wire.TIMEOUT_S * 3)
        finally:
            endpoint.close()

    def open_peer_end(self, spec: dict[str, Any]) -> Endpoint:
        raise NotImplementedError

    def connect(self, spec: dict[str, Any], info: dict[str, Any]) -> Endpoint:
        raise NotImplementedError

    def cleanup(self, spec: dict[str, Any]) -> None:
        """Remove what prepare made; the default made nothing outside ctx.directory."""

    def leftovers(self, prefix: str) -> list[str]:
        """What of run `prefix` is still there (files, segments, queues, keys): for tests."""
        return []


class NamedLink(Link):
    """A link through a broker by two names, one for each direction ("to-peer", "to-parent"):
    queues, keys, topics or subjects, made from the run's prefix and `separator`."""

    separator = "."

    def prepare(self, ctx: Context) -> dict[str, Any]:
        base = self.separator.join((ctx.prefix, self.transport, self.pattern))
        return {
            **super().prepare(ctx),
            "to_peer": f"{base}{self.separator}to-peer",
            "to_parent": f"{base}{self.separator}to-parent",
        }

    def open(self, name: str, own: str, target: str) -> Endpoint:
        """An endpoint called `name` (the broker sees it) reading `own`, writing to `target`."""
        raise NotImplementedError

    def open_peer_end(self, spec: dict[str, Any]) -> Endpoint:
        return self.open(f"{spec['prefix']}-peer", spec["to_peer"], spec["to_parent"])

    def connect(self, spec: dict[str, Any], info: dict[str, Any]) -> Endpoint:
        return self.open(f"{spec['prefix']}-parent", spec["to_parent"], spec["to_peer"])


class Peer:
    """The peer process: a fresh interpreter running peer.py, with a line of JSON to say ready."""

    def __init__(self, proc: subprocess.Popen) -> None:
        self.proc = proc
        self.pid = proc.pid

    @classmethod
    def start(cls, link: Link, spec: dict[str, Any]) -> Peer:
        fds = link.pass_fds(spec)
        told = {key: value for key, value in spec.items() if not key.startswith("_")}
        proc = subprocess.Popen(
            [sys.executable, "-m", "lab.experiments.ipc.peer", link.name, json.dumps(told)],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            pass_fds=fds,
            env={**os.environ, "PYTHONPATH": _importable()},
        )
        return cls(proc)

    def alive(self) -> bool:
        return self.proc.poll() is None

    def ready(self, timeout: float = START_TIMEOUT_S) -> dict[str, Any]:
        """The peer's first line: its info, or LabError with what it said instead."""
        out = self.proc.stdout
        assert out is not None
        readable, _, _ = select.select([out], [], [], timeout)
        line = out.readline() if readable else b""
        if not line:
            said = self.last_words(timeout=1.0)
            if self.proc.returncode < 0:  # a signal, not a missing library or broker: a failure
                raise PeerGone(f"the peer was killed as it started: {said}")
            raise LabError(f"the peer did not start: {said}")
        said = json.loads(line)
        if "error" in said:
            raise LabError(said["error"])
        return said

    def last_words(self, timeout: float = QUIT_GRACE_S) -> str:
        """What the peer said on stderr before it ended (its last line), or how it ended."""
        # Read before stop(): it closes the pipes (a peer killed while it started
        # once turned this line into a traceback: "read of closed file").
        try:
            _, err = self.proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()  # it had its grace; what it said so far is kept
            _, err = self.proc.communicate()
        code = self.stop()
        said = err.decode(errors="replace") if err else ""
        return last_line(said, f"exit {code}" if code >= 0 else f"killed by signal {-code}")

    def stop(self, grace: float = QUIT_GRACE_S) -> int:
        """Wait `grace` s for it to end by itself, then TERM, KILL; reaped either way."""
        try:
            self.proc.wait(grace)
        except subprocess.TimeoutExpired:
            pass
        return children.stop_popen(self.proc)


def _importable() -> str:
    """PYTHONPATH for the peer: this lab's checkout first, so it runs this code."""
    here = str(Path(__file__).resolve().parents[3])
    rest = os.environ.get("PYTHONPATH")
    return here if not rest else here + os.pathsep + rest


@dataclass
class Conversation:
    endpoint: Endpoint
    setup_ms: float
    peer_start_ms: float
    peer_pid: int


@contextmanager
def conversation(link: Link, ctx: Context) -> Iterator[Conversation]:
    """Peer started, both ends open, set-up timed; everything undone after, whatever happens."""
    for module in link.imports:
        importlib.import_module(module)
    spec = link.prepare(ctx)
    unpinned = os.sched_getaffinity(0)
    try:
        if ctx.placement:  # this thread only (Linux affinity is per thread), put back after
            os.sched_setaffinity(0, {ctx.placement[0]})
        started = time.perf_counter_ns()
        peer = link.start_peer(spec)
        try:
            if ctx.placement:
                os.sched_setaffinity(peer.pid, {ctx.placement[1]})
            info = peer.ready()
            peer_start_ms = (time.perf_counter_ns() - started) / 1e6
            began = time.perf_counter_ns()
            endpoint = link.connect(spec, info)
            setup_ms = (time.perf_counter_ns() - began) / 1e6
            endpoint.other_alive = peer.alive
            try:
                yield Conversation(endpoint, setup_ms, peer_start_ms, peer.pid)
                _say_goodbye(endpoint)
            finally:
                endpoint.close()
        finally:
            peer.stop()
    finally:
        os.sched_setaffinity(0, unpinned)
        link.cleanup(spec)


def _say_goodbye(endpoint: Endpoint) -> None:
    """QUIT, so the peer ends by itself; one that is already gone needs no goodbye."""
    try:
        endpoint.send(wire.control(wire.QUIT))
    except (OSError, PeerGone):
        pass
