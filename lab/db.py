# lab/db.py: finding a MySQL or MariaDB server for the SLEEP demos, and making it fit the run.
#
# resolve_server() tries, in order, and the Server it gives says which it used
# (Server.source):
#   url        LAB_MYSQL_URL=mysql://user:password@host:port/db[?ssl=required|preferred|disabled]
#   local      a server answering on 127.0.0.1:3306 as root, no password, database `test`
#              (a system MariaDB, a CI service). docker compose's MySQL has a `lab`
#              user instead: reach it with LAB_MYSQL_URL=mysql://lab:lab@127.0.0.1:3306/test
#   throwaway  the `daemonlab db up` server if one runs, else a new one started from a
#              local mariadbd/mysqld in a temporary directory (lab/mysqld.py)
#   container  a mysql:8.4 container through testcontainers, when a Docker engine answers
# and otherwise refuses with a LabError naming the four ways to get a server.
# LAB_DB_PATHS=throwaway,container (any of the four names, in any order) restricts and
# reorders the search: to force a path in a test, or to skip a slow probe.
#
# server() is the usual way in: it resolves, yields, and stops what it started.
# capacity() makes max_connections fit a run and puts it back afterwards.
# explain() turns a driver's error into one line, saying whether it came while
# logging in or mid-query (a server that went away while the run waited on it).
#
# Things that don't work, and why this module does what it does:
# - pymysql's default TLS mode ("preferred") builds ssl.create_default_context()
#   on every connect, ~21 ms of CPU even against a server without TLS; 1,000
#   threads spent 23 s connecting. So TLS is either off (ssl_disabled=True) or
#   on with one SSLContext built once.
# - connect_timeout bounds the TCP connect only: a server whose listen queue
#   overflowed never sends its greeting, nor does a service that is not MySQL
#   (Redis waits for its client to speak first), and the client waits for ever.
#   connect() bounds the login with GREETING_TIMEOUT_S and then lifts it (a
#   GET_LOCK or a long SLEEP may rightly take longer); probes set read_timeout.
# - Asking a server whether it offers TLS by logging in without it fails where
#   TLS is required (require_secure_transport: MariaDB answers "access denied",
#   as for a wrong password). The greeting, which a server sends before any
#   login, carries the answer: greeting() reads just that.
# - Reading the server's privileges to decide whether SET GLOBAL is allowed
#   means parsing SHOW GRANTS across MySQL and MariaDB versions; trying it and
#   catching "access denied" (1227) asks the server itself.
# - Putting a raised max_connections back in a `finally` fails after kill -9
#   and under two overlapping runs: lab/capacity.py records each raise on the
#   server itself and lets the last run out put it back.

from __future__ import annotations

import contextlib
import functools
import os
import secrets
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, quote

from lab import mysqld, urls
from lab.errors import LabError

if TYPE_CHECKING:
    import ssl

    import pymysql.connections

__all__ = [
    "LOCAL",
    "PATHS",
    "WHERE",
    "Choice",
    "Need",
    "Probes",
    "Server",
    "ServerFull",
    "capacity",
    "connect",
    "describe",
    "docker_answers",
    "went_away",
    "down",
    "explain",
    "greeting",
    "parse_url",
    "query_tag",
    "repair",
    "resolve_server",
    "server",
    "shortfall",
    "status",
    "up",
]

PATHS = ("url", "local", "throwaway", "container")
LOCAL_HOST, LOCAL_PORT = "127.0.0.1", 3306
CONTAINER_IMAGE = "mysql:8.4"
# pymysql's own default; the 1,000-client runs pace their connects instead of waiting longer.
CONNECT_TIMEOUT_S = 10
# A server on this machine answers in milliseconds; a probe must not make `db status` slow.
PROBE_TIMEOUT_S = 1
# How long a login may wait for the server's first word (see the header): a server
# greets as it accepts, within milliseconds even when busy.
GREETING_TIMEOUT_S = 10
# The experiment's own bookkeeping connection, plus one spare so you can still look in.
HEADROOM = 2

