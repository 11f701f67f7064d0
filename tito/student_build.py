"""Student builds: the tinytorch a course hands its students, with no unpublished answer in it.

Two builds come from one source. The learner install (``pip install -e .``) is the full library.
A *student build* has the foundation (everything in the package that is not generated from a
module source: ``tinytorch.core``, datasets, the arena, ``tinytorch.student``) complete, and for
each module:

- **published** (``tito publish MODULE`` recorded it, or its ``publish_after`` date in
  module.yaml has passed): the reference package file;
- **not published**: a stub made from the released notebook's export cells (the same cells a
  student sees, solution regions already replaced by nbgrader's stub), whose unfinished
  functions raise ``NotImplementedError`` naming the function, the exercise and the notebook.

``tito release`` writes the build as a wheel beside the notebooks
(``course/release/tinytorch_student-<version>-py3-none-any.whl``); students install it with
one ``pip install`` and export their own finished notebooks into it
(``python -m tinytorch.student export NOTEBOOK``). Grading uses a build too:
``student_site(project, graded_module)`` is a directory holding such a ``tinytorch`` in which the
graded module is a stub, for the grading workers to import instead of the full library.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import json
import zipfile
from collections.abc import Iterable, Sequence
from pathlib import Path

from . import _io
from .errors import TitoError
from .export import HEADER_PREFIX
from .modules import ModuleSpec, discover_modules, resolve
from .project import Project
from .source import CODE_STUB, ModuleSource, parse_source

DIST_NAME = "tinytorch_student"  # wheel file name prefix (distribution "tinytorch-student")
BASE_VERSION = "0.1.0"
PUBLISHED_FILE = "published.json"  # in the course dir: what `tito publish` recorded
BUILD_FILE = "student_build.json"  # in the course dir: build counter and content digest
ZIP_TIME = (2020, 1, 1, 0, 0, 0)  # fixed timestamps: the same content gives the same wheel
SKIP_DIRS = {"__pycache__", "_shipped"}


def _student_api():
    """``tinytorch.student`` of the package being built (tito runs the same code students do)."""
    from tinytorch import student

    return student


# ---- publication -------------------------------------------------------------------------
def _published_path(project: Project) -> Path:
    return project.course_dir / PUBLISHED_FILE


def recorded_publications(project: Project) -> dict[str, dict]:
    path = _published_path(project)
    if not path.exists():
        return {}
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise TitoError(
            f"{project.rel(path)} is not valid JSON ({exc}); fix or delete it"
        ) from None
    return data if isinstance(data, dict) else {}


def published_modules(
    project: Project, modules: Sequence[ModuleSpec] | None = None, today: dt.date | None = None
) -> dict[str, str]:
    """Module id -> why it is published (recorded by ``tito publish``, or its
    ``publish_after`` date has passed)."""
    modules = modules if modules is not None else discover_modules(project.modules_dir)
    today = today or dt.date.today()
    recorded = recorded_publications(project)
    out: dict[str, str] = {}
    for spec in modules:
        if spec.id in recorded:
            out[spec.id] = f"published with tito publish on {recorded[spec.id].get('on', '?')}"
        elif spec.publish_after is not None and spec.publish_after <= today:
            out[spec.id] = f"publish_after {spec.publish_after.isoformat()} has passed"
    return out


def publish(project: Project, specs: Iterable[ModuleSpec], *, undo: bool = False) -> dict:
    """Record (or with ``undo`` withdraw) the publication of ``specs``' solutions."""
    data = recorded_publications(project)
    for spec in specs:
        if undo:
            data.pop(spec.id, None)
        else:
            now = dt.datetime.now(dt.timezone.utc).isoformat("T", "seconds")
            data.setdefault(spec.id, {"on": now})
    _io.write_text(_published_path(project), json.dumps(data, indent=2, sort_keys=True) + "\n")
    return data


