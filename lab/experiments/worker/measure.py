"""One measurement: a system's workers, a queue of jobs, then jobs one by one.

For one (system, model, workers, job):

    1  start the producer and the worker processes (runner.py); all set up,
       none taking jobs yet (they wait on a gate). Their start-up is start_s.
    2  fill the queue with `queued` jobs, the system's own way (not timed).
    3  open the gate (t0): every worker starts at once. Throughput: jobs whose
       ledger line ends by the last one's end (or by t0 + `seconds`, if the
       queue lasts longer) over that time. CPU: what the worker processes
       and their children used from t0 to then (psutil: /proc, clock ticks).
    4  drop what is left in the queue; wait until the workers are idle.
    5  pick-up: `samples` jobs, one every `gap` s on average, each at a
       random moment of its interval (no job in step with a poll timer):
       each one's start minus the moment just before it was queued.
    6  stop the processes (TERM, a grace, KILL, reaped) and delete every key
       of the namespace, whatever happened.

Every wait is bounded. Redis gone mid-measurement is a LabError in one line
(lab/redis_gone.py); the finished records are already stored (lab.runs.collect).
"""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from typing import Any

from lab import children, redis_gone, services, usage, work
from lab.errors import LabError, last_line
from lab.experiments.worker import peers, queue

__all__ = [
    "Cell",
    "Child",
    "ask",
    "measure_cell",
    "namespace",
    "start_child",
    "start_producer",
    "pickup",
    "start_worker",
    "throughput",
    "tree_cpu_s",
]

#: Seconds a worker process may take to start (imports, connect) on a loaded 2-core machine.
START_TIMEOUT_S = 30.0
#: How long after the last job the workers must stay quiet to count as idle.
IDLE_S = 0.2
#: How long after the last paced job all of them must have run: a slow job (2 s) behind
#: a poll, plus a second a job for a worker that cannot keep up (arq with max_jobs=1
#: starts one job per 0.5 s poll, whatever arrives meanwhile).
TAIL_S = 10.0
TAIL_PER_JOB_S = 1.0
#: How long draining (jobs in flight when the queue was dropped) may take: one slow job.
DRAIN_TIMEOUT_S = 10.0
#: The longest one producer command may take: filling 10,000 arq jobs, or 50 pick-up
#: jobs one at a time behind arq's 0.5 s poll, take seconds; a minute means it is stuck.
ANSWER_TIMEOUT_S = 120.0
STOP_GRACE_S = 5.0  # TERM to a worker, then this long to finish its job and leave
#: A worker's stdout (Celery prints its banner there) is no part of the experiment's output.
QUIET = {"stdout": subprocess.DEVNULL}
POLL_S = 0.002  # ledger polling: well under a pick-up of the fastest system (~0.2 ms... 1 ms)


@dataclass(frozen=True)
class Cell:
    system: str
    model: str
    workers: int
    job: str
    setting: str = "default"  # peers.SETTINGS


def namespace() -> str:
    """A fresh prefix for one measurement: every key it makes starts with it."""
    return f"daemonlab-w-{secrets.token_hex(4)}"


@dataclass
class Child:
    """A runner process, and the file its stderr goes to (its last line explains a failure)."""

    proc: subprocess.Popen
    err: Any  # a temporary file

    def last_words(self) -> str:
        self.err.seek(0)
        return last_line(self.err.read().decode(errors="replace"), f"exit {self.proc.returncode}")

    def stop(self) -> None:
        """TERM, a grace, KILL; then KILL whatever it had forked and left behind: a Celery
        prefork child or a Dramatiq worker process whose main process was KILLed at the end
        of the grace would go on taking jobs and writing keys after the run has deleted them."""
        import psutil

        try:
            family = psutil.Process(self.proc.pid).children(recursive=True)
        except psutil.NoSuchProcess:
            family = []
        children.stop_popen(self.proc, grace=STOP_GRACE_S)
        for member in family:
            try:
                member.kill()
            except psutil.NoSuchProcess:
                continue
        psutil.wait_procs(family, timeout=STOP_GRACE_S)
        self.err.close()


