"""`daemonlab daemon start|check|stop|status|reload|logs`: the harness's command line.

Thin, like lab/cli.py: it parses, calls lab.daemon, prints. Everything it
says about a running daemon comes from that daemon (its pidfile lock and the
status file it writes when asked with USR1), never from a guess such as "a
process with that pid exists".
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import time
from pathlib import Path
from typing import Any

from lab import params
from lab.errors import LabError

__all__ = ["add_parser"]

#: LSB exit code of `status` when the daemon is not running.
EXIT_NOT_RUNNING = 3
#: How often the CLI looks again while it waits for the daemon (stop, status).
POLL = 0.05


class NotStarted(LabError):
    """The launcher's refusal (already running, bad config, cannot drop privileges)."""

    exit_code = 1


def add_parser(subparsers: Any) -> None:
    """Register `daemon` and its actions on the top-level parser's subparsers."""
    daemon = subparsers.add_parser(
        "daemon",
        help="the harness: a daemon that runs experiments on a schedule",
        description="Run experiments unattended on a schedule, as a real Unix daemon.",
        allow_abbrev=False,
    )
    actions = daemon.add_subparsers(dest="daemon_action", required=True, metavar="ACTION")

    def action(name: str, func: Any, help: str) -> argparse.ArgumentParser:
        p = actions.add_parser(name, help=help, description=help, allow_abbrev=False)
        p.set_defaults(func=func)
        return p

    p = action("start", cmd_start, "start the harness (detached unless --foreground)")
    _start_options(p)
    p.add_argument(
        "--experiment",
        nargs=argparse.REMAINDER,
        metavar="NAME [OPTIONS]",
        help="run NAME with these options of its own (put it last); instead of --config",
    )
    p = action("check", cmd_check, "check a config as start would, without starting anything")
    p.add_argument("--config", required=True, help="the TOML file to check")
    p.add_argument("--foreground", action="store_true", help="check it as --foreground runs it")
    p = action("stop", cmd_stop, "TERM the harness, wait --timeout, then KILL")
    _where_options(p)
    p.add_argument(
        "--timeout",
        type=params.seconds(0),
        default=30.0,
        help="seconds to wait after TERM (0: none)",
    )
    p = action("status", cmd_status, "ask the running harness how it is")
    _where_options(p)
    p.add_argument(
        "--timeout", type=params.seconds(), default=5.0, help="seconds to wait for the answer"
    )
    p = action("reload", cmd_reload, "HUP: re-read the config file (a bad one is refused)")
    _where_options(p)
    p.add_argument(
        "--timeout", type=params.seconds(), default=5.0, help="seconds to wait for the answer"
    )
    p = action("logs", cmd_logs, "print the end of the harness's log")
    _where_options(p)
    p.add_argument(
        "-n", "--lines", type=params.whole_number(1), default=50, help="how many lines (default 50)"
    )


def _start_options(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--config", type=params.path("--config"), help="a TOML file: experiments, intervals, paths"
    )
    p.add_argument("--every", help="with --experiment: the interval (30s, 10m, 2h; default 10m)")
    p.add_argument(
        "--foreground",
        action="store_true",
        help="do not detach (for systemd Type=notify, supervisord, honcho, containers)",
    )
    p.add_argument(
        "--pidfile", type=params.path("--pidfile"), help="default: next to the results store"
    )
    p.add_argument(
        "--log", type=params.path("--log"), help="default: next to the pidfile (foreground: stderr)"
    )
    p.add_argument(
        "--results",
        type=params.path("--results"),
        help="the results store (default: LAB_RESULTS or results/lab.db)",
    )
    p.add_argument("--umask", help="octal, default 022; one that lets others write is refused")
    p.add_argument("--user", help="when started as root, run as this user")
    p.add_argument(
        "--ready-timeout", type=params.seconds(), help="seconds the launcher waits (default 30)"
    )


def _where_options(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--config", type=params.path("--config"), help="the TOML file the harness was started with"
    )
    p.add_argument(
        "--pidfile",
        type=params.path("--pidfile"),
        help="the harness's pidfile (default: next to the results)",
    )


# -- start ---------------------------------------------------------------------------
def _config(args: argparse.Namespace):
    from lab import experiments, params
    from lab.daemon import config as config_mod

    paths = {k: getattr(args, k) for k in ("pidfile", "log", "results", "umask", "user")}
    if args.experiment is not None:
        if args.config:
            raise LabError("give --config FILE or --experiment NAME, not both")
        if not args.experiment:
            raise LabError("--experiment needs a NAME")
        name, rest = args.experiment[0], args.experiment[1:]
        module = experiments.load(name)
        from lab.cli import Parser  # a mistake in these options is one line too

        inner = Parser(
            prog=f"daemonlab daemon start --experiment {name}",
            argument_default=argparse.SUPPRESS,
            allow_abbrev=False,
        )
        _start_options(inner)
        try:
            params.add_arguments(inner, module.Params)
        except argparse.ArgumentError as exc:  # an experiment option named like ours
            raise LabError(f"{name} cannot run under the harness: {exc}") from None
        more = inner.parse_args(rest)
        for key, value in vars(more).items():
            setattr(args, key, value)
        paths = {k: getattr(args, k) for k in paths}
        chosen = params.from_cli(module.Params, args)
        return config_mod.from_options(
            name, args.every or "10m", chosen, foreground=args.foreground, **paths
        )
    if args.config:
        if args.every:
            raise LabError("--every goes with --experiment; a config file says it per [[run]]")
        return config_mod.load(args.config, foreground=args.foreground, overrides=paths)
    raise LabError("start needs --config FILE or --experiment NAME [its options]")


