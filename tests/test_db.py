"""lab.db and lab.mysqld against real servers: this machine's MariaDB on 3306, throwaway
mariadbd servers started for the test, and resolution's choice logic with faked probes.

The only fakes are the probes in the choice-logic tests: Docker cannot run here, and
"which path wins when X answers" is a question about the order, not about servers.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import functools
import json
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil
import pytest

from lab import children, db, mysqld
from lab.errors import LabError
from tests.conftest import missing

ROOT = Path(__file__).resolve().parent.parent

pytestmark = pytest.mark.usefixtures("no_leaks", "isolated_env")


@pytest.fixture
def isolated_env(tmp_path, monkeypatch):
    """No LAB_MYSQL_URL or LAB_DB_PATHS from the caller's shell; `db up` state in tmp_path."""
    monkeypatch.delenv("LAB_MYSQL_URL", raising=False)
    monkeypatch.delenv("LAB_DB_PATHS", raising=False)
    monkeypatch.setenv("LAB_MYSQLD_STATE", str(tmp_path / "mysqld.json"))


@pytest.fixture
def require_db() -> db.Server:
    """This machine's server on 127.0.0.1:3306 (root, no password)."""
    if not db.Probes().local():
        missing("no server answers on 127.0.0.1:3306 as root with no password")
    return db.LOCAL


@pytest.fixture
def require_mysqld() -> str:
    """A local mariadbd/mysqld binary, for the throwaway servers."""
    binary = mysqld.find_binary()
    if binary is None:
        missing("no mariadbd or mysqld installed")
    return binary


def max_connections(srv: db.Server) -> int:
    return db.describe(srv)["max_connections"]


#: Servers module fixtures keep up for several tests (lease_server): not the test's own.
FIXTURE_SERVERS: set[int] = set()


def mariadbd_children() -> list[psutil.Process]:
    """The servers this test started (not a module fixture's)."""
    return [
        p
        for p in psutil.Process().children()
        if p.pid not in FIXTURE_SERVERS and any("--datadir=" in a for a in p.cmdline())
    ]


def gone(pid: int, timeout: float = 5.0) -> bool:
    """The process exited. A server we did not start is init's child, reaped a moment later
    on this machine (1.2-1.6 s measured), so a zombie counts as gone."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if psutil.Process(pid).status() == psutil.STATUS_ZOMBIE:
                return True
        except psutil.NoSuchProcess:
            return True
        time.sleep(0.05)
    return False


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# -- path 2: this machine's server ----------------------------------------------


@pytest.mark.db
def test_local_server_is_found_and_described(require_db):
    with db.server() as srv:
        assert srv.source == "127.0.0.1:3306"
        info = db.describe(srv)
    assert info["source"] == "127.0.0.1:3306"
    assert info["url"] == "mysql://root:***@127.0.0.1:3306/test"
    assert info["version"]
    assert info["max_connections"] > 0 and info["back_log"] > 0


@pytest.mark.db
def test_status_describes_the_server_it_would_use(require_db):
    assert db.status()["source"] == "127.0.0.1:3306"


# -- path 1: LAB_MYSQL_URL against the real server -----------------------------


@pytest.mark.db
def test_url_path_is_used_when_set(require_db, monkeypatch):
    monkeypatch.setenv("LAB_MYSQL_URL", "mysql://root:@127.0.0.1:3306/test")
    with db.server() as srv:
        assert srv.source == "LAB_MYSQL_URL"
        assert db.describe(srv)["version"]


@pytest.mark.db
def test_ssl_preferred_asks_the_server_once(require_db, monkeypatch):
    monkeypatch.setenv("LAB_MYSQL_URL", "mysql://root:@127.0.0.1:3306/test?ssl=preferred")
    offers = db.describe(db.LOCAL)["have_ssl"] == "YES"
    assert db.resolve_server().server.tls is offers


@pytest.mark.db
def test_ssl_required_from_a_server_without_tls_is_one_line(require_db, monkeypatch):
    if db.describe(db.LOCAL)["have_ssl"] == "YES":
        pytest.skip("this server offers TLS")
    monkeypatch.setenv("LAB_MYSQL_URL", "mysql://root:@127.0.0.1:3306/test?ssl=required")
    with pytest.raises(LabError, match="offers no TLS"), db.server():
        pass


@pytest.mark.db
def test_wrong_password_is_one_line_without_the_password(require_db, monkeypatch):
    monkeypatch.setenv("LAB_MYSQL_URL", "mysql://root:hunter2-secret@127.0.0.1:3306/test")
    with pytest.raises(LabError) as err, db.server():
        pass
    message = str(err.value)
    assert "access denied" in message and "\n" not in message
    assert "hunter2-secret" not in message


@pytest.mark.db
def test_unknown_database_is_one_line(require_db):
    srv = db.Server("127.0.0.1", 3306, "root", "", "no_such_db_here", source="test")
    with pytest.raises(LabError, match="unknown database 'no_such_db_here'"):
        db.connect(srv)


def test_unreachable_port_is_one_line():
    srv = db.Server("127.0.0.1", closed_port(), "root", "pw-not-shown", "test", source="test")
    with pytest.raises(LabError, match="nothing answers there") as err:
        db.connect(srv, connect_timeout=1)
    assert "pw-not-shown" not in str(err.value)


@pytest.fixture
def silent_port():
    """A port that accepts connections (the kernel does, from the listen queue) and never
    says a word, like Redis to a client that waits for it to speak first."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        yield listener


