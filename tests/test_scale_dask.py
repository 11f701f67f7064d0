"""Scaling out on a real Dask cluster (tinytorch/infra/executors.py, tito/scale.py,
tito/arena/cluster.py, tinytorch/infra/parallel_search.py).

One ``distributed.LocalCluster`` (2 worker processes, 1 thread each) plus one ``dask worker``
process started from the command line with ``--resources benchmark=1``, as a real deployment
would tag its benchmark machines. The toy module (tests/fixtures/modules/99_toy) is graded.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

distributed = pytest.importorskip("distributed")

from tinytorch.infra.executors import (  # noqa: E402
    ENV_VAR,
    DaskExecutor,
    ExecutorError,
    InlineExecutor,
    LocalExecutor,
    get_executor,
    resolve_scheduler,
)

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[1]
TOY = REPO / "tests" / "fixtures" / "modules" / "99_toy"
CONFIG = REPO / "nbgrader_config.py"
ADD = "def add(a, b):\n    return a + b"
CLIP = "def clip(x, lo, hi):\n    return min(max(x, lo), hi)"


# ------------------------------------------------------------------------------- the cluster
@pytest.fixture(scope="module")
def cluster():
    from distributed import Client, LocalCluster

    lc = LocalCluster(
        n_workers=2,
        threads_per_worker=1,
        processes=True,
        memory_limit="1GiB",
        dashboard_address=None,
    )
    # the worker unpickles this file's task functions: it must import it, as LocalCluster's do
    path = os.pathsep.join([str(Path(__file__).parent), os.environ.get("PYTHONPATH", "")])
    env = dict(os.environ, OPENBLAS_NUM_THREADS="1", OMP_NUM_THREADS="1", PYTHONPATH=path)
    bench = subprocess.Popen(
        [str(Path(sys.executable).with_name("dask")), "worker", lc.scheduler_address,
         "--nthreads", "1", "--resources", "benchmark=1", "--memory-limit", "1GiB",
         "--no-dashboard", "--name", "bench"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    client = Client(lc, set_as_default=False)
    try:
        client.wait_for_workers(3, timeout=60)
        yield client
    finally:
        client.close()
        bench.terminate()
        try:
            bench.wait(10)
        except subprocess.TimeoutExpired:
            bench.kill()
        lc.close()


@pytest.fixture(scope="module")
def dask_ex(cluster):
    with DaskExecutor(client=cluster, require=("tinytorch", "tito", "nbgrader")) as ex:
        yield ex


def _bench_address(client) -> str:
    info = client.scheduler_info(n_workers=-1)["workers"]
    return next(a for a, w in info.items() if (w.get("resources") or {}).get("benchmark"))


# ---------------------------------------------------------------------------- the executors
def _square(x):
    return x * x


def _fail_on_three(x):
    if x == 3:
        raise ValueError(f"three is bad: {x}")
    return x


@pytest.mark.parametrize("kind", ["inline", "local", "dask"])
def test_map_tasks_yields_every_item_once_with_errors_as_values(kind, dask_ex):
    ex = {"inline": InlineExecutor, "local": lambda: LocalExecutor(2)}.get(kind, lambda: dask_ex)()
    seen = []
    results = list(ex.map_tasks(_fail_on_three, range(6), on_result=seen.append))
    assert sorted(r.index for r in results) == list(range(6)) and len(seen) == 6
    bad = [r for r in results if not r.ok]
    assert [r.item for r in bad] == [3] and "ValueError: three is bad: 3" in bad[0].error
    assert all(r.value == r.item for r in results if r.ok)
    assert ex.map(_square, [1, 2, 3]) == [1, 4, 9]  # the AutoTuner's `executor.map` seam
    if kind == "local":
        ex.close()


def test_unreachable_scheduler_fails_fast_and_clearly():
    start = time.perf_counter()
    with pytest.raises(ExecutorError, match=r"cannot reach the Dask scheduler at tcp://127.0.0.1:9"):
        DaskExecutor("tcp://127.0.0.1:9", connect_timeout=1)
    assert time.perf_counter() - start < 15


def test_workers_without_the_package_are_named(cluster):
    with pytest.raises(ExecutorError) as err:
        DaskExecutor(client=cluster, require=("tinytorch", "no_such_package_xyz"))
    text = str(err.value)
    assert "3 of 3 Dask workers cannot import" in text and "no_such_package_xyz" in text
    assert "tinytorch[cluster]" in text


def test_without_dask_a_scheduler_request_says_what_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "distributed", None)  # import distributed -> ImportError
    with pytest.raises(ExecutorError, match=r'pip install "tinytorch\[cluster\]"'):
        get_executor("tcp://somewhere:8786")
    ex = get_executor(None, jobs=1)  # no scheduler: nothing changes
    assert isinstance(ex, LocalExecutor)


def test_scheduler_comes_from_argument_then_env_then_config(monkeypatch):
    monkeypatch.delenv(ENV_VAR, raising=False)
    assert resolve_scheduler(None, None) is None
    assert resolve_scheduler(None, "tcp://cfg:1") == "tcp://cfg:1"
    monkeypatch.setenv(ENV_VAR, "tcp://env:1")
    assert resolve_scheduler(None, "tcp://cfg:1") == "tcp://env:1"
    assert resolve_scheduler("tcp://arg:1", "tcp://cfg:1") == "tcp://arg:1"
    assert resolve_scheduler("local", "tcp://cfg:1") is None


def test_resources_pin_tasks_to_the_benchmark_worker_one_at_a_time(cluster, dask_ex):
    bench = _bench_address(cluster)
    items = [("bench", i) for i in range(4)] + [("any", i) for i in range(6)]
    results = list(
        dask_ex.map_tasks(
            _sleepy, items, resources=lambda it: {"benchmark": 1} if it[0] == "bench" else None
        )
    )
    timed = sorted((r.started, r.started + r.seconds) for r in results if r.item[0] == "bench")
    assert {r.worker for r in results if r.item[0] == "bench"} == {bench}
    assert all(b[0] >= a[1] - 1e-3 for a, b in zip(timed, timed[1:]))  # never overlapping
    with pytest.raises(ExecutorError, match="no worker of .* offers resources"):
        list(dask_ex.map_tasks(_square, [1], resources={"gpu": 1}))


def _sleepy(item):
    time.sleep(0.1)
    return item


# ------------------------------------------------------------------------------ autograding
def _make_course(root: Path):
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
    kinds = [
        {"add_impl": ADD, "clip_impl": CLIP},  # full marks
        {"add_impl": "def add(a, b):\n    return abs(a) + b", "clip_impl": CLIP},  # hidden fails
        {},  # untouched
        {"add_impl": ADD},  # partial
        {"add_impl": "import os\nos._exit(3)"},  # kills its grading process
        {"add_impl": "import time\ntime.sleep(0.6)\n" + ADD, "clip_impl": CLIP},  # slow
    ]
    for i in range(18):
        nb = nbformat.read(release, as_version=4)
        for cell in nb.cells:
            gid = cell.metadata.get("nbgrader", {}).get("grade_id")
            if gid in kinds[i % len(kinds)]:
                cell.source = kinds[i % len(kinds)][gid]
        dest = project.course_dir / "submitted" / f"s{i:02d}" / "99_toy"
        dest.mkdir(parents=True)
        nbformat.write(nb, dest / "toy.ipynb")
    bad = project.course_dir / "submitted" / "badjson" / "99_toy"
    bad.mkdir(parents=True)
    (bad / "toy.ipynb").write_text('{"cells": [')
    return project, spec


def _copy(project, dest: Path):
    from tito.project import Project

    shutil.copytree(project.root, dest)
    return Project.at(dest, nbgrader_config=CONFIG)


@pytest.fixture(scope="module")
def course(tmp_path_factory):
    from tito.grade import autograde

    base = tmp_path_factory.mktemp("scale")
    project, spec = _make_course(base / "template")
    local = _copy(project, base / "local")
    start = time.perf_counter()
    results = autograde(spec, local, jobs=2)
    seconds = time.perf_counter() - start
    return {"base": base, "template": project, "spec": spec, "local": local,
            "local_results": results, "local_seconds": seconds}


def _view(results):
    return [
        (r.student, r.graded, r.reason, [(s.grade_id, s.score, s.max_score) for s in r.scores])
        for r in results
    ]


def _gradebook(spec, project):
    from tito.grade import table

    t = table(spec, project)
    return [(r.student, r.graded, r.reason, {k: (v.score, v.max_score) for k, v in
                                             r.scores.items()}) for r in t.rows]


def test_cluster_autograde_equals_the_local_path(course, cluster, dask_ex):
    from tito.scale import autograde_cluster, spool_root

    spec = course["spec"]
    project = _copy(course["template"], course["base"] / "cluster")
    start = time.perf_counter()
    results = autograde_cluster(spec, project, dask_ex)
    seconds = time.perf_counter() - start
    print(f"\nautograde of 19 toy notebooks: local --jobs 2 {course['local_seconds']:.1f} s, "
          f"LocalCluster(3 workers) {seconds:.1f} s")
    assert _view(results) == _view(course["local_results"])
    assert _gradebook(spec, project) == _gradebook(spec, course["local"])
    graded = {r.student: r for r in results if r.graded}
    assert len(graded) == 15 and graded["s00"].score == 3 and graded["s02"].score == 0
    workers = set(cluster.scheduler_info(n_workers=-1)["workers"])
    assert {r.worker.split()[1] for r in results if r.worker} <= workers  # graded on Dask
    assert not (spool_root(project) / spec.id).exists()  # partition files merged and removed


def test_a_worker_killed_mid_run_loses_and_duplicates_nobody(course, cluster, dask_ex):
    from tito.grade import check_gradebook
    from tito.scale import autograde_cluster

    spec = course["spec"]
    project = _copy(course["template"], course["base"] / "killed")
    killed: dict = {}
    lock = threading.Lock()

    def kill_a_busy_worker(k, results):
        with lock:
            if killed:
                return
            pids = cluster.run(os.getpid)
            bench = _bench_address(cluster)
            for addr, keys in cluster.processing().items():
                if keys and addr != bench and addr in pids:
                    children = _children(pids[addr])  # its grading process
                    os.kill(pids[addr], signal.SIGKILL)
                    killed.update(addr=addr, pid=pids[addr], busy=len(keys), children=children)
                    return

    parts: list[list[str]] = []
    results = autograde_cluster(
        spec, project, dask_ex, on_partition=lambda k, rs: (parts.append([r.student for r in rs]),
                                                           kill_a_busy_worker(k, rs)),
        keep_spool=True,
    )
    assert killed and killed["busy"] >= 1, "no worker was busy when the test tried to kill one"
    merged = [s for p in parts for s in p]
    assert sorted(merged) == sorted(set(merged)) == sorted(r.student for r in results)
    assert _view(results) == _view(course["local_results"])  # every student, same grades
    assert check_gradebook(spec, project, results) == []
    import sqlite3

    con = sqlite3.connect(project.course_dir / "gradebook.db")
    rows = con.execute(
        "SELECT student_id, COUNT(*) FROM submitted_assignment GROUP BY student_id"
    ).fetchall()
    con.close()
    assert all(n == 1 for _, n in rows) and len(rows) == 15
    files = sorted((project.course_dir / ".scale" / spec.id).glob("*/part-*.json"))
    assert len(files) == len(parts)  # one file per partition: re-runs replaced, never added
    cluster.wait_for_workers(3, timeout=60)  # the nanny restarted the killed worker
    deadline = time.monotonic() + 10
    while any(_alive(c) for c in killed["children"]) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert killed["children"] and not any(_alive(c) for c in killed["children"]), (
        "the killed worker's grading process outlived it"
    )


def _children(pid: int) -> list[int]:
    out = []
    for task in Path(f"/proc/{pid}/task").glob("*"):  # started from any of its threads
        try:
            out += [int(c) for c in (task / "children").read_text().split()]
        except OSError:
            pass
    return out


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def test_tito_autograde_scheduler_option(course, cluster, capsys):
    from tito import cli

    project = _copy(course["template"], course["base"] / "cli")
    root = ["--root", str(project.root), "--nbgrader-config", str(CONFIG)]
    code = cli.main([*root, "autograde", "99_toy", "--scheduler", cluster.scheduler.address,
                     "--student", "s00", "--student", "s03", "--no-progress"])
    out = capsys.readouterr().out
    assert code == 0, out
    assert "s00: 3/3" in out and "s03: 1/3" in out and "on dask at tcp://" in out
    code = cli.main([*root, "autograde", "99_toy", "--student", "s00", "--no-progress"])
    out = capsys.readouterr().out
    assert code == 0 and "s00: 3/3" in out and "dask" not in out  # no scheduler: local path
    code = cli.main([*root, "autograde", "99_toy", "--scheduler", "tcp://127.0.0.1:9",
                     "--student", "s00"])
    assert code != 0
    assert "cannot reach the Dask scheduler" in capsys.readouterr().err


class _Grader:
    """Stands in for workers.BatchGrader: any batch holding "poison" raises."""

    class ctx:  # noqa: N801
        module_id = "99_toy"

    def __call__(self, students):
        from tito.results import StudentResult

        if "poison" in students:
            raise RuntimeError("this submission kills its worker")
        return [StudentResult("99_toy", s, True) for s in students]

    def failed(self, students, reason):
        from tito.results import StudentResult

        return [StudentResult("99_toy", s, False, reason=reason) for s in students]


class _InlineNoIsolation(InlineExecutor):
    def map_tasks(self, fn, items, **kw):
        fn.isolate = False  # grade in this process: no spawned grading process for a fake
        return super().map_tasks(fn, items, **kw)


def test_a_failing_partition_is_regraded_one_by_one_and_the_culprit_reported(tmp_path):
    from tito.scale import cluster_executor

    log: list[str] = []
    run = cluster_executor(_InlineNoIsolation(), tmp_path / "run", log=log)
    batches = [["a", "b"], ["c", "poison", "d"], ["e"]]
    out = [r for batch in run(_Grader(), batches) for r in batch]
    assert sorted(r.student for r in out) == ["a", "b", "c", "d", "e", "poison"]  # once each
    bad = [r for r in out if not r.graded]
    assert [r.student for r in bad] == ["poison"]
    assert "grading worker failed: RuntimeError: this submission kills its worker" in bad[0].reason
    assert len(log) == 1 and "partition 1 failed" in log[0]


# ------------------------------------------------------------------------------ competition
def test_competition_latency_only_on_the_benchmark_worker(cluster, dask_ex, tmp_path):
    from tito.arena import Arena, ArenaLimits
    from tito.arena.cluster import evaluate_many
    from tito.arena.demo import build_samples

    packages = build_samples(tmp_path / "packages", names=["baseline", "speedrun",
                                                            "broken_crash", "broken_malformed"])
    limits = ArenaLimits(wall_seconds=20, repeats=2, warmup=5)
    arena = Arena(tmp_path / "arena-dask", limits=limits)
    sources = [str(p) for p in packages.values()] + [str(packages["baseline"])]
    outs = evaluate_many(arena, sources, dask_ex)
    bench = _bench_address(cluster)
    by_name = dict(zip([*packages, "again"], outs))
    for name in ("baseline", "speedrun", "broken_crash"):
        assert by_name[name].workers["infer"] == bench  # latency: benchmark worker only
    assert by_name["broken_malformed"].workers == {}  # never run
    assert by_name["again"].outcome.submission_id == by_name["baseline"].outcome.submission_id
    local = Arena(tmp_path / "arena-local", limits=limits)
    for name in packages:
        got, want = by_name[name].outcome.entry, local.evaluate(packages[name]).entry
        assert (got.status, got.acc_public, got.acc_private) == (
            want.status, want.acc_public, want.acc_private), f"{name}: {got.error or want.error}"
        if got.status == "ok":
            assert got.latency_p50_ms > 0 and got.speed_acc_public is not None
    assert arena.problems() == []


# ---------------------------------------------------------------------------------- tuning
def _build(config):
    from tinytorch.core.optim import SGD
    from tinytorch.core.zoo import digits_mlp

    model = digits_mlp(hidden=config["hidden"])
    return model, SGD(model.parameters(), lr=config["lr"])


def test_tuning_trials_in_parallel_match_the_serial_search(cluster, dask_ex):
    from tinytorch.autotuning import successive_halving
    from tinytorch.core.zoo import digits_data
    from tinytorch.infra.parallel_search import parallel_successive_halving

    data = digits_data()
    space = {"lr": [0.3, 0.1, 0.03, 0.01, 0.001], "hidden": [16, 32]}
    kw = dict(budget=20, max_epochs=4, eta=2, seed=0, progress=False)
    serial = successive_halving(_build, data, space, median_rule=False, **kw)
    sync = parallel_successive_halving(_build, data, space, executor=dask_ex,
                                       asynchronous=False, **kw)

    def rows(res):
        return sorted((tuple(t.config.items()), tuple(t.scores), t.stopped) for t in res.trials)

    # rung decisions once each rung is complete: exactly the serial search
    assert rows(sync) == rows(serial)
    assert sync.best_config == serial.best_config and sync.epochs_used == serial.epochs_used

    order = []
    asha = parallel_successive_halving(
        _build, data, space, executor=dask_ex, **kw,
        on_result=lambda t, k: order.append(("result", k)),
        on_promote=lambda t, k: order.append(("promote", k)),
    )
    # decided as results arrive: a promotion before the first rung is complete ...
    last_rung0 = max(i for i, e in enumerate(order) if e == ("result", 0))
    assert order.index(("promote", 1)) < last_rung0, order
    # ... with the serial plan's quotas and budget, and training that continues where it was
    assert asha.epochs_used == serial.epochs_used <= kw["budget"]
    reached = sorted(t.epochs for t in asha.trials)
    assert reached == sorted(t.epochs for t in serial.trials)
    full = {tuple(t.config.items()): t.scores for t in serial.trials}
    for t in asha.trials:
        ref = full.get(tuple(t.config.items()))
        if ref is not None:
            n = min(len(ref), len(t.scores))
            assert t.scores[:n] == ref[:n], t.config  # same epochs, same scores
    done = [t for t in asha.trials if t.stopped == "done"]
    assert asha.best is max(done, key=lambda t: t.score)


def test_autotuner_evaluations_run_on_the_cluster(dask_ex):
    from tinytorch import autotuning as at
    from tinytorch.core import zoo

    model, _, data = zoo.train_digits("mlp", seed=0)
    space = at.SearchSpace(prune=(0.0, 0.875), recover=("finetune",), quantize=(None, 8))
    local = at.AutoTuner(data, space=space, progress=False).auto_optimize(model, target="mobile")
    calls = []

    class Counting:  # the AutoTuner's seam is `executor.map(fn, items)`
        def map(self, fn, items):
            items = list(items)
            calls.append(len(items))
            return dask_ex.map(fn, items)

    remote = at.AutoTuner(data, space=space, executor=Counting(), progress=False)
    remote = remote.auto_optimize(model, target="mobile")
    assert sum(calls) >= 2  # evaluations went through the Dask workers
    assert remote.pipeline == local.pipeline


# ---------------------------------------------------------------------------------- bench
def test_bench_scale_quick_writes_json(tmp_path):
    import json

    out = tmp_path / "scale.json"
    proc = subprocess.run(
        [sys.executable, str(REPO / "bench" / "scale.py"), "--quick", "--json", str(out)],
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    data = json.loads(out.read_text())
    res = data["results"]
    assert res["local"]["notebooks_per_minute"] > 0 and res["dask"]["notebooks_per_minute"] > 0
    assert res["task_overhead_ms"]["dask"] > res["task_overhead_ms"]["local"] >= 0
