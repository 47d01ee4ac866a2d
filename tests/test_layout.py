"""The shape every lesson keeps: one folder, a lesson with a reading map, and its four doors.

A learner opens lab/experiments/NAME/, reads __init__.py and follows its
reading map; the same experiment is reached from the CLI, the harness, a
benchmark and a notebook. These tests hold every experiment to that, so a
new one is born in the same shape.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

from lab import experiments

ROOT = Path(__file__).resolve().parent.parent
EXPERIMENTS = ROOT / "lab" / "experiments"
NAMES = experiments.names()


def lesson_docstring(name: str) -> str:
    source = (EXPERIMENTS / name / "__init__.py").read_text()
    return ast.get_docstring(ast.parse(source)) or ""


def test_every_experiment_is_a_folder_and_nothing_hides_behind_an_underscore():
    entries = [p for p in EXPERIMENTS.iterdir() if p.name not in ("__init__.py", "__pycache__")]
    assert all(p.is_dir() for p in entries), [p.name for p in entries if not p.is_dir()]
    hidden = [str(p.relative_to(EXPERIMENTS)) for p in EXPERIMENTS.rglob("_*.py")]
    hidden = [h for h in hidden if not h.endswith("__init__.py")]
    assert not hidden, f"parts a learner should read, hidden behind an underscore: {hidden}"


def test_every_experiment_is_in_the_talks_order():
    assert set(NAMES) <= set(experiments.ORDER), set(NAMES) - set(experiments.ORDER)
    # names() sorts by ORDER, so its order proves nothing: the folders and the README's
    # lessons table are what ORDER must match (every folder once, the rows in its order).
    folders = {p.name for p in EXPERIMENTS.iterdir() if (p / "__init__.py").exists()}
    assert folders == set(experiments.ORDER), folders ^ set(experiments.ORDER)
    table = (ROOT / "README.md").read_text().split("<!-- lessons:", 1)[1].split("\n\n", 1)[0]
    rows = [line.split("|")[1].strip() for line in table.splitlines()[3:]]
    assert rows == list(experiments.ORDER), rows


@pytest.mark.parametrize("name", NAMES)
def test_the_lesson_keeps_the_contract(name):
    module = experiments.load(name)
    assert not experiments.check(module), f"{name} lacks {experiments.check(module)}"
    assert module.NAME == name
    module.Params()  # the quick defaults are valid
    for text, overrides in module.TOUR:
        assert text.strip()
        if overrides is not None:
            module.Params(**{**overrides})  # every tour stop's params are valid


@pytest.mark.parametrize("name", NAMES)
def test_the_lessons_reading_map_names_every_part_and_only_real_ones(name):
    doc = lesson_docstring(name)
    assert "Reading map" in doc, f"{name}/__init__.py's docstring has no reading map"
    map_text = doc[doc.index("Reading map") :]
    # A bare file name is one of this folder's parts; a path (lab/daemon/steps.py) is not.
    named = set(re.findall(r"(?<![/\w])([a-z_]+\.py)\b", map_text))
    parts = {p.name for p in (EXPERIMENTS / name).glob("*.py")} - {"__init__.py"}
    assert parts <= named, f"parts the map does not name: {sorted(parts - named)}"
    assert named <= parts, f"the map names files that are not there: {sorted(named - parts)}"


@pytest.mark.parametrize("name", NAMES)
def test_measuring_code_never_imports_drawing_code(name):
    for path in (EXPERIMENTS / name).glob("*.py"):
        if path.name == "plot.py":
            continue
        tree = ast.parse(path.read_text())
        imported = {
            alias.name
            for node in ast.walk(tree)
            if isinstance(node, ast.Import)
            for alias in node.names
        } | {(node.module or "") for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)}
        drawing = {m for m in imported if m.startswith("matplotlib") or m.endswith(".plot")}
        assert not drawing, f"{path.relative_to(ROOT)} imports {drawing}"


@pytest.mark.parametrize("name", NAMES)
def test_every_lesson_has_its_plot_notebook_benchmark_and_page(name):
    assert (EXPERIMENTS / name / "plot.py").exists()
    number = experiments.ORDER.index(name) + 1
    assert (ROOT / "notebooks" / f"{number:02d}_{name}.ipynb").exists()
    assert (ROOT / "benchmarks" / f"test_{name}.py").exists()
    assert (ROOT / "tests" / f"test_{name}.py").exists()
    assert (ROOT / "docs" / f"{name}.md").exists()
    assert f"docs/{name}.md" in (ROOT / "README.md").read_text(), "the README's table row"


def test_notebooks_are_named_after_experiments_and_numbered_in_order():
    for path in (ROOT / "notebooks").glob("*.ipynb"):
        number, _, name = path.stem.partition("_")
        assert name in experiments.ORDER, f"{path.name}: not named after an experiment"
        assert int(number) == experiments.ORDER.index(name) + 1, f"{path.name}: out of order"


def test_the_project_cites_no_file_outside_itself():
    """Primary sources, with links; never the team's own notes outside the repository."""
    import subprocess

    files = subprocess.run(
        ["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout.split()
    notes = "REFER" + "ENCES"  # spelled apart, so this test does not find itself
    citing = [
        f
        for f in files
        if Path(f).suffix in (".py", ".md", ".ipynb", ".toml", ".yml", ".yaml", "")
        and (ROOT / f).is_file()
        and re.search(notes + r"(?! runs\()", (ROOT / f).read_text(errors="replace"))
    ]
    assert not citing, citing


def lessons_imported(path: Path) -> set[str]:
    """The lessons a module imports, however spelled (`from lab.experiments import cron` too)."""
    modules = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            modules |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            assert not node.level, f"{path.name}: a relative import (the lab spells them in full)"
            modules |= {f"{node.module}.{alias.name}" for alias in node.names}
    named = {m.split(".")[2] for m in modules if m.startswith("lab.experiments.")}
    return named & set(experiments.ORDER)


#: The lesson's front door past its docstring: at most this many lines of code (blank
#: and comment lines not counted) besides its tables (COLUMNS, *_COLUMNS) and its tour's
#: prose (TOUR), which are the lesson itself: worker's four tables and six stops are 103.
FRONT_DOOR_LINES = 120


def _lines_of_code(lines: list[str]) -> int:
    return sum(1 for line in lines if line.strip() and not line.strip().startswith("#"))


@pytest.mark.parametrize("name", NAMES)
def test_the_front_door_is_the_contract_and_its_plumbing_lives_in_plan_py(name):
    """__init__.py holds the lesson (Params, COLUMNS, TOUR) and a run() that hands over
    to plan.py: no private function or class, and short enough to read at one sitting."""
    source = (EXPERIMENTS / name / "__init__.py").read_text()
    tree, lines = ast.parse(source), source.splitlines()
    defined = [n for n in tree.body if isinstance(n, ast.FunctionDef | ast.ClassDef)]
    private = [n.name for n in defined if n.name.startswith("_")]
    assert not private, f"{name}/__init__.py keeps plumbing: {private} (plan.py holds it)"
    assert (EXPERIMENTS / name / "plan.py").exists()
    tables = [
        n for n in tree.body
        if isinstance(n, ast.Assign) and any(
            isinstance(t, ast.Name) and (t.id in ("COLUMNS", "TOUR") or t.id.endswith("_COLUMNS"))
            for t in n.targets
        )
    ]  # fmt: skip
    code = _lines_of_code(lines[tree.body[0].end_lineno :]) - sum(
        _lines_of_code(lines[n.lineno - 1 : n.end_lineno]) for n in tables
    )
    assert code <= FRONT_DOOR_LINES, f"{name}/__init__.py: {code} lines of code"


@pytest.mark.parametrize("name", NAMES)
def test_a_lesson_never_imports_another_lesson(name):
    """What two lessons share lives under lab/, so a reader of one is never sent into another."""
    crossing = {
        f"{path.relative_to(ROOT)} imports lab.experiments.{other}"
        for path in (EXPERIMENTS / name).glob("*.py")
        for other in lessons_imported(path) - {name}
    }
    assert not crossing, sorted(crossing)


def test_every_file_of_the_lab_the_project_names_exists():
    """A comment or a page that sends a reader to a file of lab/ sends them somewhere real."""
    import subprocess

    files = subprocess.run(
        ["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout.split()
    named = {
        (path, f)
        for f in files
        if Path(f).suffix in (".py", ".md", ".ipynb", ".toml") and (ROOT / f).is_file()
        # lower case only: lab/experiments/NAME/plot.py is a pattern, not a file
        for path in re.findall(r"(?<![\w/.-])(lab/[a-z0-9_/]+\.py)\b", (ROOT / f).read_text())
    }
    missing = sorted(f"{f} names {path}" for path, f in named if not (ROOT / path).exists())
    assert not missing, missing
