"""The results store: every run from every front door, in one place.

Two backends behind one interface, with the same two tables (`runs`, and
`records`: one row per measurement) and the same promises:

- each record is committed the moment it is measured, so what a run finished
  survives Ctrl-C, TERM, an exception or a kill -9 of its writer;
- a run whose writer died without saying so reads back as "interrupted";
- a store is marked as the lab's, and anything else is refused and left
  untouched (SQLite: `PRAGMA application_id`; MySQL: the tables' comment);
- reading never needs write access: a store on a read-only disk, or one
  owned by someone else, can still be listed, plotted and exported;
- a password in a MySQL URL is never printed or stored (`mysql://lab:***@...`).

Where: LAB_RESULTS names it. A file path means SQLite, the default
(./results/lab.db): the standard library, one file, WAL mode. A URL
`mysql://user:password@host[:port]/database` puts the same tables on a MySQL
or MariaDB server, for many machines writing to one place (a workshop room,
a CI fleet): an existing engine, not a sync of our own.

    ResultsStore()              the store LAB_RESULTS names (SqliteStore or MysqlStore)
    ResultsStore(where, readonly=True, label="alice")

Reading map: sqlite.py (the file: its mark, WAL, read-only opening),
mysql.py (the server: its mark, its connection), export.py (CSV, JSON Lines).
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any

from lab.errors import LabError
from lab.results.export import export
from lab.runs import Record, Run, SinkFailed

__all__ = ["NothingStored", "ResultsStore", "default_path", "export", "is_url", "location"]

#: The default store, relative to the current directory.
DEFAULT = Path("results") / "lab.db"
#: What `runs` holds, in the order every query reads it.
RUN_COLUMNS = "id, experiment, params, env, started, finished, status, error, pid, host, label"


class NothingStored(LabError):
    """A reader found no store where LAB_RESULTS (or ./results/lab.db) points: nothing was
    stored there yet. Exit 1, as `grep` says "nothing found": not bad input, no answer."""

    exit_code = 1

    def __init__(self, path: Path, experiment: str = "NAME") -> None:
        self.path = path
        where = path if path.is_absolute() else f"{path} (in {Path.cwd()})"
        super().__init__(
            f"nothing stored yet: no results store at {where}; "
            f"`daemonlab run {experiment}` makes one, LAB_RESULTS names another"
        )


def location() -> str:
    """What LAB_RESULTS names (a path or a URL), or the default file."""
    return os.environ.get("LAB_RESULTS") or str(DEFAULT)


def is_url(where: str | os.PathLike[str]) -> bool:
    """Does `where` name a server rather than a file? Any `scheme://` does: taken as a
    path, MYSQL://user:password@... would name a folder after its password; the
    MySQL store then refuses a scheme that is not mysql:// in one line."""
    return re.match(r"\s*[A-Za-z][A-Za-z0-9+.-]*://", str(where)) is not None


def default_path() -> Path:
    """The store's file, for what must live beside it (the daemon's pidfile)."""
    where = location()
    if is_url(where):
        raise LabError(
            "LAB_RESULTS is a MySQL URL, and the daemon keeps its pidfile beside a file: "
            "give the daemon --results FILE (or --pidfile)"
        )
    return Path(where)


