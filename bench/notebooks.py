"""Time budget of the course: every module's solved notebook, cold, and the grading of it.

    OPENBLAS_NUM_THREADS=1 python bench/notebooks.py [--quick] [--json PATH] [MODULE ...]
                                                     [--no-grade] [--slow-cell S]

Per module (default: every module under modules/; ``--quick``: the toy fixture module,
tests/fixtures/modules/99_toy), in a private copy of the course:

- notebook: the instructor (solved) notebook run top to bottom in a fresh Jupyter kernel, as a
  student runs it after "Restart & Run All" (kernel start-up included), with the course's own
  pins (one BLAS thread). Every cell over ``--slow-cell`` seconds (default 5) is listed with
  its source line, so the cell to make cheaper is named;
- grading: ``tito autograde`` of the reference sample (the released notebook with every
  solution filled in), one worker, everything included (context, guarded worker, gradebook).

Targets (full mode; PASS/FAIL, a failure exits 1): notebook <= 60 s and grading <= 10 s per
notebook per module, at class scale: the reference graded as CLASS_COPIES students in one run
(the command's one-off start-up shared, as it is by a class); one notebook graded alone, start-up
included, is reported beside it. ``--quick`` times the toy module (a few seconds; the test
suite runs it) and only reports. A module's time is one cold run: the bench says how noisy that
is by timing each notebook ``--runs`` times (default 1) and reporting the median and the spread.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import _harness as H  # first: pins BLAS to one thread

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tito.build import ensure_built  # noqa: E402
from tito.grade import autograde  # noqa: E402
from tito.modules import discover_modules, resolve  # noqa: E402
from tito.project import Project  # noqa: E402
from tito.release import release_module  # noqa: E402
from tito.samples import samples  # noqa: E402
from tito.source import parse_source  # noqa: E402
from tito.validate import notebook_client  # noqa: E402

NOTEBOOK_TARGET_S = 60.0  # a module's solved notebook, cold, on a 2-core machine
GRADING_TARGET_S = 10.0  # 300 students x 6 modules in < 2.5 h on 2 cores
TOY = ROOT / "tests" / "fixtures" / "modules"


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("modules", nargs="*", metavar="MODULE", help="default: every module")
    parser.add_argument("--quick", action="store_true", help="the toy module only (test suite)")
    parser.add_argument("--json", metavar="PATH", help="also write the results as JSON")
    parser.add_argument("--no-grade", action="store_true", help="time the notebooks only")
    parser.add_argument("--runs", type=int, default=1, help="cold runs per notebook (median)")
    parser.add_argument(
        "--slow-cell", type=float, default=5.0, metavar="S", help="list cells over S seconds"
    )
    return parser.parse_args(argv)


def time_notebook(path: Path, src, cell_timeout: int = 600) -> dict:
    """Run ``path`` cold in a fresh kernel; total wall time (kernel start included) and the
    seconds of every code cell, with its source line."""
    with notebook_client(path, cell_timeout, prefix="bench-nb-") as (client, nb):
        cells = []
        t0 = time.perf_counter()
        with client.setup_kernel():
            startup = time.perf_counter() - t0
            for index, cell in enumerate(nb.cells):
                if cell.cell_type != "code":
                    continue
                c0 = time.perf_counter()
                client.execute_cell(cell, index)
                found = src.cell_by_id(cell.get("id", "")) if src is not None else None
                cells.append(
                    {
                        "index": index,
                        "line": getattr(found, "line", None),
                        "label": getattr(found, "label", f"cell {index}"),
                        "seconds": time.perf_counter() - c0,
                    }
                )
        total = time.perf_counter() - t0
    return {"seconds": total, "kernel_startup": startup, "cells": cells}


CLASS_COPIES = 4  # reference copies graded in one run for the per-notebook cost at class scale


def time_grading(spec, project: Project, src=None) -> dict:
    """``tito autograde`` of the reference sample alone (one worker), seconds; then of
    CLASS_COPIES copies of it in one run (one worker): the per-notebook cost at class scale,
    where the command's one-off costs (the trusted notebook and judges read, the sandboxed
    template started, the gradebook opened) are shared by the class."""
    release_module(parse_source(spec), project)
    samples(spec, project)
    t0 = time.perf_counter()
    (result,) = autograde(spec, project, ["reference"], jobs=1)
    secs = time.perf_counter() - t0
    ref = project.step_dir("submitted", spec.id, "reference")
    copies = [f"class-{i}" for i in range(CLASS_COPIES)]
    for name in copies:
        shutil.copytree(ref, project.step_dir("submitted", spec.id, name), dirs_exist_ok=True)
    t0 = time.perf_counter()
    many = autograde(spec, project, copies, jobs=1)
    per_notebook = (time.perf_counter() - t0) / CLASS_COPIES
    cells = []  # the worker's log: "cell <id> (trusted): ok (1.234 s)"
    for line in (result.log_text or "").splitlines():
        m = re.match(r"cell (\S+) \((\w+)\): .*\(([\d.]+) s\)$", line)
        if m:
            found = src.cell_by_id(m.group(1)) if src is not None else None
            cells.append(
                {
                    "cell": m.group(1),
                    "line": getattr(found, "line", None),
                    "kind": m.group(2),
                    "seconds": float(m.group(3)),
                }
            )
    return {
        "cells": sorted(cells, key=lambda c: -c["seconds"]),
        "seconds": secs,
        "per_notebook_at_scale": per_notebook,
        "worker_seconds": result.seconds,
        "judge_seconds": result.judge_seconds,
        "class_scores_full": all(r.graded and r.score == r.max_score for r in many),
        "graded": bool(result.graded),
        "score": result.score,
        "max_score": result.max_score,
    }


def main(argv=None) -> int:
    args = parse_args(argv)
    modules_dir = TOY if args.quick else ROOT / "modules"
    names = args.modules or (["99_toy"] if args.quick else [])
    tmp = Path(tempfile.mkdtemp(prefix="bench-notebooks-"))
    # the machine is shared: every time below is inflated by what else runs (say so)
    results: dict = {"modules": {}, "slow_cell_s": args.slow_cell, "load_before": os.getloadavg()}
    targets = []
    try:
        project = Project.at(
            ROOT,
            modules_dir=modules_dir,
            course_dir=tmp / "course",
            nbgrader_config=ROOT / "nbgrader_config.py",
        )
        specs = resolve(names, discover_modules(modules_dir))
        for spec in specs:
            src = parse_source(spec)
            path = ensure_built(src, project)
            runs = [time_notebook(path, src) for _ in range(max(1, args.runs))]
            secs = [r["seconds"] for r in runs]
            best = sorted(runs, key=lambda r: r["seconds"])[len(runs) // 2]
            slow = [c for c in best["cells"] if c["seconds"] > args.slow_cell]
            entry = {
                "notebook_s": statistics.median(secs),
                "notebook_runs_s": secs,
                "kernel_startup_s": best["kernel_startup"],
                "code_cells": len(best["cells"]),
                "slow_cells": slow,
                "cells": best["cells"],
            }
            print(
                f"{spec.id}: notebook {entry['notebook_s']:.1f} s "
                f"({len(best['cells'])} code cells"
                + (f", runs {', '.join(f'{s:.1f}' for s in secs)}" if len(secs) > 1 else "")
                + ")",
                flush=True,
            )
            for c in slow:
                print(f"    {c['seconds']:5.1f} s  line {c['line']}: {c['label']}", flush=True)
            if not args.no_grade:
                entry["grading"] = time_grading(spec, project, src)
                g = entry["grading"]
                print(
                    f"{spec.id}: grading {g['seconds']:.1f} s "
                    f"(reference {g['score']:g}/{g['max_score']:g})",
                    flush=True,
                )
                for c in g["cells"]:
                    if c["seconds"] > args.slow_cell:
                        print(
                            f"    {c['seconds']:5.1f} s  line {c['line']}: {c['kind']} cell "
                            f"{c['cell']}"
                        )
            results["modules"][spec.id] = entry
    finally:
        shutil.rmtree(tmp, ignore_errors=True)

    results["load_after"] = os.getloadavg()
    rows = []
    for mid, e in results["modules"].items():
        g = e.get("grading", {})
        rows.append(
            [
                mid,
                e["notebook_s"],
                e["kernel_startup_s"],
                e["code_cells"],
                len(e["slow_cells"]),
                g.get("seconds"),
                g.get("per_notebook_at_scale"),
                f"{g['score']:g}/{g['max_score']:g}" if g else None,
            ]
        )
        targets.append(
            H.Target(
                f"{mid} solved notebook, cold",
                e["notebook_s"],
                NOTEBOOK_TARGET_S,
                " s",
                higher_is_better=False,
            )
        )
        if g:
            targets.append(
                H.Target(
                    f"{mid} grading a notebook at class scale ({CLASS_COPIES} in one run)",
                    g["per_notebook_at_scale"],
                    GRADING_TARGET_S,
                    " s",
                    higher_is_better=False,
                    note=f"one notebook alone, start-up included: {g['seconds']:.1f} s",
                )
            )
            targets.append(
                H.Target(
                    f"{mid} reference gets full marks", float(g["score"] == g["max_score"]), 1.0
                )
            )
    H.print_table(
        [
            "module",
            "notebook (s)",
            "kernel start (s)",
            "code cells",
            f"cells > {args.slow_cell:g} s",
            "grading 1 alone (s)",
            f"grading / nb, {CLASS_COPIES} in a run (s)",
            "reference",
        ],
        rows,
        title=f"Solved notebooks, cold (OPENBLAS_NUM_THREADS="
        f"{os.environ.get('OPENBLAS_NUM_THREADS')}, {os.cpu_count()} CPUs, load average "
        f"{results['load_before'][0]:.1f} before, {results['load_after'][0]:.1f} after)",
    )
    return H.finish(args, "notebooks", results, targets)


if __name__ == "__main__":
    sys.exit(main())
