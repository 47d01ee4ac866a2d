"""`daemonlab tour`: the talk, one stop per experiment, each explained then run small.

Each experiment that belongs on the tour has a TOUR list in its module:
(text, params) pairs, where text is the explanation printed first and params
(a dict, possibly empty) the quick run that shows it. STOPS is the talk's order.
"""

from __future__ import annotations

from collections.abc import Sequence

from lab import experiments, params
from lab.errors import LabError

__all__ = ["STOPS", "main"]

STOPS = ["sleep", "cpu", "spawn", "cow", "fork", "signals", "daemonize"]


def main(out, only: Sequence[str] = ()) -> int:
    from rich.markdown import Markdown

    from lab.cli import execute

    unknown = set(only) - set(STOPS)
    if unknown:
        raise LabError(f"not on the tour: {', '.join(sorted(unknown))} (stops: {', '.join(STOPS)})")
    stops = [name for name in STOPS if name in experiments.names() and (not only or name in only)]
    for name in stops:
        module = experiments.load(name)
        out.rule(f"[bold]{name}[/bold]: {module.SUMMARY}")
        for text, overrides in module.TOUR:
            out.print(Markdown(text))
            if overrides is not None:
                execute(module, params.from_mapping(module.Params, overrides))
    return 0
