"""Local evaluation: run a package in sandboxes and score it on the hidden set, keeping nothing.

    ev = Evaluator()                               # default rules and limits
    entry = ev.evaluate("my_team/")                # or a .zip -> competition.Entry
    print(entry.status, entry.acc_public, entry.latency_p50_ms)

Per package: read and check it (never executing it), then two sandboxed runs (`sandbox.py`):
the inference run (packaged weights, MLPerf single-stream latency, predictions on the shuffled
hidden inputs) and the training run (fresh instance, no weights, `train(x, y, budget)` timed,
then predictions). Only this process holds the labels; it scores the predictions on the public
and private parts. Any failure becomes the entry's status with the reason.

This is what a student runs on their own package. The course tool's `tito.arena.Arena` builds
on `Evaluator`: it records every evaluation in the SQLite leaderboard and writes the Gradescope
results.json, the performance report and the HTML views.
"""

from __future__ import annotations

import os
import platform
import re
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

import tinytorch.datasets as _datasets
from tinytorch.competition import (
    CompetitionRules,
    Entry,
    public_private_split,
    split_accuracies,
)

from .package import Package, read_package
from .sandbox import RunOutcome, SandboxLimits, pick_cpu, run_phase

DIGITS_FILE = Path(__file__).resolve().parents[1] / "datasets" / "digits.npz"

# path characters: anything but whitespace, quotes, separators of prose and of Python reprs
_SEG = r"[^\s'\"/:,;()\[\]{}<>|]+"
_ABSOLUTE = re.compile(rf"(?<![\w.~>/-])/(?:{_SEG}/)+({_SEG})")  # two or more segments
_SANDBOX = re.compile(r"<tmp>/tt-arena-[^/\s'\"]+/run-(?:infer|train)/")


def public_text(text: str, roots: dict[str, str] | None = None) -> str:
    """`text` with no absolute path of the machine it ran on: a reason or output shown on the
    public board, results.json and the reports. Known folders become labels ("<tinytorch>",
    "<arena>", "<python>", "<tmp>", "~"), a sandbox's own prefix disappears ("submission/..."),
    and any other absolute path keeps only its last part ("…/name")."""
    if not text:
        return text
    known = dict(roots or {})
    known.setdefault(str(Path(__file__).resolve().parents[1]), "<tinytorch>")
    for prefix in {sys.prefix, sys.base_prefix, sys.exec_prefix}:
        known.setdefault(str(Path(prefix).resolve()), "<python>")
        known.setdefault(prefix, "<python>")
    known.setdefault(str(Path(tempfile.gettempdir()).resolve()), "<tmp>")
    known.setdefault(tempfile.gettempdir(), "<tmp>")
    known.setdefault(str(Path.home()), "~")
    for root in sorted((r for r in known if len(r) > 1), key=len, reverse=True):
        pattern = re.escape(root.rstrip("/")) + r"(?=/|[\s'\":,;()\[\]{}|]|$)"
        text = re.sub(pattern, known[root].replace("\\", "\\\\"), text)
    text = _SANDBOX.sub("", text)
    return _ABSOLUTE.sub(lambda m: "…/" + m.group(1), text)


@dataclass(frozen=True)
class ArenaLimits:
    """How the arena runs each package. Tests shorten `wall_seconds` to catch hangs fast."""

    wall_seconds: float = 30.0  # inference run: killed after this wall time ("timeout")
    cpu_seconds: float = 60.0  # RLIMIT_CPU of each run ("cpu_limit")
    memory_bytes: int = 1 << 30  # RLIMIT_AS of each run ("memory"); numpy needs ~200 MiB
    file_bytes: int = 16 << 20  # RLIMIT_FSIZE: the largest file a run may write ("file_size")
    output_bytes: int = 1 << 20  # stdout + stderr bytes before a run is killed ("output")
    open_files: int = 256  # RLIMIT_NOFILE
    train_slack_seconds: float = 15.0  # training run wall limit = budget + this (imports etc.)
    warmup: int = 50  # untimed single-stream queries before the timed passes
    repeats: int = 5  # timed passes over all hidden inputs; latency = median of the passes
    cpu: int | None = None  # CPU every run is pinned to (None: the last one available)

    def for_phase(self, phase: str, rules: CompetitionRules) -> SandboxLimits:
        wall = self.wall_seconds
        if phase == "train":
            wall = rules.train_budget_seconds + self.train_slack_seconds
        return SandboxLimits(
            wall_seconds=wall,
            cpu_seconds=self.cpu_seconds if phase == "infer" else max(self.cpu_seconds, wall),
            memory_bytes=self.memory_bytes,
            file_bytes=self.file_bytes,
            output_bytes=self.output_bytes,
            open_files=self.open_files,
        )