# Client-side connection errors (pymysql.constants.CR) and server error codes we explain.
CR_CONN_HOST_ERROR, CR_SERVER_GONE, CR_SERVER_LOST = 2003, 2006, 2013
CR_SSL_CONNECTION_ERROR = 2026
ER_DBACCESS_DENIED, ER_ACCESS_DENIED, ER_BAD_DB, ER_HOST_NOT_PRIVILEGED = 1044, 1045, 1049, 1130
ER_CON_COUNT_ERROR = 1040  # "Too many connections": max_connections reached
ER_SPECIFIC_ACCESS_DENIED = 1227  # e.g. SET GLOBAL without SUPER / SYSTEM_VARIABLES_ADMIN


@dataclass(frozen=True)
class Server:
    """Where a MySQL server is and how to log in. The password never shows in repr or output."""

    host: str
    port: int
    user: str
    password: str = field(repr=False)
    database: str
    source: str  # "LAB_MYSQL_URL", "127.0.0.1:3306", "throwaway", "db up", "testcontainers"
    tls: bool = False
    unix_socket: str | None = None  # None: the experiments measure TCP like a remote client
    pid: int | None = None  # the server's process, when the lab started it
    why: str = ""  # why this server was picked, when it was not the first one found

    def safe_url(self) -> str:
        """The URL without its password: safe for tables, logs and stored results."""
        return f"mysql://{quote(self.user)}:***@{self.host}:{self.port}/{self.database}"

    def pymysql_kwargs(self, **extra: Any) -> dict[str, Any]:
        """Arguments for pymysql.connect; `extra` (read_timeout=..., autocommit=...) wins."""
        # Not pymysql's default "preferred" TLS, which builds a context per connect (header).
        tls = {"ssl": _tls_context()} if self.tls else {"ssl_disabled": True}
        return self._common() | {"database": self.database} | tls | extra

    def aiomysql_kwargs(self, **extra: Any) -> dict[str, Any]:
        """Arguments for aiomysql.connect, which names them db= and ssl= and has no TLS default."""
        tls = _tls_context() if self.tls else None
        return self._common() | {"db": self.database, "ssl": tls} | extra

    def asyncmy_kwargs(self, **extra: Any) -> dict[str, Any]:
        """Arguments for asyncmy.connect (database=, ssl= an SSLContext or None)."""
        tls = _tls_context() if self.tls else None
        return self._common() | {"database": self.database, "ssl": tls} | extra

    def _common(self) -> dict[str, Any]:
        return {
            "host": self.host,
            "port": self.port,
            "user": self.user,
            "password": self.password,
            "connect_timeout": CONNECT_TIMEOUT_S,
            "unix_socket": self.unix_socket,
        }


@functools.cache
def _tls_context() -> ssl.SSLContext:
    """One SSLContext for every TLS connection of this process, built on first use.

    Encrypt without verifying, like the mysql client's --ssl-mode=REQUIRED:
    MySQL's own certificates are self-signed, so verification would refuse them."""
    import ssl  # here, not at the top: ~10 ms that most runs (TLS off) never need

    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    return ctx


# -- LAB_MYSQL_URL --------------------------------------------------------------

_URL_FORM = "mysql://user:password@host:port/db"
_SSL_MODES = ("required", "preferred", "disabled")


def parse_url(url: str, name: str = "LAB_MYSQL_URL") -> tuple[Server, str]:
    """A Server from a URL and its ssl mode; a LabError naming what is wrong.

    `name` is where the URL came from (LAB_RESULTS for the results store), and
    Server.source says it too. Messages never repeat the URL: it holds a password."""

    def bad(what: str) -> LabError:
        return LabError(f"{name} is not {_URL_FORM}: {what}")

    # The scheme, then brackets, ports, NUL: one line each (lab/urls.py).
    parts = urls.split(url, name, _URL_FORM, schemes=("mysql", "mariadb"))
    if not parts.hostname:
        raise bad("no host")
    if not parts.username:
        raise bad("no user")
    port = LOCAL_PORT if parts.port is None else parts.port
    database = urls.decode(parts.path.lstrip("/"), name, _URL_FORM, "database")
    if not database or "/" in database:
        raise bad("no database after the port (e.g. /test)")
    query = parse_qs(parts.query, keep_blank_values=True)
    unknown = sorted(set(query) - {"ssl"})
    if unknown:
        raise bad(f"unknown option {unknown[0]!r} (only ?ssl=required|preferred|disabled)")
    mode = query.get("ssl", ["disabled"])[-1]
    if mode not in _SSL_MODES:
        raise bad(f"ssl={mode!r}, expected one of {', '.join(_SSL_MODES)}")
    srv = Server(
        host=parts.hostname,
        port=port,
        user=urls.decode(parts.username, name, _URL_FORM, "user"),
        password=urls.decode(parts.password or "", name, _URL_FORM, "password"),
        database=database,
        source=name,
        tls=mode == "required",
    )
    return srv, mode


