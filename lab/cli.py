"""The command line: parses, calls, prints. No experiment logic lives here.

Every expected failure is a LabError and leaves as one line on stderr with a
non-zero exit; Ctrl-C leaves with 130 after the run is stored as interrupted.
A traceback from here is a bug in the lab, never the user's fault.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import signal
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import NoReturn

from lab import params
from lab.children import STOP_SIGNALS
from lab.errors import LabError
from lab.plotting import PLOT_RUNS

__all__ = ["COMMAND_FAMILIES", "execute", "main"]

#: Modules that add a command with actions of its own: `daemonlab daemon start`.
COMMAND_FAMILIES = (
    "lab.daemon.cli",
    "lab.experiments.prefork.cli",
    "lab.compare",
    "lab.tour",
    "lab.htmlreport",
    "lab.bench",
    "lab.experiments.worker.cli",
    "lab.slides",
)


class Interrupted(LabError):
    """Ctrl-C (or TERM, HUP, QUIT) during a run: said in one line, after the run is stored."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.exit_code = 128 + stopped_by()  # the shell's convention: 130 for INT, 143 for TERM


#: The signal that stopped us, once one did (see _stop_as_ctrl_c); None: Ctrl-C or nothing.
_stopped_by: int | None = None


def stopped_by() -> int:
    """The signal that stopped this process: TERM, HUP or QUIT if one came, else INT."""
    return signal.SIGINT if _stopped_by is None else _stopped_by


def _stop_as_ctrl_c(signum: int, frame: object) -> None:
    """TERM, HUP and QUIT are handled exactly as Ctrl-C is.

    TERM: `kill PID`, a supervisor's stop (systemd, supervisord, to the pid or
    the whole group); HUP: the terminal or ssh session closing; QUIT: Ctrl-\\.
    Without this handler HUP and QUIT ended the process at once: no message,
    the run left `running`, every client cut off mid-query.

    This handler calls whatever handles Ctrl-C at that moment: Python's
    default_int_handler (KeyboardInterrupt), or asyncio.Runner's own, which
    cancels the main task so that its finally blocks can await. Either way
    every clean-up runs: queries in flight finish, clients hang up, children
    are reaped, servers are put back, the run is stored as interrupted. It
    calls it rather than raise_signal(SIGINT) as it once did: a run started
    with `cmd &` by a script ignores SIGINT (POSIX has the shell do that), and
    TERM passed on as an ignored SIGINT went nowhere; the run carried on. Only
    the first signal is passed on: a second one while that clean-up runs would
    abandon the very clean-up it waits for (KILL remains for that).
    """
    global _stopped_by
    if _stopped_by is not None:
        return
    _stopped_by = signum
    ctrl_c = signal.getsignal(signal.SIGINT)
    if not callable(ctrl_c):  # a library set INT to SIG_IGN since: the stop is still a stop
        raise KeyboardInterrupt
    ctrl_c(signal.SIGINT, frame)


def take_over_stop_signals() -> None:
    """Make every STOP_SIGNALS stop a run cleanly, whatever this process inherited.

    Dispositions and the signal mask survive fork and exec: `cmd &` in a
    script starts with INT and QUIT ignored (POSIX, for a shell without job
    control), a supervisor or a parent thread may leave them blocked. Python
    itself installs its Ctrl-C handler only where INT was not ignored. So INT
    gets default_int_handler (the one asyncio.Runner recognises and replaces
    while it runs), the others _stop_as_ctrl_c, and all four are unblocked.
    One exception, on purpose: HUP inherited as ignored is `nohup`'s request
    to outlive the terminal, and it is kept (docs/stopping.md).
    """
    global _stopped_by
    _stopped_by = None
    nohup = signal.getsignal(signal.SIGHUP) == signal.SIG_IGN
    signal.signal(signal.SIGINT, signal.default_int_handler)
    for signum in STOP_SIGNALS[1:]:
        if not (signum == signal.SIGHUP and nohup):
            signal.signal(signum, _stop_as_ctrl_c)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, STOP_SIGNALS)