def measure_cell(
    cell: Cell, queued: int, seconds: float, samples: int, gap: float
) -> dict[str, Any]:
    """One measurement, in the six steps of this module's docstring."""
    ns = namespace()
    conn = None
    started: list[Child] = []
    try:
        with redis_gone.one_line():
            conn = queue.connect(services.url("redis"))
            producer = start_producer(cell, ns, started, {})
            if cell.system in peers.GATED:
                workers, start_s, cpu0, t0 = _start_gated(cell, ns, queued, producer, started)
            else:
                workers, start_s, cpu0, t0 = _start_ungated(
                    cell, ns, queued, producer, conn, started
                )
            record, done = _throughput_phase(conn, cell, ns, queued, seconds, workers, cpu0, t0)
            _drop_the_rest(conn, cell, ns, workers, left=done < queued)
            record.update(_pickup_phase(conn, cell, ns, producer, samples, gap, workers))
            record["start_s"] = round(start_s, 3)
            return record
    finally:  # 6: stop the processes, delete the namespace's keys, whatever happened
        for child in started:
            child.stop()
        if conn is not None:
            work.forget(conn, ns)
            conn.close()


def _start_gated(
    cell: Cell, ns: str, queued: int, producer: Child, started: list[Child]
) -> tuple[list[Child], float, float, int]:
    """Steps 1 to 3 for a worker that waits on the gate: 1 start the workers, 2 fill the
    queue while they start, 3 open the gate (t0) once all are ready (workers, start_s,
    cpu0, t0)."""
    workers, ready_r, gate_w = _start_workers(cell, ns, started, {})
    began = time.perf_counter()
    try:
        ask(producer, f"fill {cell.job} {queued}")
        _wait_ready(ready_r, workers)
        start_s = time.perf_counter() - began
        cpu0 = tree_cpu_s(workers)
        t0 = work.stamp()
    finally:
        os.close(gate_w)  # the gate opens (and stays open, whatever happened)
        os.close(ready_r)
    return workers, start_s, cpu0, t0


def _throughput_phase(
    conn, cell: Cell, ns: str, queued: int, seconds: float, workers: list[Child], cpu0, t0
) -> tuple[dict[str, Any], int]:
    """Step 3: the filled queue run down (or `seconds` gone): jobs/s and CPU per job, and
    how many ledger lines there were when it ended."""
    cap = t0 + int(seconds * 1e9)
    done = _wait_ledger(conn, ns, queued, cap, workers)
    cpu1 = tree_cpu_s(workers)
    entries = _entries(conn, ns)
    if cell.system not in peers.GATED:  # the clock starts at the first job's start
        t0 = min((e.start for e in entries if peers.phase(e.job_id) == "t"), default=t0)
    record = throughput(entries, t0, cap, queued)
    record["cpu_ms_per_job"] = round((cpu1 - cpu0) * 1000 / max(record["jobs"], 1), 4)
    return record, done


def _drop_the_rest(conn, cell: Cell, ns: str, workers: list[Child], left: bool) -> None:
    """Step 4: drop what is `left` in the queue (the cap came first); wait until the workers
    are idle, so no job of step 3 is still running when step 5 measures."""
    if left:
        conn.delete(peers.QUEUE_KEY[cell.system](ns))
    _wait_idle(conn, ns, workers)


def _pickup_phase(
    conn, cell: Cell, ns: str, producer: Child, samples: int, gap: float, workers: list[Child]
) -> dict[str, Any]:
    """Step 5: `samples` jobs queued one at a time, at random moments: their pick-up."""
    before = conn.llen(queue.Keys(ns).ledger)
    ask(producer, f"paced {cell.job} {samples} {gap}")
    tail = TAIL_S + samples * TAIL_PER_JOB_S
    _wait_ledger(conn, ns, before + samples, work.stamp() + int(tail * 1e9), workers)
    if conn.llen(queue.Keys(ns).ledger) < before + samples:
        raise LabError(f"{cell.system}: pick-up jobs still not run {tail:g}s after queued")
    return pickup([e for e in _entries(conn, ns) if peers.phase(e.job_id) == "p"])


