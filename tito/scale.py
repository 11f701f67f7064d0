"""``tito autograde --scheduler tcp://host:8786``: grading partitions of a class on a Dask cluster.

The students are split into disjoint partitions (``workers.batches_for``). Each partition is one
Dask task: a worker grades it with issue 9's ``BatchGrader`` (same sandbox, same limits, same
``StudentResult``s as the local path) and writes the results into *its own* partition file,
``course/.scale/<module>/<run>/part-NNNNN.json``, atomically (temporary name, then rename), and
returns only the file's SHA-256. The parent merges each partition into the course gradebook as
it arrives -- after checking the file's checksum and that it holds exactly the partition's
students -- through ``grade.autograde`` (the single gradebook writer, which refuses a student
returned twice or never, and runs the gradebook integrity check at the end).

Each Dask worker grades in its own long-lived spawned process (``_grading_pool``), which forks a
fresh child per notebook as the local path's workers do.

A worker lost mid-way: Dask re-runs its task on another worker (up to the scheduler's
``allowed-failures``); the re-run rewrites the same partition file, and the parent reads a
partition only once, when its task completes, so nobody is graded twice into the result.
Partitions whose task still fails (``KilledWorker``: a submission that kills workers?) are
re-split into one-student tasks once; a student whose own task still fails is reported as
"could not be graded" with the reason -- never silently lost.

Workers must see the course directory (a shared filesystem, as JupyterHub + Dask deployments
have): they read the submissions and write the partition files there.
"""

from __future__ import annotations

import hashlib
import json
import os
import secrets
import shutil
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict
from pathlib import Path

from .errors import TitoError
from .modules import ModuleSpec
from .project import Project
from .results import CellScore, StudentResult
from .workers import BatchGrader, Executor, Limits

SPOOL = ".scale"


def spool_root(project: Project) -> Path:
    return project.course_dir / SPOOL


_POOL = None  # per Dask worker process: its long-lived grading process


def _exit_with_parent(parent: int) -> None:
    """In the grading process: exit as soon as the Dask worker that started it is gone (killed
    workers run no clean-up), so no grading process outlives its worker."""
    import threading

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(0.5)
        os._exit(0)

    threading.Thread(target=watch, daemon=True, name="exit-with-parent").start()


def _stop_pool() -> None:
    global _POOL
    pool, _POOL = _POOL, None
    if pool is not None:
        for proc in list(getattr(pool, "_processes", {}).values()):
            proc.terminate()
        pool.shutdown(wait=False, cancel_futures=True)


def _grade_in_pool(grader: BatchGrader, students: list[str]) -> list[StudentResult]:
    """Grade in this Dask worker's grading process, started on first use.

    Grading forks a fresh process per notebook; forking the Dask worker itself (hundreds of
    modules, several threads) made every notebook ~3x slower than in the local path's clean
    spawned workers (bench/scale.py), and forking a multi-threaded process is fragile. So the
    Dask worker hands each partition to one clean interpreter of its own, exactly like
    ``local_pool``'s. Dask worker processes are daemonic, which multiprocessing refuses to give
    children: the flag is lifted only while the pool starts its process, and that process is
    then marked daemonic again (terminated, not joined, when the worker exits) and watches its
    parent (it exits if the worker is killed)."""
    global _POOL
    import atexit
    import multiprocessing as mp
    from concurrent.futures import ProcessPoolExecutor
    from concurrent.futures.process import BrokenProcessPool

    fresh = _POOL is None
    if fresh:
        _POOL = ProcessPoolExecutor(
            1,
            mp_context=mp.get_context("spawn"),
            initializer=_exit_with_parent,
            initargs=(os.getpid(),),
        )
        atexit.register(_stop_pool)
    cfg = mp.current_process()._config
    daemon = cfg.get("daemon")
    cfg["daemon"] = False  # the pool starts its process on the first submit
    try:
        fut = _POOL.submit(grader, students)
    finally:
        cfg["daemon"] = daemon
    if fresh:
        for proc in list(getattr(_POOL, "_processes", {}).values()):
            proc._config["daemon"] = daemon  # terminated with the worker, never waited for
    try:
        return fut.result()
    except BrokenProcessPool:
        _stop_pool()  # the next partition gets a fresh one; this one is retried by the parent
        raise


class PartitionTask:
    """Runs in a Dask worker: grade one partition, write its file, return (path, sha256)."""

    def __init__(self, grader: BatchGrader, run_dir: str, isolate: bool = True):
        self.grader, self.run_dir, self.isolate = grader, run_dir, isolate

    def __call__(self, part: tuple[int, list[str]]) -> tuple[str, str, list[str]]:
        k, students = part
        if self.isolate:
            results = _grade_in_pool(self.grader, students)
        else:
            results = self.grader(students)
        try:
            from distributed import get_worker

            where = f"dask {get_worker().address}"
        except (ImportError, ValueError):  # not in a Dask worker (tests, other executors)
            where = "local"
        for r in results:
            r.worker = f"{where} ({r.worker or 'pid ?'})"
        payload = {
            "module": self.grader.ctx.module_id,
            "partition": k,
            "students": list(students),
            "results": [asdict(r) for r in results],
        }
        data = json.dumps(payload, sort_keys=True).encode("utf-8")
        path = Path(self.run_dir) / f"part-{k:05d}.json"
        tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}")
        tmp.write_bytes(data)
        os.replace(tmp, path)  # atomic: a re-run after a lost worker replaces, never appends
        return str(path), hashlib.sha256(data).hexdigest(), list(students)


