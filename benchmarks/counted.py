"""The lab's CPU-bound work, counted in instructions by the regression gate.

`daemonlab bench ab` calls each function here once per side, at the small
size given, under valgrind's callgrind, counting only inside the call
(lab/bench/counts.py). Only deterministic pure-Python work belongs here: a
count that depends on the clock, the scheduler or a server would not repeat.

    name: (module, function, arguments)
"""

from __future__ import annotations

COUNTED = {
    # What benchmarks/test_cpu.py's sequential strategy times: the lesson's countdown.
    "cpu.countdown": ("lab.experiments.cpu.scaling", "countdown", [300_000]),
    # What every front door does first: command-line text checked into an experiment's params.
    "params.sleep": ("benchmarks.counted", "parse_sleep_params", [200]),
}


def parse_sleep_params(times: int) -> None:
    """sleep's options as the command line gives them, parsed and checked `times` times."""
    from lab import params
    from lab.experiments import sleep

    given = {"clients": "1,2,4,8,16,32,64", "seconds": "0.5", "strategy": "threads,fork,asyncio"}
    for _ in range(times):
        params.from_mapping(sleep.Params, given)