# -- connecting, and errors a person can act on ---------------------------------


def connect(srv: Server, **extra: Any) -> pymysql.connections.Connection:
    """A pymysql connection to `srv`; expected failures become a one-line LabError.

    The login is bounded by GREETING_TIMEOUT_S (see the header) unless `extra`
    sets read_timeout; after it, reads wait as long as `extra` says (for ever
    by default, like pymysql's own)."""
    import pymysql

    try:
        conn = pymysql.connect(**srv.pymysql_kwargs(**{"read_timeout": GREETING_TIMEOUT_S} | extra))
    except pymysql.err.MySQLError as exc:
        if _code(exc) == ER_ACCESS_DENIED and not srv.tls and _tls_lets_in(srv):
            raise LabError(
                f"{srv.safe_url()} ({srv.source}): the server takes this login only over"
                f" TLS (require_secure_transport): add ?ssl=required to {srv.source}"
            ) from None
        raise explain(srv, exc) from None
    # pymysql has no timeout for the login alone; it applies _read_timeout before each
    # read (connections.py, _read_packet), so this lifts the bound from here on.
    conn._read_timeout = extra.get("read_timeout")
    return conn


def _tls_lets_in(srv: Server) -> bool:
    """Does a login refused without TLS pass with it? (Only then is TLS, not the
    password, what is wrong; the server's message is the same for both.)"""
    from pymysql.constants import CLIENT

    try:
        if not greeting(srv) & CLIENT.SSL:
            return False
        connect(replace(srv, tls=True)).close()
    except LabError:
        return False
    return True


def greeting(srv: Server) -> int:
    """The capability flags in the server's greeting, read without logging in.

    The greeting is the first packet of the protocol, sent by the server as
    it accepts: a 3-byte length, a sequence number, then protocol version 10,
    the server's version (NUL-terminated), a 4-byte thread id, 8 bytes of
    scramble and a filler, and the low 16 bits of the capabilities
    (https://dev.mysql.com/doc/dev/mysql-server/latest/page_protocol_connection_phase_packets_protocol_handshake_v10.html).
    CLIENT.SSL is among the low 16. An error packet (0xff: too many
    connections, a blocked host) becomes a LabError, as a login's would."""
    import socket

    def fail(reason: str) -> LabError:
        return LabError(f"{srv.safe_url()} ({srv.source}): {reason}")

    try:
        if srv.unix_socket:
            sock = socket.socket(socket.AF_UNIX)
            sock.settimeout(GREETING_TIMEOUT_S)
            sock.connect(srv.unix_socket)
        else:
            sock = socket.create_connection((srv.host, srv.port), GREETING_TIMEOUT_S)
        with sock, sock.makefile("rb") as f:
            sock.settimeout(GREETING_TIMEOUT_S)
            head = f.read(4)
            body = f.read(int.from_bytes(head[:3], "little")) if len(head) == 4 else b""
    except TimeoutError:
        raise fail(_NO_GREETING.format(port=srv.port, s=GREETING_TIMEOUT_S)) from None
    except OSError as exc:
        raise fail(f"nothing answers there ({exc.strerror or exc})") from None
    if body[:1] == b"\xff":  # an error packet: a 2-byte code, [#, 5-byte state,] message
        message = body[9:] if body[3:4] == b"#" else body[3:]
        code = int.from_bytes(body[1:3], "little")
        raise fail(f"error {code}: {message.decode(errors='replace')}")
    version_end = body.find(b"\0", 1)
    flags = body[version_end + 1 + 4 + 8 + 1 :][:2]
    if body[:1] != b"\x0a" or version_end < 0 or len(flags) != 2:
        raise fail("the greeting is not MySQL's: is that a MySQL server?")
    return int.from_bytes(flags, "little")


