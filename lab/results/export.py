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


#: Significant digits a float keeps in a file: a figure computed as 2109 * 0.1 was written
#: 210.89999999999998, binary noise in the 17th digit; 12 keep a nanosecond of 1,000 s.
DIGITS = 12


def _rows(runs: Iterable[Run]) -> Iterator[dict[str, Any]]:
    for run in runs:
        for record in run.records:
            yield {
                "run_id": run.run_id,
                "experiment": run.experiment,
                "started": run.started,
                "status": run.status,
                "label": run.label,
                **{key: _measured(value) for key, value in record.items()},
            }


def _measured(value: Any) -> Any:
    """A float to DIGITS significant digits (lists too); anything else as it is."""
    if isinstance(value, float):
        return float(f"{value:.{DIGITS}g}")
    if isinstance(value, list):
        return [_measured(v) for v in value]
    return value


def export(runs: Iterable[Run], fmt: str, out: IO[str]) -> int:
    """Write every record of `runs` as CSV or JSON Lines; returns how many rows.

    CSV holds one lesson's runs: its header is the columns of every row, and the
    union of twelve lessons' columns was a sheet of mostly empty cells. JSON Lines,
    a document per line, holds any mix."""
    runs = list(runs)
    lessons = sorted({run.experiment for run in runs})
    if fmt == "csv" and len(lessons) > 1:
        raise LabError(
            f"CSV holds one lesson's runs, and these are of {', '.join(lessons)}: "
            "name one (daemonlab export NAME), or --format jsonl for all"
        )
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