def start_child(
    args: list[str], ns: str, started: list[Child], more: dict[str, str], **popen: Any
) -> Child:
    env = {
        **os.environ,
        "LAB_REDIS_URL": services.url("redis"),
        "RQ_KEY_PREFIX": f"{ns}:rq",
        **more,
    }
    err = tempfile.TemporaryFile()
    command = [sys.executable, "-m", "lab.experiments.worker.runner", *args]
    try:
        child = Child(subprocess.Popen(command, env=env, stderr=err, text=True, **popen), err)
    except BaseException:
        err.close()
        raise
    started.append(child)
    return child


def _work_args(cell: Cell, ns: str, index: int) -> list[str]:
    return ["work", cell.system, cell.model, cell.setting, str(cell.workers), ns, str(index)]


def _start_workers(
    cell: Cell, ns: str, started: list[Child], env: dict[str, str]
) -> tuple[list[Child], int, int]:
    """The worker processes, each holding the write end of `ready` and the read end of `gate`."""
    gate_r, gate_w = os.pipe()
    ready_r, ready_w = os.pipe()
    workers = []
    try:
        for index in range(peers.processes(cell.system, cell.model, cell.workers)):
            args = _work_args(cell, ns, index)
            ends = (ready_w, gate_r)
            workers.append(
                start_child([*args, *map(str, ends)], ns, started, env, pass_fds=ends, **QUIET)
            )
    except BaseException:
        os.close(ready_r)
        os.close(gate_w)
        raise
    finally:
        os.close(ready_w)  # only the children hold these now: their exit means EOF
        os.close(gate_r)
    return workers, ready_r, gate_w


def _start_ungated(
    cell: Cell,
    ns: str,
    queued: int,
    producer: Child,
    conn,
    started: list[Child],
) -> tuple[list[Child], float, float, int]:
    """Steps 1 to 3 for a worker that takes jobs as soon as it is up (Celery, Dramatiq):
    2 fill the queue first, then 1 start it, 3 its clock starts with the first ledger
    line, its CPU counted from then (workers, start_s, cpu0, a provisional t0)."""
    ask(producer, f"fill {cell.job} {queued}")
    began = time.perf_counter()
    count = peers.processes(cell.system, cell.model, cell.workers)
    workers = [start_worker(cell, ns, i, started, {}) for i in range(count)]
    deadline = time.monotonic() + START_TIMEOUT_S
    while not conn.llen(queue.Keys(ns).ledger):
        if time.monotonic() > deadline:
            raise LabError(f"{cell.system}: no job started within {START_TIMEOUT_S:g}s")
        _check_alive(workers)
        time.sleep(POLL_S)
    return workers, time.perf_counter() - began, tree_cpu_s(workers), work.stamp()


def start_producer(cell: Cell, ns: str, started: list[Child], env: dict[str, str]) -> Child:
    """The runner that queues the system's jobs on command (`ask`)."""
    args = ["produce", cell.system, ns, cell.setting]
    return start_child(args, ns, started, env, stdin=subprocess.PIPE, stdout=subprocess.PIPE)


def start_worker(
    cell: Cell, ns: str, index: int, started: list[Child], env: dict[str, str]
) -> Child:
    """One worker process, taking jobs at once: a gated one is released as soon as ready."""
    if cell.system not in peers.GATED:
        return start_child([*_work_args(cell, ns, index), "-", "-"], ns, started, env, **QUIET)
    gate_r, gate_w = os.pipe()
    ready_r, ready_w = os.pipe()
    try:
        ends = (ready_w, gate_r)
        args = [*_work_args(cell, ns, index), *map(str, ends)]
        child = start_child(args, ns, started, env, pass_fds=ends, **QUIET)
    finally:
        os.close(ready_w)  # only the child holds these now
        os.close(gate_r)
    try:
        _wait_ready(ready_r, [child])
    finally:
        os.close(gate_w)  # the gate opens
        os.close(ready_r)
    return child


