"""``tito autograde --jobs N`` at class scale: workers, the executor seam, the gradebook.

One toy course (tests/fixtures/modules/99_toy) with a class of generated submissions (correct,
partial, empty, broken) is graded by one worker, by two, in-process through a custom executor
and from the command line; the results must agree, every student must be graded exactly once by
exactly one worker, and the gradebook must pass its integrity check (and fail it when broken).
"""

from __future__ import annotations

import json
import pickle
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

from tito import cli
from tito.errors import CheckFailed
from tito.grade import (
    autograde,
    build_context,
    check_gradebook,
    format_table,
    limits_from_config,
    summary,
    table,
)
from tito.modules import load_module
from tito.project import Project
from tito.release import release_module
from tito.samples import samples
from tito.source import parse_source
from tito.workers import BatchGrader, Limits, batches_for, inline

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[1]
TOY = REPO / "tests" / "fixtures" / "modules" / "99_toy"
CONFIG = REPO / "nbgrader_config.py"
KINDS = ["reference", "partial", "untouched", "reference", "partial", "badjson", "crash"]
EXPECTED = {"reference": 3.0, "partial": 1.0, "untouched": 0.0}


def make_class(project: Project, n: int) -> dict[str, str]:
    """``n`` students cycling through KINDS; returns student -> kind."""
    sub = project.course_dir / "submitted"
    out = {}
    for i in range(n):
        kind = KINDS[i % len(KINDS)]
        student = f"s{i:02d}"
        dest = sub / student / "99_toy"
        dest.mkdir(parents=True)
        if kind == "badjson":
            (dest / "toy.ipynb").write_text("{not json")
        elif kind == "crash":
            nb = json.loads((sub / "reference" / "99_toy" / "toy.ipynb").read_text())
            for cell in nb["cells"]:
                if cell["metadata"].get("nbgrader", {}).get("grade_id") == "clip_impl":
                    cell["source"] = "import os\nos._exit(7)"
            (dest / "toy.ipynb").write_text(json.dumps(nb))
        else:
            shutil.copy(sub / kind / "99_toy" / "toy.ipynb", dest / "toy.ipynb")
        out[student] = kind
    for sample in ("reference", "partial", "untouched"):
        shutil.rmtree(sub / sample)
    return out


@pytest.fixture(scope="module")
def course(tmp_path_factory):
    root = tmp_path_factory.mktemp("scale") / "proj"
    (root / "modules").mkdir(parents=True)
    shutil.copytree(TOY, root / "modules" / "99_toy")
    project = Project.at(root, nbgrader_config=CONFIG)
    spec = load_module(project.modules_dir / "99_toy")
    release_module(parse_source(spec), project)
    samples(spec, project)
    kinds = make_class(project, 21)
    one = autograde(spec, project, jobs=1)
    two_stats: dict = {}
    two = autograde(spec, project, jobs=2, stats=two_stats)
    return SimpleNamespace(
        project=project, spec=spec, kinds=kinds, one=one, two=two, stats=two_stats
    )


def outcome(results):
    return {
        r.student: (r.graded, [(s.grade_id, s.score) for s in r.scores], r.reason) for r in results
    }


def test_every_kind_of_submission_gets_its_outcome(course):
    for r in course.two:
        kind = course.kinds[r.student]
        if kind in EXPECTED:
            assert r.graded and r.score == EXPECTED[kind] and r.max_score == 3, r
            assert r.remarks == []
        elif kind == "badjson":
            assert not r.graded and r.reason.startswith("notebook is not valid JSON")
        else:
            assert not r.graded
            assert r.reason == "the grading process died (exit code 7) while running cell clip_impl"


def test_two_workers_grade_exactly_like_one(course):
    assert outcome(course.one) == outcome(course.two)
    assert [r.student for r in course.two] == sorted(course.kinds)