# ---- one module's file -------------------------------------------------------------------
def released_export_cells(src: ModuleSource) -> list[tuple[str, str]]:
    """(cell id, code) of each ``#| export`` cell as the released notebook shows it: every
    solution region replaced by nbgrader's stub at the BEGIN line's indentation."""
    out = []
    for cell in src.export_cells:
        lines = cell.lines
        regions = sorted((r for r in cell.regions if r.kind == "solution"), key=lambda r: r.begin)
        kept: list[str] = []
        i = 0
        while i < len(lines):
            region = next((r for r in regions if r.begin == i), None)
            if region is not None:
                indent = lines[i][: len(lines[i]) - len(lines[i].lstrip())]
                kept += [indent + CODE_STUB[0], indent + CODE_STUB[1]]
                i = region.end + 1
                continue
            if i not in cell.directive_lines:
                kept.append(lines[i])
            i += 1
        if any(r.begin < 0 for r in regions):  # a whole-cell solution: nothing survives
            kept = [CODE_STUB[0], CODE_STUB[1]]
        out.append((cell.cell_id(src.spec.id), "\n".join(kept).strip("\n")))
    return out


def module_info(src: ModuleSource, project: Project, shipped: str):
    student = _student_api()
    spec = src.spec
    # as students see it: relative to the folder that holds the course directory
    release = Path(project.course_dir.name, "release", spec.id, spec.notebook_name)
    return student.ModuleInfo(
        id=spec.id,
        name=spec.name,
        notebook=spec.notebook_name,
        release_path=release.as_posix(),
        export_cells=tuple(c.cell_id(spec.id) for c in src.export_cells),
        exercises=tuple(c.grade_id for c in src.solution_cells if c.grade_id),
        exports=tuple(spec.exports),
        shipped=shipped,
    )


def stub_text(src: ModuleSource, project: Project) -> str:
    """The stub package file of ``src``: its released export cells, stubs that say what to do."""
    info = module_info(src, project, "stub")
    text, _ = _student_api().module_text(
        info, released_export_cells(src), f"stub, complete {info.release_path}"
    )
    return text


def reference_text(src: ModuleSource, project: Project) -> str:
    """The published reference: the generated package file, under a build header."""
    path = project.package_dir / f"{src.spec.name}.py"
    if not path.exists():
        raise TitoError(f"{project.rel(path)} is missing (run tito export {src.spec.id})")
    head = _student_api().HEADER.format(
        name=src.spec.name, what="reference, published", module=src.spec.id
    )
    return head + "\n" + path.read_text(encoding="utf-8")


# ---- the whole package -------------------------------------------------------------------
def _installed_package() -> Path:
    import tinytorch

    return Path(tinytorch.__file__).resolve().parent


def _is_generated(path: Path) -> bool:
    try:
        with path.open(encoding="utf-8") as f:
            return f.readline().startswith(HEADER_PREFIX)
    except (OSError, UnicodeDecodeError):
        return False


def _foundation_files(package: Path, module_names: set[str]) -> list[Path]:
    """Every file of the package that is not a module's generated file (nor bytecode)."""
    out = []
    for path in sorted(package.rglob("*")):
        rel = path.relative_to(package)
        if not path.is_file() or SKIP_DIRS & set(rel.parts[:-1]) or path.suffix == ".pyc":
            continue
        if len(rel.parts) == 1 and path.suffix == ".py":
            if path.stem in module_names or _is_generated(path):
                continue
        out.append(path)
    return out


