"""``tito autograde`` and ``tito grades``: grading at class scale, against hostile submissions.

The parent process (this module) owns the course directory: it builds one ``GradingContext``
(the trusted notebook from the release and the gradebook, the limits, the sandbox policy), maps
``BatchGrader(ctx)`` over disjoint batches of students with an executor (default: ``--jobs``
long-lived worker processes, tito/workers.py), and *alone* writes what comes back: the
gradebook (one SQLite writer, no concurrent-writer problem), the autograded notebooks, the logs
and ``course/autograded_status.json`` -- which is how ``tito grades`` tells "scored zero" from
"could not be graded, because ...". After the run the gradebook is checked for integrity.

Why grading is trustworthy (trusted cells only, the guard, the limits): docs/grading.md.
"""

from __future__ import annotations

import csv
import io
import json
import os
import shutil
import sqlite3
import statistics
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from . import _io, judging, nbg, sandbox, trust
from .errors import CheckFailed, TitoError, one_line
from .modules import ModuleSpec
from .project import Project
from .results import GRADED, UNGRADABLE, CellScore, StudentResult
from .workers import (
    BatchGrader,
    Executor,
    GradingContext,
    Limits,
    batches_for,
    infrastructure_failure,
    local_pool,
)

__all__ = [
    "GRADED",
    "UNGRADABLE",
    "CellScore",
    "StudentResult",
    "Limits",
    "autograde",
    "grade_student",
    "build_context",
    "check_gradebook",
    "summary",
    "table",
    "format_table",
    "write_csv",
]


def submission_path(spec: ModuleSpec, project: Project, student: str) -> Path:
    return project.step_dir("submitted", spec.id, student) / spec.notebook_name


def discover_students(spec: ModuleSpec, project: Project) -> list[str]:
    """Students with a ``course/submitted/<student>/<id>/`` directory."""
    root = project.course_dir / "submitted"
    if not root.is_dir():
        return []
    return sorted(d.name for d in root.iterdir() if (d / spec.id).is_dir())


# ---- what the workers get ----------------------------------------------------------------------
def limits_from_config(project: Project, **overrides) -> Limits:
    """Limits from nbgrader_config.py (``c.Execute.timeout``, ``c.TitoAutograde.*``), then any
    non-None keyword override."""
    cfg = nbg.load_config(project)
    base = Limits()
    values = {
        "cell_timeout": float(cfg.Execute.get("timeout", base.cell_timeout) or base.cell_timeout),
        "notebook_timeout": float(cfg.TitoAutograde.get("notebook_timeout", base.notebook_timeout)),
        "memory_mb": int(cfg.TitoAutograde.get("memory_mb", base.memory_mb)),
        "work_mb": int(cfg.TitoAutograde.get("work_mb", base.work_mb)),
    }
    values.update({k: v for k, v in overrides.items() if v is not None})
    return Limits(**values)


