"""Raising a server's max_connections for a run, so that it is never left raised.

A run of 500 clients needs a server that takes 500 connections; MariaDB's
default max_connections is 151. The lab may raise it with SET GLOBAL (when
the account may) and must put it back. Putting it back in a `finally` is not
enough, as the first version of this module learnt:

- kill -9 of the run: no `finally` runs, and the limit stays raised for good.
- Two overlapping runs, each raising it: A puts back 151 while B holds 400
  connections, and any other client then gets "1040 Too many connections".
- Putting back "what it was before" over a fresh connection after the server
  restarted (the setting is gone) or an admin changed it (theirs now) undoes
  someone else's decision.

So every raise is recorded on the server itself, in a schema of the lab's own
(SCHEMA, a name no one would give a database of theirs):

    made_by_daemonlab  an empty table whose comment is MARK: written right after
                       CREATE DATABASE, it proves the lab made the schema
    raises             one row per setting the lab changed: what it was before
                       the first raise (`was`), and what the lab set (`lab_set`)
    leases             one row per run holding a raise: who (host, pid), how
                       many connections it needs, the name of a user lock, and
                       the tag the run's queries carry (query_tag())

and the rules are, under one server-wide lock (GET_LOCK, so two runs never
interleave their read-modify-write):

    the limit the lab sets = was + what every live lease needs
    a lease is live while its lock is held (IS_USED_LOCK): the server frees
        a user lock when the connection holding it ends, however its client
        died, so a dead owner is seen by the server itself, from any host
    the last lease out puts `was` back - but only if the limit is still what
        the lab set; otherwise it was changed since (a restart, an admin) and
        the lab forgets its record without touching the setting
    a dead run's connections go before its headroom does: a run killed with -9
        leaves its SLEEPs running on the server (it notices a client is gone
        only when the query ends), so lowering the limit at once would lock
        every other client out ("1040 Too many connections"). Its queries carry
        its tag; they are KILLed, and the limit goes down once they are gone
    the schema is dropped when nothing is left in it, and only if it carries
        MARK and holds only the lab's tables: a schema of that name the lab did
        not make is refused and left untouched (and a results store may not
        name it: lab.results.mysql)

Each lease is held by a *keeper*: a small process in a session of its own
that takes the lease, holds the lock on its own connection, and gives the
lease back when its stdin reaches EOF, which happens when its parent ends in
any way (returns, Ctrl-C, kill -9: the kernel closes the pipe). If the
keeper is killed as well, its lock dies with its connection, and the next
run, or `daemonlab doctor`, finds the lease dead and undoes it (repair()).

This module talks MySQL through pymysql only; it never imports lab.db's
callers. The keeper runs as `children.main_argv("lab.capacity")`.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from lab import children
from lab.errors import LabError

if TYPE_CHECKING:
    import pymysql.connections

    from lab.db import Server

__all__ = [
    "MARK",
    "SCHEMA",
    "Lease",
    "hold",
    "leases",
    "main",
    "ours",
    "process_tag",
    "query_tag",
    "repair",
]

#: The lab's own schema on a server it raised: a name that says whose it is and
#: what it holds, so that nobody picks it for their data (`daemonlab`, the name the
#: lab used first, is the obvious name for a results store, and was dropped as one).
SCHEMA = "daemonlab_capacity_leases"
#: The comment on the lab's tables there; the table MARK_TABLE carrying it proves the
#: lab created the schema (MySQL has no comment on a schema; MariaDB's is 10.5+).
MARK = "daemonlab max_connections leases, format 2"
MARK_TABLE = "made_by_daemonlab"
OUR_TABLES = {MARK_TABLE, "raises", "leases"}
GUARD_LOCK = "daemonlab.max_connections"
#: How long a run waits for another run's raise or release to finish (they take ms).
GUARD_WAIT_S = 30
#: How long the keeper may take to answer (it starts an interpreter and imports pymysql).
KEEPER_ANSWER_S = 60
#: How long a dead run's KILLed queries may take to leave (they go in milliseconds).
DRAIN_S = 10

ER_SPECIFIC_ACCESS_DENIED = 1227  # SET GLOBAL without SUPER / SYSTEM_VARIABLES_ADMIN
ER_DBACCESS_DENIED, ER_TABLEACCESS_DENIED = 1044, 1142
ER_BAD_DB, ER_NO_SUCH_TABLE = 1049, 1146
ER_NO_SUCH_THREAD = 1094  # KILL of a connection that has just ended
DENIED = (ER_SPECIFIC_ACCESS_DENIED, ER_DBACCESS_DENIED, ER_TABLEACCESS_DENIED)

#: In this order, under the guard lock: the schema (not IF NOT EXISTS: one that is
#: there already is not ours to fill), then the mark, then the tables.
_TABLES = (
    f"CREATE DATABASE {SCHEMA}",
    f"CREATE TABLE {SCHEMA}.{MARK_TABLE} (created DATETIME(6)) COMMENT='{MARK}'",
    f"""CREATE TABLE {SCHEMA}.raises (
        variable VARCHAR(64) PRIMARY KEY,
        was BIGINT NOT NULL,
        lab_set BIGINT NOT NULL
    ) COMMENT='{MARK}'""",
    f"""CREATE TABLE {SCHEMA}.leases (
        lock_name VARCHAR(64) PRIMARY KEY,
        variable VARCHAR(64) NOT NULL,
        connections BIGINT NOT NULL,
        host VARCHAR(255) NOT NULL,
        pid BIGINT NOT NULL,
        tag VARCHAR(64) NOT NULL,
        taken DATETIME(6) NOT NULL
    ) COMMENT='{MARK}'""",
)


@dataclass(frozen=True)
class Lease:
    lock_name: str
    connections: int
    host: str
    pid: int
    live: bool
    tag: str = ""


# -- the tag on a run's queries ----------------------------------------------------------
@functools.cache
def _process_tag(pid: int) -> str:
    return secrets.token_hex(4)


def process_tag() -> str:
    """This process's part of every query tag: what its keeper looks for after it died.
    Keyed by pid, so that a forked child does not pass for its parent."""
    return _process_tag(os.getpid())


def query_tag() -> str:
    """A tag for one run's queries (`/* daemonlab TAG */`): this process's, then the run's.
    Hex and a dash only, so it holds no LIKE wildcard."""
    return f"{process_tag()}-{secrets.token_hex(4)}"


def _tagged(conn: Any, tag: str) -> list[int]:
    """The connections running a query tagged by process `tag` (not this one)."""
    rows = _all(
        conn,
        "SELECT ID FROM information_schema.PROCESSLIST"
        " WHERE COMMAND = 'Query' AND ID <> CONNECTION_ID() AND INFO LIKE %s",
        (f"SELECT %/* daemonlab {tag}-% */",),
    )
    return [int(i) for (i,) in rows]


def _end_queries(conn: Any, tag: str) -> int:
    """KILL the queries a run tagged `tag` left running, and wait until they are gone;
    how many there were. Only ever the lab's own tagged queries: nobody else's."""
    if not tag:
        return 0
    ids = _tagged(conn, tag)
    for thread in ids:
        try:
            _one(conn, f"KILL CONNECTION {int(thread)}")
        except Exception as exc:
            if _code(exc) != ER_NO_SUCH_THREAD:
                raise
    deadline = time.monotonic() + DRAIN_S
    while ids and _tagged(conn, tag) and time.monotonic() < deadline:
        time.sleep(0.02)  # a KILLed SLEEP leaves within milliseconds
    return len(ids)


# -- the rules, on one connection, under the guard lock ---------------------------------
@contextlib.contextmanager
def _guard(conn: pymysql.connections.Connection) -> Iterator[None]:
    (got,) = _one(conn, "SELECT GET_LOCK(%s, %s)", (GUARD_LOCK, GUARD_WAIT_S))
    if got != 1:
        raise LabError(f"another run holds {GUARD_LOCK} for over {GUARD_WAIT_S} s")
    try:
        yield
    finally:
        _one(conn, "SELECT RELEASE_LOCK(%s)", (GUARD_LOCK,))


def _one(conn: Any, sql: str, args: Any = None) -> tuple:
    with conn.cursor() as cur:
        cur.execute(sql, args)
        return cur.fetchone()


def _all(conn: Any, sql: str, args: Any = None) -> list[tuple]:
    with conn.cursor() as cur:
        cur.execute(sql, args)
        return list(cur.fetchall())


def _limit(conn: Any) -> int:
    return int(_one(conn, "SELECT @@GLOBAL.max_connections")[0])


def _set_limit(conn: Any, value: int) -> None:
    _one(conn, "SET GLOBAL max_connections = %s", (int(value),))


def leases(conn: Any) -> list[Lease]:
    """Every recorded lease, live or not; none when the lab never raised anything here
    (or when a schema of that name is not the lab's: see ours())."""
    try:
        if not ours(conn):
            return []
        rows = _all(
            conn,
            f"SELECT lock_name, connections, host, pid, IS_USED_LOCK(lock_name) IS NOT NULL, tag"
            f" FROM {SCHEMA}.leases WHERE variable = 'max_connections'",
        )
    except Exception as exc:
        if _code(exc) in (ER_BAD_DB, ER_NO_SUCH_TABLE, *DENIED):
            return []
        raise
    return [
        Lease(name, int(n), host, int(pid), bool(live), tag)
        for name, n, host, pid, live, tag in rows
    ]


def _schema_tables(conn: Any) -> dict[str, str] | None:
    """The tables in SCHEMA and their comments; None when there is no such schema."""
    found = _one(
        conn, "SELECT COUNT(*) FROM information_schema.SCHEMATA WHERE SCHEMA_NAME = %s", (SCHEMA,)
    )
    if not found[0]:
        return None
    rows = _all(
        conn,
        "SELECT TABLE_NAME, TABLE_COMMENT FROM information_schema.TABLES WHERE TABLE_SCHEMA = %s",
        (SCHEMA,),
    )
    return {name: comment for name, comment in rows}


def ours(conn: Any) -> bool:
    """Does SCHEMA exist, and did the lab make it (MARK_TABLE, with MARK as its comment)?"""
    tables = _schema_tables(conn)
    return tables is not None and tables.get(MARK_TABLE) == MARK


def _not_ours() -> LabError:
    return LabError(
        f"schema {SCHEMA} on this server was not made by the lab (no {MARK_TABLE} table"
        f" marked {MARK!r}): left untouched; drop it if it is an old lab's, or raise"
        " max_connections by hand"
    )


def _raise_row(conn: Any) -> tuple[int, int] | None:
    row = _one(conn, f"SELECT was, lab_set FROM {SCHEMA}.raises WHERE variable = 'max_connections'")
    return None if row is None else (int(row[0]), int(row[1]))


def _settle(conn: Any) -> str | None:
    """Drop dead leases and make the limit what the live ones need; what changed, in words.

    Called under the guard lock, with the lab's tables present (leases() reads none
    from a schema that is not the lab's, and _raise_row is not read then)."""
    if not ours(conn):
        return None
    everything = leases(conn)
    dead = [lease for lease in everything if not lease.live]
    live = [lease for lease in everything if lease.live]
    for lease in dead:  # its queries first: they still hold connections (see the header)
        _end_queries(conn, lease.tag)
        _one(conn, f"DELETE FROM {SCHEMA}.leases WHERE lock_name = %s", (lease.lock_name,))
    row = _raise_row(conn)
    if row is None:
        return None
    was, lab_set = row
    now = _limit(conn)
    who = ", ".join(f"pid {d.pid} on {d.host}" for d in dead)
    if now != lab_set:
        # Changed since the lab set it: a restart (SET GLOBAL does not persist) or an admin.
        if not live:
            _forget_all(conn)
            return f"max_connections is {now}, not the {lab_set} the lab set: left as it is"
        return None
    if not live:
        _set_limit(conn, was)
        _forget_all(conn)
        return f"max_connections put back to {was}" + (f" (left raised by {who})" if dead else "")
    target = was + sum(lease.connections for lease in live)
    if target != now:
        _set_limit(conn, target)
        _one(conn, f"UPDATE {SCHEMA}.raises SET lab_set = %s WHERE variable = 'max_connections'",
             (target,))  # fmt: skip
        return f"max_connections {now} -> {target} for the runs still holding it"
    return None


def _forget_all(conn: Any) -> None:
    """Nothing raised, nobody holding: the lab's schema goes too, so that a shared server
    keeps nothing of the lab's between runs - but only a schema with the lab's mark that
    holds nothing else (its three tables, empty). Under the guard lock, which _take
    also takes before it creates the schema again."""
    _one(conn, f"DELETE FROM {SCHEMA}.raises WHERE variable = 'max_connections'")
    tables = _schema_tables(conn) or {}
    if set(tables) != OUR_TABLES or any(comment != MARK for comment in tables.values()):
        return  # someone put a table of theirs in it: theirs is not ours to drop
    (raises,) = _one(conn, f"SELECT COUNT(*) FROM {SCHEMA}.raises")
    (held,) = _one(conn, f"SELECT COUNT(*) FROM {SCHEMA}.leases")
    if raises == 0 and held == 0:
        _one(conn, f"DROP DATABASE {SCHEMA}")


def _make_schema(conn: Any) -> None:
    """Use the lab's schema, or make it; refuse one of that name the lab did not make."""
    tables = _schema_tables(conn)
    if tables is None:
        for sql in _TABLES:
            _one(conn, sql)
    elif tables.get(MARK_TABLE) != MARK or not OUR_TABLES <= set(tables):
        raise _not_ours()


def _take(
    conn: Any, connections: int, lock_name: str, pid: int, host: str, tag: str
) -> tuple[int, int]:
    """Record a lease for `connections` and raise the limit to cover it; (was, now)."""
    with _guard(conn):  # first: a run giving back may drop the schema (_forget_all)
        _make_schema(conn)
        _settle(conn)
        live = [lease for lease in leases(conn) if lease.live]
        now = _limit(conn)
        row = _raise_row(conn)
        was = row[0] if row is not None else now
        target = was + sum(lease.connections for lease in live) + connections
        if target > now:  # an admin's higher limit is left alone
            _set_limit(conn, target)
            now = target
            _one(
                conn,
                f"REPLACE INTO {SCHEMA}.raises (variable, was, lab_set)"
                " VALUES ('max_connections', %s, %s)",
                (was, now),
            )
        _one(
            conn,
            f"INSERT INTO {SCHEMA}.leases"
            " (lock_name, variable, connections, host, pid, tag, taken)"
            " VALUES (%s, 'max_connections', %s, %s, %s, %s, NOW(6))",
            (lock_name, connections, host, pid, tag),
        )
    return was, now


def _give_back(conn: Any, lock_name: str) -> str | None:
    with _guard(conn):
        _one(conn, f"DELETE FROM {SCHEMA}.leases WHERE lock_name = %s", (lock_name,))
        _one(conn, "SELECT RELEASE_LOCK(%s)", (lock_name,))
        return _settle(conn)


def repair(conn: Any) -> str | None:
    """Undo what dead runs left raised (the next run and `daemonlab doctor` call this).

    Returns what it did, in words, or None. An account that may not read the
    lab's tables, or a server the lab never raised, has nothing to repair.
    A raise with no live lease is repaired too: a keeper killed in the middle
    of giving its lease back has deleted its row but not yet put the limit back."""
    everything = leases(conn)
    if all(lease.live for lease in everything) and (everything or not _has_raise(conn)):
        return None
    with _guard(conn):
        return _settle(conn)


def _has_raise(conn: Any) -> bool:
    try:
        return ours(conn) and _raise_row(conn) is not None
    except Exception as exc:
        if _code(exc) in (ER_BAD_DB, ER_NO_SUCH_TABLE, *DENIED):
            return False
        raise


def _code(exc: BaseException) -> int | None:
    args = getattr(exc, "args", ())
    return args[0] if args and isinstance(args[0], int) else None


# -- the parent's side: hold a lease for a `with` block ----------------------------------
@contextlib.contextmanager
def hold(srv: Server, connections: int, clients: int) -> Iterator[tuple[int, int] | None]:
    """Make max_connections cover `connections` more for the block (`clients` of them
    the run's clients, the rest its own); yields (was, now) when a raise was needed,
    None when the server already had room.

    Refuses (LabError) before anything connects when the account may not raise it."""
    from lab import db

    with contextlib.closing(db.connect(srv, autocommit=True)) as conn:
        with contextlib.suppress(LabError):  # someone else's run holds the guard: not ours
            repair(conn)
        limit = _limit(conn)
        (_, connected) = _one(conn, "SHOW GLOBAL STATUS LIKE 'Threads_connected'")
        others = int(connected) - 1
        live = [lease for lease in leases(conn) if lease.live]
    if not live and limit >= connections + others:
        yield None  # room enough, and no other run's raise to share: nothing to change
        return
    with _Keeper(srv, connections, clients) as raised:
        yield raised


class _Keeper:
    """The process that holds one lease (see the header): started, asked, told to give back."""

    def __init__(self, srv: Server, connections: int, clients: int) -> None:
        self._srv, self._connections, self._clients = srv, connections, clients
        self._proc: subprocess.Popen[str] | None = None

    def __enter__(self) -> tuple[int, int]:
        self._proc = subprocess.Popen(
            children.main_argv(__name__),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            start_new_session=True,  # a terminal's Ctrl-C must not reach it: we stop it, by EOF
        )
        try:
            # Credentials go through the pipe, never argv (world-readable in /proc).
            order = {
                "server": dataclasses.asdict(self._srv),
                "connections": self._connections,
                "clients": self._clients,
                "pid": os.getpid(),
                "tag": process_tag(),
            }
            self._proc.stdin.write(json.dumps(order) + "\n")
            self._proc.stdin.flush()
            answer = self._answer()
            if "error" in answer:
                raise LabError(answer["error"])
            return answer["was"], answer["now"]
        except BaseException:
            self.__exit__()
            raise

    def __exit__(self, *exc: object) -> None:
        proc = self._proc
        if proc is None:
            return
        self._proc = None
        try:
            proc.stdin.close()  # EOF: give the lease back
            proc.wait(timeout=KEEPER_ANSWER_S)
        except (subprocess.TimeoutExpired, OSError):
            pass  # stop_popen below; the lease is then repaired by the next run
        finally:
            children.stop_popen(proc)

    def _answer(self) -> dict[str, Any]:
        import select

        assert self._proc is not None
        ready = select.select([self._proc.stdout], [], [], KEEPER_ANSWER_S)[0]
        line = self._proc.stdout.readline() if ready else ""
        if not line:
            raise LabError(f"the max_connections keeper did not answer in {KEEPER_ANSWER_S} s")
        return json.loads(line)


# -- the keeper process ------------------------------------------------------------------
def _refusal(srv: Server, exc: BaseException, conn: Any, order: dict[str, Any]) -> str:
    """'access denied' to the lab's tables or to SET GLOBAL becomes the fix, in one line."""
    from lab import db

    if _code(exc) not in DENIED:
        return str(db.explain(srv, exc))
    limit = _limit(conn)
    (_, connected) = _one(conn, "SHOW GLOBAL STATUS LIKE 'Threads_connected'")
    others = int(connected) - 1
    need = order["connections"] + others
    busy = f" ({others} other connections are open)" if others else ""
    fix = -(-need // 100) * 100  # rounded up to the hundred: an easy number to type
    return (
        f"max_connections is {limit}, {order['clients']} clients need {need}{busy}: "
        f"run SET GLOBAL max_connections={fix} as an admin, or lower --clients"
    )


def _stop_on_term(signum: int, frame: object) -> None:
    """TERM (someone stops the keeper) gives the lease back, like EOF: through `finally`."""
    raise SystemExit(0)


def _keep() -> int:
    import pymysql

    from lab.db import Server

    signal.signal(signal.SIGTERM, _stop_on_term)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    order = json.loads(sys.stdin.readline())
    srv = Server(**order["server"])
    lock_name = f"daemonlab.lease.{secrets.token_hex(8)}"
    try:
        # A keeper idles for the whole run: a server's wait_timeout (8 h by default,
        # often less) must not end its session, or its lease would look dead.
        conn = pymysql.connect(
            **srv.pymysql_kwargs(
                autocommit=True, init_command="SET SESSION wait_timeout = 31536000"
            )
        )
    except pymysql.err.MySQLError as exc:
        from lab.db import explain

        print(json.dumps({"error": str(explain(srv, exc))}), flush=True)
        return 1
    try:
        try:
            (got,) = _one(conn, "SELECT GET_LOCK(%s, 0)", (lock_name,))
            assert got == 1, "a fresh random lock name is free"
            was, now = _take(
                conn, order["connections"], lock_name, order["pid"], _host(), order["tag"]
            )
        except pymysql.err.MySQLError as exc:
            print(json.dumps({"error": _refusal(srv, exc, conn, order)}), flush=True)
            return 1
        except LabError as exc:  # a schema of the lab's name that the lab did not make
            print(json.dumps({"error": str(exc)}), flush=True)
            return 1
        print(json.dumps({"was": was, "now": now}), flush=True)
        try:
            sys.stdin.read()  # returns at EOF: the parent is done, or dead
        finally:
            # A server that went away took the raise with it (SET GLOBAL does not
            # outlive a restart) and freed the lock: nothing is left to give back.
            with contextlib.suppress(pymysql.err.MySQLError, OSError):
                # A parent that finished has no query left; one killed with -9 has
                # its SLEEPs still on the server: they go before the headroom does.
                _end_queries(conn, order["tag"])
                _give_back(conn, lock_name)
    finally:
        with contextlib.suppress(pymysql.err.Error, OSError):
            conn.close()
    return 0


def _host() -> str:
    return socket.gethostname()


def main(argv: list[str]) -> int:
    """The keeper (children.main_argv): hold one lease until stdin ends."""
    return _keep()
