"""``tito feedback``: nbgrader generate_feedback, then prove no hidden check shows in the HTML."""

from __future__ import annotations

import builtins
import html
import json
import keyword
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


_COMMON_WORDS = frozenset(keyword.kwlist) | frozenset(dir(builtins)) | {"self", "cls"}


def boilerplate(line: str) -> bool:
    """A line anyone would write: only keywords, builtins (``ValueError``, ``len``), one- or
    two-letter names, numbers and punctuation (``except ValueError:``, ``return None``,
    ``for i in range(3):``)."""
    return all(
        w in _COMMON_WORDS or len(w) <= 2 for w in re.findall(r"[A-Za-z_]\w*", line)
    )


def notebook_lines(path: Path) -> set[str]:
    """Normalised lines of every cell (source and text outputs) of a notebook; empty if it
    cannot be read."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return set()
    out: set[str] = set()
    cells = data.get("cells", []) if isinstance(data, dict) else []
    for cell in cells if isinstance(cells, list) else []:
        if not isinstance(cell, dict):
            continue
        texts = [cell.get("source", "")]
        for o in cell.get("outputs", []) or []:
            if isinstance(o, dict):
                texts += [o.get("text", ""), (o.get("data") or {}).get("text/plain", "")]
        for t in texts:
            t = "".join(t) if isinstance(t, list) else str(t or "")
            out |= {_norm(ln) for ln in t.splitlines()}
    return out


def leaks_in_feedback(src: ModuleSource, page: str, public: set[str] | None = None) -> list[str]:
    """Hidden-check lines (and delimiters) that appear in the visible text of ``page``: only
    lines that could come from nowhere but a hidden cell count -- not lines also in ``public``
    (the released notebook, the student's own submission), not boilerplate anyone writes."""
    text = _norm(visible_text(page))
    public_text = "\n".join(public or ())  # a hidden line inside a public one counts as public
    problems = [
        f"hidden check of {cell.label}: {line[:60]!r}"
        for line, cell in src.secret_lines("hidden").items()
        if len(line.replace(" ", "")) >= MIN_CHARS
        and _norm(line) not in public_text
        and not boilerplate(line)
        and _norm(line) in text
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
    failed = []
    if not res.success:  # one broken notebook fails nbgrader's class run: isolate it
        for nb in graded:
            student = nb.parents[1].name
            one = nbg.run(
                "GenerateFeedback",
                project,
                assignment_id=spec.id,
                student_id=student,
                notebook_id=spec.name,
                log_name=f"feedback-{spec.id}-{student}.log",
            )
            if not one.success:
                failed.append(f"{student}: nbgrader generate_feedback failed: {one.error}")
    from .release import release_notebook_path

    released = notebook_lines(release_notebook_path(spec, project))
    files, leaks = [], []
    for path in feedback_paths(spec, project):
        student = path.parents[1].name
        own = project.step_dir("submitted", spec.id, student) / spec.notebook_name
        public = released | (notebook_lines(own) if not own.is_symlink() else set())
        problems = leaks_in_feedback(src, path.read_text(encoding="utf-8"), public)
        if problems:
            leaks.append(f"{project.rel(path)} shows {problems[0]}")
            _io.remove_tree(path.parent)
        else:
            files.append(path)
    if leaks or failed:  # every other student's page is written; these are named
        raise CheckFailed(
            "; ".join(
                ([f"feedback leaks hidden checks (files removed): {'; '.join(leaks)}"] if leaks
                 else [])
                + failed
            )
            + f" ({len(files)} other feedback files written)"
        )
    return FeedbackResult(spec, files, res.seconds)
