"""Reading and validating a module source (``modules/NN_name/name_dev.py``).

The source is a jupytext percent-format script. nbgrader metadata sits in the cell header
(``# %% nbgrader={...}``), solutions between ``### BEGIN SOLUTION`` / ``### END SOLUTION``,
hidden checks between ``### BEGIN HIDDEN TESTS`` / ``### END HIDDEN TESTS``, and the package
export is driven by ``#| default_exp <name>`` (once) and ``#| export`` (first line of a cell).

Everything nbgrader would choke on is caught here, as one-line ``SourceError`` s naming the
file, the line and the cell, before any file is written.
"""

from __future__ import annotations

import ast
import copy
import hashlib
import math
import re
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

from .errors import SourceError
from .modules import ModuleSpec

# Substrings nbgrader treats as region delimiters wherever they appear in a line.
SOLUTION_BEGIN, SOLUTION_END = "BEGIN SOLUTION", "END SOLUTION"
HIDDEN_BEGIN, HIDDEN_END = "BEGIN HIDDEN TESTS", "END HIDDEN TESTS"
DELIMITERS = (SOLUTION_BEGIN, SOLUTION_END, HIDDEN_BEGIN, HIDDEN_END)
# nbgrader's default code stub for a cleared solution region (ClearSolutions.code_stub)
CODE_STUB = ("# YOUR CODE HERE", "raise NotImplementedError()")

GRADE_ID_RE = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
DEFAULT_EXP_RE = re.compile(r"^#\|\s*default_exp\s+(\S+)\s*$")
EXPORT_DIRECTIVE = "#| export"
NBGRADER_KEYS = {"grade", "grade_id", "locked", "schema_version", "solution", "task", "points"}
# cell metadata kept in the notebooks; the rest is jupytext round-trip bookkeeping
KEPT_CELL_METADATA = ("nbgrader", "tags", "deletable", "editable", "jupyter", "slideshow")


def delimiter_in(line: str) -> str | None:
    """The nbgrader delimiter ``line`` contains (as nbgrader sees it: a substring), if any."""
    for token in (HIDDEN_BEGIN, HIDDEN_END, SOLUTION_BEGIN, SOLUTION_END):
        if token in line:
            return token
    return None


@dataclass
class Region:
    kind: str  # "solution" or "hidden"
    begin: int  # index (in Cell.lines) of the BEGIN line, or -1 for a whole-cell solution
    end: int  # index of the END line, or len(lines) for a whole-cell solution


@dataclass
class Cell:
    """One cell of the source, as jupytext reads it, plus what tito learnt about it."""

    index: int  # 0-based position among the source's cells
    line: int | None  # 1-based line of its "# %%" header in the .py (None if unknown)
    cell_type: str
    source: str
    metadata: dict
    export: bool = False  # first line is "#| export"
    directive_lines: set[int] = field(default_factory=set)  # indices of "#| ..." lines
    regions: list[Region] = field(default_factory=list)

    @property
    def lines(self) -> list[str]:
        return self.source.split("\n")

    @property
    def nbgrader(self) -> dict:
        return self.metadata.get("nbgrader") or {}

    @property
    def grade_id(self) -> str | None:
        return self.nbgrader.get("grade_id")

    @property
    def is_grade(self) -> bool:
        return bool(self.nbgrader.get("grade"))

    @property
    def is_solution(self) -> bool:
        return bool(self.nbgrader.get("solution"))

    @property
    def points(self) -> float:
        return float(self.nbgrader.get("points", 0)) if self.is_grade else 0.0

    @property
    def label(self) -> str:
        """``cell 5 'add_impl'``: numbered from 1, as the error messages say."""
        return f"cell {self.index + 1}" + (f" {self.grade_id!r}" if self.grade_id else "")

    def line_of(self, i: int) -> int | None:
        """File line of source line ``i`` of this cell (the header is ``self.line``)."""
        return None if self.line is None else self.line + 1 + i

    @property
    def body_lines(self) -> list[str]:
        """Source lines without the ``#|`` directive lines (what notebooks show)."""
        return [ln for i, ln in enumerate(self.lines) if i not in self.directive_lines]

    @property
    def body(self) -> str:
        return "\n".join(self.body_lines).strip("\n")

    @property
    def code(self) -> str:
        """Body with the delimiter lines removed: the solution IN (what the package gets)."""
        return "\n".join(ln for ln in self.body_lines if delimiter_in(ln) is None).strip("\n")

    def region_lines(self, kind: str) -> list[str]:
        lines = self.lines
        return [
            lines[i]
            for r in self.regions
            if r.kind == kind
            for i in range(r.begin + 1, r.end)
            if i not in self.directive_lines
        ]

    def public_lines(self) -> list[str]:
        """Lines a student sees: outside every region, delimiters and directives excluded."""
        lines = self.lines
        hidden = {
            i for r in self.regions for i in range(max(r.begin, 0), min(r.end + 1, len(lines)))
        }
        return [
            ln
            for i, ln in enumerate(lines)
            if i not in hidden and i not in self.directive_lines and delimiter_in(ln) is None
        ]

    def cell_id(self, module_id: str) -> str:
        """Stable notebook cell id: the grade_id, else a hash of module id + cell index."""
        if self.grade_id:
            return self.grade_id
        digest = hashlib.sha1(f"{module_id}:{self.index}".encode()).hexdigest()[:12]
        return f"{self.cell_type[:2]}-{digest}"


