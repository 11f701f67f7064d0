"""Running nbgrader's converters in-process with the course config, and reading its log.

nbgrader's own Python API (``NbGraderAPI``) reports failures as "see the log"; here every run
captures the log, saves it under ``course/logs/`` and digs out the real error line.
"""

from __future__ import annotations

import io
import logging
import os
import re
import sys
import time
import traceback
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from . import _io
from .errors import one_line
from .project import Project

LEVEL_RE = re.compile(r"^\[(DEBUG|INFO|WARNING|ERROR|CRITICAL)\] ")
# nbgrader's summary lines that say "something failed" without saying what
GENERIC = (
    "There was an error processing assignment",
    "Please see the",
    "Removing failed",
)
CHAIN = ("During handling of the above", "The above exception", "Traceback (most recent")


@dataclass
class RunResult:
    success: bool
    log: str
    error: str | None  # the real error, one line (None on success)
    log_path: Path
    seconds: float

    @property
    def warnings(self) -> list[str]:
        return [
            ln[len("[WARNING] ") :] for ln in self.log.splitlines() if ln.startswith("[WARNING] ")
        ]


def prepare_environment() -> None:
    """nbgrader runs the ``alembic`` script of its environment by name when it creates a
    gradebook; make that environment's bin/ reachable even when the venv is not activated."""
    bindir = str(Path(sys.executable).parent)
    path = os.environ.get("PATH", "")
    if bindir not in path.split(os.pathsep):
        os.environ["PATH"] = bindir + (os.pathsep + path if path else "")
    os.environ.setdefault("MPLBACKEND", "Agg")


@contextmanager
def quiet_nbgrader() -> Iterator[None]:
    """Silence two harmless warnings nbgrader 0.9 trips: SQLAlchemy 2 'not in session'
    SAWarnings, and nbformat's MissingIDFieldWarning for grade cells it re-adds."""
    with warnings.catch_warnings():
        try:
            from sqlalchemy.exc import SAWarning

            warnings.simplefilter("ignore", SAWarning)
        except ImportError:  # pragma: no cover
            pass
        warnings.filterwarnings("ignore", message="Cell is missing an id field")
        yield


def load_config(project: Project):
    """nbgrader_config.py of the project, with CourseDirectory.root pointed at its course dir."""
    from traitlets.config.loader import PyFileConfigLoader

    cfg_path = project.nbgrader_config
    loader = PyFileConfigLoader(cfg_path.name, path=str(cfg_path.parent))
    config = loader.load_config()
    config.CourseDirectory.root = str(project.course_dir)
    return config


def coursedir(project: Project, config=None, **attrs):
    from nbgrader.coursedir import CourseDirectory

    cd = CourseDirectory(config=config if config is not None else load_config(project))
    for key, value in attrs.items():
        setattr(cd, key, value)
    return cd


def course_id(project: Project) -> str:
    return coursedir(project).course_id


def gradebook_exists(project: Project) -> bool:
    """Whether the course's sqlite gradebook exists (opening one creates it)."""
    url = coursedir(project).db_url
    if not url.startswith("sqlite:///"):
        return True  # a database server: assume it is there
    return Path(url[len("sqlite:///") :]).exists()


def gradebook(project: Project):
    """An open-able nbgrader Gradebook on the project's database (use as a context manager)."""
    from nbgrader.api import Gradebook

    prepare_environment()
    cd = coursedir(project)
    project.course_dir.mkdir(parents=True, exist_ok=True)
    with quiet_nbgrader():
        return Gradebook(cd.db_url, cd.course_id)


def run(
    converter: str,
    project: Project,
    *,
    assignment_id: str,
    log_name: str,
    student_id: str = ".",
    notebook_id: str = "*",
    **attrs,
) -> RunResult:
    """Run ``nbgrader.converters.<converter>`` (GenerateAssignment, Autograde, ...)."""
    import nbgrader.converters as converters

    prepare_environment()
    config = load_config(project)
    cd = coursedir(
        project, config, assignment_id=assignment_id, student_id=student_id, notebook_id=notebook_id
    )
    logger = logging.getLogger(f"tito.nbgrader.{converter}.{id(cd)}")
    logger.propagate = False
    logger.setLevel(logging.INFO)
    buffer = io.StringIO()
    handler = logging.StreamHandler(buffer)
    handler.setFormatter(logging.Formatter("[%(levelname)s] %(message)s"))
    logger.addHandler(handler)
    start = time.perf_counter()
    tb = None
    try:
        app = getattr(converters, converter)(coursedir=cd, config=config, log=logger)
        app.force = True
        for key, value in attrs.items():
            setattr(app, key, value)
        with quiet_nbgrader():
            app.start()
        success = True
    except Exception:
        success = False
        tb = traceback.format_exc()
        logger.error("tito: %s raised:\n%s", converter, tb)
    finally:
        logger.removeHandler(handler)
        logging.Logger.manager.loggerDict.pop(logger.name, None)
    log = buffer.getvalue()
    log_path = project.log_dir / log_name
    _io.write_text(log_path, log)
    return RunResult(
        success=success,
        log=log,
        error=None if success else real_error(log, tb),
        log_path=log_path,
        seconds=time.perf_counter() - start,
    )


def real_error(log: str, tb: str | None = None) -> str:
    """The line that says what went wrong: the exception of the first traceback in the log
    (the root cause), else the first specific [ERROR] line, else the end of ``tb``."""
    lines = log.splitlines()
    for i, line in enumerate(lines):
        if "Traceback (most recent call last):" not in line:
            continue
        j = i + 1
        while j < len(lines) and lines[j].startswith(" "):  # frames and code lines
            j += 1
        msg = []
        while (
            j < len(lines)
            and lines[j].strip()
            and not LEVEL_RE.match(lines[j])
            and not lines[j].startswith(CHAIN)
        ):
            msg.append(lines[j].strip())
            j += 1
        if msg:
            return one_line(" ".join(msg))
    for line in lines:
        m = LEVEL_RE.match(line)
        if m and m.group(1) in ("ERROR", "CRITICAL"):
            msg = line[m.end() :].strip()
            if msg and not msg.startswith(GENERIC) and not msg.startswith("tito:"):
                return one_line(msg)
    if tb:
        tail = [ln for ln in tb.strip().splitlines() if ln.strip()]
        if tail:
            return one_line(tail[-1])
    return "nbgrader failed without an error message"
