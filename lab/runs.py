"""The experiment contract: a Run, and `collect`, which every experiment's run() calls.

An experiment is a generator of flat records (`measure(params, session)`);
`collect` wraps it into a Run. A sink (the results store) sees every record
the moment it exists, so a run cut short by Ctrl-C, a TERM from the daemon's
`stop`, or an exception keeps what it finished, marked interrupted or failed.
The experiment never prints: the CLI, notebooks and benchmarks present it.

When the sink itself fails mid-run (the disk fills, the store's server goes
away), measuring goes on: the records are kept in memory, written to a file
the sink names (beside the store) or, when that fails too, printed on stdout
as JSON, and the run ends with one line saying where they went (RunNotStored).
What the store had already committed stays there.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import sys
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Protocol

from lab import env as _env
from lab.errors import LabError

__all__ = [
    "Progress",
    "Run",
    "RunNotStored",
    "RunSink",
    "Session",
    "SinkFailed",
    "collect",
    "failed_run",
]

Record = dict[str, Any]

#: progress(done, total, label): how far an experiment has got, for a progress bar.
Progress = Callable[[int, int, str], None]


@dataclass
class Run:
    experiment: str
    params: dict[str, Any]
    env: dict[str, Any]
    records: list[Record] = field(default_factory=list)
    status: str = "running"  # running, ok, failed, interrupted
    started: str = ""
    finished: str | None = None
    run_id: int | None = None
    error: str | None = None
    label: str | None = None  # an attendee's name, a branch: `daemonlab run --label`

    def to_json(self) -> dict[str, Any]:
        """What `--json` prints: experiment, run_id, env, records (and the rest)."""
        return {
            "experiment": self.experiment,
            "run_id": self.run_id,
            "status": self.status,
            "error": self.error,
            "label": self.label,
            "started": self.started,
            "finished": self.finished,
            "params": self.params,
            "env": self.env,
            "records": self.records,
        }


class SinkFailed(LabError):
    """The sink could not take a run or a record (a full disk, a server gone, read-only)."""

    exit_code = 1


class RunNotStored(LabError):
    """The sink failed mid-run; the message says where the measured records went instead."""

    exit_code = 1


class RunSink(Protocol):
    """Somewhere runs go as they happen (the results store implements this).

    begin, add and finish raise SinkFailed when they cannot store;
    rescue_path names a file for the records of a run they could not store.
    """

    def begin(self, run: Run) -> None: ...
    def add(self, run: Run, record: Record) -> None: ...
    def finish(self, run: Run) -> None: ...
    def rescue_path(self, run: Run) -> Path: ...


@dataclass
class Session:
    """What a running experiment may touch besides its params."""

    progress: Progress
    env: dict[str, Any]  # add facts only the experiment knows (a server's version)

    def step(self, done: int, total: int, label: str = "") -> None:
        self.progress(done, total, label)


def _now() -> str:
    return _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds")


def _ignore_progress(done: int, total: int, label: str) -> None:
    """The default progress: nobody is watching."""


def collect(
    experiment: str,
    params: Any,
    measure: Callable[[Any, Session], Iterator[Record]],
    *,
    progress: Progress | None = None,
    sink: RunSink | None = None,
) -> Run:
    """Run `measure` to the end and return its Run; the sink sees every step.

    BaseException is caught on purpose: KeyboardInterrupt (Ctrl-C) and
    SystemExit (the daemon's TERM) must still mark the run interrupted and
    reach the sink before they carry on up. A sink that fails at begin stops
    the run before anything is measured; one that fails later is set aside
    and the records are rescued at the end (RunNotStored, raised from the
    `finally`, so that it wins over an interruption: its line says where the
    records are, which matters more than how the run ended).
    """
    run = Run(experiment, asdict(params), _env.fingerprint(), started=_now())
    session = Session(progress or _ignore_progress, run.env)
    if sink is not None:
        sink.begin(run)
    failure: list[SinkFailed] = []  # the first failure of the sink, once it failed

    def keep(step: str, *args: Any) -> None:
        """sink.add or sink.finish, until the sink first fails."""
        if sink is not None and not failure:
            try:
                getattr(sink, step)(*args)
            except SinkFailed as exc:
                failure.append(exc)

    try:
        for record in measure(params, session):
            run.records.append(record)
            keep("add", run, record)
    except (KeyboardInterrupt, SystemExit):
        run.status = "interrupted"
        raise
    except BaseException as exc:
        run.status, run.error = "failed", f"{type(exc).__name__}: {exc}"
        raise
    else:
        run.status = "ok"
    finally:
        run.finished = _now()
        keep("finish", run)
        if failure:
            raise _rescue(run, sink, failure[0])
    return run


def _rescue(run: Run, sink: RunSink | None, failure: SinkFailed) -> RunNotStored:
    """Put the run somewhere it survives the process, and say where in one line."""
    text = json.dumps(run.to_json(), indent=1) + "\n"
    count = f"{len(run.records)} record{'s' * (len(run.records) != 1)}"
    try:
        path = sink.rescue_path(run) if sink is not None else None
        if path is None:
            raise OSError("no place beside the store")
        # O_EXCL: never overwrite; a partial file from a disk still full is removed.
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        try:
            with os.fdopen(fd, "w") as out:
                out.write(text)
        except OSError:
            path.unlink(missing_ok=True)
            raise
        where = f"written to {path}"
    except OSError:
        sys.stdout.write(text)
        sys.stdout.flush()
        where = "printed on stdout as JSON"
    return RunNotStored(f"{failure}; the {run.experiment} run ({run.status}, {count}) is {where}")


def failed_run(experiment: str, params: dict[str, Any], reason: str) -> Run:
    """A run that failed before it measured anything, with its reason, for the store."""
    now = _now()
    return Run(experiment, params, _env.fingerprint(), [], "failed", now, now, error=reason)
