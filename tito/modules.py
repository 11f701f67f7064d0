"""module.yaml: reading, validating, discovering and resolving course modules."""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from .errors import SourceError, TitoError

ID_RE = re.compile(r"^(\d{2})_([a-z][a-z0-9_]*)$")
REQUIRED = {
    "id": str,
    "number": int,
    "name": str,
    "title": str,
    "summary": str,
    "learning_objectives": list,
    "prerequisites": list,
    "exports": list,
    "points": (int, float),
    "estimated_hours": (int, float),
}
# optional: the day the module's solutions may go to students (tito/student_build.py)
OPTIONAL = {"publish_after": dt.date}


@dataclass(frozen=True)
class ModuleSpec:
    """One course module: ``modules/<id>/`` with ``<name>_dev.py``, module.yaml and README.md."""

    id: str  # "15_acceleration": directory, nbgrader assignment id, test/bench prefix
    number: int  # 15: sort order
    name: str  # "acceleration": package file tinytorch/<name>.py and notebook <name>.ipynb
    title: str
    summary: str
    learning_objectives: tuple[str, ...]
    prerequisites: tuple[str, ...]  # module ids or "core"
    exports: tuple[str, ...]  # public names the generated package file must define
    points: float  # must equal the sum of grade-cell points in the source
    estimated_hours: float
    dir: Path = field(compare=False)
    publish_after: dt.date | None = None  # solutions published in student builds from this day

    @property
    def source(self) -> Path:
        return self.dir / f"{self.name}_dev.py"

    @property
    def yaml_path(self) -> Path:
        return self.dir / "module.yaml"

    @property
    def readme(self) -> Path:
        return self.dir / "README.md"

    @property
    def notebook_name(self) -> str:
        return f"{self.name}.ipynb"


