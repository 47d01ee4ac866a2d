"""The server's own word, and what the clients cost: read from outside, by another process.

A client-side clock can say the queries overlapped; the server can prove it.
This watcher polls information_schema.PROCESSLIST for queries carrying the
run's tag and keeps the peak count. It runs as its own process, not a thread
in the measuring one: a poller thread there would take the GIL from the very
clients being timed.

The first time it sees every client's sleep running at once (the plateau:
all clients made, all waiting, none working) it takes one snapshot of what
they cost, from /proc through psutil: the measuring process and its
children (PSS, which splits a page shared by forked children among them, so
the sum is the memory really used; RSS; threads; open descriptors), and the
server's process (RSS, threads) when it runs on this machine. Against a
snapshot taken at "begin" that gives the memory per client of a thread, a
process and a task; beside the clients' count, the server's threads say
whether it gave each connection a thread of its own.

It also reads the server's Aborted_clients before and after each measurement:
a connection that ends without COM_QUIT (a worker that just exits, aiomysql's
close()) raises it, so an unchanged count says every client said goodbye.
The counter is the whole server's: on a shared server another program's
aborted connections count too (a throwaway server has only the run's).

Protocol (lines on stdin/stdout): the parent sends its configuration as JSON,
the watcher answers "ready"; then for each measurement "begin N" (N: the
sleeps expected at once) ... "end", to which it answers one JSON object. A
server that goes away makes it answer "lost" and wait quietly for EOF.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import select
import subprocess
import sys
import time
from typing import TYPE_CHECKING, Any

from lab import children

if TYPE_CHECKING:
    from lab.db import Server

__all__ = ["Lost", "Watcher", "main"]

#: How long after "end" the watcher waits for the server to notice every
#: closed connection before it reads Aborted_clients (closing is asynchronous).
DRAIN_S = 3.0

#: The most children whose PSS the snapshot reads (each read walks the
#: process's memory map, ~0.3 ms here): the clients are alike, so the mean of
#: this many, times their number, is their sum.
PSS_SAMPLE = 256

MIB = 1024 * 1024


class Lost(RuntimeError):
    """The watcher's connection to the server broke: the server went away."""


class Watcher:
    """Parent side: start the watcher process, bracket measurements, stop it."""

    def __init__(self, server: Server, tag: str, seconds: float) -> None:
        self._proc = subprocess.Popen(
            children.main_argv(__name__),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            # Its own session: a terminal's Ctrl-C, sent to the whole foreground
            # group, must not kill the watcher in the middle of its report. It
            # still ends with its parent: EOF on stdin.
            start_new_session=True,
        )
        # Credentials go through a pipe, never argv: argv is world-readable in /proc.
        config = {
            "server": dataclasses.asdict(server),
            "tag": tag,
            "seconds": seconds,
            "client_pid": os.getpid(),
        }
        self._say(json.dumps(config))
        self._expect("ready")

    def begin(self, expected: int) -> None:
        self._say(f"begin {expected}")
        self._expect("begun")

    def idle(self) -> None:
        """Every client is connected and idle: the watcher counts the server's threads now."""
        self._say("idle")
        self._expect("counted")

    def end(self) -> dict[str, Any]:
        """{"server_peak", "aborted_clients", and the snapshot's figures}."""
        self._say("end")
        return json.loads(self._expect(None))

    def close(self) -> None:
        try:
            self._proc.stdin.close()  # EOF: the watcher closes its connection and exits
            self._proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self._proc.kill()
            self._proc.wait()
        except BrokenPipeError:  # it already exited
            self._proc.wait()
        finally:
            self._proc.stdout.close()

    def __enter__(self) -> Watcher:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _say(self, line: str) -> None:
        self._proc.stdin.write(line + "\n")
        self._proc.stdin.flush()

    def _expect(self, word: str | None, timeout: float = 30) -> str:
        if not select.select([self._proc.stdout], [], [], timeout)[0]:
            raise RuntimeError("the server watcher did not answer")
        line = self._proc.stdout.readline().strip()
        if line == "lost":
            raise Lost("the watcher lost the server")
        if not line or (word is not None and line != word):
            raise RuntimeError(f"the server watcher failed: {line or 'it exited'}")
        return line


# -- the watcher process ----------------------------------------------------------
def _status(cur: Any, name: str) -> int:
    cur.execute("SHOW GLOBAL STATUS LIKE %s", (name,))
    return int(cur.fetchone()[1])


def _server_process(cur: Any, server: Server) -> Any:
    """The server's process on this machine (psutil.Process), or None: one the lab
    started has its pid; a local one says where its pid file is."""
    import psutil

    from lab.mysqld import SERVER_NAMES

    pid = server.pid
    if pid is None and server.host in ("127.0.0.1", "localhost", "::1"):
        cur.execute("SELECT @@GLOBAL.pid_file")
        try:
            with open(cur.fetchone()[0]) as f:
                pid = int(f.read().split()[0])
        except (OSError, ValueError, IndexError, TypeError):
            return None
    try:
        proc = psutil.Process(pid) if pid else None
        return proc if proc is not None and proc.name() in SERVER_NAMES else None
    except psutil.Error:
        return None


def _clients(client_pid: int, others: set[int]) -> list[Any]:
    """The measuring process and its children, less the helpers it had before `begin`."""
    import psutil

    root = psutil.Process(client_pid)
    kids = [p for p in root.children(recursive=True) if p.pid not in others]
    return [root, *kids]


