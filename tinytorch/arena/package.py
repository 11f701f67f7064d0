"""Submission packages: read a folder or zip safely, check it, hash it; build one from source.

A package is a folder (or a zip of one):

    submission.py      one CompetitionSubmission subclass (+ optional helper *.py modules)
    submission.yaml    team, category, tags, description, optional entry (see check_metadata)
    weights/           everything the model needs; its bytes are the model size
    *.md               optional notes (README.md, REPORT.md)

Anything else outside weights/ is refused: every byte a model needs must be counted as size.
The hash covers every file's relative path and contents (not zip timestamps), so the same
package submitted as a folder or as a zip, twice, is the same submission.
"""

from __future__ import annotations

import hashlib
import importlib.util
import re
import shutil
import stat
import sys
import zipfile
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

import numpy as np
import yaml

from tinytorch.competition import (
    METADATA_FILE,
    SOURCE_FILE,
    TEAM_PATTERN,
    WEIGHTS_DIR,
    CompetitionRules,
    CompetitionSubmission,
    check_metadata,
    check_scores,
)

MAX_FILES = 64  # files in a package
MAX_PACKAGE_BYTES = 16 * 2**20  # all files together (zips: uncompressed)
MAX_CODE_BYTES = 64 * 2**10  # all *.py files together: code, not hidden weights
MAX_NOTE_BYTES = 32 * 2**10  # all *.md files together
IGNORED_NAMES = {"__pycache__", ".DS_Store", ".ipynb_checkpoints", "__MACOSX"}


@dataclass
class Package:
    """A package copied into `path`, with what the checks found."""

    source: str  # what was submitted (a folder or a zip path)
    path: Path  # the package root inside the harness's working copy
    hash: str  # sha256 over relative paths and contents
    meta: dict | None  # submission.yaml, if it could be read
    problems: list[str] = field(default_factory=list)  # empty = well-formed
    files: list[str] = field(default_factory=list)  # relative posix paths
    model_bytes: int | None = None  # bytes under weights/

    @property
    def ok(self) -> bool:
        return not self.problems

    @property
    def team(self) -> str:
        """The team from submission.yaml if it is valid, else a name made from the source."""
        team = (self.meta or {}).get("team")
        if isinstance(team, str) and TEAM_PATTERN.fullmatch(team):
            return team
        stem = re.sub(r"[^A-Za-z0-9._-]", "-", Path(self.source).stem).strip("-.")[:40]
        return stem or "unnamed"

    @property
    def entry(self) -> str | None:
        entry = (self.meta or {}).get("entry")
        return entry if isinstance(entry, str) else None


def _skip(rel: PurePosixPath) -> bool:
    return any(part in IGNORED_NAMES for part in rel.parts) or rel.suffix == ".pyc"


def _copy_folder(src: Path, dest: Path, problems: list[str]) -> None:
    for path in sorted(src.rglob("*")):
        rel = PurePosixPath(path.relative_to(src).as_posix())
        if _skip(rel):
            continue
        if path.is_symlink():
            problems.append(f"{rel} is a symbolic link (not allowed in a package)")
            continue
        target = dest / rel
        if path.is_dir():
            target.mkdir(parents=True, exist_ok=True)
        elif path.is_file():
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(path, target)


def _extract_zip(src: Path, dest: Path, problems: list[str]) -> None:
    try:
        zf = zipfile.ZipFile(src)
    except (zipfile.BadZipFile, OSError) as exc:
        problems.append(f"{src.name} is not a readable zip file ({exc})")
        return
    with zf:
        infos = zf.infolist()
        total = sum(i.file_size for i in infos)
        if len(infos) > 4 * MAX_FILES or total > MAX_PACKAGE_BYTES:
            problems.append(
                f"the zip holds {len(infos)} entries / {total} bytes uncompressed (limits "
                f"{MAX_FILES} files, {MAX_PACKAGE_BYTES} bytes)"
            )
            return
        for info in infos:
            name = info.filename
            rel = PurePosixPath(name)
            absolute = name.startswith("/") or "\\" in name or re.match(r"^[A-Za-z]:", name)
            if absolute or ".." in rel.parts:
                problems.append(f"zip entry {name!r} would be written outside the package")
                continue
            if stat.S_ISLNK(info.external_attr >> 16):
                problems.append(f"zip entry {name!r} is a symbolic link (not allowed)")
                continue
            if _skip(rel) or info.is_dir():
                continue
            target = dest / rel
            try:
                target.parent.mkdir(parents=True, exist_ok=True)
                if target.is_dir():
                    raise IsADirectoryError(f"{name!r} is also a folder")
                with zf.open(info) as fin, open(target, "wb") as fout:
                    _copy_capped(fin, fout, info.file_size)
            except (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, EOFError, ValueError,
                    NotImplementedError, RuntimeError) as exc:
                # a header that lies (size, CRC, method), a file and a folder of one name, an
                # encrypted entry: this package's problem, never the batch's
                problems.append(f"zip entry {name!r} cannot be extracted: {exc}")
                continue
            if target.stat().st_size != info.file_size:
                problems.append(f"zip entry {name!r} does not match its declared size")
    # a zip of the folder itself: use the single top-level folder as the root
    children = [p for p in dest.iterdir()]
    if len(children) == 1 and children[0].is_dir() and not (dest / METADATA_FILE).exists():
        inner = children[0]
        for p in inner.iterdir():
            p.rename(dest / p.name)
        inner.rmdir()


