"""The arena: evaluate packages, keep the leaderboard, rank, award, render.

    arena = Arena("course/competition")            # the rules are stored with the database
    outcome = arena.evaluate("my_team/")           # or a .zip; same package -> same row
    print(arena.leaderboard_text())                # public view; final=True for the private one

The sandboxed runs and the scoring are the student-side `tinytorch.arena.harness.Evaluator`;
`Arena` adds what only the course staff run: one SQLite row per distinct package (`store.py`),
the daily limit, an archive of every package, the Gradescope results.json and performance
report (`report.py`), and the text and HTML views (`leaderboard.py`, `html.py`).
"""

from __future__ import annotations

import shutil
import tempfile
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

from tinytorch.arena.harness import ArenaLimits, Evaluator
from tinytorch.arena.package import Package, read_package
from tinytorch.competition import CompetitionRules, Entry, leaderboard

from .html import render_page
from .leaderboard import format_leaderboard
from .report import write_report, write_results_json
from .store import LeaderboardStore, SubmissionLimitError, entry_from_row


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



class Arena(Evaluator):
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
        # the stored rules win; sandboxed False only for trusted code (--no-sandbox)
        super().__init__(self.store.rules, limits, python, sandboxed=sandboxed)
        self.baseline_team = baseline_team

    @property
    def forbidden_paths(self) -> list[str]:
        """What no submission may read: the bundled test data and the arena's own files."""
        return [*super().forbidden_paths, str(self.root)]

    @property
    def public_roots(self) -> dict[str, str]:
        """The arena's own folder reads as <arena> in every public reason."""
        return {str(self.root): "<arena>"}

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
        path = Path(path) if path else self.root / ("final.html" if final else "leaderboard.html")
        path.write_text(render_page(self, final=final, live=False), encoding="utf-8")
        return path


