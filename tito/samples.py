"""``tito samples``: three submissions generated from the source, never hand-maintained.

- ``reference``: the released notebook with every solution cell filled in (full marks)
- ``untouched``: the released notebook as is (zero)
- ``partial``: the first half (by order) of the solution cells filled in (strictly between)
"""

from __future__ import annotations

import copy
from pathlib import Path

from . import _io
from .build import ensure_built
from .errors import SourceError
from .modules import ModuleSpec
from .project import Project
from .release import release_module, release_notebook_path
from .source import ModuleSource, parse_source

SAMPLES = ("reference", "untouched", "partial")


def filled_ids(src: ModuleSource) -> dict[str, list[str]]:
    """grade_ids of the solution cells each sample fills in."""
    ids = [c.grade_id for c in src.solution_cells]
    if len(ids) < 2:
        raise SourceError(
            src.path,
            f"the 'partial' sample needs at least 2 solution cells, found {len(ids)}",
        )
    return {"reference": ids, "untouched": [], "partial": ids[: len(ids) // 2]}


def sample_notebook(src: ModuleSource, released, fill: list[str]):
    """``released`` with the cells named in ``fill`` holding the instructor's solution."""
    nb = copy.deepcopy(released)
    by_id = {c.grade_id: c for c in src.solution_cells}
    for cell in nb.cells:
        gid = cell.get("metadata", {}).get("nbgrader", {}).get("grade_id")
        if gid in fill:
            cell.source = by_id[gid].code  # the solution, delimiter lines dropped
    return nb


def samples(spec: ModuleSpec, project: Project) -> dict[str, Path]:
    """Write course/submitted/<sample>/<id>/<name>.ipynb for every sample."""
    import nbformat

    src = parse_source(spec)
    fills = filled_ids(src)
    built = ensure_built(src, project)
    path = release_notebook_path(spec, project)
    if not path.exists() or path.stat().st_mtime < built.stat().st_mtime:
        release_module(src, project)
    released = nbformat.read(path, as_version=4)
    out = {}
    for name in SAMPLES:
        nb = sample_notebook(src, released, fills[name])
        dest = project.step_dir("submitted", spec.id, name)
        with _io.replace_dir(dest) as tmp:
            nbformat.write(nb, str(tmp / spec.notebook_name))
        out[name] = dest / spec.notebook_name
    return out
