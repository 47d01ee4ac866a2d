"""Becoming a daemon, one small function per step, in the order of `man 7 daemon`.

The SysV recipe (`man 7 daemon`, "SysV Daemons"; TLPI's becomeDaemon) in the
order the man page lists it. Each function says why the step exists and why
it comes where it does; `launch` runs them in that order and calls
`after_step(name)` after each, which is how the `daemonize` experiment pauses
the process to read it from outside.

    1  close_inherited_fds     6  new_session (setsid)     11 chdir_root
    2  reset_signal_handlers   7  fork_again               12 take_pidfile
    3  reset_signal_mask       8  (first child exits)      13 drop_privileges
    4  (sanitise environment)  9  redirect_standard_streams 14 report_ready
    5  fork                   10  set_umask                15 (launcher exits)

Step 4 is deliberately skipped: the harness needs its environment (LAB_RESULTS,
PYTHONPATH, NOTIFY_SOCKET) and nothing in it harms a daemon; a daemon that
needs a clean one should be started by a manager that gives it one.

Things that do not work, and why the order is this one:
- Detaching only when ppid == 1 "because init started us" (python-daemon's
  is_detach_process_context_required): under a container, systemd or
  supervisord ppid says nothing about what the caller wants. The caller says
  it: `--foreground` (new-style) or not.
- Taking the pidfile before forking: fcntl locks are not inherited by fork,
  so the final process must take it.
- Dropping privileges before the pidfile (python-daemon's order): the pidfile
  then lives somewhere an unprivileged user can write, or cannot be made.
- Exiting the launcher in the first fork (python-daemon again): every failure
  after it is invisible to whoever started the daemon. See readiness.py.
"""

from __future__ import annotations

import errno
import logging
import os
import pwd
import signal
import sys
import traceback
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from lab.daemon.pidfile import PidFile
from lab.daemon.readiness import LaunchResult, ReadyPipe, wait_for_daemon
from lab.errors import LabError

__all__ = [
    "STEPS",
    "Detached",
    "Options",
    "chdir_root",
    "check_umask",
    "close_inherited_fds",
    "drop_privileges",
    "fork",
    "fork_again",
    "launch",
    "new_session",
    "redirect_standard_streams",
    "reset_signal_handlers",
    "reset_signal_mask",
    "report_ready",
    "set_umask",
    "take_pidfile",
]

#: The step names `after_step` receives, in order.
STEPS = (
    "close fds",
    "reset signals",
    "reset mask",
    "fork",
    "setsid",
    "fork again",
    "streams",
    "umask",
    "chdir /",
    "pidfile",
    "drop privileges",
    "ready",
)

# Exit codes of the processes a launch leaves behind; they mean something.
EXIT_INTERMEDIATE_OK = 0  # the session leader's only job was to fork the daemon
EXIT_NOT_STARTED = 1  # the daemon told the launcher why it could not start
EXIT_STEP_FAILED = 70  # EX_SOFTWARE: a step raised before readiness could be told

#: errnos that mean "that descriptor was not open": the only ones step 1 tolerates.
_NOT_OPEN = {errno.EBADF}

log = logging.getLogger("lab.daemon")


@dataclass(frozen=True)
class Options:
    """What the caller asks of the daemon; checked before anything forks."""

    pidfile: str
    log: str | None = None  # None: standard streams to /dev/null
    umask: int = 0o022
    user: str | None = None  # drop to this user (root only)
    keep_fds: tuple[int, ...] = field(default_factory=tuple)


@dataclass
class Detached:
    """What the daemon holds once detached: its locked pidfile and the readiness pipe."""

    pidfile: PidFile
    ready: ReadyPipe


# -- 1-3: a clean slate --------------------------------------------------------------
def close_inherited_fds(keep: Iterable[int]) -> None:
    """Step 1: close every descriptor except 0-2 (replaced in step 9) and `keep`.

    Why: a descriptor inherited from the shell or a parent (a socket, the
    write end of someone's pipe) keeps that resource alive for the daemon's
    whole life: a pipe reader never sees EOF, a port stays bound. Why first:
    so nothing opened later by mistake is closed, and the pidfile and log
    opened later get fresh numbers. A log opened before this must be named in
    `keep` (see `check_kept_logs`), or its number would be reused by the
    pidfile and log lines would land in the pidfile.
    """
    keep = set(keep) | {0, 1, 2}
    for name in os.listdir("/proc/self/fd"):  # only the open ones, not 0..RLIMIT_NOFILE
        fd = int(name)
        if fd in keep:
            continue
        try:
            os.close(fd)
        except OSError as exc:  # the listing's own directory descriptor, already closed
            if exc.errno not in _NOT_OPEN:
                raise


