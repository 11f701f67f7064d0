"""What autograding trusts, and the static checks of what it does not (see docs/grading.md).

A submission contributes exactly one thing to grading: the source of its **solution cells**,
matched by ``grade_id``. Every other cell that runs (given code, grade cells with their hidden
checks) is the trusted release/gradebook version, in the released order, with the gradebook's
points. Edited, deleted, re-scored, re-typed or added cells change nothing but a warning.

This module is plain stdlib (it runs in the grading workers): building the trusted notebook
(``TrustedNotebook``), planning one submission (``plan_submission``), validating a notebook's
structure, and the static scan of student source (``scan_student_source``).
"""

from __future__ import annotations

import ast
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

SOLUTION, GRADE, LOCKED, GIVEN, TEXT = "solution", "grade", "locked", "given", "text"
# a given code cell tagged "demo": a measurement or experiment no check depends on; grading
# never runs it (the tag comes from the trusted notebook, so a student cannot add or remove it)
DEMO = "demo"
DEMO_TAG = "demo"


@dataclass(frozen=True)
class TrustedCell:
    """One cell of the released notebook, with the gradebook's source/points for graded ones."""

    cell_id: str | None
    cell_type: str  # code / markdown / raw
    kind: str  # SOLUTION / GRADE / LOCKED / GIVEN / TEXT
    source: str  # grade/locked: gradebook source (hidden checks in); solution: released stub
    released: str  # the source as the student received it (what edits are compared with)
    metadata: dict
    grade_id: str | None = None
    points: float | None = None
    binds: frozenset[str] = frozenset()  # top-level names the cell binds (AST)

    @property
    def label(self) -> str:
        return self.grade_id or self.cell_id or "?"


@dataclass(frozen=True)
class TrustedNotebook:
    module_id: str
    name: str  # notebook stem, e.g. "toy"
    cells: tuple[TrustedCell, ...]
    metadata: dict
    nbformat_minor: int
    # names bound by trusted code cells and by no instructor solution cell: the checks rely on
    # them, so a student rebinding one is undone before the next trusted cell runs
    protected: frozenset[str] = frozenset()

    @property
    def grade_cells(self) -> list[TrustedCell]:
        return [c for c in self.cells if c.kind == GRADE]

    @property
    def points(self) -> float:
        return sum(c.points or 0.0 for c in self.grade_cells)


def cell_source(cell: Mapping) -> str:
    src = cell.get("source", "")
    return "".join(src) if isinstance(src, list) else str(src)


def nbgrader_meta(cell: Mapping) -> dict:
    meta = cell.get("metadata") or {}
    nbg = meta.get("nbgrader") if isinstance(meta, Mapping) else None
    return nbg if isinstance(nbg, Mapping) else {}


def build_trusted(
    module_id: str,
    name: str,
    release: Mapping,
    gradebook_cells: Mapping[str, Mapping],
    points: Mapping[str, float],
    instructor_solutions: Iterable[str] = (),
) -> TrustedNotebook:
    """The trusted notebook: ``release`` (the student notebook as released) with each grade or
    locked cell's source, checksum and points taken from the gradebook (``gradebook_cells``:
    grade_id -> {"source", "checksum", "locked", "cell_type"}; ``points``: grade_id -> max)."""
    cells = []
    for raw in release.get("cells", []):
        meta = dict(raw.get("metadata") or {})
        nbg = dict(nbgrader_meta(raw))
        gid = nbg.get("grade_id")
        released = cell_source(raw)
        source = released
        kind = TEXT if raw.get("cell_type") != "code" else GIVEN
        if kind == GIVEN and DEMO_TAG in (meta.get("tags") or ()):
            kind = DEMO
        cell_points = None
        if gid:
            stored = gradebook_cells.get(gid, {})
            if stored.get("checksum"):
                nbg["checksum"] = stored["checksum"]
            if nbg.get("solution"):
                kind = SOLUTION
            elif nbg.get("grade"):
                kind = GRADE
                source = stored.get("source", released)
                cell_points = float(points.get(gid, nbg.get("points", 0)))
                nbg["points"] = cell_points
            elif nbg.get("locked") or stored.get("locked"):
                kind = LOCKED if raw.get("cell_type") == "code" else TEXT
                source = stored.get("source", released)
            meta["nbgrader"] = nbg
        cells.append(
            TrustedCell(
                cell_id=raw.get("id"),
                cell_type=raw.get("cell_type", "code"),
                kind=kind,
                source=source,
                released=released,
                metadata=meta,
                grade_id=gid,
                points=cell_points,
                binds=frozenset(bound_names(source))
                if raw.get("cell_type") == "code"
                else frozenset(),
            )
        )
    trusted_binds = set().union(*(c.binds for c in cells if c.kind in (GIVEN, GRADE, LOCKED)))
    solution_binds = set().union(
        *(c.binds for c in cells if c.kind == SOLUTION),
        *(bound_names(s) for s in instructor_solutions),
    )
    return TrustedNotebook(
        module_id=module_id,
        name=name,
        cells=tuple(cells),
        metadata=dict(release.get("metadata") or {}),
        nbformat_minor=int(release.get("nbformat_minor", 5)),
        protected=frozenset(trusted_binds - solution_binds - {"__builtins__"}),
    )


