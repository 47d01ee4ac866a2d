"""Any value for any option: accepted and valid, or refused in one line. Never a traceback.

Hypothesis throws values at every experiment's params, the way a hostile user
would (NaN, infinity, negatives, huge numbers, empty lists, text where a number
goes, numbers where text goes), through the same door the CLI and the harness
config use (lab.params.from_mapping). The promise: either a Params comes back
whose every number is finite and within its bounds, or a LabError says why;
nothing else. A few of the refusals go through the real command line too, to
check they stay one line on stderr with exit 2.
"""

from __future__ import annotations

import dataclasses
import math
import typing

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lab import experiments, params
from lab.errors import LabError
from tests.conftest import assert_refused, run_cli

NAMES = experiments.names()

#: What a user can type for one value: numbers of every kind, words, and nothing.
ATOMS = st.one_of(
    st.integers(min_value=-(10**12), max_value=10**12),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from(["nan", "inf", "-inf", "-1", "0", "1e309", "", " ", "none", "yes", "∞"]),
    st.text(max_size=12),
    st.booleans(),
)
#: A value as the CLI (text, maybe a comma list) or a TOML table (lists, numbers) gives it.
VALUES = st.one_of(
    ATOMS,
    st.lists(ATOMS, max_size=4),
    st.lists(ATOMS, max_size=4).map(lambda items: ",".join(map(str, items))),
)


def fields(name: str) -> list[str]:
    return [f.name for f in dataclasses.fields(experiments.load(name).Params)]


def assert_valid(chosen) -> None:
    """Every number finite and within the field's own bounds; every choice a known one."""
    hints = typing.get_type_hints(type(chosen))
    for f in dataclasses.fields(chosen):
        value = getattr(chosen, f.name)
        items = value if isinstance(value, tuple) else (value,)
        meta = f.metadata
        for item in items:
            if isinstance(item, float):
                assert math.isfinite(item), (f.name, value)
            if meta.get("choices") is not None:
                assert item in meta["choices"], (f.name, value)
            if meta.get("minimum") is not None and isinstance(item, int | float):
                assert item >= meta["minimum"], (f.name, value)
            if meta.get("above") is not None and isinstance(item, int | float):
                assert item > meta["above"], (f.name, value)
        assert hints[f.name] is not None


#: Every (experiment, option) pair: each option gets its own share of hostile values.
OPTIONS = [(name, field) for name in NAMES for field in fields(name)]


@pytest.mark.parametrize("name, field", OPTIONS, ids=[f"{n}--{f}" for n, f in OPTIONS])
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(value=VALUES, other=st.one_of(st.none(), st.tuples(st.data(), VALUES)))
def test_any_value_for_any_option_is_accepted_valid_or_refused(name, field, value, other):
    module = experiments.load(name)
    values = {field: value}
    if other is not None:  # and now and then a second option beside it
        data, second_value = other
        values[data.draw(st.sampled_from(fields(name)))] = second_value
    try:
        chosen = params.from_mapping(module.Params, values)
    except LabError as exc:
        message = str(exc)
        assert message and "\n" not in message, message
        return
    assert_valid(chosen)


@pytest.mark.parametrize("name", NAMES)
@settings(max_examples=50, deadline=None)
@given(key=st.text(min_size=1, max_size=15))
def test_an_unknown_key_is_refused_naming_the_known_ones(name, key):
    module = experiments.load(name)
    known = fields(name) + [
        old for f in dataclasses.fields(module.Params) for old in f.metadata.get("was", ())
    ]
    if key.replace("-", "_") in known:
        return
    with pytest.raises(LabError, match="unknown parameter"):
        params.from_mapping(module.Params, {key: "1"})


@pytest.mark.parametrize(
    "args, says",
    [
        (["run", "sleep", "--seconds", "nan"], "--seconds must be a finite number"),
        (["run", "sleep", "--seconds", "inf"], "--seconds must be a finite number"),
        (["run", "sleep", "--seconds=-inf"], "--seconds must be a finite number"),
        (["run", "cpu", "--fast-switch", "nan"], "--fast-switch must be a finite number"),
        (["run", "daemonize", "--dwell", "inf"], "--dwell must be a finite number"),
        (["run", "cpu", "--workers", "2,nan"], "--workers"),
        (["run", "sleep", "--clients", ""], "--clients"),
        (["run", "fork", "--fact", "16"], "--fact: unknown value 16"),
    ],
)
def test_refusals_through_the_command_line_are_one_line(results_path, args, says):
    result = run_cli(*args)
    assert_refused(result, says)
    assert not results_path.exists() or "run" not in run_cli("results").stdout.split("id")[-1]
