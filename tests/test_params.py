"""Params: one declaration gives the CLI options, the TOML parsing and the checks."""

from __future__ import annotations

import argparse
from dataclasses import dataclass

import pytest

from lab.errors import LabError
from lab.params import Params, add_arguments, from_cli, from_mapping, option


@dataclass(frozen=True)
class Knobs(Params):
    sizes: tuple[int, ...] = option((1, 2), "sizes", minimum=1)
    ratio: float = option(0.5, "a ratio", above=0)
    mode: str = option("a", "a mode", choices=("a", "b"))
    names: tuple[str, ...] = option(("x",), "names", choices=("x", "y"))
    verbose: bool = option(False, "talk more")


def test_comma_lists_become_tuples_of_the_field_type():
    knobs = from_mapping(Knobs, {"sizes": "1, 4,16", "ratio": "2", "names": "y,x"})
    assert knobs.sizes == (1, 4, 16) and knobs.ratio == 2.0 and knobs.names == ("y", "x")


def test_toml_values_are_taken_as_they_come():
    knobs = from_mapping(Knobs, {"sizes": [3], "verbose": True, "mode": "b"})
    assert knobs.sizes == (3,) and knobs.verbose is True and knobs.mode == "b"


def test_lists_given_in_python_are_frozen_as_tuples():
    assert Knobs(sizes=[5, 6]).sizes == (5, 6)


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"sizes": "0"}, "--sizes must be at least 1"),
        ({"sizes": "1,x"}, "'x' is not a valid int"),
        ({"sizes": ""}, "'' is not a valid int"),
        ({"ratio": "0"}, "--ratio must be greater than 0"),
        ({"mode": "c"}, "unknown value 'c'"),
        ({"names": "x,z"}, "unknown value 'z'"),
        ({"verbose": "perhaps"}, "not a valid bool"),
        ({"size": "1"}, "unknown parameter 'size'"),
        ({"sizes": 1.5}, "not a valid int"),
    ],
)
def test_bad_values_are_refused_with_the_option_named(values, message):
    with pytest.raises(LabError, match=message):
        from_mapping(Knobs, values)


def test_cli_options_override_a_base_and_leave_the_rest():
    parser = argparse.ArgumentParser()
    add_arguments(parser, Knobs)
    base = Knobs(sizes=(7,), mode="b")
    knobs = from_cli(Knobs, parser.parse_args(["--ratio", "3"]), base)
    assert knobs == Knobs(sizes=(7,), ratio=3.0, mode="b")
