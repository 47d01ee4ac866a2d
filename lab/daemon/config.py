"""The harness's configuration: TOML (tomllib), checked whole before it is used.

    [daemon]
    pidfile = "/var/run/daemonlab/daemonlab.pid"   # default: next to the results
    log = "/var/log/daemonlab.log"                 # default: next to the pidfile
    results = "/var/lib/daemonlab/lab.db"          # default: LAB_RESULTS or ./results/lab.db
    umask = "022"
    user = "nobody"                                # only when started as root

    [[run]]
    experiment = "cpu"
    every = "10m"                                  # 30s, 10m, 2h, 1d
    [run.params]
    workers = [1, 2]

A mistake is refused with the file, the line and the key at fault, before the
daemon starts (or, on reload, before the old configuration is let go). The
experiment parameters go through the same Params classes as the CLI's
options, so a value the CLI refuses is refused here for the same reason.
Relative paths are taken from the config file's folder (or the launcher's
working directory for options): the daemon itself works in /.

The results store here is a file: the daemon keeps its pidfile, log and
status beside it and makes them its user's. A URL (`mysql://user:password@...`)
is refused in one line that does not repeat it, since it may hold a password;
taken as a path, it once named a folder after the password and printed it.
"""

from __future__ import annotations

import math
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from lab import experiments
from lab import params as params_mod
from lab.daemon.steps import check_umask
from lab.errors import LabError
from lab.results import default_path, is_url

__all__ = [
    "Config",
    "Job",
    "from_options",
    "load",
    "parse_every",
    "parse_umask",
    "results_path",
]

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
_DAEMON_KEYS = {"pidfile", "log", "results", "umask", "user"}
_RUN_KEYS = {"experiment", "every", "params"}


@dataclass(frozen=True)
class Job:
    """One experiment the harness runs every `every` seconds with these params."""

    experiment: str
    every: float
    params: Any  # the experiment's Params instance, already checked


@dataclass(frozen=True)
class Config:
    jobs: tuple[Job, ...]
    pidfile: Path
    log: Path | None  # None: the standard streams (foreground under a manager)
    results: Path
    umask: int = 0o022
    user: str | None = None
    source: Path | None = None  # the TOML file, re-read on HUP
    #: Where the launcher ran: what the default results path (LAB_RESULTS or
    #: ./results/lab.db, maybe relative) is taken from, at start and at every
    #: reload alike. The daemon itself works in /, where "./results" means /results.
    launch_dir: Path = Path("/")

    @property
    def status(self) -> Path:
        """Where the daemon answers `status`: next to its pidfile."""
        return self.pidfile.with_name(self.pidfile.stem + ".status.json")


#: An interval between runs, s: at least a second (a run takes longer than that,
#: and under it the harness would start them back to back), at most a year.
EVERY_RANGE_S = (1.0, 366 * 86400.0)


def parse_every(text: Any) -> float:
    """ "30s", "10m", "2h", "1d" (or a number of seconds) -> seconds, above 0."""
    if isinstance(text, int | float) and not isinstance(text, bool):
        seconds = float(text)
    else:
        match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([smhd]?)\s*", str(text), re.ASCII)
        if not match:
            raise LabError(f"bad interval {text!r} (use 30s, 10m, 2h or 1d)")
        seconds = float(match.group(1)) * _UNITS[match.group(2) or "s"]
    if not math.isfinite(seconds):  # nan would run back to back, inf never
        raise LabError(f"interval {text!r} must be a finite number of seconds")
    if not EVERY_RANGE_S[0] <= seconds <= EVERY_RANGE_S[1]:  # 1e-300 ran back to back
        low, high = EVERY_RANGE_S
        raise LabError(f"interval {text!r} must be from {low:g} s to {high / 86400:g} days")
    return seconds