def _result_from_dict(d: dict) -> StudentResult:
    d = dict(d)
    d["scores"] = [CellScore(**s) for s in d.get("scores", [])]
    return StudentResult(**d)


def read_partition(path: str, digest: str, students: Sequence[str]) -> list[StudentResult]:
    """The partition's results, after checking they are the file the task wrote and hold
    exactly ``students`` once each. TitoError names what is wrong."""
    try:
        data = Path(path).read_bytes()
    except FileNotFoundError:
        raise TitoError(
            f"partition file {path} written by a worker is not visible here: the course "
            "directory must be on a filesystem shared by the workers and this machine"
        ) from None
    if hashlib.sha256(data).hexdigest() != digest:
        raise TitoError(f"partition file {path} does not match the checksum its worker reported")
    payload = json.loads(data)
    results = [_result_from_dict(r) for r in payload["results"]]
    got = [r.student for r in results]
    if payload["students"] != list(students) or sorted(got) != sorted(students):
        raise TitoError(f"partition file {path} holds {got}, expected {list(students)}")
    return results


def cluster_executor(
    executor,
    run_dir: Path,
    on_partition: Callable[[int, list[StudentResult]], None] | None = None,
    log: list[str] | None = None,
) -> Executor:
    """A ``workers.Executor`` (what ``grade.autograde(executor=...)`` takes) that grades each
    batch as one task of ``executor`` (a tinytorch.infra.executors.Executor, usually Dask)."""

    def run(fn: BatchGrader, batches: list[list[str]]) -> Iterator[list[StudentResult]]:
        run_dir.mkdir(parents=True, exist_ok=True)
        task = PartitionTask(fn, str(run_dir))
        parts = list(enumerate(batches))
        for attempt in range(2):
            lost: list[list[str]] = []
            for r in executor.map_tasks(task, parts):
                k, students = r.item
                if r.ok:
                    path, digest, _ = r.value
                    results = read_partition(path, digest, students)
                    if on_partition:
                        on_partition(k, results)
                    yield results
                elif attempt == 0 and len(students) > 1:
                    lost.append(students)  # re-split: one bad submission should not sink others
                    if log is not None:
                        log.append(f"partition {k} failed ({r.error}); re-grading one by one")
                else:
                    yield fn.failed(students, f"grading worker failed: {r.error}")
            if not lost:
                break
            base = len(batches) + 1000 * (attempt + 1)
            parts = [(base + j, [s]) for j, s in enumerate(s for b in lost for s in b)]

    return run


def autograde_cluster(
    spec: ModuleSpec,
    project: Project,
    executor,
    students: Sequence[str] | None = None,
    *,
    limits: Limits | None = None,
    progress: bool | None = False,
    on_partition: Callable[[int, list[StudentResult]], None] | None = None,
    keep_spool: bool = False,
    no_sandbox: bool = False,
) -> list[StudentResult]:
    """``grade.autograde`` with the partitions graded by ``executor``'s workers (see the module
    docstring). Results in ``students`` order, as the local path returns them."""
    from .grade import autograde

    run_dir = spool_root(project) / spec.id / secrets.token_hex(6)
    run_dir.mkdir(parents=True)  # before the grading context lists what students may not open
    ok = False
    try:
        results = autograde(
            spec,
            project,
            students,
            jobs=max(1, executor.workers),
            executor=cluster_executor(executor, run_dir, on_partition),
            limits=limits,
            progress=progress,
            no_sandbox=no_sandbox,
        )
        ok = True
        return results
    finally:
        if ok and not keep_spool:
            shutil.rmtree(run_dir, ignore_errors=True)
            for d in (run_dir.parent, run_dir.parent.parent):
                try:
                    d.rmdir()
                except OSError:
                    pass


def scheduler_from_config(project: Project) -> str | None:
    """``c.TitoAutograde.scheduler`` in nbgrader_config.py, if set."""
    from . import nbg

    try:
        return nbg.load_config(project).TitoAutograde.get("scheduler") or None
    except Exception:  # noqa: BLE001 - a config without the setting
        return None


def open_executor(scheduler: str | None, project: Project, jobs: int = 1):
    """The Dask executor for ``--scheduler`` / $TINYTORCH_SCHEDULER / the config setting, or
    None for the local path. Clear TitoError if it cannot be used."""
    from tinytorch.infra.executors import ExecutorError, get_executor, resolve_scheduler

    address = resolve_scheduler(scheduler, scheduler_from_config(project))
    if address is None:
        return None
    try:
        return get_executor(address, require=("tinytorch", "tito", "nbgrader"))
    except ExecutorError as exc:
        raise TitoError(str(exc)) from None
