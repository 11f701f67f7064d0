"""``tito autograde`` and ``tito grades``.

Grading one student is one function, ``grade_student(spec, student, project)``, which takes
and returns plain picklable data and writes only that student's files. ``autograde`` loops
over students and records each outcome in ``course/autograded_status.json`` (atomically),
which is how ``tito grades`` tells "scored zero" from "could not be graded, because ...".
A worker pool (``--jobs``), a per-notebook wall-time cap or sandboxing plug in around
``grade_student`` without touching the rest.
"""

from __future__ import annotations

import csv
import io
import json
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from . import _io, nbg
from .errors import TitoError, one_line
from .modules import ModuleSpec
from .project import Project

GRADED, UNGRADABLE = "graded", "ungradable"


@dataclass
class CellScore:
    grade_id: str
    score: float
    max_score: float


@dataclass
class StudentResult:
    module_id: str
    student: str
    graded: bool
    reason: str | None = None  # why it could not be graded (graded=False)
    scores: list[CellScore] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)  # nbgrader's, e.g. "cell X changed"
    log: str | None = None  # nbgrader log, relative to the project root
    seconds: float = 0.0

    @property
    def score(self) -> float:
        return sum(s.score for s in self.scores)

    @property
    def max_score(self) -> float:
        return sum(s.max_score for s in self.scores)

    def status_entry(self) -> dict:
        entry = {
            "status": GRADED if self.graded else UNGRADABLE,
            "log": self.log,
            "seconds": round(self.seconds, 1),
        }
        if self.graded:
            entry.update(score=self.score, max_score=self.max_score)
        else:
            entry["reason"] = self.reason
        return entry


def submission_path(spec: ModuleSpec, project: Project, student: str) -> Path:
    return project.step_dir("submitted", spec.id, student) / spec.notebook_name


def discover_students(spec: ModuleSpec, project: Project) -> list[str]:
    """Students with a ``course/submitted/<student>/<id>/`` directory."""
    root = project.course_dir / "submitted"
    if not root.is_dir():
        return []
    return sorted(d.name for d in root.iterdir() if (d / spec.id).is_dir())


def check_submission(spec: ModuleSpec, project: Project, student: str) -> str | None:
    """Why the submission cannot be graded (missing, not JSON, not a notebook), else None."""
    import nbformat

    path = submission_path(spec, project, student)
    if not path.parent.is_dir():
        return f"missing notebook: no directory {project.rel(path.parent)}"
    if not path.exists():
        others = sorted(p.name for p in path.parent.glob("*.ipynb"))
        found = f" (found {', '.join(others)})" if others else ""
        return f"missing notebook {project.rel(path)}{found}"
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError as exc:
        return f"notebook is not UTF-8 text: {exc.reason}"
    except json.JSONDecodeError as exc:
        return f"notebook is not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}"
    try:
        nb = nbformat.from_dict(data)
        if not isinstance(data, dict) or "cells" not in data:
            raise ValueError("no 'cells' list")
        nbformat.validate(nbformat.convert(nb, 4) if nb.get("nbformat", 4) != 4 else nb)
    except Exception as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        return f"not a valid Jupyter notebook: {first}"
    return None


def grade_student(spec: ModuleSpec, student: str, project: Project) -> StudentResult:
    """Autograde ``student``'s submission of ``spec`` with nbgrader and read back the scores."""
    start = time.perf_counter()
    problem = check_submission(spec, project, student)
    if problem:
        forget(spec, project, student)
        return StudentResult(spec.id, student, False, reason=problem, seconds=_since(start))
    res = nbg.run(
        "Autograde",
        project,
        assignment_id=spec.id,
        student_id=student,
        notebook_id=spec.name,
        log_name=f"autograde/{spec.id}/{student}.log",
        create_student=True,
    )
    log = project.rel(res.log_path)
    if not res.success:
        forget(spec, project, student)
        return StudentResult(
            spec.id,
            student,
            False,
            reason=f"nbgrader autograde failed: {res.error}",
            warnings=res.warnings,
            log=log,
            seconds=_since(start),
        )
    scores = read_scores(spec, project, student)
    if scores is None:
        return StudentResult(
            spec.id,
            student,
            False,
            reason="nbgrader recorded no grades",
            log=log,
            seconds=_since(start),
        )
    return StudentResult(
        spec.id, student, True, scores=scores, warnings=res.warnings, log=log, seconds=_since(start)
    )


