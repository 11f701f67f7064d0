"""Your side of a course build: put your own notebook code into your installed ``tinytorch``.

A course hands students a *student build* of tinytorch (``pip install
course/release/tinytorch_student-*.whl``): the foundation (``tinytorch.core``, datasets) is
complete, and every module whose solutions are not published yet is a stub whose functions raise
``NotImplementedError`` naming the notebook and the exercise to complete. When you finish a
notebook, export it and the later modules run on your own code::

    python -m tinytorch.student export memory.ipynb    # your module 16 -> tinytorch/memory.py
    python -m tinytorch.student status                 # reference, stub or yours, per module
    python -m tinytorch.student reset 16_memory        # back to what the course build shipped

(or ``from tinytorch.student import export; export("memory.ipynb")`` in the notebook's last
cell). Exporting a learner install (``pip install -e .``, the full library) is refused: it would
overwrite the reference. This package is part of every build; it needs only the standard library.
"""

from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

MANIFEST = "_course.json"  # written by `tito release` beside this file in a student build
SHIPPED_DIR = "_shipped"  # what the build shipped for each module (for `reset`)
STUB_COMMENT = "# YOUR CODE HERE"  # nbgrader's stub for a cleared solution region...
STUB_RAISE = "raise NotImplementedError()"  # ...and its second line
HEADER = "# tinytorch.{name}: {what} ({module})"  # first line of every module file of a build
KINDS = ("reference", "stub", "yours")


class StudentError(Exception):
    """A problem with an export, worded for the student (module, cell, what to do)."""


@dataclass(frozen=True)
class ModuleInfo:
    """One course module as the build's manifest describes it."""

    id: str  # "16_memory"
    name: str  # "memory": the package file tinytorch/memory.py
    notebook: str  # "memory.ipynb"
    release_path: str  # "course/release/16_memory/memory.ipynb": where students find it
    export_cells: tuple[str, ...]  # ids of the notebook cells that make up the package file
    exercises: tuple[str, ...]  # grade_ids of the solution cells, in notebook order
    exports: tuple[str, ...]  # public names the package file must define
    shipped: str  # "reference" (published) or "stub"

    @classmethod
    def from_json(cls, data: dict) -> ModuleInfo:
        return cls(
            id=data["id"],
            name=data["name"],
            notebook=data["notebook"],
            release_path=data["release_path"],
            export_cells=tuple(data["export_cells"]),
            exercises=tuple(data["exercises"]),
            exports=tuple(data["exports"]),
            shipped=data["shipped"],
        )

    def to_json(self) -> dict:
        return {
            "id": self.id,
            "name": self.name,
            "notebook": self.notebook,
            "release_path": self.release_path,
            "export_cells": list(self.export_cells),
            "exercises": list(self.exercises),
            "exports": list(self.exports),
            "shipped": self.shipped,
        }


# ---- turning notebook cells into a package file (tito's student build uses this too) ------
def unfinished_message(info: ModuleInfo, qualname: str, exercise: str | None) -> str:
    """What a call of an unfinished function says: which function, exercise, notebook, action."""
    if exercise in info.exercises:
        k = info.exercises.index(exercise) + 1
        which = f"exercise {k} ({exercise!r}) of {info.id}"
    else:
        which = f"part of {info.id}"
    return (
        f"{qualname} is {which} ({info.release_path}): complete it and run "
        f"`python -m tinytorch.student export {info.notebook}` (or the notebook's export cell)"
    )


def _qualnames(tree: ast.AST) -> list[tuple[int, int, str]]:
    """(first line, last line, qualified name) of every function in ``tree``."""
    out: list[tuple[int, int, str]] = []

    def visit(node: ast.AST, prefix: str) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef):
                name = f"{prefix}{child.name}"
                out.append((child.lineno, child.end_lineno or child.lineno, name))
                visit(child, f"{name}.<locals>.")
            elif isinstance(child, ast.ClassDef):
                visit(child, f"{prefix}{child.name}.")
            else:
                visit(child, prefix)

    visit(tree, "")
    return out


def fill_stubs(code: str, info: ModuleInfo, exercise: str | None) -> tuple[str, list[str]]:
    """``code`` with every nbgrader stub (``# YOUR CODE HERE`` + bare ``raise
    NotImplementedError()``) raising a message that names the function and the exercise.
    Returns the new code and the qualified names of the unfinished functions."""
    lines = code.split("\n")
    stubs = [
        i + 1
        for i in range(len(lines) - 1)
        if lines[i].strip() == STUB_COMMENT and lines[i + 1].strip() == STUB_RAISE
    ]
    if not stubs:
        return code, []
    functions = _qualnames(ast.parse(code))
    unfinished = []
    for i in stubs:  # 0-based index of the raise line == its 1-based line number - 1
        line_no = i + 1
        inside = [f for f in functions if f[0] <= line_no <= f[1]]
        qualname = max(inside, key=lambda f: f[0])[2] if inside else "this code"
        indent = lines[i][: len(lines[i]) - len(lines[i].lstrip())]
        message = unfinished_message(info, qualname, exercise)
        lines[i] = f"{indent}raise NotImplementedError({message!r})"
        unfinished.append(qualname)
    return "\n".join(lines), list(dict.fromkeys(unfinished))


