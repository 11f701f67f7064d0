"""``tito build``: source -> instructor notebook ``course/source/<id>/<name>.ipynb``.

Directive lines (``#| export``, ``#| default_exp``) are tooling noise for students and are
dropped (a cell holding nothing else disappears); the package export reads the .py source.
Cell ids come from the grade_id or a hash of module id + cell index, and nothing
time- or version-dependent is written, so rebuilding gives byte-identical files.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from . import _io
from .modules import ModuleSpec
from .project import Project
from .source import KEPT_CELL_METADATA, ModuleSource, parse_source


def source_notebook_path(spec: ModuleSpec, project: Project) -> Path:
    return project.step_dir("source", spec.id) / spec.notebook_name


def notebook(src: ModuleSource):
    import nbformat
    from nbformat import v4

    cells = []
    for cell in src.cells:
        body = cell.body
        if cell.directive_lines and not body.strip():
            continue  # a cell that only held directives
        meta = {k: cell.metadata[k] for k in KEPT_CELL_METADATA if k in cell.metadata}
        make = {"code": v4.new_code_cell, "markdown": v4.new_markdown_cell}.get(
            cell.cell_type, v4.new_raw_cell
        )
        cells.append(make(source=body, metadata=meta, id=cell.cell_id(src.spec.id)))
    kernel = src.notebook_metadata["kernelspec"]
    nb = v4.new_notebook(
        cells=cells,
        metadata={
            "kernelspec": {
                "display_name": kernel.get("display_name", "Python 3"),
                "language": "python",
                "name": "python3",
            },
            "language_info": {"name": "python"},
        },
    )
    nb.nbformat, nb.nbformat_minor = 4, 5
    nbformat.validate(nb)
    return nb


def render(src: ModuleSource) -> str:
    import nbformat

    return nbformat.writes(notebook(src)) + "\n"


def build(modules: Sequence[ModuleSpec], project: Project) -> list[Path]:
    """Write the instructor notebook of each module (all parsed before any is written)."""
    rendered = [(spec, render(parse_source(spec))) for spec in modules]
    out = []
    for spec, text in rendered:
        path = source_notebook_path(spec, project)
        if not path.exists() or path.read_text(encoding="utf-8") != text:
            _io.write_text(path, text)
        out.append(path)
    return out


def ensure_built(src: ModuleSource, project: Project) -> Path:
    """The instructor notebook of ``src``, rebuilt if missing or stale."""
    path = source_notebook_path(src.spec, project)
    text = render(src)
    if not path.exists() or path.read_text(encoding="utf-8") != text:
        _io.write_text(path, text)
    return path
