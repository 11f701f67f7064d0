"""tito end to end on the toy module with the real tools: jupytext, nbclient, nbgrader.

One course is built per test module (validate, release, samples, autograde of the samples
plus broken and hostile submissions, feedback) and the tests inspect it.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import nbformat
import pytest

from tito import cli
from tito.build import build
from tito.errors import CheckFailed
from tito.feedback import feedback, visible_text
from tito.grade import (
    CellScore,
    StudentResult,
    autograde,
    format_table,
    load_status,
    table,
)
from tito.modules import load_module
from tito.project import Project
from tito.release import leaks_in_release, release_module
from tito.samples import samples
from tito.source import parse_source
from tito.validate import validate_module

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[1]
TOY = REPO / "tests" / "fixtures" / "modules" / "99_toy"
CONFIG = REPO / "nbgrader_config.py"
SRC = "modules/99_toy/toy_dev.py"
HIDDEN = (
    'assert add(-7, 7) == 0, "hidden: add must handle negatives"',
    'assert clip(math.pi, 0, 10) == math.pi, "hidden: values inside stay put"',
)
SOLUTION = ("total = a + b", "bounded = min(max(x, lo), hi)")


def make_project(root: Path) -> Project:
    (root / "modules").mkdir(parents=True)
    shutil.copytree(TOY, root / "modules" / "99_toy")
    return Project.at(root, nbgrader_config=CONFIG)


def edit(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    assert old in text
    path.write_text(text.replace(old, new, 1))


def submit(project: Project, student: str, fill: dict[str, str], drop=()) -> Path:
    """A submission: the released notebook with some cells replaced and some deleted."""
    nb = nbformat.read(project.course_dir / "release" / "99_toy" / "toy.ipynb", as_version=4)
    nb.cells = [c for c in nb.cells if c.get("id") not in drop]
    for cell in nb.cells:
        gid = cell.metadata.get("nbgrader", {}).get("grade_id")
        if gid in fill:
            cell.source = fill[gid]
    dest = project.course_dir / "submitted" / student / "99_toy"
    dest.mkdir(parents=True)
    nbformat.write(nb, dest / "toy.ipynb")
    return dest / "toy.ipynb"


@pytest.fixture(scope="module")
def course(tmp_path_factory):
    project = make_project(tmp_path_factory.mktemp("toy") / "proj")
    spec = load_module(project.modules_dir / "99_toy")
    src = parse_source(spec)
    t = {}
    start = time.perf_counter()
    first = build([spec], project)[0].read_bytes()
    second = build([spec], project)[0].read_bytes()
    t["build x2"] = time.perf_counter() - start
    start = time.perf_counter()
    validated = validate_module(src, project)
    t["validate"] = time.perf_counter() - start
    start = time.perf_counter()
    released = release_module(src, project)
    t["release"] = time.perf_counter() - start
    sample_paths = samples(spec, project)
    # broken and hostile submissions next to the three samples
    bad = project.course_dir / "submitted" / "badjson" / "99_toy"
    bad.mkdir(parents=True)
    (bad / "toy.ipynb").write_text('{"cells": [')
    (project.course_dir / "submitted" / "nonotebook" / "99_toy").mkdir(parents=True)
    submit(project, "crasher", {"add_impl": "import os\nos._exit(3)"})
    submit(
        project,
        "sneaky",  # passes the visible check of add, fails its hidden one
        {
            "add_impl": "def add(a, b):\n    return abs(a) + b",
            "clip_impl": "def clip(x, lo, hi):\n    return min(max(x, lo), hi)",
        },
    )
    add = "def add(a, b):\n    return a + b"
    clip = "def clip(x, lo, hi):\n    return min(max(x, lo), hi)"
    submit(project, "deleter", {"add_impl": add, "clip_impl": clip}, drop={"check_clip"})
    submit(project, "tamperer", {"check_add": "pass", "check_clip": "pass"})
    start = time.perf_counter()
    results = {r.student: r for r in autograde(spec, project)}
    t["autograde (9 students)"] = time.perf_counter() - start
    start = time.perf_counter()
    fb = feedback(spec, project)
    t["feedback"] = time.perf_counter() - start
    print("\ntoy course timings: " + ", ".join(f"{k} {v:.1f}s" for k, v in t.items()))
    return SimpleNamespace(
        project=project,
        spec=spec,
        src=src,
        builds=(first, second),
        validated=validated,
        released=released.notebook,
        samples=sample_paths,
        results=results,
        feedback=fb,
    )


def test_build_is_byte_identical(course):
    first, second = course.builds
    assert first == second
    again = build([course.spec], course.project)[0].read_bytes()
    assert again == first
    ids = [c["id"] for c in json.loads(first)["cells"]]
    assert [i for i in ids if "_" in i] == ["add_impl", "check_add", "clip_impl", "check_clip"]
    assert all(i.startswith(("ma-", "co-")) for i in ids if "_" not in i)


def test_validate_runs_every_code_cell(course):
    assert course.validated.cells_run == 5


@pytest.mark.parametrize(
    ("broken", "message"),
    [
        ("total = a - b", "AssertionError"),  # fails a visible check
        ("total = abs(a) + b", "AssertionError: hidden: add must handle negatives"),  # hidden
    ],
)
def test_validate_fails_on_broken_solution(tmp_path, monkeypatch, capsys, broken, message):
    project = make_project(tmp_path / "proj")
    monkeypatch.chdir(project.root)
    edit(project.root / SRC, "total = a + b", broken)
    rc = cli.main(["--root", str(project.root), "--nbgrader-config", str(CONFIG), "validate"])
    err = capsys.readouterr().err
    assert rc == 1
    assert err.count("\n") == 1
    assert err.startswith(f"tito: error: {SRC}:40: cell 6 'check_add': validate failed: {message}")


def test_release_holds_no_solution_hidden_or_delimiter(course):
    raw = course.released.read_text()
    for text in ("BEGIN SOLUTION", "END SOLUTION", "HIDDEN TESTS", *HIDDEN, *SOLUTION):
        assert text not in raw
    nb = nbformat.reads(raw, as_version=4)
    stubs = [c for c in nb.cells if "raise NotImplementedError()" in c.source]
    assert [c.metadata.nbgrader.grade_id for c in stubs] == ["add_impl", "clip_impl"]
    check = next(c for c in nb.cells if c.get("id") == "check_add")
    assert "assert add(1, 2) == 3" in check.source and check.metadata.nbgrader.locked
    assert leaks_in_release(course.src, course.released) == []


def test_samples_are_generated_from_the_source(course):
    ref = nbformat.read(course.samples["reference"], as_version=4)
    partial = nbformat.read(course.samples["partial"], as_version=4)
    by_id = {c.get("id"): c.source for c in ref.cells}
    assert (
        by_id["add_impl"]
        == 'def add(a, b):\n    """Return a + b."""\n    total = a + b\n    return total'
    )
    part = {c.get("id"): c.source for c in partial.cells}
    assert "total = a + b" in part["add_impl"]
    assert "raise NotImplementedError()" in part["clip_impl"]


def test_sample_scores_full_zero_between(course):
    r = course.results
    assert (r["reference"].score, r["reference"].max_score) == (3, 3)
    assert r["untouched"].graded and r["untouched"].score == 0
    assert [(s.grade_id, s.score) for s in r["partial"].scores] == [
        ("check_add", 1),
        ("check_clip", 0),
    ]
    assert [(s.grade_id, s.score) for s in r["sneaky"].scores] == [
        ("check_add", 0),
        ("check_clip", 2),
    ]


def test_deleted_grade_cell_is_restored_and_graded(course):
    """OverwriteCells.add_missing_cells: deleting a check does not dodge it."""
    deleter = course.results["deleter"]
    assert [(s.grade_id, s.score) for s in deleter.scores] == [("check_add", 1), ("check_clip", 2)]
    assert any("Missing grade cell check_clip" in w for w in deleter.warnings)


def test_tampered_checks_are_overwritten(course):
    tamperer = course.results["tamperer"]
    assert tamperer.graded and tamperer.score == 0
    assert any("check_add" in w and "changed" in w for w in tamperer.warnings)


def test_autograde_surfaces_the_real_error(course):
    crasher = course.results["crasher"]
    assert not crasher.graded
    assert crasher.reason == "the grading process died (exit code 3) while running cell add_impl"
    assert crasher.reason in (course.project.root / crasher.log).read_text()
    assert not (course.project.course_dir / "autograded" / "crasher" / "99_toy").exists()


def test_grades_tell_ungradable_from_zero(course, capsys):
    status = load_status(course.project)["99_toy"]
    assert status["untouched"].pop("seconds") > 0
    assert status["untouched"] == {
        "status": "graded",
        "score": 0.0,
        "max_score": 3.0,
        "log": "course/logs/autograde/99_toy/untouched.log",
    }
    assert status["badjson"]["status"] == "ungradable"
    assert status["badjson"]["reason"].startswith("notebook is not valid JSON: Expecting value")
    assert status["nonotebook"]["reason"] == (
        "missing notebook course/submitted/nonotebook/99_toy/toy.ipynb"
    )
    text = format_table(table(course.spec, course.project)).splitlines()
    rows = {line.split()[0]: line for line in text[2:]}
    assert rows["untouched"].split()[1:] == ["0/1", "0/2", "0/3"]
    assert rows["partial"].split()[1:] == ["1/1", "0/2", "1/3"]
    assert "could not be graded: notebook is not valid JSON" in rows["badjson"]
    assert "could not be graded: missing notebook" in rows["nonotebook"]
    assert "could not be graded: the grading process died" in rows["crasher"]
    csv_path = course.project.root / "grades.csv"
    rc = cli.main(
        ["--root", str(course.project.root), "--nbgrader-config", str(CONFIG)]
        + ["grades", "toy", "--csv", str(csv_path)]
    )
    out = capsys.readouterr().out
    assert rc == 0 and "could not be graded" in out
    lines = csv_path.read_text().splitlines()
    assert "99_toy,untouched,graded,total,0.0,3.0," in lines
    assert any(
        line.startswith("99_toy,badjson,ungradable,total,,3.0,notebook is not valid")
        for line in lines
    )


def test_feedback_has_no_hidden_text(course):
    files = {p.parts[-3]: p for p in course.feedback.files}
    assert sorted(files) == [
        "deleter",
        "partial",
        "reference",
        "sneaky",
        "tamperer",
        "untouched",
    ]
    for path in files.values():
        text = visible_text(path.read_text())
        assert "assert add(1, 2) == 3" in text  # the visible check is shown
        for line in HIDDEN:
            assert line not in text
        assert "HIDDEN TESTS" not in text
    # sneaky failed a hidden check: the traceback is there, its hidden lines are not
    sneaky = visible_text(files["sneaky"].read_text())
    assert "AssertionError" in sneaky and "line of a hidden check removed" in sneaky


def test_feedback_leak_is_caught_without_the_scrubbing(course, tmp_path):
    """nbgrader's default feedback shows hidden checks; tito must refuse it."""
    root = tmp_path / "copy"
    shutil.copytree(course.project.root, root)
    leaky = tmp_path / "leaky_config.py"
    leaky.write_text(
        CONFIG.read_text()
        + "\nc.GenerateFeedback.preprocessors = [GetGrades, CSSHTMLHeaderPreprocessor]\n"
    )
    project = Project.at(root, nbgrader_config=leaky)
    with pytest.raises(CheckFailed, match=r"feedback leaks hidden checks .*hidden check of cell 6"):
        feedback(course.spec, project)
    assert not list((root / "course" / "feedback").glob("*/99_toy/toy.html"))


