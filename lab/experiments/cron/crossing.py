"""Where a daemon starts to pay off: the cost of one job against the job rate, two ways.

Per job, at `rate` jobs per second:

    cron:    cpu  = C                  (every tick pays the interpreter, imports, connect)
             mem  = M                  (its peak RSS for its lifetime, MB*s)
    daemon:  cpu  = c + I / rate       (its job's own CPU, plus its idle CPU shared out)
             mem  = R / rate           (what it holds resident, shared out over the jobs)

C, M, c, I and R are the experiment's own measurements: C and M from the
cron ticks at the lowest rate measured (a tick alone, not queued behind
others on a busy machine), I the daemon's CPU per second with nothing to do
(idle), c its CPU per job with I taken out (median over rates), R its
resident memory. The lines cross at

    cpu:     rate = I / (C - c)        below it cron costs less CPU; above, the daemon
    memory:  rate = R / M              below it cron holds less memory; above, the daemon

A daemon that never wakes when idle (I = 0: blocked in sigwaitinfo, or in a
BLPOP without timeout) is cheaper in CPU at any rate; what it costs is the
memory it holds. Measured rates are a few per second; the lines are
extended down to a job a day, which no measurement here waits for: the
model is what the plot draws, the measured points sit on it.
"""

from __future__ import annotations

import statistics
from typing import Any

__all__ = ["Costs", "costs", "crossings"]


class Costs:
    """The five measured constants, and the cost per job they give at any rate."""

    def __init__(
        self,
        cron_cpu_ms: float,
        cron_mb_s: float,
        job_cpu_ms: float,
        idle_cpu_ms_per_s: float,
        rss_mb: float,
    ) -> None:
        self.cron_cpu_ms, self.cron_mb_s = cron_cpu_ms, cron_mb_s
        self.job_cpu_ms, self.idle_cpu_ms_per_s, self.rss_mb = job_cpu_ms, idle_cpu_ms_per_s, rss_mb

    def daemon_cpu_ms(self, rate: float) -> float:
        return self.job_cpu_ms + self.idle_cpu_ms_per_s / rate

    def daemon_mb_s(self, rate: float) -> float:
        return self.rss_mb / rate

    @property
    def cpu_cross_per_s(self) -> float | None:
        """The rate above which the daemon costs less CPU per job; 0 if it always does."""
        saved = self.cron_cpu_ms - self.job_cpu_ms
        if saved <= 0:
            return None  # a daemon job costing more than a whole cron tick: never
        return self.idle_cpu_ms_per_s / saved

    @property
    def memory_cross_per_s(self) -> float | None:
        return self.rss_mb / self.cron_mb_s if self.cron_mb_s > 0 else None


def costs(records: list[dict[str, Any]], strategy: str) -> Costs | None:
    """The constants for one daemon strategy against cron, from a run's records."""
    ticks = [r for r in records if r.get("part") == "ticks"]
    cron = [r for r in ticks if r["strategy"] == "cron"]
    daemon = [r for r in ticks if r["strategy"] == strategy]
    idle = [r for r in records if r.get("part") == "idle" and r["strategy"] == strategy]
    if not cron or not daemon or not idle:
        return None
    i = idle[0]["idle_cpu_ms_per_s"]
    own = [max(r["cpu_ms_per_job"] - i / r["rate"], 0.0) for r in daemon]
    alone = min(cron, key=lambda r: r["rate"])
    return Costs(
        alone["cpu_ms_per_job"], alone["mb_s_per_job"], statistics.median(own), i, idle[0]["rss_mb"]
    )


def crossings(records: list[dict[str, Any]], strategies: list[str]) -> list[dict[str, Any]]:
    """One record per daemon strategy: the constants and where its lines cross cron's."""
    out = []
    for strategy in strategies:
        found = costs(records, strategy)
        if found is None:
            continue
        cpu, memory = found.cpu_cross_per_s, found.memory_cross_per_s
        out.append(
            {
                "part": "crossing",
                "strategy": strategy,
                "cron_cpu_ms": round(found.cron_cpu_ms, 3),
                "job_cpu_ms": round(found.job_cpu_ms, 4),
                "idle_cpu_ms_per_s": found.idle_cpu_ms_per_s,
                "cpu_cross_per_h": None if cpu is None else round(cpu * 3600, 3),
                "cron_mb_s": round(found.cron_mb_s, 3),
                "rss_mb": found.rss_mb,
                "memory_cross_per_s": None if memory is None else round(memory, 2),
            }
        )
    return out