_NO_GREETING = (
    "port {port} did not greet within {s} s: is a MySQL server listening there?"
    " (MySQL speaks first; this service waits for its client)"
)


#: What a server that went away looks like to a client: the driver's codes,
#: or, from a driver that does not wrap them (asyncmy), the socket's own errors.
WENT_AWAY = (CR_SERVER_GONE, CR_SERVER_LOST)


def went_away(exc: BaseException) -> bool:
    """Did `exc` come from a connection the server (or the network) dropped?"""
    import asyncio

    if isinstance(exc, ConnectionError | EOFError | asyncio.IncompleteReadError):
        return True
    return _code(exc) in WENT_AWAY


def _code(exc: BaseException) -> int | None:
    args = getattr(exc, "args", ())
    return args[0] if args and isinstance(args[0], int) else None


class ServerFull(LabError):
    """The server refused a login: "1040 Too many connections" (max_connections reached).
    Under --server auto a run then takes a throwaway server, as it does for one found
    with too little room (server()): a busy shared server is no reason to fail."""


def explain(srv: Server, exc: BaseException, during: str = "login") -> LabError:
    """Turn a driver's error (pymysql's, aiomysql's, asyncmy's) into one line.

    `during` is "login" or "query": a connection lost while logging in most
    likely reached something that is not a MySQL server; one lost mid-query
    reached a server that went away (stopped, killed, restarted)."""
    code = _code(exc)
    user, db = srv.user, srv.database
    if during == "login" and code == CR_SERVER_LOST and "timed out" in str(exc):
        return LabError(
            f"{srv.safe_url()} ({srv.source}): "
            + _NO_GREETING.format(port=srv.port, s=GREETING_TIMEOUT_S)
        )
    if during == "query" and went_away(exc):
        return LabError(
            f"{srv.safe_url()} ({srv.source}): the server went away mid-query"
            " (the connection dropped: was it stopped, killed or restarted?)"
        )
    reasons = {
        ER_ACCESS_DENIED: f"access denied for user {user!r}: wrong user or password",
        ER_DBACCESS_DENIED: f"user {user!r} may not use database {db!r}",
        ER_BAD_DB: f"unknown database {db!r}: CREATE DATABASE {db}, or name another one",
        ER_HOST_NOT_PRIVILEGED: f"user {user!r} may not connect from this host",
        CR_CONN_HOST_ERROR: "nothing answers there: is the server running, host and port right?",
        CR_SERVER_LOST: "the connection dropped while logging in: is that a MySQL server?",
        CR_SSL_CONNECTION_ERROR: "ssl=required but the server offers no TLS",
        ER_CON_COUNT_ERROR: "the server refused a connection: Too many connections"
        " (max_connections reached)",
    }
    # Server messages name the user and host, never the password.
    reason = reasons.get(code) or f"error {code}: {exc.args[-1] if exc.args else exc}"
    refusal = ServerFull if code == ER_CON_COUNT_ERROR else LabError
    return refusal(f"{srv.safe_url()} ({srv.source}): {reason}")


def _answers(srv: Server) -> bool:
    """Does `srv` accept a login within PROBE_TIMEOUT_S?"""
    import pymysql

    try:
        conn = pymysql.connect(
            **srv.pymysql_kwargs(
                connect_timeout=PROBE_TIMEOUT_S,
                read_timeout=PROBE_TIMEOUT_S,
                write_timeout=PROBE_TIMEOUT_S,
            )
        )
    except (pymysql.err.Error, OSError):
        return False
    conn.close()
    return True


def _offers_tls(srv: Server) -> bool:
    """For ssl=preferred: ask the server once, rather than pymysql on every connect;
    from its greeting, since logging in without TLS may be refused (see the header)."""
    from pymysql.constants import CLIENT

    return bool(greeting(srv) & CLIENT.SSL)


# -- the probes, one per question resolution asks ---------------------------------


def _url_from_env() -> str | None:
    return os.environ.get("LAB_MYSQL_URL") or None


LOCAL = Server(LOCAL_HOST, LOCAL_PORT, "root", "", "test", source=f"{LOCAL_HOST}:{LOCAL_PORT}")


