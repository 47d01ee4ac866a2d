"""The SQLite store: one file, WAL mode, marked as the lab's (the default backend).

Why SQLite in WAL mode: the daemon and the CLI write at the same time, and a
daemon killed with -9 in the middle of a run must leave no torn data. Each
statement commits on its own (isolation_level=None), so what a run finished
is stored even if the process dies on the next line; WAL lets readers (a
notebook) read while a writer writes.

Whose file is it? LAB_RESULTS may name any file, and one that is not a lab
store must be left exactly as it was: not switched to WAL, no table added,
no -wal or -shm beside it. So the first look is at the file's bytes, not
through SQLite: its 100-byte header says whether it is an SQLite database
at all, and carries an application_id and a user_version (offsets 68 and 60,
https://www.sqlite.org/fileformat.html#the_database_header). A lab store
carries APPLICATION_ID. It gets it in the transaction that creates its
tables, before WAL is switched on, so the mark is in the header from the
first commit. Used: an absent or empty file, or one with the mark. A store
made before the mark existed is recognised by its exact tables, and marked.
Anything else is refused.

Reading those tables must write nothing and must see what another process
committed but did not checkpoint yet, which sits in the -wal file beside the
database: a reader with `immutable=1` skips the -wal (an app holding its WAL
database open then looks empty, and the lab once altered its table that
way). So with no -wal file the tables are read `immutable` (the main file is
all there is); with one, `mode=ro&readonly_shm=1`, which reads the -wal
through the existing -shm index and creates neither (a -wal with no -shm
cannot be read without writing one: refused). The decision is taken once more
inside the write transaction that marks the store, where SQLite itself sees
everything: a file that is not empty or an unmarked store of ours is never
altered or stamped, whatever the first look said.

Reading without write access: a store this process cannot write (a read-only
disk, someone else's file) is opened read-only (`mode=ro`). On a read-only
disk a WAL database whose -shm file is absent opens only as `immutable`
(https://www.sqlite.org/wal.html#readonly), which there is simply true.
"""

from __future__ import annotations

import os
import sqlite3
import time
from pathlib import Path
from typing import Any

from lab.errors import LabError
from lab.results import NothingStored, ResultsStore, readable_columns
from lab.runs import Run, SinkFailed

__all__ = ["APPLICATION_ID", "FORMAT", "SqliteStore"]

#: The mark in a lab store's header: "DLab" as a big-endian 32-bit integer.
APPLICATION_ID = int.from_bytes(b"DLab", "big")
#: The store's format (PRAGMA user_version): 1 added runs.label and the mark, 2 added
#: runs.pid_start (what tells the writer from a later process with its pid).
FORMAT = 2
#: How long a writer waits for another (the daemon and the CLI share the file).
BUSY_TIMEOUT_S = 30

_HEADER = b"SQLite format 3\x00"

_TABLES = (
    """CREATE TABLE runs (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    experiment TEXT NOT NULL,
    params TEXT NOT NULL,
    env TEXT NOT NULL,
    started TEXT NOT NULL,
    finished TEXT,
    status TEXT NOT NULL,
    error TEXT,
    pid INTEGER NOT NULL,
    host TEXT NOT NULL,
    label TEXT,
    pid_start TEXT
)""",
    """CREATE TABLE records (
    run_id INTEGER NOT NULL REFERENCES runs(id),
    seq INTEGER NOT NULL,
    data TEXT NOT NULL,
    PRIMARY KEY (run_id, seq)
)""",
)

#: The tables of a store made before FORMAT 1: exactly these, column by column.
_UNMARKED = {
    "runs": [
        "id", "experiment", "params", "env", "started", "finished", "status", "error", "pid",
        "host",
    ],
    "records": ["run_id", "seq", "data"],
    "sqlite_sequence": ["name", "seq"],
}  # fmt: skip


