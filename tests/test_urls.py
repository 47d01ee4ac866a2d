"""Every URL the lab reads from its environment: usable, or refused in one line.

Issue 22 #12: brackets, ports out of range, non-ASCII digits and NUL bytes in
LAB_MYSQL_URL, LAB_RESULTS, LAB_<SERVICE>_URL and the harness's `results`
gave tracebacks or were accepted. Hypothesis throws text and URL-shaped text at
each parser (lab/urls.py underneath them all); a few go through the real
command line to see the one line and exit 2.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from lab import db, services
from lab.daemon import config
from lab.errors import LabError
from lab.results import is_url
from tests.conftest import assert_refused, run_cli

PASSWORD = "s3cr3t-pw"
#: The pieces users get wrong, next to ones that work.
HOSTS = st.sampled_from(
    ["h", "127.0.0.1", "[::1]", "[::1", "::1]", "]h[", "[fe80::1%eth0]", "h\x00", "h\n", "", "ħ"]
)
PORTS = st.sampled_from(
    ["", ":", ":3306", ":0", ":65535", ":65536", ":99999999999999999999", ":-1", ":+1", ": 1",
     ":３３０６", ":٣٣٠٦", ":1e3", ":0x10", ":port"]
)  # fmt: skip
PATHS = st.sampled_from(["", "/", "/test", "/te\x00st", "/%ff", "/%00", "/a/b", "/é", "/t#f"])
QUERIES = st.sampled_from(["", "?ssl=required", "?ssl=preferred", "?ssl=maybe", "?ssl", "?x=1"])
MYSQL_LIKE = st.builds(
    lambda scheme, user, host, port, path, query: f"{scheme}{user}{host}{port}{path}{query}",
    st.sampled_from(["mysql://", "mariadb://", "MYSQL://", "redis://", "", "mysql:/"]),
    st.sampled_from(["", "root@", f"u:{PASSWORD}@", f"u%00:{PASSWORD}@", f"u:{PASSWORD}%ff@"]),
    HOSTS,
    PORTS,
    PATHS,
    QUERIES,
)
ANY_URL = st.one_of(MYSQL_LIKE, st.text(max_size=40))


def _refusal_is_one_line(exc: LabError) -> None:
    message = str(exc)
    assert "\n" not in message and PASSWORD not in message, message


@given(ANY_URL)
@settings(max_examples=400, deadline=None)
def test_a_mysql_url_is_a_reachable_server_or_one_line(url):
    for name in ("LAB_MYSQL_URL", "LAB_RESULTS"):
        try:
            srv, mode = db.parse_url(url, name)
        except LabError as exc:
            _refusal_is_one_line(exc)
            assert str(exc).startswith(name), exc
            continue
        assert 1 <= srv.port <= 65535
        assert srv.host and srv.host.isascii() and srv.host.isprintable()
        for text in (srv.user, srv.password, srv.database):
            assert text.isprintable() or text == "", repr(text)
        assert mode in ("required", "preferred", "disabled")


@given(st.sampled_from(sorted(services.SERVICES)), ANY_URL)
@settings(
    max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
def test_a_service_url_gives_an_address_or_one_line(monkeypatch, name, url):
    assume("\x00" not in url)  # the kernel's environment cannot hold one
    try:
        os.fsencode(url)
    except UnicodeEncodeError:
        assume(False)  # nor a character os.environ cannot encode
    monkeypatch.setenv(services.SERVICES[name].env, url)
    try:
        host, port = services.address(name)
    except LabError as exc:
        _refusal_is_one_line(exc)
        assert services.SERVICES[name].env in str(exc)
        return
    assert 0 <= port <= 65535 and host.isprintable()


@given(ANY_URL)
@settings(max_examples=300, deadline=None)
def test_the_harness_results_is_a_file_or_one_line(text):
    try:
        path = config.results_path(text, Path("/srv"))
    except LabError as exc:
        _refusal_is_one_line(exc)
        assert is_url(text)
        return
    assert not is_url(text) and isinstance(path, Path)


@pytest.mark.parametrize(
    ("variable", "args"),
    [("LAB_MYSQL_URL", ("db", "status")), ("LAB_RESULTS", ("results",))],
)
@pytest.mark.parametrize(
    "url",
    [
        f"mysql://u:{PASSWORD}@[::1/test",
        f"mysql://u:{PASSWORD}@h:70000/test",
        f"mysql://u:{PASSWORD}@h:٣٣٠٦/test",
        f"mysql://u:{PASSWORD}@h/te\x01st",
        f"mysql://u:{PASSWORD}@h/%ff",
        f"MYSQL://u:{PASSWORD}@h:99999/test",
    ],
)
def test_a_malformed_url_at_the_command_line_is_one_line_exit_2(variable, args, url):
    result = run_cli(*args, env={variable: url, "LAB_DB_PATHS": "url"})
    assert_refused(result, f"{variable} is not mysql://")
    assert PASSWORD not in result.stderr + result.stdout


def test_a_malformed_service_url_stops_a_run_in_one_line():
    result = run_cli("run", "worker", "--no-store", env={"LAB_REDIS_URL": "redis://h:99999/0"})
    assert_refused(result, "LAB_REDIS_URL is not redis://host:port: the port is not a number")
