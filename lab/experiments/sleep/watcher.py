"""The server's own word: how many of our SLEEPs it ran at once, and who hung up rudely.

A client-side clock can say the queries overlapped; the server can prove it.
This watcher polls information_schema.PROCESSLIST for queries carrying the
run's tag and keeps the peak count. It runs as its own process, not a thread
in the measuring one: a poller thread there would take the GIL from the very
clients being timed.

It also reads the server's Aborted_clients before and after each measurement:
a connection that ends without COM_QUIT (a worker that just exits, aiomysql's
close()) raises it, so an unchanged count says every client said goodbye.

Protocol (lines on stdin/stdout): the parent sends the server and tag as JSON,
the watcher answers "ready"; then for each measurement "begin" ... "end", to
which it answers "<peak> <aborted clients during the measurement>".
"""

from __future__ import annotations

import dataclasses
import json
import select
import subprocess
import sys
import time
from typing import TYPE_CHECKING, Any

from lab import children

if TYPE_CHECKING:
    from lab.db import Server

__all__ = ["Watcher", "main"]

#: How long after "end" the watcher waits for the server to notice every
#: closed connection before it reads Aborted_clients (closing is asynchronous).
DRAIN_S = 3.0


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
        config = {"server": dataclasses.asdict(server), "tag": tag, "seconds": seconds}
        self._say(json.dumps(config))
        self._expect("ready")

    def begin(self) -> None:
        self._say("begin")
        self._expect("begun")

    def end(self) -> tuple[int, int]:
        self._say("end")
        peak, aborted = self._expect(None).split()
        return int(peak), int(aborted)

    def close(self) -> None:
        try:
            self._proc.stdin.close()  # EOF: the watcher closes its connection and exits
            self._proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self._proc.kill()
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
        if not line or (word is not None and line != word):
            raise RuntimeError(f"the server watcher failed: {line or 'it exited'}")
        return line


# -- the watcher process ----------------------------------------------------------
def _aborted(cur: Any) -> int:
    cur.execute("SHOW GLOBAL STATUS LIKE 'Aborted_clients'")
    return int(cur.fetchone()[1])


def _connected(cur: Any) -> int:
    cur.execute("SHOW GLOBAL STATUS LIKE 'Threads_connected'")
    return int(cur.fetchone()[1])


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
    # Anchored at "SELECT SLEEP(" so this poll, whose own text holds the tag, never counts itself.
    pattern = f"SELECT SLEEP(%/* daemonlab {config['tag']} */"
    conn = pymysql.connect(**server.pymysql_kwargs(connect_timeout=10))
    try:
        cur = conn.cursor()
        print("ready", flush=True)
        peak = baseline_aborted = baseline_connected = 0
        while True:
            readable = select.select([sys.stdin], [], [], period)[0]
            if readable:
                command = sys.stdin.readline().strip()
                if command == "begin":
                    peak, baseline_aborted = 0, _aborted(cur)
                    baseline_connected = _connected(cur)
                    print("begun", flush=True)
                elif command == "end":
                    deadline = time.monotonic() + DRAIN_S
                    while _connected(cur) > baseline_connected and time.monotonic() < deadline:
                        time.sleep(0.01)
                    print(peak, _aborted(cur) - baseline_aborted, flush=True)
                else:  # EOF: the parent is done
                    return
            cur.execute(
                "SELECT COUNT(*) FROM information_schema.PROCESSLIST"
                " WHERE COMMAND = 'Query' AND INFO LIKE %s",
                (pattern,),
            )
            peak = max(peak, cur.fetchone()[0])
    finally:
        conn.close()


def main(argv: list[str]) -> int:
    """The watcher process (children.main_argv): serve the parent until EOF."""
    _serve()
    return 0
