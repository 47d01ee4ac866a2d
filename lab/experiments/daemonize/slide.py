"""The slide: becoming a daemon. Fork, setsid, fork, chdir, umask, streams, pidfile.

    python -m lab.experiments.daemonize.slide /tmp/slide.pid   # returns at once
    ps -o pid,ppid,sid,tty,cmd -p $(cat /tmp/slide.pid); kill $(cat /tmp/slide.pid)

What goes wrong with it: the launcher exits 0 before the daemon has done
anything, so a daemon that fails (a pidfile it cannot write) fails unseen;
a second start overwrites the pidfile of the first; after a kill -9 the file
stays and names a pid the system will reuse; descriptors, signal handlers
and the signal mask inherited from the shell are kept. lab/daemon/steps.py
fixes them, one function a step, with lab/daemon/pidfile.py (a lock held
for life) and lab/daemon/readiness.py (the launcher waits for "ready").
"""

import os
import signal
import sys


def main() -> None:
    pidfile = sys.argv[1] if len(sys.argv) > 1 else "/tmp/daemonlab-slide.pid"
    pidfile = os.path.abspath(pidfile)  # before chdir("/")
    if os.fork():
        os._exit(0)  # the launcher: the shell gets its prompt back
    os.setsid()  # a new session, without a controlling terminal
    if os.fork():  # the child leads no session: no terminal can ever become its own
        os._exit(0)
    os.chdir("/")  # hold no mount busy
    os.umask(0o022)  # a known umask, not whatever the shell had
    null = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1, 2):
        os.dup2(null, fd)  # print() cannot fail, and no file opened later lands on fd 1
    os.close(null)
    with open(pidfile, "w") as f:
        f.write(f"{os.getpid()}\n")
    signal.pause()  # the daemon's work: here, wait for a signal


if __name__ == "__main__":
    main()