def build_student_package(
    project: Project | Path | str,
    published: set[str] | Iterable[str],
    dest: Path | str | None = None,
    *,
    modules: Sequence[ModuleSpec] | None = None,
) -> Path:
    """Write a student build of ``tinytorch`` into ``dest/tinytorch/`` (default
    ``<root>/build/student/``) and return ``dest``: foundation complete, the modules in
    ``published`` as their reference, every other module as a stub, plus the manifest
    ``tinytorch/_course.json`` that ``tinytorch.student`` reads. ``dest`` can go on sys.path."""
    if not isinstance(project, Project):
        project = Project.at(project)
    published = set(published)
    specs = list(modules) if modules is not None else discover_modules(project.modules_dir)
    unknown = published - {s.id for s in specs}
    if unknown:
        raise TitoError(f"cannot publish unknown module(s) {', '.join(sorted(unknown))}")
    dest = Path(dest) if dest is not None else project.root / "build" / "student"
    student = _student_api()
    files: dict[str, bytes] = {}
    names = {s.name for s in specs}
    for package in dict.fromkeys([_installed_package(), project.package_dir.resolve()]):
        if not package.is_dir():
            continue
        for path in _foundation_files(package, names):
            files.setdefault(path.relative_to(package).as_posix(), path.read_bytes())
    entries = {}
    for spec in specs:
        src = parse_source(spec)
        if spec.id in published:
            text, shipped = reference_text(src, project), "reference"
        else:
            text, shipped = stub_text(src, project), "stub"
        files[f"{spec.name}.py"] = text.encode("utf-8")
        files[f"{student.SHIPPED_DIR}/{spec.name}.py"] = text.encode("utf-8")
        entries[spec.id] = module_info(src, project, shipped).to_json()
    files[student.MANIFEST] = (
        json.dumps({"modules": entries}, indent=2, sort_keys=True) + "\n"
    ).encode("utf-8")
    pkg = dest / "tinytorch"
    staging = dest.with_name(dest.name + ".tmp")
    if staging.exists():
        _io.remove_tree(staging)
    for rel, data in sorted(files.items()):
        path = staging / "tinytorch" / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    if dest.exists():
        _io.remove_tree(dest)
    staging.rename(dest)
    assert pkg.is_dir()
    return dest


def _tree_files(root: Path) -> list[tuple[str, bytes]]:
    return [
        (p.relative_to(root).as_posix(), p.read_bytes())
        for p in sorted(root.rglob("*"))
        if p.is_file() and "__pycache__" not in p.parts
    ]


def _requirements(project: Project) -> list[str]:
    """The library's runtime dependencies, from pyproject.toml (the student build needs the
    same ones; nothing of tito's)."""
    try:
        import tomllib
    except ImportError:  # Python 3.10
        return ["numpy>=1.24", "matplotlib>=3.7", "pyyaml>=6.0", "tqdm>=4.60"]
    for root in (project.root, Path(__file__).resolve().parent.parent):
        path = root / "pyproject.toml"
        if path.exists():
            data = tomllib.loads(path.read_text(encoding="utf-8"))
            return list(data.get("project", {}).get("dependencies", []))
    return []


def write_wheel(tree: Path, out_dir: Path, version: str, requires: Sequence[str]) -> Path:
    """A pure-Python wheel of ``tree/tinytorch`` (written directly: a wheel is a zip with a
    dist-info; no build backend or network needed). Same content, same bytes."""
    dist = f"{DIST_NAME}-{version}.dist-info"
    members = _tree_files(tree)
    metadata = "\n".join(
        [
            "Metadata-Version: 2.1",
            "Name: tinytorch-student",
            f"Version: {version}",
            "Summary: TinyTorch course student build (unpublished solutions are stubs)",
            "Requires-Python: >=3.10",
            *[f"Requires-Dist: {r}" for r in requires],
            "",
        ]
    )
    members += [
        (f"{dist}/METADATA", metadata.encode()),
        (
            f"{dist}/WHEEL",
            b"Wheel-Version: 1.0\nGenerator: tito\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
        ),
        (f"{dist}/top_level.txt", b"tinytorch\n"),
        (
            f"{dist}/entry_points.txt",
            b"[console_scripts]\ntinytorch-student = tinytorch.student:main\n",
        ),
    ]
    record = []
    for name, data in members:
        digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
        record.append(f"{name},sha256={digest},{len(data)}")
    record.append(f"{dist}/RECORD,,")
    members.append((f"{dist}/RECORD", ("\n".join(record) + "\n").encode()))
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / f"{DIST_NAME}-{version}-py3-none-any.whl"
    tmp = path.with_suffix(".tmp")
    with zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in members:
            info = zipfile.ZipInfo(name, ZIP_TIME)
            info.external_attr = 0o644 << 16
            info.compress_type = zipfile.ZIP_DEFLATED
            zf.writestr(info, data)
    tmp.replace(path)
    return path


def _digest(tree: Path) -> str:
    h = hashlib.sha256()
    for name, data in _tree_files(tree):
        h.update(name.encode() + b"\0" + hashlib.sha256(data).digest())
    return h.hexdigest()