class Formatter(argparse.HelpFormatter):
    """argparse's help, folded at spaces only: its textwrap broke one-thread-per-connection
    after "per-", a word cut in two at 80 columns."""

    def _split_lines(self, text: str, width: int) -> list[str]:
        import textwrap

        return textwrap.wrap(" ".join(text.split()), width, break_on_hyphens=False)


class Parser(argparse.ArgumentParser):
    """argparse, but a mistake is one LabError line (with "did you mean"), not usage + exit.

    argparse's own error() prints the usage, then the message, and exits 2;
    the lab's promise is one line and the CLI decides the exit. Subparsers
    made from this parser are of this class too, and fold their help as Formatter does.
    """

    def __init__(self, *args, **kwargs) -> None:
        kwargs.setdefault("formatter_class", Formatter)
        super().__init__(*args, **kwargs)

    def error(self, message: str) -> NoReturn:
        where = self.prog.removeprefix("daemonlab").strip()  # "run sleep", or the top level
        said = f"{where}: {message}" if where else message
        raise LabError(f"{said}{self._suggestion(message)}")

    def _get_values(self, action: argparse.Action, arg_strings: list[str]) -> object:
        """argparse drops a "--" value (`--timeout=--`) and then stores what is left, an
        empty list, without its type's check: every later comparison was a traceback."""
        if action.option_strings and action.nargs in (None, "?") and arg_strings == ["--"]:
            self.error(f"argument {'/'.join(action.option_strings)}: expected a value, not '--'")
        return super()._get_values(action, arg_strings)

    def _suggestion(self, message: str) -> str:
        import difflib
        import re

        unknown = re.search(r"unrecognized arguments: (\S+)", message)
        choice = re.search(r"invalid choice: '([^']*)' \(choose from (.*)\)", message)
        if unknown:
            word, known = unknown.group(1).split("=")[0], list(self._option_string_actions)
        elif choice:
            word, known = choice.group(1), re.findall(r"'([^']*)'", choice.group(2))
        else:
            return ""
        close = difflib.get_close_matches(word, known, n=1)
        return f" (did you mean {close[0]}?)" if close else ""


def _results(label: str | None = None):
    from lab.results import open_store

    if label is None and os.environ.get("LAB_LABEL"):  # what the store would take instead
        params.check_text(os.environ["LAB_LABEL"], "LAB_LABEL")
    return open_store(label=label)


def _stored(experiment: str | None = None):
    """The store, to read: a command that only reads never creates one (NothingStored,
    which names the lesson asked for in the command that would make one)."""
    from lab.results import NothingStored, open_store

    try:
        return open_store(readonly=True)
    except NothingStored as exc:
        raise NothingStored(exc.path, experiment or "NAME") from None


# -- list / run ------------------------------------------------------------------
def cmd_list(args: argparse.Namespace) -> int:
    _console().print(lessons_table())
    return 0


def lessons_table():
    """Each lesson's name and summary; a summary folds at words under its own column."""
    from rich.table import Table

    from lab import experiments

    table = Table(box=None, show_header=False, pad_edge=False)
    table.add_column(style="bold", no_wrap=True)
    table.add_column(overflow="fold")
    for name in experiments.names():
        table.add_row(name, experiments.load(name).SUMMARY)
    return table


def _run_parser(name: str, module) -> argparse.ArgumentParser:
    from lab import params

    parser = Parser(prog=f"daemonlab run {name}", description=module.SUMMARY, allow_abbrev=False)
    params.add_arguments(parser, module.Params)
    parser.add_argument("--full", action="store_true", help="the larger sweep (minutes)")
    parser.add_argument("--json", action="store_true", help="print the run as JSON on stdout")
    parser.add_argument("--no-store", action="store_true", help="do not keep the run")
    parser.add_argument(
        "--label",
        type=params.text("--label"),
        help="label the stored run (a name, a branch; LAB_LABEL)",
    )
    _table_options(parser)
    return parser


def _run_ids(parser: argparse.ArgumentParser) -> None:
    """--run ID, repeatable: ASCII digits, 1 to params.MAX_WHOLE (SQLite takes 64 bits)."""
    parser.add_argument(
        "--run",
        type=params.whole_number(1),
        action="append",
        default=[],
        help="a run id (repeatable)",
    )