def _local_answers() -> bool:
    return _answers(LOCAL)


def _throwaway_server(m: mysqld.Mysqld, source: str, why: str = "") -> Server:
    return Server("127.0.0.1", m.port, "root", "", "test", source=source, pid=m.pid, why=why)


def _live_up_server() -> Server | None:
    """The `db up` server, if its state file names a live one that answers."""
    m = mysqld.running()
    if m is None:
        return None
    srv = _throwaway_server(m, "db up")
    return srv if _answers(srv) else None


def docker_answers() -> bool:
    """A Docker engine answers a ping. Cheap checks first: most machines have no engine."""
    if not (os.environ.get("DOCKER_HOST") or os.path.exists("/var/run/docker.sock")):
        return False
    try:
        import docker
    except ImportError:
        return False
    try:
        client = docker.from_env(timeout=PROBE_TIMEOUT_S * 2)  # an engine answers a ping slower
        with contextlib.closing(client):
            return bool(client.ping())
    except (docker.errors.DockerException, OSError):  # requests' errors are OSErrors
        return False


@dataclass(frozen=True)
class Probes:
    """What resolution asks the world, one callable per question, so tests can fake the world."""

    url: Callable[[], str | None] = _url_from_env
    local: Callable[[], bool] = _local_answers
    up_server: Callable[[], Server | None] = _live_up_server
    mysqld_binary: Callable[[], str | None] = mysqld.find_binary
    docker: Callable[[], bool] = docker_answers


# -- resolution -------------------------------------------------------------------


@dataclass(frozen=True)
class Choice:
    """What resolution picked: a server to use now, or what server() would start."""

    path: str  # one of PATHS
    source: str  # what Server.source will say
    server: Server | None = None
    would_start: str | None = None


def _allowed_paths() -> list[str]:
    raw = os.environ.get("LAB_DB_PATHS")
    if raw is None:
        return list(PATHS)
    paths = [p.strip() for p in raw.split(",") if p.strip()]
    unknown = [p for p in paths if p not in PATHS]
    if unknown or not paths:
        raise LabError(f"LAB_DB_PATHS={raw!r}: use a comma-separated list of {', '.join(PATHS)}")
    return paths


def _try_url(probes: Probes) -> Choice | None:
    url = probes.url()
    if url is None:
        return None
    srv, mode = parse_url(url)
    if mode == "preferred":
        srv = replace(srv, tls=_offers_tls(srv))
    return Choice("url", srv.source, server=srv)


def _try_local(probes: Probes) -> Choice | None:
    return Choice("local", LOCAL.source, server=LOCAL) if probes.local() else None


def _try_throwaway(probes: Probes) -> Choice | None:
    live = probes.up_server()
    if live is not None:
        return Choice("throwaway", live.source, server=live)
    binary = probes.mysqld_binary()
    if binary is None:
        return None
    name = os.path.basename(binary)
    return Choice("throwaway", "throwaway", would_start=f"a throwaway {name} from {binary}")


def _try_container(probes: Probes) -> Choice | None:
    if not probes.docker():
        return None
    return Choice("container", "testcontainers", would_start=f"a {CONTAINER_IMAGE} container")


_TRIES = {
    "url": _try_url,
    "local": _try_local,
    "throwaway": _try_throwaway,
    "container": _try_container,
}

NO_SERVER = (
    "no MySQL server found; either "
    "(1) set LAB_MYSQL_URL=mysql://user:password@host:port/db "
    "(after `docker compose up -d mysql`: mysql://lab:lab@127.0.0.1:3306/test), "
    "(2) start a server on 127.0.0.1:3306 with root and no password, "
    "(3) install mariadb-server (the lab starts its own mariadbd), or "
    "(4) start Docker (with pip install 'daemonlab[docker]')"
)


def resolve_server(probes: Probes | None = None) -> Choice:
    """Pick the first path in LAB_DB_PATHS order that can give a server; start nothing."""
    probes = probes or Probes()
    paths = _allowed_paths()
    for path in paths:
        choice = _TRIES[path](probes)
        if choice is not None:
            return choice
    restricted = f" (LAB_DB_PATHS allows only {','.join(paths)})" if paths != list(PATHS) else ""
    raise LabError(NO_SERVER + restricted)


