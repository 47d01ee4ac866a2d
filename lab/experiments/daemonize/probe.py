"""The daemon the `daemonize` experiment watches: it pauses after every step.

Run as a child script (never forked from the observer, which may be a
multi-threaded Jupyter kernel):

    main([IMPL, REPORT_FD, GO_FD, PIDFILE, LOG, UMASK, USER])   (lab.children.main_argv)

After each step the process that did it writes "STEP<TAB>PID" on REPORT_FD
and blocks reading one byte from GO_FD, so the observer can read /proc/PID
while the process stands still. IMPL is "lab" (lab.daemon.steps.launch, the
man 7 daemon order) or "python-daemon" (daemon.DaemonContext, whose module
functions are wrapped here to report; its own order is kept).

Everything is imported before the first step: after dropping to another user
the interpreter's library may no longer be readable.
"""

from __future__ import annotations

import os
import sys
import time

# Exit codes that mean something to the observer.
EXIT_OK = 0
EXIT_OBSERVER_GONE = 4  # the go pipe closed: nobody watches, leave at once
EXIT_BAD_USAGE = 64  # EX_USAGE


class Reporter:
    def __init__(self, report_fd: int, go_fd: int) -> None:
        self.report_fd, self.go_fd = report_fd, go_fd

    def __call__(self, step: str) -> None:
        os.write(self.report_fd, f"{step}\t{os.getpid()}\n".encode())
        if os.read(self.go_fd, 1) != b"g":
            os._exit(EXIT_OBSERVER_GONE)

    def error(self, why: str) -> None:
        os.write(self.report_fd, f"error\t{os.getpid()}\t{' '.join(why.split())}\n".encode())


def run_lab(report: Reporter, pidfile: str, log: str, umask: int, user: str | None) -> int:
    from lab.daemon.steps import Options, launch, report_ready

    def serve(detached) -> int:
        report_ready(detached.ready)
        report("ready")
        return EXIT_OK

    options = Options(pidfile, log, umask, user, keep_fds=(report.report_fd, report.go_fd))
    result = launch(options, serve, after_step=report)
    if not result.ok:
        report.error(result.message)
    return EXIT_OK if result.ok else 1


class _OsSpy:
    """python-daemon's `os`, reporting after fork (in the child) and setsid."""

    def __init__(self, report: Reporter) -> None:
        self._report = report
        self._forks = 0

    def __getattr__(self, name: str):
        return getattr(os, name)

    def fork(self) -> int:
        parent = os.getpid()
        pid = os.fork()
        if pid == 0:
            self._forks += 1
            if self._forks == 1:
                _wait_for_parent_exit(parent)
            self._report("fork" if self._forks == 1 else "fork again")
        return pid

    def setsid(self) -> int:
        os.setsid()
        self._report("setsid")
        return 0


#: How long the first child waits for python-daemon's launcher to exit: it does so
#: right after fork, but the child may report before the kernel has run that exit.
LAUNCHER_EXIT_S = 2.0


def _wait_for_parent_exit(parent: int) -> None:
    """Until getppid() changes (we were re-parented), or LAUNCHER_EXIT_S: a bounded look."""
    deadline = time.monotonic() + LAUNCHER_EXIT_S
    while os.getppid() == parent and time.monotonic() < deadline:
        time.sleep(0.001)


def run_python_daemon(report: Reporter, pidfile: str, log: str, user: str | None) -> int:
    import pwd

    import daemon
    import daemon.daemon as dd
    import daemon.pidfile

    def after(step: str, func, every: int = 1):
        calls = [0]

        def wrapped(*args, **kwargs):
            result = func(*args, **kwargs)
            calls[0] += 1
            if calls[0] % every == 0:
                report(step)
            return result

        return wrapped

    dd.os = _OsSpy(report)
    dd.change_file_creation_mask = after("umask", dd.change_file_creation_mask)
    dd.change_working_directory = after("chdir /", dd.change_working_directory)
    dd.change_process_owner = after("drop privileges", dd.change_process_owner)
    dd.set_signal_handlers = after("signals", dd.set_signal_handlers)
    dd.close_all_open_files = after("close fds", dd.close_all_open_files)
    dd.redirect_stream = after("streams", dd.redirect_stream, every=3)  # stdin, stdout, stderr
    lock = daemon.pidfile.TimeoutPIDLockFile(pidfile, acquire_timeout=1)
    lock.__enter__ = after("pidfile", lock.__enter__)  # type: ignore[method-assign]
    owner = {}
    if user:
        entry = pwd.getpwnam(user)
        owner = {"uid": entry.pw_uid, "gid": entry.pw_gid, "initgroups": True}
    out = open(log, "a")  # noqa: SIM115 - the daemon's stdout/stderr for its whole life
    context = daemon.DaemonContext(
        pidfile=_Entered(lock),
        stdout=out,
        stderr=out,
        files_preserve=[report.report_fd, report.go_fd],
        detach_process=True,  # explicit: not guessed from ppid (the observer may be pid 1)
        **owner,
    )
    # Its defaults are the point of the comparison: umask 0, working directory /.
    with context:
        report("ready")
    return EXIT_OK


class _Entered:
    """DaemonContext calls pidfile.__enter__(); route it through the reporting wrapper."""

    def __init__(self, lock) -> None:
        self.lock = lock

    def __enter__(self):
        return self.lock.__enter__()

    def __exit__(self, *exc):
        return self.lock.__exit__(*exc)


def main(argv: list[str]) -> int:
    if len(argv) != 7:
        print(__doc__, file=sys.stderr)
        return EXIT_BAD_USAGE
    impl, report_fd, go_fd, pidfile, log, umask, user = argv
    report = Reporter(int(report_fd), int(go_fd))
    try:
        if impl == "lab":
            return run_lab(report, pidfile, log, int(umask, 8), user or None)
        return run_python_daemon(report, pidfile, log, user or None)
    except Exception as exc:
        report.error(f"{type(exc).__name__}: {exc}")
        raise
