"""The experiment contract: a Run, and `collect`, which every experiment's run() calls.

An experiment is a generator of flat records (`measure(params, session)`);
`collect` wraps it into a Run. A sink (the results store) sees every record
the moment it exists, so a run cut short by Ctrl-C, a TERM from the daemon's
`stop`, or an exception keeps what it finished, marked interrupted or failed.
The experiment never prints: the CLI, notebooks and benchmarks present it.
"""

from __future__ import annotations

import datetime as _dt
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from typing import Any, Protocol

from lab import env as _env

__all__ = ["Progress", "Run", "RunSink", "Session", "collect"]

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

    def to_json(self) -> dict[str, Any]:
        """What `--json` prints: experiment, run_id, env, records (and the rest)."""
        return {
            "experiment": self.experiment,
            "run_id": self.run_id,
            "status": self.status,
            "params": self.params,
            "env": self.env,
            "records": self.records,
        }


class RunSink(Protocol):
    """Somewhere runs go as they happen (the results store implements this)."""

    def begin(self, run: Run) -> None: ...
    def add(self, run: Run, record: Record) -> None: ...
    def finish(self, run: Run) -> None: ...


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
    reach the sink before they carry on up.
    """
    run = Run(experiment, asdict(params), _env.fingerprint(), started=_now())
    session = Session(progress or _ignore_progress, run.env)
    if sink is not None:
        sink.begin(run)
    try:
        for record in measure(params, session):
            run.records.append(record)
            if sink is not None:
                sink.add(run, record)
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
        if sink is not None:
            sink.finish(run)
    return run
