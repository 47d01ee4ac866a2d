"""The lab's job queue on Redis: enqueue, a reliable fetch, ack, heartbeats, recovery.

The keys of one namespace (`Keys`), all starting with it:

    NS:queue                 a list of job payloads; producers LPUSH, workers take from the right
    NS:processing:ID:SLOT    what slot SLOT of worker ID is running (at most one payload)
    NS:heartbeat:ID          worker ID is alive: a key with a TTL, refreshed well before it ends
    NS:workers               hash: every worker ID that may hold jobs -> its number of slots
    NS:retried               a list: the id of every job taken back from a worker mid-job
    NS:ledger                the jobs' own record of having run (lab.work)

The reliable fetch (Redis's "reliable queue" pattern, https://redis.io/docs/latest/commands/lmove/):
BLMOVE takes a job from the queue *into* the slot's processing list in one
atomic step, so at no moment is a job in no list. The job leaves its
processing list only when it is done (ack) or given back. A worker killed
with -9 leaves its jobs in its processing lists, and its heartbeat key runs
out: the next worker that looks (at start, then on every heartbeat) finds a
registered worker without a heartbeat and moves its jobs back to the queue
(`recover`). That is Sidekiq Pro's super_fetch
(https://github.com/sidekiq/sidekiq/wiki/Reliability): a busy worker keeps
beating, so only a dead one loses its jobs, and a job is never lost, only
possibly run twice. A job moved back carries attempt + 1 and its id goes to
NS:retried, so a second run is always reported, never silent.

What a learner would write first, and why it is not enough:
- BRPOP alone: the job is out of Redis the moment it is taken; a
  crash mid-job loses it (Sidekiq's basic fetch, and what its wiki warns of).
- A processing list per worker process, not per slot: a thread or task that
  dies cannot give back just its own job; one list per slot can.
- "Dead if its pid is gone": pids are reused and the worker may be on another
  machine; an expired heartbeat says the same anywhere.

A payload is one line, `ATTEMPT ID KIND QUEUED_NS`: the recovery script edits
the attempt in Lua with a string match (cjson would print 15-digit
nanoseconds in exponent form, losing digits).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import redis

__all__ = [
    "FETCH_TIMEOUT_S",
    "REQUEUE",
    "Job",
    "Keys",
    "ack",
    "beat",
    "connect",
    "connect_async",
    "enqueue",
    "fetch",
    "give_back",
    "pending",
    "recover",
    "requeue",
    "retire",
    "workers",
]

#: How long one BLMOVE blocks before it comes back empty (Sidekiq's BRPOP uses 2 s).
#: It bounds nothing a user waits for: quiet and stop wake a blocked slot at once
#: with CLIENT UNBLOCK; it only makes an idle slot look at its flags now and then.
FETCH_TIMEOUT_S = 2.0

#: Move every payload of one processing list back to the queue's taking end (so it
#: runs next), its attempt one higher, its id appended to the retried list. One
#: script, so a payload is in exactly one of the two lists at every moment, and two
#: workers recovering the same dead worker at once move each payload once.
REQUEUE = """
local moved = 0
while true do
  local payload = redis.call('RPOP', KEYS[1])
  if not payload then return moved end
  local attempt, rest = string.match(payload, '^(%d+) (.*)$')
  redis.call('RPUSH', KEYS[2], (tonumber(attempt) + 1) .. ' ' .. rest)
  redis.call('RPUSH', KEYS[3], string.match(rest, '^(%S+)'))
  moved = moved + 1
