"""`daemonlab serve`: the command line of the prefork lesson's servers.

A command family (lab/cli.py COMMAND_FAMILIES): `add_parser(subparsers)`
registers it, and only argparse is imported at the top, so `daemonlab
--help` stays fast. Numbers are parsed here, not by argparse, so that a bad
one is refused in the lab's one line instead of argparse's usage block.
"""

from __future__ import annotations

import argparse
from typing import Any

__all__ = ["add_parser"]

EXAMPLES = """\
examples:
  daemonlab serve --workers 4                   # the lab's server on :8000
  daemonlab serve --live                        # ... watching its workers; then
  kill -TTIN $(cat prefork.pid)                 #   in another terminal (--pid)
  daemonlab serve --server gunicorn-sync --app cpu   # the peer, the same app
  daemonlab serve --server uwsgi --setup tuned  # uWSGI, tuned as its docs say
  daemonlab serve --app io --no-db              # io without MySQL: time.sleep
"""


def add_parser(subparsers: Any) -> None:
    from lab.experiments.prefork.config import APPS, SERVERS, ServeConfig

    default = ServeConfig()
    p = subparsers.add_parser(
        "serve",
        help="run a WSGI server: the lab's preforking master, threads, asyncio or gunicorn",
        description=(
            "Serve a WSGI app with a Unicorn-style preforking server or one of its rivals.\n"
            "Its signals: TTIN, TTOU, QUIT graceful, TERM/INT quick, HUP, USR2, WINCH."
        ),
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        allow_abbrev=False,
    )
    p.set_defaults(func=cmd_serve)
    p.add_argument("--server", default=default.server, help=f"one of {', '.join(SERVERS)}")
    p.add_argument(
        "--workers",
        default=str(default.workers),
        help="worker processes (threads for --server threads; asyncio has one loop)",
    )
    p.add_argument(
        "--threads", default=str(default.threads), help="threads per gunicorn-gthread worker"
    )
    p.add_argument(
        "--setup",
        default=default.setup,
        help="default; tuned (gunicorn, uwsgi: as their docs tune them); linger (prefork: "
        "a graceful close, as gunicorn's); abrupt (gunicorn-sync without its close drain)",
    )
    p.add_argument("--app", default=default.app, help=f"{', '.join(APPS)}, or module:callable")
    p.add_argument("--host", default=default.host)
    p.add_argument("--port", default=str(default.port), help="0: any free port")
    p.add_argument(
        "--timeout",
        default=f"{default.timeout:g}",
        help="seconds: kill a worker silent this long; wait this long on a graceful stop",
    )
    p.add_argument("--pid", help="write the master's pid here (moved to PID.oldbin by USR2)")
    p.add_argument(
        "--count-file", dest="count", help="append a byte per request the app answers (counting)"
    )
    p.add_argument("--no-db", action="store_true", help="the io app sleeps instead of SELECT SLEEP")
    p.add_argument("--live", action="store_true", help="show the master and workers live (prefork)")


def cmd_serve(args: argparse.Namespace) -> int:
    from lab.experiments.prefork import serve
    from lab.experiments.prefork.config import ServeConfig

    config = ServeConfig(
        server=args.server,
        workers=_number(args.workers, int, "--workers"),
        threads=_number(args.threads, int, "--threads"),
        app=args.app,
        host=args.host,
        port=_number(args.port, int, "--port"),
        timeout=_number(args.timeout, float, "--timeout"),
        pid=args.pid,
        no_db=args.no_db,
        live=args.live,
        count=args.count,
        setup=args.setup,
    )
    return serve.run(config)


def _number(text: str, kind: type, option: str) -> Any:
    """A whole number (0 and up: a port of 0 is the kernel's pick) or a finite number of
    seconds above 0, within lab.params' bounds; `--timeout inf` once meant never."""
    import argparse

    from lab import params
    from lab.errors import LabError

    top = 65_535 if option == "--port" else params.MAX_WHOLE  # a TCP port is 16 bits
    check = params.whole_number(0, top) if kind is int else params.seconds()
    try:
        return check(text)
    except argparse.ArgumentTypeError as exc:
        raise LabError(f"{option}: {exc}") from None