# ---- one submission --------------------------------------------------------------------------
@dataclass
class PlannedCell:
    """A cell as it will run: trusted (release/gradebook) source, or the student's solution."""

    cell: TrustedCell
    source: str
    student: bool  # True only for solution cells (the student's code)
    answered: bool = True  # solution cells: differs from the released stub


@dataclass
class Plan:
    cells: list[PlannedCell]
    warnings: list[str] = field(default_factory=list)

    @property
    def student_sources(self) -> list[tuple[str, str]]:
        return [(p.cell.label, p.source) for p in self.cells if p.student]


def check_notebook_structure(data) -> str | None:
    """Why ``data`` (parsed JSON) is not a gradable Jupyter notebook, else None."""
    if not isinstance(data, dict):
        return f"not a valid Jupyter notebook: expected a JSON object, got {type(data).__name__}"
    if "cells" not in data:
        return "not a valid Jupyter notebook: no 'cells' list"
    major = data.get("nbformat")
    if major != 4:
        return f"not a valid Jupyter notebook: nbformat {major!r} is not supported (need 4)"
    if not isinstance(data["cells"], list):
        return "not a valid Jupyter notebook: 'cells' is not a list"
    for i, cell in enumerate(data["cells"]):
        if not isinstance(cell, dict):
            return f"not a valid Jupyter notebook: cell {i} is not an object"
        if cell.get("cell_type") not in ("code", "markdown", "raw"):
            return f"not a valid Jupyter notebook: cell {i} has cell_type {cell.get('cell_type')!r}"
        src = cell.get("source", "")
        if not (
            isinstance(src, str) or (isinstance(src, list) and all(isinstance(s, str) for s in src))
        ):
            return f"not a valid Jupyter notebook: cell {i} source is not text"
        if not isinstance(cell.get("metadata", {}), dict):
            return f"not a valid Jupyter notebook: cell {i} metadata is not an object"
    return None


