"""Fact 12: a MySQL connection must not cross fork; connecting after fork works.

A connection is a socket plus the client's idea of where the conversation
is. fork copies both: two processes now write queries into one socket and
read answers from it, and whichever reads first takes an answer meant for
the other (or half of it). Against the real server, both sides send
`SELECT 'tag-i'` in a loop and check every answer is their own.

Bounded everywhere: read and write timeouts on the socket, and each side
stops at its first wrong answer or error. The child never closes the shared
connection: close() sends COM_QUIT, which would end the parent's session
too (the other classic way a forked child breaks its parent's database).

pymysql is the one import outside the standard library in the checklist:
an interpreter without it gets "skipped: needs pymysql".
"""

from __future__ import annotations

import json
import os
import time
from typing import Any

from lab.experiments.fork import probes
from lab.experiments.fork.probes import Outcome

__all__ = ["connection_across_fork"]

#: How long each side keeps querying; corruption shows in the first few round trips.
WINDOW_S = 0.4
#: A stolen answer means the other side waits for one that never comes: bounded.
IO_TIMEOUT_S = 1


def _connect(pymysql, server: dict[str, Any]):
    kwargs = dict(server)
    if kwargs.pop("tls", False):
        import ssl

        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        kwargs["ssl"] = context
    return pymysql.connect(
        **kwargs, read_timeout=IO_TIMEOUT_S, write_timeout=IO_TIMEOUT_S, autocommit=True
    )


def _ping_pong(conn, tag: str) -> dict[str, Any]:
    """Query our own tag until the window closes; stop at the first wrong answer or error."""
    result: dict[str, Any] = {"ok": 0, "wrong": None, "error": None}
    deadline = time.monotonic() + WINDOW_S
    i = 0
    while time.monotonic() < deadline:
        want = f"{tag}-{i}"
        try:
            with conn.cursor() as cursor:
                cursor.execute("SELECT %s", (want,))
                row = cursor.fetchone()
        except Exception as exc:  # any failure is the finding: protocol, timeout, lost link
            result["error"] = f"{type(exc).__name__}: {exc}"[:120]
            break
        got = row[0] if row else None
        if got != want:
            result["wrong"] = f"asked {want!r}, got {got!r}"
            break
        result["ok"] += 1
        i += 1
    return result


def _both_sides(pymysql, server: dict[str, Any], shared) -> tuple[dict | None, dict]:
    """The child and the parent each ping-pong; on `shared`, or on a connection of their own."""

    def child(w: int) -> None:
        if shared is not None:
            result = _ping_pong(shared, "child")  # and never shared.close(): see above
        else:
            result = _on_own_connection(pymysql, server, "child")
        os.write(w, json.dumps({"pid": os.getpid(), **result}).encode())

    with probes.forked(child) as (_, r):
        if shared is not None:
            mine = _ping_pong(shared, "parent")
        else:
            mine = _on_own_connection(pymysql, server, "parent")
        theirs = probes.loads(probes.read_to_eof(r, WINDOW_S + 3 * IO_TIMEOUT_S))
    return theirs, mine


def _on_own_connection(pymysql, server: dict[str, Any], tag: str) -> dict[str, Any]:
    own = _connect(pymysql, server)
    try:
        return _ping_pong(own, tag)
    finally:
        own.close()


#: A whole COM_QUIT packet: payload length 1 (3 bytes, little-endian), sequence 0, command 0x01.
COM_QUIT_PACKET = b"\x01\x00\x00\x00\x01"


def _quit(pymysql, shared, spare: int, tls: bool) -> None:
    """End the shared session with COM_QUIT, so the server does not count an aborted client.

    After a timeout pymysql has already closed its socket without a goodbye; the
    server is still waiting for the next command on the spare descriptor, and
    a raw COM_QUIT there ends the session cleanly. (Not under TLS: the packet
    would have to be encrypted; that server counts one Aborted_clients.)
    """
    try:
        if shared.open:
            shared.close()  # pymysql sends COM_QUIT itself
        elif not tls:
            os.write(spare, COM_QUIT_PACKET)
    except (OSError, pymysql.err.Error):
        pass  # the server already hung up: nothing left to end
    finally:
        os.close(spare)


def _broken(side: dict | None) -> bool:
    return side is not None and (side["wrong"] is not None or side["error"] is not None)


def _say(side: dict | None) -> str:
    if side is None:
        return "never reported"
    trouble = side["wrong"] or side["error"]
    return f"{side['ok']} right" + (f", then {trouble}" if trouble else "")


def connection_across_fork(options: dict) -> Outcome:
    expected = (
        "one connection shared across fork: some process gets a wrong answer or a "
        "protocol error; a connection per process after fork: every answer right"
    )
    try:
        import pymysql
    except ImportError:
        return Outcome(expected, "skipped: needs pymysql", None)
    server = options.get("mysql")
    if not server:
        why = options.get("mysql_unavailable", "no server given")
        return Outcome(expected, f"skipped: no MySQL server ({why})", None)
    shared = _connect(pymysql, server)
    # A spare descriptor for the same socket, to say goodbye on it after the mess.
    spare = os.dup(shared._sock.fileno())  # pymysql has no public fileno()
    try:
        child_shared, parent_shared = _both_sides(pymysql, server, shared)
    finally:
        _quit(pymysql, shared, spare, tls=bool(server.get("tls")))
    child_own, parent_own = _both_sides(pymysql, server, None)
    corrupted = _broken(child_shared) or _broken(parent_shared)
    clean = (
        child_own is not None
        and not _broken(child_own)
        and not _broken(parent_own)
        and child_own["ok"] > 0
        and parent_own["ok"] > 0
    )
    holds = child_shared is not None and corrupted and clean
    observed = (
        f"shared: child {_say(child_shared)}; parent {_say(parent_shared)}. "
        f"After fork: child {_say(child_own)}; parent {_say(parent_own)}"
    )
    return Outcome(expected, observed, holds)