def test_each_student_once_by_one_worker_in_disjoint_sets(course):
    workers = {}
    for r in course.two:
        assert r.worker and r.worker.startswith("pid ")
        workers.setdefault(r.worker, []).append(r.student)
    assert len(workers) == 2  # both workers graded someone
    graded = [s for students in workers.values() for s in students]
    assert sorted(graded) == sorted(course.kinds)  # each exactly once
    assert len({r.worker for r in course.one}) == 1
    batches = batches_for(sorted(course.kinds), 2)
    flat = [s for b in batches for s in b]
    assert sorted(flat) == sorted(course.kinds) and len(flat) == len(set(flat))


def test_gradebook_passes_its_integrity_check_and_catches_damage(course):
    project, spec = course.project, course.spec
    assert check_gradebook(spec, project, course.two) == []
    db = project.course_dir / "gradebook.db"
    backup = db.read_bytes()
    con = sqlite3.connect(db)
    with con:
        con.execute(
            "UPDATE grade SET auto_score = 99 WHERE id IN (SELECT grade.id FROM grade"
            " JOIN submitted_notebook ON grade.notebook_id = submitted_notebook.id"
            " JOIN submitted_assignment ON submitted_notebook.assignment_id ="
            " submitted_assignment.id WHERE submitted_assignment.student_id = 's00')"
        )
    con.close()
    try:
        problems = check_gradebook(spec, project, course.two)
        assert len(problems) == 1 and problems[0].startswith("s00: gradebook {")
    finally:
        db.write_bytes(backup)


def test_parent_timing_breakdown(course):
    stats = course.stats
    assert set(stats) == {"context", "waiting", "writing", "checking", "total"}
    assert all(v >= 0 for v in stats.values())
    assert stats["total"] >= stats["writing"] + stats["checking"]


def test_custom_executor_seam(course):
    """Any callable mapping the batch grader over batches will do (a Dask cluster later)."""
    seen = []

    def recording(fn, batches):
        assert isinstance(fn, BatchGrader)
        pickle.loads(pickle.dumps(fn))  # must travel to remote workers
        for batch in batches:
            seen.append(list(batch))
            results = fn(batch)
            yield pickle.loads(pickle.dumps(results))  # plain data: mergeable anywhere

    students = ["s00", "s01", "s02", "s05"]
    results = autograde(course.spec, course.project, students, jobs=2, executor=recording)
    flat = [s for b in seen for s in b]
    assert sorted(flat) == students and len(flat) == len(set(flat))
    assert outcome(results) == {k: v for k, v in outcome(course.two).items() if k in students}


def test_executor_returning_a_student_twice_is_refused(course):
    def twice(fn, batches):
        for batch in batches:
            yield fn(batch) * 2

    with pytest.raises(CheckFailed, match="twice or unasked"):
        autograde(course.spec, course.project, ["s00"], executor=twice)
    autograde(course.spec, course.project, ["s00"], executor=inline)  # leave it graded


class Boom(BatchGrader):
    def __call__(self, students):
        raise RuntimeError("worker exploded")


def test_a_failed_worker_batch_is_reported_not_lost(course, monkeypatch):
    import tito.grade as grade_mod

    monkeypatch.setattr(grade_mod, "BatchGrader", Boom)
    results = autograde(course.spec, course.project, ["s03", "s04"], jobs=2)
    assert [(r.student, r.graded) for r in results] == [("s03", False), ("s04", False)]
    assert all(r.reason == "grading worker failed: RuntimeError: worker exploded" for r in results)
    monkeypatch.undo()
    again = autograde(course.spec, course.project, ["s03", "s04"], jobs=2)
    assert [r.score for r in again] == [3.0, 1.0]