def module_text(info: ModuleInfo, cells: list[tuple[str, str]], what: str) -> tuple[str, list[str]]:
    """The package file for ``cells`` ((cell id, code) in notebook order): a header line, then
    one ``# %% cell <id>`` block per cell, stubs filled. Returns (text, unfinished names)."""
    blocks = [HEADER.format(name=info.name, what=what, module=info.id)]
    unfinished: list[str] = []
    for cell_id, code in cells:
        exercise = cell_id if cell_id in info.exercises else None
        try:
            ast.parse(code)
            filled, missing = fill_stubs(code, info, exercise)
        except SyntaxError as exc:
            raise StudentError(
                f"{info.notebook}: the cell {_cell_name(cell_id, code)} is not valid Python "
                f"(line {exc.lineno} of the cell: {exc.msg}); fix it and export again"
            ) from None
        unfinished += missing
        body = "\n".join(ln.rstrip() for ln in filled.strip("\n").split("\n"))
        blocks.append(f"# %% cell {cell_id}\n{body}")
    return "\n\n\n".join(blocks) + "\n", list(dict.fromkeys(unfinished))


def _cell_name(cell_id: str, code: str) -> str:
    first = next((ln.strip() for ln in code.split("\n") if ln.strip()), "")
    return f"{cell_id!r} ({first[:50]!r})"


def top_level_names(code: str) -> set[str]:
    """Names bound at module level (defs, classes, assignments, imports, also under if/try)."""
    names: set[str] = set()

    def bind(target: ast.AST) -> None:
        if isinstance(target, ast.Name):
            names.add(target.id)
        elif isinstance(target, ast.Tuple | ast.List):
            for elt in target.elts:
                bind(elt)
        elif isinstance(target, ast.Starred):
            bind(target.value)

    def visit(body: list[ast.stmt]) -> None:
        for node in body:
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
                names.add(node.name)
            elif isinstance(node, ast.Assign):
                for t in node.targets:
                    bind(t)
            elif isinstance(node, ast.AnnAssign | ast.AugAssign):
                bind(node.target)
            elif isinstance(node, ast.Import | ast.ImportFrom):
                names.update((a.asname or a.name).split(".")[0] for a in node.names)
            elif isinstance(node, ast.If | ast.Try | ast.With | ast.For | ast.While):
                for attr in ("body", "orelse", "finalbody"):
                    visit(getattr(node, attr, []) or [])
                for handler in getattr(node, "handlers", []) or []:
                    visit(handler.body)

    visit(ast.parse(code).body)
    return names


# ---- the installed build -----------------------------------------------------------------
def package_dir() -> Path:
    """The installed tinytorch package this exporter belongs to."""
    return Path(__file__).resolve().parent.parent


def manifest(pkg: Path | None = None) -> dict:
    """The build's manifest; StudentError when this tinytorch is not a student build."""
    pkg = pkg or package_dir()
    path = pkg / MANIFEST
    if not path.exists():
        raise StudentError(
            f"{pkg} is the full tinytorch library (a learner install), not a course student "
            "build: nothing to export into. Students install the course's build with "
            "`pip install course/release/tinytorch_student-*.whl`."
        )
    return json.loads(path.read_text(encoding="utf-8"))


def modules(pkg: Path | None = None) -> dict[str, ModuleInfo]:
    return {k: ModuleInfo.from_json(v) for k, v in manifest(pkg)["modules"].items()}


def find_module(key: str, pkg: Path | None = None) -> ModuleInfo:
    """ "16", "16_memory", "memory" or "memory.ipynb" -> the module."""
    mods = modules(pkg)
    key = Path(key).name
    for info in mods.values():
        if key in (info.id, info.name, info.notebook, info.id.split("_")[0]):
            return info
    raise StudentError(f"unknown module {key!r}; this build has {', '.join(mods)}")


def installed_kind(info: ModuleInfo, pkg: Path | None = None) -> str:
    """ "reference", "stub" or "yours": what ``tinytorch/<name>.py`` holds now."""
    path = (pkg or package_dir()) / f"{info.name}.py"
    try:
        with path.open(encoding="utf-8") as f:
            first = f.readline()
    except OSError:
        return "missing"
    for kind in KINDS:
        if first.startswith(f"# tinytorch.{info.name}: {kind}"):
            return kind
    return "unknown"


@dataclass
class ExportResult:
    module: ModuleInfo
    path: Path
    unfinished: list[str]

    def describe(self) -> str:
        text = f"exported {self.module.notebook} into {self.path} ({self.module.id})"
        if self.unfinished:
            text += "; still unfinished: " + ", ".join(self.unfinished)
        return text