def _table_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--wide", action="store_true", help="every column of the table")
    parser.add_argument(
        "--columns", metavar="KEY,...", help="only these record keys, in this order"
    )


def _chosen_columns(module, text: str | None) -> tuple[str, ...]:
    """--columns KEY,...: each key one of the experiment's columns, or refused in one line
    (an unknown key once printed an empty table and exited 0)."""
    if not text:
        return ()
    from lab import report

    cols = module.COLUMNS
    groups = cols.values() if isinstance(cols, dict) else [cols]
    known = [c.key for group in groups for c in report.parts(group, [])[0][1]]
    only = tuple(key.strip() for key in text.split(","))
    unknown = [key for key in only if key not in known]
    if unknown:
        raise LabError(f"--columns: unknown {', '.join(unknown)!r} (known: {', '.join(known)})")
    return only


def _print_tables(run, module, args: argparse.Namespace, noisy_instead: bool = False) -> None:
    from lab import report
    from lab.runs import NOISY

    only = _chosen_columns(module, args.columns)
    out = _console()
    if noisy_instead and run.env.get(NOISY):
        out.print("(the table is left out: its figures do not carry the point this time)")
    else:
        for table in report.records_tables(run, module.COLUMNS, wide=args.wide, only=only):
            out.print(table)
    for note in run.env.get("notes", ()):  # what the experiment says about its run
        out.print(report.wrapped(note, out.width), markup=False)
    for line in report.missing(run):  # a tool or server it lacked, with the way to get it
        out.print(report.wrapped(f"not run: {line}", out.width), style="yellow", markup=False)


def cmd_run(args: argparse.Namespace) -> int:
    from lab import experiments, params

    if args.experiment is None:  # `daemonlab run` alone asks what there is to run
        out = _console()
        out.print(lessons_table())
        out.print("run one: daemonlab run NAME  (its options: daemonlab run NAME --help)")
        return 0
    module = experiments.load(args.experiment)
    opts = _run_parser(args.experiment, module).parse_args(args.options)
    _chosen_columns(module, opts.columns)  # refused now, not after the run
    base = params.from_mapping(module.Params, module.FULL) if opts.full else None
    chosen = params.from_cli(module.Params, opts, base)
    run = execute(
        module, chosen, store=not opts.no_store, quiet=opts.json, table=opts, label=opts.label
    )
    if opts.json:
        print(json.dumps(run.to_json(), indent=2))
    return 0 if run.status == "ok" else 1


def execute(
    module, chosen, *, store=True, quiet=False, table=None, label=None, noisy_instead=False
):
    """Run one experiment with a progress bar, store it, and print its table.

    `table` holds the table options (--wide, --columns); None: the default table.
    `noisy_instead`: a run its lesson judged too noisy (Session.too_noisy) prints
    its notes without the table (the tour: a table there reads as the lesson).
    """
    from lab import noise, report
    from lab.runs import WARNINGS

    watch = noise.Watch()  # other processes' CPU during the run: said after it, if they competed
    sink = _results(label) if store else None
    try:
        with report.progress_bar(module.NAME) as progress:
            run = module.run(chosen, progress=progress, sink=sink)
    except KeyboardInterrupt:
        stored = sink is not None and sink.begun
        where = f"; what it finished is stored as interrupted in {sink.where}" if stored else ""
        by = signal.Signals(stopped_by()).name
        raise Interrupted(f"{module.NAME} interrupted by {by}{where}") from None
    finally:
        if sink is not None:
            sink.close()
    if not quiet:
        shape = table or argparse.Namespace(wide=False, columns=None)
        _print_tables(run, module, shape, noisy_instead)
        if store:
            _console().print(
                f"stored as run {run.run_id} in {sink.where}; plot it: daemonlab plot {module.NAME}"
            )
    # On stderr, so that --json's stdout stays one document.
    competed = watch.warning()
    for warning in [*([competed] if competed else []), *run.env.get(WARNINGS, [])]:
        print(report.wrapped(f"daemonlab: warning: {warning}"), file=sys.stderr)
    return run


