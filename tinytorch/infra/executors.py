"""One executor seam for everything that fans work out: autograding, arena evaluation, tuning.

    with get_executor(scheduler=None, jobs=2) as ex:         # local worker processes
        for r in ex.map_tasks(fn, items):                      # results as they complete
            print(r.index, r.value if r.ok else r.error)

    with get_executor("tcp://scheduler:8786") as ex:           # or TINYTORCH_SCHEDULER=...
        ...                                                    # the same code on a Dask cluster

``map_tasks(fn, items, resources=None, on_result=None, retries=0)`` calls ``fn(item)`` for every
item and yields a ``TaskResult`` per item *as it completes* (not in order); a task that raised,
or whose worker was lost more often than allowed, comes back with ``error`` set instead of
raising, so one bad item never loses the others. ``map(fn, items)`` is the ordered,
raise-on-error form the AutoTuner's ``executor=`` seam expects.

``resources`` are Dask worker resources (``{"benchmark": 1}``: only workers started with
``--resources benchmark=1`` run the task, each one such task at a time), for every item or per
item (a callable item -> dict | None). The local executor honours them with one benchmark slot:
at most one such task runs at a time on this machine.

Dask is optional (``pip install "tinytorch[cluster]"``) and imported only when a scheduler is
asked for.
"""

from __future__ import annotations

import os
import time
import traceback
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any

__all__ = [
    "ENV_VAR",
    "ExecutorError",
    "TaskResult",
    "TaskStream",
    "Executor",
    "InlineExecutor",
    "LocalExecutor",
    "DaskExecutor",
    "resolve_scheduler",
    "get_executor",
]

ENV_VAR = "TINYTORCH_SCHEDULER"
INSTALL_HINT = 'pip install "tinytorch[cluster]"'
LOCAL_RESOURCES = {"benchmark": 1}  # one machine: one benchmark slot (timings stay comparable)


class ExecutorError(RuntimeError):
    """The executor cannot run at all: no dask, unreachable scheduler, workers without the
    package. Errors of single tasks are TaskResult.error instead."""


@dataclass
class TaskResult:
    index: int  # position of the item in the input
    item: Any
    value: Any = None
    error: str | None = None  # "ValueError: ..." if the task raised; "worker lost: ..." if lost
    worker: str = ""  # which worker ran it (address or pid)
    seconds: float = 0.0  # wall time inside the task (0 if it never finished)
    started: float = 0.0  # when the task started on its worker (Unix time)

    @property
    def ok(self) -> bool:
        return self.error is None


def _timed(fn: Callable, item) -> tuple[Any, str, float, float]:
    """Runs in the worker: (value, who ran it, seconds, start as a Unix time)."""
    wall, start = time.time(), time.perf_counter()
    value = fn(item)
    return value, _whoami(), time.perf_counter() - start, wall


def _whoami() -> str:
    try:
        from distributed import get_worker

        return get_worker().address
    except (ImportError, ValueError):
        return f"pid {os.getpid()}"


def _resources_for(resources, item) -> dict:
    """``resources`` is a dict for every item, or a callable item -> dict | None."""
    need = resources(item) if callable(resources) else resources
    return dict(need or {})


def _describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"


class Executor:
    """The interface. Subclasses implement ``map_tasks``; use as a context manager."""

    name = "executor"
    workers = 1

    def map_tasks(
        self,
        fn: Callable,
        items: Iterable,
        resources: dict[str, float] | None = None,
        on_result: Callable[[TaskResult], None] | None = None,
        retries: int = 0,
    ) -> Iterator[TaskResult]:
        raise NotImplementedError

    def stream(self, fn: Callable, resources: dict[str, float] | None = None) -> TaskStream:
        """A stream of tasks that can grow while results arrive (successive halving promotes
        a trial as soon as its result is in): ``s.submit(item)``, then ``for r in s:`` yields
        each TaskResult as it completes, until nothing is pending."""
        return _SerialStream(self, fn, resources)

    def map(self, fn: Callable, items: Iterable) -> list:
        """Ordered values (the AutoTuner seam); the first failed task raises RuntimeError."""
        items = list(items)
        out: list = [None] * len(items)
        for r in self.map_tasks(fn, items):
            if not r.ok:
                raise RuntimeError(f"task {r.index} failed on {r.worker or '?'}: {r.error}")
            out[r.index] = r.value
        return out

    def describe(self) -> str:
        return f"{self.name} ({self.workers} worker{'s' if self.workers != 1 else ''})"

    def close(self) -> None:
        pass

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class TaskStream:
    """See ``Executor.stream``."""

    def __init__(self, executor: Executor, fn: Callable, resources=None):
        self.executor, self.fn, self.resources = executor, fn, resources
        self.submitted = 0

    def submit(self, item) -> int:
        """Queue ``fn(item)``; returns its index (TaskResult.index)."""
        raise NotImplementedError

    def __iter__(self) -> Iterator[TaskResult]:
        raise NotImplementedError

    def close(self) -> None:
        pass

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class _SerialStream(TaskStream):
    """Runs each submitted task through ``executor.map_tasks`` one at a time (fallback)."""

    def __init__(self, executor, fn, resources=None):
        super().__init__(executor, fn, resources)
        self._queue: list = []

    def submit(self, item) -> int:
        self._queue.append((self.submitted, item))
        self.submitted += 1
        return self.submitted - 1

    def __iter__(self):
        while self._queue:
            i, item = self._queue.pop(0)
            for r in self.executor.map_tasks(self.fn, [item], self.resources):
                r.index = i
                yield r