def parse_umask(value: Any) -> int:
    """ "022" or 0o022 -> 18; refuses masks that let others write (see steps.check_umask)."""
    if isinstance(value, int) and not isinstance(value, bool):
        mask = value
    else:
        try:
            mask = int(str(value), 8)
        except ValueError:
            raise LabError(f"bad umask {value!r} (octal, like 022)") from None
    return check_umask(mask)


def results_path(results: str, where: Path) -> Path:
    """The results file `results` names, from folder `where`; a URL is refused without
    being repeated (see the header)."""
    if is_url(results):
        raise LabError(
            "the daemon's results store must be a file (its pidfile, log and status live"
            " beside it), not a URL: give a path; for a MySQL store run `daemonlab run`"
            " with LAB_RESULTS (the URL is not repeated here: it may hold a password)"
        )
    return where / results


def default_pidfile(results: Path) -> Path:
    return results.parent / "daemonlab.pid"


def from_options(
    experiment: str,
    every: str,
    chosen: Any,
    *,
    pidfile: str | None = None,
    log: str | None = None,
    results: str | None = None,
    umask: str | None = None,
    user: str | None = None,
    foreground: bool = False,
) -> Config:
    """The configuration `start --experiment NAME --every 10m [params]` describes."""
    experiments.load(experiment)
    job = Job(experiment, parse_every(every), chosen)
    base = Config((job,), Path(), None, Path(), launch_dir=Path.cwd())
    return _paths(base, pidfile, log, results, Path.cwd(), foreground, umask, user)


def _paths(
    config: Config,
    pidfile: str | None,
    log: str | None,
    results: str | None,
    where: Path,
    foreground: bool,
    umask: Any,
    user: str | None,
) -> Config:
    results_file = results_path(results, where) if results else config.launch_dir / default_path()
    pid_path = (where / pidfile) if pidfile else default_pidfile(results_file)
    if log:
        log_path: Path | None = where / log
    else:  # a manager (supervisord, systemd, honcho) collects the foreground's stderr
        log_path = None if foreground else pid_path.with_name("daemonlab.log")
    return replace(
        config,
        pidfile=pid_path.absolute(),
        log=log_path.absolute() if log_path else None,
        results=results_file.absolute(),
        umask=parse_umask(umask) if umask is not None else 0o022,
        user=_user(user),
    )


def _user(user: str | None) -> str | None:
    """The user to become, or None (stay who starts it); an empty name is refused.

    "" would otherwise read as "no user": a daemon started as root would stay
    root without a word, the opposite of what was asked.
    """
    if user is not None and not user.strip():
        raise LabError("--user needs a user name: an empty one would leave the daemon root")
    return user


