"""Timing loops that stop when the answer is known well enough (or the time budget is spent).

A notebook that times with a fixed ``repeats=50`` spends the same time on a 1 ms call whose
samples agree to 1% after five runs as on a noisy one. ``time_until_stable`` keeps sampling
until the 95% confidence interval of the mean is within ``rel_ci`` of the median, or until
``budget_s`` seconds of sampling are spent, whichever comes first, and says which:

    t = time_until_stable(lambda: model(x), rel_ci=0.05, budget_s=1.0)
    print(f"{t.median * 1e3:.2f} ms ± {t.rel_halfwidth:.0%} ({t.n} runs, stopped: {t.stopped})")

A call slower than the budget is run once (its warm-up is its only sample), so a long
measurement is never repeated just to fill a quota.
"""

from __future__ import annotations

import math
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field

__all__ = ["Timing", "time_until_stable"]

# two-sided 97.5% quantiles of Student's t for 1..30 degrees of freedom (then ~1.96)
_T975 = (
    12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228,
    2.201, 2.179, 2.160, 2.145, 2.131, 2.120, 2.110, 2.101, 2.093, 2.086,
    2.080, 2.074, 2.069, 2.064, 2.060, 2.056, 2.052, 2.048, 2.045, 2.042,
)  # fmt: skip


def _t975(dof: int) -> float:
    return _T975[dof - 1] if dof <= len(_T975) else 1.96


@dataclass
class Timing:
    """Seconds per call: the median of ``samples`` and why sampling stopped."""

    samples: list[float] = field(default_factory=list)
    stopped: str = ""  # "tight" (CI within rel_ci), "budget", "max_repeats" or "slow call"

    @property
    def n(self) -> int:
        return len(self.samples)

    @property
    def median(self) -> float:
        return statistics.median(self.samples)

    @property
    def rel_halfwidth(self) -> float:
        """Half-width of the 95% CI of the mean, relative to the median (inf below 2 runs)."""
        if self.n < 2 or self.median <= 0:
            return math.inf
        sd = statistics.stdev(self.samples)
        return _t975(self.n - 1) * sd / math.sqrt(self.n) / self.median


def time_until_stable(
    fn: Callable[[], object],
    *,
    rel_ci: float = 0.05,
    min_repeats: int = 3,
    max_repeats: int = 50,
    budget_s: float = 1.0,
    warmup: int = 1,
    timer: Callable[[], float] = time.perf_counter,
) -> Timing:
    """Time ``fn()`` until the 95% CI of the mean is within ``rel_ci`` of the median (after at
    least ``min_repeats`` runs), ``budget_s`` seconds are spent (warm-up included), or
    ``max_repeats`` runs are done. ``warmup`` untimed calls come first; a warm-up call that
    alone takes longer than the budget becomes the only sample (``stopped == "slow call"``)."""
    if not rel_ci > 0:
        raise ValueError(f"rel_ci must be positive, got {rel_ci}")
    if min_repeats < 1 or max_repeats < min_repeats:
        raise ValueError(
            f"need 1 <= min_repeats <= max_repeats, got min_repeats={min_repeats}, "
            f"max_repeats={max_repeats}"
        )
    if not budget_s > 0:
        raise ValueError(f"budget_s must be positive, got {budget_s}")
    out = Timing()
    begin = timer()
    for _ in range(max(0, int(warmup))):
        start = timer()
        fn()
        took = timer() - start
        if took >= budget_s:
            out.samples.append(took)
            out.stopped = "slow call"
            return out
    while True:
        start = timer()
        fn()
        end = timer()
        out.samples.append(end - start)
        if out.n >= min_repeats and out.rel_halfwidth <= rel_ci:
            out.stopped = "tight"
            return out
        if out.n >= max_repeats:
            out.stopped = "max_repeats"
            return out
        if end - begin >= budget_s:
            out.stopped = "budget"
            return out
