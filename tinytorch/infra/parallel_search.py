"""Successive halving with trials in parallel on an executor (local processes or a Dask cluster).

    from tinytorch.infra.executors import get_executor
    with get_executor("tcp://host:8786") as ex:               # or get_executor(jobs=2)
        result = parallel_successive_halving(build_fn, data, space, budget=60, executor=ex)

Same plan as module 19's ``successive_halving`` (``halving_plan``: the same first rung, the same
rungs, the same number promoted out of each rung, so the same epoch budget), but every trial's
training to its next rung is one task, and the rung decisions are made *as results arrive*
(asynchronous successive halving, Li et al. 2020): once ``m`` results of a rung are in, the best
``m // eta`` of them may be promoted at once -- up to the rung's quota -- so idle workers pick up
promoted trials instead of waiting for the slowest trial of the rung. When the rung is complete,
the rest of its quota goes to the best trials not yet promoted; the others stop ("halving").

A promoted trial continues from its trained state (model, optimizer, loader: pickled back and
forth), so no epoch is trained twice. The median stopping rule of the serial version is not
applied here (it needs the history of trials that run concurrently).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from tqdm.auto import tqdm

from tinytorch.tuning.search import SearchResult, Trial, _Runner, grid, halving_plan

__all__ = ["TrialTask", "parallel_successive_halving"]


@dataclass(frozen=True)
class TrialTask:
    """Runs in a worker: train one trial from ``state`` (None: fresh) up to ``target`` epochs.

    Item: (trial id, config, scores so far, state, target). Returns (scores, state, epochs)."""

    build_fn: Callable
    data: object
    seed: int

    def __call__(self, item):
        _tid, config, scores, state, target = item
        runner = _Runner(self.build_fn, self.data, self.seed)
        trial = Trial(dict(config), list(scores))
        if state is not None:
            runner.state[id(trial)] = state
        while trial.epochs < target:
            runner.train_epoch(trial)
        return trial.scores, runner.state[id(trial)], runner.epochs_used


def parallel_successive_halving(
    build_fn: Callable,
    data,
    space: dict,
    budget: int,
    executor=None,
    eta: int = 3,
    min_epochs: int = 1,
    max_epochs: int = 9,
    seed: int = 0,
    progress: bool = True,
    on_result: Callable | None = None,
    asynchronous: bool = True,
    on_promote: Callable | None = None,
) -> SearchResult:
    """Successive halving over the grid with trials trained in parallel on ``executor``
    (default: local processes, one per CPU up to 2). Returns module 19's ``SearchResult``;
    ``on_result(trial, rung)`` is called as each trial reports a rung, ``on_promote(trial,
    rung)`` as a trial is sent on to ``rung``. ``asynchronous=False``
    promotes only when a rung is complete: exactly the serial search's decisions."""
    from tinytorch.infra.executors import LocalExecutor

    configs = grid(space)
    n0, rungs = halving_plan(len(configs), budget, min_epochs, max_epochs, eta)
    rng = np.random.default_rng(seed)
    trials = [Trial(configs[i]) for i in rng.choice(len(configs), size=n0, replace=False)]
    last = len(rungs) - 1
    quota = [max(1, n0 // eta ** (k + 1)) for k in range(last)]  # promoted out of rung k
    entering = [n0] + quota  # trials that train to rung k
    reported: list[list[int]] = [[] for _ in rungs]  # trial ids with a result at rung k
    promoted: list[set[int]] = [set() for _ in rungs]
    state: dict[int, object] = {}
    epochs_used = 0
    own = executor is None
    executor = executor or LocalExecutor(2)
    bar = tqdm(total=budget, desc="parallel successive halving", disable=not progress,
               leave=False)
    task = TrialTask(build_fn, data, seed)

    def at(tid: int, k: int) -> float:  # the trial's score when it reached rung k
        scores = trials[tid].scores
        return scores[rungs[k] - 1] if len(scores) >= rungs[k] else -math.inf

    def rank(k: int) -> list[int]:
        return sorted(reported[k], key=lambda t: (-at(t, k), t))

    try:
        with executor.stream(task) as stream:

            def start(tid: int, k: int) -> None:
                t = trials[tid]
                stream.submit((tid, t.config, t.scores, state.pop(tid, None), rungs[k]))
                rung_of[tid] = k

            rung_of: dict[int, int] = {}
            for tid in range(n0):
                start(tid, 0)
            for r in stream:
                tid = r.item[0]
                k = rung_of[tid]
                t = trials[tid]
                if r.ok:
                    scores, st, used = r.value
                    epochs_used += used
                    bar.update(used)
                    t.scores = list(scores)
                    state[tid] = st
                else:
                    t.scores = [-math.inf] * rungs[k]  # ranks last; the rung still completes
                    t.stopped = f"failed: {r.error}"
                reported[k].append(tid)
                if on_result:
                    on_result(t, k)
                if k == last:
                    t.stopped = t.stopped or "done"
                    state.pop(tid, None)
                    continue
                ranked = [i for i in rank(k) if not trials[i].stopped.startswith("failed")]
                complete = len(reported[k]) == entering[k]
                allowed = quota[k] if complete else min(quota[k], len(reported[k]) // eta)
                if not asynchronous and not complete:
                    allowed = 0
                for i in ranked[:allowed]:
                    if len(promoted[k]) >= quota[k]:
                        break
                    if i not in promoted[k]:
                        promoted[k].add(i)
                        start(i, k + 1)
                        if on_promote:
                            on_promote(trials[i], k + 1)
                if complete:
                    for i in reported[k]:
                        if i not in promoted[k] and not trials[i].stopped:
                            trials[i].stopped = "halving"
                            state.pop(i, None)
    finally:
        bar.close()
        if own:
            executor.close()
    done = [t for t in trials if t.stopped == "done"]
    best = max(done, key=lambda t: t.score) if done else None
    name = f"successive halving (parallel, {executor.describe()})"
    return SearchResult(name, best, trials, epochs_used, budget)
