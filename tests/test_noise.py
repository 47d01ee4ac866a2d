"""lab.noise: the warnings a run carries when its figures could be noise."""

from __future__ import annotations

from lab import noise


def test_a_spread_larger_than_the_difference_warns_once() -> None:
    apart = (noise.Figure("threads", 1.0, 0.95, 1.05), noise.Figure("processes", 0.5, 0.48, 0.6))
    env: dict = {}
    assert noise.compare(env, "2 workers", *apart) is None and env == {}
    close = (noise.Figure("threads", 1.0, 0.7, 1.3), noise.Figure("processes", 0.9, 0.85, 0.95))
    said = noise.compare(env, "2 workers", *close)
    noise.compare(env, "2 workers", *close)
    assert env["warnings"] == [said]
    assert "threads 0.7-1.3 s and processes 0.85-0.95 s" in said and "cannot tell" in said