@dataclass(frozen=True)
class Need:
    """What a run asks of a server: room for its clients, and how it serves them.

    where: "auto" takes the server found if it can take the load as it is,
    else starts a throwaway one that can (and says why); "found" takes the
    server found whatever it is (capacity() then raises max_connections, or
    refuses); "throwaway" always starts one.
    """

    clients: int = 0
    thread_handling: str | None = None  # None: however the server does it
    where: str = "auto"

    def settings(self) -> mysqld.Settings:
        """A throwaway server that takes this load: room for every client and a
        spare hundred, a listen queue for a burst of connects (up to the
        kernel's cap), the thread handling asked for."""
        return mysqld.Settings(
            max_connections=max(mysqld.MAX_CONNECTIONS, self.clients + HEADROOM + 100),
            back_log=min(max(self.clients, mysqld.DEFAULT_BACK_LOG), _somaxconn()),
            thread_handling=self.thread_handling or mysqld.THREAD_HANDLINGS[0],
        )


WHERE = ("auto", "found", "throwaway")


def _somaxconn() -> int:
    """The kernel's cap on any listen queue (net.core.somaxconn; 4096 since Linux 5.4)."""
    try:
        with open("/proc/sys/net/core/somaxconn") as f:
            return int(f.read())
    except (OSError, ValueError):
        return 128  # the historical default, where /proc does not say


def shortfall(srv: Server, need: Need) -> str | None:
    """Why `srv` cannot take `need` as it is (None when it can)."""
    facts = describe(srv)
    if need.thread_handling and facts["thread_handling"] != need.thread_handling:
        return f"{srv.source} serves connections {facts['thread_handling']}"
    with contextlib.closing(connect(srv)) as conn, conn.cursor() as cur:
        cur.execute("SHOW GLOBAL STATUS LIKE 'Threads_connected'")
        others = int(cur.fetchone()[1]) - 1
    wanted = need.clients + HEADROOM + others
    if facts["max_connections"] < wanted:
        return f"{srv.source} has max_connections {facts['max_connections']}, not {wanted:,}"
    return None


@contextlib.contextmanager
def server(probes: Probes | None = None, need: Need = Need()) -> Iterator[Server]:
    """Resolve a server that can take `need` and yield it; stop what was started for it
    on exit, Ctrl-C included. Server.why says why, when it is not the one found first.

    First, what runs killed with -9 left (their throwaway servers' data directories,
    126 MB each) goes, whichever server this run uses (lab.mysqld.sweep)."""
    mysqld.sweep()
    if need.where == "throwaway":
        with _throwaway(need, "--server throwaway") as srv:
            yield srv
        return
    choice = resolve_server(probes)
    if choice.server is not None:
        try:
            if choice.path == "url":
                connect(choice.server).close()  # a wrong password fails here, in one line
            why = None if need.where == "found" else shortfall(choice.server, need)
        except ServerFull as exc:  # full now: the CLI and a notebook alike take a throwaway
            if need.where == "found" or not _may_start_throwaway(probes):
                raise
            why = str(exc)
        if why is None or not _may_start_throwaway(probes):
            yield choice.server  # capacity() raises what can be raised, or refuses
            return
        with _throwaway(need, why) as srv:
            yield srv
    elif choice.path == "throwaway":
        with _throwaway(need, "") as srv:
            yield srv
    else:
        with _container(need) as srv:
            yield srv


def _may_start_throwaway(probes: Probes | None) -> bool:
    return "throwaway" in _allowed_paths() and (probes or Probes()).mysqld_binary() is not None


@contextlib.contextmanager
def _throwaway(need: Need, why: str) -> Iterator[Server]:
    settings = need.settings()
    if why:
        why = (
            f"{why}: started a throwaway server with max_connections {settings.max_connections:,},"
            f" back_log {settings.back_log:,}, {settings.thread_handling}"
        )
    with mysqld.throwaway(settings) as m:
        yield _throwaway_server(m, "throwaway", why)


