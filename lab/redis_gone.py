"""Redis going away mid-run, said in one line: what the cron and worker lessons share.

Both lessons keep their jobs' ledger in Redis (lab/work.py). When Redis
stops answering mid-run, two things can surface: redis-py's own
ConnectionError or TimeoutError, or a LabError from a child process that
gave up first (rq's worker exits when its Redis goes, a cron tick fails to
connect) whose line would blame the child. `one_line()` turns both into
the one line that names the cause; the records finished before it are
stored already (lab.runs.collect). Any other LabError keeps its own line.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from lab import services
from lab.errors import LabError

__all__ = ["gone", "one_line"]


def gone(why: object) -> LabError:
    """The one line for Redis gone mid-run (what finished is stored already)."""
    host, port = services.address("redis")
    return LabError(f"Redis at {host}:{port} stopped answering mid-run: {why}")


@contextmanager
def one_line() -> Iterator[None]:
    """Within the block, Redis gone (however it surfaces) is `gone(...)`."""
    import redis

    try:
        yield
    except (redis.ConnectionError, redis.TimeoutError) as exc:
        raise gone(exc) from None
    except LabError:
        if not services.reachable("redis"):  # a child failed because Redis went: say that
            raise gone("connection refused") from None
        raise
