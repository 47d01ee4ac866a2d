"""The results store: every run from every front door, in one SQLite file.

Why SQLite in WAL mode: the daemon and the CLI write at the same time, and a
daemon killed with -9 in the middle of a run must leave no torn data. Each
record is committed on its own, so what a run finished is stored even if the
process dies on the next line; WAL lets readers (a notebook) read while a
writer writes. The default file is ./results/lab.db; LAB_RESULTS moves it.

A run whose writer died without saying so is still "running" in the table;
`status` reads it back as "interrupted" when the pid that wrote it is gone.
"""

from __future__ import annotations

import csv
import json
import os
import sqlite3
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import IO, Any

from lab.errors import LabError
from lab.runs import Record, Run

__all__ = ["ResultsStore", "default_path", "export"]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS runs (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    experiment TEXT NOT NULL,
    params TEXT NOT NULL,
    env TEXT NOT NULL,
    started TEXT NOT NULL,
    finished TEXT,
    status TEXT NOT NULL,
    error TEXT,
    pid INTEGER NOT NULL,
    host TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS records (
    run_id INTEGER NOT NULL REFERENCES runs(id),
    seq INTEGER NOT NULL,
    data TEXT NOT NULL,
    PRIMARY KEY (run_id, seq)
);
"""


#: How long a writer waits for another (the daemon and the CLI share the file).
BUSY_TIMEOUT_S = 30


def _set_up(db: sqlite3.Connection) -> None:
    """WAL mode and the tables, retried while another process does the same.

    The busy timeout does not cover this: when two connections would deadlock
    (two processes making a new store at one moment both switch it to WAL),
    SQLite answers "database is locked" at once instead of waiting. One of
    them wins; the other tries again until the store is ready.
    """
    deadline = time.monotonic() + BUSY_TIMEOUT_S
    while True:
        try:
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=NORMAL")
            db.executescript(_SCHEMA)
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() > deadline:
                raise
            time.sleep(0.01)


def default_path() -> Path:
    return Path(os.environ.get("LAB_RESULTS") or Path("results") / "lab.db")


class ResultsStore:
    """Runs and their records. Also a RunSink, so `collect` can write as it goes."""

    def __init__(self, path: str | os.PathLike[str] | None = None) -> None:
        self.path = Path(path) if path is not None else default_path()
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            # isolation_level=None: every statement commits on its own.
            self._db = sqlite3.connect(self.path, timeout=BUSY_TIMEOUT_S, isolation_level=None)
            _set_up(self._db)
        except (sqlite3.DatabaseError, OSError) as exc:
            # Never "repair" a file we cannot read: it may be someone's results.
            raise LabError(f"results store {self.path} cannot be used: {exc}") from None

    def close(self) -> None:
        self._db.close()

    def __enter__(self) -> ResultsStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- RunSink: called by lab.runs.collect while a run happens ----------------
    def begin(self, run: Run) -> None:
        cur = self._db.execute(
            "INSERT INTO runs (experiment, params, env, started, status, pid, host)"
            " VALUES (?, ?, ?, ?, ?, ?, ?)",
            (
                run.experiment,
                json.dumps(run.params),
                json.dumps(run.env),
                run.started,
                run.status,
                os.getpid(),
                os.uname().nodename,
            ),
        )
        run.run_id = cur.lastrowid

    def add(self, run: Run, record: Record) -> None:
        self._db.execute(
            "INSERT INTO records (run_id, seq, data) VALUES (?, ?, ?)",
            (run.run_id, len(run.records) - 1, json.dumps(record)),
        )

    def finish(self, run: Run) -> None:
        self._db.execute(
            "UPDATE runs SET finished = ?, status = ?, error = ?, env = ? WHERE id = ?",
            (run.finished, run.status, run.error, json.dumps(run.env), run.run_id),
        )

    # -- reading -----------------------------------------------------------------
    def runs(
        self, experiment: str | None = None, limit: int | None = None, measured: bool = False
    ) -> list[Run]:
        """Runs, newest first, with their records; `measured`: only runs that have some."""
        sql = "SELECT id, experiment, params, env, started, finished, status, error, pid, host"
        sql += " FROM runs WHERE 1"
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
        return [self._run(row) for row in self._db.execute(sql, args).fetchall()]

    def run(self, run_id: int) -> Run:
        row = self._db.execute(
            "SELECT id, experiment, params, env, started, finished, status, error, pid, host"
            " FROM runs WHERE id = ?",
            (run_id,),
        ).fetchone()
        if row is None:
            raise LabError(f"no run {run_id} in {self.path}")
        return self._run(row)

    def _run(self, row: tuple[Any, ...]) -> Run:
        run_id, experiment, params, env, started, finished, status, error, pid, host = row
        if status == "running" and not _writer_alive(pid, host):
            status = "interrupted"
        records = [
            json.loads(data)
            for (data,) in self._db.execute(
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


def _rows(runs: Iterable[Run]) -> Iterator[dict[str, Any]]:
    for run in runs:
        for record in run.records:
            yield {
                "run_id": run.run_id,
                "experiment": run.experiment,
                "started": run.started,
                "status": run.status,
                **record,
            }


def export(runs: Iterable[Run], fmt: str, out: IO[str]) -> int:
    """Write every record of `runs` as CSV or JSON Lines; returns how many rows."""
    rows = list(_rows(runs))
    if fmt == "jsonl":
        for row in rows:
            out.write(json.dumps(row) + "\n")
    elif fmt == "csv":
        columns: dict[str, None] = {}
        for row in rows:
            columns.update(dict.fromkeys(row))
        writer = csv.DictWriter(out, fieldnames=list(columns))
        writer.writeheader()
        writer.writerows(
            {k: json.dumps(v) if isinstance(v, list | dict) else v for k, v in row.items()}
            for row in rows
        )
    else:
        raise LabError(f"unknown export format {fmt!r} (choose csv or jsonl)")
    return len(rows)