def ask(producer: Child, command: str) -> None:
    """Send the producer one command and wait for its answer, for ANSWER_TIMEOUT_S at most."""
    import select

    producer.proc.stdin.write(command + "\n")
    producer.proc.stdin.flush()
    if not select.select([producer.proc.stdout], [], [], ANSWER_TIMEOUT_S)[0]:
        raise LabError(f"the producer did not finish {command!r} within {ANSWER_TIMEOUT_S:g}s")
    if not producer.proc.stdout.readline():
        producer.proc.wait(STOP_GRACE_S)
        raise LabError(f"the producer failed on {command!r}: {producer.last_words()}")


def _wait_ready(fd: int, workers: list[Child]) -> None:
    import select

    deadline = time.monotonic() + START_TIMEOUT_S
    count, got = len(workers), 0
    while got < count:
        left = deadline - time.monotonic()
        if left <= 0 or not select.select([fd], [], [], left)[0]:
            raise LabError(
                f"{count - got} of {count} workers not ready within {START_TIMEOUT_S:g}s"
            )
        chunk = os.read(fd, count - got)
        if not chunk:
            _check_alive(workers)
            raise LabError("the workers closed their readiness pipe before they were ready")
        got += len(chunk)


def _wait_ledger(conn, ns: str, count: int, until_ns: int, workers: list[Child]) -> int:
    """Poll the ledger's length until `count` or the clock passes `until_ns`; the length."""
    key = queue.Keys(ns).ledger
    while True:
        length = conn.llen(key)
        if length >= count or work.stamp() >= until_ns:
            return length
        _check_alive(workers)
        time.sleep(POLL_S)


def _wait_idle(conn, ns: str, workers: list[Child]) -> None:
    key = queue.Keys(ns).ledger
    deadline = time.monotonic() + DRAIN_TIMEOUT_S
    last, since = -1, time.monotonic()
    while time.monotonic() < deadline:
        length = conn.llen(key)
        if length != last:
            last, since = length, time.monotonic()
        elif time.monotonic() - since >= IDLE_S:
            return
        _check_alive(workers)
        time.sleep(0.01)
    raise LabError(f"workers still busy {DRAIN_TIMEOUT_S:g}s after their queue was dropped")


def _check_alive(workers: list[Child]) -> None:
    for child in workers:
        if child.proc.poll() is not None:
            raise LabError(f"a worker process exited mid-run: {child.last_words()}")


def _entries(conn, ns: str) -> list[work.Entry]:
    return [work.Entry.parse(line) for line in conn.lrange(queue.Keys(ns).ledger, 0, -1)]


def tree_cpu_s(workers: list[Child]) -> float:
    """CPU seconds of these processes and their descendants, live or already reaped.

    A live process: its threads' time on a CPU to the nanosecond
    (lab.usage). A descendant already reaped by its parent
    (rq's work horses): its parent's children times from /proc/PID/stat, in
    clock ticks of 10 ms: the only record left of it.
    """
    import psutil

    total = 0.0
    for child in workers:
        try:
            top = psutil.Process(child.proc.pid)
            family = [top, *top.children(recursive=True)]
        except psutil.NoSuchProcess:
            continue
        for member in family:
            try:
                reaped = member.cpu_times()
                total += reaped.children_user + reaped.children_system + usage.on_cpu_s(member.pid)
            except (psutil.NoSuchProcess, FileNotFoundError, ProcessLookupError):
                continue
    return total


# -- figures from the ledger (the benchmark calls these too) -------------------------------
def throughput(entries: list[work.Entry], t0: int, cap: int, queued: int) -> dict[str, Any]:
    """jobs/s of the filled queue: jobs ended by the last end (or the cap), over that time."""
    ends = sorted(e.end for e in entries if peers.phase(e.job_id) == "t")
    if len(ends) >= queued:
        stop, done = ends[queued - 1], queued
    else:
        stop, done = cap, sum(1 for end in ends if end <= cap)
    elapsed = (stop - t0) / 1e9
    return {
        "jobs": done,
        "seconds": round(elapsed, 4),
        "jobs_per_s": round(done / elapsed, 1) if elapsed > 0 else 0.0,
    }


def pickup(entries: list[work.Entry]) -> dict[str, Any]:
    """Median and p99 of queued -> started, in ms, over the jobs queued spread out in time."""
    return {"samples": len(entries), **work.pickup([e.pickup_ns for e in entries])}
