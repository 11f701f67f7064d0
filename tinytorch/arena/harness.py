"""The arena: evaluate packages in sandboxes, score them on the hidden set, keep the leaderboard.

    arena = Arena("course/competition")            # the rules are stored with the database
    outcome = arena.evaluate("my_team/")           # or a .zip; same package -> same row
    print(arena.leaderboard_text())                # public view; final=True for the private one

Per package: read and check it (never executing it), then two sandboxed runs (`sandbox.py`):
the inference run (packaged weights, MLPerf single-stream latency, predictions on the shuffled
hidden inputs) and the training run (fresh instance, no weights, `train(x, y, budget)` timed,
then predictions). Only this process holds the labels; it scores the predictions on the public
and private parts, records one row in SQLite, and writes a Gradescope results.json and a
performance report. Any failure becomes that row's status with the reason.
"""

from __future__ import annotations

import json
import math
import os
import platform
import shutil
import tempfile
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

import tinytorch.datasets as _datasets
from tinytorch.competition import (
    CATEGORIES,
    FORMULAS,
    CompetitionRules,
    Entry,
    category_score,
    leaderboard,
    public_private_split,
    split_accuracies,
)

from .package import Package, read_package
from .sandbox import RunOutcome, SandboxLimits, pick_cpu, run_phase
from .store import LeaderboardStore, SubmissionLimitError, entry_from_row

DIGITS_FILE = Path(__file__).resolve().parents[1] / "datasets" / "digits.npz"


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


@dataclass
class Outcome:
    """What `Arena.evaluate` did with one package."""

    submission_id: int
    created: bool  # False: the same package was evaluated before; nothing changed
    entry: Entry
    seconds: float  # wall time of this call
    results_path: Path | None = None
    report_path: Path | None = None
    timings: dict = field(default_factory=dict)  # seconds per part of this call

    @property
    def status(self) -> str:
        return self.entry.status

    def summary(self) -> str:
        e = self.entry
        again = "" if self.created else " [same package as before: not re-evaluated]"
        if e.status != "ok":
            return f"#{self.submission_id} {e.team}: {e.status}: {e.error}{again}"
        return (
            f"#{self.submission_id} {e.team}: ok, public accuracy {e.acc_public:.3f}, p50 "
            f"{e.latency_p50_ms:.4f} ms, p90 {e.latency_p90_ms:.4f} ms, {e.model_bytes} bytes, "
            f"train {e.train_seconds:.2f} s ({self.seconds:.1f} s to evaluate){again}"
        )


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