def release_student_build(
    project: Project, published: set[str] | None = None, today: dt.date | None = None
) -> Path:
    """Build the student wheel for the course's current publication state into
    ``course/release/`` (replacing the previous one; the version goes up whenever the
    content changes, so ``pip install --upgrade`` picks it up)."""
    specs = discover_modules(project.modules_dir)
    if published is None:
        published = set(published_modules(project, specs, today))
    import tempfile

    with tempfile.TemporaryDirectory(prefix="tito-student-build-") as tmp:
        return _release(
            project,
            specs,
            published,
            build_student_package(project, published, Path(tmp) / "student", modules=specs),
        )


def _release(project: Project, specs, published: set[str], tree: Path) -> Path:
    state_path = project.course_dir / BUILD_FILE
    state = {}
    if state_path.exists():
        try:
            state = json.loads(state_path.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError):
            state = {}
    digest = _digest(tree)
    number = int(state.get("build", 0)) + (0 if state.get("digest") == digest else 1)
    version = f"{BASE_VERSION}.post{number}"
    out_dir = project.course_dir / "release"
    for old in out_dir.glob(f"{DIST_NAME}-*.whl"):
        if old.name != f"{DIST_NAME}-{version}-py3-none-any.whl":
            old.unlink()
    wheel = write_wheel(tree, out_dir, version, _requirements(project))
    state = {"build": number, "digest": digest, "published": sorted(published)}
    _io.write_text(state_path, json.dumps(state, indent=2) + "\n")
    return wheel


def student_site(project: Project, graded_module: str, dest: Path | str | None = None) -> Path:
    """A directory to put first on ``sys.path`` (or bind-mount) in a process that runs a
    submission of ``graded_module``: its ``tinytorch`` has the published modules and the graded
    module's prerequisites as references (the checks need them) and everything else, the
    graded module always included, as stubs. Outside the course directory, which grading
    processes may not read."""
    specs = discover_modules(project.modules_dir)
    graded = resolve([graded_module], specs)[0]
    refs = set(published_modules(project, specs)) | {p for p in graded.prerequisites if p != "core"}
    refs.discard(graded.id)
    dest = Path(dest) if dest else project.root / "build" / "student-site" / graded.id
    key = _inputs_key(project, specs, refs)
    stamp = dest / ".inputs"
    if stamp.exists() and stamp.read_text(encoding="utf-8") == key:
        return dest  # nothing it is made from changed since the last build
    build_student_package(project, refs, dest, modules=specs)
    stamp.write_text(key, encoding="utf-8")
    return dest


def _inputs_key(project: Project, specs: Sequence[ModuleSpec], refs: set[str]) -> str:
    """Digest of everything a build is made from (file names, sizes, modification times)."""
    h = hashlib.sha256(json.dumps(sorted(refs)).encode())
    roots = [s.dir for s in specs] + [project.package_dir, _installed_package()]
    for root in dict.fromkeys(roots):
        for path in sorted(root.rglob("*")) if root.is_dir() else []:
            if path.is_file() and "__pycache__" not in path.parts:
                st = path.stat()
                h.update(f"{path}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
    return h.hexdigest()


def use_student_site(site: str | Path) -> None:
    """Make this process import ``tinytorch`` from ``site`` (a grading worker's start-up):
    first on ``sys.path``; if tinytorch is already imported (an inline executor), its
    submodules not yet imported resolve in the student build first."""
    import sys

    site = str(Path(site).resolve())
    if site not in sys.path:
        sys.path.insert(0, site)
    pkg = sys.modules.get("tinytorch")
    if pkg is not None and hasattr(pkg, "__path__"):
        inner = str(Path(site) / "tinytorch")
        if inner not in pkg.__path__:
            pkg.__path__.insert(0, inner)
    # imported now, in the template, as the full library would be: a first import inside a
    # grading process would run the package's set-up under the guard
    import tinytorch  # noqa: F401


def student_site_enabled(project: Project) -> bool:
    """``c.TitoAutograde.student_build`` (default True) from nbgrader_config.py."""
    from . import nbg

    return bool(nbg.load_config(project).TitoAutograde.get("student_build", True))