@dataclass
class ModuleSource:
    """A parsed, validated module source."""

    spec: ModuleSpec
    path: Path
    text: str
    notebook_metadata: dict
    cells: list[Cell]
    default_exp: str
    default_exp_cell: Cell

    @property
    def grade_cells(self) -> list[Cell]:
        return [c for c in self.cells if c.is_grade]

    @property
    def solution_cells(self) -> list[Cell]:
        return [c for c in self.cells if c.is_solution]

    @property
    def export_cells(self) -> list[Cell]:
        return [c for c in self.cells if c.export]

    @property
    def total_points(self) -> float:
        return sum(c.points for c in self.grade_cells)

    def cell_by_id(self, cell_id: str) -> Cell | None:
        for c in self.cells:
            if c.cell_id(self.spec.id) == cell_id:
                return c
        return None

    @cached_property
    def public_text_lines(self) -> set[str]:
        out = {ln.strip() for c in self.cells for ln in c.public_lines()}
        out.update(CODE_STUB)
        out.discard("")
        return out

    def secret_lines(self, kind: str) -> dict[str, Cell]:
        """Stripped lines inside ``kind`` regions that appear nowhere a student may see them.

        A line also present in public text (``return out``, ``)``) cannot be a leak, so it
        is left out; what remains must never show up in a released notebook or feedback.
        """
        out: dict[str, Cell] = {}
        for c in self.cells:
            for ln in c.region_lines(kind):
                s = ln.strip()
                if s and s not in self.public_text_lines and delimiter_in(s) is None:
                    out.setdefault(s, c)
        return out


def parse_source(spec: ModuleSpec) -> ModuleSource:
    """Read ``spec.source`` and validate it against nbgrader's and tito's rules."""
    import jupytext

    path = spec.source
    text = path.read_text(encoding="utf-8")
    try:
        nb = jupytext.reads(text, fmt="py:percent")
    except Exception as exc:  # jupytext raises plain exceptions on malformed headers
        raise SourceError(path, f"jupytext cannot read the file: {exc}") from exc
    lines = _cell_header_lines(text, nb)
    cells = [
        Cell(i, lines[i] if lines else None, c.cell_type, c.source, dict(c.metadata))
        for i, c in enumerate(nb.cells)
    ]

    kernel = nb.metadata.get("kernelspec", {})
    if kernel.get("name") != "python3" or kernel.get("language", "python") != "python":
        raise SourceError(
            path,
            f"the YAML header must declare kernelspec name python3, got {kernel or None}",
            line=1,
        )

    seen_ids: dict[str, Cell] = {}
    default_exps: list[tuple[Cell, int, str]] = []
    for cell in cells:
        _check_metadata(path, cell, seen_ids)
        default_exps += _check_directives(path, cell)
        _check_delimiters(path, cell)
    if not default_exps:
        raise SourceError(
            path, f"no '#| default_exp {spec.name}' directive (exactly one is needed)"
        )
    if len(default_exps) > 1:
        cell, i, _ = default_exps[1]
        first = default_exps[0][0]
        raise SourceError(
            path,
            f"second '#| default_exp' (the first is in {first.label},"
            f" line {first.line_of(default_exps[0][1])}); exactly one is allowed",
            line=cell.line_of(i),
            cell=cell.label,
        )
    dcell, dline, target = default_exps[0]
    if target != spec.name:
        raise SourceError(
            path,
            f"'#| default_exp {target}' but module.yaml name is {spec.name!r}"
            f" (the package file is tinytorch/{spec.name}.py)",
            line=dcell.line_of(dline),
            cell=dcell.label,
        )
    for cell in cells:
        if cell.export:
            _check_export_cell(path, cell)

    src = ModuleSource(
        spec=spec,
        path=path,
        text=text,
        notebook_metadata=dict(nb.metadata),
        cells=cells,
        default_exp=target,
        default_exp_cell=dcell,
    )
    if not src.grade_cells:
        raise SourceError(path, "no grade cells (nbgrader grade: true); nothing could be graded")
    if not math.isclose(src.total_points, spec.points):
        raise SourceError(
            spec.yaml_path,
            f"points: {spec.points:g} but the grade cells of {path.name}"
            f" sum to {src.total_points:g}",
            line=_yaml_line(spec.yaml_path, "points"),
        )
    return src