class Arena:
    """One competition: a directory holding leaderboard.sqlite, results/, reports/, packages/."""

    def __init__(
        self,
        root: str | Path,
        rules: CompetitionRules | None = None,
        limits: ArenaLimits | None = None,
        baseline_team: str = "baseline",
        python: str | None = None,
        sandboxed: bool = True,
    ):
        self.root = Path(root).resolve()
        self.root.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.gettempdir()).resolve()
        if tmp == self.root or self.root in tmp.parents:
            raise ValueError(f"the arena directory {self.root} must not contain {tmp}")
        self.store = LeaderboardStore(self.root / "leaderboard.sqlite", rules)
        self.rules = self.store.rules
        self.limits = limits or ArenaLimits()
        self.baseline_team = baseline_team
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
        """What no submission may read: the bundled test data and the arena's own files."""
        return [str(DIGITS_FILE), str(self.root)]

    # -- evaluation --------------------------------------------------------------------------
    def evaluate(self, source: str | Path, *, now: datetime | None = None) -> Outcome:
        """Evaluate one package (folder or zip). Idempotent per package hash."""
        start = time.perf_counter()
        now = now or datetime.now(timezone.utc)
        with tempfile.TemporaryDirectory(prefix="tt-arena-") as tmp:
            tmp = Path(tmp)
            pkg = read_package(source, tmp)
            timings = {"read": time.perf_counter() - start}
            existing = self.store.find(pkg.hash)
            if existing is not None:
                return self._outcome(existing, False, time.perf_counter() - start)
            day = now.date().isoformat()
            used = self.store.count_for_day(pkg.team, day)
            if used >= self.rules.daily_limit:
                raise SubmissionLimitError(
                    f"team {pkg.team!r} already submitted {used} distinct packages on {day} "
                    f"(limit {self.rules.daily_limit} per UTC day); nothing was run"
                )
            evaluation = self._run_all(pkg, tmp, timings)
            t_store = time.perf_counter()
            evaluation["harness_seconds"] = time.perf_counter() - start
            outcome = self.record(pkg, source, evaluation, now)
        timings["store_and_reports"] = time.perf_counter() - t_store
        outcome.timings = timings
        outcome.seconds = time.perf_counter() - start
        return outcome

    def record(self, pkg: Package, source, evaluation: dict, now: datetime) -> Outcome:
        """Store one evaluation (`pkg` still unpacked: it is archived), write its reports."""
        evaluation["evaluated_at"] = datetime.now(timezone.utc).isoformat(timespec="seconds")
        meta = pkg.meta if isinstance(pkg.meta, dict) else {}
        tags = meta.get("tags") if isinstance(meta.get("tags"), list) else []
        submission = {
            "team": pkg.team,
            "package_hash": pkg.hash,
            "source": str(source),
            "day": now.date().isoformat(),
            "submitted_at": now.isoformat(timespec="seconds"),
            "category": str(meta.get("category") or "")[:40],
            "tags": [str(t)[:32] for t in tags][:10],
            "description": str(meta.get("description") or "")[:500],
        }
        sid, created = self.store.record(submission, evaluation, self.rules.daily_limit)
        if created:
            self._archive(pkg, sid)
        outcome = self._outcome(sid, created, 0.0)
        if created:
            from .report import write_report, write_results_json

            outcome.results_path = write_results_json(self, sid)
            outcome.report_path = write_report(self, sid)
        return outcome

    def _outcome(self, sid: int, created: bool, seconds: float) -> Outcome:
        row = self.store.row(sid)
        points = self.store.innovation_points().get(row["team"], 0.0)
        out = Outcome(sid, created, entry_from_row(row, points), seconds)
        results = self.root / "results" / f"{sid}.json"
        report = self.report_path(sid, row["team"])
        out.results_path = results if results.exists() else None
        out.report_path = report if report.exists() else None
        return out

    def report_path(self, sid: int, team: str) -> Path:
        return self.root / "reports" / f"{sid}-{team}.md"

    def _archive(self, pkg: Package, sid: int) -> None:
        """Keep a zip of every evaluated package (for audits and re-runs)."""
        dest = self.root / "packages"
        dest.mkdir(exist_ok=True)
        shutil.make_archive(str(dest / f"{sid}-{pkg.hash[:12]}"), "zip", pkg.path)

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
        they may come from other machines, tinytorch/arena/cluster.py). Scored here: only this
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
        if pkg.problems:
            ev["status"], ev["error"] = "malformed", "; ".join(pkg.problems)[:2000]
            return ev
        for phase, label in (("infer", "inference run"), ("train", "training run")):
            run = runs[phase]
            if run.stdout_head:
                ev["output_head"] += f"[{label}]\n{run.stdout_head}\n"
            if not run.ok:
                ev["status"] = run.kind
                ev["error"] = f"{label}: {run.message}"
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

    # -- views -------------------------------------------------------------------------------
    def entries(self) -> list[Entry]:
        return self.store.entries()

    def standings(self, final: bool = False) -> dict:
        return leaderboard(self.entries(), self.rules, final)

    def award(self, team: str, points: float, reason: str) -> int:
        """Innovation points for `team` (instructors only; the reason is shown publicly)."""
        now = datetime.now(timezone.utc).isoformat(timespec="seconds")
        return self.store.award(team, points, reason, now)

    def problems(self) -> list[str]:
        """Database integrity + invariants (empty = healthy)."""
        return self.store.problems()

    def leaderboard_text(self, final: bool = False, width: int = 100) -> str:
        return format_leaderboard(self, final=final, width=width)

    def write_html(self, path: str | Path | None = None, final: bool = False) -> Path:
        from .html import render_page

        path = Path(path) if path else self.root / ("final.html" if final else "leaderboard.html")
        path.write_text(render_page(self, final=final, live=False), encoding="utf-8")
        return path


