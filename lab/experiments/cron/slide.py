"""The slide: cron job vs daemon. One job, started fresh each tick or run by a process already up.

    python -m lab.experiments.cron.slide

cron starts `/bin/sh -c COMMAND` each tick, with an environment of its own
(crontab(5): SHELL, PATH=/usr/bin:/bin, HOME, LOGNAME), so every tick pays
for a shell and an interpreter starting. A daemon pays that once and then
only runs the job.

What goes wrong with it: the job here imports only this package, while a
real one imports its libraries and connects each tick; only time is
compared, not the CPU and the memory a daemon holds while it waits, which
decide when it pays off; and cron ticks once a minute, not as fast as it
can. lab/work.py is the lesson's job, ticks.py runs it at a rate each way
with what each tick cost (wait4's rusage), lab/usage.py reads a daemon's
idle CPU, crossing.py finds where the costs cross.
"""

import os
import subprocess
import sys
import time

TICKS = 5
CRON_ENV = {
    "SHELL": "/bin/sh",
    "PATH": "/usr/bin:/bin",
    "HOME": os.path.expanduser("~"),
    "LOGNAME": os.environ.get("LOGNAME", "cron"),
}


def job() -> int:
    return sum(range(1000))  # the work; the lesson's own job is lab/work.py


def ms_per_job(run_once) -> float:
    began = time.perf_counter()
    for _ in range(TICKS):
        run_once()
    return (time.perf_counter() - began) / TICKS * 1e3


def main() -> None:
    if sys.argv[1:] == ["--tick"]:  # what the cron line runs
        job()
        return
    line = f"{sys.executable} -m {__spec__.name} --tick"  # a cron line names its interpreter
    cron = ms_per_job(lambda: subprocess.run(["/bin/sh", "-c", line], env=CRON_ENV, check=True))
    daemon = ms_per_job(job)
    print(f"started by cron: {cron:.1f} ms a job; run by a daemon: {daemon:.4f} ms a job")


if __name__ == "__main__":
    main()
