"""time_until_stable: stops when the CI is tight, at the budget, or at max_repeats."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tinytorch.core.timing import Timing, time_until_stable


class FakeClock:
    """A timer whose calls of fn() take the next duration from a list."""

    def __init__(self, durations):
        self.now = 0.0
        self.durations = list(durations)
        self.calls = 0

    def timer(self):
        return self.now

    def fn(self):
        self.now += self.durations[min(self.calls, len(self.durations) - 1)]
        self.calls += 1


def test_identical_samples_stop_as_soon_as_allowed():
    c = FakeClock([0.01])
    t = time_until_stable(c.fn, timer=c.timer, min_repeats=3)
    assert (t.n, t.stopped, c.calls) == (3, "tight", 4)  # one warm-up + three samples
    assert t.median == pytest.approx(0.01) and t.rel_halfwidth < 1e-9


def test_noisy_samples_run_until_the_budget():
    c = FakeClock([0.01, 0.03] * 100)
    t = time_until_stable(c.fn, timer=c.timer, rel_ci=0.01, budget_s=0.2, max_repeats=1000)
    assert t.stopped == "budget"
    assert 0.2 <= 0.01 + sum(t.samples) < 0.2 + 0.03  # the warm-up (0.01 s) counts too
    assert t.rel_halfwidth > 0.01


def test_max_repeats_caps_the_loop():
    c = FakeClock([0.01, 0.03] * 100)
    t = time_until_stable(c.fn, timer=c.timer, rel_ci=1e-6, budget_s=100, max_repeats=7)
    assert (t.n, t.stopped) == (7, "max_repeats")


def test_a_call_slower_than_the_budget_runs_once():
    c = FakeClock([5.0])
    t = time_until_stable(c.fn, timer=c.timer, budget_s=1.0)
    assert (t.n, t.stopped, c.calls) == (1, "slow call", 1)
    assert t.median == 5.0 and math.isinf(t.rel_halfwidth)


@pytest.mark.parametrize(
    "kwargs",
    [dict(rel_ci=0), dict(min_repeats=0), dict(min_repeats=5, max_repeats=4), dict(budget_s=0)],
)
def test_bad_settings_are_named(kwargs):
    with pytest.raises(ValueError, match=next(iter(kwargs)).split("_")[0]):
        time_until_stable(lambda: None, **kwargs)


@given(st.lists(st.floats(1e-4, 1.0), min_size=2, max_size=40))
def test_halfwidth_shrinks_when_the_same_samples_repeat(xs):
    once, twice = Timing(list(xs)), Timing(list(xs) * 2)
    if math.isfinite(once.rel_halfwidth) and once.rel_halfwidth > 0:
        assert twice.rel_halfwidth < once.rel_halfwidth


def test_real_call_returns_positive_median():
    t = time_until_stable(lambda: sum(range(1000)), budget_s=0.2)
    assert t.median > 0 and t.n >= 1 and t.stopped in ("tight", "budget", "max_repeats")


def test_budget_counts_the_warm_up():
    """A call of 0.6 s under a 1 s budget: warm-up + one sample, not a quota of three."""
    c = FakeClock([0.6])
    t = time_until_stable(c.fn, timer=c.timer, budget_s=1.0)
    assert (t.n, t.stopped, c.calls) == (1, "budget", 2)