def check_kept_logs(keep: Iterable[int]) -> None:
    """Refuse to close a logging handler's file behind its back (the fd-reuse pitfall)."""
    keep = set(keep) | {0, 1, 2}
    for handler in logging.root.handlers + log.handlers:
        stream = getattr(handler, "stream", None)
        try:
            fd = stream.fileno() if stream is not None else None
        except (OSError, ValueError):
            continue
        if fd is not None and fd not in keep:
            raise LabError(
                f"log handler {handler!r} writes to fd {fd}, which daemonizing would close:"
                " name it in keep_fds"
            )


def reset_signal_handlers() -> None:
    """Step 2: every signal back to its default, so inherited "ignore" does not stick.

    Why: ignored dispositions survive fork and exec; a daemon started from a
    shell that ignores HUP would never reload. SIGPIPE stays ignored: that is
    Python's own choice (writes to a closed pipe raise BrokenPipeError), and
    the readiness write to a launcher that was killed must not kill us.
    """
    for sig in signal.valid_signals():
        if sig in (signal.SIGKILL, signal.SIGSTOP):
            continue
        try:
            signal.signal(sig, signal.SIG_IGN if sig == signal.SIGPIPE else signal.SIG_DFL)
        except (OSError, ValueError):
            pass  # real-time signals glibc keeps for itself (32, 33) cannot be set


def reset_signal_mask() -> None:
    """Step 3: unblock every signal. Why: the mask, like dispositions, is inherited."""
    signal.pthread_sigmask(signal.SIG_SETMASK, [])


# -- 5-8: leave the terminal's session for good ---------------------------------------
def fork() -> int:
    """Step 5: fork; the child goes on, the parent becomes the launcher and waits.

    Why: the child is guaranteed not to be a process-group leader, which
    setsid (step 6) requires; and the shell that started us gets its prompt
    back once the launcher exits.
    """
    sys.stdout.flush()  # unflushed stdio would be written twice, once per process
    sys.stderr.flush()
    return os.fork()


def new_session() -> None:
    """Step 6: setsid: a new session and process group, no controlling terminal.

    Why: the terminal's hang-up (SIGHUP) and job-control signals (Ctrl-C, Ctrl-Z)
    go to the terminal's session; we are no longer in it.
    """
    os.setsid()


def fork_again() -> int:
    """Steps 7-8: fork once more; the session leader exits at once.

    Why: a session leader that opens a terminal (any tty, by accident) gets it
    as its controlling terminal. The grandchild is not a session leader, so it
    can never acquire one. Why after setsid: only then does the session exist
    whose leader we leave behind.
    """
    return os.fork()


# -- 9-11: the daemon's own surroundings ------------------------------------------------
def redirect_standard_streams(log_path: str | None) -> None:
    """Step 9: stdin from /dev/null; stdout and stderr to the log, or /dev/null.

    Why: the terminal is gone; a print or a traceback to it would fail with
    EIO or, worse, go to whoever gets that tty next. With the log on fds 1 and
    2, a stray print and an uncaught traceback still end up in the log, and
    reopening the log (USR1, after logrotate) is one dup2 away.
    """
    null = os.open(os.devnull, os.O_RDWR)
    out = null if log_path is None else open_log(log_path)
    os.dup2(null, 0)
    os.dup2(out, 1)
    os.dup2(out, 2)
    for fd in {null, out}:
        if fd > 2:
            os.close(fd)


def open_log(path: str) -> int:
    """The log, appended to (O_APPEND: concurrent writers never overwrite each other)."""
    flags = os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC
    try:
        # 0o644 whatever the umask: readable by all is fine, writable by all is not.
        return os.open(path, flags, 0o644)
    except OSError as exc:
        raise LabError(f"cannot open log {path}: {exc.strerror}") from None


def check_umask(mask: int) -> int:
    """Refuse a umask that lets others write what the daemon creates (python-daemon's 0)."""
    if not 0 <= mask <= 0o777:
        raise LabError(f"umask {mask:o} is not a permission mask (0-777)")
    if not mask & 0o002:
        raise LabError(f"umask {mask:03o} lets every user write the daemon's files: use 022")
    return mask


def set_umask(mask: int) -> None:
    """Step 10: a known umask. Why: the one inherited from the shell is anyone's guess."""
    os.umask(check_umask(mask))


def chdir_root() -> None:
    """Step 11: cd /. Why: a daemon sitting in a directory keeps its filesystem busy
    (it cannot be unmounted), and relative paths would depend on who started it."""
    os.chdir("/")


# -- 12-14: claim, shrink, tell ---------------------------------------------------------
def take_pidfile(path: str) -> PidFile:
    """Step 12: lock the pidfile and write our pid. Why here: we are the final
    process (fcntl locks do not cross fork) and still privileged enough to
    create it where the system keeps pidfiles."""
    return PidFile.acquire(path)