class _PoolStream(TaskStream):
    def __init__(self, executor: LocalExecutor, fn, resources=None):
        super().__init__(executor, fn, resources)
        for k, v in ({} if callable(resources) else dict(resources or {})).items():
            if v > executor.capacity.get(k, 0):
                raise ExecutorError(f"no local worker has resource {k}={v}")
        self._running: dict = {}

    def submit(self, item) -> int:
        i = self.submitted
        self.submitted += 1
        fut = self.executor._get_pool().submit(_timed, self.fn, item)
        self._running[fut] = (i, item)
        return i

    def __iter__(self):
        from concurrent.futures import FIRST_COMPLETED, wait

        while self._running:
            done, _ = wait(self._running, return_when=FIRST_COMPLETED)
            for fut in done:
                i, item = self._running.pop(fut)
                try:
                    value, who, secs, t0 = fut.result()
                    yield TaskResult(i, item, value, worker=who, seconds=secs, started=t0)
                except Exception as exc:
                    yield TaskResult(i, item, error=_describe(exc))

    def close(self) -> None:
        for fut in self._running:
            fut.cancel()


class _DaskStream(TaskStream):
    def __init__(self, executor: DaskExecutor, fn, resources=None):
        from distributed import as_completed

        super().__init__(executor, fn, resources)
        self._ac = as_completed(loop=executor.client.loop)
        self._meta: dict = {}

    def submit(self, item) -> int:
        i = self.submitted
        self.submitted += 1
        need = _resources_for(self.resources, item) or None
        fut = self.executor.client.submit(_timed, self.fn, item, pure=False, resources=need)
        self._meta[fut.key] = (i, item)
        self._ac.add(fut)
        return i

    def __iter__(self):
        distributed = self.executor._distributed
        while not self._ac.is_empty():
            fut = next(self._ac)
            i, item = self._meta.pop(fut.key)
            try:
                value, who, secs, t0 = fut.result()
                r = TaskResult(i, item, value, worker=who, seconds=secs, started=t0)
            except distributed.KilledWorker as exc:
                r = TaskResult(i, item, error=f"worker lost: {_describe(exc)}")
            except Exception as exc:
                r = TaskResult(i, item, error=_describe(exc))
            fut.release()
            yield r

    def close(self) -> None:
        self._ac.clear()


class InlineExecutor(Executor):
    """Every task in this process, in order (debugging, tests)."""

    name = "inline"

    def map_tasks(self, fn, items, resources=None, on_result=None, retries=0):
        for i, item in enumerate(items):
            try:
                value, who, secs, t0 = _timed(fn, item)
                r = TaskResult(i, item, value, worker=who, seconds=secs, started=t0)
            except Exception as exc:
                r = TaskResult(i, item, error=_describe(exc), worker=f"pid {os.getpid()}")
            if on_result:
                on_result(r)
            yield r


