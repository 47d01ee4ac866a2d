"""The MySQL store: the same tables on a MySQL or MariaDB server many machines share.

LAB_RESULTS=mysql://user:password@host[:port]/database selects it. The
guarantees are the SQLite store's, kept the way a server keeps them:

- each record is committed as it is measured: autocommit, one INSERT per
  record, InnoDB (a transaction committed is on the server's disk);
- a writer killed with -9 leaves its run "running", which reads back as
  "interrupted" on its own machine (the run row names pid, its start and host);
- a store from before a column was added gains it when first opened for
  writing (its rows read NULL there), or reads NULL for it when it cannot;
- a server that goes away mid-run fails the next write at once (the socket
  is reset) or within WRITE_TIMEOUT_S (a server that hangs): SinkFailed, so
  lab.runs.collect keeps measuring and rescues the records; what was
  committed before stays committed;
- a database holding any table that is not the lab's is refused and left
  untouched (not only a foreign `runs` or `records`: the lab adds nothing to a
  database whose tables it did not create). The lab's tables carry MARK as
  their comment, MySQL's nearest thing to SQLite's application_id;
- the schema lab/capacity.py keeps its max_connections leases in is refused
  by name: it is dropped when the last lease goes back;
- the password is held by lab.db.Server, whose repr and safe_url hide it;
  nothing here prints or stores the URL.

Reading needs only SELECT: the tables are created only when absent.
"""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Any

from lab import capacity, db
from lab.errors import LabError
from lab.results import ResultsStore, readable_columns
from lab.runs import Run, SinkFailed

__all__ = ["MARK", "MysqlStore"]

#: The comment on both tables: how the lab knows they are its own.
MARK = "daemonlab results store, format 1"
#: A reply from a server on a LAN comes in milliseconds; a server that stopped
#: answering (SIGSTOP, a dead host) must not hang a run for ever (pymysql's default).
WRITE_TIMEOUT_S = 30

_TABLES = (
    f"""CREATE TABLE IF NOT EXISTS runs (
    id BIGINT NOT NULL AUTO_INCREMENT PRIMARY KEY,
    experiment VARCHAR(100) NOT NULL,
    params LONGTEXT NOT NULL,
    env LONGTEXT NOT NULL,
    started VARCHAR(40) NOT NULL,
    finished VARCHAR(40),
    status VARCHAR(20) NOT NULL,
    error TEXT,
    pid INT NOT NULL,
    host VARCHAR(255) NOT NULL,
    label VARCHAR(255),
    pid_start VARCHAR(80),
    KEY by_experiment (experiment, id)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COMMENT='{MARK}'""",
    f"""CREATE TABLE IF NOT EXISTS records (
    run_id BIGINT NOT NULL,
    seq INT NOT NULL,
    data LONGTEXT NOT NULL,
    PRIMARY KEY (run_id, seq),
    FOREIGN KEY (run_id) REFERENCES runs(id)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COMMENT='{MARK}'""",
)

#: Columns added to `runs` since its first format, and how (lab.results.RUN_COLUMNS).
_ADDED = {"pid_start": "ALTER TABLE runs ADD COLUMN pid_start VARCHAR(80)"}
#: The server's answers when another process added the column first (ER_DUP_FIELDNAME),
#: and when this user may not alter tables (ER_TABLEACCESS_DENIED_ERROR).
_DUPLICATE_COLUMN = 1060
_NO_ALTER = 1142

#: Client errors that mean the server is gone (pymysql.constants.CR).
_GONE = {2006: "the server went away", 2013: "the connection to the server was lost"}