def _yaml_line(path: Path, key: str) -> int | None:
    for i, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if line.startswith(f"{key}:"):
            return i
    return None


def _check_metadata(path: Path, cell: Cell, seen: dict[str, Cell]) -> None:
    def fail(problem: str) -> None:
        raise SourceError(path, problem, line=cell.line, cell=cell.label)

    bad = cell.metadata.get("incorrectly_encoded_metadata")
    if bad is not None:
        fail(f"cell metadata is not valid JSON/key=value: {bad[:60]!r}")
    if "nbgrader" not in cell.metadata:
        return
    meta = cell.metadata["nbgrader"]
    if not isinstance(meta, dict):
        fail(f"nbgrader metadata must be a JSON object, got {meta!r}")
    unknown = sorted(set(meta) - NBGRADER_KEYS)
    if unknown:
        fail(
            f"unknown nbgrader metadata key {unknown[0]!r}"
            f" (allowed: {', '.join(sorted(NBGRADER_KEYS))})"
        )
    if "schema_version" not in meta:
        fail('nbgrader metadata lacks schema_version (nbgrader 0.9 needs "schema_version": 3)')
    if meta["schema_version"] != 3:
        fail(f"nbgrader schema_version must be 3, got {meta['schema_version']!r}")
    for key in ("grade", "solution", "locked"):
        if key not in meta:
            fail(f"nbgrader metadata lacks {key!r} (nbgrader 0.9 needs grade, solution and locked)")
        if not isinstance(meta[key], bool):
            fail(f"nbgrader {key!r} must be true or false, got {meta[key]!r}")
    if meta.get("task", False) is not False:
        fail("nbgrader task cells are graded by hand; this course is autograded")
    gid = meta.get("grade_id")
    if gid is None:
        fail("nbgrader metadata lacks grade_id")
    if not isinstance(gid, str) or not GRADE_ID_RE.fullmatch(gid):
        fail(f"grade_id {gid!r} must match [A-Za-z0-9_-]+ (at most 64 characters)")
    if gid in seen:
        other = seen[gid]
        fail(f"duplicate grade_id {gid!r} (also {other.label} at line {other.line})")
    seen[gid] = cell
    if meta["grade"]:
        pts = meta.get("points")
        if pts is None:
            fail("grade cell (grade: true) lacks points")
        if isinstance(pts, bool) or not isinstance(pts, int | float) or not pts > 0:
            fail(f"points must be a positive number, got {pts!r}")
        if meta["solution"]:
            fail("a cell that is both grade and solution needs manual grading; not supported")
        if cell.cell_type != "code":
            fail("grade cells must be code cells (markdown answers need manual grading)")
    elif "points" in meta:
        fail("points on a cell that is not a grade cell (set grade: true or drop points)")
    if meta["solution"]:
        if meta["locked"]:
            fail("a solution cell cannot be locked")
        if cell.cell_type != "code":
            fail("solution cells must be code cells (written answers need manual grading)")


def _check_directives(path: Path, cell: Cell) -> list[tuple[Cell, int, str]]:
    found: list[tuple[Cell, int, str]] = []
    for i, raw in enumerate(cell.lines):
        line = raw.strip()
        if not line.startswith("#|"):
            continue

        def fail(problem: str, i: int = i) -> None:
            raise SourceError(path, problem, line=cell.line_of(i), cell=cell.label)

        if cell.cell_type != "code":
            fail(f"directive {line!r} in a {cell.cell_type} cell; directives belong in code cells")
        if raw != raw.lstrip():
            fail(f"directive {line!r} must start at column 0")
        m = DEFAULT_EXP_RE.match(line)
        if m:
            found.append((cell, i, m.group(1)))
        elif line == EXPORT_DIRECTIVE:
            if i != 0:
                fail("'#| export' must be the first line of the cell")
            cell.export = True
        else:
            fail(f"unknown directive {line!r} (tito knows '#| export' and '#| default_exp NAME')")
        cell.directive_lines.add(i)
    return found