def load_module(path: Path | str) -> ModuleSpec:
    """Read and validate ``path`` (a module directory or its module.yaml)."""
    path = Path(path)
    yaml_path = path / "module.yaml" if path.is_dir() or not path.suffix else path
    if not yaml_path.exists():
        raise SourceError(yaml_path, "missing module.yaml")
    try:
        data = yaml.safe_load(yaml_path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = mark.line + 1 if mark is not None else None
        problem = getattr(exc, "problem", None) or exc
        raise SourceError(yaml_path, f"invalid YAML: {problem}", line=line) from None
    if not isinstance(data, dict):
        raise SourceError(yaml_path, "module.yaml must be a mapping of keys to values")

    def fail(problem: str, key: str | None = None):
        raise SourceError(yaml_path, problem, line=_key_line(yaml_path, key) if key else None)

    unknown = sorted(set(data) - set(REQUIRED) - set(OPTIONAL))
    if unknown:
        allowed = ", ".join([*REQUIRED, *OPTIONAL])
        fail(f"unknown key {unknown[0]!r} (allowed: {allowed})", unknown[0])
    publish_after = data.get("publish_after")
    if publish_after is not None and (
        isinstance(publish_after, dt.datetime) or not isinstance(publish_after, dt.date)
    ):
        fail(
            f"publish_after must be a date like 2026-12-01, got {publish_after!r}", "publish_after"
        )
    for key, typ in REQUIRED.items():
        if key not in data:
            fail(f"missing key {key!r}")
        value = data[key]
        if isinstance(value, bool) or not isinstance(value, typ):
            want = typ.__name__ if isinstance(typ, type) else "number"
            fail(f"{key} must be a {want}, got {type(value).__name__} {value!r}", key)
    for key in ("learning_objectives", "prerequisites", "exports"):
        bad = [v for v in data[key] if not isinstance(v, str) or not v.strip()]
        if bad:
            fail(f"{key} must be a list of non-empty strings, got {bad[0]!r}", key)
    if not data["learning_objectives"]:
        fail("learning_objectives must not be empty", "learning_objectives")

    m = ID_RE.fullmatch(data["id"])
    if not m:
        fail(f"id {data['id']!r} must look like '15_acceleration'", "id")
    if int(m.group(1)) != data["number"] or m.group(2) != data["name"]:
        fail(
            f"id {data['id']!r} disagrees with number {data['number']} / name {data['name']!r}",
            "id",
        )
    if yaml_path.parent.name != data["id"]:
        fail(f"id {data['id']!r} must match the directory name {yaml_path.parent.name!r}", "id")
    for pre in data["prerequisites"]:
        pm = ID_RE.fullmatch(pre)
        if pre != "core" and not pm:
            fail(
                f"prerequisite {pre!r} must be 'core' or a module id like '15_acceleration'",
                "prerequisites",
            )
        if pm and int(pm.group(1)) >= data["number"]:
            fail(
                f"prerequisite {pre!r} does not come before module {data['number']}",
                "prerequisites",
            )
    for name in data["exports"]:
        if not name.isidentifier():
            fail(f"export {name!r} is not a Python identifier", "exports")
    if len(set(data["exports"])) != len(data["exports"]):
        fail("exports lists a name twice", "exports")
    if data["points"] <= 0:
        fail(f"points must be positive, got {data['points']}", "points")

    spec = ModuleSpec(
        id=data["id"],
        number=data["number"],
        name=data["name"],
        title=data["title"],
        summary=data["summary"],
        learning_objectives=tuple(data["learning_objectives"]),
        prerequisites=tuple(data["prerequisites"]),
        exports=tuple(data["exports"]),
        points=float(data["points"]),
        estimated_hours=float(data["estimated_hours"]),
        dir=yaml_path.parent.resolve(),
        publish_after=publish_after,
    )
    if not spec.source.exists():
        raise SourceError(spec.source, f"missing module source (module.yaml names {spec.name!r})")
    if not spec.readme.exists():
        raise SourceError(spec.readme, "missing README.md")
    return spec


def _key_line(yaml_path: Path, key: str) -> int | None:
    for i, line in enumerate(yaml_path.read_text(encoding="utf-8").splitlines(), 1):
        if line.startswith(f"{key}:"):
            return i
    return None


def discover_modules(
    root: Path | str, *, errors: list[SourceError] | None = None
) -> list[ModuleSpec]:
    """Every ``root/NN_name/module.yaml``, validated, sorted by number.

    A module that fails validation raises, unless ``errors`` is given: then its error is
    appended there and the module skipped (so work on one module is not blocked by another).
    """
    root = Path(root)
    if not root.is_dir():
        return []
    specs = []
    for d in sorted(root.iterdir()):
        if not (d / "module.yaml").exists():
            continue
        try:
            specs.append(load_module(d))
        except SourceError as exc:
            if errors is None:
                raise
            errors.append(exc)
    seen: dict[int, ModuleSpec] = {}
    for spec in specs:
        if spec.number in seen:
            raise SourceError(
                spec.yaml_path, f"number {spec.number} also used by {seen[spec.number].id}"
            )
        seen[spec.number] = spec
    return sorted(specs, key=lambda s: s.number)


def resolve(
    names: Iterable[str] | None,
    modules: Sequence[ModuleSpec] | None = None,
    *,
    root: Path | str | None = None,
) -> list[ModuleSpec]:
    """Map "15", "15_acceleration", "acceleration" (or a module path) to specs; none -> all."""
    if modules is None:
        if root is None:
            from .project import Project

            root = Project.find().modules_dir
        modules = discover_modules(root)
    names = list(names or [])
    if not names:
        return list(modules)
    out: list[ModuleSpec] = []
    for raw in names:
        key = Path(raw.rstrip("/")).name if "/" in raw else raw
        hit = [
            m
            for m in modules
            if key in (m.id, m.name, str(m.number), f"{m.number:02d}") or key == f"{m.name}_dev.py"
        ]
        if not hit:
            known = ", ".join(m.id for m in modules) or "none (no modules/*/module.yaml)"
            raise TitoError(f"unknown module {raw!r}; known modules: {known}")
        if hit[0] not in out:
            out.append(hit[0])
    return out