@dataclass
class HiddenSet:
    """The hidden test set in the order the submissions see it. Labels stay in this process."""

    inputs: np.ndarray  # (n, 64) float32, shuffled
    labels: np.ndarray  # (n,) int64, same order
    public_idx: np.ndarray
    private_idx: np.ndarray

    @classmethod
    def from_digits(cls, rules: CompetitionRules) -> HiddenSet:
        x, y = _datasets.load_digits("test")
        order = np.random.default_rng(rules.split_seed).permutation(len(y))
        pub, priv = public_private_split(len(y), rules.public_fraction, seed=rules.split_seed + 1)
        return cls(np.ascontiguousarray(x[order]), y[order], pub, priv)


def describe_machine(cpu: int | None) -> dict:
    """The standardized hardware a result was measured on, stored with every evaluation."""
    model = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return {
        "cpu_model": model,
        "logical_cpus": os.cpu_count(),
        "pinned_cpu": cpu,
        "platform": platform.platform(),
        "python": platform.python_version(),
        "numpy": np.__version__,
        "blas_threads": 1,
    }


class Evaluator:
    """Evaluates packages in sandboxes on the hidden set; stores nothing (see the docstring)."""

    def __init__(
        self,
        rules: CompetitionRules | None = None,
        limits: ArenaLimits | None = None,
        python: str | None = None,
        sandboxed: bool = True,
    ):
        self.rules = rules or CompetitionRules()
        self.limits = limits or ArenaLimits()
        self.python = python
        # behind the OS boundary (boundary.py); False only for trusted code (--no-sandbox)
        self.sandboxed = sandboxed
        self.cpu = self.limits.cpu if self.limits.cpu is not None else pick_cpu()
        self._hidden: HiddenSet | None = None

    @property
    def hidden(self) -> HiddenSet:
        if self._hidden is None:
            self._hidden = HiddenSet.from_digits(self.rules)
        return self._hidden

    @property
    def forbidden_paths(self) -> list[str]:
        """What no submission may read: the bundled test data (the arena adds its own files)."""
        return [str(DIGITS_FILE)]

    @property
    def public_roots(self) -> dict[str, str]:
        """Folders of this machine named by a label in public text (the arena adds its own)."""
        return {}

    # -- evaluation --------------------------------------------------------------------------
    def evaluate(self, source: str | Path) -> Entry:
        """Evaluate one package (folder or zip) -> its scored `Entry` (submission_id 0)."""
        with tempfile.TemporaryDirectory(prefix="tt-arena-") as tmp:
            pkg = read_package(source, tmp)
            return entry_from_evaluation(pkg, self._run_all(pkg, Path(tmp)))

    def _sandbox(self, pkg: Package, phase: str, tmp: Path) -> Path:
        box = tmp / f"run-{phase}"
        box.mkdir()
        ignore = shutil.ignore_patterns("weights") if phase == "train" else None
        shutil.copytree(pkg.path, box / "submission", ignore=ignore)
        np.save(box / "inputs.npy", self.hidden.inputs)
        if phase == "train":
            x, y = _datasets.load_digits("train")
            np.save(box / "train_x.npy", x)
            np.save(box / "train_y.npy", y)
        return box

    def _run(self, pkg: Package, phase: str, tmp: Path) -> RunOutcome:
        if self.sandboxed:  # no boundary, no evaluation (BoundaryUnavailable says how to fix)
            from . import boundary

            boundary.require(False, "the arena runner")
        box = self._sandbox(pkg, phase, tmp)
        spec = {
            "phase": phase,
            "entry": pkg.entry,
            "warmup": self.limits.warmup,
            "repeats": self.limits.repeats,
            "budget_seconds": self.rules.train_budget_seconds,
            "cpu": self.cpu,
            "forbidden_paths": self.forbidden_paths,
        }
        out = run_phase(
            box,
            spec,
            self.limits.for_phase(phase, self.rules),
            python=self.python,
            boundary=self.sandboxed,
        )
        if out.ok:
            labels = out.result.get("labels")
            n = len(self.hidden.labels)
            if not (
                isinstance(labels, list)
                and len(labels) == n
                and all(isinstance(v, int) and 0 <= v < 10 for v in labels)
            ):
                out.ok, out.kind = False, "crash"
                out.message = f"the runner returned no valid labels for the {n} hidden inputs"
        return out

    def _run_all(self, pkg: Package, tmp: Path, timings: dict | None = None) -> dict:
        runs: dict[str, RunOutcome] = {}
        timings = {} if timings is None else timings
        for phase in ([] if pkg.problems else ["infer", "train"]):
            t0 = time.perf_counter()
            runs[phase] = self._run(pkg, phase, tmp)
            timings[phase] = time.perf_counter() - t0
            if not runs[phase].ok:
                break
        return self.evaluation(pkg, runs)

    def evaluation(self, pkg: Package, runs: dict[str, RunOutcome]) -> dict:
        """The stored evaluation of `pkg` from its sandboxed runs ({"infer": ..., "train": ...};
        they may come from other machines, tito/arena/cluster.py). Scored here: only this
        process holds the labels."""
        ev = {
            "status": "ok",
            "error": "",
            "acc_public": None,
            "acc_private": None,
            "speed_acc_public": None,
            "speed_acc_private": None,
            "train_seconds": None,
            "latency_p50_ms": None,
            "latency_p90_ms": None,
            "latency_passes": [],
            "model_bytes": None,
            "peak_rss_kb": None,
            "base_rss_kb": None,
            "machine": describe_machine(self.cpu),
            "output_head": "",
        }
        # every reason and output is shown to others: no absolute path of this machine in them
        roots = self.public_roots
        if pkg.problems:
            ev["status"] = "malformed"
            ev["error"] = public_text("; ".join(pkg.problems), roots)[:2000]
            return ev
        for phase, label in (("infer", "inference run"), ("train", "training run")):
            run = runs[phase]
            if run.stdout_head:
                ev["output_head"] += f"[{label}]\n{public_text(run.stdout_head, roots)}\n"
            if not run.ok:
                ev["status"] = run.kind
                ev["error"] = f"{label}: {public_text(run.message, roots)}"
                ev["peak_rss_kb"] = run.peak_rss_kb
                return ev
        if isinstance(runs["infer"].extra, dict) and runs["infer"].extra.get("machine"):
            ev["machine"] = dict(runs["infer"].extra["machine"])  # where latency was measured
        infer, train = runs["infer"].result, runs["train"].result
        h = self.hidden
        ev["acc_public"], ev["acc_private"] = split_accuracies(
            np.array(infer["labels"]), h.labels, h.public_idx, h.private_idx
        )
        ev["speed_acc_public"], ev["speed_acc_private"] = split_accuracies(
            np.array(train["labels"]), h.labels, h.public_idx, h.private_idx
        )
        ev["train_seconds"] = float(train["train_seconds"])
        ev["latency_p50_ms"] = float(infer["p50_ms"])
        ev["latency_p90_ms"] = float(infer["p90_ms"])
        ev["latency_passes"] = [float(v) for v in infer["repeats_p50_ms"]]
        ev["model_bytes"] = int(pkg.model_bytes)
        ev["peak_rss_kb"] = int(runs["infer"].peak_rss_kb)
        ev["base_rss_kb"] = int(infer.get("base_rss_kb") or 0)
        ev["machine"]["limits"] = infer.get("limits", {})
        return ev


def entry_from_evaluation(pkg: Package, ev: dict, submission_id: int = 0) -> Entry:
    """The leaderboard's view of one evaluation (`Evaluator.evaluation`) of `pkg`."""
    meta = pkg.meta if isinstance(pkg.meta, dict) else {}
    tags = meta.get("tags") if isinstance(meta.get("tags"), list) else []
    return Entry(
        team=pkg.team,
        submission_id=submission_id,
        status=ev["status"],
        error=ev["error"],
        acc_public=ev["acc_public"],
        acc_private=ev["acc_private"],
        speed_acc_public=ev["speed_acc_public"],
        speed_acc_private=ev["speed_acc_private"],
        train_seconds=ev["train_seconds"],
        latency_p50_ms=ev["latency_p50_ms"],
        latency_p90_ms=ev["latency_p90_ms"],
        model_bytes=ev["model_bytes"],
        peak_rss_kb=ev["peak_rss_kb"],
        category=str(meta.get("category") or "")[:40],
        tags=tuple(str(t)[:32] for t in tags[:10]),
    )
