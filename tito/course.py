"""``tito course`` (``make course``): every step for every module, then the gradebook.

Per module: export --check, build, validate, release, samples, autograde, feedback. The run
fails (exit 1) unless, for every module, the generated package file is current, the
instructor notebook passes, ``reference`` gets full marks, ``untouched`` zero, ``partial``
strictly in between, and no feedback file shows a hidden check.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from . import export as export_mod
from .build import build
from .errors import TitoError
from .feedback import feedback
from .grade import StudentResult, autograde, describe, discover_students, format_table, table
from .modules import ModuleSpec, discover_modules
from .project import Project
from .release import release_module
from .samples import SAMPLES, samples
from .source import parse_source
from .validate import DEFAULT_TIMEOUT, validate_module


@dataclass
class ModuleOutcome:
    spec: ModuleSpec
    failures: list[str] = field(default_factory=list)
    results: dict[str, StudentResult] = field(default_factory=dict)
    feedback_files: int = 0
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return not self.failures

    def summary(self) -> str:
        parts = []
        for name in SAMPLES:
            r = self.results.get(name)
            if r is not None:
                parts.append(
                    f"{name} {r.score:g}/{r.max_score:g}" if r.graded else f"{name} ungraded"
                )
        if self.feedback_files:
            parts.append(f"{self.feedback_files} feedback files without hidden text")
        detail = ", ".join(parts)
        if self.ok:
            return f"{self.spec.id}: OK ({detail}; {self.seconds:.1f}s)"
        return f"{self.spec.id}: FAILED: {'; '.join(self.failures)}" + (
            f" [{detail}]" if detail else ""
        )


def sample_failures(results: dict[str, StudentResult]) -> list[str]:
    """The three promises of the samples, each broken one as a message."""
    out = []
    for name in SAMPLES:
        r = results.get(name)
        if r is None or not r.graded:
            out.append(f"sample {name} could not be graded: {r.reason if r else 'not graded'}")
    if out:
        return out
    ref, untouched, partial = results["reference"], results["untouched"], results["partial"]
    if ref.score != ref.max_score:
        lost = [s.grade_id for s in ref.scores if s.score < s.max_score]
        out.append(
            f"reference scored {ref.score:g}/{ref.max_score:g}, not full marks"
            f" (lost: {', '.join(lost)})"
        )
    if untouched.score != 0:
        won = [s.grade_id for s in untouched.scores if s.score > 0]
        out.append(f"untouched scored {untouched.score:g}, not 0 (points from: {', '.join(won)})")
    if not 0 < partial.score < partial.max_score:
        out.append(f"partial scored {partial.score:g}/{partial.max_score:g}, not strictly between")
    return out


def run_module(
    spec: ModuleSpec,
    project: Project,
    *,
    timeout: int = DEFAULT_TIMEOUT,
    say: Callable[[str], None] = print,
) -> ModuleOutcome:
    out = ModuleOutcome(spec)
    start = time.perf_counter()

    def step(name: str, fn: Callable[[], str | None]) -> bool:
        t0 = time.perf_counter()
        try:
            note = fn()
        except TitoError as exc:
            out.failures.append(f"{name}: {exc}")
            say(f"  {name:<10} FAILED: {exc}")
            return False
        say(f"  {name:<10} ok ({time.perf_counter() - t0:.1f}s){': ' + note if note else ''}")
        return True

    say(f"{spec.id}: {spec.title}")
    src_holder = {}

    def do_export():
        src_holder["src"] = parse_source(spec)
        export_mod.export([spec], project, check=True)
        return project.rel(export_mod.target_path(spec, project)) + " is current"

    step("export", do_export)  # a stale package file fails the run but does not stop it
    if "src" not in src_holder:
        out.seconds = time.perf_counter() - start
        return out
    src = src_holder["src"]
    ok = (
        step("build", lambda: project.rel(build([spec], project)[0]))
        and step(
            "validate",
            lambda: f"{validate_module(src, project, timeout=timeout).cells_run} cells passed",
        )
        and step("release", lambda: project.rel(release_module(src, project).notebook))
        and step("samples", lambda: ", ".join(samples(spec, project)))
    )
    if ok:

        def do_autograde():
            results = autograde(spec, project, discover_students(spec, project))
            out.results.update({r.student: r for r in results})
            for r in results:
                say(f"    {describe(r)}")
            problems = sample_failures(out.results)
            if problems:
                raise TitoError("; ".join(problems), exit_code=1)
            return None

        ok = step("autograde", do_autograde)
        if out.results:

            def do_feedback():
                res = feedback(spec, project)
                out.feedback_files = len(res.files)
                return f"{len(res.files)} files, no hidden text"

            step("feedback", do_feedback)
    out.seconds = time.perf_counter() - start
    return out


def course(
    project: Project,
    modules: Sequence[ModuleSpec] | None = None,
    *,
    timeout: int = DEFAULT_TIMEOUT,
    say: Callable[[str], None] = print,
) -> list[ModuleOutcome]:
    specs = list(modules) if modules else discover_modules(project.modules_dir)
    if not specs:
        raise TitoError(f"no modules under {project.rel(project.modules_dir)}/ (nothing to build)")
    outcomes = [run_module(spec, project, timeout=timeout, say=say) for spec in specs]
    say("")
    say("Gradebook")
    for o in outcomes:
        if o.results:
            say(format_table(table(o.spec, project)))
            say("")
    say("Summary")
    for o in outcomes:
        say(o.summary())
    return outcomes