class LocalExecutor(Executor):
    """``jobs`` spawned worker processes that live as long as the executor (so what a task
    imports once stays imported for the next one). A worker that dies fails its task with
    ``error``; the pool is rebuilt for the next call."""

    name = "local"

    def __init__(self, jobs: int = 1, resources: dict[str, int] | None = None):
        if jobs < 1:
            raise ValueError(f"jobs must be >= 1, got {jobs}")
        self.workers = jobs
        self.capacity = dict(LOCAL_RESOURCES if resources is None else resources)
        self._pool = None

    def _get_pool(self):
        if self._pool is None:
            from concurrent.futures import ProcessPoolExecutor
            from multiprocessing import get_context

            self._pool = ProcessPoolExecutor(self.workers, mp_context=get_context("spawn"))
        return self._pool

    def _check(self, need: dict) -> None:
        for name, amount in need.items():
            if amount > self.capacity.get(name, 0):
                raise ExecutorError(
                    f"no local worker has resource {name}={amount} (this machine offers "
                    f"{self.capacity}); run on a Dask cluster with --resources {name}={amount}"
                )

    def map_tasks(self, fn, items, resources=None, on_result=None, retries=0):
        from concurrent.futures import FIRST_COMPLETED, wait
        from concurrent.futures.process import BrokenProcessPool

        items = list(items)
        needs = [_resources_for(resources, item) for item in items]
        for need in needs:
            self._check(need)
        pool = self._get_pool()
        todo = list(range(len(items)))
        attempts: dict[int, int] = {}
        running: dict = {}
        used: dict[str, float] = {}

        def fits(i: int) -> bool:
            return all(used.get(k, 0) + v <= self.capacity[k] for k, v in needs[i].items())

        while todo or running:
            for i in list(todo):  # in order; an item waiting for a resource lets others pass
                if len(running) >= 2 * self.workers:
                    break
                if fits(i):
                    todo.remove(i)
                    for k, v in needs[i].items():
                        used[k] = used.get(k, 0) + v
                    running[pool.submit(_timed, fn, items[i])] = i
            done, _ = wait(running, return_when=FIRST_COMPLETED)
            for fut in done:
                i = running.pop(fut)
                for k, v in needs[i].items():
                    used[k] -= v
                try:
                    value, who, secs, t0 = fut.result()
                    r = TaskResult(i, items[i], value, worker=who, seconds=secs, started=t0)
                except BrokenProcessPool as exc:
                    self._pool = None  # rebuild; the others in flight fail the same way
                    pool = self._get_pool()
                    attempts[i] = attempts.get(i, 0) + 1
                    if attempts[i] <= retries:
                        todo.insert(0, i)
                        continue
                    r = TaskResult(i, items[i], error=f"worker lost: {_describe(exc)}")
                except Exception as exc:
                    r = TaskResult(i, items[i], error=_describe(exc))
                if on_result:
                    on_result(r)
                yield r

    def stream(self, fn, resources=None):
        return _PoolStream(self, fn, resources)

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None


def _import_distributed(address: str):
    try:
        import distributed
    except ImportError:
        raise ExecutorError(
            f"a Dask scheduler was asked for ({address}) but dask.distributed is not installed: "
            f"{INSTALL_HINT}"
        ) from None
    return distributed


def _probe(modules: tuple[str, ...]) -> dict:
    """Runs on every worker: can it import what the tasks need?"""
    import importlib

    out = {}
    for m in modules:
        try:
            mod = importlib.import_module(m)
            out[m] = getattr(mod, "__version__", None) or getattr(mod, "__file__", "") or "ok"
        except Exception as exc:  # noqa: BLE001 - reported, not raised
            out[m] = f"ERROR {_describe(exc)}"
    return out