# ------------------------------------------------------------------------- text leaderboard
def fmt_score(category: str, score: float | None) -> str:
    if score is None:
        return "-"
    if category == "speed":
        return f"{score:.2f} s"
    if category == "size":
        return f"{score:.3f}"
    if category == "efficiency":
        return f"{score:.3f}"
    return f"{score:g} pts"


def _cut(text: str, n: int) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= n else text[: n - 3] + "..."


def format_leaderboard(arena: Arena, final: bool = False, width: int = 100) -> str:
    rules = arena.rules
    entries = arena.entries()
    board = leaderboard(entries, rules, final)
    split = "private" if final else "public"
    teams = sorted({e.team for e in entries})
    lines = [
        f"AutoML Olympics - {'FINAL (private split)' if final else 'public'} leaderboard: "
        f"{len(teams)} teams, {len(entries)} submissions",
        f"target accuracy {rules.target_accuracy:.3f} on the {split} part of the hidden test set"
        + ("" if final else " (the final ranking uses the private part)"),
        f"size limit {rules.size_limit_bytes} bytes, training budget "
        f"{rules.train_budget_seconds:g} s, {rules.daily_limit} packages per team per day",
    ]
    for cat in CATEGORIES:
        lines += ["", f"{cat.upper()}: {FORMULAS[cat]}"]
        lines.append(
            f"  {'rank':>4}  {'team':<20} {'score':>10}  {'accuracy':>8}  tags / why not ranked"
        )
        failed = []
        for s in board[cat]:
            e = s.entry
            if s.rank is None and e.status != "ok":
                failed.append(s.team)
                continue
            acc = e.speed_accuracy(final) if cat == "speed" else e.accuracy(final)
            acc_s = "-" if acc is None else f"{acc:.3f}"
            rank = "-" if s.rank is None else str(s.rank)
            tail = ",".join(e.tags) if s.rank is not None else s.reason
            lines.append(
                f"  {rank:>4}  {_cut(s.team, 20):<20} {fmt_score(cat, s.score):>10}  {acc_s:>8}  "
                + _cut(tail, max(30, width - 52))
            )
        if failed:
            lines.append(f"{'-':>6}  not ranked, evaluation failed: {', '.join(failed)}")
        if not board[cat]:
            lines.append("  (no submissions yet)")
    lines += ["", "SUBMISSIONS (oldest first; accuracy on the " + split + " part)"]
    lines.append(
        f"  {'#':>3}  {'team':<20} {'status':<15} {'acc':>6} {'p50 ms':>8} {'p90 ms':>8} "
        f"{'bytes':>7} {'train s':>7} {'peak MiB':>8}  tags"
    )
    for e in entries:
        if e.status == "ok":
            acc = e.accuracy(final)
            peak = "-" if e.peak_rss_kb is None else f"{e.peak_rss_kb / 1024:.1f}"
            cols = (
                f"{acc:>6.3f} {e.latency_p50_ms:>8.4f} {e.latency_p90_ms:>8.4f} "
                f"{e.model_bytes:>7} {e.train_seconds:>7.2f} {peak:>8}  {','.join(e.tags)}"
            )
        else:
            cols = f"{'-':>6} {'-':>8} {'-':>8} {'-':>7} {'-':>7} {'-':>8}"
        lines.append(f"  {e.submission_id:>3}  {_cut(e.team, 20):<20} {e.status:<15} {cols}")
        if e.status != "ok":
            lines.append(f"{'':>7}why: {_cut(e.error, 300)}")
    machine = machine_line(arena)
    if machine:
        lines += ["", f"measured on {machine}"]
    awards = arena.store.awards()
    if awards:
        lines += ["", "INNOVATION AWARDS"]
        for a in awards:
            lines.append(f"  {a['team']:<20} {a['points']:+g} pts  {_cut(a['reason'], width - 36)}")
    return "\n".join(lines)


