"""What every broker link shares: a broker's errors said in one line, and names by run prefix.

A broker can go away mid-run (stopped, restarted, our connection closed
server-side). Each client library says so with its own exceptions; `gone`
turns the ones that mean "the connection is lost" into PeerGone with one
line naming the broker, so the run fails with that line and keeps the
records it finished. Everything else is a bug and keeps its traceback.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from lab.experiments.ipc.wire import PeerGone

__all__ = ["gone"]


@contextmanager
def gone(what: str, *errors: type[BaseException]) -> Iterator[None]:
    """Within the block, `errors` become PeerGone("WHAT went away mid-run: ...")."""
    try:
        yield
    except errors as exc:
        detail = str(exc) or type(exc).__name__
        raise PeerGone(f"{what} went away mid-run: {detail}") from None