def test_a_port_that_never_greets_is_one_line_not_a_hang(silent_port):
    """Issue 22 #9: `db status` against such a port waited for ever."""
    from tests.conftest import assert_refused, run_cli

    port = silent_port.getsockname()[1]
    started = time.monotonic()
    result = run_cli("db", "status", env={"LAB_MYSQL_URL": f"mysql://root@127.0.0.1:{port}/test"},
                     timeout=60)  # fmt: skip
    assert_refused(result, f"port {port} did not greet within {db.GREETING_TIMEOUT_S} s")
    assert time.monotonic() - started < db.GREETING_TIMEOUT_S + 20


def test_a_run_stopped_while_it_waits_for_a_greeting_says_nothing_was_stored(silent_port, tmp_path):
    """Issue 22 #9: stopped by TERM before the run began, it said "stored as interrupted"."""
    import select

    port = silent_port.getsockname()[1]
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "LAB_RESULTS": str(tmp_path / "lab.db"),
        "LAB_MYSQL_URL": f"mysql://root@127.0.0.1:{port}/test",
        "LAB_DB_PATHS": "url",
    }
    run = subprocess.Popen(
        [sys.executable, "-m", "lab", "run", "sleep", "--clients", "2"],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert select.select([silent_port], [], [], 60)[0], "the run connects to the port"
        run.send_signal(signal.SIGTERM)
        out, err = run.communicate(timeout=60)
    finally:
        if run.poll() is None:
            run.kill()
            run.communicate()
    assert run.returncode != 0 and "interrupted by SIGTERM" in err, err
    assert "stored" not in err, err
    from lab.results import open_store

    with open_store(tmp_path / "lab.db", readonly=True) as store:
        assert store.runs() == [], "nothing was stored, and nothing was said to be"


@pytest.fixture(scope="module")
def tls_server(tmp_path_factory):
    """A throwaway MariaDB with a self-signed certificate that takes logins only over TLS
    (require_secure_transport=ON, set once it runs: the lab's own start-up check logs
    in without TLS)."""
    if mysqld.find_binary() is None or shutil.which("openssl") is None:
        missing("no mariadbd/mysqld or openssl installed")
    folder = tmp_path_factory.mktemp("tls")
    cert, key = folder / "cert.pem", folder / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
         "-subj", "/CN=127.0.0.1", "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True,
    )  # fmt: skip
    settings = mysqld.Settings(max_connections=151, tls=(str(cert), str(key)))
    with mysqld.throwaway(settings) as m:
        FIXTURE_SERVERS.add(m.pid)
        srv = db.Server("127.0.0.1", m.port, "root", "", "test", source="tls test", pid=m.pid)
        _admin(srv, "SET GLOBAL require_secure_transport = ON")
        yield srv


@pytest.mark.db
def test_tls_only_server_ssl_preferred_works_and_without_ssl_the_line_says_tls(tls_server):
    """Issue 22 #8: ?ssl=preferred logged in without TLS to read the server's flags and was
    refused; without ?ssl the line blamed the password."""
    from tests.conftest import assert_refused, run_cli

    url = f"mysql://root@127.0.0.1:{tls_server.port}/test"
    preferred = run_cli("db", "status", env={"LAB_MYSQL_URL": url + "?ssl=preferred"})
    assert preferred.returncode == 0 and "have_ssl: YES" in preferred.stdout, preferred.stderr
    plain = run_cli("db", "status", env={"LAB_MYSQL_URL": url})
    assert_refused(plain, "only over TLS (require_secure_transport): add ?ssl=required")
    wrong = run_cli("db", "status", env={"LAB_MYSQL_URL": url.replace("root@", "root:bad@")})
    assert_refused(wrong, "wrong user or password")
    assert "bad" not in wrong.stderr


# -- LAB_MYSQL_URL parsing --------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "complaint"),
    [
        ("postgres://u:s3cret-pw@h:3306/db", "scheme is 'postgres'"),
        ("just s3cret-pw words", "scheme is 'missing'"),
        ("mysql://u:s3cret-pw@:3306/db", "no host"),
        ("mysql://:s3cret-pw@h:3306/db", "no user"),
        ("mysql://u:s3cret-pw@h:port/db", "port is not a number"),
        ("mysql://u:s3cret-pw@h:70000/db", "port is not a number"),
        ("mysql://u:s3cret-pw@h:0/db", "port is not a number"),
        ("mysql://u:s3cret-pw@h:3306", "no database"),
        ("mysql://u:s3cret-pw@h:3306/db?ssl=maybe", "ssl='maybe'"),
        ("mysql://u:s3cret-pw@h:3306/db?sslmode=on", "unknown option 'sslmode'"),
    ],
)
def test_bad_url_is_one_line_naming_what_is_wrong(url, complaint):
    with pytest.raises(LabError, match="LAB_MYSQL_URL is not mysql://") as err:
        db.parse_url(url)
    message = str(err.value)
    assert complaint in message
    assert "s3cret-pw" not in message and "\n" not in message


