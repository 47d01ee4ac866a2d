"""The slide: a Sidekiq-style worker. Take a job from a Redis list with BRPOP, run it, repeat.

    python -m lab.experiments.worker.slide jobs          # then: redis-cli LPUSH jobs 2
    redis-cli LRANGE jobs:done 0 -1

A job here is a number of seconds to sleep. Redis: LAB_REDIS_URL, or 127.0.0.1:6379.

What goes wrong with it: BRPOP takes the job out of Redis the moment it is
fetched, so a worker killed mid-job (kill -9, the OOM killer, a reboot) has
lost it: it is neither in the queue nor done (Sidekiq's basic fetch). And it
runs one job at a time, and stops mid-job on TERM. queue.py fixes the loss
(BLMOVE into a processing list of the slot's own, heartbeats, recovery by
the next worker), slot.py runs and acks a job, threads.py, processes.py
and tasks.py run many at once, and daemon.py lets TERM finish the jobs in
hand within a deadline, the rest going back to the queue (stop.py measures it).
"""

import os
import sys
import time

import redis


def main() -> None:
    queue = sys.argv[1] if len(sys.argv) > 1 else "jobs"
    r = redis.Redis.from_url(os.environ.get("LAB_REDIS_URL", "redis://127.0.0.1:6379/0"))
    print(f"worker {os.getpid()} waiting on {queue}", flush=True)
    while True:
        _, job = r.brpop([queue])  # the job leaves Redis here, before it runs
        print(f"took {job.decode()}", flush=True)
        time.sleep(float(job))  # the job
        r.lpush(f"{queue}:done", job)


if __name__ == "__main__":
    main()
