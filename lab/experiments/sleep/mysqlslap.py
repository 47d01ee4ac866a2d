"""mysqlslap: MariaDB's own load client as a peer, run on the same server in the same run.

`--strategy mysqlslap` runs `mysqlslap --concurrency N --query "SELECT
SLEEP(s) /* daemonlab TAG */" --iterations 1` against the run's server,
through the same watcher as every strategy (so the server's own count of
its SLEEPs at once, server_peak, says it saw them), and records mysqlslap's
own figure: "Average number of seconds to run all queries".

What it does per client, from its source (client/mysqlslap.c, run_task):
one thread per client, created when the run starts; each thread connects
*after* the start, then sends its query with blocking calls. So its figure
holds N connects as well as the sleep, where every lab strategy and the C
floor connect first (connect_s) and time the queries alone. The C floor's
`threads` variant is the same shape with the connects taken out.

It runs with --create-schema set to the lab's own database and --no-drop:
with a --query and no --create, mysqlslap creates nothing, and without
--no-drop it would drop the schema it was pointed at. The password travels
in MYSQL_PWD, not on the command line (ps shows every argument).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess

from lab.errors import LabError, last_line
from lab.experiments.sleep.job import Job

__all__ = ["INSTALL", "available", "measure"]

INSTALL = "apt-get install mariadb-client"
#: Its own figure, as it prints it.
AVERAGE = re.compile(r"Average number of seconds to run all queries: ([0-9.]+) seconds")
#: Connecting and the sleep; this much more bounds a run that hangs.
RUN_GRACE_S = 60.0


def available() -> str | None:
    """The mysqlslap (or mariadb-slap) on PATH, or None."""
    return shutil.which("mariadb-slap") or shutil.which("mysqlslap")


def measure(job: Job) -> dict[str, float]:
    """mysqlslap's seconds for one SELECT SLEEP per client, N clients at once."""
    program = available()
    if program is None:
        raise LabError(f"no mysqlslap: `{INSTALL}`")
    if job.server.unix_socket or job.server.tls:
        raise LabError("mysqlslap runs here over plain TCP only, as the C floor does")
    args = [
        program, f"--host={job.server.host}", f"--port={job.server.port}",
        f"--user={job.server.user}", "--protocol=tcp",
        f"--create-schema={job.server.database}", "--no-drop",
        f"--concurrency={job.clients}", "--iterations=1", f"--query={job.sql}",
    ]  # fmt: skip
    job.connected()  # it connects inside its own timing: the watcher's idle count is of none
    done = subprocess.run(
        args, capture_output=True, text=True, timeout=job.seconds + RUN_GRACE_S,
        env=os.environ | {"MYSQL_PWD": job.server.password},
    )  # fmt: skip
    found = AVERAGE.search(done.stdout)
    if done.returncode != 0 or found is None:
        raise LabError(f"mysqlslap failed: {last_line(done.stderr or done.stdout)}")
    seconds = float(found.group(1))
    return {"wall_s": seconds, "efficiency": job.seconds / seconds}
