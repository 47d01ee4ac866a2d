"""`daemonlab slide NAME`: a lesson's slide, the talk's point as the shortest Python that runs.

Every lesson opens with lab/experiments/NAME/slide.py: 10 to 40 lines of code, a
main(), and a docstring that says what goes wrong with it and which part of
the lesson fixes that. This prints it (highlighted at a terminal, plain into
a pipe) or runs it:

    daemonlab slide sleep                              # the source
    daemonlab slide sleep --run                        # python -m lab.experiments.sleep.slide
    daemonlab slide daemonize --run /tmp/slide.pid     # what follows --run goes to the slide

A notebook prints one with `print(lab.slides.source("sleep"))`.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

__all__ = ["add_parser", "module_name", "path", "source"]


def module_name(name: str) -> str:
    """The slide's module, or one LabError line naming the lesson meant."""
    import difflib

    from lab import experiments
    from lab.errors import LabError

    known = experiments.names()
    if name not in known:
        close = difflib.get_close_matches(name, known, n=1)
        hint = f"did you mean {close[0]}?" if close else f"known: {', '.join(known)}"
        raise LabError(f"slide: no lesson {name!r} ({hint})")
    return f"lab.experiments.{name}.slide"


def path(name: str) -> Path:
    """The slide's file, found without importing its lesson."""
    parts = module_name(name).split(".")
    return Path(__file__).resolve().parent.joinpath(*parts[1:]).with_suffix(".py")


def source(name: str) -> str:
    return path(name).read_text()


def add_parser(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "slide",
        help="a lesson's slide: its point as the shortest Python that runs (--run runs it)",
        description=__doc__.split("\n\n")[0],
        allow_abbrev=False,
    )
    p.add_argument("lesson", metavar="NAME")
    p.add_argument(
        "--run",
        nargs=argparse.REMAINDER,
        metavar="ARG",
        help="run it, after NAME: daemonlab slide NAME --run [ARG ...] (the ARGs go to the slide)",
    )
    p.set_defaults(func=cmd_slide)


def cmd_slide(args: argparse.Namespace) -> int:
    import os
    import sys

    if args.run is None:
        show(args.lesson)
        return 0
    argv = [sys.executable, "-m", module_name(args.lesson), *args.run]
    sys.stdout.flush()
    # Exactly what a learner types, in this process: its pid, its signals, its exit status,
    # its Ctrl-C (a KeyboardInterrupt traceback from each of its processes, as typed too).
    os.execv(sys.executable, argv)


def show(name: str) -> None:
    import sys

    from lab.report import console

    text = source(name)
    out = console()
    if not out.is_terminal:  # a pipe or a file gets the file itself, byte for byte
        sys.stdout.write(text)
        return
    from rich.syntax import Syntax

    out.print(Syntax(text, "python", line_numbers=True, word_wrap=True))
