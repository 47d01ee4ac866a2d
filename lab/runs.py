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
from enum import StrEnum
from pathlib import Path
from typing import Any, Protocol

from lab import env as _env
from lab import states
from lab.errors import LabError

__all__ = [
    "MOVES",
    "NOISY",
    "NOTES",
    "Progress",
    "Run",
    "RunNotStored",
    "RunSink",
    "Session",
    "SinkFailed",
    "Status",
    "WARNINGS",
    "collect",
    "failed_run",
]

Record = dict[str, Any]

#: progress(done, total, label): how far an experiment has got, for a progress bar.
Progress = Callable[[int, int, str], None]

#: The env key of a run's notes (Session.note): what a reader of its table should know.
NOTES = "notes"
#: The env key of a run's warnings (Session.warn): the figures may not carry the lesson.
WARNINGS = "warnings"
#: The env key set (True) by Session.too_noisy: the table would teach the opposite.
NOISY = "too_noisy"


class Status(StrEnum):
    """Where a run is. A StrEnum: stored and printed as its value, so a store written
    before the enum existed reads back the same ("ok" == Status.OK)."""

    RUNNING = "running"
    OK = "ok"
    FAILED = "failed"
    INTERRUPTED = "interrupted"


#: Every move a run's status may make (Run.end refuses any other); a run ends once.
MOVES = {
    # RUNNING -> OK: measure() ran to its end (collect)
    (Status.RUNNING, Status.OK),
    # RUNNING -> FAILED: measure() raised (collect), or a front door failed before
    # measuring (failed_run: no server, bad input found late)
    (Status.RUNNING, Status.FAILED),
    # RUNNING -> INTERRUPTED: Ctrl-C or SystemExit, the daemon's TERM (collect); or, read
    # back from a store, the writer died without saying so (lab.results)
    (Status.RUNNING, Status.INTERRUPTED),
}


@dataclass
class Run:
    experiment: str
    params: dict[str, Any]
    env: dict[str, Any]
    records: list[Record] = field(default_factory=list)
    status: Status = Status.RUNNING
    started: str = ""
    finished: str | None = None
    run_id: int | None = None
    error: str | None = None
    label: str | None = None  # an attendee's name, a branch: `daemonlab run --label`

    def __post_init__(self) -> None:
        self.status = Status(self.status)  # as read from a store: a plain string

    def end(self, status: Status, error: str | None = None) -> None:
        """Move to `status` (one of MOVES), with the reason it failed."""
        self.status = states.check(MOVES, self.status, status, "a run")
        self.error = error

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

    def note(self, text: str) -> None:
        """One line a reader of the run's table should know (a part skipped, a ratio said),
        stored with the run (env["notes"])."""
        self.env.setdefault(NOTES, []).append(text)

    def too_noisy(self, text: str) -> None:
        """A note saying the figures that carry the lesson's point scatter more than the
        point is large (lab/noise.py). Marked, so that where a reader would take the table
        for the lesson (the tour) the note stands in its place."""
        self.note(text)
        self.env[NOISY] = True

    def warn(self, text: str) -> None:
        """One line saying the figures may not carry the lesson this time, stored with
        the run and printed by the CLI after its table; said once."""
        found = self.env.setdefault(WARNINGS, [])
        if text not in found:
            found.append(text)


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
        run.end(Status.INTERRUPTED)
        raise
    except BaseException as exc:
        run.end(Status.FAILED, f"{type(exc).__name__}: {exc}")
        raise
    else:
        run.end(Status.OK)
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
    run = Run(experiment, params, _env.fingerprint(), [], Status.RUNNING, now, now)
    run.end(Status.FAILED, reason)
    return run