def cmd_start(args: argparse.Namespace) -> int:
    from lab.daemon import access, steps
    from lab.daemon.harness import prepare_files

    config = _config(args)
    owner = steps.user_ids(config.user)  # an unknown user is refused here
    access.check_readable(config.user)  # before anything is made for a user who cannot run
    prepare_files(config, owner)
    _warm_up()
    if args.foreground:
        return _foreground(config)
    options = steps.Options(
        pidfile=str(config.pidfile),
        log=str(config.log) if config.log else None,
        umask=config.umask,
        user=config.user,
    )
    result = steps.launch(
        options,
        lambda detached: _serve_detached(config, detached),
        ready_timeout=args.ready_timeout or 30.0,
    )
    if not result.ok:
        raise NotStarted(f"daemon not started: {result.message}")
    print(f"started: pid {result.pid}, pidfile {config.pidfile}, log {config.log}")
    return 0


def _warm_up() -> None:
    """Load now what the daemon needs later, while we can still read it.

    After dropping to another user the interpreter's own files may be out of
    reach (a pyenv Python under a root-only /root): sysconfig's data module,
    read by the environment fingerprint of every run, is loaded and cached
    here, and the forked daemon inherits the cache. The experiments
    themselves were imported when the configuration was checked.
    """
    from lab import env

    env.fingerprint()


def _serve_detached(config, detached) -> int:
    """The daemon's life, after steps 1-13; tells the launcher when it runs."""
    from lab.daemon.harness import Harness
    from lab.daemon.service import serve_detached

    return serve_detached(
        detached,
        lambda ready: Harness(config).serve(ready=ready),
        logger="lab.daemon",
        tag="daemonlab",
        refused=NotStarted.exit_code,
    )


def _foreground(config) -> int:
    """New-style (`man 7 daemon`): no fork, no setsid; umask, pidfile, user, sd_notify."""
    from lab.daemon.harness import Harness
    from lab.daemon.service import serve_foreground

    log = str(config.log) if config.log is not None else None
    return serve_foreground(
        lambda ready: Harness(config).serve(ready=ready),
        pidfile=str(config.pidfile),
        log=log,
        umask=config.umask,
        user=config.user,
        logger="lab.daemon",
        tag="daemonlab",
    )


def cmd_check(args: argparse.Namespace) -> int:
    """What `start --config FILE` would run, or the one line saying what is wrong with it."""
    from lab.daemon import config as config_mod
    from lab.daemon import steps
    from lab.daemon.pidfile import holder

    config = config_mod.load(args.config, foreground=args.foreground)
    steps.user_ids(config.user)  # an unknown user, or one only root may become, is refused
    print(f"ok: {config.source}")
    for job in config.jobs:
        changed = _changed_params(job.params).items()
        given = " ".join(f"{k}={_shown(v)}" for k, v in changed)
        print(f"run        {job.experiment} every {job.every:g}s" + (f" ({given})" * bool(given)))
    pid = holder(config.pidfile)
    print(f"pidfile    {config.pidfile} ({'free' if pid is None else f'locked by pid {pid}'})")
    print(f"log        {config.log or '(stderr)'}")
    print(f"results    {config.results}")
    print(f"umask      {config.umask:03o}")
    print(f"user       {config.user or '(the one who starts it)'}")
    return 0


def _shown(value: Any) -> str:
    """A param as it would be typed: impl=lab,python-daemon."""
    return ",".join(map(str, value)) if isinstance(value, tuple) else str(value)


def _changed_params(chosen: Any) -> dict[str, Any]:
    """The params that differ from the experiment's defaults."""
    import dataclasses

    defaults = type(chosen)()
    return {
        f.name: getattr(chosen, f.name)
        for f in dataclasses.fields(chosen)
        if getattr(chosen, f.name) != getattr(defaults, f.name)
    }


