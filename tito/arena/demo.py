"""The bundled sample submissions and the competition demo that `tito course` runs.

`competitions/samples/<name>/` holds the source of each sample (submission.py, sometimes a
submission.yaml); `expected.yaml` says how each must end in the arena. `build_samples`
trains them into packages (seeded, so the same source gives the same package and the same
leaderboard row), and `run_competition_demo(root)` evaluates them all, checks every
expectation and the database invariants, awards one innovation prize, and prints the
leaderboard.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from tinytorch.arena.harness import ArenaLimits
from tinytorch.arena.package import build_package

from .service import Arena

SAMPLES_DIR = Path(__file__).resolve().parents[2] / "competitions" / "samples"
# samples that need a module that may not exist yet: name -> module
OPTIONAL = {"int8": "tinytorch.quantization", "pruned": "tinytorch.compression",
            "autotuned": "tinytorch.autotuning"}


def sample_dirs(root: str | Path | None = None) -> dict[str, Path]:
    """name -> source folder of every bundled sample whose required module is importable."""
    root = Path(root) if root else SAMPLES_DIR
    if not root.is_dir():
        raise FileNotFoundError(
            f"no sample submissions at {root} (they ship with the source checkout, not the wheel)"
        )
    out = {}
    for d in sorted(p for p in root.iterdir() if (p / "submission.py").is_file()):
        needs = OPTIONAL.get(d.name)
        if needs and importlib.util.find_spec(needs) is None:
            continue
        out[d.name] = d
    return out


def skipped_samples(root: str | Path | None = None) -> dict[str, str]:
    """Samples left out because their module is missing: name -> module."""
    root = Path(root) if root else SAMPLES_DIR
    return {
        d.name: OPTIONAL[d.name]
        for d in sorted(root.iterdir())
        if d.name in OPTIONAL and (d / "submission.py").is_file()
        and importlib.util.find_spec(OPTIONAL[d.name]) is None
    }


def expected_outcomes(root: str | Path | None = None) -> dict[str, dict]:
    root = Path(root) if root else SAMPLES_DIR
    return yaml.safe_load((root / "expected.yaml").read_text(encoding="utf-8"))


def build_samples(dest: str | Path, names=None, say: Callable[[str], None] | None = None
                  ) -> dict[str, Path]:
    """Train every sample (or `names`) into dest/<name>/ -> name -> package folder."""
    dest = Path(dest)
    srcs = sample_dirs()
    out = {}
    for name in names or srcs:
        out[name] = build_package(srcs[name], dest / name, check=False)
        if say:
            say(f"  built {name}")
    return out


def check_outcome(name: str, entry, expected: dict) -> str | None:
    """Why `entry` does not match `expected` (None if it does)."""
    want = expected.get("status", "ok")
    if entry.status != want:
        return f"{name}: expected {want}, got {entry.status} ({entry.error})"
    text = expected.get("message")
    if text and text not in entry.error:
        return f"{name}: the reason should mention {text!r}: {entry.error}"
    return None


@dataclass
class DemoResult:
    arena: Arena
    problems: list[str] = field(default_factory=list)
    html: Path | None = None

    @property
    def ok(self) -> bool:
        return not self.problems


def run_competition_demo(
    root: str | Path,
    say: Callable[[str], None] = print,
    limits: ArenaLimits | None = None,
) -> DemoResult:
    """Build and evaluate every bundled sample in the arena at `root`; print the leaderboard.

    Idempotent: packages are seeded, so a second run finds the same packages in the
    database and evaluates nothing again. `result.ok` is False if any sample ended differently
    from competitions/samples/expected.yaml or the database fails its checks.
    """
    root = Path(root)
    limits = limits or ArenaLimits(wall_seconds=5.0)
    arena = Arena(root / "arena", limits=limits)
    expected = expected_outcomes()
    result = DemoResult(arena)
    for name, module in skipped_samples().items():
        say(f"sample {name} skipped: {module} is not available yet")
    say("building the sample packages (training each one)...")
    packages = build_samples(root / "packages")
    for name, path in packages.items():
        outcome = arena.evaluate(path)
        say(f"  {name:<17} {outcome.summary()}")
        problem = check_outcome(name, outcome.entry, expected.get(name, {}))
        if problem:
            result.problems.append(problem)
    if not any(a["team"] == "pruned" for a in arena.store.awards()) and "pruned" in packages:
        arena.award("pruned", 2, "demo award: CSR storage with uint8 column indices")
    result.problems += [f"database: {p}" for p in arena.problems()]
    say("")
    say(arena.leaderboard_text())
    result.html = arena.write_html()
    say("")
    say(f"HTML leaderboard: {result.html}")
    say(f"reports and Gradescope results.json: {arena.root / 'reports'}, {arena.root / 'results'}")
    if result.problems:
        say("PROBLEMS:")
        for p in result.problems:
            say(f"  {p}")
    return result
