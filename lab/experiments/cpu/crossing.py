"""What crosses between subinterpreters, and what does not: six facts, each checked live.

A subinterpreter shares the process with the main interpreter but no Python
object: that is what lets it have a GIL of its own (PEP 684). So what a
thread takes for granted (pass any object, share a module's globals, catch
a signal) changes, and each fact below creates a real subinterpreter and
compares what it expected with what it saw, as the fork lesson's facts do:

    1  bytes, int and str cross, and arrive equal
    2  a dict and a socket do not: refused before anything runs
    3  a queue's items cross (3.13+), a dict put on one is refused
    4  a module's globals are per interpreter
    5  an extension module without subinterpreter support refuses to load
    6  a signal handler can be set only in the main interpreter

Three module-level names are what a fact depends on, and the tests swap
each for its opposite, so that the fact must stop holding: REFUSED (fact
2's values, swapped for shareable ones), ISOLATED (fact 5's config: the
legacy one shares the main GIL and loads anything) and `probe_here` (facts
4 and 6 run their probe in a subinterpreter; swapped, in this interpreter).

Standard library only (lab.interpreters runs it under --python).
"""

from __future__ import annotations

import importlib.util
import os
import socket
import time
from collections.abc import Iterator

from lab import subinterpreters

__all__ = ["MODULES", "check_facts", "probe_here"]

#: Fact 5's modules: readline (single-phase init, known to refuse) and the
#: lab's own dependencies, whichever the interpreter has installed.
MODULES = ("readline", "pymysql", "psutil", "rich", "numpy", "matplotlib", "zmq", "redis")
#: What refusing looks like (CPython's Python/import.c, in
#: _PyImport_CheckSubinterpIncompatibleExtensionAllowed)
REFUSAL = "does not support loading in subinterpreters"
#: Fact 2's values, which must not cross. make() so that each check gets a fresh socket.
REFUSED = {"a dict": lambda: {"key": 1}, "a socket": socket.socket}
#: Fact 5's config: isolated (own GIL, checks extensions) or legacy.
ISOLATED = True


def probe_here(code: str, **values) -> str:
    """Run `code` in a fresh subinterpreter; what it wrote to `out` (a pipe), as text."""
    with subinterpreters.Subinterpreter(isolated=True) as interp:
        return run_there(interp, code, **values)


def run_there(interp: subinterpreters.Subinterpreter, code: str, **values) -> str:
    """Run `code` in `interp`; what it wrote to `out` (a pipe), or what it raised."""
    read, write = os.pipe()
    try:
        interp.bind(out=write, **values)
        try:
            interp.exec(code)
        except subinterpreters.SubinterpreterError as exc:
            return f"raised {exc}"
        os.close(write)
        write = -1
        return _read_all(read).decode()
    finally:
        for fd in (read, write):
            if fd >= 0:
                os.close(fd)


def _read_all(fd: int) -> bytes:
    chunks = []
    while chunk := os.read(fd, 65536):
        chunks.append(chunk)
    return b"".join(chunks)


def _fact(number: int, fact: str, expected: str, observed: str, holds: bool | None) -> dict:
    return {
        "part": "crossing",
        "number": number,
        "fact": fact,
        "expected": expected,
        "observed": observed,
        "holds": holds,
    }


def simple_values_cross() -> tuple[str, str, bool]:
    sent = {"b": b"bytes \x00\xff", "i": 2**62, "s": "str, ünïcode"}
    code = (
        "import os\n"
        "os.write(out, repr((type(b).__name__, b, type(i).__name__, i, type(s).__name__, s))"
        ".encode())\n"
    )
    observed = probe_here(code, **sent)
    want = repr(("bytes", sent["b"], "int", sent["i"], "str", sent["s"]))
    return "each arrives with its type and value", observed, observed == want


#: What 3.14's concurrent.interpreters lets cross that 3.12 and 3.13 refuse: its
#: prepare_main copies what is not shareable by pickle (the 3.14 docs: "most are
#: copied via pickle"), so a dict arrives as a copy; a socket cannot be pickled.
#: Not checked here: this machine has no 3.14.
COPIED_BY_PICKLE = {"a dict"}


def dict_and_socket_refused() -> tuple[str, str, bool]:
    pickles = subinterpreters.api() == "concurrent.interpreters"
    seen, holds = [], True
    for name, make in REFUSED.items():
        value = make()
        try:
            probe_here("import os\nos.write(out, b'ran')", value=value)
            seen.append(f"{name}: crossed")
            holds = holds and pickles and name in COPIED_BY_PICKLE
        # 3.12 raises ValueError; 3.13+ NotShareableError, a ValueError
        except (ValueError, TypeError) as exc:
            seen.append(f"{name}: {type(exc).__name__}")
            holds = holds and not (pickles and name in COPIED_BY_PICKLE)
        finally:
            if isinstance(value, socket.socket):
                value.close()
    expected = "each refused (NotShareableError or ValueError) before the code runs"
    if pickles:
        expected = "a dict crosses as a pickled copy; a socket is refused"
    return expected, "; ".join(seen), holds