# -- stop / status / reload / logs ---------------------------------------------------------
def _pidfile(args: argparse.Namespace) -> Path:
    import tomllib

    from lab.daemon.config import default_pidfile, results_path
    from lab.results import default_path

    if args.pidfile:
        return Path(args.pidfile).absolute()
    if args.config:
        from lab.daemon.config import read_toml_text

        path = Path(args.config).absolute()
        try:
            daemon = tomllib.loads(read_toml_text(path)).get("daemon", {})
        except tomllib.TOMLDecodeError as exc:
            raise LabError(f"cannot read config {path}: {exc}") from None
        if not isinstance(daemon, dict):
            daemon = {}  # `daemon check` says what is wrong with it; here only paths matter
        if isinstance(daemon.get("pidfile"), str):
            return (path.parent / daemon["pidfile"]).absolute()
        if isinstance(daemon.get("results"), str):
            return default_pidfile(results_path(daemon["results"], path.parent).absolute())
    return default_pidfile(default_path().absolute())


def _status_path(pidfile: Path) -> Path:
    return pidfile.with_name(pidfile.stem + ".status.json")


def _read_status(pidfile: Path) -> dict[str, Any]:
    """The harness's last status, or {} when there is none a reader can use (missing,
    torn, a directory, or JSON of another shape than an object)."""
    try:
        status = json.loads(_status_path(pidfile).read_text())
    except (OSError, ValueError):
        return {}
    return status if isinstance(status, dict) else {}


def _running(pidfile: Path) -> int | None:
    from lab.daemon.pidfile import holder

    return holder(pidfile)


def _not_running(pidfile: Path) -> str:
    return f"not running (pidfile {pidfile} is not locked)"


def cmd_stop(args: argparse.Namespace) -> int:
    pidfile = _pidfile(args)
    pid = _running(pidfile)
    if pid is None:
        print(_not_running(pidfile))
        return 0
    run = (_read_status(pidfile).get("running") or {}).get("pid")
    began = time.monotonic()
    os.kill(pid, signal.SIGTERM)
    if _wait_gone(pidfile, pid, args.timeout):
        print(f"stopped pid {pid} with TERM after {time.monotonic() - began:.1f}s")
        return 0
    # Escalate visibly: say so, KILL the harness and its run's process group, then wait.
    os.kill(pid, signal.SIGKILL)
    run = (_read_status(pidfile).get("running") or {}).get("pid") or run
    if run:
        try:
            os.killpg(run, signal.SIGKILL)
        except ProcessLookupError:
            pass
    _wait_gone(pidfile, pid, 5.0)
    print(f"pid {pid} did not stop within {args.timeout:g}s of TERM: stopped it with KILL")
    return 0


def _wait_gone(pidfile: Path, pid: int, timeout: float) -> bool:
    """True once `pid` no longer holds the pidfile (the kernel drops the lock at exit)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if _running(pidfile) != pid:
            return True
        time.sleep(POLL)
    return _running(pidfile) != pid


def _ask(pidfile: Path, sig: signal.Signals, counter: str, timeout: float) -> dict[str, Any]:
    """Signal the daemon and wait until its status file shows it answered."""
    pid = _running(pidfile)
    if pid is None:
        raise _NotRunning(_not_running(pidfile))
    before = _read_status(pidfile)
    seen = before.get(counter, -1) if before.get("pid") == pid else -1
    os.kill(pid, sig)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        status = _read_status(pidfile)
        if status.get("pid") == pid and status.get(counter, -1) > seen:
            return status
        time.sleep(POLL)
    raise LabError(f"pid {pid} holds {pidfile} but did not answer {sig.name} within {timeout:g}s")


class _NotRunning(LabError):
    exit_code = EXIT_NOT_RUNNING


def cmd_status(args: argparse.Namespace) -> int:
    status = _ask(_pidfile(args), signal.SIGUSR1, "answers", args.timeout)
    running = status["running"]
    print(f"pid        {status['pid']} (uid {status['uid']})")
    print(f"uptime     {status['uptime_s']:.0f}s (since {status['started']})")
    print(f"runs done  {status['runs_done']} ({status['runs_failed']} failed)")
    if running:
        print(f"running    {running['experiment']} (pid {running['pid']}, {running['for_s']:.1f}s)")
    else:
        print("running    nothing")
    for job in status["jobs"]:
        nxt = max(job["next_in_s"], 0)
        print(f"schedule   {job['experiment']} every {job['every_s']:g}s, next in {nxt:.0f}s")
    print(f"last error {status['last_error'] or '-'}")
    print(f"results    {status['results']}")
    print(f"log        {status['log'] or '(stderr)'}")
    return 0


def cmd_reload(args: argparse.Namespace) -> int:
    status = _ask(_pidfile(args), signal.SIGHUP, "reloads", args.timeout)
    verdict = status["last_reload"]
    print(f"pid {status['pid']}: reload {verdict}")
    return 1 if verdict.startswith("refused") else 0


def cmd_logs(args: argparse.Namespace) -> int:
    pidfile = _pidfile(args)
    where = _read_status(pidfile).get("log") or str(pidfile.with_name("daemonlab.log"))
    try:
        with open(where, errors="replace") as f:
            lines = f.readlines()
    except OSError as exc:
        raise LabError(f"cannot read log {where}: {exc.strerror}") from None
    sys.stdout.writelines(lines[-args.lines :] if args.lines > 0 else lines)
    return 0