@contextlib.contextmanager
def _container(need: Need) -> Iterator[Server]:
    """A mysql:8.4 container for one `with` block, as root so capacity() may SET GLOBAL."""
    try:
        from testcontainers.community.mysql import MySqlContainer
    except ImportError:
        raise LabError(
            "Docker answers but testcontainers is missing: pip install 'daemonlab[docker]'"
        ) from None
    password = secrets.token_urlsafe(16)  # the container lives minutes; nobody types it
    container = MySqlContainer(
        CONTAINER_IMAGE, username="root", password=password, dbname="test"
    ).with_command(f"--max-connections={need.settings().max_connections}")
    with container:
        yield Server(
            host=container.get_container_host_ip(),
            port=int(container.get_exposed_port(3306)),
            user="root",
            password=password,
            database="test",
            source="testcontainers",
        )


# -- what the CLI shows -----------------------------------------------------------


def describe(srv: Server) -> dict[str, Any]:
    """Where the server came from and the settings that limit the demos."""
    with contextlib.closing(connect(srv)) as conn, conn.cursor() as cur:
        cur.execute("SELECT VERSION()")
        (version,) = cur.fetchone()
        cur.execute(
            "SHOW GLOBAL VARIABLES WHERE Variable_name IN "
            "('max_connections', 'back_log', 'have_ssl', 'thread_handling')"
        )
        variables = dict(cur.fetchall())
    return {
        "source": srv.source,
        "url": srv.safe_url(),
        "version": version,
        "max_connections": int(variables["max_connections"]),
        "back_log": int(variables["back_log"]),
        "thread_handling": variables.get("thread_handling", "one-thread-per-connection"),
        "have_ssl": variables.get("have_ssl"),  # MySQL 8.4 may no longer report it
    }


def status() -> dict[str, Any]:
    """describe() of what server() would use, or what it would start (without starting it)."""
    choice = resolve_server()
    if choice.server is not None:
        return describe(choice.server)
    return {"source": choice.source, "would_start": f"would start {choice.would_start}"}


def up() -> dict[str, Any]:
    """`daemonlab db up`: start (or find) the shared throwaway server and describe it."""
    m, started = mysqld.up()
    srv = _throwaway_server(m, "db up")
    # root without a password on 127.0.0.1 (_throwaway_server): a URL safe to print.
    url = f"mysql://{srv.user}@{srv.host}:{srv.port}/{srv.database}"
    return describe(srv) | {"started": started, "pid": m.pid, "datadir": m.datadir, "export": url}


def down() -> list[str]:
    """`daemonlab db down`: stop the shared server and every server a dead run left;
    what it did, one line each, and the throwaway servers live runs still use."""
    stopped, found = mysqld.down()
    lines = ["stopped the lab's server" if stopped else "no `db up` server was running"]
    for left in found:
        pid = f"pid {left.owner_pid}" if left.owner_pid else "an unknown run"
        if left.removed:
            server = f"stopped its server (pid {left.server_pid}), " if left.server_pid else ""
            lines.append(f"{server}removed {left.datadir}, left by {pid}, which is gone")
        else:
            lines.append(f"left {left.datadir} alone: in use by {pid}")
    return lines


# -- capacity ---------------------------------------------------------------------


@contextlib.contextmanager
def capacity(srv: Server, connections: int) -> Iterator[tuple[int, int] | None]:
    """Make sure max_connections has room for `connections` (+ HEADROOM) for the block.

    When it has not, raise it with SET GLOBAL if the account may, as a lease
    recorded on the server (lab/capacity.py: put back when the block ends,
    however the run ends, and never under another run that still needs it);
    when it may not, raise LabError before anything connects, naming the limit
    and the fix. Yields (was, now) when it raised the limit, else None."""
    from lab import capacity as leases

    with leases.hold(srv, connections + HEADROOM, clients=connections) as raised:
        yield raised


def query_tag() -> str:
    """The tag for one run's queries, `/* daemonlab TAG */`: what lets the run's
    max_connections keeper find and end them if the run is killed (lab/capacity.py)."""
    from lab import capacity as leases

    return leases.query_tag()


def repair(srv: Server) -> str | None:
    """Undo a max_connections raise left by a run that died (`daemonlab doctor`)."""
    from lab import capacity as leases

    with contextlib.closing(connect(srv, autocommit=True)) as conn:
        return leases.repair(conn)
