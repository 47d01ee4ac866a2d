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
import functools
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


def _default(name: str, field: str):
    module = experiments.load(name)
    return next(f.default for f in dataclasses.fields(module.Params) if f.name == field)


#: the options whose default a user can type (an empty one has no text)
TYPED = [(n, f) for n, f in OPTIONS if _default(n, f) not in ("", ())]


@pytest.mark.parametrize("name, field", TYPED, ids=[f"{n}--{f}" for n, f in TYPED])
def test_each_options_default_typed_as_its_help_says_it_is_accepted_as_itself(name, field):
    """The refusing branch above cannot tell a from_mapping that refuses everything: here
    every option must take its own default, written as a user types it."""
    module = experiments.load(name)
    default = _default(name, field)
    if isinstance(default, bool):
        typed = "yes" if default else "no"
    elif isinstance(default, tuple):
        typed = ",".join(map(str, default))
    else:
        typed = "none" if default is None else str(default)
    chosen = params.from_mapping(module.Params, {field.replace("_", "-"): typed})
    assert getattr(chosen, field) == default, typed


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


# -- every other command: each option of each subcommand, any text --------------------------
#: What a user can type where one option's value goes, as argv carries it: any text,
#: numbers of every kind and script, huge and tiny magnitudes, paths into the kernel's
#: trees, bytes that are not UTF-8 (argv holds those as surrogates), and nothing.
TEXTS = st.one_of(
    st.text(max_size=20),
    st.sampled_from(
        ["nan", "inf", "-inf", "-1", "0", "1e300", "1e-300", "1e23", "2", "99999999999999999999",
         "١٢", "²", "1_0", " 5", "", "/proc/self/status", "/sys/x", "/proc", "\udcff", "x.nosuch",
         "a/b", "..", "/", "-", "--", "none", "mysql://root@127.0.0.1:1/x"]
    ),
    st.integers(min_value=-(2**70), max_value=2**70).map(str),
    st.floats().map(str),
)  # fmt: skip


def _options(parser, path=()) -> list[tuple[tuple[str, ...], str, object]]:
    """Every (command path, option string, action) that takes a value, walked down the
    parser's subcommands: ("daemon", "start"), "--ready-timeout", its action."""
    import argparse

    found = []
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                found += _options(sub, (*path, name))
        elif action.option_strings and action.nargs != 0 and action.dest != "help":
            found.append((path, action.option_strings[-1], action))
    return found


def _positionals(parser, path: tuple[str, ...]) -> list[str]:
    """Placeholders for the positional arguments a subcommand needs (run NAME, bench ab REF)."""
    import argparse

    for name in path:
        sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
        parser = sub.choices[name]
    needed = [
        a for a in parser._actions
        if not a.option_strings and not isinstance(a, argparse._SubParsersAction)
        and a.nargs not in ("?", "*", argparse.REMAINDER)
    ]  # fmt: skip
    return ["fork" if a.dest == "experiment" else "x" for a in needed]


@functools.cache
def _parser():
    from lab import cli

    return cli._parser()


COMMAND_OPTIONS = [(path, option) for path, option, _ in _options(_parser())]


@pytest.mark.parametrize(
    "path, option", COMMAND_OPTIONS, ids=[" ".join((*p, o)) for p, o in COMMAND_OPTIONS]
)
@settings(max_examples=40, deadline=None)
@given(text=TEXTS)
def test_any_text_for_any_command_option_is_parsed_valid_or_refused_in_one_line(path, option, text):
    """Parsing alone, in-process: a value the parser lets through is one the lab can
    honour (a number finite and within params' bounds, a path outside /proc and /sys,
    text that is UTF-8); anything else is one LabError line (exit 2)."""
    parser = _parser()
    argv = [*path, *_positionals(parser, path), f"{option}={text}"]
    try:
        args = parser.parse_args(argv)
    except LabError as exc:
        assert str(exc) and "\n" not in str(exc), str(exc)
        assert exc.exit_code == 2
        return
    for value in vars(args).values():
        if isinstance(value, float):
            assert math.isfinite(value) and abs(value) <= params.MAX_NUMBER, (argv, value)
        if isinstance(value, int) and not isinstance(value, bool):
            assert abs(value) <= params.MAX_WHOLE, (argv, value)