class ResultsStore:
    """Runs and their records; also a RunSink, so `collect` writes as it measures.

    ResultsStore(where) opens the backend `where` names, the way pathlib.Path()
    gives a PosixPath: SqliteStore for a file, MysqlStore for a mysql:// URL.
    `readonly`: never write (the backends also fall back to it by themselves
    when the store cannot be written). `label`: what every run begun here is
    labelled (LAB_LABEL when not given).

    A backend provides _open() (which sets `where`, safe to print, and
    `readonly`), `_read(sql, args)` -> rows, `_write(sql, args)` -> the new
    row's id (raising SinkFailed), close(), and rescue_path(run). The SQL
    here is written once, with `?` placeholders.
    """

    where: str
    readonly: bool = False
    run_columns: str = RUN_COLUMNS  # a backend may read an old store's NULL for a column

    def __new__(cls, where: str | os.PathLike[str] | None = None, **options: Any):
        if cls is ResultsStore:
            if is_url(where if where is not None else location()):
                from lab.results.mysql import MysqlStore

                cls = MysqlStore
            else:
                from lab.results.sqlite import SqliteStore

                cls = SqliteStore
        return super().__new__(cls)

    def __init__(
        self,
        where: str | os.PathLike[str] | None = None,
        *,
        readonly: bool = False,
        label: str | None = None,
    ) -> None:
        self.label = label if label is not None else (os.environ.get("LAB_LABEL") or None)
        #: How many runs begin() stored here: none means an interrupted front door
        #: has nothing to say was stored (a run stopped while it looked for a server).
        self.begun = 0
        self._open(str(where if where is not None else location()), readonly)

    # -- what a backend provides -------------------------------------------------------
    def _open(self, where: str, readonly: bool) -> None:
        """Connect, check the store is the lab's (or make it), set `where` and `readonly`."""
        raise NotImplementedError

    def _read(self, sql: str, args: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        raise NotImplementedError

    def _write(self, sql: str, args: tuple[Any, ...]) -> int | None:
        raise NotImplementedError

    def close(self) -> None:
        raise NotImplementedError

    def rescue_path(self, run: Run) -> Path:
        raise NotImplementedError

    def __enter__(self) -> ResultsStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _refuse_writes(self) -> None:
        if self.readonly:
            raise SinkFailed(
                f"results store {self.where} is read-only here: "
                "point LAB_RESULTS at one you may write"
            )

    # -- RunSink: called by lab.runs.collect while a run happens ----------------------
    def begin(self, run: Run) -> None:
        self._refuse_writes()
        run.label = self.label
        run.run_id = self._write(
            "INSERT INTO runs (experiment, params, env, started, status, pid, host, label)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (
                run.experiment,
                json.dumps(run.params),
                json.dumps(run.env),
                run.started,
                run.status,
                os.getpid(),
                os.uname().nodename,
                run.label,
            ),
        )
        self.begun += 1

    def add(self, run: Run, record: Record) -> None:
        self._write(
            "INSERT INTO records (run_id, seq, data) VALUES (?, ?, ?)",
            (run.run_id, len(run.records) - 1, json.dumps(record)),
        )

    def finish(self, run: Run) -> None:
        self._write(
            "UPDATE runs SET finished = ?, status = ?, error = ?, env = ? WHERE id = ?",
            (run.finished, run.status, run.error, json.dumps(run.env), run.run_id),
        )

    # -- reading -----------------------------------------------------------------------
    def runs(
        self, experiment: str | None = None, limit: int | None = None, measured: bool = False
    ) -> list[Run]:
        """Runs, newest first, with their records; `measured`: only runs that have some."""
        sql = f"SELECT {self.run_columns} FROM runs WHERE 1=1"
        args: list[Any] = []
        if experiment:
            sql += " AND experiment = ?"
            args.append(experiment)
        if measured:  # in SQL, so that LIMIT counts only runs worth drawing
            sql += " AND EXISTS (SELECT 1 FROM records WHERE records.run_id = runs.id)"
        sql += " ORDER BY id DESC"
        if limit:
            sql += " LIMIT ?"
            args.append(limit)
        return [self._run(row) for row in self._read(sql, tuple(args))]

    def run(self, run_id: int) -> Run:
        rows = self._read(f"SELECT {self.run_columns} FROM runs WHERE id = ?", (run_id,))
        if not rows:
            raise LabError(f"no run {run_id} in {self.where}")
        return self._run(rows[0])

    def _run(self, row: tuple[Any, ...]) -> Run:
        run_id, experiment, params, env, started, finished, status, error, pid, host, label = row
        if status == "running" and not _writer_alive(pid, host):
            status = "interrupted"
        records = [
            json.loads(data)
            for (data,) in self._read(
                "SELECT data FROM records WHERE run_id = ? ORDER BY seq", (run_id,)
            )
        ]
        return Run(
            experiment,
            json.loads(params),
            json.loads(env),
            records,
            status,
            started,
            finished,
            run_id,
            error,
            label,
        )


def _writer_alive(pid: int, host: str) -> bool:
    if host != os.uname().nodename:
        return True  # another machine's run: we cannot tell, so we do not judge
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
