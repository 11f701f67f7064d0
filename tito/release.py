"""``tito release``: nbgrader generate_assignment, then prove the student notebook is clean."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from . import _io, nbg
from .build import ensure_built
from .errors import CheckFailed
from .modules import ModuleSpec
from .project import Project
from .source import DELIMITERS, ModuleSource, parse_source

SUBSTRING_MIN = 12  # secret lines at least this long are also searched for inside other lines


@dataclass
class ReleaseResult:
    spec: ModuleSpec
    notebook: Path
    seconds: float
    student_wheel: Path | None = None  # the student build written beside the notebooks


def release_notebook_path(spec: ModuleSpec, project: Project) -> Path:
    return project.step_dir("release", spec.id) / spec.notebook_name


def ensure_assignment(project: Project, module_id: str) -> None:
    """Create the assignment in the gradebook if it is not there yet."""
    with nbg.gradebook(project) as gb:
        gb.update_or_create_assignment(module_id)


def release(modules: Sequence[ModuleSpec], project: Project) -> list[ReleaseResult]:
    """Release each module's notebook, then the student build of the whole course
    (``course/release/tinytorch_student-*.whl``, tito/student_build.py) for the current
    publication state."""
    sources = [parse_source(spec) for spec in modules]
    results = [release_module(src, project) for src in sources]
    wheel = release_student_wheel(project)
    for r in results:
        r.student_wheel = wheel
    return results


def release_student_wheel(project: Project) -> Path:
    """Build the student wheel and prove no unpublished module's solution text is in it."""
    import zipfile

    from .modules import discover_modules
    from .student_build import published_modules, release_student_build

    specs = discover_modules(project.modules_dir)
    published = set(published_modules(project, specs))
    wheel = release_student_build(project, published)
    problems = []
    with zipfile.ZipFile(wheel) as zf:
        for spec in specs:
            if spec.id in published:
                continue
            src = parse_source(spec)
            text = zf.read(f"tinytorch/{spec.name}.py").decode("utf-8")
            stripped = {ln.strip() for ln in text.split("\n")}
            for secret, owner in src.secret_lines("solution").items():
                if secret in stripped or (len(secret) >= SUBSTRING_MIN and secret in text):
                    problems.append(f"{spec.id}: solution text of {owner.label}: {secret[:60]!r}")
    if problems:
        wheel.unlink()
        raise CheckFailed(
            f"{project.rel(wheel)}: {problems[0]}"
            + (f" (and {len(problems) - 1} more)" if len(problems) > 1 else "")
            + "; the student build was removed"
        )
    return wheel


def release_module(src: ModuleSource, project: Project) -> ReleaseResult:
    spec = src.spec
    ensure_built(src, project)
    ensure_assignment(project, spec.id)
    res = nbg.run(
        "GenerateAssignment",
        project,
        assignment_id=spec.id,
        log_name=f"release-{spec.id}.log",
        create_assignment=True,
    )
    path = release_notebook_path(spec, project)
    if not res.success:
        raise CheckFailed(
            f"{project.rel(src.path)}: nbgrader generate_assignment failed: {res.error}"
            f" (log: {project.rel(res.log_path)})"
        )
    problems = leaks_in_release(src, path)
    if problems:
        _io.remove_tree(path.parent)
        raise CheckFailed(
            f"{project.rel(path)}: {problems[0]}"
            + (f" (and {len(problems) - 1} more)" if len(problems) > 1 else "")
            + "; the release directory was removed"
        )
    return ReleaseResult(spec, path, res.seconds)


def leaks_in_release(src: ModuleSource, path: Path) -> list[str]:
    """Everything wrong with a released notebook: missing, solution or hidden text left in,
    a delimiter left in, a graded cell lost."""
    import nbformat

    if not path.exists():
        return ["nbgrader wrote no released notebook"]
    raw = path.read_text(encoding="utf-8")
    problems = [f"delimiter {d!r} left in" for d in DELIMITERS if d in raw]
    nb = nbformat.reads(raw, as_version=4)
    secrets = {
        kind: src.secret_lines(kind) for kind in ("solution", "hidden")
    }  # stripped line -> source cell
    for cell in nb.cells:
        texts = [cell.source] + [_output_text(o) for o in cell.get("outputs", [])]
        for text in texts:
            stripped = {ln.strip() for ln in text.split("\n")}
            for kind, lines in secrets.items():
                for secret, owner in lines.items():
                    if secret in stripped or (len(secret) >= SUBSTRING_MIN and secret in text):
                        problems.append(f"{kind} text of {owner.label} left in: {secret[:60]!r}")
    released_ids = {c.metadata.get("nbgrader", {}).get("grade_id") for c in nb.cells}
    for cell in src.cells:
        if cell.grade_id and cell.grade_id not in released_ids:
            problems.append(f"{cell.label} is missing from the released notebook")
    return list(dict.fromkeys(problems))


def _output_text(output) -> str:
    parts = [output.get("text", ""), output.get("evalue", "")]
    parts += output.get("traceback", [])
    for value in output.get("data", {}).values():
        if isinstance(value, str):
            parts.append(value)
    return "\n".join(p for p in parts if isinstance(p, str))
