"""The GitHub Actions workflow cannot run here: this checks it holds the steps it must.

tests on every push and pull request (.ci/run); the same-job gate on pull
requests (`daemonlab bench ab` against the pull request's base, with the
history it needs and valgrind); the trend on main (github-action-benchmark,
never failing the build).
"""

from __future__ import annotations

import yaml

from tests.conftest import ROOT

WORKFLOW = ROOT / ".github" / "workflows" / "ci.yml"


def load() -> dict:
    doc = yaml.safe_load(WORKFLOW.read_text())
    doc["on"] = doc.pop(True, doc.get("on"))  # YAML 1.1 reads the key `on` as true
    return doc


def runs(job: dict) -> str:
    return "\n".join(step.get("run", "") for step in job["steps"])


def uses(job: dict, action: str) -> list[dict]:
    return [s for s in job["steps"] if s.get("uses", "").split("@")[0] == action]


def test_it_runs_on_pull_requests_and_on_pushes_to_main():
    triggers = load()["on"]
    assert "pull_request" in triggers
    assert triggers["push"]["branches"] == ["main"]


def test_the_tests_job_runs_the_ci_script():
    job = load()["jobs"]["tests"]
    assert "if" not in job  # every event
    assert uses(job, "actions/checkout") and uses(job, "actions/setup-python")
    assert "bash .ci/run" in runs(job)


def test_the_gate_runs_on_pull_requests_base_against_head_in_one_job():
    job = load()["jobs"]["gate"]
    assert job["if"] == "github.event_name == 'pull_request'"
    (checkout,) = uses(job, "actions/checkout")
    assert checkout["with"]["fetch-depth"] == 0  # the base's commit must be in the clone
    commands = runs(job)
    assert "valgrind" in commands  # the instruction counts
    assert 'daemonlab bench ab "origin/${{ github.base_ref }}"' in commands
    assert "mariadb" in job["services"]  # the benchmarks measure a real server
    assert not uses(job, "benchmark-action/github-action-benchmark")  # no saved baseline
    (kept,) = uses(job, "actions/upload-artifact")
    assert kept["if"] == "always()" and ".bench/results.json" in kept["with"]["path"]


def test_the_trend_is_kept_on_main_and_never_gates():
    job = load()["jobs"]["trend"]
    assert "refs/heads/main" in job["if"] and "push" in job["if"]
    (history,) = uses(job, "benchmark-action/github-action-benchmark")
    settings = history["with"]
    assert settings["tool"] == "pytest"
    assert settings["fail-on-alert"] is False
    assert settings["output-file-path"] in runs(job)
    assert f"--benchmark-json={settings['output-file-path']}" in runs(job)
    assert job["permissions"]["contents"] == "write"  # it pushes to gh-pages


def test_every_action_is_pinned_to_a_version():
    for name, job in load()["jobs"].items():
        for step in job["steps"]:
            if "uses" in step:
                assert "@v" in step["uses"], (name, step["uses"])
