"""``tito feedback``: nbgrader generate_feedback, then prove no hidden check shows in the HTML."""

from __future__ import annotations

import html
import re
from dataclasses import dataclass
from html.parser import HTMLParser
from pathlib import Path

from . import _io, nbg
from .errors import CheckFailed, TitoError
from .modules import ModuleSpec
from .project import Project
from .source import HIDDEN_BEGIN, HIDDEN_END, ModuleSource, parse_source

MIN_CHARS = 6  # hidden lines shorter than this (non-blank characters) are not searched for


@dataclass
class FeedbackResult:
    spec: ModuleSpec
    files: list[Path]
    seconds: float


class _Text(HTMLParser):
    """Visible text of an HTML page (style and script contents skipped)."""

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self._skip = 0

    def handle_starttag(self, tag, attrs):
        if tag in ("style", "script"):
            self._skip += 1

    def handle_endtag(self, tag):
        if tag in ("style", "script") and self._skip:
            self._skip -= 1

    def handle_data(self, data):
        if not self._skip:
            self.parts.append(data)


def visible_text(page: str) -> str:
    parser = _Text()
    parser.feed(page)
    return html.unescape("".join(parser.parts))


def _norm(text: str) -> str:
    return re.sub(r"\s+", " ", text).strip()


def leaks_in_feedback(src: ModuleSource, page: str) -> list[str]:
    """Hidden-check lines (and delimiters) that appear in the visible text of ``page``."""
    text = _norm(visible_text(page))
    problems = [
        f"hidden check of {cell.label}: {line[:60]!r}"
        for line, cell in src.secret_lines("hidden").items()
        if len(line.replace(" ", "")) >= MIN_CHARS and _norm(line) in text
    ]
    return problems + [f"delimiter {d!r}" for d in (HIDDEN_BEGIN, HIDDEN_END) if d in text]


def feedback_paths(spec: ModuleSpec, project: Project) -> list[Path]:
    root = project.course_dir / "feedback"
    return sorted(root.glob(f"*/{spec.id}/{spec.name}.html"))


def feedback(spec: ModuleSpec, project: Project) -> FeedbackResult:
    src = parse_source(spec)
    graded = sorted((project.course_dir / "autograded").glob(f"*/{spec.id}/{spec.notebook_name}"))
    if not graded:
        raise TitoError(f"nothing autograded for {spec.id} yet (run tito autograde {spec.id})")
    res = nbg.run(
        "GenerateFeedback",
        project,
        assignment_id=spec.id,
        student_id="*",
        notebook_id=spec.name,
        log_name=f"feedback-{spec.id}.log",
    )
    if not res.success:
        raise CheckFailed(
            f"{spec.id}: nbgrader generate_feedback failed: {res.error}"
            f" (log: {project.rel(res.log_path)})"
        )
    files = feedback_paths(spec, project)
    leaks = []
    for path in files:
        problems = leaks_in_feedback(src, path.read_text(encoding="utf-8"))
        if problems:
            leaks.append(f"{project.rel(path)} shows {problems[0]}")
            _io.remove_tree(path.parent)
    if leaks:
        raise CheckFailed("feedback leaks hidden checks (files removed): " + "; ".join(leaks))
    return FeedbackResult(spec, files, res.seconds)
