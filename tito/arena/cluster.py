"""Evaluating many packages at once on an executor (a Dask cluster or local processes).

    with get_executor("tcp://host:8786") as ex:
        outcomes = evaluate_many(arena, ["team_a/", "team_b.zip", ...], ex)

Each package needs two sandboxed runs. The *inference* run measures latency, so it runs only on
workers tagged as benchmark workers (Dask resources ``{"benchmark": 1}``; start them with
``dask worker ... --nthreads 1 --resources benchmark=1``): one evaluation at a time per such
worker, on identical machines, so rankings stay comparable. The *training* run (and everything
else) may run anywhere. A worker is a trusted harness (it never runs student code itself): it
drives the sandboxed runner and the null model, times every query with its own clock, and
returns the runs (predicted labels, its timings); this process holds the labels, scores, and
is the only writer (and signer) of the leaderboard database.
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

from tinytorch.arena.harness import ArenaLimits, describe_machine
from tinytorch.arena.package import read_package
from tinytorch.arena.sandbox import RunOutcome, pick_cpu
from tinytorch.competition import CompetitionRules

from .service import Arena, Outcome
from .store import SubmissionLimitError

BENCHMARK = {"benchmark": 1}


class _WorkerArena(Arena):
    """The parts of an Arena a worker needs to run a phase: no database, no labels kept."""

    def __init__(
        self, root: str, rules: CompetitionRules, limits: ArenaLimits, python, sandboxed=True
    ):
        self.root = Path(root)
        self.rules, self.limits, self.python = rules, limits, python
        self.sandboxed = sandboxed
        self.cpu = limits.cpu if limits.cpu is not None else pick_cpu()
        self._hidden = None


@dataclass(frozen=True)
class PhaseTask:
    """Runs in a worker: one sandboxed phase ("infer" or "train") of one package."""

    root: str
    rules: CompetitionRules
    limits: ArenaLimits
    python: str | None = None
    sandboxed: bool = True  # behind the OS boundary on the worker too

    def __call__(self, item: tuple[str, str]) -> RunOutcome:
        source, phase = item
        arena = _WorkerArena(self.root, self.rules, self.limits, self.python, self.sandboxed)
        with tempfile.TemporaryDirectory(prefix="tt-arena-") as tmp:
            pkg = read_package(source, tmp)
            run = arena._run(pkg, phase, Path(tmp))
        run.extra = {**(run.extra or {}), "machine": describe_machine(arena.cpu)}
        return run


@dataclass
class BatchOutcome:
    source: str
    outcome: Outcome | None = None
    error: str | None = None  # daily limit, a lost worker, ...
    workers: dict = field(default_factory=dict)  # phase -> worker that ran it


def evaluate_many(
    arena: Arena,
    sources: Sequence[str | Path],
    executor,
    *,
    now: datetime | None = None,
    on_outcome: Callable[[BatchOutcome], None] | None = None,
) -> list[BatchOutcome]:
    """Evaluate packages in parallel on ``executor``'s workers; results in ``sources`` order.

    Same rules as ``Arena.evaluate``: an already evaluated package is not run again, the same
    package twice in the batch is run once, and the daily limit is checked (before anything
    runs) counting the packages earlier in the batch."""
    now = now or datetime.now(timezone.utc)
    day = now.date().isoformat()
    out = [BatchOutcome(str(s)) for s in sources]
    with tempfile.TemporaryDirectory(prefix="tt-arena-batch-") as tmp:
        pkgs, todo, seen, used, dups = {}, [], {}, {}, {}
        for i, src in enumerate(sources):
            try:
                pkg = read_package(src, Path(tmp) / f"p{i}")
            except Exception as exc:  # this package's problem: the batch goes on
                out[i].error = f"cannot read the package: {type(exc).__name__}: {exc}"
                continue
            existing = arena.store.find(pkg.hash)
            if existing is not None:
                out[i].outcome = arena._outcome(existing, False, 0.0)
                continue
            if pkg.hash in seen:
                dups[i] = seen[pkg.hash]  # filled in from the first copy below
                continue
            if pkg.team not in used:
                used[pkg.team] = arena.store.count_for_day(pkg.team, day)
            if used[pkg.team] >= arena.rules.daily_limit:
                out[i].error = str(
                    SubmissionLimitError(
                        f"team {pkg.team!r} already submitted {used[pkg.team]} distinct packages "
                        f"on {day} (limit {arena.rules.daily_limit} per UTC day); nothing was run"
                    )
                )
                continue
            used[pkg.team] += 1
            seen[pkg.hash] = i
            pkgs[i] = pkg
            if not pkg.problems:
                todo += [(str(src), "infer"), (str(src), "train")]
        task = PhaseTask(
            str(arena.root), arena.rules, arena.limits, arena.python, arena.sandboxed
        )
        runs: dict[int, dict[str, RunOutcome]] = {i: {} for i in pkgs}
        index = {str(sources[i]): i for i in pkgs}

        def record(i: int) -> None:
            start = time.perf_counter()
            evaluation = arena.evaluation(pkgs[i], runs[i])
            evaluation["harness_seconds"] = sum(r.wall_seconds for r in runs[i].values())
            out[i].outcome = arena.record(pkgs[i], sources[i], evaluation, now)
            out[i].outcome.seconds = time.perf_counter() - start
            if on_outcome:
                on_outcome(out[i])

        for i, pkg in pkgs.items():
            if pkg.problems:
                record(i)
        results = executor.map_tasks(
            task, todo, resources=lambda item: BENCHMARK if item[1] == "infer" else None
        )
        for r in results:
            src, phase = r.item
            i = index[src]
            out[i].workers[phase] = r.worker
            if r.ok:
                runs[i][phase] = r.value
            else:
                runs[i][phase] = RunOutcome(
                    False, None, "crash", f"the evaluation worker failed: {r.error}"
                )
            if len(runs[i]) == 2:
                record(i)
        for i, first in dups.items():
            out[i].outcome, out[i].workers = out[first].outcome, out[first].workers
    return out
