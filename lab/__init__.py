"""daemonlab: the talk "Unleash the Daemons", as measured experiments.

    import lab
    run = lab.run("sleep", clients=[1, 2, 4], seconds=0.2)
    lab.plot("sleep", [run])

Heavy libraries (matplotlib, pymysql, rich) are imported only by the code that
needs them, so `import lab` and the CLI start fast.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from lab.errors import LabError

if TYPE_CHECKING:
    from matplotlib.figure import Figure

    from lab.runs import Progress, Run

__all__ = ["LabError", "load_runs", "plot", "run"]
__version__ = "0.1.0"


def run(name: str, *, store: bool = True, progress: Progress | None = None, **params: Any) -> Run:
    """Run experiment `name` with these params (the rest default) and store it."""
    from lab import experiments
    from lab import params as params_mod
    from lab.results import open_store

    module = experiments.load(name)
    chosen = params_mod.from_mapping(module.Params, params)
    if not store:
        return module.run(chosen, progress=progress)
    with open_store() as results:
        return module.run(chosen, progress=progress, sink=results)


def load_runs(name: str, limit: int | None = None, measured: bool = False) -> list[Run]:
    """Stored runs of experiment `name`, newest first: from the CLI, daemon or notebooks.

    measured=True leaves out runs with no records (one that failed at once).
    """
    from lab.results import open_store

    with open_store() as results:
        return results.runs(name, limit, measured)


def plot(name: str, runs: list[Run] | None = None) -> Figure:
    """The experiment's figure, from these runs or from the newest stored one with records."""
    from lab import plotting

    chosen = runs if runs is not None else load_runs(name, limit=1, measured=True)
    return plotting.draw(name, chosen)