def export(notebook: str | os.PathLike, *, pkg: Path | None = None) -> ExportResult:
    """Write the package file of ``notebook`` from its cells (your code) into the installed
    student build, after checking that it compiles, defines the module's public names and
    imports. Nothing is replaced when a check fails (StudentError says why)."""
    pkg = pkg or package_dir()
    mods = modules(pkg)
    path = Path(notebook)
    try:
        nb = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise StudentError(f"no notebook {path}") from None
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise StudentError(f"{path} is not a readable notebook: {exc}") from None
    cells = {c.get("id"): c for c in nb.get("cells", []) if isinstance(c, dict) and c.get("id")}
    best = max(mods.values(), key=lambda m: sum(cid in cells for cid in m.export_cells))
    if not any(cid in cells for cid in best.export_cells):
        raise StudentError(
            f"{path} is none of this build's notebooks ({', '.join(mods)}); export the notebook "
            "you were given in course/release/"
        )
    missing = [cid for cid in best.export_cells if cid not in cells]
    if missing:
        raise StudentError(
            f"{path} ({best.id}) lacks {len(missing)} of the cells that make up tinytorch."
            f"{best.name} (cell ids {', '.join(missing[:3])}); were they deleted? Copy them "
            f"back from {best.release_path}"
        )
    sources = []
    for cid in best.export_cells:
        src = cells[cid].get("source", "")
        sources.append((cid, "".join(src) if isinstance(src, list) else str(src)))
    text, unfinished = module_text(best, sources, f"yours, exported from {path.name}")
    absent = [n for n in best.exports if n not in top_level_names(text)]
    if absent:
        raise StudentError(
            f"{path} ({best.id}) no longer defines {', '.join(absent)}; later modules need "
            f"them (see {best.release_path})"
        )
    _check_imports(best, text, pkg)
    target = pkg / f"{best.name}.py"
    tmp = target.with_name(f".{best.name}.py.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, target)
    _drop_bytecode(pkg, best.name)
    return ExportResult(best, target, unfinished)


def _check_imports(info: ModuleInfo, text: str, pkg: Path) -> None:
    """Import ``text`` as ``tinytorch.<name>`` in a fresh interpreter (nothing installed yet)."""
    probe = pkg / f"_export_check_{info.name}.py"
    probe.write_text(text, encoding="utf-8")
    try:
        code = f"import importlib; importlib.import_module('tinytorch.{probe.stem}')"
        env = dict(os.environ, PYTHONDONTWRITEBYTECODE="1")
        run = subprocess.run(
            [sys.executable, "-c", code],
            cwd=str(pkg.parent),
            capture_output=True,
            text=True,
            timeout=300,
            env=env,
        )
    finally:
        probe.unlink(missing_ok=True)
    if run.returncode != 0:
        last = (run.stderr.strip().splitlines() or ["(no message)"])[-1]
        raise StudentError(
            f"your {info.notebook} ({info.id}) does not import as tinytorch.{info.name}: {last}; "
            "fix the cell it names and export again (nothing was replaced)"
        )


def _drop_bytecode(pkg: Path, name: str) -> None:
    for pyc in (pkg / "__pycache__").glob(f"{name}.*.pyc"):
        pyc.unlink(missing_ok=True)


def reset(key: str, *, pkg: Path | None = None) -> Path:
    """Put back what the course build shipped for a module (its stub or reference)."""
    pkg = pkg or package_dir()
    info = find_module(key, pkg)
    shipped = pkg / SHIPPED_DIR / f"{info.name}.py"
    target = pkg / f"{info.name}.py"
    target.write_text(shipped.read_text(encoding="utf-8"), encoding="utf-8")
    _drop_bytecode(pkg, info.name)
    return target


def status(pkg: Path | None = None) -> list[tuple[ModuleInfo, str]]:
    pkg = pkg or package_dir()
    return [(info, installed_kind(info, pkg)) for info in modules(pkg).values()]


def main(argv: list[str] | None = None) -> int:
    import argparse

    parser = argparse.ArgumentParser(
        prog="python -m tinytorch.student",
        description="Export your finished notebooks into your installed tinytorch (student build).",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    sp = sub.add_parser("export", help="your notebook's code -> tinytorch/<name>.py")
    sp.add_argument("notebooks", nargs="+", metavar="NOTEBOOK")
    sub.add_parser("status", help="which modules are the reference, a stub, or your code")
    sp = sub.add_parser("reset", help="put back what the course build shipped for MODULE")
    sp.add_argument("module", metavar="MODULE")
    args = parser.parse_args(argv)
    try:
        if args.command == "export":
            for nb in args.notebooks:
                print(export(nb).describe())
        elif args.command == "status":
            for info, kind in status():
                print(f"{info.id:<20} {kind:<10} ({info.release_path})")
        else:
            print(f"restored {reset(args.module)}")
    except StudentError as exc:
        print(f"tinytorch.student: error: {exc}", file=sys.stderr)
        return 1
    return 0

