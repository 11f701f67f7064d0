"""tito: the TinyTorch course tool (export, build, validate, release, autograde, feedback).

Every command of the ``tito`` CLI is an importable function taking module specs and a
``Project`` (the paths); heavy dependencies (jupytext, nbgrader) load on first use::

    from tito import Project, discover_modules
    from tito.export import export
    from tito.validate import validate
    from tito.grade import autograde, grade_student

(``tito.export`` etc. are the submodules; their functions share the name.)
"""

from __future__ import annotations

from importlib import import_module

__version__ = "0.1.0"

_API = {
    "Project": "project",
    "TitoError": "errors",
    "SourceError": "errors",
    "CheckFailed": "errors",
    "ModuleSpec": "modules",
    "load_module": "modules",
    "discover_modules": "modules",
    "resolve": "modules",
    "parse_source": "source",
    "autograde": "grade",
    "grade_student": "grade",
    "StudentResult": "grade",
    "table": "grade",
    "format_table": "grade",
}
__all__ = sorted(_API)


def __getattr__(name: str):
    if name in _API:
        return getattr(import_module(f".{_API[name]}", __name__), name)
    raise AttributeError(f"module 'tito' has no attribute {name!r}")
