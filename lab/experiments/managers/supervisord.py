"""supervisord: the daemon as a [program:] of supervisord, restarted after every exit.

supervisord (supervisor 4, http://supervisord.org/configuration.html) is the
daemon's parent: it forks it, puts it in a process group of its own
(setpgrp), and reaps it. Its SIGCHLD handler only records the signal; the
main loop acts when its poll() returns, which is at once here because the
dead daemon's stdout and stderr pipes (supervisord's own) close with it, and
at the latest after its 1 s timeout.

What the configuration below sets, and why:
- autorestart = true, startsecs = 1: a daemon up for 1 s is RUNNING, and one
  that exits after that is started again at once, with no back-off.
- in the crash loop, startsecs = 10 (CRASH_STARTSECS): the daemon dies right
  after READY, but READY comes after an interpreter's start, which took more
  than 1 s on a loaded machine; such a daemon had been up for startsecs, was
  RUNNING, and each exit was restarted at once for ever (18 restarts in a
  30 s watch, load average 25), never FATAL.
- startretries = 2: a daemon that dies within startsecs is a failed start
  (BACKOFF); supervisord waits 1 s, then 2 s (one more second per retry),
  and after the last retry gives up: FATAL. The default is 3 (1+2+3 s).
- stopsignal = TERM, stopwaitsecs = 2 (default 10), stopasgroup and
  killasgroup = true (default false) as in examples/supervisord.conf: the
  stop goes to the daemon's whole process group, its child included.
The control socket is supervisord's XML-RPC interface, asked in process
(what supervisorctl does, without starting an interpreter per question).
"""

from __future__ import annotations

import shutil
import sys
import xmlrpc.client
from contextlib import closing
from pathlib import Path
from typing import Any

from lab.experiments.managers.manager import Manager

__all__ = ["Supervisord"]

BIN = Path(sys.executable).parent

CONFIG = """\
[unix_http_server]
file = {dir}/supervisor.sock

[supervisord]
nodaemon = true
logfile = {dir}/supervisord.log
pidfile = {dir}/supervisord.pid
childlogdir = {dir}

[rpcinterface:supervisor]
supervisor.rpcinterface_factory = supervisor.rpcinterface:make_main_rpcinterface

[program:daemon]
command = {command}
autorestart = true
startsecs = {startsecs}
startretries = 2
stopsignal = TERM
stopwaitsecs = 2
stopasgroup = true
killasgroup = true
redirect_stderr = true
stdout_logfile = {dir}/daemon.log
"""


#: The crash loop's startsecs: a crash within 10 s of the start is a failed start.
CRASH_STARTSECS = 10


class Supervisord(Manager):
    name = "supervisord"
    command = "supervisord"
    notices = "SIGCHLD, acted on when its poll() returns (the daemon's pipes close)"
    setting = "poll() timeout 1 s (fixed)"
    stop_signal = "TERM to the process group (stopasgroup)"
    stop_wait_s = 2.0
    gives_up = "FATAL after startretries (back-off 1 s, 2 s, ...)"
    final_states = ("FATAL",)
    #: Three starts (an interpreter each, up to 2 s on a loaded machine) and the
    #: back-off between them, 1 s + 2 s: FATAL within about 9 s; under a load
    #: average of 12 on 2 cores it was still STARTING after a 15 s watch.
    gives_up_within_s = 30.0

    @classmethod
    def missing(cls) -> str | None:
        if shutil.which("supervisord", path=f"{BIN}:/usr/bin:/usr/local/bin"):
            return None
        return "supervisord is not installed: pip install supervisor"

    def argv(self) -> list[str]:
        config = self.place.dir / "supervisord.conf"
        command = " ".join(self.daemon)
        startsecs = CRASH_STARTSECS if self.crash else 1
        config.write_text(CONFIG.format(dir=self.place.dir, command=command, startsecs=startsecs))
        found = shutil.which("supervisord", path=f"{BIN}:/usr/bin:/usr/local/bin")
        return [str(found), "-c", str(config)]

    def _call(self, method: str, *args: Any) -> Any:
        from supervisor.xmlrpc import SupervisorTransport

        url = f"unix://{self.place.dir}/supervisor.sock"
        with closing(SupervisorTransport(None, None, url)) as transport:
            proxy = xmlrpc.client.ServerProxy("http://localhost", transport=transport)
            return getattr(proxy.supervisor, method)(*args)

    def state(self) -> str:
        try:
            return self._call("getProcessInfo", "daemon")["statename"]
        except (OSError, xmlrpc.client.Error):
            return "no answer" if self.running() else f"exited {self.proc and self.proc.poll()}"

    def stop_daemon(self) -> None:
        self._call("stopProcess", "daemon", False)  # False: do not wait for it here
