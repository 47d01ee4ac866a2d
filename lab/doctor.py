"""`daemonlab doctor`: what this machine offers the lab, read live.

The questions a workshop attendee's first run depends on: which Python and
whether it has a GIL, which other Pythons here offer subinterpreters with their
own GIL and which are free-threaded (lab.interpreters.installed), whether fork
exists and which start methods there are, how many cores this process may
use, which MySQL server the lab would use (and how it found it), and whether
Docker could supply one; then each system tool a lesson runs (TOOLS) and each
server it talks to (lab.services), found or not, a missing one with its
install or start line, the same line the lesson itself would print. It also
undoes what runs that died left behind (a throwaway server, a raised
max_connections).
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass

from lab import env, interpreters, services
from lab.errors import LabError

__all__ = ["TOOLS", "Tool", "facts", "main", "other_exits", "servers", "table", "tools"]


@dataclass(frozen=True)
class Tool:
    """A program a lesson runs, found on PATH under one of `commands`."""

    commands: tuple[str, ...]
    package: str  # the Debian package that installs it
    used_by: str  # what for, in a few words

    @property
    def install(self) -> str:
        return f"apt-get install {self.package}"


#: The system tools the lessons and tests run (the README's prerequisites list the same;
#: .ci/run installs each on a fresh machine). None is needed to start: a lesson without
#: its tool says so in one line and measures the rest.
TOOLS = (
    Tool(("cc",), "gcc", "ipc's and sleep's C floors"),
    Tool(("wrk",), "wrk", "prefork's load; without it, slower asyncio clients"),
    Tool(("monit",), "monit", "managers: monit, one of the managers"),
    Tool(("prosody",), "prosody", "ipc: XMPP, on a throwaway prosody"),
    Tool(("crontab",), "cron", "cron: the crontab example"),
    Tool(("chromium", "chromium-browser"), "chromium", "the tests: the report in a browser"),
    Tool(("valgrind",), "valgrind", "bench ab: instruction counts"),
)


def facts() -> list[tuple[str, str]]:
    from lab import db

    fp = env.fingerprint()
    rows = [
        ("python", f"{fp['python']} ({fp['implementation']}, {fp['executable']})"),
        ("build", f"{fp['build']}, {fp['compiler']}"),
        ("GIL", "enabled" if fp["gil_enabled"] else "disabled (free-threaded)"),
        *other_exits(interpreters.installed()),
        ("fork", "available" if fp["has_fork"] else "missing: use --start-method spawn"),
        (
            "start methods",
            f"{', '.join(fp['start_methods'])} (default {fp['default_start_method']})",
        ),
        ("cores", f"{fp['usable_cores']} usable of {fp['cpu_count']}"),
        ("kernel", f"{fp['system']} {fp['kernel']} {fp['machine']}"),
    ]
    try:
        server = db.status()
        if "would_start" in server:
            rows.append(("mysql", f"none running; {server['would_start']}"))
        else:
            rows.append(
                (
                    "mysql",
                    f"{server['version']} at {server['url']} (found by: {server['source']}),"
                    f" max_connections {server['max_connections']}",
                )
            )
    except LabError as exc:
        rows.append(("mysql", f"none: {exc}"))
    rows.append(("left by dead runs", _leftovers()))
    docker = shutil.which("docker")
    engine = "an engine answers" if db.docker_answers() else "no engine answers"
    rows.append(("docker", f"client {docker}, {engine}" if docker else f"no client, {engine}"))
    return rows + tools() + servers()


def tools() -> list[tuple[str, str]]:
    """Each of TOOLS: where it is, or missing with its install line."""
    rows = []
    for tool in TOOLS:
        found = next(filter(None, map(shutil.which, tool.commands)), None)
        said = found or f"missing: {tool.install}"
        rows.append((tool.commands[0], f"{said}, for {tool.used_by}"))
    return rows


def servers() -> list[tuple[str, str]]:
    """Each server of lab.services but XMPP (the lab starts its own prosody): whether it
    answers, or the line that starts it, as the lesson would say it."""
    rows = []
    for service in services.SERVICES.values():
        if service.name == "xmpp":
            continue
        try:
            host, port = services.address(service.name)
            services.require(service.name)
            rows.append((service.name, f"{service.what} answers on {host}:{port}"))
        except LabError as exc:
            rows.append((service.name, str(exc)))
    return rows


def other_exits(found: list[interpreters.Interpreter]) -> list[tuple[str, str]]:
    """The GIL's other exits on this machine: subinterpreters, and free-threaded builds."""

    def named(group) -> str:
        return ", ".join(f"{i.version} ({i.subinterpreters or i.path})" for i in group)

    offering = [i for i in found if i.subinterpreters]
    without = [i.version for i in found if not i.subinterpreters]
    free = [i for i in found if i.free_threaded_build]
    said = named(offering) or "none found"
    if without:
        said += f"; none in {', '.join(without)}"
    threaded = ", ".join(f"{i.version}t at {i.path}, GIL {i.gil}" for i in free)
    return [("subinterpreters", said), ("free-threaded", threaded or "none found")]


def _leftovers() -> str:
    """Find and undo what runs that died left: throwaway servers and their directories
    (lab.mysqld.sweep), a max_connections raise on the server found (lab.db.repair)."""
    from lab import db, mysqld

    said = [f"removed {left.datadir}" for left in mysqld.sweep()]
    try:
        choice = db.resolve_server()
        if choice.server is not None:
            said.append(db.repair(choice.server) or "")
    except LabError as exc:
        said.append(f"could not look at the server: {exc}")
    return "; ".join(filter(None, said)) or "nothing"


def main(out) -> int:
    out.print(table(facts()))
    return 0


def table(rows: list[tuple[str, str]]):
    """The facts as a table whose values fold at spaces (a path or a URL stays whole)."""
    from rich.table import Table
    from rich.text import Text

    grid = Table(title="daemonlab doctor", show_header=False, title_justify="left")
    grid.add_column(style="bold", no_wrap=True)
    grid.add_column()
    for name, value in rows:
        grid.add_row(name, Text(value))  # text, not markup: a path may hold [brackets]
    return grid