def queue_items_cross() -> tuple[str, str, bool | None]:
    """3.13's _interpqueues (3.14: concurrent.interpreters.create_queue): put here, get there."""
    if subinterpreters.api() != "_interpreters":  # 3.14's queues are not checked: none here
        return "", f"skipped: 3.13's _interpqueues only, not {subinterpreters.api()}", None
    import _interpqueues as queues

    # create(maxsize, fmt, unboundop) and put(qid, obj, fmt, unboundop) in 3.13.0: fmt 0 is
    # "no format tag", unboundop 1 is "remove the item if its interpreter goes away"
    qid = queues.create(0, 0, 1)
    try:
        queues.put(qid, b"job 1", 0, 1)
        code = (
            "import _interpqueues as q, os\n"
            "item = q.get(qid)[0]\n"
            "q.put(qid, len(item), 0, 1)\n"
            "os.write(out, repr(item).encode())\n"
        )
        with subinterpreters.Subinterpreter() as interp:
            got_there = run_there(interp, code, qid=qid)
            # now, while it lives: an item leaves the queue with the interpreter that put it
            back = queues.get(qid)[0]  # get() -> (obj, fmt, unboundop) in 3.13.0
        try:
            queues.put(qid, {"a": 1}, 0, 1)
            dict_put = "a dict was put"
        except ValueError as exc:
            dict_put = f"a dict: {type(exc).__name__}"
    finally:
        queues.destroy(qid)
    observed = f"there: {got_there}; back here: {back!r}; {dict_put}"
    holds = got_there == repr(b"job 1") and back == 5 and "Error" in dict_put
    return "b'job 1' arrives there, its length 5 comes back, a dict is refused", observed, holds


#: Fact 4's mark: set on the json module here, looked for on json there.
MARK = "lab_crossing_mark"


def globals_are_per_interpreter() -> tuple[str, str, bool]:
    import json

    setattr(json, MARK, "set in the main interpreter")
    try:
        observed = probe_here(
            f"import json, os\nos.write(out, repr(getattr(json, {MARK!r}, None)).encode())"
        )
    finally:
        delattr(json, MARK)
    return "json imported there has no mark: None", observed, observed == "None"


def extensions_refuse(modules) -> tuple[str, str, bool]:
    seen = {}
    for name in modules:
        if importlib.util.find_spec(name) is None:
            seen[name] = "not installed"
            continue
        try:
            with subinterpreters.Subinterpreter(isolated=ISOLATED) as interp:
                interp.exec(f"import {name}")
            seen[name] = "loads"
        except subinterpreters.SubinterpreterError as exc:
            seen[name] = "refuses" if REFUSAL in str(exc) else f"fails: {str(exc)[-80:]}"
    observed = ", ".join(f"{name} {what}" for name, what in seen.items())
    return "readline refuses (single-phase init)", observed, seen.get("readline") == "refuses"


def signal_handlers_main_only() -> tuple[str, str, bool]:
    code = (
        "import os, signal\n"
        "try:\n"
        "    signal.signal(signal.SIGUSR1, lambda *a: None)\n"
        "    os.write(out, b'handler set')\n"
        "    signal.signal(signal.SIGUSR1, signal.SIG_DFL)\n"
        "except ValueError as exc:\n"
        "    os.write(out, str(exc).encode())\n"
    )
    observed = probe_here(code)
    return "signal.signal refuses there (ValueError)", observed, "main interpreter" in observed


FACTS = {
    1: ("bytes, int and str cross between interpreters", simple_values_cross),
    2: ("a dict and a socket do not cross", dict_and_socket_refused),
    3: ("a queue's items cross; a dict put on it is refused", queue_items_cross),
    4: ("a module's globals are per interpreter", globals_are_per_interpreter),
    5: ("an extension without subinterpreter support refuses", None),
    6: ("only the main interpreter can set a signal handler", signal_handlers_main_only),
}


def check_facts(modules=MODULES) -> Iterator[dict]:
    """One record per fact; all say skipped where there are no subinterpreters."""
    missing = subinterpreters.unavailable()
    for number, (fact, check) in FACTS.items():
        if missing:
            yield _fact(number, fact, "", f"skipped: {missing}", None)
            continue
        started = time.perf_counter()
        expected, observed, holds = extensions_refuse(modules) if number == 5 else check()
        record = _fact(number, fact, expected, observed, holds)
        yield {**record, "seconds": round(time.perf_counter() - started, 4)}