def _snapshot(procs: list[Any], server: Any) -> dict[str, Any]:
    """What the server and the processes hold now (PSS, RSS, threads, descriptors).

    The server first: it is one read, while a thousand children take a while,
    and by then the sleeps may be over and the server's threads gone."""
    import psutil

    shot: dict[str, Any] = {}
    if server is not None:
        with contextlib.suppress(psutil.Error), server.oneshot():
            shot["server_mib"] = server.memory_info().rss / MIB
            shot["server_threads"] = server.num_threads()
    rss = threads = fds = kids = 0
    root_pss, kid_pss = 0, []
    for i, proc in enumerate(procs):
        try:
            with proc.oneshot():
                rss += proc.memory_info().rss
                threads += proc.num_threads()
                fds += proc.num_fds()
                if i == 0:
                    root_pss = proc.memory_full_info().pss
                elif len(kid_pss) < PSS_SAMPLE:
                    kid_pss.append(proc.memory_full_info().pss)
            kids += i > 0
        except psutil.Error:  # a child that just exited
            continue
    pss = root_pss + (sum(kid_pss) / len(kid_pss) * kids if kid_pss else 0)
    return shot | {
        "client_mib": pss / MIB,
        "client_rss_mib": rss / MIB,
        "client_threads": threads,
        "client_fds": fds,
        "client_processes": 1 + kids,
    }


class _Measurement:
    """One begin..end: the peak count, the baselines, the snapshot at the plateau."""

    def __init__(self, cur: Any, expected: int, config: dict[str, Any], server: Any) -> None:
        import psutil

        self.expected, self.peak, self.plateau = expected, 0, None
        self.idle_threads: int | None = None
        self.aborted = _status(cur, "Aborted_clients")
        self.connected = _status(cur, "Threads_connected")
        root = psutil.Process(config["client_pid"])
        self.helpers = {p.pid for p in root.children(recursive=True)}  # this watcher, the keeper
        self.base = _snapshot([root], server)

    def idle(self, server: Any) -> None:
        """The server's threads while every client is connected and none queries: a
        pool-of-threads server holds few; one-thread-per-connection, one each."""
        import psutil

        with contextlib.suppress(psutil.Error, AttributeError):
            self.idle_threads = server.num_threads()

    def saw(self, count: int, config: dict[str, Any], server: Any) -> None:
        self.peak = max(self.peak, count)
        if self.plateau is None and count >= self.expected:
            self.plateau = _snapshot(_clients(config["client_pid"], self.helpers), server)

    def report(self, cur: Any) -> dict[str, Any]:
        deadline = time.monotonic() + DRAIN_S
        while _status(cur, "Threads_connected") > self.connected and time.monotonic() < deadline:
            time.sleep(0.01)
        out: dict[str, Any] = {
            "server_peak": self.peak,
            "aborted_clients": _status(cur, "Aborted_clients") - self.aborted,
        }
        if self.plateau is not None:
            out |= self.plateau
            out["base_client_mib"] = self.base["client_mib"]
        if self.idle_threads is not None:
            out["server_idle_threads"] = self.idle_threads
        return out


def _serve() -> None:
    import pymysql

    from lab.db import Server

    config = json.loads(sys.stdin.readline())
    server = Server(**config["server"])
    # Ten polls per sleep, between 2 ms and 100 ms apart: enough to land on the
    # plateau where every query runs, rarely enough not to disturb it. With a
    # thousand connections one poll holds the server's thread list for about
    # 0.7 ms (measured here); every 20 ms, that cost efficiency at 1,000 clients.
    period = min(0.1, max(0.002, config["seconds"] / 10))
    # Anchored at both ends ("SELECT " ... "*/"): this poll's own text holds the
    # tag too, but it ends in a quote, so it never counts itself.
    pattern = f"SELECT %/* daemonlab {config['tag']} */"
    conn = pymysql.connect(**server.pymysql_kwargs(connect_timeout=10))
    try:
        cur = conn.cursor()
        process = _server_process(cur, server)
        print("ready", flush=True)
        now: _Measurement | None = None
        while True:
            readable = select.select([sys.stdin], [], [], period)[0]
            if readable:
                command = sys.stdin.readline().strip()
                if command.startswith("begin"):
                    now = _Measurement(cur, int(command.split()[1]), config, process)
                    print("begun", flush=True)
                elif command == "idle" and now is not None:
                    now.idle(process)
                    print("counted", flush=True)
                elif command == "end" and now is not None:
                    print(json.dumps(now.report(cur)), flush=True)
                    now = None
                else:  # EOF: the parent is done
                    return
            if now is not None:
                cur.execute(
                    "SELECT COUNT(*) FROM information_schema.PROCESSLIST"
                    " WHERE COMMAND = 'Query' AND INFO LIKE %s",
                    (pattern,),
                )
                now.saw(cur.fetchone()[0], config, process)
    finally:
        conn.close()


def _lost() -> None:
    """The server went away: say "lost" to whatever the parent asks, until EOF."""
    print("lost", flush=True)
    for line in sys.stdin:
        if line.strip():
            print("lost", flush=True)


def main(argv: list[str]) -> int:
    """The watcher process (children.main_argv): serve the parent until EOF."""
    import psutil
    import pymysql

    try:
        _serve()
    except (pymysql.err.OperationalError, pymysql.err.InterfaceError, OSError):
        # The parent's own clients see it too and say it, once: no traceback here.
        _lost()
        return 1
    except psutil.NoSuchProcess:
        # The measuring process is gone (kill -9, or a signal that ended it at
        # once) while a measurement was open: nobody is left to report to, and
        # its clients' fate is its own to say. Leave quietly, as at EOF.
        return 1
    return 0