end
"""


@dataclass(frozen=True)
class Keys:
    """The Redis keys of one namespace (see the module notes)."""

    namespace: str

    @property
    def queue(self) -> str:
        return f"{self.namespace}:queue"

    @property
    def workers(self) -> str:
        return f"{self.namespace}:workers"

    @property
    def retried(self) -> str:
        return f"{self.namespace}:retried"

    @property
    def ledger(self) -> str:
        return f"{self.namespace}:ledger"

    def processing(self, worker_id: str, slot: int) -> str:
        return f"{self.namespace}:processing:{worker_id}:{slot}"

    def heartbeat(self, worker_id: str) -> str:
        return f"{self.namespace}:heartbeat:{worker_id}"


@dataclass(frozen=True)
class Job:
    """One queued job: its id (no spaces), kind (lab.experiments.cron.work.KINDS), when queued."""

    job_id: str
    kind: str
    queued: int
    attempt: int = 1

    def payload(self) -> str:
        return f"{self.attempt} {self.job_id} {self.kind} {self.queued}"

    @classmethod
    def parse(cls, payload: str | bytes) -> Job:
        if isinstance(payload, bytes):
            payload = payload.decode()
        attempt, job_id, kind, queued = payload.split()
        return cls(job_id, kind, int(queued), int(attempt))


# -- connections -------------------------------------------------------------------
#: A server on this machine accepts in well under a millisecond; one that has not in
#: 2 s is not coming. Without it a connect to a dead host waits for the kernel (minutes).
CONNECT_TIMEOUT_S = 2.0
#: How much longer than its own blocking time a command may take before the client
#: gives up: a server that is up answers a BLMOVE at its timeout, not seconds later.
REPLY_SLACK_S = 5.0


def connect(url: str, blocking_s: float = 0.0) -> redis.Redis:
    """One connection of our own (a slot's BLMOVE holds it while it waits), every wait bounded."""
    import redis

    return redis.Redis.from_url(
        url,
        single_connection_client=True,
        socket_connect_timeout=CONNECT_TIMEOUT_S,
        socket_timeout=blocking_s + REPLY_SLACK_S,
    )


def connect_async(url: str, blocking_s: float = 0.0):
    """The same, for an event loop (redis.asyncio)."""
    import redis.asyncio

    return redis.asyncio.Redis.from_url(
        url,
        single_connection_client=True,
        socket_connect_timeout=CONNECT_TIMEOUT_S,
        socket_timeout=blocking_s + REPLY_SLACK_S,
    )


# -- producers ---------------------------------------------------------------------
def enqueue(conn: redis.Redis, keys: Keys, jobs: list[Job]) -> int:
    """Queue `jobs` in one LPUSH (one atomic command: a batch appears all at once)."""
    return conn.lpush(keys.queue, *(job.payload() for job in jobs)) if jobs else 0


def pending(conn: redis.Redis, keys: Keys) -> int:
    return conn.llen(keys.queue)


# -- a slot ------------------------------------------------------------------------
def fetch(
    conn: redis.Redis, keys: Keys, worker_id: str, slot: int, timeout: float = FETCH_TIMEOUT_S
) -> bytes | None:
    """The reliable fetch: block until a job moves from the queue into this slot's list."""
    return conn.blmove(keys.queue, keys.processing(worker_id, slot), timeout, "RIGHT", "LEFT")


def ack(conn: redis.Redis, keys: Keys, worker_id: str, slot: int, payload: bytes) -> bool:
    """The job is done: take it out of the slot's list. False if someone took it back first."""
    return conn.lrem(keys.processing(worker_id, slot), 1, payload) == 1


def give_back(conn: redis.Redis, keys: Keys, worker_id: str, slot: int) -> bytes | None:
    """A job taken but never started (quiet or stop came first): back to the queue, unchanged."""
    return conn.lmove(keys.processing(worker_id, slot), keys.queue, "RIGHT", "RIGHT")


# -- a worker's life -------------------------------------------------------------------
def beat(
    conn: redis.Redis, keys: Keys, worker_id: str, slots: int, ttl_s: float, info: dict[str, Any]
) -> None:
    """Refresh the heartbeat, then (re-)register: a recoverer that sees the registration
    always finds a live heartbeat while we beat (SET comes first, and never lapses)."""
    with conn.pipeline(transaction=True) as pipe:
        pipe.set(keys.heartbeat(worker_id), json.dumps(info), px=int(ttl_s * 1000))
        pipe.hset(keys.workers, worker_id, slots)
        pipe.execute()


def requeue(conn: redis.Redis, keys: Keys, worker_id: str, slot: int) -> int:
    """Push back whatever the slot holds, attempt + 1, reported in NS:retried."""
    return conn.eval(REQUEUE, 3, keys.processing(worker_id, slot), keys.queue, keys.retried)


def recover(conn: redis.Redis, keys: Keys, me: str) -> dict[str, int]:
    """Give the jobs of every dead worker (registered, heartbeat gone) back to the queue.

    Returns {dead worker id: jobs moved back}. Safe to run in many workers at
    once: the script moves each payload once, HDEL of a gone field is a no-op.
    """
    moved: dict[str, int] = {}
    for raw_id, raw_slots in conn.hgetall(keys.workers).items():
        worker_id = raw_id.decode()
        if worker_id == me or conn.exists(keys.heartbeat(worker_id)):
            continue
        moved[worker_id] = sum(requeue(conn, keys, worker_id, s) for s in range(int(raw_slots)))
        conn.hdel(keys.workers, worker_id)
    return moved


def retire(conn: redis.Redis, keys: Keys, worker_id: str) -> None:
    """A clean exit: deregister first, then drop the heartbeat (the reverse of `beat`)."""
    conn.hdel(keys.workers, worker_id)
    conn.delete(keys.heartbeat(worker_id))


def workers(conn: redis.Redis, keys: Keys) -> list[dict[str, Any]]:
    """What every live worker of the namespace last said in its heartbeat."""
    alive = []
    for raw_id in conn.hkeys(keys.workers):
        info = conn.get(keys.heartbeat(raw_id.decode()))
        if info is not None:
            alive.append({"id": raw_id.decode(), **json.loads(info)})
    return alive