def _copy_capped(fin, fout, declared: int) -> None:
    """Copy at most ``declared`` bytes (+1 to notice a lie): a header that claims a small
    file cannot make us write a large one."""
    left = declared + 1
    while left > 0:
        chunk = fin.read(min(65536, left))
        if not chunk:
            return
        fout.write(chunk)
        left -= len(chunk)
    raise ValueError(f"holds more than the {declared} bytes its header declares")


def package_hash(root: Path) -> str:
    h = hashlib.sha256()
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        rel = path.relative_to(root).as_posix()
        h.update(rel.encode("utf-8") + b"\0")
        h.update(hashlib.sha256(path.read_bytes()).hexdigest().encode("ascii") + b"\0")
    return h.hexdigest()


def read_package(source: str | Path, workdir: str | Path) -> Package:
    """Copy (or safely extract) `source` to workdir/package and check it. Never executes it."""
    source = Path(source)
    if source.is_symlink():
        raise ValueError(f"the package {source} is a symbolic link (not allowed: submit the file)")
    if not source.exists():
        raise FileNotFoundError(f"no package at {source}")
    root = Path(workdir) / "package"
    if root.exists():
        shutil.rmtree(root)
    root.mkdir(parents=True)
    problems: list[str] = []
    if source.is_dir():
        _copy_folder(source, root, problems)
    else:
        _extract_zip(source, root, problems)
    if problems and source.is_file():  # a dangerous zip: hash the bytes we were given
        digest = hashlib.sha256(source.read_bytes()).hexdigest()
    else:
        digest = package_hash(root)
    pkg = Package(str(source), root, digest, None, problems)
    pkg.files = sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file())
    _check(pkg)
    return pkg


def _check(pkg: Package) -> None:
    root, problems = pkg.path, pkg.problems
    if len(pkg.files) > MAX_FILES:
        problems.append(f"{len(pkg.files)} files (at most {MAX_FILES})")
    total = sum((root / f).stat().st_size for f in pkg.files)
    if total > MAX_PACKAGE_BYTES:
        problems.append(f"{total} bytes in total (at most {MAX_PACKAGE_BYTES})")
    meta_path = root / METADATA_FILE
    if not meta_path.is_file():
        problems.append(f"missing {METADATA_FILE} (team, category, tags, description)")
    else:
        try:
            pkg.meta = yaml.safe_load(meta_path.read_text(encoding="utf-8"))
        except (yaml.YAMLError, UnicodeDecodeError) as exc:
            mark = getattr(exc, "problem_mark", None)  # where the parser stopped
            at = f" (line {mark.line + 1}, column {mark.column + 1})" if mark is not None else ""
            problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
            problems.append(f"{METADATA_FILE} is not valid YAML{at}: {problem}")
        else:
            problems.extend(f"{METADATA_FILE}: {p}" for p in check_metadata(pkg.meta))
    if not (root / SOURCE_FILE).is_file():
        problems.append(f"missing {SOURCE_FILE} (the CompetitionSubmission subclass)")
    code = notes = 0
    weights = 0
    for rel in pkg.files:
        path = root / rel
        parts = PurePosixPath(rel).parts
        size = path.stat().st_size
        if parts[0] == WEIGHTS_DIR and len(parts) > 1:
            weights += size
        elif len(parts) == 1 and rel.endswith(".py"):
            code += size
            try:
                compile(path.read_bytes(), rel, "exec", dont_inherit=True)
            except SyntaxError as exc:
                problems.append(f"{rel} line {exc.lineno}: syntax error: {exc.msg}")
            except ValueError as exc:  # null bytes
                problems.append(f"{rel}: not Python source ({exc})")
        elif len(parts) == 1 and rel.endswith(".md"):
            notes += size
        elif rel != METADATA_FILE:
            problems.append(
                f"{rel} is outside {WEIGHTS_DIR}/ (every file the model needs must be in "
                f"{WEIGHTS_DIR}/ so it counts as model size; code goes in top-level *.py)"
            )
    if code > MAX_CODE_BYTES:
        problems.append(f"{code} bytes of Python (at most {MAX_CODE_BYTES}: code, not weights)")
    if notes > MAX_NOTE_BYTES:
        problems.append(f"{notes} bytes of notes (at most {MAX_NOTE_BYTES})")
    if weights == 0:
        problems.append(f"no weights: {WEIGHTS_DIR}/ is missing or empty")
    pkg.model_bytes = weights or None


