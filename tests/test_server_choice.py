"""A server found full ("1040 Too many connections") is, under --server auto, a reason to
take a throwaway server, not a traceback: the CLI and lab.run() in a notebook alike.

The world is faked here (lab.db.Probes, a login that gets 1040, a throwaway that is not
started): what is tested is the choice, in milliseconds, not MariaDB's count.
"""

from __future__ import annotations

import contextlib

import pytest

from lab import db
from lab.errors import LabError

FULL = "mysql://root@127.0.0.1:3399/test"
THROWAWAY = db.Server("127.0.0.1", 40001, "root", "", "test", source="throwaway")


@pytest.fixture
def a_full_server(monkeypatch):
    """LAB_MYSQL_URL names a server that refuses every login with 1040; a throwaway
    server, when one is started, is THROWAWAY (with the reason it was started)."""
    import pymysql

    def refuse(srv, **extra):
        raise db.explain(srv, pymysql.err.OperationalError(1040, "Too many connections"))

    @contextlib.contextmanager
    def throwaway(need, why):
        yield db.Server(**{**vars(THROWAWAY), "why": why})

    monkeypatch.setattr(db, "connect", refuse)
    monkeypatch.setattr(db, "_throwaway", throwaway)
    monkeypatch.setattr(db.mysqld, "sweep", lambda: [])
    return db.Probes(url=lambda: FULL, mysqld_binary=lambda: "/usr/sbin/mariadbd")


def test_auto_takes_a_throwaway_server_when_the_one_found_is_full(a_full_server):
    with db.server(a_full_server, db.Need(clients=4)) as srv:
        assert srv.port == THROWAWAY.port
        assert "Too many connections" in srv.why  # said, as the run's notes say it


def test_found_keeps_the_server_found_and_says_it_is_full_in_one_line(a_full_server):
    with pytest.raises(db.ServerFull, match="Too many connections"):
        with db.server(a_full_server, db.Need(clients=4, where="found")):
            pass


def test_without_a_mysqld_to_start_a_full_server_is_one_line(a_full_server):
    probes = db.Probes(url=lambda: FULL, mysqld_binary=lambda: None)
    with pytest.raises(LabError, match="Too many connections"):
        with db.server(probes, db.Need(clients=4)):
            pass
