"""Experiment parameters: frozen dataclasses that check themselves.

Every experiment declares its knobs once, as a dataclass whose fields carry a
help text and their limits (`option(...)`). From that one declaration come
the CLI options (`--clients 1,2,4`), the daemon's TOML parsing and the checks
that refuse bad input, so the four front doors cannot disagree about what a
valid parameter is.

The bounds every number meets unless its field says otherwise (`maximum=`):
a whole number is written in ASCII digits (Python's int() also reads "١٢"
and "1_0") and is at most MAX_WHOLE; any number is finite and at most
MAX_NUMBER in size. Past those a value is no knob of any lesson but a typo or
an attack: `--seconds 1e300` was stored `ok` with an efficiency of 1e303. The
argparse types below (whole_number, number, seconds, path, text) give the
other commands' options the same bounds and the same one-line refusal.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import re
import types
import typing
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from lab.errors import LabError

__all__ = [
    "MAX_NUMBER",
    "MAX_WHOLE",
    "Params",
    "add_arguments",
    "check_path",
    "check_text",
    "from_cli",
    "from_mapping",
    "number",
    "option",
    "path",
    "seconds",
    "text",
    "whole_number",
]

#: The largest whole number an option takes unless its field says otherwise: the
#: largest any lesson uses is 10**8 (cpu --work, --full); a billion is past any
#: run that ends today, and far inside 64 bits (SQLite's INTEGER, a C long).
MAX_WHOLE = 10**9

#: The largest number in size (seconds, MiB, a rate per second) an option takes
#: unless its field says otherwise: a million seconds is 11.6 days.
MAX_NUMBER = 1_000_000

#: A whole number as the lab reads one: ASCII digits, an optional sign, and no
#: more digits than 64 bits hold.
_WHOLE = re.compile(r"[+-]?[0-9]{1,19}", re.ASCII)

#: Where no option's file may go: the kernel's own trees, whose "files" are
#: its settings and its processes (`-o /proc/sys/...`, a pidfile in /proc).
KERNEL_TREES = ("/proc", "/sys")


def option(
    default: Any,
    help: str,
    *,
    choices: Sequence[Any] | None = None,
    minimum: float | None = None,
    above: float | None = None,
    maximum: float | None = None,
    was: Sequence[str] = (),
) -> Any:
    """A dataclass field with its help text and limits (minimum: >=, above: >, maximum: <=;
    without a maximum, MAX_WHOLE or MAX_NUMBER).

    `was`: the names it had before (`strategies` before `strategy`), still
    accepted, unlisted in --help, for a release, so old commands and harness
    configs keep working while everything new says the one name.
    """
    meta = {"help": help, "choices": choices, "minimum": minimum, "above": above, "was": was}
    meta["maximum"] = maximum
    if isinstance(default, list | tuple):
        default = tuple(default)
    return dataclasses.field(default=default, metadata=meta)


class Params:
    """Base of every experiment's params dataclass: normalises, then checks, on creation."""

    def __post_init__(self) -> None:
        for f in dataclasses.fields(self):  # type: ignore[arg-type]
            value = getattr(self, f.name)
            if isinstance(value, list):  # notebooks pass lists; frozen params hold tuples
                value = tuple(value)
                object.__setattr__(self, f.name, value)
            _check(f, value)


def _check(f: dataclasses.Field, value: Any) -> None:
    name = f.name.replace("_", "-")
    items = value if isinstance(value, tuple) else (value,)
    # An empty list is refused unless it is the field's own default (--python's
    # () means "this interpreter only", see lab.interpreters).
    if isinstance(value, tuple) and not value and f.default != ():
        raise LabError(f"--{name} needs at least one value")
    meta = f.metadata
    for item in items:
        if isinstance(item, float) and not math.isfinite(item):
            raise LabError(f"--{name} must be a finite number, got {item}")
        if meta.get("choices") is not None and item not in meta["choices"]:
            known = ", ".join(map(str, meta["choices"]))
            raise LabError(f"--{name}: unknown value {item!r} (choose from {known})")
        if meta.get("minimum") is not None and item < meta["minimum"]:
            raise LabError(f"--{name} must be at least {meta['minimum']}, got {item}")
        if meta.get("above") is not None and item <= meta["above"]:
            raise LabError(f"--{name} must be greater than {meta['above']}, got {item}")
        if isinstance(item, int | float) and not isinstance(item, bool):
            top = meta.get("maximum") or (MAX_WHOLE if isinstance(item, int) else MAX_NUMBER)
            if abs(item) > top:
                raise LabError(f"--{name} must be at most {top:,} in size, got {item}")
        if isinstance(item, str):
            check_text(item, f"--{name}")