def test_cli_progress_and_summary(course, capsys):
    args = ["--root", str(course.project.root), "--nbgrader-config", str(CONFIG)]
    rc = cli.main([*args, "autograde", "toy", "--jobs", "2", "--notebook-timeout", "60"])
    out, err = capsys.readouterr()
    assert rc == 1  # some submissions could not be graded
    lines = out.splitlines()
    head = next(ln for ln in lines if ln.startswith("99_toy: graded "))
    assert head.startswith("99_toy: graded 15 of 21 submissions in ")
    assert "(2 workers); per notebook: median " in head
    assert "could not be graded (6):" in lines
    assert "  s05: notebook is not valid JSON: Expecting property name enclosed in double" in out
    assert "tito: error: 6 of 21 submissions could not be graded" in err
    autograde(course.spec, course.project, ["s00", "s01"], progress=True)
    err = capsys.readouterr().err
    assert "autograde 99_toy" in err and "2/2" in err


def test_summary_text():
    from tito.results import CellScore, StudentResult

    rs = [
        StudentResult("m", "a", True, scores=[CellScore("c", 1, 1)], seconds=0.5),
        StudentResult("m", "b", False, reason="notebook is not valid JSON: x", seconds=0.1),
        StudentResult("m", "c", True, scores=[CellScore("c", 0, 1)], seconds=0.3, notes=["n"]),
    ]
    for r in rs[::2]:
        r.course_notes = ["given cell g: refused starting a thread"]
    assert summary(rs, 2.0, 2).splitlines() == [
        "m: graded 2 of 3 submissions in 2.0 s (2 workers); per notebook: median 0.30 s, "
        "max 0.50 s",
        "could not be graded (1):",
        "  b: notebook is not valid JSON: x",
        "refused in the course's own cells (not the students' doing):",
        "  given cell g: refused starting a thread (2 notebooks)",
        "graded with notes (1; see tito grades): c",
    ]


def test_limits_come_from_the_config_and_the_command_line(course, tmp_path):
    cfg = tmp_path / "nbgrader_config.py"
    cfg.write_text(
        CONFIG.read_text()
        + "\nc.Execute.timeout = 3\nc.TitoAutograde.notebook_timeout = 7\n"
        + "c.TitoAutograde.memory_mb = 512\n"
    )
    project = Project.at(course.project.root, nbgrader_config=cfg)
    assert limits_from_config(project) == Limits(3.0, 7.0, 512)
    assert limits_from_config(project, memory_mb=100, cell_timeout=None) == Limits(3.0, 7.0, 100)
    ctx = build_context(course.spec, project, limits_from_config(project))
    assert ctx.policy.memory_mb == 512 and ctx.policy.cell_timeout == 3.0
    assert ctx.policy.blocked_modules == ("tinytorch.toy",)
    assert "math" in ctx.preload


def test_grades_table_after_the_class(course):
    lines = format_table(table(course.spec, course.project)).splitlines()
    rows = {ln.split()[0]: " ".join(ln.split()[1:]) for ln in lines[1:] if ln.strip()}
    assert rows["s00"] == "1/1 2/2 3/3"
    assert rows["s02"] == "0/1 0/2 0/3"
    assert rows["s05"].startswith("could not be graded: notebook is not valid JSON")
    assert rows["s06"] == (
        "could not be graded: the grading process died (exit code 7) while running cell clip_impl"
    )


def test_bench_quick_runs_and_writes_valid_json(tmp_path):
    out = tmp_path / "bench.json"
    res = subprocess.run(
        [sys.executable, str(REPO / "bench" / "autograde.py"), "--quick", "--json", str(out)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert res.returncode == 0, res.stdout + res.stderr
    data = json.loads(out.read_text())
    assert data["bench"] == "autograde" and data["quick"] is True
    results = data["results"]
    assert results["submissions"] == 8
    assert results["same_scores"] is True
    for key in ("plain_nbgrader", "tito_jobs_1", "tito_jobs_2", "tito_jobs_4"):
        assert results[key]["seconds"] > 0
    assert {t["name"] for t in data["targets"]} >= {
        "tito --jobs 2 vs sequential plain nbgrader",
        "tito --jobs 4 vs sequential plain nbgrader",
    }
    assert "plain nbgrader (sequential)" in res.stdout and "Targets" in res.stdout
