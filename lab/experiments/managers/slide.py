"""The slide: a manager keeps a daemon running. Start it, wait for it to die, start it again.

    python -m lab.experiments.managers.slide      # and kill -9 a daemon pid it prints

The manager is the daemon's parent, so the kernel tells it the moment the
daemon dies (SIGCHLD; wait() returns), killed -9 or crashed. This daemon
crashes half a second after it starts: a crash loop, given up after three.

What goes wrong with it: it restarts at once, with no back-off, and cannot
tell a daemon that crashes at start from one that ran for a day (what
supervisord's startsecs and startretries are for); it stops neither the
daemon's children nor its grandchildren; and if the manager dies, nobody
restarts anything. events.py measures how fast each real manager notices a
kill -9 and brings the daemon back, what it does in a crash loop and how it
stops a daemon with a child and a grandchild; supervisord.py, circus.py,
honcho.py, monit.py and harness.py run them.
"""

import subprocess
import sys
import time

DAEMON = [sys.executable, "-c", "import time; time.sleep(0.5); raise SystemExit('crashed')"]
STARTS = 3


def main() -> None:
    for start in range(1, STARTS + 1):
        began = time.perf_counter()
        daemon = subprocess.Popen(DAEMON, stderr=subprocess.DEVNULL)
        print(f"start {start}: daemon pid {daemon.pid}", flush=True)
        code = daemon.wait()  # returns the moment the daemon dies
        took = time.perf_counter() - began
        print(f"pid {daemon.pid} exited {code} after {took:.2f} s", flush=True)
    print(f"a crash loop: {STARTS} starts, given up")


if __name__ == "__main__":
    main()