#: The commands that finish in a moment whatever they are given (on an empty store,
#: with no daemon or worker running): run whole, in-process, with any text for any of
#: their options and their positional argument (None). The rest start daemons, servers
#: or runs: their options are checked by parsing (above) and by their own tests.
QUICK_COMMANDS = {
    ("results",), ("export",), ("plot",), ("compare",), ("daemon", "check"),
    ("daemon", "status"), ("daemon", "stop"), ("daemon", "logs"), ("worker", "status"),
}  # fmt: skip
QUICK = [(p, o) for p, o in COMMAND_OPTIONS if p in QUICK_COMMANDS] + [
    (p, None) for p in sorted(QUICK_COMMANDS) if _positionals(_parser(), p) or p == ("results",)
]
#: Exit codes of a command that took its input: done, failed (a missing store, nothing
#: stored), and `status`'s LSB "not running".
ACCEPTED = (0, 1, 3)


def _main(argv: list[str]) -> tuple[int, str]:
    """`daemonlab ARGV` in this process: (exit code, stderr), within a bounded time."""
    import contextlib
    import io
    import time

    from lab import cli

    err = io.StringIO()
    began = time.monotonic()
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(err):
        code = cli.main(argv)
    assert time.monotonic() - began < 30, f"{argv} took {time.monotonic() - began:.0f} s"
    return code, err.getvalue()


@pytest.mark.parametrize("path, option", QUICK, ids=[" ".join((*p, o or "ARG")) for p, o in QUICK])
@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(text=TEXTS)
def test_any_text_for_a_quick_command_works_or_is_refused_in_one_line(
    path, option, text, tmp_path, monkeypatch
):
    monkeypatch.chdir(tmp_path)  # what it writes (-o NAME, a store) lands here
    positionals = ["fork"] if path == ("plot",) or path == ("compare",) else []
    if option is None:
        argv = [*path, "--", text]
    else:
        argv = [*path, *positionals, f"{option}={text}"]
    code, err = _main(argv)
    assert "Traceback" not in err, (argv, err)
    if code not in ACCEPTED:
        assert code == 2, (argv, code, err)
    if code:
        assert len(err.strip().splitlines()) == 1, (argv, err)


# -- every environment variable the lab reads (the URL ones have tests of their own) -------
#: Each variable, and a quick command that reads it. LAB_MYSQL_URL, LAB_REDIS_URL and a
#: mysql:// LAB_RESULTS are URLs (tests/test_db.py, tests/test_results_mysql.py); the
#: LAB_PREFORK_* ones pass a master's sockets to its own re-executed binary, no user's.
ENVIRONMENT = {
    "LAB_RESULTS": ["results"],
    "LAB_LABEL": ["run", "fork", "--fact", "1"],
    "LAB_DB_PATHS": ["db", "down"],
    "LAB_MYSQLD_STATE": ["db", "down"],
}
#: A file of any content for a variable that names one (a state file of the wrong shape).
CONTENTS = st.one_of(
    st.text(max_size=40),
    st.sampled_from(['{"pid": "1", "port": 1, "binary": "x", "datadir": "/"}', "[]", "{}", "1"]),
)


@pytest.mark.parametrize("variable", ENVIRONMENT)
@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(text=TEXTS, contents=st.one_of(st.none(), CONTENTS))
def test_any_value_of_any_environment_variable_works_or_is_refused_in_one_line(
    variable, text, contents, tmp_path, monkeypatch
):
    if text.startswith("mysql:") or "\0" in text:  # a URL; the kernel cannot carry a NUL
        return
    monkeypatch.chdir(tmp_path)  # what it writes (a store, a lock file) lands here
    if contents is not None:  # the variable names a file holding `contents`
        text = str(tmp_path / "given")
        (tmp_path / "given").write_text(contents, errors="surrogateescape")
    # `db down` stops the server a state file names: never the one other users' `db up`
    # recorded in the default place (an empty LAB_MYSQLD_STATE means the default).
    monkeypatch.setenv("LAB_MYSQLD_STATE", str(tmp_path / "mysqld.json"))
    if variable == "LAB_MYSQLD_STATE" and not text.strip():
        return
    monkeypatch.setenv(variable, text)
    code, err = _main(ENVIRONMENT[variable])
    assert "Traceback" not in err, (variable, text, err)
    assert code in (*ACCEPTED, 2), (variable, text, code, err)
    if code:
        assert len(err.strip().splitlines()) == 1, (variable, text, err)