class DaskExecutor(Executor):
    """Tasks on a Dask cluster (``distributed.Client``): ``DaskExecutor("tcp://host:8786")`` or
    ``DaskExecutor(client=Client(LocalCluster(...)))``.

    On start it connects with a short timeout (``ExecutorError`` naming the address if the
    scheduler is unreachable), waits up to ``worker_timeout`` seconds for a worker, and checks
    that every worker imports ``require`` (``ExecutorError`` naming the workers that cannot)."""

    name = "dask"

    def __init__(
        self,
        scheduler: str | None = None,
        *,
        client=None,
        connect_timeout: float = 5.0,
        worker_timeout: float = 30.0,
        require: tuple[str, ...] = ("tinytorch",),
    ):
        address = scheduler or (client.scheduler.address if client is not None else "?")
        distributed = _import_distributed(address)
        self._own = client is None
        if client is None:
            if not scheduler:
                raise ValueError("DaskExecutor needs a scheduler address or a client")
            try:
                client = distributed.Client(
                    scheduler, timeout=connect_timeout, set_as_default=False
                )
            except (OSError, TimeoutError) as exc:
                raise ExecutorError(
                    f"cannot reach the Dask scheduler at {scheduler} within {connect_timeout:g} s "
                    f"({_describe(exc)}); is it running and is the address right? "
                    f"(set by --scheduler or {ENV_VAR})"
                ) from None
        self.client = client
        self.address = address
        self._distributed = distributed
        try:
            self.check_workers(require, worker_timeout)
        except Exception:
            self.close()
            raise

    @property
    def workers(self) -> int:  # type: ignore[override]
        return len(self.client.scheduler_info(n_workers=-1).get("workers", {}))

    def worker_resources(self) -> dict[str, dict]:
        info = self.client.scheduler_info(n_workers=-1).get("workers", {})
        return {addr: dict(w.get("resources") or {}) for addr, w in info.items()}

    def check_workers(self, require: tuple[str, ...], timeout: float) -> dict:
        """{worker: {module: version}}; ExecutorError if a worker cannot import one of them."""
        try:
            self.client.wait_for_workers(1, timeout=timeout)
        except TimeoutError:
            raise ExecutorError(
                f"the Dask scheduler at {self.address} has no workers (waited {timeout:g} s)"
            ) from None
        if not require:
            return {}
        found = self.client.run(_probe, tuple(require))
        bad = {
            w: {m: v for m, v in mods.items() if str(v).startswith("ERROR")}
            for w, mods in found.items()
        }
        bad = {w: m for w, m in bad.items() if m}
        if bad:
            lines = [f"  {w}: {m}: {v[6:]}" for w, mods in sorted(bad.items()) for m, v in
                     mods.items()]
            raise ExecutorError(
                f"{len(bad)} of {len(found)} Dask workers cannot import what the tasks need:\n"
                + "\n".join(lines[:10])
                + f"\ninstall this project with {INSTALL_HINT} in the workers' environment"
            )
        return found

    def map_tasks(self, fn, items, resources=None, on_result=None, retries=0):
        from distributed import as_completed

        items = list(items)
        needs = [_resources_for(resources, item) for item in items]
        offered = self.worker_resources() if any(needs) else {}
        for need in {tuple(sorted(n.items())) for n in needs if n}:
            if not any(all(w.get(k, 0) >= v for k, v in need) for w in offered.values()):
                raise ExecutorError(
                    f"no worker of {self.address} offers resources {dict(need)} (start one with "
                    "dask worker ... --nthreads 1 --resources "
                    + ",".join(f"{k}={v:g}" for k, v in need)
                    + ")"
                )
        futures = [
            self.client.submit(_timed, fn, item, pure=False, resources=need or None,
                               retries=retries)
            for item, need in zip(items, needs)
        ]
        index = {f.key: i for i, f in enumerate(futures)}
        try:
            for fut in as_completed(futures, loop=self.client.loop):
                i = index[fut.key]
                try:
                    value, who, secs, t0 = fut.result()
                    r = TaskResult(i, items[i], value, worker=who, seconds=secs, started=t0)
                except self._distributed.KilledWorker as exc:
                    r = TaskResult(i, items[i], error=f"worker lost: {_describe(exc)}")
                except Exception as exc:
                    tb = traceback.format_exception_only(type(exc), exc)[-1].strip()
                    r = TaskResult(i, items[i], error=tb)
                fut.release()
                if on_result:
                    on_result(r)
                yield r
        finally:
            for f in futures:
                if not f.done():
                    f.cancel()

    def stream(self, fn, resources=None):
        return _DaskStream(self, fn, resources)

    def describe(self) -> str:
        return f"dask at {self.address} ({self.workers} workers)"

    def close(self) -> None:
        if self._own and getattr(self, "client", None) is not None:
            self.client.close()
            self.client = None


def resolve_scheduler(scheduler: str | None = None, config: str | None = None) -> str | None:
    """The scheduler address to use: the argument, else $TINYTORCH_SCHEDULER, else the config
    setting; None (or "" / "local") means local worker processes."""
    for value in (scheduler, os.environ.get(ENV_VAR), config):
        if value:
            return None if value.strip().lower() == "local" else value.strip()
    return None


def get_executor(
    scheduler: str | None = None, *, jobs: int = 1, config: str | None = None, **dask_options
) -> Executor:
    """A DaskExecutor when a scheduler is given (argument, env var or config), else a
    LocalExecutor with ``jobs`` processes."""
    address = resolve_scheduler(scheduler, config)
    if address:
        return DaskExecutor(address, **dask_options)
    return LocalExecutor(jobs)