class MysqlStore(ResultsStore):
    """The store in two tables of a MySQL database (see the module's header)."""

    def _open(self, where: str, readonly: bool) -> None:
        self.server, mode = db.parse_url(where, "LAB_RESULTS")
        self.where = self.server.safe_url()
        if mode == "preferred":
            raise LabError("LAB_RESULTS: the results store takes ssl=required or ssl=disabled")
        if self.server.database.casefold() == capacity.SCHEMA:
            raise LabError(
                f"LAB_RESULTS names database {capacity.SCHEMA}, where the lab keeps its"
                " max_connections leases (and drops it when they end): name another database"
            )
        self.readonly = readonly
        self._conn = db.connect(
            self.server,
            autocommit=True,
            read_timeout=WRITE_TIMEOUT_S,
            write_timeout=WRITE_TIMEOUT_S,
            charset="utf8mb4",
        )
        try:
            self._set_up()
        except BaseException:
            self._conn.close()
            raise

    def _set_up(self) -> None:
        """Use the lab's tables, create them in a database with no table at all, refuse a
        database with any table that is not the lab's."""
        found = dict(
            self._read(
                "SELECT TABLE_NAME, TABLE_COMMENT FROM information_schema.TABLES"
                " WHERE TABLE_SCHEMA = DATABASE()"
            )
        )
        foreign = sorted(name for name, comment in found.items() if comment != MARK)
        if foreign:
            more = f" and {len(foreign) - 3} more" if foreign[3:] else ""
            named = ", ".join(foreign[:3]) + more
            raise LabError(
                f"results store {self.where} cannot be used: it holds tables the lab did not"
                f" create ({named}; left untouched): name a database of the lab's own"
            )
        if set(found) == {"runs", "records"}:
            self._upgrade()
            return
        if self.readonly:
            raise LabError(f"no results store in {self.where} yet: run an experiment")
        for statement in _TABLES:  # IF NOT EXISTS: two processes may create it at once
            self._execute(statement, ())

    def _upgrade(self) -> None:
        """Add the columns a store from before them lacks (its rows read NULL there, and
        code from before them, which names its columns, keeps working); read-only, read
        NULL for them instead."""
        import pymysql

        present = [
            name
            for (name,) in self._read(
                "SELECT COLUMN_NAME FROM information_schema.COLUMNS"
                " WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME = 'runs'"
            )
        ]
        if self.readonly:
            self.run_columns = readable_columns(present)
            return
        for name in (name for name in _ADDED if name not in present):
            try:
                self._execute(_ADDED[name], ())
                present.append(name)
            except pymysql.err.OperationalError as exc:
                if exc.args[0] == _NO_ALTER:  # a user who may only write rows: do without
                    continue
                if exc.args[0] != _DUPLICATE_COLUMN:  # another process added it first
                    raise LabError(f"results store {self.where}: {_reason(exc)}") from None
                present.append(name)
        self.run_columns = readable_columns(present)

    def close(self) -> None:
        with contextlib.suppress(Exception):  # a connection the server dropped is closed too
            self._conn.close()

    def rescue_path(self, run: Run) -> Path:
        """No folder beside a server: the current directory, test-run-12.json."""
        return Path.cwd() / f"{self.server.database}-run-{run.run_id}.json"

    def _execute(self, sql: str, args: tuple[Any, ...]) -> Any:
        with self._conn.cursor() as cur:
            cur.execute(sql.replace("?", "%s"), args)
            return cur.lastrowid, cur.fetchall()

    def _read(self, sql: str, args: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        import pymysql

        try:
            return list(self._execute(sql, args)[1])
        except pymysql.err.MySQLError as exc:
            raise LabError(f"results store {self.where}: {_reason(exc)}") from None

    def _write(self, sql: str, args: tuple[Any, ...]) -> int | None:
        import pymysql

        try:
            return self._execute(sql, args)[0]
        except pymysql.err.MySQLError as exc:
            self.close()  # a half-written statement leaves the protocol unusable
            raise SinkFailed(f"results store {self.where}: {_reason(exc)}") from None


def _reason(exc: Exception) -> str:
    code = exc.args[0] if exc.args and isinstance(exc.args[0], int) else None
    detail = exc.args[-1] if exc.args else exc
    if code in _GONE:
        return f"{_GONE[code]} ({detail})"
    return f"error {code}: {detail}"