def test_url_parts_are_decoded_and_the_password_hidden():
    srv, mode = db.parse_url("mysql://lab:p%40ss%2Fword@db.example:3307/test?ssl=required")
    assert (srv.user, srv.password, srv.host, srv.port, srv.database) == (
        "lab",
        "p@ss/word",
        "db.example",
        3307,
        "test",
    )
    assert mode == "required" and srv.tls
    assert "p@ss" not in repr(srv) and "p@ss" not in srv.safe_url()
    assert srv.safe_url() == "mysql://lab:***@db.example:3307/test"


def test_port_defaults_to_3306_and_tls_to_off():
    srv, mode = db.parse_url("mysql://lab:lab@localhost/test")
    assert srv.port == 3306 and mode == "disabled" and not srv.tls


# -- connect arguments ------------------------------------------------------------


def test_tls_off_means_ssl_disabled_not_pymysqls_preferred():
    kwargs = db.LOCAL.pymysql_kwargs(read_timeout=5)
    assert kwargs["ssl_disabled"] is True and "ssl" not in kwargs
    assert kwargs["read_timeout"] == 5 and kwargs["database"] == "test"
    assert db.LOCAL.aiomysql_kwargs()["ssl"] is None


def test_tls_on_reuses_one_context():
    a, _ = db.parse_url("mysql://u:p@h1:3306/db?ssl=required")
    b, _ = db.parse_url("mysql://v:q@h2:3306/db?ssl=required")
    ctx = a.pymysql_kwargs()["ssl"]
    assert ctx is a.pymysql_kwargs()["ssl"] is b.pymysql_kwargs()["ssl"]
    assert a.aiomysql_kwargs()["ssl"] is ctx
    assert "ssl_disabled" not in a.pymysql_kwargs()
    assert a.aiomysql_kwargs()["db"] == "db"


# -- capacity() on the real server ------------------------------------------------


@pytest.mark.db
def test_capacity_raises_max_connections_and_puts_it_back(lease_server):
    require_db = lease_server  # a server of the test's own: the shared one is never raised
    before = max_connections(require_db)
    try:
        with db.capacity(require_db, before + 50):
            assert max_connections(require_db) >= before + 50 + db.HEADROOM
        assert max_connections(require_db) == before
        with pytest.raises(RuntimeError), db.capacity(require_db, before + 50):
            raise RuntimeError("the run failed")
        assert max_connections(require_db) == before
    finally:
        with db.connect(require_db, autocommit=True) as conn:  # whatever happened above
            conn.query(f"SET GLOBAL max_connections={before}")


@pytest.mark.db
def test_capacity_leaves_a_large_enough_limit_alone(lease_server):
    require_db = lease_server
    before = max_connections(require_db)
    with db.capacity(require_db, 1):
        assert max_connections(require_db) == before


@pytest.mark.db
def test_capacity_refuses_before_connecting_when_the_account_may_not_raise_it(
    low_privilege_user,
):
    before = max_connections(low_privilege_user)
    clients = before + 349
    with pytest.raises(LabError) as err, db.capacity(low_privilege_user, clients):
        pytest.fail("the run must not start")
    message = str(err.value)
    assert message.startswith(f"max_connections is {before}, {clients} clients need ")
    assert "as an admin, or lower --clients" in message
    assert low_privilege_user.password not in message
    assert max_connections(low_privilege_user) == before


@pytest.mark.db
def test_describe_never_shows_the_password(low_privilege_user):
    info = db.describe(low_privilege_user)
    assert low_privilege_user.password not in json.dumps(info)
    assert low_privilege_user.password not in repr(low_privilege_user)


# -- path 3: a throwaway server, for real -----------------------------------------


@pytest.mark.db
def test_throwaway_server_answers_and_leaves_nothing_behind(require_mysqld, monkeypatch, caplog):
    monkeypatch.setenv("LAB_DB_PATHS", "throwaway")
    with db.server() as srv:
        assert srv.source == "throwaway" and srv.port != 3306
        (server_proc,) = mariadbd_children()
        datadir = next(a for a in server_proc.cmdline() if a.startswith("--datadir="))
        datadir = Path(datadir.removeprefix("--datadir=")).parent
        assert datadir.name.startswith(mysqld.DIR_PREFIX)
        with db.connect(srv) as conn, conn.cursor() as cur:
            cur.execute("SELECT SLEEP(0.1), DATABASE()")
            assert cur.fetchone() == (0, "test")
    assert not datadir.exists()
    assert not psutil.pid_exists(server_proc.pid)
    assert "KILL" not in caplog.text  # TERM was enough


@pytest.mark.db
def test_eight_servers_initialised_at_once_all_succeed(require_mysqld, tmp_path):
    """-n 4 starts throwaway servers side by side: their bootstraps must not share /tmp."""
    datadirs = [str(tmp_path / f"d{i}") for i in range(8)]
    with concurrent.futures.ThreadPoolExecutor(len(datadirs)) as pool:
        list(pool.map(functools.partial(mysqld._initialise, require_mysqld), datadirs))
    assert all((Path(d) / "mysql" / "db.frm").exists() for d in datadirs)


