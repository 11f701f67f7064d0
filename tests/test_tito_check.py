"""``tito check``: the student's table of exercises, on a released notebook of the toy module.

The course is built once (release + samples with the real nbgrader); each test then checks a
copy of a student notebook in a directory with no course files around it.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

from tito import cli
from tito.check import FAILING, NOT_STARTED, PASSING, check_notebook, format_report, plan
from tito.modules import load_module
from tito.project import Project
from tito.release import release_module
from tito.samples import samples
from tito.source import parse_source

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[1]
TOY = REPO / "tests" / "fixtures" / "modules" / "99_toy"


@pytest.fixture(scope="module")
def course(tmp_path_factory):
    root = tmp_path_factory.mktemp("course")
    (root / "modules").mkdir()
    shutil.copytree(TOY, root / "modules" / "99_toy")
    project = Project.at(root, nbgrader_config=REPO / "nbgrader_config.py")
    spec = load_module(project.modules_dir / "99_toy")
    release_module(parse_source(spec), project)
    samples(spec, project)
    return project


def student_copy(course: Project, sample: str, dest: Path) -> Path:
    """A sample notebook alone in a fresh directory (what a student has)."""
    if sample == "release":
        src = course.step_dir("release", "99_toy") / "toy.ipynb"
    else:
        src = course.step_dir("submitted", "99_toy", sample) / "toy.ipynb"
    dest.mkdir(parents=True, exist_ok=True)
    shutil.copy(src, dest / "toy.ipynb")
    return dest / "toy.ipynb"


def test_plan_numbers_exercises_and_maps_checks(course):
    nb = nbformat.read(course.step_dir("release", "99_toy") / "toy.ipynb", as_version=4)
    exercises, rows = plan(nb)
    assert [(e.number, e.grade_id, e.stub_left) for e in exercises] == [
        (1, "add_impl", True),
        (2, "clip_impl", True),
    ]
    assert [(r.grade_id, r.points, [e.number for e in r.exercises]) for r in rows] == [
        ("check_add", 1.0, [1]),
        ("check_clip", 2.0, [2]),
    ]


def test_released_notebook_is_all_not_started(course, tmp_path):
    path = student_copy(course, "release", tmp_path / "student")
    before = path.read_bytes()
    report = check_notebook(path)
    assert [r.status for r in report.rows] == [NOT_STARTED, NOT_STARTED]
    assert report.rows[0].message == "write exercise 1, `add_impl`"
    assert not report.ok and report.points == (0.0, 3.0)
    assert path.read_bytes() == before  # the student's file is not touched
    text = format_report(report)
    assert "0 passing, 0 failing, 2 not started: 0/3 points" in text


def test_reference_passes_partial_and_wrong_fail_with_the_message(course, tmp_path):
    ref = check_notebook(student_copy(course, "reference", tmp_path / "ref"))
    assert [r.status for r in ref.rows] == [PASSING, PASSING] and ref.ok
    part = check_notebook(student_copy(course, "partial", tmp_path / "part"))
    assert [r.status for r in part.rows] == [PASSING, NOT_STARTED]
    # a wrong solution: the visible assert's failure comes back as the row's message
    path = student_copy(course, "reference", tmp_path / "wrong")
    nb = json.loads(path.read_text())
    for cell in nb["cells"]:
        if cell["metadata"].get("nbgrader", {}).get("grade_id") == "clip_impl":
            cell["source"] = (
                cell["source"] if isinstance(cell["source"], str) else "".join(cell["source"])
            )
            cell["source"] = cell["source"].replace("min(max(x, lo), hi)", "max(x, lo)")
    path.write_text(json.dumps(nb))
    wrong = check_notebook(path)
    assert [r.status for r in wrong.rows] == [PASSING, FAILING]
    assert wrong.rows[1].message.startswith("AssertionError")


def test_cli_check_on_a_student_notebook_without_course_files(course, tmp_path):
    """A student's directory holds only the notebook; tito check finds it by module name."""
    home = tmp_path / "home"
    student_copy(course, "partial", home)
    proc = subprocess.run(
        [sys.executable, "-m", "tito", "check", "toy"],
        cwd=home,
        capture_output=True,
        text=True,
        timeout=300,
        env={**__import__("os").environ, "TITO_ROOT": str(home)},
    )
    assert proc.returncode == 1, proc.stderr  # one exercise left: not all passing
    assert "check_add" in proc.stdout and "passing" in proc.stdout
    assert "not started" in proc.stdout and "exercise 2, `clip_impl`" in proc.stdout


def test_cli_check_reports_a_missing_notebook(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    code = cli.main(["--root", str(tmp_path), "check", "toy"])
    assert code == 2
    assert "no notebook for module 'toy'" in capsys.readouterr().err


def test_a_cell_calling_an_unwritten_exercise_names_it(course, tmp_path):
    """A demo cell that calls an exercise still holding its stub: the report says which."""
    path = student_copy(course, "release", tmp_path / "demo")
    nb = nbformat.read(path, as_version=4)
    at = next(
        i
        for i, c in enumerate(nb.cells)
        if c.get("metadata", {}).get("nbgrader", {}).get("grade_id") == "add_impl"
    )
    nb.cells.insert(at + 1, nbformat.v4.new_code_cell("print(add(2, 3))"))
    nbformat.write(nb, path)
    report = check_notebook(path)
    assert (at + 2, "NotImplementedError: calls exercise 1, `add_impl` (not written)") in (
        report.other_errors
    )
    text = format_report(report)
    assert "exercise 1, `add_impl` is not written yet; these cells call it:" in text
    assert f"  cell {at + 2} (print(add(2, 3)))" in text.splitlines()


def test_autograde_ends_by_naming_grades_and_feedback(course, capsys):
    args = ["--root", str(course.root), "--nbgrader-config", str(REPO / "nbgrader_config.py")]
    code = cli.main([*args, "autograde", "99_toy", "--student", "reference", "--no-progress"])
    out = capsys.readouterr().out
    assert code == 0, out
    assert out.rstrip().splitlines()[-1] == (
        "next: tito grades 99_toy (the gradebook), tito feedback 99_toy (a page each)"
    )
