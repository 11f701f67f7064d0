"""Module 20 bench: what the arena costs per submission, and how stable its latency numbers are.

    OPENBLAS_NUM_THREADS=1 python bench/competition.py [--quick] [--json PATH]

1. Harness overhead: the wall time of `Arena.evaluate` for a trivial model (one Linear layer,
   one epoch), and its parts: reading and checking the package, the sandboxed inference run
   (two runner processes: the team's and the null model's; warm-up; every query sent by the
   harness and timed by it), the sandboxed training run, and the rest (SQLite transaction,
   digest, results.json, report). Medians over repeats; each repeat uses a fresh arena
   because the same package is never evaluated twice. Each behind the OS boundary
   (bubblewrap) and with the audit hook only, interleaved: the ratio is the boundary's cost.
2. Latency from outside: the same baseline package measured in K separate sandboxed inference
   runs. Each run times every single-stream query in the harness (request -> answer across
   the pipes) and the null model's answers to the same queries, interleaved; the reported p50
   is the team's minus the null model's (the boundary's own cost). The table shows the null
   model's p50, the team's raw and calibrated p50 and the spread max/min of each across runs.

--quick (what the test suite runs): 2 evaluations each way, 3 runs, 2 timed passes per run
instead of 5, 7 and the arena's 5.

Targets (PASS/FAIL; a failure exits 1 in full mode):
- latency spread of one submission across K sandboxed runs (calibrated p50) <= 1.3x
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


def harness_overhead(work: Path, repeats: int, passes: int = 5) -> dict:
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
                work / f"arena-{r}-{sandboxed}", limits=ArenaLimits(repeats=passes),
                sandboxed=sandboxed,
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


def latency_spread(work: Path, runs: int, sandboxed: bool = True, passes: int = 5) -> dict:
    """K separate inference runs of the baseline package: null, raw and calibrated p50/p90."""
    pkg_dir = build_package(sample_dirs()["baseline"], work / f"baseline-{sandboxed}", check=True)
    arena = Arena(
        work / f"arena-spread-{sandboxed}", limits=ArenaLimits(repeats=passes),
        sandboxed=sandboxed,
    )
    cal50, cal90, raw50, raw90, null50, inner, consistency = [], [], [], [], [], [], []
    with tempfile.TemporaryDirectory() as tmp:
        pkg = read_package(pkg_dir, tmp)
        for i in range(runs):
            box = Path(tmp) / f"run{i}"
            box.mkdir()
            out = arena._run(pkg, "infer", box)
            assert out.ok, out.message
            r = out.result
            cal50.append(r["p50_ms"])
            cal90.append(r["p90_ms"])
            raw50.append(r["raw"]["p50_ms"])
            raw90.append(r["raw"]["p90_ms"])
            null50.append(r["null"]["p50_ms"])
            passes = r["raw"]["passes_p50_ms"]  # raw: calibrated passes can sit at the floor
            inner.append(max(passes) / min(passes))
            consistency.append(r["consistency"])
    return {
        "p50_ms": cal50,  # calibrated: the team's p50 minus the null model's, per pass
        "p90_ms": cal90,
        "raw_p50_ms": raw50,  # the team's request -> answer time as the harness saw it
        "raw_p90_ms": raw90,
        "null_p50_ms": null50,  # the null model's (the boundary's own cost)
        "spread": max(cal50) / min(cal50),
        "spread_p90": max(cal90) / min(cal90),
        "raw_spread": max(raw50) / min(raw50),
        "null_spread": max(null50) / min(null50),
        "within_run_spread_max": max(inner),
        "consistency_min": min(consistency),
        "queries_per_pass": len(arena.hidden.labels),
        "passes": passes,
    }


def main() -> int:
    args = H.parse_args(__doc__.splitlines()[0])
    repeats = H.pick(args, 2, 5)
    runs = H.pick(args, 3, 7)
    passes = H.pick(args, 2, 5)  # timed passes per inference run (the arena's default: 5)
    with tempfile.TemporaryDirectory(prefix="bench-competition-") as tmp:
        work = Path(tmp)
        both = harness_overhead(work, repeats, passes)
        spread = latency_spread(work, runs, passes=passes)
        plain_spread = latency_spread(work, runs, sandboxed=False, passes=passes)
    over, plain = both["sandboxed"], both["plain"]
    H.print_table(
        ["part of Arena.evaluate (trivial model)", "behind the boundary (s)", "audit hook only (s)",
         "ratio"],
        [
            [label, over[key], plain[key], over[key] / plain[key]]
            for label, key in (
                ("read + check the package", "read"),
                ("inference run (team + null runner, harness-timed)", "infer"),
                ("training run (runner process)", "train"),
                ("SQLite transaction + digest, results.json, report", "store_and_reports"),
                ("total per submission", "total"),
            )
        ],
        title=f"Harness overhead, median of {repeats} interleaved evaluations each "
        "(the OS boundary: bubblewrap namespaces around the runner)",
    )
    H.print_table(
        ["run", "null p50 (ms)", "team raw p50 (ms)", "team p50 - null (ms)",
         "team p90 - null (ms)"],
        [
            [i + 1, n, r, c, c90]
            for i, (n, r, c, c90) in enumerate(
                zip(spread["null_p50_ms"], spread["raw_p50_ms"], spread["p50_ms"],
                    spread["p90_ms"])
            )
        ],
        title=f"Baseline latency timed by the harness in {runs} separate sandboxed runs "
        f"({spread['queries_per_pass']} single-stream queries x {passes} passes each, the null "
        "model's answers to the same queries interleaved)",
    )
    print(
        f"\nspread max/min across runs: calibrated p50 {spread['spread']:.3f}x, calibrated p90 "
        f"{spread['spread_p90']:.3f}x, raw p50 {spread['raw_spread']:.3f}x, null p50 "
        f"{spread['null_spread']:.3f}x; largest spread between the raw p50s of one run's passes: "
        f"{spread['within_run_spread_max']:.3f}x; answers to perturbed repeats agreeing with "
        f"the first pass: at least {spread['consistency_min']:.3f}"
        f"\nwithout the boundary: calibrated p50 spread {plain_spread['spread']:.3f}x; median "
        f"null p50 {statistics.median(plain_spread['null_p50_ms']):.4f} ms vs "
        f"{statistics.median(spread['null_p50_ms']):.4f} ms behind it; median calibrated p50 "
        f"{statistics.median(plain_spread['p50_ms']):.4f} ms vs "
        f"{statistics.median(spread['p50_ms']):.4f} ms behind it"
    )
    targets = [
        H.Target(
            "latency spread of one submission across sandboxed runs (calibrated p50 max/min)",
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
