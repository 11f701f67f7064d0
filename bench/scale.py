"""Scaling out: autograde throughput, local worker processes vs a Dask cluster on this machine,
and the per-task overhead Dask adds.

Same generated submissions of the toy module (tests/fixtures/modules/99_toy), graded twice into
fresh copies of one course: ``autograde --jobs 2`` (local spawned workers) and
``autograde --scheduler`` against a ``distributed.LocalCluster`` with 2 worker processes of one
thread each (cluster start-up timed separately: a real cluster is already running). Plus a
trivial task's cost: the median round trip of one task, and the time per task when 200 are in
flight. docs/scaling.md turns these figures into cluster sizes.
"""

from __future__ import annotations

import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import _harness as H  # first: pins BLAS to one thread before numpy is imported

REPO = Path(__file__).resolve().parents[1]
TOY = REPO / "tests" / "fixtures" / "modules" / "99_toy"
CONFIG = REPO / "nbgrader_config.py"
ADD = "def add(a, b):\n    return a + b"
CLIP = "def clip(x, lo, hi):\n    return min(max(x, lo), hi)"
KINDS = [
    {"add_impl": ADD, "clip_impl": CLIP},
    {"add_impl": "def add(a, b):\n    return abs(a) + b", "clip_impl": CLIP},
    {},
    {"add_impl": ADD},
]


def make_course(root: Path, n: int):
    import nbformat

    from tito.build import build
    from tito.modules import load_module
    from tito.project import Project
    from tito.release import release_module
    from tito.source import parse_source

    (root / "modules").mkdir(parents=True)
    shutil.copytree(TOY, root / "modules" / "99_toy")
    project = Project.at(root, nbgrader_config=CONFIG)
    spec = load_module(project.modules_dir / "99_toy")
    build([spec], project)
    release_module(parse_source(spec), project)
    release = project.course_dir / "release" / "99_toy" / "toy.ipynb"
    for i in range(n):
        nb = nbformat.read(release, as_version=4)
        fill = KINDS[i % len(KINDS)]
        for cell in nb.cells:
            gid = cell.metadata.get("nbgrader", {}).get("grade_id")
            if gid in fill:
                cell.source = fill[gid]
        dest = project.course_dir / "submitted" / f"s{i:04d}" / "99_toy"
        dest.mkdir(parents=True)
        nbformat.write(nb, dest / "toy.ipynb")
    return project, spec


def copy(project, dest: Path):
    from tito.project import Project

    shutil.copytree(project.root, dest)
    return Project.at(dest, nbgrader_config=CONFIG)


def noop(x):
    return x


class Recorder:
    """A workers.Executor wrapper that keeps a copy of every batch of results it passes on."""

    def __init__(self, inner):
        self.inner, self.batches = inner, []

    def __call__(self, fn, batches):
        import copy as _copy

        for batch in self.inner(fn, batches):
            self.batches.append(_copy.deepcopy(batch))
            yield batch


def replay(batches):
    """A workers.Executor that grades nothing: it hands back recorded results at once, so
    timing it measures only the parent's merge into the gradebook (the one serial part)."""
    import copy as _copy

    def run(fn, _batches):
        for batch in batches:
            yield _copy.deepcopy(batch)

    return run


def task_overhead(ex, n_batch: int, n_single: int) -> tuple[float, float]:
    """(median ms of one task's round trip, ms per task with n_batch in flight)."""
    list(ex.map_tasks(noop, range(4)))  # warm-up: workers started, function shipped
    singles = []
    for i in range(n_single):
        t0 = time.perf_counter()
        list(ex.map_tasks(noop, [i]))
        singles.append(time.perf_counter() - t0)
    t0 = time.perf_counter()
    list(ex.map_tasks(noop, range(n_batch)))
    batch = (time.perf_counter() - t0) / n_batch
    return 1e3 * statistics.median(singles), 1e3 * batch