def plan_submission(trusted: TrustedNotebook, nb: Mapping) -> Plan:
    """The cells to run for submission ``nb``: trusted cells as released, solution cells with the
    student's source. Everything else the student changed is reported in ``warnings``."""
    warnings: list[str] = []
    by_gid: dict[str, dict] = {}
    by_id: dict[str, dict] = {}
    seen_gid: dict[str, int] = {}
    for cell in nb.get("cells", []):
        gid = nbgrader_meta(cell).get("grade_id")
        if gid:
            seen_gid[gid] = seen_gid.get(gid, 0) + 1
            by_gid.setdefault(gid, cell)
        elif cell.get("id"):
            by_id.setdefault(cell["id"], cell)
    known_gids = {c.grade_id for c in trusted.cells if c.grade_id}
    known_ids = {c.cell_id for c in trusted.cells if c.cell_id}
    for gid, count in seen_gid.items():
        if gid in known_gids and count > 1:
            warnings.append(f"Cell {gid} appears {count} times: the first one was graded")
        elif gid not in known_gids:
            warnings.append(f"Cell with unknown grade_id {gid!r} was ignored (not in the release)")
    planned = []
    for tc in trusted.cells:
        if tc.kind == SOLUTION:
            mine = by_gid.get(tc.grade_id)
            if mine is None:
                warnings.append(f"Missing solution cell {tc.grade_id}: graded as unanswered")
                planned.append(PlannedCell(tc, tc.released, True, answered=False))
                continue
            if mine.get("cell_type") != tc.cell_type:
                warnings.append(
                    f"Solution cell {tc.grade_id} was changed from {tc.cell_type} to "
                    f"{mine.get('cell_type')}: graded as {tc.cell_type}"
                )
            src = cell_source(mine)
            planned.append(PlannedCell(tc, src, True, answered=src != tc.released))
            continue
        planned.append(PlannedCell(tc, tc.source, False))
        if tc.kind in (GRADE, LOCKED):
            _compare_locked(tc, by_gid.get(tc.grade_id), warnings)
        elif tc.kind == GIVEN and tc.cell_id in by_id:
            if cell_source(by_id[tc.cell_id]) != tc.released:
                warnings.append(
                    f"Given cell {tc.cell_id} was edited: graded with the released version"
                )
    added = [
        c.get("id") or f"#{i}"
        for i, c in enumerate(nb.get("cells", []))
        if c.get("cell_type") == "code"
        and not nbgrader_meta(c).get("grade_id")
        and c.get("id") not in known_ids
        and cell_source(c).strip()
    ]
    if added:
        shown = ", ".join(str(a) for a in added[:5]) + (" ..." if len(added) > 5 else "")
        warnings.append(
            f"{len(added)} code cell(s) added by the student were not run (only solution "
            f"cells are graded): {shown}"
        )
    return Plan(planned, warnings)


def _compare_locked(tc: TrustedCell, mine: Mapping | None, warnings: list[str]) -> None:
    what = "grade cell" if tc.kind == GRADE else "locked cell"
    if mine is None:
        warnings.append(f"Missing {what} {tc.grade_id}: restored from the release and graded")
        return
    if mine.get("cell_type") != tc.cell_type:
        warnings.append(
            f"Locked cell {tc.grade_id} was changed from {tc.cell_type} to "
            f"{mine.get('cell_type')}: the released version was graded"
        )
    elif cell_source(mine) != tc.released:
        warnings.append(f"Locked cell {tc.grade_id} was changed: the released version was graded")
    meta = nbgrader_meta(mine)
    if tc.kind == GRADE:
        try:
            theirs = float(meta.get("points", tc.points))
        except (TypeError, ValueError):
            theirs = None
        if theirs != tc.points:
            warnings.append(
                f"Points of grade cell {tc.grade_id} were changed from {tc.points:g} to "
                f"{meta.get('points')!r}: the released points count"
            )
        if not meta.get("grade") or meta.get("solution"):
            warnings.append(
                f"The nbgrader metadata of grade cell {tc.grade_id} was changed: "
                "the released metadata was used"
            )


# ---- static analysis -------------------------------------------------------------------------
def _parse(source: str) -> ast.Module | None:
    try:
        return ast.parse(source)
    except (SyntaxError, ValueError):
        return None


def bound_names(source: str) -> set[str]:
    """Names a cell binds at top level (not inside function or class bodies)."""
    tree = _parse(source)
    if tree is None:
        return set()
    out: set[str] = set()

    def targets(node):
        if isinstance(node, ast.Name):
            out.add(node.id)
        elif isinstance(node, (ast.Tuple, ast.List)):
            for elt in node.elts:
                targets(elt)
        elif isinstance(node, ast.Starred):
            targets(node.value)

    def visit(stmts):
        for node in stmts:
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                out.add(node.name)
            elif isinstance(node, ast.Assign):
                for t in node.targets:
                    targets(t)
            elif isinstance(node, (ast.AnnAssign, ast.AugAssign)):
                targets(node.target)
            elif isinstance(node, (ast.Import, ast.ImportFrom)):
                for alias in node.names:
                    if alias.name != "*":
                        out.add(alias.asname or alias.name.split(".")[0])
            elif isinstance(node, (ast.For, ast.AsyncFor)):
                targets(node.target)
                visit(node.body)
                visit(node.orelse)
            elif isinstance(node, (ast.With, ast.AsyncWith)):
                for item in node.items:
                    if item.optional_vars is not None:
                        targets(item.optional_vars)
                visit(node.body)
            elif isinstance(node, (ast.If, ast.While)):
                visit(node.body)
                visit(node.orelse)
            elif isinstance(node, ast.Try):
                visit(node.body)
                for h in node.handlers:
                    if h.name:
                        out.add(h.name)
                    visit(h.body)
                visit(node.orelse)
                visit(node.finalbody)
        # walrus targets anywhere at top level
        return out

    visit(tree.body)
    for node in ast.walk(tree):
        if isinstance(node, ast.NamedExpr) and isinstance(node.target, ast.Name):
            out.add(node.target.id)
    return out


