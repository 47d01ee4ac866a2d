"""`daemonlab report -o DIR`: one HTML page a workshop can project, its PNGs beside it.

For every experiment, in the talk's order, its newest measured run; when the
store holds runs from several machines (a room sharing one MySQL store), the
newest run of each machine, one section each. A section holds:

- one sentence saying what the figures show, built from them (lab.sentences);
- the experiment's own figure (lab.plotting.draw), saved beside the page,
  opening at full size when clicked;
- its table(s), every column of the experiment's COLUMNS, folded away;
- the machine's fingerprint (lab.env), folded away under the table.

Experiments with no stored run are named at the end, each with the command
that makes one; a store with no run at all makes no page, but one line
saying what to run. Plain HTML and CSS, no script, nothing fetched from
anywhere: the page opens from a USB stick in a browser with no network.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import html
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = ["Section", "add_parser", "sections", "write"]

#: A figure is 14 to 20 inches wide at 120 dpi (1,700 to 2,400 px): the page takes the
#: screen's whole width (up to 100rem) so that at 1,280 px one shows at half its size or
#: more; each opens at full size when clicked. Tables fold away (every column of every
#: record: 24,500 px of page open) and scroll in their own box, never the page.
_STYLE = """
body { font: 16px/1.45 system-ui, sans-serif; max-width: 100rem; margin: 2rem auto; padding: 0 1rem; }
h1 { margin-bottom: 0.2rem; } .meta { color: #555; margin-top: 0; }
section { border-top: 1px solid #ccc; margin-top: 2.5rem; padding-top: 0.5rem; }
.says { font-size: 1.2rem; background: #f3f6fa; border-left: 4px solid #1f77b4; padding: 0.5rem 0.8rem; }
img { max-width: 100%; height: auto; display: block; margin: 1rem 0; }
.table { overflow-x: auto; } summary { cursor: pointer; color: #1f4e79; }
table { border-collapse: collapse; margin: 0.8rem 0; font-size: 0.85rem; }
th, td { border-bottom: 1px solid #ddd; padding: 0.2rem 0.6rem; text-align: left; vertical-align: top; }
td.n { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
caption { text-align: left; font-weight: bold; padding: 0.3rem 0; }
dl { display: grid; grid-template-columns: max-content auto; gap: 0.1rem 1rem; font-size: 0.85rem; }
dt { color: #555; } dd { margin: 0; overflow-wrap: anywhere; } .missing { color: #a33; }
"""  # noqa: E501


@dataclass
class Section:
    """One experiment's newest run on one machine, and what the page says about it."""

    module: Any
    run: Any
    machine: str
    drawn: list[Any]  # the runs its figure is drawn from, newest first (run among them)


def add_parser(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "report",
        help="one HTML page with every experiment's latest run: plot, table, fingerprint",
        description=__doc__.split("\n\n")[0],
        allow_abbrev=False,
    )
    p.add_argument("-o", "--output", default="report", metavar="DIR", help="(default: report)")
    p.set_defaults(func=cmd_report)


def cmd_report(args: argparse.Namespace) -> int:
    from lab.errors import LabError
    from lab.results import open_store

    with open_store(readonly=True) as store:
        found, missing = sections(store)
        where = store.where
    if not found:  # a page of nothing but "not run yet" tells less than this line
        raise LabError(
            f"no runs stored in {where}: make some first (`daemonlab tour`, or "
            "`daemonlab run NAME`), or point LAB_RESULTS at a store that has them"
        )
    page = write(Path(args.output), found, missing, where)
    machines = len({s.machine for s in found})
    print(f"wrote {page}: {len(found)} sections from {machines} machine(s)")
    return 0


def sections(store: Any) -> tuple[list[Section], list[str]]:
    """Each experiment's newest run per machine (runs come newest first), and the rest."""
    from lab import experiments, plotting
    from lab.env import machine

    found: list[Section] = []
    missing: list[str] = []
    for name in experiments.names():
        module = experiments.load(name)
        per_machine: dict[str, list[Any]] = {}
        for run in store.runs(name, measured=True):
            if run.status != "failed":
                per_machine.setdefault(machine(run.env), []).append(run)
        if not per_machine:
            missing.append(name)
        # The table is the newest run's; the figure, as `daemonlab plot` draws it, the
        # newest complete picture: each panel from the newest run that has its part.
        found += [
            Section(module, runs[0], where, runs[: plotting.PLOT_RUNS])
            for where, runs in per_machine.items()
        ]
    return found, missing


def write(folder: Path, found: list[Section], missing: list[str], where: str) -> Path:
    """index.html and one PNG per section in `folder`; returns the page's path."""
    from lab.errors import LabError

    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise LabError(f"cannot write the report to {folder}: {exc.strerror or exc}") from None
    several = len({s.machine for s in found}) > 1
    now = _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds")
    body = [
        "<h1>daemonlab: Unleash the Daemons, measured</h1>",
        f'<p class="meta">{len(found)} runs from {_e(where)}, drawn {now}</p>',
    ]
    body += [_section(folder, s, several) for s in found]
    if missing:
        body.append('<section><h2>Not run yet</h2><ul class="missing">')
        body += [f"<li><code>daemonlab run {_e(n)}</code></li>" for n in missing]
        body.append("</ul></section>")
    page = folder / "index.html"
    text = (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>daemonlab report</title><style>{_STYLE}</style></head>\n<body>\n"
        + "\n".join(body)
        + "\n</body></html>\n"
    )
    try:
        page.write_text(text, encoding="utf-8")
    except OSError as exc:
        raise LabError(f"cannot write {page}: {exc.strerror or exc}") from None
    return page


def _e(value: Any) -> str:
    return html.escape(str(value), quote=True)


def _section(folder: Path, section: Section, several: bool) -> str:
    from lab.sentences import sentence

    module, run = section.module, section.run
    title = f"{module.NAME}: {module.SUMMARY}"
    label = f", label {run.label}" if run.label else ""
    head = [
        f'<section id="{_e(module.NAME)}-{run.run_id}">',
        f"<h2>{_e(title)}</h2>",
        f'<p class="meta">run {run.run_id} ({_e(run.status)}{_e(label)}), {_e(run.started)}'
        + (f", on {_e(section.machine)}" if several else "")
        + "</p>",
        f'<p class="says">{_e(sentence(module, run))}</p>',
    ]
    return "\n".join(head + [_figure(folder, module, section.drawn)] + _tables(module, run) + [
        "<details><summary>the machine</summary>", _fingerprint(run.env), "</details>",
        "</section>",
    ])  # fmt: skip


def _figure(folder: Path, module: Any, runs: list[Any]) -> str:
    from lab import plotting
    from lab.errors import LabError

    run = runs[0]
    name = f"{module.NAME}-run-{run.run_id}.png"
    try:
        plotting.save(plotting.draw(module.NAME, runs), folder / name)
    except LabError as exc:  # a run without the part its figure draws: say so, keep the rest
        return f'<p class="missing">no figure: {_e(exc)}</p>'
    image = f'<img src="{_e(name)}" alt="{_e(module.NAME)}, run {run.run_id}">'
    return f'<a href="{_e(name)}" title="full size">{image}</a>'


def _tables(module: Any, run: Any) -> list[str]:
    from lab.report import parts

    tables = []
    for part, columns in parts(module.COLUMNS, run.records):
        records = [r for r in run.records if not part or r.get("part") == part]
        shown = [c for c in columns if any(r.get(c.key) not in (None, "") for r in records)]
        rows = ["<tr>" + "".join(_cell(c, r.get(c.key)) for c in shown) + "</tr>" for r in records]
        caption = f"{module.NAME} {part}".strip()
        tables.append(
            f"<details><summary>the table: {_e(caption)}, {len(rows)} rows</summary>"
            f'<div class="table"><table><thead><tr>'
            + "".join(f"<th>{_e(c.title)}</th>" for c in shown)
            + "</tr></thead><tbody>"
            + "".join(rows)
            + "</tbody></table></div></details>"
        )
    return tables


def _cell(column: Any, value: Any) -> str:
    """Numbers right-aligned (class n), in the column's one format; text as it is."""
    number = isinstance(value, int | float) and not isinstance(value, bool)
    return f'<td class="{"n" if number else "t"}">{_e(column.cell(value))}</td>'


def _fingerprint(env: dict[str, Any]) -> str:
    from lab.report import fmt

    items = "".join(f"<dt>{_e(k)}</dt><dd>{_e(fmt(v))}</dd>" for k, v in sorted(env.items()))
    return f"<dl>{items}</dl>"
