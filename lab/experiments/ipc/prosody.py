"""A throwaway XMPP server: Debian's prosody, run from a temporary directory, on a free port.

The lab needs an account to log in with, and a server that lets it log in
without TLS on loopback. A shared server would need both changed (an
account added, a setting relaxed): something the lab would leave changed.
So it starts its own, as lab/mysqld.py does for MySQL:

    a config, the data and the log in the run's directory; one account
    (a random password); c2s on 127.0.0.1 and a free port, nothing else
    listening (no s2s, no HTTP); started in the foreground (-F) as our
    child, stopped (TERM, grace, KILL) and removed after the run.

Two clients talk as two resources of that account (lab@localhost/parent
and lab@localhost/peer): a message to a full JID goes to that resource only.
LAB_XMPP_URL=xmpp://user:password@host:port uses another server instead (docker
compose's, with its account), and nothing is started.
"""

from __future__ import annotations

import os
import secrets
import shutil
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote, urlsplit

from lab import children, services
from lab.errors import LabError, last_line

__all__ = ["STANZA_LIMIT", "Server", "start", "stop"]

#: prosody's c2s_stanza_size_limit, set here as 0.12's default: 256 KiB of XML a stanza.
STANZA_LIMIT = 256 * 1024
#: prosody (Lua) starts in ~0.1 s here; 10 s bounds one that never listens.
START_TIMEOUT_S = 10.0
DOMAIN = "localhost"

CONFIG = """\
-- written by daemonlab for one run; removed with its directory
pidfile = "{dir}/prosody.pid"
data_path = "{dir}/data"
certificates = "{dir}"
log = {{ {{ levels = {{ min = "error" }}, to = "file", filename = "{dir}/prosody.log" }} }}
run_as_root = true  -- the lab may run as root; prosody refuses to unless told
interfaces = {{ "127.0.0.1" }}
c2s_ports = {{ {port} }}
s2s_ports = {{ }}
http_ports = {{ }}
https_ports = {{ }}
c2s_require_encryption = false  -- loopback; TLS would time the cipher, not XMPP
c2s_stanza_size_limit = {stanza_limit}
modules_enabled = {{ "roster", "saslauth", "disco", "ping" }}
modules_disabled = {{ "s2s" }}
authentication = "internal_hashed"
VirtualHost "{domain}"
"""


@dataclass
class Server:
    host: str
    port: int
    user: str
    password: str
    domain: str
    tls: bool = False  # STARTTLS when offered: another server may require it
    proc: subprocess.Popen | None = None  # None: not ours (LAB_XMPP_URL)
    directory: Path | None = None

    @property
    def jid(self) -> str:
        return f"{self.user}@{self.domain}"


def start(directory: Path) -> Server:
    """LAB_XMPP_URL's server, or a throwaway prosody in `directory` (LabError if neither)."""
    given = os.environ.get(services.SERVICES["xmpp"].env)  # LAB_XMPP_URL
    if given:
        parts = urlsplit(services.url("xmpp"))  # checked there: one line if malformed
        host = parts.hostname or "127.0.0.1"
        return Server(
            host, parts.port or 5222, unquote(parts.username or "lab"),
            unquote(parts.password or ""), parts.path.strip("/") or host, tls=True,
        )  # fmt: skip
    prosody, prosodyctl = shutil.which("prosody"), shutil.which("prosodyctl")
    if prosody is None or prosodyctl is None:
        raise LabError(
            "no XMPP server: prosody is not installed (`apt-get install prosody`: the lab "
            "runs its own from it), or point LAB_XMPP_URL at one"
        )
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "data").mkdir(exist_ok=True)
    port = _free_port()
    config = directory / "prosody.cfg.lua"
    config.write_text(
        CONFIG.format(dir=directory, port=port, stanza_limit=STANZA_LIMIT, domain=DOMAIN)
    )
    server = Server("127.0.0.1", port, "lab", secrets.token_hex(8), DOMAIN, directory=directory)
    registered = subprocess.run(
        [prosodyctl, "--config", str(config), "register", server.user, DOMAIN, server.password],
        capture_output=True,
        text=True,
        timeout=START_TIMEOUT_S,
    )
    if registered.returncode != 0:
        raise LabError(
            f"prosodyctl could not make the account: {last_line(registered.stderr, 'no message')}"
        )
    server.proc = subprocess.Popen(
        [prosody, "--config", str(config), "-F"],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,  # its banner about lua-unbound; errors go to the log
        stderr=subprocess.DEVNULL,
        start_new_session=True,  # Ctrl-C at the terminal is the lab's to handle, in order
    )
    _wait_listening(server)
    return server


def stop(server: Server) -> None:
    """Stop our prosody (TERM, grace, KILL, reaped) and remove its directory."""
    if server.proc is not None:
        children.stop_popen(server.proc)
    if server.directory is not None:
        shutil.rmtree(server.directory, ignore_errors=True)


def _free_port() -> int:
    """A port nobody listens on now (bind to 0 and let go): prosody cannot bind 0 itself."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _wait_listening(server: Server) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if server.proc is not None and server.proc.poll() is not None:
            log = server.directory / "prosody.log" if server.directory else None
            said = last_line(log.read_text(), "no message") if log and log.exists() else "no log"
            stop(server)
            raise LabError(f"prosody exited at start ({server.proc.returncode}): {said}")
        try:
            with socket.create_connection((server.host, server.port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.02)
    stop(server)
    raise LabError(f"prosody did not listen on {server.port} within {START_TIMEOUT_S:g} s")