def load(
    path: str | Path,
    *,
    foreground: bool = False,
    overrides: Mapping[str, Any] | None = None,
    launch_dir: Path | None = None,
) -> Config:
    """Read and check a TOML file; LabError names the file, line and key at fault.

    `overrides` (from command-line options such as --pidfile) win over the file.
    `launch_dir`: where the default results path is taken from (see Config):
    the current directory at start; a reload passes the one the daemon started with.
    """
    path = Path(path).absolute()
    text = read_toml_text(path)
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise LabError(f"{path}: {exc}") from None
    where = _Locator(path, text)

    for key in data:
        if key not in ("daemon", "run"):
            raise where.error(None, 0, key, "unknown table (expected [daemon] and [[run]])")
    daemon = data.get("daemon", {})
    if not isinstance(daemon, dict):
        raise where.error(None, 0, "daemon", "must be a table: [daemon]")
    for key, value in daemon.items():
        if key not in _DAEMON_KEYS:
            known = ", ".join(sorted(_DAEMON_KEYS))
            raise where.error("daemon", 0, key, f"unknown key (known: {known})")
        if key != "umask" and not isinstance(value, str):
            what = "a user name" if key == "user" else "a path"
            raise where.error("daemon", 0, key, f"must be {what} in quotes, got {value!r}")
    runs = data.get("run", [])
    if not isinstance(runs, list) or not runs or not all(isinstance(r, dict) for r in runs):
        raise LabError(f"{path}: no [[run]] table: nothing to run")

    jobs = []
    for i, run in enumerate(runs):
        for key in run:
            if key not in _RUN_KEYS:
                known = ", ".join(sorted(_RUN_KEYS))
                raise where.error("run", i, key, f"unknown key (known: {known})")
        if "experiment" not in run:
            raise where.error("run", i, None, "missing key 'experiment'")
        try:
            module = experiments.load(str(run["experiment"]))
        except LabError as exc:
            raise where.error("run", i, "experiment", str(exc)) from None
        try:
            every = parse_every(run.get("every", "10m"))
        except LabError as exc:
            raise where.error("run", i, "every", str(exc)) from None
        values = run.get("params", {})
        if not isinstance(values, dict):
            raise where.error("run", i, "params", "must be a table: [run.params] under its [[run]]")
        for key, value in values.items():  # one at a time, to name the key at fault
            try:
                params_mod.from_mapping(module.Params, {key: value})
            except LabError as exc:
                raise where.error("run.params", i, key, str(exc)) from None
        try:
            chosen = params_mod.from_mapping(module.Params, values)
        except LabError as exc:
            raise where.error("run", i, "params", str(exc)) from None
        jobs.append(Job(module.NAME, every, chosen))

    settings = {**daemon, **{k: v for k, v in (overrides or {}).items() if v is not None}}
    try:
        config = _paths(
            Config(
                tuple(jobs),
                Path(),
                None,
                Path(),
                source=path,
                launch_dir=launch_dir or Path.cwd(),
            ),
            settings.get("pidfile"),
            settings.get("log"),
            settings.get("results"),
            path.parent,
            foreground,
            settings.get("umask"),
            settings.get("user"),
        )
    except LabError as exc:
        text = str(exc)
        bad = next((k for k in ("umask", "user") if k in text), None)
        if "results store" in text:
            bad = "results"
        raise where.error("daemon", 0, bad, str(exc)) from None
    return config


def read_toml_text(path: Path) -> str:
    """A config file's text, or one line: unreadable, or not UTF-8 (TOML is UTF-8 only)."""
    try:
        return path.read_bytes().decode("utf-8")
    except OSError as exc:
        raise LabError(f"cannot read config {path}: {exc.strerror}") from None
    except UnicodeDecodeError as exc:
        raise LabError(f"{path}: not UTF-8 text (TOML files must be) at byte {exc.start}") from None


class _Locator:
    """Finds the line of `key` in the i-th table called `table` (tomllib gives no positions)."""

    _HEADER = re.compile(r"^\s*\[(\[)?\s*([\w.\-\"]+)\s*\]")

    def __init__(self, path: Path, text: str) -> None:
        self.path = path
        self.lines = text.splitlines()

    def line_of(self, table: str | None, index: int, key: str | None) -> int | None:
        counts: dict[str, int] = {}
        current: tuple[str, int] | None = (None, 0)  # type: ignore[assignment]
        header_line = None
        for number, line in enumerate(self.lines, 1):
            match = self._HEADER.match(line)
            if match:
                name = match.group(2)
                top = name.split(".")[0]
                if match.group(1):  # [[array]]
                    counts[top] = counts.get(top, -1) + 1
                current = (name, counts.get(top, 0))
                if current == (table, index) and key is None:
                    return number
                if current == (table, index):
                    header_line = number
                continue
            if key is not None and current == (table, index):
                if re.match(rf"^\s*\"?{re.escape(key)}\"?\s*=", line):
                    return number
        return header_line

    def error(self, table: str | None, index: int, key: str | None, why: str) -> LabError:
        number = self.line_of(table, index, key)
        where = f"{self.path}" + (f" line {number}" if number else "")
        if table == "run":
            what = f"[[run]] #{index + 1}"
        elif table == "run.params":
            what = f"[[run]] #{index + 1} params"
        else:
            what = f"[{table}]" if table else "top level"
        at = f" key {key!r}" if key else ""
        return LabError(f"{where}: {what}{at}: {why}")