def imported_modules(source: str) -> set[str]:
    """Absolute module names imported anywhere in ``source`` (for preloading trusted imports)."""
    tree = _parse(source)
    if tree is None:
        return set()
    out: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            out.add(node.module)
            out.update(f"{node.module}.{a.name}" for a in node.names if a.name != "*")
    return out


def _const_str(node) -> str | None:
    """The value of a string expression built from constants (``"a" + "b"``, f-strings,
    ``"".join([...])``, ``"%s" % ...`` with constants), else None."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Add):
        left, right = _const_str(node.left), _const_str(node.right)
        return None if left is None or right is None else left + right
    if isinstance(node, ast.JoinedStr):
        parts = []
        for v in node.values:
            if isinstance(v, ast.FormattedValue):
                inner = _const_str(v.value)
                if inner is None:
                    return None
                parts.append(inner)
            else:
                parts.append(_const_str(v) or "")
        return "".join(parts)
    if (
        isinstance(node, ast.Call)
        and isinstance(node.func, ast.Attribute)
        and node.func.attr == "join"
        and len(node.args) == 1
        and isinstance(node.args[0], (ast.List, ast.Tuple))
    ):
        sep = _const_str(node.func.value)
        items = [_const_str(e) for e in node.args[0].elts]
        if sep is not None and all(i is not None for i in items):
            return sep.join(items)
    return None


def _dotted(node) -> str | None:
    parts = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if isinstance(node, ast.Name):
        parts.append(node.id)
        return ".".join(reversed(parts))
    return None


# attribute/name uses that honest solutions of these modules never need: reported for review
INTROSPECTION = {
    "__code__": "swaps function code (__code__)",
    "__globals__": "reaches into function globals (__globals__)",
    "__closure__": "reaches into closures (__closure__)",
    "cell_contents": "reaches into closures (cell_contents)",
    "__builtins__": "touches __builtins__",
    "__subclasses__": "walks the class hierarchy (__subclasses__)",
    "_getframe": "inspects interpreter frames (sys._getframe)",
    "currentframe": "inspects interpreter frames (inspect.currentframe)",
    "f_back": "walks interpreter frames (f_back)",
    "f_locals": "reads frame locals (f_locals)",
    "f_globals": "reads frame globals (f_globals)",
    "tb_frame": "walks traceback frames (tb_frame)",
    "gi_frame": "walks generator frames (gi_frame)",
    "settrace": "installs a tracer (settrace)",
    "setprofile": "installs a profiler (setprofile)",
    "addaudithook": "installs an audit hook",
    "meta_path": "changes the import system (sys.meta_path)",
    "path_hooks": "changes the import system (sys.path_hooks)",
    "get_objects": "walks the heap (gc.get_objects)",
    "get_referrers": "walks the heap (gc.get_referrers)",
    "get_referents": "walks the heap (gc.get_referents)",
    "dup2": "rewires file descriptors (os.dup2)",
    "setrlimit": "changes resource limits",
}
FLAGGED_MODULES = {
    "ctypes": "loads native code (ctypes)",
    "builtins": "imports builtins",
    "importlib": "imports modules dynamically (importlib)",
    "subprocess": "starts processes (subprocess)",
    "multiprocessing": "starts processes (multiprocessing)",
    "threading": "starts threads (threading)",
    "_thread": "starts threads (_thread)",
    "socket": "opens network connections (socket)",
    "gc": None,  # gc.collect() is fine; the heap walkers are in INTROSPECTION
    "inspect": None,
    "sys": None,
}


@dataclass
class Finding:
    cell: str
    kind: str  # "reference" (imports the solution) or "suspicious" (flag for review)
    message: str

    def __str__(self) -> str:
        return f"{self.cell}: {self.message}"


def scan_student_source(
    label: str,
    source: str,
    *,
    package: str,
    blocked: str,
    module_id: str,
    module_aliases: Iterable[str] = (),
) -> list[Finding]:
    """Static findings in one student cell: uses of the reference solution ``blocked`` (e.g.
    ``tinytorch.toy``) and constructs that tamper with libraries or the grader. The runtime
    guard is what enforces; these findings explain and flag for review."""
    tree = _parse(source)
    if tree is None:
        return []
    leaf = blocked.rsplit(".", 1)[-1]
    ref = f"the reference solution of {module_id}"
    out: list[Finding] = []

    def add(kind, msg):
        f = Finding(label, kind, msg)
        if all((f.kind, f.message) != (o.kind, o.message) for o in out):
            out.append(f)

    def is_blocked(name: str) -> bool:
        return name == blocked or name.startswith(blocked + ".")

    aliases = set(module_aliases)
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for a in node.names:
                aliases.add(a.asname or a.name.split(".")[0])
        elif isinstance(node, ast.ImportFrom) and node.module:
            for a in node.names:
                aliases.add(a.asname or a.name)
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for a in node.names:
                if is_blocked(a.name):
                    add("reference", f"imports {a.name} ({ref})")
                top = a.name.split(".")[0]
                if FLAGGED_MODULES.get(top):
                    add("suspicious", FLAGGED_MODULES[top])
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            if is_blocked(node.module):
                add("reference", f"imports from {node.module} ({ref})")
            elif node.module == package and any(a.name == leaf for a in node.names):
                add("reference", f"imports {blocked} ({ref})")
            top = node.module.split(".")[0]
            if FLAGGED_MODULES.get(top):
                add("suspicious", FLAGGED_MODULES[top])
        elif isinstance(node, ast.Attribute):
            dotted = _dotted(node)
            if dotted and is_blocked(dotted):
                add("reference", f"uses {blocked} ({ref})")
            if node.attr in INTROSPECTION:
                add("suspicious", INTROSPECTION[node.attr])
        elif isinstance(node, ast.Name):
            if node.id in INTROSPECTION:
                add("suspicious", INTROSPECTION[node.id])
            if node.id == "__import__":
                add("suspicious", "imports modules dynamically (__import__)")
        elif isinstance(node, (ast.Constant, ast.BinOp, ast.JoinedStr, ast.Call)):
            text = _const_str(node)
            if text and (blocked in text or blocked.replace(".", "/") in text):
                add("reference", f"names {blocked} in a string ({ref})")
        if isinstance(node, (ast.Assign, ast.AugAssign, ast.AnnAssign, ast.Delete)):
            targets = node.targets if isinstance(node, (ast.Assign, ast.Delete)) else [node.target]
            for t in targets:
                root = t
                while isinstance(root, (ast.Attribute, ast.Subscript)):
                    root = root.value
                dotted = _dotted(t) if isinstance(t, ast.Attribute) else None
                if (
                    isinstance(t, ast.Attribute)
                    and isinstance(root, ast.Name)
                    and root.id in aliases
                    and dotted
                ):
                    add("suspicious", f"patches a library: assigns to {dotted}")
                if isinstance(t, ast.Attribute) and t.attr in (
                    "__class__",
                    "__dict__",
                    "__bases__",
                ):
                    add("suspicious", f"reassigns {t.attr}")
                if isinstance(t, ast.Subscript) and _dotted(t.value) in ("sys.modules",):
                    add("suspicious", "replaces entries of sys.modules")
        if isinstance(node, ast.Call):
            fn = _dotted(node.func)
            if fn in ("setattr", "delattr") and node.args:
                root = node.args[0]
                while isinstance(root, ast.Attribute):
                    root = root.value
                if isinstance(root, ast.Name) and root.id in aliases:
                    add("suspicious", f"patches a library: {fn}({_dotted(node.args[0])}, ...)")
            if fn in ("vars",) and node.args and isinstance(node.args[0], ast.Name):
                if node.args[0].id in aliases:
                    add("suspicious", f"reaches into a module's namespace: vars({node.args[0].id})")
    return out


def dumps_notebook(nb: Mapping) -> str:
    """nbformat's on-disk style: 1-space indent, sorted keys, trailing newline."""
    return json.dumps(nb, indent=1, sort_keys=True, ensure_ascii=False) + "\n"
