"""The peer process: `python -m lab.experiments.ipc.peer LINK SPEC`, the other end of every talk.

It is a fresh interpreter started by the parent (links.Peer), never a fork:
it asks the kernel to kill it if the parent dies (PR_SET_PDEATHSIG), so a
parent killed with -9 leaves no peer behind, then opens its end of LINK,
prints one line of JSON on stdout ({"ready": ...} or {"error": ...}) and
answers messages until QUIT (wire.serve). Whatever breaks after that goes to
stderr, whose last line the parent reports.
"""

from __future__ import annotations

import json
import os
import signal
import sys


def main(argv: list[str]) -> int:
    from lab import procfs

    parent = os.getppid()
    procfs.prctl(procfs.PR_SET_PDEATHSIG, signal.SIGKILL)
    if os.getppid() != parent:  # the parent died before prctl took hold
        return 1
    # Ctrl-C at a terminal reaches the whole foreground group, this peer too; the parent
    # cleans up in its own order (QUIT, close, stop the peer), so the peer leaves it that.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    name, spec = argv[0], json.loads(argv[1])
    said_ready = False

    def ready(info: dict) -> None:
        nonlocal said_ready
        print(json.dumps({"ready": True, **info}), flush=True)
        said_ready = True

    from lab.errors import LabError
    from lab.experiments.ipc.transports import find

    try:
        find(name).serve(spec, ready)
    except (LabError, OSError, ValueError) as exc:
        if not said_ready:
            print(json.dumps({"error": f"{name}: {exc}"}), flush=True)
        else:
            print(f"{name}: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
