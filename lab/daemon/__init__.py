"""Daemons: becoming one step by step, and the harness that runs experiments as one.

    steps.py      one function per step of `man 7 daemon`, and `launch` running them
    pidfile.py    the fcntl-locked pidfile (TLPI createPidFile)
    readiness.py  the launcher waits on a pipe for READY or the reason it failed
    sdnotify.py   READY=1 / STOPPING=1 for systemd Type=notify
    signals.py    handlers only record (a wakeup fd); the main loop acts
    config.py     the harness's TOML, with the line and key of every mistake
    harness.py    the scheduler main loop; each run in a forked child
    cli.py        `daemonlab daemon start|stop|status|reload|logs`

Modules are imported by what needs them, so `import lab.daemon` costs nothing.
"""

__all__: list[str] = []
