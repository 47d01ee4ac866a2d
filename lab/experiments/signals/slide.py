"""The slide: trap TERM. A handler that runs when someone types `kill -TERM PID`.

    python -m lab.experiments.signals.slide    # then, from another shell: kill -TERM PID

What goes wrong with it: the handler does its work (prints, exits) in the
middle of whatever the main thread was doing, halfway through another
print() or a dict update: gunicorn's reentrancy bugs (#2816, #3004, #3198).
lab/daemon/signals.py is the fix the lab's daemons use: the handler only
records, the main loop acts. And a handler runs only in the main thread,
between two bytecodes: during a long C call (sum(range(10**9))) it waits
for the call to end. handlers.py checks that live, latency.py times it.
"""

import os
import signal
import sys


def on_term(signum: int, frame: object) -> None:
    print(f"got {signal.Signals(signum).name}: cleaning up, bye", flush=True)
    sys.exit(0)


def main() -> None:
    signal.signal(signal.SIGTERM, on_term)
    print(f"pid {os.getpid()}: waiting; try kill -TERM {os.getpid()}", flush=True)
    while True:
        signal.pause()  # the work: here, nothing until a signal comes


if __name__ == "__main__":
    main()
