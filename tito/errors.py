"""Errors raised by tito. Each renders as one line: ``tito: error: <where>: <problem>``."""

from __future__ import annotations

from pathlib import Path

BAD_INPUT = 2  # a source, module.yaml or command line tito cannot accept
CHECK_FAILED = 1  # the inputs are well-formed but a check (validate, leak scan, grading) failed


def one_line(text: str) -> str:
    """Collapse whitespace (including newlines) so an error message stays on one line."""
    return " ".join(str(text).split())


class TitoError(Exception):
    """Base class: ``exit_code`` is what ``tito`` exits with when this reaches the CLI."""

    exit_code = BAD_INPUT

    def __init__(self, message: str, exit_code: int | None = None):
        super().__init__(one_line(message))
        if exit_code is not None:
            self.exit_code = exit_code


class CheckFailed(TitoError):
    """Well-formed input, failed check (exit code 1)."""

    exit_code = CHECK_FAILED


def where(path: Path | str, line: int | None = None, cell: str | None = None) -> str:
    """``file:line: cell 5 'check_add'`` -- the location prefix of an error message."""
    text = display_path(path)
    if line is not None:
        text += f":{line}"
    if cell:
        text += f": {cell}"
    return text


class SourceError(TitoError):
    """A malformed module source (``*_dev.py``, ``module.yaml``): names file, cell and line."""

    def __init__(
        self,
        path: Path | str,
        problem: str,
        *,
        line: int | None = None,
        cell: str | None = None,
        exit_code: int | None = None,
    ):
        self.path = Path(path)
        self.line = line
        self.cell = cell
        self.problem = one_line(problem)
        super().__init__(f"{where(path, line, cell)}: {problem}", exit_code)


def display_path(path: Path | str) -> str:
    """Path relative to the current directory when it is below it, else absolute."""
    p = Path(path)
    try:
        return str(p.resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(p)
