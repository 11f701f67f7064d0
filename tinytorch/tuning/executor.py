"""The executor seam of the tuner (module 19, hand-written library code).

Every evaluation goes through `evaluate_many(evaluate, items, executor)`, which needs only
`executor.map(fn, items)`: the default runs in this process; a `concurrent.futures` pool, or
`tinytorch.infra.executors` (long-lived processes, a Dask cluster), can be passed instead without
touching the tuner. The evaluate function must pickle for the process-based ones.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence

__all__ = ["InProcessExecutor", "evaluate_many"]


class InProcessExecutor:
    """The default executor: every evaluation here, one after another."""

    def map(self, fn: Callable, items: Iterable) -> list:
        return [fn(x) for x in items]


def evaluate_many(evaluate: Callable, configs: Sequence, executor=None) -> list:
    """evaluate(config) for every config through `executor.map`, results in order.

    The one seam for distributed tuning: pass anything with `map(fn, items)` (a
    concurrent.futures executor, a Dask client wrapper); the default runs in this process.
    """
    return list((executor or InProcessExecutor()).map(evaluate, list(configs)))