@pytest.mark.db
def test_throwaway_server_is_stopped_on_ctrl_c(require_mysqld, monkeypatch):
    monkeypatch.setenv("LAB_DB_PATHS", "throwaway")
    with pytest.raises(KeyboardInterrupt), db.server():
        (server_proc,) = mariadbd_children()
        raise KeyboardInterrupt
    assert not psutil.pid_exists(server_proc.pid)
    assert not mariadbd_children()


@pytest.mark.db
def test_status_says_what_it_would_start_without_starting_it(require_mysqld, monkeypatch):
    monkeypatch.setenv("LAB_DB_PATHS", "throwaway")
    assert db.status() == {
        "source": "throwaway",
        "would_start": f"would start a throwaway {Path(require_mysqld).name} from {require_mysqld}",
    }
    assert not mariadbd_children()


def run_python(code: str, env: dict | None = None) -> str:
    """Run `code` in a fresh interpreter (another process, like another notebook kernel)."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), **(env or {})}
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


@pytest.mark.db
def test_db_up_is_shared_across_processes_and_db_down_cleans_up(require_mysqld):
    up_code = "import json; from lab import db; print(json.dumps(db.up()))"
    try:
        first = json.loads(run_python(up_code))
        assert first["started"] and first["source"] == "db up"
        assert json.loads(run_python(up_code))["started"] is False  # the same one, reused
        from tests.conftest import run_cli

        said = run_cli("db", "up").stdout  # what to export, said in a line to paste
        assert "         started: no\n" in said  # yes or no, not a Python repr
        export = said.splitlines()[-1].removeprefix("export LAB_MYSQL_URL=")
        status = run_cli("db", "status", env={"LAB_MYSQL_URL": export}).stdout
        assert f"url: {first['url']}" in status and "source: LAB_MYSQL_URL" in status

        found = run_python(
            "import os, json; from lab import db; os.environ['LAB_DB_PATHS'] = 'throwaway';"
            "print(json.dumps(db.status()))"
        )
        assert json.loads(found)["url"] == first["url"]

        said = run_python("from lab import db; print(db.down()[0])").strip()
        assert said == "stopped the lab's server"
        assert gone(first["pid"])
        assert not Path(first["datadir"]).exists()
        assert not mysqld.state_path().exists()
        assert db.down()[0] == "no `db up` server was running"
    finally:
        db.down()


@pytest.mark.parametrize("owner", ["dead process", "pid reused by another process"])
def test_a_state_file_naming_no_live_server_is_recognised_and_cleaned(owner, monkeypatch):
    if owner == "dead process":
        child = subprocess.Popen([sys.executable, "-c", "pass"])
        child.wait()
        pid = child.pid
    else:
        pid = os.getpid()  # alive, but not a mariadbd with that datadir
    top = Path(tempfile.mkdtemp(prefix=mysqld.DIR_PREFIX))
    datadir = top / "data"
    datadir.mkdir()
    state = mysqld.state_path()
    record = {"binary": "mariadbd", "datadir": str(datadir), "port": 1, "pid": pid}
    state.write_text(json.dumps(record))

    assert mysqld.running() is None
    assert not top.exists() and not state.exists()


def test_stop_escalates_to_kill_visibly_when_term_is_ignored(monkeypatch, caplog):
    stubborn = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN);"
            "print(flush=True); time.sleep(60)",
        ],
        stdout=subprocess.PIPE,
    )
    with stubborn:
        stubborn.stdout.readline()  # TERM is ignored from here on
        monkeypatch.setattr(mysqld, "STOP_GRACE_S", 0.2)
        mysqld._stop(stubborn.pid)
        assert "sending KILL" in caplog.text
        assert not psutil.pid_exists(stubborn.pid)  # killed and reaped by _stop


# -- choice logic, probes faked ---------------------------------------------------


def never():
    raise AssertionError("an earlier path should have won before this probe ran")


SERVER_UP = db.Server("127.0.0.1", 40000, "root", "", "test", source="db up")

WORLDS = {
    # name: (probes, expected path, expected source)
    "url wins over everything": (
        dict(url=lambda: "mysql://u:p@h:1/d", local=never, up_server=never),
        "url",
        "LAB_MYSQL_URL",
    ),
    "then 3306": (
        dict(url=lambda: None, local=lambda: True, up_server=never),
        "local",
        "127.0.0.1:3306",
    ),
    "then a live db-up server": (
        dict(
            url=lambda: None, local=lambda: False, up_server=lambda: SERVER_UP, mysqld_binary=never
        ),
        "throwaway",
        "db up",
    ),
    "then a new throwaway one": (
        dict(
            url=lambda: None,
            local=lambda: False,
            up_server=lambda: None,
            mysqld_binary=lambda: "/usr/sbin/mariadbd",
            docker=never,
        ),
        "throwaway",
        "throwaway",
    ),
    "then a container when Docker answers": (
        dict(
            url=lambda: None,
            local=lambda: False,
            up_server=lambda: None,
            mysqld_binary=lambda: None,
            docker=lambda: True,
        ),
        "container",
        "testcontainers",
    ),
}


@pytest.mark.parametrize("world", WORLDS)
def test_resolution_takes_the_first_path_that_answers(world):
    probes, path, source = WORLDS[world]
    choice = db.resolve_server(db.Probes(**probes))
    assert (choice.path, choice.source) == (path, source)


def test_no_container_without_docker_and_the_error_names_four_ways():
    nothing = db.Probes(
        url=lambda: None,
        local=lambda: False,
        up_server=lambda: None,
        mysqld_binary=lambda: None,
        docker=lambda: False,
    )
    with pytest.raises(LabError) as err:
        db.resolve_server(nothing)
    message = str(err.value)
    for way in (
        "LAB_MYSQL_URL",
        "127.0.0.1:3306",
        "docker compose up -d mysql",
        "install mariadb-server",
        "start Docker",
    ):
        assert way in message
    assert "\n" not in message


def test_lab_db_paths_restricts_and_reorders(monkeypatch):
    everything = db.Probes(
        url=lambda: "mysql://u:p@h:1/d",
        local=lambda: True,
        up_server=lambda: None,
        mysqld_binary=lambda: "/usr/sbin/mariadbd",
        docker=lambda: True,
    )
    monkeypatch.setenv("LAB_DB_PATHS", "container,local")
    assert db.resolve_server(everything).path == "container"
    monkeypatch.setenv("LAB_DB_PATHS", " throwaway ")
    choice = db.resolve_server(everything)
    assert choice.would_start == "a throwaway mariadbd from /usr/sbin/mariadbd"


def test_a_restricted_search_that_finds_nothing_says_so(monkeypatch):
    monkeypatch.setenv("LAB_DB_PATHS", "container")
    with pytest.raises(LabError, match=r"LAB_DB_PATHS allows only container\)$"):
        db.resolve_server(db.Probes(docker=lambda: False))


@pytest.mark.parametrize("value", ["url,carrier-pigeon", "", " , "])
def test_lab_db_paths_with_unknown_names_is_refused(value, monkeypatch):
    monkeypatch.setenv("LAB_DB_PATHS", value)
    with pytest.raises(LabError, match="comma-separated list of url, local, throwaway, container"):
        db.resolve_server(db.Probes(url=never))


def test_docker_probe_is_false_here_and_quick():
    """No Docker engine on this machine: the real probe must say so without hanging."""
    if os.environ.get("DOCKER_HOST") or os.path.exists("/var/run/docker.sock"):
        pytest.skip("a Docker engine may answer here")
    assert db.Probes().docker() is False


# -- max_connections leases (lab/capacity.py), on a server of the test's own ----------


@pytest.fixture(scope="module")
def lease_server():
    """A throwaway MariaDB with the stock limit (151): raised and put back by these tests,
    killed with them if need be; the shared server on 3306 is never touched."""
    if mysqld.find_binary() is None:
        missing("no mariadbd or mysqld installed")
    with mysqld.throwaway(mysqld.Settings(max_connections=151)) as m:
        FIXTURE_SERVERS.add(m.pid)
        yield db.Server("127.0.0.1", m.port, "root", "", "test", source="lease test", pid=m.pid)


def _url(srv: db.Server) -> str:
    return f"mysql://{srv.user}:{srv.password}@{srv.host}:{srv.port}/{srv.database}"


def _set_limit(srv: db.Server, value: int) -> None:
    with db.connect(srv, autocommit=True) as conn:
        conn.query(f"SET GLOBAL max_connections={value}")


def _schema(srv: db.Server, name: str | None = None) -> bool:
    from lab import capacity

    with db.connect(srv) as conn, conn.cursor() as cur:
        cur.execute("SHOW DATABASES LIKE %s", (name or capacity.SCHEMA,))
        return cur.fetchone() is not None


def _admin(srv: db.Server, *statements: str) -> list:
    """Run statements as the server's admin; the last one's rows."""
    with db.connect(srv, autocommit=True) as conn, conn.cursor() as cur:
        for sql in statements:
            cur.execute(sql)
        return list(cur.fetchall())


def _leases(srv: db.Server) -> list:
    from lab import capacity

    with db.connect(srv) as conn:
        return capacity.leases(conn)


HOLD = """
import sys, time
from lab import db
srv = db.Server("127.0.0.1", int(sys.argv[1]), "root", "", "test", source="holder")
with db.capacity(srv, int(sys.argv[2])) as raised:
    print(raised, flush=True)
    time.sleep(600)
