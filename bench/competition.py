"""Module 20 bench: what the arena costs per submission, and how stable its latency numbers are.

    OPENBLAS_NUM_THREADS=1 python bench/competition.py [--quick] [--json PATH]

1. Harness overhead: the wall time of `Arena.evaluate` for a trivial model (one Linear layer,
   one epoch), and its parts: reading and checking the package, the sandboxed inference run
   (process start, imports, limits, audit hook, warm-up, timed passes), the sandboxed
   training run, and the rest (SQLite transaction, results.json, report). Medians over
   repeats; each repeat uses a fresh arena because the same package is never evaluated twice.
   Each behind the OS boundary (bubblewrap) and with the audit hook only, interleaved: the
   ratio is the boundary's cost per package.
2. Latency repeatability: the same baseline package measured in K separate sandboxed runs.
   The spread max/min of their p50 latencies must stay under 1.3x, or rankings that depend
   on latency would change from one evaluation to the next.

Targets (PASS/FAIL; a failure exits 1 in full mode):
- latency spread of one submission across K sandboxed runs <= 1.3x
- harness overhead for a trivial submission <= 3 s
"""

from __future__ import annotations

import statistics
import sys
import tempfile
from pathlib import Path

import _harness as H  # first: pins BLAS to one thread before numpy is imported

from tito.arena import Arena, ArenaLimits, build_package, read_package, sample_dirs

TRIVIAL = '''
from tinytorch.competition import CompetitionSubmission
from tinytorch.core.nn import Linear


class Trivial(CompetitionSubmission):
    team = "trivial"
    tags = ("linear",)
    description = "One Linear layer, one epoch: the cheapest thing the arena can evaluate."
    max_epochs = 1

    def build_model(self):
        return Linear(64, 10)
'''


def harness_overhead(work: Path, repeats: int) -> dict:
    """Medians of each part of ``Arena.evaluate``, behind the OS boundary and without it,
    interleaved (one sandboxed and one plain evaluation per repeat, after a warm-up of each)."""
    src = work / "trivial-src"
    src.mkdir()
    (src / "submission.py").write_text(TRIVIAL)
    pkg_dir = build_package(src, work / "trivial", check=True)
    parts: dict[bool, dict[str, list[float]]] = {True: {}, False: {}}
    for r in range(-1, repeats):  # r = -1: warm-up, not counted
        for sandboxed in (True, False):
            arena = Arena(
                work / f"arena-{r}-{sandboxed}", limits=ArenaLimits(repeats=5), sandboxed=sandboxed
            )
            outcome = arena.evaluate(pkg_dir)
            assert outcome.created and outcome.status == "ok", outcome.summary()
            if r < 0:
                continue
            for key, value in {**outcome.timings, "total": outcome.seconds}.items():
                parts[sandboxed].setdefault(key, []).append(value)
    return {
        "sandboxed": {k: statistics.median(v) for k, v in parts[True].items()},
        "plain": {k: statistics.median(v) for k, v in parts[False].items()},
    }


def latency_spread(work: Path, runs: int, sandboxed: bool = True) -> dict:
    pkg_dir = build_package(sample_dirs()["baseline"], work / f"baseline-{sandboxed}", check=True)
    arena = Arena(
        work / f"arena-spread-{sandboxed}", limits=ArenaLimits(repeats=5), sandboxed=sandboxed
    )
    p50s, p90s, inner = [], [], []
    with tempfile.TemporaryDirectory() as tmp:
        pkg = read_package(pkg_dir, tmp)
        for i in range(runs):
            box = Path(tmp) / f"run{i}"
            box.mkdir()
            out = arena._run(pkg, "infer", box)
            assert out.ok, out.message
            p50s.append(out.result["p50_ms"])
            p90s.append(out.result["p90_ms"])
            passes = out.result["repeats_p50_ms"]
            inner.append(max(passes) / min(passes))
    return {
        "p50_ms": p50s,
        "p90_ms": p90s,
        "spread": max(p50s) / min(p50s),
        "spread_p90": max(p90s) / min(p90s),
        "within_run_spread_max": max(inner),
        "queries_per_pass": len(arena.hidden.labels),
        "passes": 5,
    }


def main() -> int:
    args = H.parse_args(__doc__.splitlines()[0])
    repeats = H.pick(args, 2, 5)
    runs = H.pick(args, 3, 7)
    with tempfile.TemporaryDirectory(prefix="bench-competition-") as tmp:
        work = Path(tmp)
        both = harness_overhead(work, repeats)
        spread = latency_spread(work, runs)
        plain_spread = latency_spread(work, runs, sandboxed=False)
    over, plain = both["sandboxed"], both["plain"]
    H.print_table(
        ["part of Arena.evaluate (trivial model)", "behind the boundary (s)", "audit hook only (s)",
         "ratio"],
        [
            [label, over[key], plain[key], over[key] / plain[key]]
            for label, key in (
                ("read + check the package", "read"),
                ("inference run (runner process)", "infer"),
                ("training run (runner process)", "train"),
                ("SQLite transaction, results.json, report", "store_and_reports"),
                ("total per submission", "total"),
            )
        ],
        title=f"Harness overhead, median of {repeats} interleaved evaluations each "
        "(the OS boundary: bubblewrap namespaces around the runner)",
    )
    H.print_table(
        ["run", "p50 (ms)", "p90 (ms)"],
        [[i + 1, a, b] for i, (a, b) in enumerate(zip(spread["p50_ms"], spread["p90_ms"]))],
        title=f"Baseline latency in {runs} separate sandboxed runs "
        f"({spread['queries_per_pass']} single-stream queries x 5 passes each)",
    )
    print(
        f"\nspread max/min: p50 {spread['spread']:.3f}x, p90 {spread['spread_p90']:.3f}x; "
        f"largest spread between the passes of one run: {spread['within_run_spread_max']:.3f}x"
        f"\nwithout the boundary: p50 spread {plain_spread['spread']:.3f}x; median p50 "
        f"{statistics.median(plain_spread['p50_ms']):.4f} ms vs "
        f"{statistics.median(spread['p50_ms']):.4f} ms behind it"
    )
    targets = [
        H.Target(
            "latency spread of one submission across sandboxed runs (p50 max/min)",
            spread["spread"],
            1.3,
            unit="x",
            higher_is_better=False,
            note=f"{runs} runs",
        ),
        H.Target(
            "harness overhead per trivial submission",
            over["total"],
            3.0,
            unit=" s",
            higher_is_better=False,
        ),
    ]
    results = {
        "overhead_seconds": over,
        "overhead_seconds_without_boundary": plain,
        "boundary_cost_ratio_per_package": over["total"] / plain["total"],
        "latency": spread,
        "latency_without_boundary": plain_spread,
    }
    return H.finish(args, "competition", results, targets)


if __name__ == "__main__":
    sys.exit(main())