def build_context(
    spec: ModuleSpec, project: Project, limits: Limits | None = None, sandboxed: bool = True
) -> GradingContext:
    """The trusted notebook (release order, gradebook sources and points), what the trusted cells
    import, and the sandbox policy for ``spec``."""
    from nbgrader.api import MissingEntry

    from .release import release_notebook_path

    release_path = release_notebook_path(spec, project)
    try:
        release = json.loads(release_path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise TitoError(f"{spec.id} is not released yet (run tito release {spec.id})") from None
    with nbg.gradebook(project) as gb:
        try:
            nb = gb.find_notebook(spec.name, spec.id)
        except MissingEntry:
            raise TitoError(f"{spec.id} is not released yet (run tito release {spec.id})") from None
        stored = {
            c.name: {
                "source": c.source,
                "checksum": c.checksum,
                "locked": bool(c.locked),
                "cell_type": c.cell_type,
            }
            for c in nb.source_cells
        }
        points = {c.name: float(c.max_score) for c in nb.grade_cells}
    instructor = []
    source_nb = project.step_dir("source", spec.id) / spec.notebook_name
    if source_nb.exists():
        data = json.loads(source_nb.read_text(encoding="utf-8"))
        instructor = [
            trust.cell_source(c)
            for c in data.get("cells", [])
            if trust.nbgrader_meta(c).get("solution")
        ]
    trusted = trust.build_trusted(spec.id, spec.name, release, stored, points, instructor)
    package = project.package_dir.name
    blocked = f"{package}.{spec.name}"
    preload: set[str] = set()
    aliases: set[str] = set()
    for c in trusted.cells:
        if c.kind in (trust.GIVEN, trust.GRADE, trust.LOCKED):
            preload |= trust.imported_modules(c.source)
            aliases |= _import_aliases(c.source)
    if any(m == "numpy" or m.startswith("numpy.") for m in preload):
        preload.add("numpy.testing")
    preload = {m for m in preload if m != blocked and not m.startswith(blocked + ".")}
    deny_files, deny_dirs = _denied(spec, project)
    limits = limits or limits_from_config(project)
    cfg = nbg.load_config(project)
    # what grading processes import (issue 15): a student build in which the graded module is a
    # stub (default), a prebuilt one (a path to its package directory), or, with False, the
    # project's package with the graded module's file stubbed by the boundary
    site = _student_site(spec, project, cfg.TitoAutograde.get("student_build", True))
    policy = sandbox.Policy(
        module_id=spec.id,
        blocked_modules=(blocked,),
        deny_read=frozenset(deny_files),
        deny_dirs=frozenset(deny_dirs),
        memory_mb=int(limits.memory_mb),
        cell_timeout=float(limits.cell_timeout),
        cpu_seconds=int(limits.notebook_timeout) + 30,
        processes=64 if sandboxed else 0,
        open_files=1024 if sandboxed else 0,
    )
    return GradingContext(
        project=project,
        module_id=spec.id,
        notebook_name=spec.notebook_name,
        notebook=trusted,
        policy=policy,
        limits=limits,
        preload=tuple(sorted(preload)),
        package=package,
        package_dir=str(Path(site) / package if site else project.package_dir),
        module_aliases=tuple(sorted(aliases)),
        student_site=site,
        sandboxed=sandboxed,
        work_mb=int(limits.work_mb),
        hidden_modules=tuple(str(m) for m in (cfg.TitoAutograde.get("hidden_modules") or ())),
        judge_source=_judge_source(spec, trusted),
        judge_file=project.rel(judging.judge_file(spec.dir)),
    )


def _judge_source(spec: ModuleSpec, trusted: trust.TrustedNotebook) -> str | None:
    """The module's judge file (read here, in the parent; workers get the text), checked against
    the gradebook: a grade cell whose hidden part runs a probe must have a judge."""
    path = judging.judge_file(spec.dir)
    if not path.is_file():
        return None
    source = path.read_text(encoding="utf-8")
    judges = judging.load_source(source, str(path))
    probed = {c.grade_id for c in trusted.grade_cells if "tito.probe" in c.source}
    missing = sorted(probed - judges.checks)
    if missing:
        raise TitoError(f"{path} has no judge for grade cell(s) {', '.join(missing)}")
    return source


def _student_site(spec: ModuleSpec, project: Project, setting: object) -> str | None:
    """The directory (put first on ``sys.path``) whose ``tinytorch`` the workers grade with:
    ``c.TitoAutograde.student_build`` True (default) builds one for this module
    (tito/student_build.py), a path names a prebuilt student build's package directory, False
    grades with the project's package (None)."""
    if setting is False or setting is None:
        return None
    if isinstance(setting, str | Path):
        pkg = Path(setting)
        if not pkg.is_dir():
            raise TitoError(f"c.TitoAutograde.student_build = {str(setting)!r} is not a directory")
        if pkg.name != project.package_dir.name:
            raise TitoError(
                f"c.TitoAutograde.student_build = {str(setting)!r} must be a student build's "
                f"{project.package_dir.name}/ package directory"
            )
        return str(pkg.resolve().parent)
    if setting is not True:
        raise TitoError(
            "c.TitoAutograde.student_build must be True, False or a path, "
            f"got {type(setting).__name__} {setting!r}"
        )
    from .student_build import student_site

    return str(student_site(project, spec.id))


def _import_aliases(source: str) -> set[str]:
    import ast

    try:
        tree = ast.parse(source)
    except SyntaxError:
        return set()
    out = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out |= {a.asname or a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            out |= {a.asname or a.name for a in node.names if a.name != "*"}
    return out


def _denied(spec: ModuleSpec, project: Project) -> tuple[set, set]:
    """(files, directories) the grading process may not open, as (st_dev, st_ino): the course
    (gradebook with hidden checks, instructor notebooks, other students), the module sources,
    the repository's history, and the package file that *is* the reference solution."""
    import importlib.util

    files: set[tuple[int, int]] = set()
    dirs: set[tuple[int, int]] = set()

    def key(path) -> tuple[int, int] | None:
        try:
            st = os.stat(path)
        except OSError:
            return None
        return (st.st_dev, st.st_ino)

    def tree(root: Path) -> None:
        for dirpath, _dirnames, filenames in os.walk(root):
            k = key(dirpath)
            if k:
                dirs.add(k)
            for name in filenames:
                k = key(os.path.join(dirpath, name))
                if k:
                    files.add(k)

    for root in (project.course_dir, project.modules_dir, project.root / ".git"):
        if root.is_dir():
            tree(root)
    package_dirs = {project.package_dir}
    found = importlib.util.find_spec(project.package_dir.name)
    if found is not None and found.submodule_search_locations:
        package_dirs |= {Path(p) for p in found.submodule_search_locations}
    for pkg in package_dirs:
        for path in [pkg / f"{spec.name}.py", *pkg.glob(f"__pycache__/{spec.name}.*.pyc")]:
            k = key(path)
            if k:
                files.add(k)
        k = key(pkg)
        if k:
            dirs.add(k)
    return files, dirs


# ---- running ---------------------------------------------------------------------------------
def ensure_released(spec: ModuleSpec, project: Project) -> None:
    from nbgrader.api import MissingEntry

    not_released = TitoError(f"{spec.id} is not released yet (run tito release {spec.id})")
    if not nbg.gradebook_exists(project):
        raise not_released
    with nbg.gradebook(project) as gb:
        try:
            gb.find_notebook(spec.name, spec.id)
        except MissingEntry:
            raise not_released from None


def autograde(
    spec: ModuleSpec,
    project: Project,
    students: Sequence[str] | None = None,
    *,
    jobs: int = 1,
    executor: Executor | None = None,
    limits: Limits | None = None,
    progress: bool | None = False,
    stats: dict | None = None,
    no_sandbox: bool = False,
) -> list[StudentResult]:
    """Grade every (or the named) student's submission of ``spec`` in ``jobs`` worker processes
    (or with ``executor``); write the gradebook, the autograded notebooks, the logs and the
    status file; check the gradebook afterwards. Results come back in ``students`` order.

    Student code runs behind the OS boundary (tito/boundary.py); where it cannot be set up this
    refuses with how to enable it, unless ``no_sandbox`` (trusted code only).

    ``progress``: a tqdm bar on stderr (None: only when stderr is a terminal). ``stats``, if
    given, receives where the parent's time went (seconds): context, waiting for workers,
    writing results, checking the gradebook."""
    import time

    clock = time.perf_counter
    t0 = clock()
    ensure_released(spec, project)
    students = list(dict.fromkeys(students or discover_students(spec, project)))
    if not students:
        raise TitoError(
            f"no submissions of {spec.id} under {project.rel(project.course_dir)}/submitted/*/"
        )
    ctx = build_context(spec, project, limits, sandboxed=require_boundary(no_sandbox))
    run = executor or local_pool(jobs)
    done: dict[str, StudentResult] = {}
    bar = _progress_bar(len(students), spec.id, progress)
    t1 = clock()
    writing = 0.0
    try:
        with nbg.quiet_nbgrader(), nbg.gradebook(project) as gb:
            for batch in run(BatchGrader(ctx), batches_for(students, max(1, jobs))):
                w0 = clock()
                for r in batch:
                    if r.student in done or r.student not in students:
                        raise CheckFailed(f"executor returned {r.student} twice or unasked")
                    _store(gb, spec, project, r)
                    done[r.student] = r
                record_status(project, batch)
                writing += clock() - w0
                bar.update(len(batch))
    finally:
        bar.close()
    t2 = clock()
    missing = [s for s in students if s not in done]
    if missing:
        raise CheckFailed(f"the executor returned no result for {', '.join(missing)}")
    results = [done[s] for s in students]
    problems = check_gradebook(spec, project, results)
    if stats is not None:
        stats.update(
            context=t1 - t0,
            waiting=t2 - t1 - writing,
            writing=writing,
            checking=clock() - t2,
            total=clock() - t0,
        )
    if problems:
        raise CheckFailed(
            f"gradebook integrity check failed: {problems[0]}"
            + (f" (and {len(problems) - 1} more)" if len(problems) > 1 else "")
        )
    return results


def require_boundary(no_sandbox: bool, what: str = "tito autograde") -> bool:
    """Whether grading runs behind the OS boundary; a TitoError saying how to enable it when it
    cannot and the instructor did not pass --no-sandbox."""
    from tinytorch.arena import boundary as osb

    try:
        return osb.require(no_sandbox, what)
    except osb.BoundaryUnavailable as exc:
        raise TitoError(str(exc)) from None


def grade_student(spec: ModuleSpec, student: str, project: Project) -> StudentResult:
    """Autograde one student's submission (see ``autograde``)."""
    return autograde(spec, project, [student])[0]


class _NoBar:
    def update(self, n: int) -> None:
        pass

    def close(self) -> None:
        pass


def _progress_bar(total: int, module_id: str, progress: bool | None):
    if progress is False:
        return _NoBar()
    from tqdm import tqdm

    return tqdm(
        total=total,
        desc=f"autograde {module_id}",
        unit="nb",
        disable=None if progress is None else False,
    )


def _store(gb, spec: ModuleSpec, project: Project, r: StudentResult) -> None:
    """Write one result: files first, then the gradebook rows (committed)."""
    from nbgrader.api import MissingEntry

    autograded = project.step_dir("autograded", spec.id, r.student)
    if not infrastructure_failure(r):
        _io.remove_tree(project.step_dir("feedback", spec.id, r.student))  # stale either way
    if r.log and r.log_text is not None:
        _io.write_text(project.root / r.log, r.log_text)
    try:
        if infrastructure_failure(r):  # not the student's doing: what was stored stays
            r.notes.append("grades stored before this run were kept (the run failed, not them)")
            return
        if not r.graded:
            _io.remove_tree(autograded)
            try:
                gb.remove_submission(spec.id, r.student)
            except MissingEntry:
                pass
            return
        submitted = project.step_dir("submitted", spec.id, r.student)
        with _io.replace_dir(autograded) as tmp:
            for item in submitted.iterdir() if submitted.is_dir() else []:
                if item.suffix != ".ipynb" and item.is_file() and not item.is_symlink():
                    shutil.copy2(item, tmp / item.name)
            (tmp / spec.notebook_name).write_text(
                trust.dumps_notebook(r.autograded), encoding="utf-8"
            )
        gb.update_or_create_student(r.student)
        timestamp = _parse_timestamp(r)
        if timestamp is not None:
            gb.update_or_create_submission(spec.id, r.student, timestamp=timestamp)
        else:
            gb.update_or_create_submission(spec.id, r.student)
        nb = gb.find_submission_notebook(spec.name, spec.id, r.student)
        scores = {s.grade_id: s for s in r.scores}
        for grade in nb.grades:
            s = scores.get(grade.name)
            grade.auto_score = s.score if s is not None else None
            grade.needs_manual_grade = grade.manual_score is not None or grade.auto_score is None
        for comment in nb.comments:
            if comment.name in r.comments:
                comment.auto_comment = r.comments[comment.name]
        gb.db.commit()
    except Exception as exc:
        gb.db.rollback()
        r.graded, r.reason = False, f"could not record the grades: {type(exc).__name__}: {exc}"
        r.scores = []
        _io.remove_tree(autograded)
    finally:
        r.autograded = None  # written; do not keep every notebook in memory


def _parse_timestamp(r: StudentResult):
    if not r.timestamp:
        return None
    from nbgrader.utils import parse_utc

    try:
        return parse_utc(r.timestamp)
    except (ValueError, TypeError):
        r.notes.append(f"timestamp.txt is not a timestamp: {r.timestamp[:40]!r} (ignored)")
        return None


def check_gradebook(
    spec: ModuleSpec, project: Project, results: Sequence[StudentResult]
) -> list[str]:
    """What is wrong with the gradebook after a run: SQLite's own integrity and foreign-key
    checks, and every result of the run against its rows (graded: one grade per grade cell with
    the score reported; ungradable: no submission)."""
    from nbgrader.api import MissingEntry

    problems = []
    url = nbg.coursedir(project).db_url
    if url.startswith("sqlite:///"):
        con = sqlite3.connect(url[len("sqlite:///") :])
        try:
            rows = con.execute("PRAGMA integrity_check").fetchall()
            if rows != [("ok",)]:
                problems.append(f"sqlite integrity_check: {rows[:3]}")
            bad = con.execute("PRAGMA foreign_key_check").fetchall()
            if bad:
                problems.append(f"sqlite foreign_key_check: {len(bad)} dangling rows")
        finally:
            con.close()
    with nbg.quiet_nbgrader(), nbg.gradebook(project) as gb:
        for r in results:
            try:
                nb = gb.find_submission_notebook(spec.name, spec.id, r.student)
            except MissingEntry:
                if r.graded:
                    problems.append(f"{r.student}: graded, but the gradebook has no submission")
                continue
            if not r.graded:
                if not infrastructure_failure(r):
                    problems.append(
                        f"{r.student}: could not be graded, but the gradebook has grades"
                    )
                continue
            stored = {g.name: (g.auto_score, float(g.max_score)) for g in nb.grades}
            mine = {s.grade_id: (s.score, s.max_score) for s in r.scores}
            if stored != mine:
                problems.append(f"{r.student}: gradebook {stored} != graded {mine}")
    return problems


def summary(results: Sequence[StudentResult], seconds: float, jobs: int) -> str:
    """Graded / could not be graded (with reasons) / time per notebook."""
    graded = [r for r in results if r.graded]
    failed = [r for r in results if not r.graded]
    times = [r.seconds for r in results] or [0.0]
    module = results[0].module_id if results else "?"
    lines = [
        f"{module}: graded {len(graded)} of {len(results)} submissions in {seconds:.1f} s "
        f"({jobs} worker{'s' if jobs != 1 else ''}); per notebook: median "
        f"{statistics.median(times):.2f} s, max {max(times):.2f} s"
    ]
    if failed:
        lines.append(f"could not be graded ({len(failed)}):")
        lines += [f"  {r.student}: {one_line(r.reason)}" for r in failed]
    course: dict[str, int] = {}
    for r in results:
        for n in r.course_notes:
            course[n] = course.get(n, 0) + 1
    if course:
        lines.append("refused in the course's own cells (not the students' doing):")
        lines += [f"  {n} ({k} notebook{'s' if k != 1 else ''})" for n, k in course.items()]
    noted = [r for r in graded if r.notes]
    if noted:
        lines.append(
            f"graded with notes ({len(noted)}; see tito grades): "
            + ", ".join(r.student for r in noted[:10])
            + (" ..." if len(noted) > 10 else "")
        )
    return "\n".join(lines)


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
    notes: list[str] = field(default_factory=list)  # warnings and notes of the last grading

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
            rows.append(Row(student, False, {}, reason, status[student].get("notes", [])))
        return Table(spec, grade_ids, points, rows)
    students = set(status)
    with nbg.gradebook(project) as gb:
        try:
            students |= {s.student.id for s in gb.find_assignment(spec.id).submissions}
        except MissingEntry:
            pass
        for student in sorted(students):
            entry = status.get(student, {})
            notes = list(entry.get("notes", []))
            if entry.get("status") == UNGRADABLE:
                rows.append(Row(student, False, {}, entry.get("reason") or "unknown reason", notes))
                continue
            try:
                nb = gb.find_submission_notebook(spec.name, spec.id, student)
            except MissingEntry:
                rows.append(Row(student, False, {}, "no grades in the gradebook"))
                continue
            scores = {
                g.name: CellScore(g.name, float(g.score), float(g.max_score)) for g in nb.grades
            }
            rows.append(Row(student, True, scores, notes=notes))
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
    noted = [r for r in t.rows if r.notes]
    if noted:
        lines.append("notes:")
        for r in noted:
            lines += [f"  {r.student}: {one_line(n)}" for n in r.notes]
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
                    [
                        t.spec.id,
                        r.student,
                        GRADED,
                        "total",
                        r.score,
                        sum(t.points.values()),
                        "; ".join(r.notes),
                    ]
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
