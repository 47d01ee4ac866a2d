"""The experiment's child processes: a worker of one system, or its producer.

    python -m lab.experiments.worker.runner work SYSTEM MODEL SETTING WORKERS NS INDEX READY GATE
    python -m lab.experiments.worker.runner produce SYSTEM NS SETTING

READY and GATE are descriptors, or `-` for a system that cannot be held at a
gate (peers.GATED). From the environment: LAB_WORKER_RECOVER_S (how soon a dead
worker's job may come back, the crash table's), LAB_WORKER_DEADLINE_S (the
lab's --deadline, 2 s unless the stop table sets it), LAB_WORKER_MARK=1 (jobs
write start marks, marks.py).

`work` sets the worker up (imports, connection, registration), writes one
byte to READY_FD, then blocks reading GATE_FD until the experiment closes
its end: every worker process of a measurement starts at that one instant
(EOF reaches every reader of a pipe at once), and only then takes jobs.
`produce` queues jobs the system's own way on commands read from stdin,
one line each, answering each on stdout:

    fill KIND COUNT             -> filled COUNT
    paced KIND COUNT GAP        -> paced COUNT

Why children and not the experiment's own process: rq reads RQ_KEY_PREFIX
when it is imported (each run needs a prefix of its own), rq's fork-per-job
worker forks (never in a notebook kernel, which has threads), and a worker
must be a process of its own to be measured as one. Not child.py: these run
rq, arq and redis-py, not the standard library alone, and always under the
lab's own interpreter.
"""

from __future__ import annotations

import os
import sys

from lab import procfs

__all__: list[str] = []


def _work(
    system: str,
    model: str,
    setting: str,
    workers: str,
    namespace: str,
    index: str,
    ready_fd: str,
    gate_fd: str,
) -> None:
    from lab import services
    from lab.daemon.service import log_to_stderr
    from lab.experiments.worker import peers

    log_to_stderr("lab.worker", "worker")

    def ready() -> None:
        os.write(int(ready_fd), b"r")
        os.close(int(ready_fd))

    def gate() -> None:
        os.read(int(gate_fd), 1)  # EOF: the experiment closed its end; go
        os.close(int(gate_fd))

    recover = os.environ.get("LAB_WORKER_RECOVER_S")
    peers.run_worker(
        system,
        model,
        int(workers),
        namespace,
        services.url("redis"),
        int(index),
        ready,
        gate,
        setting=setting,
        recover_s=float(recover) if recover else None,
        deadline_s=float(os.environ.get("LAB_WORKER_DEADLINE_S", "2")),
    )


def _produce(system: str, namespace: str, setting: str) -> None:
    from lab import services
    from lab.experiments.worker.peers import Producer

    producer = Producer(
        system,
        namespace,
        services.url("redis"),
        setting,
        mark=os.environ.get("LAB_WORKER_MARK") == "1",
    )
    for line in sys.stdin:
        command, kind, count, *gap = line.split()
        if command == "fill":
            producer.fill(kind, int(count))
            print("filled", count, flush=True)
        elif command == "paced":
            producer.paced(kind, int(count), float(gap[0]))
            print("paced", count, flush=True)
        else:
            sys.exit(f"unknown command {command!r}")  # the experiment reads this line


if __name__ == "__main__":
    # A runner whose experiment died (kill -9) must not go on as an orphan.
    procfs.prctl(procfs.PR_SET_PDEATHSIG, 9)
    _role, *_args = sys.argv[1:]
    if _role == "work":
        _work(*_args)
    else:
        _produce(*_args)
