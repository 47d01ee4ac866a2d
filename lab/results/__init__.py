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

    open_store()                the store LAB_RESULTS names (a SqliteStore or a MysqlStore)
    open_store(where, readonly=True, label="alice")

Reading map: sqlite.py (the file: its mark, WAL, read-only opening),
mysql.py (the server: its mark, its connection), export.py (CSV, JSON Lines).
"""

from __future__ import annotations

import json
import os
import re
from abc import ABC, abstractmethod
from pathlib import Path
from typing import Any

from lab import procfs
from lab.errors import LabError
from lab.results.export import export
from lab.runs import Record, Run, SinkFailed, Status

__all__ = [
    "NothingStored",
    "ResultsStore",
    "default_path",
    "export",
    "is_url",
    "location",
    "open_store",
    "pid_start",
]

#: The default store, relative to the current directory.
DEFAULT = Path("results") / "lab.db"
#: What `runs` holds, in the order every query reads it. pid_start came last (SQLite
#: format 2): a store that lacks it reads NULL there (`readable_columns`).
RUN_COLUMNS = (
    "id, experiment, params, env, started, finished, status, error, pid, host, label, pid_start"
)
#: Run ids per `IN (...)` when reading records: SQLite before 3.32 takes at most 999
#: parameters in one statement (https://www.sqlite.org/limits.html#max_variable_number).
IDS_PER_QUERY = 500


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


def open_store(
    where: str | os.PathLike[str] | None = None,
    *,
    readonly: bool = False,
    label: str | None = None,
) -> ResultsStore:
    """The store `where` names (LAB_RESULTS when not given, else ./results/lab.db): a
    SqliteStore for a file, a MysqlStore for a mysql:// URL.

    `readonly`: never write (the backends also fall back to it by themselves when the
    store cannot be written). `label`: what every run begun here is labelled (LAB_LABEL
    when not given).
    """
    where = str(where if where is not None else location())
    if is_url(where):
        from lab.results.mysql import MysqlStore

        return MysqlStore(where, readonly=readonly, label=label)
    from lab.results.sqlite import SqliteStore

    return SqliteStore(where, readonly=readonly, label=label)


def readable_columns(present: list[str]) -> str:
    """RUN_COLUMNS for a store's runs table: NULL for a column it does not have (a store
    from before the column, opened where it cannot be upgraded: read-only)."""
    wanted = [c.strip() for c in RUN_COLUMNS.split(",")]
    return ", ".join(c if c in present else "NULL" for c in wanted)


def default_path() -> Path:
    """The store's file, for what must live beside it (the daemon's pidfile)."""
    where = location()
    if is_url(where):
        raise LabError(
            "LAB_RESULTS is a MySQL URL, and the daemon keeps its pidfile beside a file: "
            "give the daemon --results FILE (or --pidfile)"
        )
    return Path(where)


class ResultsStore(ABC):
    """Runs and their records; also a RunSink, so `collect` writes as it measures.

    open_store() opens one. A backend (SqliteStore, MysqlStore) provides _open()
    (which sets `where`, safe to print, and `readonly`), `_read(sql, args)` ->
    rows, `_write(sql, args)` -> the new row's id (raising SinkFailed), close(),
    and rescue_path(run). The SQL here is written once, with `?` placeholders.
    """

    where: str
    readonly: bool = False
    run_columns: str = RUN_COLUMNS  # readable_columns(), for an old store read-only

    def __init__(self, where: str, *, readonly: bool = False, label: str | None = None) -> None:
        self.label = label if label is not None else (os.environ.get("LAB_LABEL") or None)
        #: How many runs begin() stored here: none means an interrupted front door
        #: has nothing to say was stored (a run stopped while it looked for a server).
        self.begun = 0
        self._open(where, readonly)

    # -- what a backend provides -------------------------------------------------------
    @abstractmethod
    def _open(self, where: str, readonly: bool) -> None:
        """Connect, check the store is the lab's (or make it), set `where` and `readonly`."""

    @abstractmethod
    def _read(self, sql: str, args: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]: ...

    @abstractmethod
    def _write(self, sql: str, args: tuple[Any, ...]) -> int | None: ...

    @abstractmethod
    def close(self) -> None: ...

    @abstractmethod
    def rescue_path(self, run: Run) -> Path: ...

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
        row = {
            "experiment": run.experiment,
            "params": json.dumps(run.params),
            "env": json.dumps(run.env),
            "started": run.started,
            "status": run.status.value,
            "pid": os.getpid(),
            "host": os.uname().nodename,
            "label": run.label,
        }
        if "pid_start" in self.run_columns:  # not in an old store that could not be given it
            row["pid_start"] = pid_start(os.getpid())
        run.run_id = self._write(
            f"INSERT INTO runs ({', '.join(row)}) VALUES ({', '.join('?' * len(row))})",
            tuple(row.values()),
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
            (run.finished, run.status.value, run.error, json.dumps(run.env), run.run_id),
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
        return self._with_records(self._read(sql, tuple(args)))

    def run(self, run_id: int) -> Run:
        rows = self._read(f"SELECT {self.run_columns} FROM runs WHERE id = ?", (run_id,))
        if not rows:
            raise LabError(f"no run {run_id} in {self.where}")
        return self._with_records(rows)[0]

    def _with_records(self, rows: list[tuple[Any, ...]]) -> list[Run]:
        """The runs of `rows`, their records read in one query (per IDS_PER_QUERY runs),
        not one per run: on a MySQL store each query is a round trip over the network."""
        ids = [row[0] for row in rows]
        records: dict[int, list[Record]] = {run_id: [] for run_id in ids}
        for first in range(0, len(ids), IDS_PER_QUERY):
            chunk = ids[first : first + IDS_PER_QUERY]
            marks = ", ".join("?" * len(chunk))
            for run_id, data in self._read(
                f"SELECT run_id, data FROM records WHERE run_id IN ({marks}) ORDER BY run_id, seq",
                tuple(chunk),
            ):
                records[run_id].append(json.loads(data))
        return [_run(row, records[row[0]]) for row in rows]


def _run(row: tuple[Any, ...], records: list[Record]) -> Run:
    run_id, experiment, params, env, started, finished, status, error, pid, host, label = row[:11]
    run = Run(
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
    if run.status == Status.RUNNING and not _writer_alive(pid, host, row[11], started):
        run.end(Status.INTERRUPTED)  # it died without saying so (kill -9, a power cut)
    return run


def pid_start(pid: int) -> str | None:
    """What tells process `pid` from a later one given the same pid, or None if none
    runs: the boot it runs in and its start in clock ticks since that boot (proc(5),
    /proc/PID/stat field 22; a reboot starts both pids and ticks again)."""
    stat = procfs.proc_stat(pid)
    if stat is None:
        return None
    with open("/proc/sys/kernel/random/boot_id") as f:
        return f"{f.read().strip()} {stat['starttime']}"


def _writer_alive(pid: int, host: str, stored_start: str | None, started: str) -> bool:
    """Does the process that wrote a run still run? Not `os.kill(pid, 0)`: that says
    whether *some* process holds the pid, and pids are reused. There are 32768 of them
    by default (/proc/sys/kernel/pid_max); a 2-core machine running five test suites
    at once handed out 841 in 10 s (the last field of /proc/loadavg): round them all in
    about 6.5 minutes."""
    if host != os.uname().nodename:
        return True  # another machine's run: we cannot tell, so we do not judge
    if stored_start is not None:
        return pid_start(pid) == stored_start
    # A run stored before pid_start was: the writer began before the run did, so a
    # process holding its pid that started later is another one.
    import datetime as dt

    import psutil

    try:
        born = psutil.Process(pid).create_time()
    except psutil.NoSuchProcess:
        return False
    # create_time adds the boot time in whole seconds, `started` is whole seconds: 2 s slack.
    return born <= dt.datetime.fromisoformat(started).timestamp() + 2