def test_course_requires_samples_to_bracket_the_points():
    from tito.course import sample_failures

    def result(student, *scores):
        cells = [CellScore(f"c{i}", s, 1.0) for i, s in enumerate(scores)]
        return StudentResult("99_toy", student, True, scores=cells)

    good = {
        "reference": result("reference", 1, 1),
        "untouched": result("untouched", 0, 0),
        "partial": result("partial", 1, 0),
    }
    assert sample_failures(good) == []
    bad = dict(good, partial=result("partial", 0, 0), untouched=result("untouched", 0, 1))
    assert sample_failures(bad) == [
        "untouched scored 1, not 0 (points from: c1)",
        "partial scored 0/2, not strictly between",
    ]
    assert sample_failures(dict(good, reference=result("reference", 1, 0)))[0].startswith(
        "reference scored 1/2, not full marks (lost: c1)"
    )
    ungraded = dict(good, partial=StudentResult("99_toy", "partial", False, reason="boom"))
    assert sample_failures(ungraded) == ["sample partial could not be graded: boom"]


def test_tito_course_console_script(tmp_path):
    exe = Path(sys.executable).parent / "tito"
    if not exe.exists():
        pytest.skip("tito console script not installed (pip install -e .)")
    project = make_project(tmp_path / "proj")
    args = [str(exe), "--root", str(project.root), "--nbgrader-config", str(CONFIG)]
    assert subprocess.run([*args, "export"], capture_output=True).returncode == 0
    start = time.perf_counter()
    res = subprocess.run([*args, "course"], capture_output=True, text=True, cwd=project.root)
    seconds = time.perf_counter() - start
    assert res.returncode == 0, res.stdout + res.stderr
    summary = res.stdout.splitlines()[-1]
    assert summary.startswith(
        "99_toy: OK (reference 3/3, untouched 0/3, partial 1/3,"
        " 3 feedback files without hidden text"
    ), res.stdout
    print(f"\ntito course on the toy: {seconds:.1f}s")
