"""Stored records as files, for people who want them outside the lab: CSV or JSON Lines.

One row per record, with its run's id, experiment, start time and status in
front, so rows from many runs can be told apart in a spreadsheet.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Iterable, Iterator
from typing import IO, Any

from lab.errors import LabError
from lab.runs import Run

__all__ = ["export"]


def _rows(runs: Iterable[Run]) -> Iterator[dict[str, Any]]:
    for run in runs:
        for record in run.records:
            yield {
                "run_id": run.run_id,
                "experiment": run.experiment,
                "started": run.started,
                "status": run.status,
                "label": run.label,
                **record,
            }


def export(runs: Iterable[Run], fmt: str, out: IO[str]) -> int:
    """Write every record of `runs` as CSV or JSON Lines; returns how many rows."""
    rows = list(_rows(runs))
    if fmt == "jsonl":
        for row in rows:
            out.write(json.dumps(row) + "\n")
    elif fmt == "csv":
        columns: dict[str, None] = {}
        for row in rows:
            columns.update(dict.fromkeys(row))
        writer = csv.DictWriter(out, fieldnames=list(columns))
        writer.writeheader()
        writer.writerows(
            {k: json.dumps(v) if isinstance(v, list | dict) else v for k, v in row.items()}
            for row in rows
        )
    else:
        raise LabError(f"unknown export format {fmt!r} (choose csv or jsonl)")
    return len(rows)
