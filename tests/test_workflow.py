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


def test_the_tests_run_under_every_python_the_lab_supports_and_a_free_threaded_one():
    """3.11 to 3.14 must pass; the free-threaded build runs and may fail (for now)."""
    job = load()["jobs"]["tests"]
    matrix = job["strategy"]["matrix"]
    assert job["strategy"]["fail-fast"] is False  # one Python's failure hides no other's
    assert matrix["python"] == ["3.11", "3.12", "3.13", "3.14"]
    free = [row for row in matrix["include"] if row["python"].endswith("t")]
    assert [row["python"] for row in free] == ["3.14t"] and free[0]["experimental"] is True
    assert matrix["experimental"] == [False]
    assert job["continue-on-error"] == "${{ matrix.experimental }}"
    (setup,) = uses(job, "actions/setup-python")
    # setup-python 5.5.0 is the first that installs a free-threaded build ("3.14t").
    assert tuple(map(int, setup["uses"].split("@v")[1].split("."))) >= (5, 5, 0)
    versions = setup["with"]["python-version"].strip().splitlines()
    assert versions[-1] == "${{ matrix.python }}", "python3 must be the matrix's Python"
    assert {"3.11", "3.12", "3.13"} <= set(versions)  # for the tests that compare them
    assert "LAB_CI_NEWER=none" in runs(job)  # each Python runs whole; no subset on top


def test_the_classifiers_name_the_pythons_the_matrix_tests():
    import tomllib

    classifiers = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["classifiers"]
    named = {c.rsplit(" :: ", 1)[1] for c in classifiers if c.count(" :: ") == 2 and "3." in c}
    matrix = load()["jobs"]["tests"]["strategy"]["matrix"]
    assert named == set(matrix["python"])
    assert any(
        c.startswith("Programming Language :: Python :: Free Threading") for c in classifiers
    )


def test_ci_run_fails_when_the_newer_pythons_run_fails():
    """.ci/run's second run (a newer Python, a subset) is not allowed to fail quietly."""
    script = (ROOT / ".ci" / "run").read_text()
    assert "set -euo pipefail" in script.splitlines()[:10]
    block = script[script.index("# -- newer interpreters") : script.index("# Last, so that")]
    (command,) = [line for line in block.splitlines() if "-m pytest" in line]
    assert '".venv-$newer/bin/python" -m pytest -n 4 "${NEWER_TESTS[@]}"' in command
    assert "||" not in command and "|" not in command.split("pytest", 1)[1]
    listed = block[block.index("NEWER_TESTS=(") : block.index(")", block.index("NEWER_TESTS=("))]
    files = listed.removeprefix("NEWER_TESTS=(").split()
    assert files and all((ROOT / f).is_file() for f in files), files


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


def test_ci_runs_the_readme_test_command_as_written():
    """The README's step 2 is what CI runs for the suite, options and all (-n 4 too)."""
    readme = (ROOT / "README.md").read_text()
    step = readme.index("# 2. run the whole test suite")
    block = readme[step : readme.index("```", step)]
    (command,) = [line for line in block.splitlines() if "-m pytest" in line]
    script = (ROOT / ".ci" / "run").read_text()
    last = script[script.index("# Last, so that") :]
    assert f"{command} || tests_rc=$?" in last, (command, last)