"""


def _holder(srv: db.Server, clients: int) -> subprocess.Popen:
    """A run holding a raise for `clients`, in a process of its own (kill -9 it)."""
    proc = subprocess.Popen(
        [sys.executable, "-c", HOLD, str(srv.port), str(clients)],
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        stdout=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    assert proc.stdout.readline().startswith("("), "it raised the limit"
    return proc


def _until(check, timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


@pytest.mark.db
def test_a_lease_raises_the_limit_and_the_last_run_out_puts_it_back(lease_server):
    before = max_connections(lease_server)
    with db.capacity(lease_server, 400) as raised:
        assert raised == (before, before + 400 + db.HEADROOM)
        assert max_connections(lease_server) == before + 402
        assert [lease.live for lease in _leases(lease_server)] == [True]
    assert max_connections(lease_server) == before
    assert _leases(lease_server) == [] and not _schema(lease_server), "nothing of the lab's left"
    with pytest.raises(RuntimeError), db.capacity(lease_server, 400):
        raise RuntimeError("the run failed")
    assert max_connections(lease_server) == before


@pytest.mark.db
def test_two_overlapping_runs_never_cut_each_others_headroom(lease_server):
    before = max_connections(lease_server)
    with db.capacity(lease_server, 400):
        with db.capacity(lease_server, 300):
            assert max_connections(lease_server) == before + 402 + 302
        # A ends first in the story: here B; either way, what is left covers A.
        assert max_connections(lease_server) == before + 402
        b = _holder(lease_server, 300)  # another process takes a lease while A runs
        try:
            assert max_connections(lease_server) == before + 402 + 302
        finally:
            children.stop_popen(b)
    assert max_connections(lease_server) == before


@pytest.mark.db
def test_kill_9_of_the_run_gives_the_lease_back_through_its_keeper(lease_server):
    before = max_connections(lease_server)
    holder = _holder(lease_server, 500)
    assert max_connections(lease_server) == before + 502
    os.kill(holder.pid, signal.SIGKILL)
    holder.wait()
    holder.stdout.close()
    assert _until(lambda: max_connections(lease_server) == before), "put back within seconds"
    assert _until(lambda: _leases(lease_server) == [])


@pytest.mark.db
def test_a_raise_whose_run_and_keeper_both_died_is_undone_by_the_next_run_or_doctor(
    lease_server,
):
    before = max_connections(lease_server)
    for undo in ("next run", "doctor"):
        holder = _holder(lease_server, 500)
        keepers = psutil.Process(holder.pid).children()
        for keeper in keepers:  # the keeper first, or it would see EOF and put it back...
            keeper.kill()
        psutil.wait_procs(keepers, timeout=5)
        os.killpg(holder.pid, signal.SIGKILL)  # ...then the run: nobody is left to do it
        holder.wait()
        holder.stdout.close()
        assert _until(lambda: not any(lease.live for lease in _leases(lease_server)))
        assert max_connections(lease_server) == before + 502, "left raised: dead owner"
        if undo == "next run":
            with db.capacity(lease_server, 1):
                assert max_connections(lease_server) == before
        else:
            env = {"LAB_MYSQL_URL": _url(lease_server), "LAB_DB_PATHS": "url"}
            done = run_python("from lab import doctor; print(dict(doctor.facts()))", env)
            who = f"pid {holder.pid} on {socket.gethostname()}"
            assert f"max_connections put back to {before} (left raised by {who})" in done
        assert max_connections(lease_server) == before
        assert _leases(lease_server) == []


@pytest.mark.db
def test_a_database_named_daemonlab_survives_the_last_lease(lease_server):
    """Issue 22 #1: the lab kept its leases in schema `daemonlab` and dropped it when the
    last lease went back, a results store of that name with it."""
    _admin(lease_server, "CREATE DATABASE daemonlab", "CREATE TABLE daemonlab.runs (id INT)",
           "INSERT INTO daemonlab.runs VALUES (1)")  # fmt: skip
    try:
        with db.capacity(lease_server, 400) as raised:
            assert raised is not None
        assert _admin(lease_server, "SELECT id FROM daemonlab.runs") == [(1,)]
        assert not _schema(lease_server), "the lab's own schema went, with nothing left in it"
    finally:
        _admin(lease_server, "DROP DATABASE IF EXISTS daemonlab")


@pytest.fixture
def lab_schema(lease_server):
    """The lab's lease schema's name; whatever a test left under it is dropped after."""
    from lab import capacity

    yield capacity.SCHEMA
    _admin(lease_server, f"DROP DATABASE IF EXISTS {capacity.SCHEMA}")


@pytest.mark.db
def test_a_schema_of_the_labs_name_it_did_not_make_is_refused_untouched(lease_server, lab_schema):
    before = max_connections(lease_server)
    _admin(
        lease_server, f"CREATE DATABASE {lab_schema}", f"CREATE TABLE {lab_schema}.leases (id INT)"
    )
    with pytest.raises(LabError, match="was not made by the lab.*left untouched"):
        with db.capacity(lease_server, 400):
            pass
    assert max_connections(lease_server) == before
    assert _admin(lease_server, f"SHOW TABLES FROM {lab_schema}") == [("leases",)]


@pytest.mark.db
def test_the_labs_schema_with_a_table_of_someone_elses_is_not_dropped(lease_server, lab_schema):
    from lab import capacity

    before = max_connections(lease_server)
    with db.capacity(lease_server, 400):
        _admin(lease_server, f"CREATE TABLE {lab_schema}.notes (id INT)")
    assert max_connections(lease_server) == before
    tables = {name for (name,) in _admin(lease_server, f"SHOW TABLES FROM {lab_schema}")}
    assert tables == {"notes", *capacity.OUR_TABLES}
    with db.capacity(lease_server, 400):  # still the lab's: used again, and put back
        assert max_connections(lease_server) == before + 402
    assert max_connections(lease_server) == before


@pytest.mark.db
def test_a_limit_an_admin_changed_since_is_left_alone(lease_server):
    before = max_connections(lease_server)
    try:
        with db.capacity(lease_server, 400):
            _set_limit(lease_server, 2000)  # an admin, mid-run
        assert max_connections(lease_server) == 2000, "theirs now: not put back over it"
        assert _leases(lease_server) == []
    finally:
        _set_limit(lease_server, before)


def _sleep_run(srv: db.Server, tmp_path: Path, *options: str) -> subprocess.Popen:
    """`daemonlab run sleep OPTIONS` against `srv`, in a session of its own (killpg it)."""
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "LAB_MYSQL_URL": _url(srv),
        "LAB_DB_PATHS": "url",
        "LAB_RESULTS": str(tmp_path / "lab.db"),
    }
    with open(tmp_path / "run.err", "wb") as err:  # the child keeps its own copy
        return subprocess.Popen(
            [sys.executable, "-m", "lab", "run", "sleep", *options],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=err,
            start_new_session=True,
        )


def _said(tmp_path: Path, run: subprocess.Popen) -> str:
    """How the run stands, for a failed wait: still running, or its exit and last words."""
    if run.poll() is None:
        return "the run is still running"
    return f"the run ended {run.returncode}: {(tmp_path / 'run.err').read_text()[-500:]}"


@pytest.mark.db
def test_the_run_command_puts_the_limit_back_after_kill_9_of_the_cli(lease_server, tmp_path):
    before = max_connections(lease_server)
    run = _sleep_run(lease_server, tmp_path, "--clients", "300", "--strategy", "asyncio",
                     "--seconds", "5")  # fmt: skip
    try:
        assert _until(lambda: max_connections(lease_server) > before, 60), "the run raised it"
        os.killpg(run.pid, signal.SIGKILL)
    finally:
        if run.poll() is None:
            os.killpg(run.pid, signal.SIGKILL)
        run.wait()
    assert _until(lambda: max_connections(lease_server) == before), "put back after kill -9"


def _tagged_sleeps(srv: db.Server) -> int:
    rows = _admin(
        srv,
        "SELECT COUNT(*) FROM information_schema.PROCESSLIST"
        " WHERE COMMAND = 'Query' AND INFO LIKE 'SELECT %/* daemonlab % */'",
    )
    return rows[0][0]


@pytest.mark.db
@pytest.mark.alone  # 300 connections at once: beside three workers' tests, once not in 90 s
@pytest.mark.parametrize("keeper", ["gives back", "killed too: doctor"])
def test_kill_9_of_a_run_gives_the_headroom_back_only_once_its_queries_are_gone(
    lease_server, tmp_path, keeper
):
    """Issue 22 #7: the keeper put the old limit back while the dead run's 300 SLEEPs
    still held their connections, and every other client got 1040 until they ended.
    With the keeper killed as well, `daemonlab doctor` ends them (from the lease's tag)."""
    import pymysql

    before = max_connections(lease_server)
    _admin(lease_server, "CREATE USER IF NOT EXISTS probe@'%'")  # not SUPER: no spare slot
    probe = db.Server(lease_server.host, lease_server.port, "probe", "", "", source="probe")
    run = _sleep_run(lease_server, tmp_path, "--clients", "300", "--strategy", "threads",
                     "--seconds", "60", "--server", "found")  # fmt: skip
    refused, doctor = [], None
    try:
        assert _until(lambda: _tagged_sleeps(lease_server) >= 300, 90), _said(tmp_path, run)
        if keeper != "gives back":
            keepers = [p for p in psutil.Process(run.pid).children()
                       if "lab.capacity" in " ".join(p.cmdline())]  # fmt: skip
            assert len(keepers) == 1
            keepers[0].kill()  # a zombie of the run's until the run dies: look at its lock
            assert _until(lambda: not any(lease.live for lease in _leases(lease_server)))
        os.kill(run.pid, signal.SIGKILL)  # the run alone: its keeper (if alive) sees EOF
        run.wait()
        if keeper != "gives back":
            env = {"LAB_MYSQL_URL": _url(lease_server), "LAB_DB_PATHS": "url"}
            doctor = subprocess.Popen([sys.executable, "-m", "lab", "doctor"],
                                      env={**os.environ, "PYTHONPATH": str(ROOT), **env},
                                      stdout=subprocess.DEVNULL)  # fmt: skip
        deadline = time.monotonic() + 30
        settled = False
        while not settled:  # a look after the limit is back too: lockout came just then
            settled = max_connections(lease_server) == before or time.monotonic() > deadline
            try:
                pymysql.connect(**probe.pymysql_kwargs(connect_timeout=5)).close()
            except pymysql.err.OperationalError as exc:
                refused.append(exc.args)
            time.sleep(0.02)
        if doctor is not None:
            assert doctor.wait(60) == 0
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(run.pid, signal.SIGKILL)
        run.wait()
        if doctor is not None and doctor.poll() is None:
            doctor.kill()
            doctor.wait()
        _admin(lease_server, "DROP USER IF EXISTS probe@'%'")
    assert refused == [], "nobody is locked out while the dead run's connections linger"
    assert max_connections(lease_server) == before, "put back well before the SLEEPs end"
    assert _tagged_sleeps(lease_server) == 0, "its queries were ended, not waited out"


# -- what dead runs leave: found and removed ----------------------------------------


def _dead_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def _fake_datadir(owner_pid: int) -> Path:
    top = Path(tempfile.mkdtemp(prefix=mysqld.DIR_PREFIX))
    (top / "data").mkdir()
    me = psutil.Process(owner_pid) if psutil.pid_exists(owner_pid) else None
    owner = {"kind": "throwaway", "pid": owner_pid, "created": me.create_time() if me else 0}
    (top / mysqld.OWNER_FILE).write_text(json.dumps(owner))
    return top


def test_sweep_removes_a_directory_whose_owner_is_dead_and_keeps_a_live_ones():
    dead, live = _fake_datadir(_dead_pid()), _fake_datadir(os.getpid())
    try:
        found = {Path(left.datadir): left.removed for left in mysqld.sweep(report_in_use=True)}
        assert found[dead] is True and not dead.exists()
        assert found[live] is False and live.exists()
    finally:
        shutil.rmtree(live, ignore_errors=True)
        shutil.rmtree(dead, ignore_errors=True)


@pytest.mark.db
def test_db_down_stops_the_server_a_dead_run_left_and_removes_its_directory(require_mysqld):
    """A run killed before PR_SET_PDEATHSIG could act (or an older lab's): the server runs on."""
    owner = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
    try:
        top = _fake_datadir(owner.pid)
        shutil.rmtree(top / "data")
        datadir = str(top / "data")
        mysqld._initialise(require_mysqld, datadir)
        port = mysqld._free_port()
        server = subprocess.Popen(
            mysqld._server_argv(require_mysqld, datadir, port), start_new_session=True,
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        mysqld._wait_until_ready(server.pid, port, datadir)
    finally:
        children.stop_popen(owner)  # the owner dies; its server does not
    lines = db.down()
    assert any(f"stopped its server (pid {server.pid}), removed {top}" in line for line in lines)
    assert server.wait(5) is not None and not top.exists()


# -- the lab owns nothing it did not create, and leaves nothing after kill -9 ----------


def _owned_by(pid: int) -> list[Path]:
    """The throwaway data directories run `pid` made (their owner file names it)."""
    found = []
    for top in Path(tempfile.gettempdir()).glob(mysqld.DIR_PREFIX + "*"):
        with contextlib.suppress(OSError, ValueError):
            if json.loads((top / mysqld.OWNER_FILE).read_text()).get("pid") == pid:
                found.append(top)
    return found


def _servers_in(dirs: list[Path]) -> list[int]:
    flags = {f"--datadir={top / 'data'}" for top in dirs}
    return [p.pid for p in psutil.process_iter(["cmdline"]) if flags & set(p.info["cmdline"] or ())]


def _nothing_left(srv: db.Server, made: list[Path], limit: int) -> bool:
    return (
        not any(top.exists() for top in made)
        and not _servers_in(made)
        and max_connections(srv) == limit
        and not _schema(srv)
        and _tagged_sleeps(srv) == 0
    )


@pytest.mark.db
def test_a_run_killed_at_a_random_point_leaves_nothing_after_doctor_or_the_next_run(
    lease_server, tmp_path
):
    """Issue 22: everything docs/owned.md lists, after kill -9 at a point chosen at
    random (connecting, raising, sleeping, giving back), is gone once `daemonlab doctor`
    or the next run has run: data directories and their servers, the raised limit, the
    lease schema, the run's queries."""
    from tests.conftest import run_cli, wait_until

    seed = random.randrange(2**32)
    rng = random.Random(seed)
    before = max_connections(lease_server)
    env = {"LAB_MYSQL_URL": _url(lease_server), "LAB_DB_PATHS": "url",
           "LAB_RESULTS": str(tmp_path / "lab.db")}  # fmt: skip
    for where, then in [("throwaway", "doctor"), ("found", "doctor"),
                        ("throwaway", "next run"), ("found", "next run")]:  # fmt: skip
        run = _sleep_run(lease_server, tmp_path, "--clients", "300", "--strategy", "threads",
                         "--seconds", "10", "--server", where)  # fmt: skip
        try:
            if where == "throwaway":  # from the moment its data directory exists
                wait_until(functools.partial(_owned_by, run.pid), 60, "a data directory")
            time.sleep(rng.uniform(0.0, 6.0))  # the random point is the test: no event to wait on
            made = _owned_by(run.pid)
            os.kill(run.pid, signal.SIGKILL)
            run.wait()
        finally:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(run.pid, signal.SIGKILL)
            run.wait()
        made += _owned_by(run.pid)
        if then == "doctor":
            done = run_cli("doctor", env=env)
        else:
            done = run_cli("run", "sleep", "--clients", "2", "--seconds", "0.1", "--server",
                           "found", env=env)  # fmt: skip
        assert done.returncode == 0, (seed, where, then, done.stderr)

        what = f"nothing left (seed {seed}, {where}, then {then})"
        wait_until(functools.partial(_nothing_left, lease_server, made, before), 30, what)
