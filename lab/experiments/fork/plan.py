"""The run's plan: fact 12's MySQL server found, then the checklist under each interpreter.

run() in __init__.py hands measure() the params. The checklist (child.py)
never runs in this process, which may have threads: lab.interpreters runs
it in a child, `repeat` rounds per interpreter, and fact 12 is handed the
address of the server lab.db resolved here (held until the run ends).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import TYPE_CHECKING

from lab import interpreters
from lab.errors import LabError
from lab.runs import Session

if TYPE_CHECKING:
    from lab.experiments.fork import Params

__all__ = ["CHECKLIST", "CHECKLIST_TIMEOUT_S", "measure"]

#: The measured module, run by lab.interpreters in a child process.
CHECKLIST = "lab.experiments.fork.child"
#: The whole checklist takes a second or two; this bounds a broken one.
CHECKLIST_TIMEOUT_S = 120.0


def measure(params: Params, session: Session) -> Iterator[dict]:
    chosen = interpreters.chosen(params.python)
    session.env["interpreters"] = [i.label for i in chosen]
    total = len(chosen) * params.repeat * len(params.fact)
    done = 0
    with contextlib.ExitStack() as stack:
        server = _mysql(stack, params.fact)
        if "mysql_url" in server:
            session.env["mysql"] = server.pop("mysql_url")
        payload = {"facts": list(params.fact), **server}
        for interpreter in chosen:
            for round_ in range(1, params.repeat + 1):
                records = interpreters.stream_measured(
                    interpreter, CHECKLIST, payload, CHECKLIST_TIMEOUT_S
                )
                for record in records:
                    record.pop("interpreter", None)  # the env lists them; the table stays narrow
                    done += 1
                    session.step(done, total, f"{record['python']} fact {record['number']}")
                    yield {**record, "round": round_}


def _mysql(stack: contextlib.ExitStack, facts: tuple[int, ...]) -> dict:
    """Where fact 12's server is (lab.db), or why there is none: fact 12 then says skipped."""
    from lab.experiments.fork import MYSQL_FACT

    if MYSQL_FACT not in facts:
        return {}
    from lab import db

    try:
        srv = stack.enter_context(db.server())
    except LabError as exc:
        return {"mysql_unavailable": str(exc)}
    kwargs = srv.pymysql_kwargs()
    # An SSLContext does not cross a pipe: the child builds its own from "tls".
    tls = kwargs.pop("ssl", None) is not None
    return {"mysql": {**kwargs, "tls": tls}, "mysql_url": srv.safe_url()}