class SqliteStore(ResultsStore):
    """The store in one SQLite file (see the module's header for whose file it may be)."""

    def _open(self, where: str, readonly: bool) -> None:
        self.path = Path(where)
        self.where = str(self.path)
        kind = _whose(self.path)  # before SQLite touches the file
        exists = kind != "new"
        self.readonly = readonly or (exists and not _writable(self.path))
        try:
            if self.readonly:
                if not exists:  # a reader never makes one (`cd /tmp && daemonlab results`)
                    raise NothingStored(self.path)
                self._db = _open_readonly(self.path)
                # An older store cannot be upgraded here: what it lacks reads NULL.
                self.run_columns = readable_columns(_columns(self._db, "runs"))
            else:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                self._db = sqlite3.connect(self.path, timeout=BUSY_TIMEOUT_S, isolation_level=None)
                try:
                    _set_up(self._db)
                except BaseException:  # refused or interrupted: no store, so no connection
                    self._db.close()
                    raise
        except (sqlite3.DatabaseError, OSError) as exc:
            # Never "repair" a file we cannot read: it may be someone's results.
            raise self._refusal(str(exc)) from None

    def _refusal(self, why: str) -> LabError:
        return LabError(f"results store {self.path} cannot be used: {why}")

    def close(self) -> None:
        self._db.close()

    def rescue_path(self, run: Run) -> Path:
        """Beside the store: results/lab-run-12.json."""
        return self.path.with_name(f"{self.path.stem}-run-{run.run_id}.json")

    def _read(self, sql: str, args: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        return self._db.execute(sql, args).fetchall()

    def _write(self, sql: str, args: tuple[Any, ...]) -> int | None:
        try:
            return self._db.execute(sql, args).lastrowid
        except sqlite3.Error as exc:  # "database or disk is full", "disk I/O error", ...
            raise SinkFailed(f"results store {self.path}: {exc}") from None


def _whose(path: Path) -> str:
    """What the file at `path` is: new (absent or empty), lab (marked) or unmarked (a lab
    store from before the mark); anything else is refused here, before SQLite opens it
    for writing."""

    def refuse(why: str) -> LabError:
        return LabError(f"results store {path} cannot be used: {why} (left untouched)")

    try:
        with open(path, "rb") as f:
            header = f.read(100)
    except FileNotFoundError:
        return "new"
    except OSError as exc:
        raise refuse(exc.strerror or str(exc)) from None
    if not header:
        return "new"
    if len(header) < 100 or not header.startswith(_HEADER):
        raise refuse("it is not an SQLite database")
    if int.from_bytes(header[68:72], "big") == APPLICATION_ID:
        return "lab"  # marked before WAL was switched on: in the main file for good
    app, version, tables = _schema(path, header)
    if app != 0:
        raise refuse(f"it belongs to another application (application_id {app:#010x})")
    if tables == _UNMARKED:
        return "unmarked"
    if not tables and version == 0:
        return "new"  # an SQLite file with nothing in it: nobody's data to harm
    raise refuse(f"it is another application's database (tables: {', '.join(sorted(tables))})")


def _schema(path: Path, header: bytes) -> tuple[int, int, dict[str, list[str]]]:
    """(application_id, user_version, every table and its columns) as SQLite sees them,
    -wal included, through a connection that writes nothing (see the header)."""
    wal = Path(f"{path}-wal")
    uri = path.absolute().as_uri()
    try:
        in_wal = wal.stat().st_size > 0
    except FileNotFoundError:
        in_wal = False
    if not in_wal:  # everything is in the main file
        uri += "?mode=ro&immutable=1"
    elif Path(f"{path}-shm").exists():
        uri += "?mode=ro&readonly_shm=1"
    else:
        raise LabError(
            f"results store {path} cannot be used: {wal.name} beside it holds changes that"
            " cannot be read without writing (no -shm file) (left untouched)"
        )
    try:
        db = sqlite3.connect(uri, uri=True)
        try:
            app = db.execute("PRAGMA application_id").fetchone()[0]
            version = db.execute("PRAGMA user_version").fetchone()[0]
            names = [n for (n,) in db.execute("SELECT name FROM sqlite_master WHERE type='table'")]
            return app, version, {n: _columns(db, n) for n in names}
        finally:
            db.close()
    except sqlite3.DatabaseError as exc:
        raise LabError(f"results store {path} cannot be used: {exc} (left untouched)") from None


def _columns(db: sqlite3.Connection, table: str) -> list[str]:
    return [c[1] for c in db.execute(f'PRAGMA table_info("{table}")')]


def _writable(path: Path) -> bool:
    """Can we write the file, and make its -wal and -shm beside it? (False on a read-only
    disk for root too: access() answers EROFS.)"""
    return os.access(path, os.W_OK) and os.access(path.parent, os.W_OK)


def _open_readonly(path: Path) -> sqlite3.Connection:
    uri = path.absolute().as_uri() + "?mode=ro"
    db = sqlite3.connect(uri, uri=True)
    try:
        db.execute("SELECT count(*) FROM sqlite_master").fetchone()
        return db
    except sqlite3.OperationalError:  # WAL, a read-only disk and no -shm: see the header
        db.close()
        return sqlite3.connect(uri + "&immutable=1", uri=True)


def _set_up(db: sqlite3.Connection) -> None:
    """Mark and create (or mark and upgrade) the store, then WAL; retried while locked.

    The busy timeout does not cover this: when two connections would deadlock
    (two processes making a new store at one moment both switch it to WAL),
    SQLite answers "database is locked" at once instead of waiting. One of
    them wins; the other tries again until the store is ready.
    """
    deadline = time.monotonic() + BUSY_TIMEOUT_S
    while True:
        try:
            if db.execute("PRAGMA application_id").fetchone()[0] != APPLICATION_ID:
                _mark(db)
            if db.execute("PRAGMA user_version").fetchone()[0] < FORMAT:
                _upgrade(db)
            if db.execute("PRAGMA journal_mode").fetchone()[0] != "wal":
                db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=NORMAL")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() > deadline:
                raise
            time.sleep(0.01)


def _mark(db: sqlite3.Connection) -> None:
    """In one transaction: look again (another process may have just done it, and what
    SQLite sees here, -wal included, is the truth), then create the tables in an empty
    file or add what an unmarked store lacks, and set the mark; anything else is
    refused, untouched (see the header)."""
    db.execute("BEGIN IMMEDIATE")
    try:
        app = db.execute("PRAGMA application_id").fetchone()[0]
        if app != APPLICATION_ID:
            names = [n for (n,) in db.execute("SELECT name FROM sqlite_master")]
            kept = db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")
            tables = {n: _columns(db, n) for (n,) in kept.fetchall()}
            version = db.execute("PRAGMA user_version").fetchone()[0]
            if app == 0 and not names and version == 0:
                for statement in _TABLES:
                    db.execute(statement)
                db.execute(f"PRAGMA user_version = {FORMAT}")
            elif app == 0 and tables == _UNMARKED:
                db.execute("ALTER TABLE runs ADD COLUMN label TEXT")
                db.execute("PRAGMA user_version = 1")  # _upgrade takes it on from there
            else:
                named = ", ".join(sorted(tables or names))
                # A DatabaseError, so that _open says it the way it says SQLite's own.
                raise sqlite3.DatabaseError(
                    f"it is another application's database (tables: {named}) (left untouched)"
                )
            db.execute(f"PRAGMA application_id = {APPLICATION_ID}")
        db.execute("COMMIT")
    except BaseException:
        db.execute("ROLLBACK")
        raise


def _upgrade(db: sqlite3.Connection) -> None:
    """Bring a marked store of an earlier format to FORMAT, in one transaction, looking
    again inside it (another process may have just done it). Its rows stay as they
    were: a column added reads NULL in them, and code of the earlier format, which
    names its columns, goes on reading and writing the store."""
    db.execute("BEGIN IMMEDIATE")
    try:
        if db.execute("PRAGMA user_version").fetchone()[0] < 2:
            db.execute("ALTER TABLE runs ADD COLUMN pid_start TEXT")
            db.execute("PRAGMA user_version = 2")
        db.execute("COMMIT")
    except BaseException:
        db.execute("ROLLBACK")
        raise