# -- plot / results / export -------------------------------------------------------


def _chosen_runs(store, experiment: str | None, run_ids: Sequence[int], limit: int | None):
    """The runs asked for by id, else the newest `limit` that have records, failed ones left out."""
    if run_ids:
        runs = [store.run(i) for i in run_ids]
        for run in runs:
            if experiment and run.experiment != experiment:
                raise LabError(f"run {run.run_id} is a {run.experiment} run, not {experiment}")
        return runs
    return [r for r in store.runs(experiment, limit, measured=True) if r.status != "failed"]


def cmd_plot(args: argparse.Namespace) -> int:
    from lab import experiments, plotting

    experiments.load(args.experiment)  # an unknown name is refused before anything else
    output = _figure_path(args.output or f"{args.experiment}.png")
    with _stored(args.experiment) as store:
        runs = _chosen_runs(store, args.experiment, args.run, None if args.all else PLOT_RUNS)
    figure = plotting.draw(args.experiment, runs)
    path = plotting.save(figure, output)
    print(f"wrote {path} from run(s) {', '.join(str(r.run_id) for r in runs)}")
    return 0


def _figure_path(output: str) -> str:
    """-o NAME.FORMAT, refused in one line unless matplotlib writes FORMAT without help.

    matplotlib raises ValueError on an unknown suffix, appends ".png" to a name
    without one (so "wrote NAME" would be untrue), and writes pgf only with LaTeX."""
    from matplotlib.backend_bases import FigureCanvasBase

    formats = sorted(set(FigureCanvasBase.get_supported_filetypes()) - {"pgf"})
    suffix = Path(output).suffix.lower().removeprefix(".")
    if suffix not in formats:
        raise LabError(f"--output {output!r}: end it in one of .{', .'.join(formats)}")
    return output


def cmd_results(args: argparse.Namespace) -> int:
    """`results` lists the stored runs; `results NAME` those of one; `results ID` one again."""
    from lab import experiments, report

    if args.experiment and args.experiment.strip().isdigit():  # any script's digits: checked
        try:
            run_id = params.whole_number(1)(args.experiment)  # ASCII, in range
        except argparse.ArgumentTypeError as exc:
            raise LabError(f"results: run id {exc}") from None
        with _stored() as store:
            run = store.run(run_id)
        module = experiments.load(run.experiment)
        out = _console()
        out.print(report.run_header(run))
        _print_tables(run, module, args)
        return 0
    if args.columns or args.wide:
        raise LabError("results: --columns and --wide show one run: results RUN_ID --columns ...")
    if args.experiment:
        experiments.load(args.experiment)  # an unknown name is refused, not an empty table
    with _stored(args.experiment) as store:
        runs = store.runs(args.experiment, args.limit)
        where = store.where
    if not runs:  # a store, but nothing in it (of that lesson): said, not an empty table
        lesson = args.experiment or "NAME"
        of = f" of {args.experiment}" if args.experiment else ""
        print(f"no runs{of} stored in {where} yet: `daemonlab run {lesson}` stores one")
        return 0
    _console().print(report.runs_table(runs))
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    from lab import experiments
    from lab.results import export

    if args.experiment:
        experiments.load(args.experiment)  # an unknown name is refused, not 0 records
    with _stored(args.experiment) as store:
        runs = _chosen_runs(store, args.experiment, args.run, None)
    if not args.output:
        export(runs, args.format, sys.stdout)
        return 0
    try:
        with open(args.output, "w", newline="") as out:
            count = export(runs, args.format, out)
    except OSError as exc:
        raise LabError(f"cannot write {args.output}: {exc.strerror or exc}") from None
    print(f"wrote {count} records to {args.output}", file=sys.stderr)
    return 0


# -- db / doctor -------------------------------------------------------------------
def cmd_db(args: argparse.Namespace) -> int:
    from lab import db

    if args.action == "down":
        for line in db.down():
            print(line)
        return 0
    from lab.report import fmt

    facts = db.up() if args.action == "up" else db.status()
    url = facts.pop("export", None)
    for key, value in facts.items():
        print(f"{key:>16}: {fmt(value)}")  # started: yes, not True
    if url is not None:  # `db up`: a server found on 127.0.0.1:3306 comes before this one
        print(f"runs use this server once LAB_MYSQL_URL names it:\nexport LAB_MYSQL_URL={url}")
    return 0