def machine_line(arena: Arena) -> str:
    """The standardized hardware of the latest evaluation, in one line ('' if none yet)."""
    rows = arena.store.rows()
    if not rows:
        return ""
    m = rows[-1]["machine"]
    return (
        f"{m.get('cpu_model')} ({m.get('logical_cpus')} logical CPUs), every run pinned to CPU "
        f"{m.get('pinned_cpu')} with {m.get('blas_threads')} BLAS thread; Python "
        f"{m.get('python')}, numpy {m.get('numpy')}"
    )


def scores_for(entry: Entry, rules: CompetitionRules, final: bool = False) -> dict:
    """Every category's score for one entry (None where it does not count)."""
    out = {}
    for cat in CATEGORIES:
        score, _ = category_score(entry, cat, rules, final)
        out[cat] = None if score is None or not math.isfinite(score) else score
    return out


def now_utc() -> datetime:
    return datetime.now(timezone.utc)


def results_json_payload(arena: Arena, sid: int) -> dict:
    """Gradescope's results.json for one evaluation (public numbers only)."""
    row = arena.store.row(sid)
    entry = entry_from_row(row, arena.store.innovation_points().get(row["team"], 0.0))
    rules = arena.rules
    ok = entry.status == "ok"
    malformed = entry.status == "malformed"
    reached = ok and entry.acc_public is not None and entry.acc_public >= rules.target_accuracy
    tests = [
        {
            "name": "package is well-formed",
            "score": 0.0 if malformed else 1.0,
            "max_score": 1.0,
            "status": "failed" if malformed else "passed",
            "output": entry.error if malformed else "submission.yaml, submission.py, weights/",
        },
        {
            "name": "runs within the arena's limits and returns valid scores",
            "score": 1.0 if ok else 0.0,
            "max_score": 1.0,
            "status": "passed" if ok else "failed",
            "output": "" if ok else ("not run" if malformed else f"{entry.status}: {entry.error}"),
        },
        {
            "name": f"public accuracy >= target {rules.target_accuracy:.3f}",
            "score": 1.0 if reached else 0.0,
            "max_score": 1.0,
            "status": "passed" if reached else "failed",
            "output": f"public accuracy {entry.acc_public:.4f}" if ok else "not scored",
        },
    ]
    board = [{"name": "Status", "value": entry.status}]
    if ok:
        scores = scores_for(entry, rules)
        board += [
            {"name": "Public accuracy", "value": round(entry.acc_public, 4)},
            {"name": "Latency p50 (ms)", "value": round(entry.latency_p50_ms, 5), "order": "asc"},
            {"name": "Latency p90 (ms)", "value": round(entry.latency_p90_ms, 5), "order": "asc"},
            {"name": "Model size (bytes)", "value": int(entry.model_bytes), "order": "asc"},
            {"name": "Train time (s)", "value": round(entry.train_seconds, 3), "order": "asc"},
            {
                "name": "Efficiency",
                "value": round(scores["efficiency"], 4) if scores["efficiency"] else 0,
            },
        ]
    board.append({"name": "Tags", "value": ",".join(entry.tags)})
    return {
        "score": sum(t["score"] for t in tests),
        "execution_time": round(float(row["harness_seconds"]), 3),
        "output": f"{entry.team} #{sid}: {entry.status}"
        + (f" ({entry.error})" if entry.error else ""),
        "visibility": "visible",
        "stdout_visibility": "hidden",
        "tests": tests,
        "leaderboard": board,
        "extra_data": {"machine": row["machine"], "package_hash": row["package_hash"]},
    }


def to_json(payload: dict) -> str:
    return json.dumps(payload, indent=2, sort_keys=False, allow_nan=False)
