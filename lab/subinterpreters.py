"""Subinterpreters with a GIL of their own (PEP 684, PEP 734): one small face over three APIs.

The GIL's other exit, beside processes and free-threaded builds: since 3.12
each subinterpreter can have its own GIL, so two of them, each run from its
own thread, count down on two cores at once, in one process. Which module
offers them depends on the Python:

    3.14+  concurrent.interpreters   the public API (PEP 734)
    3.13   _interpreters             the same machinery, private
    3.12   _xxsubinterpreters        create(isolated=True) gives an own GIL
    older  none                      `api()` is None: "no subinterpreters"

(3.8 to 3.11 have a _xxsubinterpreters too, but all its interpreters share
the one GIL: no exit from it, so the lab counts them as none.)

(lab/interpreters.py is the other meaning of the word: other Python
executables that `--python` runs a lesson under. This module is about
interpreters inside one process.)

Standard library only, and importable on any Python the lab's measured
parts run under (3.10+): the cpu, spawn and sleep lessons run it in their
measuring child.

Things that do not work, and why:
- Passing a dict or a socket through 3.13.0's `_interpreters.exec(id, code,
  shared)`: it crashes the whole process (a segmentation fault, seen here) instead
  of raising NotShareableError. So values are bound with set___main___attrs,
  which checks first and raises, and only shareable values are ever sent.
- `_interpreters.call(id, func)` on 3.13 returns None whatever func returns:
  results come back as text written to a pipe, or through a queue.
- Forking while a subinterpreter exists: an isolated one refuses fork in its
  own code (allow_fork=False), and the cpu lesson closes each before it forks.
"""

from __future__ import annotations

import importlib
import sys

__all__ = ["Subinterpreter", "SubinterpreterError", "api", "is_shareable", "unavailable"]

#: The modules that offer subinterpreters, newest first.
APIS = ("concurrent.interpreters", "_interpreters", "_xxsubinterpreters")


class SubinterpreterError(RuntimeError):
    """Code run in a subinterpreter raised; the message is its last traceback line."""


def _module():
    if sys.version_info < (3, 12):
        return None, None  # no GIL of their own before PEP 684
    for name in APIS:
        try:
            return name, importlib.import_module(name)
        except ImportError:
            continue
    return None, None


def api() -> str | None:
    """Which module offers subinterpreters here (one of APIS), or None."""
    return _module()[0]


def unavailable() -> str | None:
    """Why there are no subinterpreters here ("no subinterpreters in Python 3.11"), or None."""
    if api() is not None:
        return None
    import platform

    return f"no subinterpreters in Python {platform.python_version()}"


def is_shareable(obj) -> bool:
    """Can `obj` be passed to another interpreter (bytes, str, int, None, ...)?"""
    name, module = _module()
    if module is None:
        raise SubinterpreterError(unavailable())
    return bool(module.is_shareable(obj))


class Subinterpreter:
    """One subinterpreter with its own GIL (isolated=True) or sharing the main one's.

    isolated=False is the legacy config: one GIL shared with the main
    interpreter, and extension modules that do not support subinterpreters
    still load. The facts use it as the control for "refuses to load".
    """

    def __init__(self, isolated: bool = True) -> None:
        self.api, self._module = _module()
        if self._module is None:
            raise SubinterpreterError(unavailable())
        if self.api == "concurrent.interpreters":
            # PEP 734: create() is always isolated; a legacy one has no public spelling
            if not isolated:
                raise SubinterpreterError("concurrent.interpreters makes isolated ones only")
            self._interp = self._module.create()
        elif self.api == "_interpreters":
            self._interp = self._module.create("isolated" if isolated else "legacy")
        else:
            self._interp = self._module.create(isolated=isolated)

    def bind(self, **values) -> None:
        """Set names in the subinterpreter's __main__; a value that cannot cross raises."""
        if self.api == "concurrent.interpreters":
            self._interp.prepare_main(**values)
        elif self.api == "_interpreters":
            self._module.set___main___attrs(self._interp, values)
        else:
            for value in values.values():  # run_string would raise too, but check first
                if not self._module.is_shareable(value):
                    raise ValueError(f"{value!r} does not support cross-interpreter data")
            self._module.run_string(self._interp, "", values)

    def exec(self, code: str) -> None:
        """Run `code` in the subinterpreter's __main__, from the calling thread.

        The calling thread takes the subinterpreter's GIL, not the main one's:
        other threads of the main interpreter run meanwhile.
        """
        if self.api == "concurrent.interpreters":
            try:
                self._interp.exec(code)
            except self._module.ExecutionFailed as exc:
                raise SubinterpreterError(str(exc).strip().splitlines()[-1]) from None
        elif self.api == "_interpreters":
            failed = self._module.exec(self._interp, code)
            if failed is not None:  # 3.13 returns a snapshot of the exception
                raise SubinterpreterError(failed.formatted)
        else:
            try:
                self._module.run_string(self._interp, code)
            except self._module.RunFailedError as exc:
                said = str(exc).replace("<class '", "").replace("'>", "")
                raise SubinterpreterError(said) from None

    def close(self) -> None:
        if self.api == "concurrent.interpreters":
            self._interp.close()
        else:
            self._module.destroy(self._interp)

    def __enter__(self) -> Subinterpreter:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()