def cmd_doctor(args: argparse.Namespace) -> int:
    from lab import doctor

    return doctor.main(_console())


def _console():
    from lab.report import console

    return console()


def _parser() -> argparse.ArgumentParser:
    parser = Parser(
        prog="daemonlab",
        description="Unleash the Daemons, measured: fork, threads, asyncio, signals, daemons.",
        allow_abbrev=False,
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def command(name: str, func: Callable[[argparse.Namespace], int], help: str):
        p = sub.add_parser(name, help=help, description=help, allow_abbrev=False)
        p.set_defaults(func=func)
        return p

    command("list", cmd_list, "list the experiments")
    p = command("run", cmd_run, "run an experiment: daemonlab run NAME [options] (NAME --help)")
    p.add_argument("experiment", metavar="NAME", nargs="?", help="a lesson (alone: the list)")
    p.add_argument("options", nargs=argparse.REMAINDER, help="the experiment's own options")
    p = command("plot", cmd_plot, "draw stored runs of an experiment to a PNG")
    p.add_argument("experiment", metavar="NAME")
    _run_ids(p)
    p.add_argument(
        "--all", action="store_true", help=f"every stored run, not only the newest {PLOT_RUNS}"
    )
    p.add_argument(
        "-o", "--output", type=params.path("--output"), help="the PNG to write (default: NAME.png)"
    )
    p = command("results", cmd_results, "list stored runs, or show one again: results RUN_ID")
    p.add_argument("experiment", nargs="?", metavar="NAME|RUN_ID")
    p.add_argument(
        "--limit", type=params.whole_number(1), default=20, help="how many runs (default: 20)"
    )
    _table_options(p)
    p = command("export", cmd_export, "write stored records as CSV or JSON Lines")
    p.add_argument("experiment", nargs="?", metavar="NAME")
    p.add_argument("--format", choices=("csv", "jsonl"), default="csv")
    _run_ids(p)
    p.add_argument("-o", "--output", type=params.path("--output"), help="a file (default: stdout)")
    p = command("db", cmd_db, "which MySQL server the lab uses; keep a throwaway one up")
    p.add_argument("action", choices=("status", "up", "down"), nargs="?", default="status")
    command("doctor", cmd_doctor, "what this machine offers the lab")

    # `daemonlab signals`: the platform's signals as `kill -l` numbers them
    # (lab/experiments/signals/table.py).
    def cmd_signals(args: argparse.Namespace) -> int:
        from lab.experiments.signals import table as signal_table

        return signal_table.main(as_json=args.json)

    p = command("signals", cmd_signals, "this machine's signals, numbered as kill -l numbers them")
    p.add_argument("--json", action="store_true", help="print the rows as JSON")
    # Command families of their own (`daemonlab daemon start|stop|...`), each a
    # module with add_parser(subparsers); imported here, not at the top, and
    # each must import only argparse at its top so that --help stays fast.
    for where in COMMAND_FAMILIES:
        importlib.import_module(where).add_parser(sub)
    return parser


def _one_line(message: str) -> str:
    """A message as one line: a control character from the user's input (a path holding
    a newline or a carriage return) is shown escaped, as repr() would, not obeyed."""
    return "".join(c if c.isprintable() or c == " " else repr(c)[1:-1] for c in message)


def main(argv: Sequence[str] | None = None) -> int:
    take_over_stop_signals()
    try:
        args = _parser().parse_args(argv)
        return args.func(args)
    except LabError as exc:
        print(f"daemonlab: {_one_line(str(exc))}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print(f"daemonlab: interrupted by {signal.Signals(stopped_by()).name}", file=sys.stderr)
        return 128 + stopped_by()
    except BrokenPipeError:  # `daemonlab export | head`: the reader left, nothing to say
        sys.stderr.close()
        return 1


if __name__ == "__main__":
    raise SystemExit(main())
