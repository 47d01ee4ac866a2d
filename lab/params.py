"""Experiment parameters: frozen dataclasses that check themselves.

Every experiment declares its knobs once, as a dataclass whose fields carry a
help text and their limits (`option(...)`). From that one declaration come
the CLI options (`--clients 1,2,4`), the daemon's TOML parsing and the checks
that refuse bad input, so the four front doors cannot disagree about what a
valid parameter is.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import types
import typing
from collections.abc import Mapping, Sequence
from typing import Any

from lab.errors import LabError

__all__ = ["Params", "add_arguments", "from_cli", "from_mapping", "option"]


def option(
    default: Any,
    help: str,
    *,
    choices: Sequence[Any] | None = None,
    minimum: float | None = None,
    above: float | None = None,
    was: Sequence[str] = (),
) -> Any:
    """A dataclass field with its help text and limits (minimum: >=, above: >).

    `was`: the names it had before (`strategies` before `strategy`), still
    accepted, unlisted in --help, for a release, so old commands and harness
    configs keep working while everything new says the one name.
    """
    meta = {"help": help, "choices": choices, "minimum": minimum, "above": above, "was": was}
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
        default = f.default
        shown = ",".join(map(str, default)) if isinstance(default, tuple) else default
        help_text = f"{f.metadata.get('help', '')} (default: {shown})"
        many = typing.get_origin(hints[f.name]) is tuple
        if many:
            help_text += "; a comma list"
        flag = "--" + f.name.replace("_", "-")
        metavar = _metavar(hints[f.name], f.metadata.get("choices"), many)
        # A yes/no option works as a flag too: `--scale` alone means `--scale true`.
        alone = {"nargs": "?", "const": "true"} if hints[f.name] is bool else {}
        parser.add_argument(
            flag, dest=f.name, default=None, metavar=metavar, help=help_text, **alone
        )
        for old in f.metadata.get("was", ()):
            parser.add_argument(
                "--" + old.replace("_", "-"), dest=f.name, default=None, help=argparse.SUPPRESS
            )


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
