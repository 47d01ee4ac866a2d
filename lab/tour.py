"""`daemonlab tour`: the talk, one chapter per experiment, each explained then run small.

Each experiment's TOUR is its chapter: (markdown text, params overrides or
None) steps, the text printed first, then the run that shows it. Chapters
come in the talk's order (lab.experiments.ORDER).

    daemonlab tour                      every chapter, every step
    daemonlab tour --quick              every chapter's text, and its first run only
    daemonlab tour --chapter sleep      one chapter (repeatable)

A chapter that cannot run (its server is missing: MySQL for sleep), or a
part of one that could not (a broker, prosody, wrk, monit not installed),
says so in one line, with the way to install or start it, and the tour goes
on with the next; the tour then ends with exit 1 and the list of what did
not run: the tour is the lab's "does it all work here?", and a part skipped
must not read as a pass. It ends, either way, with where to go next.

Nothing is left running, and the tour checks it rather than hopes: every
process it starts inherits a mark in its environment (DAEMONLAB_TOUR, a
token of this tour), which a daemon's grandchild or a server started
detached keeps even after init adopted it. After the last chapter, any
process still alive with the mark is named, stopped (lab.children) and
makes the exit 1.

Why not make the tour a child subreaper (prctl), so orphans come back to
it? Then it is their parent, and it does not reap while a chapter runs: a
daemon that a manager watches (monit reads its pidfile) died as a zombie of
the tour's, still "there" to the manager, which never restarted it.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from typing import Any

__all__ = ["MARK", "add_parser", "chapters", "main"]

#: The environment variable that marks every process the tour started.
MARK = "DAEMONLAB_TOUR"


def add_parser(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "tour",
        help="the talk, experiment by experiment, explained and run small",
        description=__doc__.split("\n\n")[0],
        allow_abbrev=False,
    )
    p.add_argument(
        "--quick", action="store_true", help="each chapter's first run only (under 2 minutes)"
    )
    p.add_argument(
        "--chapter", action="append", default=[], metavar="NAME", help="only this one (repeatable)"
    )
    p.set_defaults(func=cmd_tour)


def cmd_tour(args: argparse.Namespace) -> int:
    from lab.report import console

    return main(console(), only=args.chapter, quick=args.quick)


def chapters(only: Sequence[str] = ()) -> list[str]:
    """The chapters to take, in the talk's order: every experiment, or those named."""
    from lab import experiments
    from lab.errors import LabError

    known = experiments.names()
    unknown = [name for name in only if name not in known]
    if unknown:
        raise LabError(f"no chapter {unknown[0]!r} (chapters: {', '.join(known)})")
    return [name for name in known if not only or name in only]


def main(out, only: Sequence[str] = (), quick: bool = False) -> int:
    import os
    import secrets

    names = chapters(only)
    mark = secrets.token_hex(8)
    before = os.environ.get(MARK)
    os.environ[MARK] = mark  # every process a chapter starts inherits it
    try:
        missed = [why for name in names for why in _chapter(out, name, quick)]
    finally:
        if before is None:
            del os.environ[MARK]
        else:
            os.environ[MARK] = before
        left = _leftovers(mark)
    from rich.markup import escape

    if left:
        out.print(f"[red]left running after the tour, now stopped:[/red] {escape(', '.join(left))}")
    if missed:
        out.print(f"[yellow]did not run ({len(missed)}, in {len(names)} chapters):[/yellow]")
        for why in missed:
            out.print(f"  {escape(why)}")
    out.rule("[bold]the end[/bold]")
    out.print(NEXT)
    return 1 if missed or left else 0


#: The tour's last words: where its runs went and what to do with them.
NEXT = (
    "The tour is over; every run it made is stored. Next: "
    "`daemonlab plot NAME` draws a lesson from its runs, `daemonlab report -o report` puts "
    "them all on one page, `daemonlab run NAME --help` shows what a lesson can vary, and "
    "notebooks/ walk through each lesson in Jupyter."
)


def _chapter(out, name: str, quick: bool) -> list[str]:
    """Print and run one chapter; what stopped it or what it could not run, a line each
    (empty when all of it ran)."""
    from rich.markdown import Markdown
    from rich.markup import escape

    from lab import children, experiments, params, report
    from lab.cli import Interrupted, execute
    from lab.errors import LabError

    module = experiments.load(name)
    out.rule(f"[bold]{name}[/bold]")  # the name only: a summary in a rule is cut with "…"
    out.print(f"[italic]{escape(module.SUMMARY)}[/italic]")
    ran, missed = False, []  # what a run could not measure: a tool, a server
    try:
        for text, overrides in module.TOUR:
            out.print(Markdown(text))
            if overrides is None:
                continue
            if quick and ran:
                out.print(f"[dim](--quick: `daemonlab tour --chapter {name}` runs this)[/dim]")
                continue
            chosen = params.from_mapping(module.Params, overrides)
            run = execute(module, chosen, noisy_instead=True)  # not a table noise turned round
            missed += report.missing(run)
            ran = True
    except Interrupted:
        raise
    except LabError as exc:  # a missing server, a store that failed: say so, go on
        out.print(f"[yellow]{name}: did not run: {escape(str(exc))}[/yellow]")
        missed.append(str(exc))
    finally:
        children.reap_all()  # our own children the chapter left ended, if any
    return [f"{name}: {why}" for why in dict.fromkeys(missed)]  # each said once


def _leftovers(mark: str) -> list[str]:
    """Processes still alive with this tour's mark, described; stopped (TERM, grace, KILL)."""
    import os

    import psutil

    from lab import children

    alive = []
    for p in psutil.process_iter():
        try:
            if p.pid != os.getpid() and p.environ().get(MARK) == mark and _running(p):
                alive.append(p)
        except psutil.Error:
            continue  # gone, or not ours to read: not ours to stop either
    described = [f"{p.pid} ({_name(p)})" for p in alive]
    for p in alive:
        children.stop_process(p.pid, grace=2.0)
    return described


def _running(p) -> bool:
    import psutil

    try:
        return p.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def _name(p) -> str:
    import psutil

    try:
        return " ".join(p.cmdline()[:3]) or p.name()
    except psutil.Error:
        return "?"