def _check_delimiters(path: Path, cell: Cell) -> None:
    lines = cell.lines
    open_region: tuple[str, int] | None = None
    for i, line in enumerate(lines):
        token = delimiter_in(line)
        if token is None:
            continue

        def fail(problem: str, i: int = i) -> None:
            raise SourceError(path, problem, line=cell.line_of(i), cell=cell.label)

        kind = "hidden" if "HIDDEN" in token else "solution"
        if cell.cell_type != "code":
            fail(
                f"{token!r} in a {cell.cell_type} cell; nbgrader treats any line containing it"
                " as a delimiter (reword it)"
            )
        if kind == "solution" and not cell.is_solution:
            fail(
                f"{token!r} outside a solution cell (nbgrader: solution: true); nbgrader would fail"
            )
        if kind == "hidden" and not cell.is_grade:
            fail(f"{token!r} outside a grade cell (nbgrader: grade: true); nbgrader would fail")
        if line.strip() != f"### {token}":
            fail(
                f"{token!r} inside other text ({line.strip()[:50]!r}); nbgrader treats any line"
                f" containing it as a delimiter, so it may only appear as the line '### {token}'"
            )
        if token in (SOLUTION_BEGIN, HIDDEN_BEGIN):
            if open_region is not None:
                fail(
                    f"{token!r} inside an open region begun at line {cell.line_of(open_region[1])}"
                )
            open_region = (kind, i)
        else:
            if open_region is None or open_region[0] != kind:
                fail(f"{token!r} without a matching BEGIN")
            cell.regions.append(Region(kind, open_region[1], i))
            open_region = None
    if open_region is not None:
        kind, i = open_region
        raise SourceError(
            path,
            f"{'BEGIN SOLUTION' if kind == 'solution' else 'BEGIN HIDDEN TESTS'} is never closed",
            line=cell.line_of(i),
            cell=cell.label,
        )
    if cell.is_solution and not any(r.kind == "solution" for r in cell.regions):
        # nbgrader replaces a solution cell without delimiters entirely by the stub
        cell.regions.append(Region("solution", -1, len(lines)))


def _check_export_cell(path: Path, cell: Cell) -> None:
    def fail(problem: str, line: int | None = None) -> None:
        raise SourceError(path, problem, line=line or cell.line, cell=cell.label)

    if cell.is_grade:
        fail("a grade cell (checks) is marked '#| export'; checks do not belong in the package")
    if any(r.kind == "hidden" for r in cell.regions):
        fail("hidden checks in an '#| export' cell")
    # directive lines blanked so SyntaxError line numbers map straight onto cell.lines
    code = "\n".join("" if i in cell.directive_lines else ln for i, ln in enumerate(cell.lines))
    try:
        ast.parse(code)
    except SyntaxError as exc:
        lineno = (exc.lineno or 1) - 1
        fail(f"exported code is not valid Python: {exc.msg}", cell.line_of(lineno))


def _cell_header_lines(text: str, nb) -> list[int] | None:
    """1-based line of each cell's ``# %%`` header, by replaying jupytext's reader.

    jupytext does not report positions; its reader returns how many lines each cell used,
    so a recording subclass recovers them. Any mismatch with ``nb`` gives up (None).
    """
    try:
        from jupytext.jupytext import TextNotebookConverter

        conv = TextNotebookConverter("py:percent", None)
        impl = copy.copy(conv.implementation)
        remaining: list[int] = []
        base = impl.cell_reader_class

        class Recording(base):  # type: ignore[misc,valid-type]
            def read(self, lines):
                remaining.append(len(lines))
                return super().read(lines)

        impl.cell_reader_class = Recording
        conv.implementation = impl
        replay = conv.reads(text)
    except Exception:
        return None
    file_lines = text.splitlines()
    starts = [len(file_lines) - r + 1 for r in remaining]
    extra = len(replay.cells) - len(starts)
    if extra == 1:  # a raw header cell read before the loop
        starts.insert(0, 1)
    if len(starts) != len(nb.cells) or [c.source for c in replay.cells] != [
        c.source for c in nb.cells
    ]:
        return None
    out = []
    for s in starts:
        j = s
        while j <= len(file_lines) and not file_lines[j - 1].startswith("# %%"):
            j += 1
        out.append(j if j <= len(file_lines) else s)
    return out
