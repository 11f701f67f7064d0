"""Autograding at class scale: ``tito autograde --jobs N`` vs sequential plain nbgrader.

    OPENBLAS_NUM_THREADS=1 python bench/autograde.py [--quick] [--json PATH] [--n N]
                                                     [--module DIR]

A class of generated submissions of one module (default: the toy fixture module,
tests/fixtures/modules/99_toy; ``--module modules/15_acceleration`` for a compute-bound one):
40% correct, 25% partial, 20% empty (the released notebook), 10% invalid JSON, 5% crashing
(``os._exit`` in a solution cell). Each contender starts from its own copy of the same released
course (gradebook with the assignment only) and the same submissions, in this process, after
nbgrader is imported (so neither pays its import):

- plain nbgrader: nbgrader's ``Autograde`` converter over all students in one run, as an
  instructor's ``nbgrader autograde MODULE`` would (sequential; a Jupyter kernel per notebook);
- ``tito autograde`` with 1, 2 and 4 worker processes (everything: context, workers, the guard,
  the gradebook writes, the integrity check).

Each is run once (a full run takes minutes; the ratio of two such runs is stable to a few
percent here), and the per-student scores of tito must equal plain nbgrader's wherever tito
grades (``same_scores``; for an invalid notebook plain nbgrader records an unexplained zero,
tito "could not be graded" with the reason: counted as ``plain_silent_zeros``). Also
measured: the median start-up of a bare Jupyter kernel, the cost plain nbgrader pays per
notebook before running a cell.

The OS boundary's cost: ``tito autograde --jobs 1`` behind bubblewrap vs ``--no-sandbox``,
interleaved, per notebook (``--boundary-only`` measures just this, for modules 15-20).

Targets (full mode; PASS/FAIL, a failure exits 1): ``--jobs 2`` and ``--jobs 4`` at least 1.8x
faster than sequential plain nbgrader on this 2-core machine; for modules 15-20 the boundary
adds at most 10% per graded notebook (the toy module's cost is reported: start-up dominates).
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import _harness as H  # first: pins BLAS to one thread

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tito import nbg  # noqa: E402
from tito.export import export  # noqa: E402
from tito.grade import autograde  # noqa: E402
from tito.modules import load_module  # noqa: E402
from tito.project import Project  # noqa: E402
from tito.release import release_module  # noqa: E402
from tito.samples import samples  # noqa: E402
from tito.source import parse_source  # noqa: E402

# one period of the class mix: 8 correct, 5 partial, 4 empty, 2 invalid JSON, 1 crash
PATTERN = ["reference", "partial", "untouched", "reference", "partial", "badjson", "reference"]
PATTERN += ["untouched", "crash", "reference", "partial", "untouched", "reference", "partial"]
PATTERN += ["reference", "badjson", "untouched", "reference", "partial", "reference"]


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="8 submissions (the test suite)")
    parser.add_argument("--json", metavar="PATH", help="also write the results as JSON")
    parser.add_argument("--n", type=int, help="number of submissions (default 200; quick 8)")
    parser.add_argument(
        "--boundary-only",
        action="store_true",
        help="only the OS boundary's cost (sandboxed vs --no-sandbox), no plain nbgrader",
    )
    parser.add_argument(
        "--module",
        default=str(ROOT / "tests" / "fixtures" / "modules" / "99_toy"),
        help="module directory to grade (default: the toy fixture)",
    )
    return parser.parse_args()


def prepare(tmp: Path, module_dir: Path, n: int) -> tuple[Project, object, dict[str, str]]:
    root = tmp / "base"
    (root / "modules").mkdir(parents=True)
    shutil.copytree(module_dir, root / "modules" / module_dir.name)
    # the student build grading imports needs the graded module's prerequisites beside it
    siblings = sorted(module_dir.parent.iterdir()) if module_dir.parent == ROOT / "modules" else []
    for other in siblings:
        if other.is_dir() and other.name != module_dir.name and (other / "module.yaml").exists():
            shutil.copytree(other, root / "modules" / other.name)
    project = Project.at(root, nbgrader_config=ROOT / "nbgrader_config.py")
    spec = load_module(project.modules_dir / module_dir.name)
    if siblings:  # the references the student build ships for published prerequisites
        export([load_module(d) for d in sorted(project.modules_dir.iterdir())], project)
    release_module(parse_source(spec), project)
    samples(spec, project)
    sub = project.course_dir / "submitted"
    solution_ids = [c.grade_id for c in parse_source(spec).solution_cells]
    kinds = {}
    for i in range(n):
        kind = PATTERN[i % len(PATTERN)]
        dest = sub / f"student{i:03d}" / spec.id
        dest.mkdir(parents=True)
        if kind == "badjson":
            (dest / spec.notebook_name).write_text('{"cells": [')
        elif kind == "crash":
            nb = json.loads((sub / "reference" / spec.id / spec.notebook_name).read_text())
            for cell in nb["cells"]:
                if cell["metadata"].get("nbgrader", {}).get("grade_id") == solution_ids[-1]:
                    cell["source"] = "import os\nos._exit(3)"
            (dest / spec.notebook_name).write_text(json.dumps(nb))
        else:
            shutil.copy(sub / kind / spec.id / spec.notebook_name, dest / spec.notebook_name)
        kinds[dest.parent.name] = kind
    for sample in ("reference", "partial", "untouched"):
        shutil.rmtree(sub / sample)
    return project, spec, kinds


def copy_course(base: Project, dest: Path) -> Project:
    shutil.copytree(base.root, dest)
    return Project.at(dest, nbgrader_config=ROOT / "nbgrader_config.py")


def kernel_startup(repeats: int = 3) -> float:
    """Median seconds to start a python3 Jupyter kernel and get its kernel_info reply."""
    from jupyter_client.manager import start_new_kernel

    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        km, kc = start_new_kernel(kernel_name="python3")
        times.append(time.perf_counter() - t0)
        kc.stop_channels()
        km.shutdown_kernel(now=True)
    return statistics.median(times)


def gradebook_scores(project: Project, spec, students) -> dict:
    """student -> None (no grades) or [(cell, score), ...] from the gradebook."""
    from nbgrader.api import MissingEntry

    out = {}
    with nbg.quiet_nbgrader(), nbg.gradebook(project) as gb:
        for s in students:
            try:
                nb = gb.find_submission_notebook(spec.name, spec.id, s)
            except MissingEntry:
                out[s] = None
                continue
            out[s] = sorted((g.name, float(g.score)) for g in nb.grades)
    return out


def run_plain(project: Project, spec) -> float:
    t0 = time.perf_counter()
    nbg.run(
        "Autograde",
        project,
        assignment_id=spec.id,
        student_id="*",
        notebook_id=spec.name,
        log_name="bench-plain-autograde.log",
        create_student=True,
    )  # fails overall (the broken submissions): that is part of the job
    return time.perf_counter() - t0


def boundary_cost(base: Project, spec, tmp: Path, n: int, repeats: int) -> dict:
    """``tito autograde --jobs 1`` behind the OS boundary vs ``--no-sandbox``, interleaved
    (sandboxed, plain, sandboxed, plain, ...): whole-run seconds per notebook (start-up of the
    sandboxed template included) and the median per-notebook time in the worker (fork,
    cells, reap). Ratios of medians; the first pair is a warm-up."""
    runs: dict[bool, list[tuple[float, float]]] = {True: [], False: []}
    shares: list[float] = []  # probe/judge split seconds / grading seconds, per notebook
    for r in range(repeats + 1):
        for sandboxed in (True, False):
            project = copy_course(base, tmp / f"boundary-{r}-{sandboxed}")
            t = time.perf_counter()
            res = autograde(spec, project, jobs=1, no_sandbox=not sandboxed)
            secs = time.perf_counter() - t
            worker = statistics.median(x.seconds for x in res if x.graded)
            if r > 0:
                runs[sandboxed].append((secs / n, worker))
                if sandboxed:
                    shares += [x.judge_seconds / x.seconds for x in res if x.graded and x.seconds]
            shutil.rmtree(project.root, ignore_errors=True)
    med = {k: (statistics.median(a for a, _ in v), statistics.median(b for _, b in v))
           for k, v in runs.items()}
    return {
        "run_s_per_notebook": {"sandboxed": med[True][0], "no_sandbox": med[False][0]},
        "worker_s_per_notebook": {"sandboxed": med[True][1], "no_sandbox": med[False][1]},
        "run_ratio": med[True][0] / med[False][0],
        "worker_ratio": med[True][1] / med[False][1],
        "judge_share": statistics.median(shares) if shares else 0.0,
        "judge_share_max": max(shares) if shares else 0.0,
        "repeats": repeats,
    }


def report_boundary(b: dict, spec, n: int) -> None:
    H.print_table(
        ["per notebook (tito --jobs 1)", "behind the boundary", "--no-sandbox", "ratio"],
        [
            ["whole run / n (s)", b["run_s_per_notebook"]["sandboxed"],
             b["run_s_per_notebook"]["no_sandbox"], b["run_ratio"]],
            ["median in the worker (s)", b["worker_s_per_notebook"]["sandboxed"],
             b["worker_s_per_notebook"]["no_sandbox"], b["worker_ratio"]],
            ["probe/judge split, share of grading (median / max)", b["judge_share"],
             b["judge_share_max"], "-"],
        ],
        title=f"The OS boundary's cost, {n} submissions of {spec.id}, median of "
        f"{b['repeats']} interleaved runs each",
    )


def boundary_targets(b: dict, spec) -> list:
    if not spec.id.startswith(("15", "16", "17", "18", "19", "20")):
        return []  # the toy module: start-up dominates; reported, no target
    return [
        H.Target(
            f"time per graded notebook of {spec.id}, boundary vs none",
            b["run_ratio"],
            1.10,
            unit="x",
            higher_is_better=False,
        ),
        # what the split adds per notebook: drawing inputs, handing them in, collecting the
        # outputs, decoding and judging (the judge's reference computation included)
        H.Target(
            f"probe/judge split share of grading a notebook of {spec.id}",
            b["judge_share"],
            0.10,
            higher_is_better=False,
        ),
    ]


def main() -> int:
    args = parse_args()
    n = args.n or H.pick(args, 8, 200)
    module_dir = Path(args.module).resolve()
    tmp = Path(tempfile.mkdtemp(prefix="bench-autograde-"))
    try:
        t0 = time.perf_counter()
        base, spec, kinds = prepare(tmp, module_dir, n)
        students = sorted(kinds)
        print(f"{n} submissions of {spec.id} prepared in {time.perf_counter() - t0:.1f} s")
        if args.boundary_only:
            b = boundary_cost(base, spec, tmp, n, H.pick(args, 1, 3))
            report_boundary(b, spec, n)
            return H.finish(
                args, "autograde", {"module": spec.id, "boundary": b}, boundary_targets(b, spec)
            )
        startup = kernel_startup(H.pick(args, 1, 3))
        results: dict = {"module": spec.id, "submissions": n, "kernel_startup_s": startup}
        results["mix"] = {k: list(kinds.values()).count(k) for k in sorted(set(kinds.values()))}
        plain_project = copy_course(base, tmp / "plain")
        secs = run_plain(plain_project, spec)
        plain_scores = gradebook_scores(plain_project, spec, students)
        results["plain_nbgrader"] = {"seconds": secs, "per_notebook": secs / n}
        print(f"plain nbgrader: {secs:.1f} s")
        same = True
        mismatches = []
        for jobs in (1, 2, 4):
            project = copy_course(base, tmp / f"jobs{jobs}")
            stats: dict = {}
            t = time.perf_counter()
            res = autograde(spec, project, jobs=jobs, stats=stats)
            secs = time.perf_counter() - t
            per = [r.seconds for r in res]
            results[f"tito_jobs_{jobs}"] = {
                "seconds": secs,
                "per_notebook": secs / n,
                "worker_seconds_per_notebook_median": statistics.median(per),
                "graded": sum(r.graded for r in res),
                "parent": stats,
            }
            print(f"tito --jobs {jobs}: {secs:.1f} s")
            mine = {
                r.student: sorted((s.grade_id, s.score) for s in r.scores) if r.graded else None
                for r in res
            }
            for s in students:
                if mine[s] is not None and mine[s] != plain_scores[s]:
                    same = False
                    mismatches.append((jobs, s, kinds[s], mine[s], plain_scores[s]))
            silent = [s for s in students if mine[s] is None and plain_scores[s] is not None]
        results["same_scores"] = same
        results["mismatches"] = mismatches[:10]
        # notebooks tito reports as "could not be graded, because ..." that plain nbgrader
        # recorded as an unexplained zero
        results["plain_silent_zeros"] = len(silent)
        results["boundary"] = boundary_cost(base, spec, tmp, n, H.pick(args, 1, 2))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)

    plain = results["plain_nbgrader"]["seconds"]
    rows = [["plain nbgrader (sequential)", plain, plain / n, 1.0, "-"]]
    for jobs in (1, 2, 4):
        r = results[f"tito_jobs_{jobs}"]
        rows.append(
            [
                f"tito autograde --jobs {jobs}",
                r["seconds"],
                r["per_notebook"],
                plain / r["seconds"],
                f"{r['worker_seconds_per_notebook_median'] * 1000:.0f} ms",
            ]
        )
    H.print_table(
        ["contender", "seconds", "s / notebook", "speed-up", "median worker time / nb"],
        rows,
        title=f"{n} submissions of {spec.id} ({results['mix']}); Jupyter kernel start-up "
        f"alone: {startup:.2f} s",
    )
    j2 = results["tito_jobs_2"]["parent"]
    print(
        "\ntito --jobs 2, parent: "
        + ", ".join(f"{k} {v:.1f} s" for k, v in j2.items())
        + f"\nscores identical to plain nbgrader wherever tito graded: {same}"
        + f"\nungradable notebooks plain nbgrader recorded as a silent zero: "
        f"{results['plain_silent_zeros']} (tito: could not be graded, with the reason)"
    )
    for m in mismatches[:5]:
        print(f"  MISMATCH jobs={m[0]} {m[1]} ({m[2]}): tito {m[3]} vs nbgrader {m[4]}")
    targets = [
        H.Target(
            f"tito --jobs {jobs} vs sequential plain nbgrader",
            plain / results[f"tito_jobs_{jobs}"]["seconds"],
            1.8,
            unit="x",
        )
        for jobs in (2, 4)
    ]
    targets.append(H.Target("scores identical to plain nbgrader", float(same), 1.0))
    report_boundary(results["boundary"], spec, n)
    targets += boundary_targets(results["boundary"], spec)
    return H.finish(args, "autograde", results, targets)


if __name__ == "__main__":
    sys.exit(main())