# ------------------------------------------------------------------------------------ build
def load_submission_class(source: Path, entry: str | None = None) -> type:
    """Import `source` (a submission.py) under a private name; return its submission class."""
    source = Path(source).resolve()
    name = f"_tt_submission_{hashlib.sha1(str(source).encode()).hexdigest()[:12]}"
    spec = importlib.util.spec_from_file_location(name, source)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    sys.path.insert(0, str(source.parent))
    keep, sys.dont_write_bytecode = sys.dont_write_bytecode, True  # no __pycache__ in sources
    try:
        spec.loader.exec_module(module)
    finally:
        sys.path.remove(str(source.parent))
        sys.dont_write_bytecode = keep
    if entry:
        cls = getattr(module, entry, None)
        if not (isinstance(cls, type) and issubclass(cls, CompetitionSubmission)):
            raise ValueError(f"{source} has no CompetitionSubmission subclass {entry!r}")
        return cls
    found = [
        v
        for v in vars(module).values()
        if isinstance(v, type)
        and issubclass(v, CompetitionSubmission)
        and v is not CompetitionSubmission
        and v.__module__ == name
    ]
    if len(found) != 1:
        raise ValueError(
            f"{source} must define exactly one CompetitionSubmission subclass, found "
            f"{[c.__name__ for c in found]}"
        )
    return found[0]


def build_package(
    src: str | Path,
    dest: str | Path,
    *,
    rules: CompetitionRules | None = None,
    train: bool = True,
    check: bool = True,
    say=None,
) -> Path:
    """Build a package folder from a source folder holding submission.py (+ submission.yaml).

    Trains the submission (`train(x, y, budget)` on the digits training split, then
    `optimize()`), saves its weights and writes submission.yaml from the class attributes
    unless the folder has one. `train=False` keeps an existing weights/ folder. With
    `check=True` (what `tito competition package` does) the result must pass the arena's
    package checks and answer one query with valid scores, or ValueError says why.
    """
    from tinytorch.datasets import load_digits

    src, dest = Path(src), Path(dest)
    rules = rules or CompetitionRules()
    if not (src / SOURCE_FILE).is_file():
        raise ValueError(f"{src} has no {SOURCE_FILE}")
    meta_src = src / METADATA_FILE
    entry = meta = None
    if meta_src.is_file():
        try:
            meta = yaml.safe_load(meta_src.read_text(encoding="utf-8"))
            entry = meta.get("entry") if isinstance(meta, dict) else None
        except yaml.YAMLError:
            meta = None
    cls = load_submission_class(src / SOURCE_FILE, entry if isinstance(entry, str) else None)
    sub = cls()
    if check:  # the metadata first: minutes of training must not end in "bad team name"
        if meta_src.is_file() and meta is None:
            raise ValueError(f"{meta_src} is empty or not valid YAML; nothing was trained")
        problems = check_metadata(meta if meta_src.is_file() else sub.metadata())
        if problems:
            where = meta_src if meta_src.is_file() else f"the metadata of {cls.__name__}"
            raise ValueError(f"{where}: {'; '.join(problems)}; nothing was trained")
    if src.resolve() != dest.resolve():
        if dest.exists():
            shutil.rmtree(dest)
        dest.mkdir(parents=True)
        for path in src.iterdir():
            if path.is_file() and path.suffix in (".py", ".md", ".yaml"):
                shutil.copyfile(path, dest / path.name)
        if not train and (src / WEIGHTS_DIR).is_dir():
            shutil.copytree(src / WEIGHTS_DIR, dest / WEIGHTS_DIR)
    if train:
        x, y = load_digits("train")
        report = sub.train(x, y, rules.train_budget_seconds)
        sub.optimize()
        if (dest / WEIGHTS_DIR).exists():
            shutil.rmtree(dest / WEIGHTS_DIR)
        sub.save(dest / WEIGHTS_DIR)
        if say:
            say(f"trained {cls.__name__}: {report}")
    if not (dest / METADATA_FILE).exists():
        (dest / METADATA_FILE).write_text(yaml.safe_dump(sub.metadata(), sort_keys=False))
    if check:
        import tempfile

        with tempfile.TemporaryDirectory() as tmp:
            pkg = read_package(dest, tmp)
        if pkg.problems:
            raise ValueError(f"package {dest} is malformed: " + "; ".join(pkg.problems))
        fresh = cls()
        fresh.load(dest / WEIGHTS_DIR)
        x_test, _ = load_digits("val")
        check_scores(fresh.predict(np.asarray(x_test[:1])), 1)
    return dest