def main() -> int:
    args = H.parse_args(__doc__.splitlines()[0])
    from distributed import Client, LocalCluster

    from tinytorch.infra.executors import DaskExecutor, LocalExecutor
    from tito.grade import autograde
    from tito.scale import autograde_cluster

    n = H.pick(args, 8, 48)
    workers = 2
    results: dict = {"submissions": n, "workers": workers}
    with tempfile.TemporaryDirectory(prefix="bench-scale-") as tmp:
        tmp = Path(tmp)
        template, spec = make_course(tmp / "template", n)

        from tito.workers import local_pool

        rec = Recorder(local_pool(workers))
        t0 = time.perf_counter()
        local_results = autograde(spec, copy(template, tmp / "local"), jobs=workers,
                                  executor=rec)
        local_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        autograde(spec, copy(template, tmp / "merge"), executor=replay(rec.batches))
        merge_s = time.perf_counter() - t0

        t0 = time.perf_counter()
        cluster = LocalCluster(n_workers=workers, threads_per_worker=1, processes=True,
                               memory_limit="1GiB", dashboard_address=None)
        client = Client(cluster, set_as_default=False)
        ex = DaskExecutor(client=client, require=("tinytorch", "tito"))
        startup_s = time.perf_counter() - t0
        try:
            # first run warms the workers (imports, sandbox template), like a long-lived cluster
            autograde_cluster(spec, copy(template, tmp / "warm"), ex)
            t0 = time.perf_counter()
            dask_results = autograde_cluster(spec, copy(template, tmp / "dask"), ex)
            dask_s = time.perf_counter() - t0
            same = [(r.student, r.graded, r.score) for r in local_results] == [
                (r.student, r.graded, r.score) for r in dask_results
            ]
            d_single, d_batch = task_overhead(ex, H.pick(args, 50, 200), H.pick(args, 10, 30))
        finally:
            ex.close()
            client.close()
            cluster.close()
        with LocalExecutor(workers) as lex:
            l_single, l_batch = task_overhead(lex, H.pick(args, 50, 200), H.pick(args, 10, 30))

    per_nb = statistics.median(r.seconds for r in local_results)
    local_busy = sum(r.seconds for r in local_results)
    dask_busy = sum(r.seconds for r in dask_results)
    results["local"] = {"seconds": local_s, "notebooks_per_minute": 60 * n / local_s,
                        "notebook_seconds_in_workers": local_busy}
    results["dask"] = {
        "seconds": dask_s,
        "notebooks_per_minute": 60 * n / dask_s,
        "cluster_startup_seconds": startup_s,
        "grades_equal_local": same,
        "notebook_seconds_in_workers": dask_busy,
    }
    results["median_notebook_seconds"] = per_nb
    results["parent_merge"] = {"seconds": merge_s, "notebooks_per_minute": 60 * n / merge_s}
    results["task_overhead_ms"] = {"local": l_single, "dask": d_single}
    results["task_ms_in_flight"] = {"local": l_batch, "dask": d_batch}
    H.print_table(
        ["path", "notebooks", "seconds", "notebooks/min", "notebook-s in workers"],
        [
            [f"local --jobs {workers}", n, local_s, 60 * n / local_s, local_busy],
            [f"LocalCluster {workers}x1 (warm)", n, dask_s, 60 * n / dask_s, dask_busy],
            ["parent merge only (replay)", n, merge_s, 60 * n / merge_s, None],
        ],
        title=f"autograde throughput (median notebook {per_nb * 1e3:.0f} ms in its worker; "
        f"cluster start-up {startup_s:.1f} s, not counted)",
    )
    H.print_table(
        ["executor", "round trip of one task (ms)", "per task, many in flight (ms)"],
        [["local processes", l_single, l_batch], ["dask LocalCluster", d_single, d_batch]],
        title="trivial task overhead",
    )
    targets = [
        H.Target("cluster grades equal the local path's", float(same), 1.0),
        H.Target("dask round trip of a trivial task", d_single, 50.0, unit=" ms",
                 higher_is_better=False),
    ]
    return H.finish(args, "scale", results, targets)


if __name__ == "__main__":
    sys.exit(main())