def drop_privileges(user: str | None) -> None:
    """Step 13: become `user` (initgroups, setgid, setuid, in that order) when root.

    Why this order: setgroups and setgid need root, so they come before setuid
    gives root away; initgroups first replaces root's supplementary groups
    (group 0 among them) with the user's, which a bare setgid+setuid would keep.
    Why after the pidfile: the locked descriptor stays ours after the switch.
    """
    if user is None:
        return
    entry = _lookup(user)
    if os.geteuid() == entry.pw_uid:
        return
    os.initgroups(user, entry.pw_gid)
    os.setgid(entry.pw_gid)
    os.setuid(entry.pw_uid)
    try:  # proof that it cannot be undone
        os.setuid(0)
    except PermissionError:
        pass
    else:
        raise LabError(f"dropped to {user} but could regain root: refusing to run")
    os.environ.update(HOME=entry.pw_dir, USER=user, LOGNAME=user)


def user_ids(user: str | None) -> tuple[int, int] | None:
    """(uid, gid) of `user`, or None when no user was asked for; refuses unknown names."""
    if user is None:
        return None
    entry = _lookup(user)
    return entry.pw_uid, entry.pw_gid


def _lookup(user: str) -> pwd.struct_passwd:
    """The user's passwd entry, if we may become it (we are root, or already it)."""
    try:
        entry = pwd.getpwnam(user)
    except KeyError:
        raise LabError(f"no such user {user!r}") from None
    if os.geteuid() != 0 and os.geteuid() != entry.pw_uid:
        raise LabError(f"--user {user} needs root (running as uid {os.geteuid()})")
    return entry


def report_ready(ready: ReadyPipe) -> None:
    """Step 14: tell the launcher we run; it exits 0 on reading it (step 15).

    Why last, and why called by the daemon's own code rather than here: "ready"
    must mean the pidfile is locked *and* the daemon's work is set up (its
    config read, its store opened, its signal handlers in place); everything
    that can still fail should fail while the launcher is there to say so.
    """
    ready.ready()


# -- the whole recipe ----------------------------------------------------------------
def _no_pause(step: str) -> None:
    """The default after_step: nobody is watching."""


def launch(
    options: Options,
    run_daemon: Callable[[Detached], int],
    *,
    after_step: Callable[[str], None] = _no_pause,
    ready_timeout: float = 30.0,
) -> LaunchResult:
    """Turn a child of the calling process into a daemon running `run_daemon`.

    Returns, in the calling process (the launcher), once the daemon said it is
    ready or why it is not. `run_daemon(detached)` runs in the daemon and must
    call `report_ready(detached.ready)` once it holds everything it needs (or
    `detached.ready.failed(why)`); its return value is the daemon's exit code. The calling
    process has its descriptors closed and signals reset (steps 1-3): call
    this from a process that exists to start a daemon, such as the CLI.
    """
    check_umask(options.umask)
    user_ids(options.user)
    check_kept_logs(options.keep_fds)

    close_inherited_fds(options.keep_fds)
    after_step("close fds")
    reset_signal_handlers()
    after_step("reset signals")
    reset_signal_mask()
    after_step("reset mask")
    # The readiness pipe exists before the first fork (man 7 daemon step 14),
    # so both the launcher and the daemon have an end of it.
    ready = ReadyPipe.create()
    child = fork()
    if child:
        # The launcher: reap the session leader (it exits right after forking
        # the daemon), then wait for the daemon's word.
        _, status = os.waitpid(child, 0)
        if os.waitstatus_to_exitcode(status) != EXIT_INTERMEDIATE_OK:
            ready.close_write()
            ready.close_read()
            code = os.waitstatus_to_exitcode(status)
            return LaunchResult(False, None, f"daemon's first child failed (exit {code})")
        return wait_for_daemon(ready, ready_timeout)
    code = EXIT_STEP_FAILED
    try:
        ready.close_read()
        after_step("fork")
        new_session()
        after_step("setsid")
        if fork_again():
            code = EXIT_INTERMEDIATE_OK  # step 8: the session leader leaves at once
        else:
            code = _become_daemon(options, ready, run_daemon, after_step)
    except LabError as exc:
        ready.failed(str(exc))
        code = EXIT_NOT_STARTED
    except BaseException as exc:
        ready.failed(f"{type(exc).__name__}: {exc}")
        traceback.print_exc()  # to the log (fd 2) if streams were redirected already
    finally:
        os._exit(code)


def _become_daemon(
    options: Options,
    ready: ReadyPipe,
    run_daemon: Callable[[Detached], int],
    after_step: Callable[[str], None],
) -> int:
    """Steps 9-14 in the grandchild; then the daemon's own work."""
    after_step("fork again")
    redirect_standard_streams(options.log)
    after_step("streams")
    set_umask(options.umask)
    after_step("umask")
    chdir_root()
    after_step("chdir /")
    pidfile = take_pidfile(options.pidfile)
    after_step("pidfile")
    drop_privileges(options.user)
    after_step("drop privileges")
    return run_daemon(Detached(pidfile, ready))
