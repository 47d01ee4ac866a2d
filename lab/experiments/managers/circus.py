"""circus: the daemon as a [watcher:] of circusd, found dead by polling.

circusd (https://circus.readthedocs.io/en/latest/for-ops/configuration/)
starts each process in a session of its own (setsid) and does not handle
SIGCHLD at all: every check_delay seconds its arbiter reaps with
waitpid(-1, WNOHANG) and starts what is missing. So a kill is noticed within
check_delay. It is a float: `circus` runs at 1 s (the default in a config
file is 5 s), `circus-fast` at 0.1 s, what someone after fast restarts sets;
each reads its value back from circusd (`globaloptions`, as `circusctl
globaloptions` does) into the record's seen_setting.

What the configuration below sets, and why:
- the flapping plugin: `attempts` = 2 restarts within `window` = 1 s (its
  measure subtracts one check_delay) is flapping; circus then stops the
  watcher and starts it again after `retry_in`, up to `max_retry` times, and
  finally leaves it stopped. retry_in = 1 s and max_retry = 1 here (the
  defaults are 7 s and 5). Measured here (circus 0.19), that stop is a
  race: circusd's debug log shows the plugin's stop cast arriving right
  after the reap, often while the arbiter is still inside manage_watchers
  starting the next process; the arbiter refuses any command while it runs
  another ("ConflictError: arbiter is already running ...", the class of
  circus-tent/circus#1202 and #776), and a refused cast gets no answer
  anyone reads. Some runs end "stopped" after one restart, others go on at
  one start per check_delay for the whole watch.
- stop_signal = TERM, graceful_timeout = 2 (default 30), stop_children =
  true (default false): the stop signal goes to the daemon and to its
  *direct* children (psutil's children()), not to its process group; KILL
  after the timeout goes to all descendants.
- copy_env = true: the daemon sees the experiment's environment (circus
  starts programs with an empty one otherwise).
The control socket is circusd's ZeroMQ endpoint, asked in process with
circus.client (what circusctl does).
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from lab.experiments.managers.manager import Manager

__all__ = ["Circus", "CircusFast"]

BIN = Path(sys.executable).parent

CONFIG = """\
[circus]
check_delay = {check_delay:g}
endpoint = ipc://{dir}/circus.sock
pubsub_endpoint = ipc://{dir}/pubsub.sock
stats_endpoint = ipc://{dir}/stats.sock

[watcher:daemon]
cmd = {executable}
args = {args}
numprocesses = 1
copy_env = true
stop_signal = TERM
graceful_timeout = 2
stop_children = true
"""

#: Only in the crash-loop event: circusd does not pass check_delay to its plugins
#: (plugins.get_plugin_cmd), so the plugin assumes 5 s and two kill -9s within
#: 1 + 5 s of each other already look like flapping to it.
FLAPPING = """
[plugin:flapping]
use = circus.plugins.flapping.Flapping
attempts = 2
window = 1
retry_in = 1
max_retry = 1
"""


class Circus(Manager):
    name = "circus"
    command = "circusd"
    notices = "polling: waitpid(WNOHANG) every check_delay"
    check_delay = 1.0
    setting = "check_delay 1 s"
    stop_signal = "TERM to the daemon and its direct children (stop_children)"
    stop_wait_s = 2.0
    gives_up = "flapping: stopped, retried after retry_in, then stopped for good (documented)"
    final_states = ("stopped",)

    @classmethod
    def missing(cls) -> str | None:
        if (BIN / "circusd").exists():
            return None
        return "circus is not installed: pip install circus"

    def argv(self) -> list[str]:
        config = self.place.dir / "circus.ini"
        executable, *args = self.daemon
        text = CONFIG.format(
            dir=self.place.dir, executable=executable, args=" ".join(args),
            check_delay=self.check_delay,
        )  # fmt: skip
        config.write_text(text + (FLAPPING if "--crash" in args else ""))
        return [str(BIN / "circusd"), str(config)]

    def _call(self, command: str, **properties: Any) -> dict[str, Any]:
        import zmq
        from circus.client import CircusClient

        # A context of our own, ended after the call: circus' default is zmq's
        # process-wide one, whose threads and descriptors would outlive the run.
        context = zmq.Context()
        client = CircusClient(context, endpoint=f"ipc://{self.place.dir}/circus.sock", timeout=5.0)
        try:
            return client.call({"command": command, "properties": properties})
        finally:
            client.stop()
            context.term()

    def state(self) -> str:
        from circus.exc import CallError

        try:
            return self._call("status", name="daemon").get("status", "?")
        except CallError:
            return "no answer" if self.running() else f"exited {self.proc and self.proc.poll()}"

    def stop_daemon(self) -> None:
        self._call("stop", name="daemon")

    def effective(self) -> str | None:
        from circus.exc import CallError

        try:
            options = self._call("globaloptions").get("options", {})
        except CallError:
            return None
        return f"check_delay {options.get('check_delay'):g} s"


class CircusFast(Circus):
    """circusd polling ten times a second: check_delay = 0.1."""

    name = "circus-fast"
    check_delay = 0.1
    setting = "check_delay 0.1 s"
