"""The skip policy of tests/conftest.py: under CI=true nothing passes by not running.

A small suite of its own, run by a real pytest in a child process with only
conftest's two hooks: a test skipped in its body, a module skipped whole
(allow_module_level), pytest.xfail() and an xfail marker all fail under
CI=true, and all four are skips or xfails outside CI; a skip whose reason is
in ALLOWED_SKIPS stays a skip.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest

from tests.conftest import ROOT

HOOKS = "from tests.conftest import pytest_make_collect_report, pytest_runtest_makereport\n"
SUITE = {
    "test_body.py": "import pytest\n\ndef test_skips():\n    pytest.skip('no wrk here')\n",
    "test_module.py": (
        "import pytest\n\npytest.skip('no chromium here', allow_module_level=True)\n\n"
        "def test_never_runs():\n    pass\n"
    ),
    "test_xfail_call.py": "import pytest\n\ndef test_x():\n    pytest.xfail('known bug')\n",
    "test_xfail_mark.py": (
        "import pytest\n\n@pytest.mark.xfail(reason='flaky')\ndef test_x():\n    assert False\n"
    ),
    "test_allowed.py": "import pytest\n\ndef test_a():\n    pytest.skip('no Docker engine here')\n",
}


def outcomes(tmp_path, ci: bool) -> dict[str, int]:
    (tmp_path / "conftest.py").write_text(HOOKS)
    for name, text in SUITE.items():
        (tmp_path / name).write_text(text)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    env.pop("CI", None)
    if ci:
        env["CI"] = "true"
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-o", "addopts=",
         "--continue-on-collection-errors",
         "--rootdir", str(tmp_path), str(tmp_path)],
        capture_output=True, text=True, cwd=tmp_path, env=env, timeout=120,
    )  # fmt: skip
    last = done.stdout.strip().splitlines()[-1]
    return {word: int(n) for n, word in re.findall(r"(\d+) (\w+)", last)}


@pytest.mark.parametrize("ci", [False, True], ids=["outside-ci", "ci"])
def test_under_ci_a_skip_or_xfail_fails_unless_allowed(tmp_path, ci: bool) -> None:
    said = outcomes(tmp_path, ci)
    if ci:
        # body skip, xfail() and the xfail marker: 3 failures; the module skip: a collection
        # error (which, without --continue-on-collection-errors, stops the whole run);
        # the allowed reason stays a skip.
        assert said.get("skipped") == 1 and said.get("xfailed", 0) == 0, said
        assert said.get("failed", 0) + said.get("error", 0) + said.get("errors", 0) == 4, said
    else:
        assert said == {"skipped": 3, "xfailed": 2}, said