def _types(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def _convert(text: Any, kind: Any, name: str) -> Any:
    """Turn CLI text (or a TOML value) into the field's type, or refuse in one line."""
    origin = typing.get_origin(kind)
    if origin in (types.UnionType, typing.Union):  # `str | None`
        inner = [a for a in typing.get_args(kind) if a is not type(None)][0]
        return None if text in (None, "", "none") else _convert(text, inner, name)
    if origin is tuple:
        inner = typing.get_args(kind)[0]
        if isinstance(text, str):
            parts = text.split(",")
        else:  # a TOML value: a list, or one number where a list would do
            parts = list(text) if isinstance(text, list | tuple) else [text]
        return tuple(_convert(p.strip() if isinstance(p, str) else p, inner, name) for p in parts)
    try:
        if kind is bool:
            if isinstance(text, bool):
                return text
            if str(text).lower() in ("1", "true", "yes", "on"):
                return True
            if str(text).lower() in ("0", "false", "no", "off"):
                return False
            raise ValueError(text)
        if kind is int and isinstance(text, float):
            raise ValueError(text)
        if kind is int and isinstance(text, str) and not _WHOLE.fullmatch(text.strip()):
            raise ValueError(text)
        if kind is float and isinstance(text, str) and not text.isascii():
            raise ValueError(text)
        return kind(text)
    except (TypeError, ValueError):
        want = getattr(kind, "__name__", str(kind))
        raise LabError(f"--{name.replace('_', '-')}: {text!r} is not a valid {want}") from None


def from_mapping(cls: type, values: Mapping[str, Any], base: Any = None) -> Any:
    """Build params from a mapping (TOML table, CLI options), on top of `base` or the defaults."""
    known = {f.name: f for f in dataclasses.fields(cls)}
    formerly = {old: f.name for f in known.values() for old in f.metadata.get("was", ())}
    hints = _types(cls)
    chosen: dict[str, Any] = {} if base is None else dataclasses.asdict(base)
    for key, raw in values.items():
        name = key.replace("-", "_")
        name = formerly.get(name, name)
        if name not in known:
            raise LabError(f"unknown parameter {key!r} (known: {', '.join(sorted(known))})")
        chosen[name] = _convert(raw, hints[name], name)
    return cls(**chosen)


def add_arguments(parser: argparse.ArgumentParser, cls: type) -> None:
    """One `--option` per field; None means "not given", so defaults stay in one place."""
    hints = _types(cls)
    for f in dataclasses.fields(cls):
        many = typing.get_origin(hints[f.name]) is tuple
        help_text = f.metadata.get("help", "") + _default_said(f.default, f.metadata)
        if many:
            help_text += "; a comma list"
        flag = "--" + f.name.replace("_", "-")
        choices = f.metadata.get("choices")
        metavar = _metavar(hints[f.name], choices, many)
        if choices is not None and len(metavar) > CHOICES_INLINE:  # else a 90-column line
            metavar = f.name.upper() + (",..." if many else "")
            help_text += f"; one of: {', '.join(map(str, choices))}"
        # A yes/no option works as a flag too: `--scale` alone means `--scale true`.
        alone = {"nargs": "?", "const": "true"} if hints[f.name] is bool else {}
        parser.add_argument(
            flag, dest=f.name, default=None, metavar=metavar, help=help_text, **alone
        )
        for old in f.metadata.get("was", ()):
            parser.add_argument(
                "--" + old.replace("_", "-"), dest=f.name, default=None, help=argparse.SUPPRESS
            )


#: Choices longer than this are named in the help text, which wraps, not in the usage line.
CHOICES_INLINE = 30


def _default_said(default: Any, metadata: Mapping[str, Any]) -> str:
    """ " (default: ...)", unless the help says it already or there is none to say."""
    if "(default:" in metadata.get("help", "") or default in ("", ()):
        return ""
    if isinstance(default, bool):
        return f" (default: {'yes' if default else 'no'})"
    return f" (default: {','.join(map(str, default)) if isinstance(default, tuple) else default})"


def _metavar(kind: Any, choices: Sequence[Any] | None, many: bool) -> str:
    """What --help shows for a value: its choices, or its type; `,...` where a list goes."""
    if choices is not None:
        shown = "{" + ",".join(map(str, choices)) + "}"
        return shown + ",..." if many else shown
    if many:
        kind = typing.get_args(kind)[0]
    if typing.get_origin(kind) in (types.UnionType, typing.Union):
        kind = [a for a in typing.get_args(kind) if a is not type(None)][0]
    name = {int: "INT", float: "NUMBER", bool: "yes|no", str: "TEXT"}.get(kind, "VALUE")
    return f"{name},..." if many else name


def from_cli(cls: type, namespace: argparse.Namespace, base: Any = None) -> Any:
    given = {
        f.name: getattr(namespace, f.name)
        for f in dataclasses.fields(cls)
        if getattr(namespace, f.name, None) is not None
    }
    return from_mapping(cls, given, base)


# -- argparse types: the same bounds for the options of every other command ---------------
def whole_number(minimum: int = 1, maximum: int = MAX_WHOLE) -> Callable[[str], int]:
    """argparse type: a whole number in ASCII digits, from `minimum` to `maximum`."""

    def whole(text: str) -> int:
        if not _WHOLE.fullmatch(text.strip()):
            raise argparse.ArgumentTypeError(f"{text!r} is not a whole number")
        value = int(text)
        if not minimum <= value <= maximum:
            raise argparse.ArgumentTypeError(f"{text!r} is not from {minimum:,} to {maximum:,}")
        return value

    return whole


def number(
    *,
    above: float | None = None,
    at_least: float | None = None,
    maximum: float = MAX_NUMBER,
    below: float | None = None,
    noun: str = "the value",
    unit: str = "",
) -> Callable[[str], float]:
    """argparse type: a finite number, above `above` (or at least `at_least`), at most
    `maximum` (or below `below`).

    NaN compares false with everything: unchecked, `--timeout nan` ends every
    wait at once and `--threshold nan` passes every comparison."""

    def finite(text: str) -> float:
        try:
            value = float(text) if text.isascii() else math.nan
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
        if not math.isfinite(value):
            raise argparse.ArgumentTypeError(f"{text!r}: {noun} must be a finite number")
        if above is not None and value <= above:
            raise argparse.ArgumentTypeError(f"{text!r}: {noun} must be above {above:g}{unit}")
        if at_least is not None and value < at_least:
            raise argparse.ArgumentTypeError(f"{text!r}: {noun} must be {at_least:g}{unit} or more")
        if value > maximum:
            raise argparse.ArgumentTypeError(f"{text!r}: {noun} must be at most {maximum:,g}")
        if below is not None and value >= below:
            raise argparse.ArgumentTypeError(f"{text!r}: {noun} must be below {below:g}")
        return value

    return finite


def seconds(at_least: float | None = None) -> Callable[[str], float]:
    """argparse type: a timeout, finite, above 0 s (or at least `at_least`), at most MAX_NUMBER.

    `--ready-timeout -1` would report "not started" about a daemon that runs."""
    if at_least is None:
        return number(above=0.0, noun="a timeout", unit=" seconds")
    return number(at_least=at_least, noun="a timeout", unit=" s")


def check_text(value: str, what: str) -> str:
    """`value`, if it can be stored and shown: valid UTF-8 (a label read from a
    non-UTF-8 argv arrives with surrogates, which SQLite refuses), no NUL."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise LabError(f"{what}: {value!r} is not valid UTF-8 text") from None
    if "\0" in value:
        raise LabError(f"{what}: {value!r} holds a NUL byte")
    return value


def check_path(value: str, what: str) -> str:
    """`value`, if it can name a file of the lab's: no NUL (the kernel cannot take one),
    not inside the kernel's own trees (KERNEL_TREES)."""
    import os

    if "\0" in value or not value:
        raise LabError(f"{what}: {value!r} is not a path (empty, or a NUL byte in it)")
    real = os.path.realpath(value)
    for top in KERNEL_TREES:
        if real == top or real.startswith(top + "/"):
            raise LabError(f"{what}: {value!r} is inside {top}, the kernel's, not the lab's")
    return value


def _argparse_type(check: Callable[[str, str], str], what: str) -> Callable[[str], str]:
    def checked(value: str) -> str:
        try:
            return check(value, what)
        except LabError as exc:
            raise argparse.ArgumentTypeError(str(exc).removeprefix(f"{what}: ")) from None

    return checked


def path(what: str = "path") -> Callable[[str], str]:
    """argparse type: check_path."""
    return _argparse_type(check_path, what)


def text(what: str = "text") -> Callable[[str], str]:
    """argparse type: check_text."""
    return _argparse_type(check_text, what)
