"""Where things live: the project root and the paths every command derives from it."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from .errors import TitoError

ENV_ROOT = "TITO_ROOT"


@dataclass(frozen=True)
class Project:
    """Paths of one checkout. Tests point every field at a temporary directory."""

    root: Path  # the checkout; export headers name sources relative to it
    modules_dir: Path  # modules/NN_name/{name_dev.py,module.yaml,README.md}
    course_dir: Path  # the nbgrader course root (source/, release/, submitted/, ...)
    package_dir: Path  # where `tito export` writes <name>.py (the tinytorch package)
    nbgrader_config: Path  # the nbgrader_config.py loaded for every nbgrader step

    @classmethod
    def at(
        cls,
        root: Path | str,
        *,
        modules_dir: Path | str | None = None,
        course_dir: Path | str | None = None,
        package_dir: Path | str | None = None,
        nbgrader_config: Path | str | None = None,
    ) -> Project:
        root = Path(root).resolve()
        config = Path(nbgrader_config) if nbgrader_config else root / "nbgrader_config.py"
        if not config.exists() and nbgrader_config is None:
            config = _installed_root() / "nbgrader_config.py"
        return cls(
            root=root,
            modules_dir=Path(modules_dir).resolve() if modules_dir else root / "modules",
            course_dir=Path(course_dir).resolve() if course_dir else root / "course",
            package_dir=Path(package_dir).resolve() if package_dir else root / "tinytorch",
            nbgrader_config=config.resolve(),
        )

    @classmethod
    def find(cls, start: Path | str | None = None, **overrides) -> Project:
        """$TITO_ROOT; else the nearest directory above ``start`` (cwd) holding
        nbgrader_config.py or modules/ + pyproject.toml; else tito's own checkout."""
        if os.environ.get(ENV_ROOT):
            return cls.at(os.environ[ENV_ROOT], **overrides)
        here = Path(start or Path.cwd()).resolve()
        for d in (here, *here.parents):
            if (d / "nbgrader_config.py").exists() or (
                (d / "modules").is_dir() and (d / "pyproject.toml").exists()
            ):
                return cls.at(d, **overrides)
        installed = _installed_root()
        if (installed / "pyproject.toml").exists():
            return cls.at(installed, **overrides)
        raise TitoError(
            f"no project found above {here} (looked for nbgrader_config.py); use --root"
        )

    # ---- derived paths --------------------------------------------------------------------
    def rel(self, path: Path) -> str:
        """``path`` relative to the project root (posix separators) when below it."""
        try:
            return Path(path).resolve().relative_to(self.root).as_posix()
        except ValueError:
            return Path(path).as_posix()

    def step_dir(self, step: str, module_id: str, student: str = ".") -> Path:
        """nbgrader's ``{nbgrader_step}/{student_id}/{assignment_id}`` layout."""
        if student == ".":
            return self.course_dir / step / module_id
        return self.course_dir / step / student / module_id

    @property
    def status_file(self) -> Path:
        return self.course_dir / "autograded_status.json"

    @property
    def log_dir(self) -> Path:
        return self.course_dir / "logs"


def _installed_root() -> Path:
    return Path(__file__).resolve().parent.parent
