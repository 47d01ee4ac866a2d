"""How long the whole fork checklist takes: fifteen facts, each forking real processes.

The measured phase is the checklist's run as a user starts it (the child
interpreter, every fact, fact 12 against the lab's MySQL server). Most facts
take milliseconds; the floor is set on purpose by fact 5's lock timeout and
fact 12's read timeout (a stolen answer waited for), plus two interpreter
starts for facts 6 and 7. Every fact must hold: a skipped one is not a pass
(no server: the mysql_server fixture skips, or fails under LAB_REQUIRE_DB=1).
"""

from __future__ import annotations

from lab.experiments import fork


def test_whole_checklist(benchmark, mysql_server) -> None:
    run = benchmark.pedantic(fork.run, args=(fork.Params(),), rounds=3, iterations=1)
    assert run.status == "ok"
    assert [r["number"] for r in run.records] == list(fork.ALL_FACTS)
    assert all(r["holds"] is True for r in run.records), run.records
    benchmark.extra_info.update({f"fact_{r['number']}_s": r["seconds"] for r in run.records})


def test_checklist_without_the_database(benchmark) -> None:
    """The fourteen facts that need nothing but the kernel."""
    facts = tuple(n for n in fork.ALL_FACTS if n != fork.MYSQL_FACT)
    run = benchmark.pedantic(fork.run, args=(fork.Params(fact=facts),), rounds=5, iterations=1)
    assert [r["number"] for r in run.records] == list(facts)
    assert all(r["holds"] is True for r in run.records), run.records