def _since(start: float) -> float:
    return round(time.perf_counter() - start, 3)


def read_scores(spec: ModuleSpec, project: Project, student: str) -> list[CellScore] | None:
    from nbgrader.api import MissingEntry

    with nbg.gradebook(project) as gb:
        try:
            nb = gb.find_submission_notebook(spec.name, spec.id, student)
        except MissingEntry:
            return None
        scores = [CellScore(g.name, float(g.score), float(g.max_score)) for g in nb.grades]
        order = {c.name: i for i, c in enumerate(nb.notebook.grade_cells)}
    return sorted(scores, key=lambda s: (order.get(s.grade_id, len(order)), s.grade_id))


def forget(spec: ModuleSpec, project: Project, student: str) -> None:
    """Drop an earlier grading of this submission (gradebook entry, autograded copy, feedback)
    so a stale result can never pass for the current one."""
    from nbgrader.api import MissingEntry

    for step in ("autograded", "feedback"):
        path = project.step_dir(step, spec.id, student)
        _io.remove_tree(path)
        if path.parent.is_dir() and not any(path.parent.iterdir()):
            path.parent.rmdir()
    if not nbg.gradebook_exists(project):
        return
    with nbg.gradebook(project) as gb:
        try:
            gb.remove_submission(spec.id, student)
        except MissingEntry:
            pass


def load_status(project: Project) -> dict:
    try:
        return json.loads(project.status_file.read_text(encoding="utf-8"))
    except (FileNotFoundError, json.JSONDecodeError):
        return {}


def record_status(project: Project, results: Sequence[StudentResult]) -> None:
    status = load_status(project)
    for r in results:
        status.setdefault(r.module_id, {})[r.student] = r.status_entry()
    _io.write_json(project.status_file, status)


def autograde(
    spec: ModuleSpec, project: Project, students: Sequence[str] | None = None
) -> list[StudentResult]:
    """Grade every (or the named) student's submission of ``spec``; record each outcome."""
    from nbgrader.api import MissingEntry

    not_released = TitoError(f"{spec.id} is not released yet (run tito release {spec.id})")
    if not nbg.gradebook_exists(project):
        raise not_released
    with nbg.gradebook(project) as gb:
        try:
            gb.find_notebook(spec.name, spec.id)
        except MissingEntry:
            raise not_released from None
    students = list(students or discover_students(spec, project))
    if not students:
        raise TitoError(
            f"no submissions of {spec.id} under {project.rel(project.course_dir)}/submitted/*/"
        )
    results = []
    for student in students:
        result = grade_student(spec, student, project)
        record_status(project, [result])
        results.append(result)
    return results


def describe(result: StudentResult) -> str:
    if result.graded:
        return f"{result.student}: {result.score:g}/{result.max_score:g}"
    return f"{result.student}: could not be graded: {result.reason}"


# ---- the gradebook table -----------------------------------------------------------------
@dataclass
class Row:
    student: str
    graded: bool
    scores: dict[str, CellScore]
    reason: str | None = None

    @property
    def score(self) -> float:
        return sum(s.score for s in self.scores.values())

    @property
    def max_score(self) -> float:
        return sum(s.max_score for s in self.scores.values())


@dataclass
class Table:
    spec: ModuleSpec
    grade_ids: list[str]
    points: dict[str, float]
    rows: list[Row]

    def row(self, student: str) -> Row | None:
        return next((r for r in self.rows if r.student == student), None)


