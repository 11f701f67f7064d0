"""The measuring harness every tuning candidate shares (module 19, hand-written library code).

Accuracy and logits on arrays, per-example loss, the peak memory of a call (tracemalloc, which
numpy reports its buffers to), a plain median timer, how many calls make one timing sample long
enough for the clock, and `Metrics`, the record of one measured candidate. Module 19's
`measure` (in `tinytorch.autotuning`) puts them together with the two pieces learners write:
`model_bytes` and `interleaved_seconds`.
"""

from __future__ import annotations

import math
import statistics
import time
import tracemalloc
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass

import numpy as np

from tinytorch.core.nn import Module
from tinytorch.core.tensor import Tensor, no_grad

__all__ = [
    "Metrics",
    "accuracy_on",
    "calls_per_sample",
    "iqr",
    "median_seconds",
    "peak_memory",
    "per_example_loss",
    "predict",
]


def peak_memory(fn: Callable[[], object]) -> int:
    """Peak bytes numpy/Python allocate while `fn()` runs (tracemalloc), above the start."""
    was_tracing = tracemalloc.is_tracing()
    if not was_tracing:
        tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        start, _ = tracemalloc.get_traced_memory()
        fn()
        _, peak = tracemalloc.get_traced_memory()
    finally:
        if not was_tracing:
            tracemalloc.stop()
    return int(max(peak - start, 0))


def median_seconds(
    fn: Callable[[], object], repeats: int = 5, warmup: int = 2, min_time: float = 0.002
) -> float:
    """Median seconds per call: warm-up calls, then `repeats` samples of >= min_time each."""
    if repeats < 1 or warmup < 0:
        raise ValueError(f"need repeats >= 1 and warmup >= 0, got {repeats} and {warmup}")
    for _ in range(warmup):
        fn()
    t0 = time.perf_counter()
    fn()
    number = max(1, math.ceil(min_time / max(time.perf_counter() - t0, 1e-9)))
    samples = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        for _ in range(number):
            fn()
        samples.append((time.perf_counter() - t0) / number)
    return statistics.median(samples)


def calls_per_sample(
    fn: Callable[[], object], warmup: int = 2, min_time: float = 0.0002,
    clock: Callable[[], float] = time.perf_counter,
) -> int:
    """Call `fn` `warmup` times (untimed), then time one call on `clock`: the number of calls
    one timing sample needs to last at least `min_time` seconds (at least 1)."""
    if warmup < 0 or min_time < 0:
        raise ValueError(f"need warmup >= 0 and min_time >= 0, got {warmup} and {min_time}")
    for _ in range(warmup):
        fn()
    t0 = clock()
    fn()
    return max(1, math.ceil(min_time / max(clock() - t0, 1e-9)))


@dataclass
class Metrics:
    """One candidate measured on the shared harness."""

    accuracy: float  # fraction of the validation split classified correctly
    latency_ms: float  # median ms of one forward pass over the latency batch
    peak_memory: int  # bytes: the model's arrays + the peak allocation of that forward pass
    model_bytes: int  # bytes to store the model (what a device must hold)
    latency_spread_ms: float = 0.0  # interquartile range of the per-round latencies (noise)
    # baseline ms / this ms, per round of the same interleaved rounds: median and interquartile
    # range (> 1: faster than the baseline; None: measured without a baseline)
    vs_baseline: float | None = None
    vs_baseline_spread: float | None = None

    def to_dict(self) -> dict:
        return asdict(self)

    def vs_baseline_text(self) -> str:
        """'1.85x ±0.07': the speed-up over the baseline, ± half its interquartile range."""
        if self.vs_baseline is None:
            return "-"
        return f"{self.vs_baseline:.2f}x ±{(self.vs_baseline_spread or 0.0) / 2:.2f}"


def predict(model: Module, x: np.ndarray) -> np.ndarray:
    """Logits of `model` on the array `x`, in eval mode and without recording a graph."""
    was_training = model.training
    model.eval()
    try:
        with no_grad():
            return model(Tensor(x)).data
    finally:
        model.train(was_training)


def accuracy_on(model: Module, x: np.ndarray, y: np.ndarray) -> float:
    """Fraction of rows of `x` whose argmax logit equals `y`."""
    return float((predict(model, x).argmax(axis=-1) == y).mean())


def per_example_loss(model: Module, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Cross-entropy of each row of `x` (eval mode, float64 log-softmax)."""
    z = predict(model, x).astype(np.float64)
    z = z - z.max(axis=1, keepdims=True)
    logp = z - np.log(np.exp(z).sum(axis=1, keepdims=True))  # (N, C)
    return -logp[np.arange(len(y)), y]


def iqr(values: Sequence[float]) -> float:
    """Interquartile range (0 for fewer than two values)."""
    if len(values) < 2:
        return 0.0
    q1, _, q3 = statistics.quantiles(values, n=4, method="inclusive")
    return q3 - q1
