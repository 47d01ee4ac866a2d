"""A gunicorn config file (`-c python:...`) that closes each connection at once.

Only for `--setup abrupt`: since 23.0 (benoitc/gunicorn#3590, RFC 9112 §9.6)
gunicorn's sync and gthread workers end every connection with
util.close_graceful: shutdown(SHUT_WR), then read until the client's FIN (up
to 2 s, 64 KiB). gunicorn has no setting to turn that off; this hook swaps
it for a plain close() in each worker after it boots, so the one wait can be
measured on gunicorn's side too (the lab's worker does it with `--setup
linger`). Not for production: a close with unread bytes answers with RST.
"""

from __future__ import annotations

from typing import Any

__all__ = ["post_worker_init"]


def _close_at_once(sock: Any, *args: Any, **kwargs: Any) -> None:
    sock.close()


def post_worker_init(worker: Any) -> None:
    """gunicorn's hook, run in each worker after it booted: the drain goes."""
    from gunicorn import util

    util.close_graceful = _close_at_once  # the workers look it up on `util` at each close