def table(spec: ModuleSpec, project: Project) -> Table:
    """Per-cell scores per student from the gradebook, with the status file's verdicts."""
    from nbgrader.api import MissingEntry

    from .source import parse_source

    src = parse_source(spec)
    grade_ids = [c.grade_id for c in src.grade_cells]
    points = {c.grade_id: c.points for c in src.grade_cells}
    status = load_status(project).get(spec.id, {})
    rows = []
    if not nbg.gradebook_exists(project):
        for student in sorted(status):
            reason = status[student].get("reason") or "no gradebook (course/gradebook.db) yet"
            rows.append(Row(student, False, {}, reason))
        return Table(spec, grade_ids, points, rows)
    students = set(status)
    with nbg.gradebook(project) as gb:
        try:
            students |= {s.student.id for s in gb.find_assignment(spec.id).submissions}
        except MissingEntry:
            pass
        for student in sorted(students):
            entry = status.get(student, {})
            if entry.get("status") == UNGRADABLE:
                rows.append(Row(student, False, {}, entry.get("reason") or "unknown reason"))
                continue
            try:
                nb = gb.find_submission_notebook(spec.name, spec.id, student)
            except MissingEntry:
                rows.append(Row(student, False, {}, "no grades in the gradebook"))
                continue
            scores = {
                g.name: CellScore(g.name, float(g.score), float(g.max_score)) for g in nb.grades
            }
            rows.append(Row(student, True, scores))
    return Table(spec, grade_ids, points, rows)


def _grid(rows: list[list[str]]) -> list[str]:
    """Rows of cells, first column left-aligned, the rest right-aligned."""
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return [
        "  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths)))
        for r in rows
    ]


def format_table(t: Table, width: int = 100) -> str:
    """Students as rows and cells as columns; transposed (cells as rows) when that is
    narrower and the first layout exceeds ``width``. Ungradable submissions get a line
    saying why."""
    total = sum(t.points.values())
    graded = [r for r in t.rows if r.graded]
    title = f"{t.spec.id}: {t.spec.title} ({total:g} points)"
    wide = _grid(
        [["student", *t.grade_ids, "total"]]
        + [
            [r.student, *(_frac(r.scores.get(g)) for g in t.grade_ids), f"{r.score:g}/{total:g}"]
            for r in graded
        ]
    )
    tall = _grid(
        [["cell", "points", *(r.student for r in graded)]]
        + [[g, f"{t.points[g]:g}", *(_num(r.scores.get(g)) for r in graded)] for g in t.grade_ids]
        + [["total", f"{total:g}", *(f"{r.score:g}" for r in graded)]]
    )
    grid = wide
    if max(map(len, wide)) > width and max(map(len, tall)) < max(map(len, wide)):
        grid = tall
    lines = [title, *(grid if graded else [])]
    name_width = max([len(r.student) for r in t.rows] + [7])
    for r in t.rows:
        if not r.graded:
            lines.append(
                f"{r.student.ljust(name_width)}  could not be graded: {one_line(r.reason)}"
            )
    if not t.rows:
        lines.append("(no submissions graded)")
    return "\n".join(lines)


def _num(score: CellScore | None) -> str:
    return "-" if score is None else f"{score.score:g}"


def _frac(score: CellScore | None) -> str:
    return "-" if score is None else f"{score.score:g}/{score.max_score:g}"


def write_csv(path: Path, tables: Sequence[Table]) -> None:
    """Long format: one row per (module, student, cell) plus a 'total' row per student."""
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["module", "student", "status", "cell", "score", "max_score", "reason"])
    for t in tables:
        for r in t.rows:
            if r.graded:
                for g in t.grade_ids:
                    s = r.scores.get(g)
                    w.writerow(
                        [t.spec.id, r.student, GRADED, g, s.score if s else "", t.points[g], ""]
                    )
                w.writerow(
                    [t.spec.id, r.student, GRADED, "total", r.score, sum(t.points.values()), ""]
                )
            else:
                w.writerow(
                    [
                        t.spec.id,
                        r.student,
                        UNGRADABLE,
                        "total",
                        "",
                        sum(t.points.values()),
                        r.reason,
                    ]
                )
    _io.write_text(path, buf.getvalue())
