"""The benchmarks use the test suite's fixtures: an isolated results store, a real server."""

from tests.conftest import mysql_server, no_leaks, results_path  # noqa: F401
