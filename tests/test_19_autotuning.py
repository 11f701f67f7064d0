"""Module 19 (autotuning) and its library tinytorch/tuning/: the harness (model_bytes,
interleaved_seconds, measure), constraints, hardware detection, the step interface and pipelines,
Pareto fronts, the cache and executor seam, the AutoTuner against exhaustive search, accuracy-aware
quantization, hyperparameter search, adaptive training, active learning; the bench runs. Tests of
library code call the library modules (tinytorch.tuning.*); tinytorch.autotuning re-exports them."""

from __future__ import annotations

import copy
import json
import math
import os
import pickle
import statistics
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import tinytorch.autotuning as at
from tinytorch.core import zoo
from tinytorch.core.nn import Linear, Sequential, manual_seed
from tinytorch.core.optim import AdamW
from tinytorch.quantization import QConfig, Quantizer
from tinytorch.tuning import (
    active,
    adaptive,
    cache,
    executor,
    hardware,
    harness,
    mixed_precision,
    search,
    steps,
)

ROOT = Path(__file__).resolve().parents[1]
K = 1024


# ============================================================================ fixtures
@pytest.fixture(scope="session")
def digits_mlp():
    model, _, data = zoo.train_digits("mlp", seed=0)
    return model, data


@pytest.fixture(scope="session")
def digits_cnn():
    model, _, data = zoo.train_digits("cnn", seed=0)
    return model, data


SMALL_SPACE = at.SearchSpace(
    prune=(0.0, 0.75, 0.875, 0.9375), recover=("none", "finetune"), quantize=(None, 8, 4)
)


@pytest.fixture(scope="session")
def tuned(digits_mlp, tmp_path_factory):
    """A tuner with a shared cache and the exhaustive search of SMALL_SPACE."""
    model, data = digits_mlp
    path = tmp_path_factory.mktemp("tuning") / "cache.json"
    tuner = at.AutoTuner(data, space=SMALL_SPACE, cache=cache.ResultCache(path), progress=False)
    return tuner, path


def _best_under(result, constraints, objective):
    ok = [c for c in result.candidates
          if not constraints.violations(c.metrics, result.baseline.accuracy)]
    return min(ok, key=lambda c: at.OBJECTIVES[objective](c.metrics)) if ok else None


# ============================================================================ harness
def test_model_bytes_counts_state_and_packs_int4(digits_mlp):
    model, data = digits_mlp
    assert at.model_bytes(model) == sum(p.data.nbytes for p in model.parameters())
    q8 = Quantizer(QConfig(weight_bits=8)).quantize(model, data.loader("train"), 1)
    q4 = Quantizer(QConfig(weight_bits=4)).quantize(model, data.loader("train"), 1)
    assert at.model_bytes(q8) == sum(a.nbytes for a in q8.state_dict().values())
    codes = sum(m.weight.size for m in q4.modules() if getattr(m, "weight_bits", 8) == 4)
    assert at.model_bytes(q4) == at.model_bytes(q8) - codes + sum(
        (m.weight.size + 1) // 2 for m in q4.modules() if getattr(m, "weight_bits", 8) == 4
    )


def test_measure_reports_the_four_metrics(digits_mlp):
    model, data = digits_mlp
    m = at.measure(model, data, repeats=3)
    assert m.accuracy == pytest.approx(harness.accuracy_on(model, data.x_val, data.y_val))
    assert 0 < m.latency_ms < 1000
    assert m.model_bytes == at.model_bytes(model)
    # weights are resident, and a forward pass allocates at least its (32, 256) hidden layer
    assert m.peak_memory >= m.model_bytes + 32 * 256 * 4
    assert set(m.to_dict()) == {"accuracy", "latency_ms", "peak_memory", "model_bytes",
                                "latency_spread_ms", "vs_baseline", "vs_baseline_spread"}
    assert m.latency_spread_ms >= 0 and m.vs_baseline is None  # no baseline given


def fake_rounds(rounds: int) -> list[float]:
    """The model's round times under FakeClock: 0.1 ms, 0.2 ms, ... (the baseline's: twice)."""
    return [1e-4 * (1 + r) for r in range(rounds)]


def fake_stats(rounds: int) -> tuple[float, float]:
    """(median ms, interquartile range ms) of fake_rounds."""
    ms = [t * 1e3 for t in fake_rounds(rounds)]
    q1, _, q3 = statistics.quantiles(ms, n=4, method="inclusive")
    return statistics.median(ms), q3 - q1


class FakeClock:
    """Stands in for interleaved_seconds: records the calls, returns fixed round times."""

    def __init__(self):
        self.calls = []

    def __call__(self, fns, rounds=25, warmup=2, min_time=0.0002):
        self.calls.append((len(fns), rounds))
        for fn in fns:  # the functions really run (one call each)
            fn()
        first = fake_rounds(rounds)
        return [first] + [[2 * t for t in first] for _ in fns[1:]]


def test_baseline_and_candidates_are_timed_in_the_same_interleaved_rounds(digits_mlp,
                                                                           monkeypatch):
    """Structure, not timing: every evaluation (the baseline's too) times its model together
    with the base model in one call of the interleaved routine, and the ratio and its spread
    come from those rounds."""
    model, data = digits_mlp
    clock = FakeClock()
    monkeypatch.setattr(at, "interleaved_seconds", clock)
    ev = at.Evaluator(model, data, finetune_epochs=1, repeats=3)
    base, int8 = ev(at.Config()), ev(at.Config(quantize=8))
    assert clock.calls == [(2, 15), (2, 15)], "candidate and baseline must share the rounds"
    median, iqr = fake_stats(15)
    for m in (base, int8):
        assert m.latency_ms == pytest.approx(median)
        assert m.latency_spread_ms == pytest.approx(iqr)
        assert m.vs_baseline == pytest.approx(2.0) and m.vs_baseline_spread == pytest.approx(0)
    plain = at.measure(model, data, repeats=3)  # what a re-measurement reports: same routine
    assert clock.calls[-1] == (1, 15) and plain.latency_ms == pytest.approx(base.latency_ms)


def test_interleaved_seconds_alternates_and_pins_one_blas_thread(monkeypatch):
    from tinytorch.core import threads

    order, threads_seen = [], []

    def fn(name):
        def call():
            order.append(name)
            threads_seen.append(threads._applied)
        return call

    out = at.interleaved_seconds([fn("a"), fn("b")], rounds=3, warmup=0, min_time=0.0)
    assert [len(t) for t in out] == [3, 3] and all(v >= 0 for t in out for v in t)
    timed = order[2:]  # after one calibration call each
    assert timed == ["a", "b", "b", "a", "a", "b"]
    assert set(threads_seen) == {1}, "timed with one BLAS thread"
    with pytest.raises(ValueError, match="rounds >= 1"):
        at.interleaved_seconds([fn("a")], rounds=0)


def test_the_report_carries_the_ratio_and_its_spread(digits_mlp, monkeypatch):
    model, data = digits_mlp
    monkeypatch.setattr(at, "interleaved_seconds", FakeClock())
    space = at.SearchSpace(prune=(0.0,), recover=("none",), quantize=(None, 8))
    result = at.AutoTuner(data, space=space, progress=False).auto_optimize(model, target="mobile")
    table = result.table()
    assert "vs base" in table.splitlines()[0]
    assert all("2.00x ±0.00" in line for line in table.splitlines()[1:]), table
    median, iqr = fake_stats(25)  # the tuner's default: repeats=5, 5 rounds each
    assert f"baseline latency {median:.3f} ms (interquartile range {iqr:.3f} ms" in result.report()


@pytest.mark.parametrize("bad", ["model", None, 3, [Linear(2, 2)]])
def test_the_tuner_names_a_model_that_is_not_a_module(digits_mlp, bad):
    _, data = digits_mlp
    tuner = at.AutoTuner(data, space=SMALL_SPACE, progress=False)
    with pytest.raises(TypeError, match=rf"expects a tinytorch Module .*got {type(bad).__name__}"):
        tuner.auto_optimize(bad, target="mobile")
    with pytest.raises(TypeError, match="expects a tinytorch Module"):
        tuner.exhaustive(bad)
    with pytest.raises(TypeError, match="expects a tinytorch Module as model"):
        at.measure(bad, data)


def test_peak_memory_sees_numpy_allocations():
    assert harness.peak_memory(lambda: np.ones(1_000_000)) >= 8_000_000
    assert harness.peak_memory(lambda: None) < 100_000


def test_median_seconds_is_a_median_and_validates():
    assert harness.median_seconds(lambda: None, repeats=3, warmup=0) >= 0
    with pytest.raises(ValueError):
        harness.median_seconds(lambda: None, repeats=0)


def test_interleaved_seconds_on_a_fake_clock_is_exact():
    """Seconds per call on the clock it is given, every round alternating, warm-up untimed."""
    state = {"now": 0.0, "calls": 0}
    trace = []

    def fn(i, cost):
        def call():
            trace.append(i)
            state["now"] += cost * (1 + 0.01 * state["calls"])
            state["calls"] += 1
        return call

    out = at.interleaved_seconds([fn(0, 3e-5), fn(1, 7e-5)], rounds=3, warmup=2, min_time=2e-4,
                                 clock=lambda: state["now"])
    # warm-up 2 + calibration 1 per function; then 7 and 3 calls per sample
    assert trace[:6] == [0, 0, 0, 1, 1, 1]
    assert trace[6:] == [0] * 7 + [1] * 3 + [1] * 3 + [0] * 7 + [0] * 7 + [1] * 3
    first = 6 * 1  # calls before the first timed sample
    want0 = sum(3e-5 * (1 + 0.01 * k) for k in range(first, first + 7)) / 7
    assert out[0][0] == pytest.approx(want0, rel=1e-12)
    assert [len(t) for t in out] == [3, 3] and out[0][2] > out[0][0]


def test_calls_per_sample_warms_up_then_sizes_the_sample():
    calls = []
    now = {"t": 0.0}

    def fn():
        calls.append(1)
        now["t"] += 2.0**-15  # exact in binary: no rounding in the ratio below

    n = harness.calls_per_sample(fn, warmup=3, min_time=5 * 2.0**-15, clock=lambda: now["t"])
    assert len(calls) == 4 and n == 5  # 3 warm-up + 1 timed call; 5 calls make min_time
    assert harness.calls_per_sample(lambda: None, warmup=0, min_time=0.0) == 1
    with pytest.raises(ValueError, match="warmup"):
        harness.calls_per_sample(fn, warmup=-1)


def test_autotuning_reexports_the_library_objects():
    """tinytorch.autotuning (generated) re-exports the library's names: one definition each."""
    libs = (active, adaptive, cache, executor, hardware, harness, mixed_precision, search, steps)
    for name in at.__all__:
        if name == "accuracy_aware_quantize":  # module 19's own: the library's, sized by
            continue  # model_bytes (test_accuracy_aware_quantize_sizes_attempts_...)
        obj = getattr(at, name)
        homes = [m for m in libs if name in getattr(m, "__all__", ())]
        if homes:
            assert obj is getattr(homes[0], name), f"{name} is not the library's object"
    generated = (ROOT / "tinytorch" / "autotuning.py").read_text()
    for name in ("halving_plan", "EarlyStopping", "uncertainty", "cpu_flags", "ResultCache"):
        assert f"def {name}" not in generated and f"class {name}" not in generated


def test_the_tuning_record_needs_module_19_for_its_front(digits_mlp):
    from tinytorch.tuning.report import TuningRecord

    rec = TuningRecord("t", "bytes", at.Constraints(), None, None, [], 0, {}, None, None, None,
                       [])
    with pytest.raises(NotImplementedError, match="tinytorch.autotuning"):
        rec.table()
    assert issubclass(at.TuningResult, TuningRecord)


# ============================================================================ constraints
metrics_st = st.builds(
    harness.Metrics,
    accuracy=st.floats(0, 1),
    latency_ms=st.floats(0.001, 100),
    peak_memory=st.integers(1, 10**8),
    model_bytes=st.integers(1, 10**7),
)
opt_pos = st.one_of(st.none(), st.floats(0.001, 1e8))


@settings(max_examples=150, deadline=None)
@given(
    m=metrics_st,
    max_bytes=opt_pos,
    max_lat=opt_pos,
    max_mem=opt_pos,
    min_acc=st.one_of(st.none(), st.floats(0, 1)),
    drop=st.one_of(st.none(), st.floats(0, 1)),
    base=st.floats(0, 1),
    margin=st.floats(0, 0.9),
    use_margin=st.booleans(),
)
def test_violations_match_each_budget(m, max_bytes, max_lat, max_mem, min_acc, drop, base,
                                      margin, use_margin):
    c = at.Constraints(max_bytes, max_lat, max_mem, min_acc, drop, margin)
    got = {v.constraint: v for v in c.violations(m, base, margin=use_margin)}
    lat_limit = None if max_lat is None else max_lat * ((1 - margin) if use_margin else 1)
    assert ("max_bytes" in got) == (max_bytes is not None and m.model_bytes > max_bytes)
    assert ("max_latency_ms" in got) == (lat_limit is not None and m.latency_ms > lat_limit)
    assert ("max_peak_memory" in got) == (max_mem is not None and m.peak_memory > max_mem)
    floors = [f for f in (min_acc, None if drop is None else base - drop) if f is not None]
    acc_fails = bool(floors) and m.accuracy < max(floors) - 1e-12
    assert (("min_accuracy" in got) or ("max_accuracy_drop" in got)) == acc_fails
    for v in got.values():
        assert v.excess > 0 or math.isclose(v.value, v.limit, rel_tol=1e-9)
        assert v.constraint in str(v)


@pytest.mark.parametrize(
    "kwargs",
    [dict(max_bytes=0), dict(max_bytes=-5), dict(max_latency_ms=True), dict(min_accuracy=1.2),
     dict(max_accuracy_drop=-0.1), dict(latency_margin=1.0), dict(max_peak_memory="1 MB")],
)
def test_bad_constraints_raise_naming_the_field(kwargs):
    with pytest.raises(ValueError, match=next(iter(kwargs))):
        at.Constraints(**kwargs)


def test_relative_floor_needs_the_baseline():
    with pytest.raises(ValueError, match="baseline"):
        at.Constraints(max_accuracy_drop=0.01).violations(harness.Metrics(0.9, 1, 1, 1))


# ============================================================================ hardware
def test_cpu_flags_parses_x86_and_arm_in_simd_order():
    assert hardware.cpu_flags("flags : avx512f fma sse2 avx2 avx512f\n") == (
        "sse2", "avx2", "fma", "avx512f")
    assert hardware.cpu_flags("Features : fp asimd asimddp\n") == ("asimd", "asimddp")
    assert hardware.cpu_flags("flags_x : avx2\nmodel name : avx2\n") == ()


def test_hardware_profile_detects_this_machine():
    hw = hardware.HardwareProfile.detect()
    assert hw.cores >= 1 and hw.cores <= (os.cpu_count() or hw.cores)
    assert all(f in hardware.SIMD_FLAGS for f in hw.simd)
    assert hw.memory_bytes is None or hw.memory_bytes > 2**26
    assert hw.blas and isinstance(hw.gpu, bool) and isinstance(hw.onnxruntime, bool)
    assert hw.fingerprint() == hardware.HardwareProfile.detect().fingerprint()
    assert str(hw.cores) in hw.describe()
    info = hardware.blas_info()
    assert info["source"] in ("threadpoolctl", "numpy.show_config", "none")


def test_targets_have_budgets_objectives_and_recipes():
    assert set(at.TARGETS) == {"server", "laptop", "mobile", "microcontroller"}
    sizes = [at.TARGETS[t].constraints.max_bytes or math.inf
             for t in ("server", "laptop", "mobile", "microcontroller")]
    assert sizes == sorted(sizes, reverse=True), "budgets tighten from server to microcontroller"
    for p in at.TARGETS.values():
        assert p.objective in at.OBJECTIVES and p.recipe


# ============================================================================ steps, pipelines
@pytest.mark.parametrize("name", sorted(steps.STEPS))
def test_every_step_returns_a_new_model_and_leaves_the_input_untouched(name, digits_mlp):
    model, data = digits_mlp
    before = {k: v.copy() for k, v in model.state_dict().items()}
    ctx = steps.StepContext(data, teacher=model, seed=0)
    params = {"finetune": {"epochs": 1, "distill": True}}.get(name, {})
    out = steps.STEPS[name].fn(model, ctx, **params)
    assert out is not model
    assert all(np.array_equal(before[k], v) for k, v in model.state_dict().items())
    assert harness.predict(out, data.x_val[:4]).shape == (4, 10)


def test_quantize_step_keeps_named_layers_in_float(digits_mlp):
    model, data = digits_mlp
    q = steps.quantize_step(model, steps.StepContext(data), bits=8, keep_fp32=("2",))
    assert type(q[2]) is Linear and type(q[0]).__name__ == "QuantizedLinear"
    assert np.array_equal(q[2].weight.data, model[2].weight.data)


def test_backend_step_gives_the_same_numbers(digits_mlp):
    model, data = digits_mlp
    q = steps.quantize_step(model, steps.StepContext(data), bits=8)
    fast = steps.backend_step(q, steps.StepContext(data), backend="optimized")
    np.testing.assert_array_equal(harness.predict(q, data.x_val), harness.predict(fast, data.x_val))
    with pytest.raises(ValueError, match="unknown backend"):
        steps.BackendModel(model, "nope")


def test_pipeline_order_json_and_errors(digits_mlp):
    model, data = digits_mlp
    p = at.Pipeline([at.Step.make("prune", amount=0.5), at.Step.make("quantize", bits=4)], "x")
    again = at.Pipeline.from_dict(json.loads(json.dumps(p.to_dict())))
    assert again == p and again.target == "x" and "1. prune(amount=0.5)" in p.describe()
    out1 = p.run(model, steps.StepContext(data))
    out2 = again.run(model, steps.StepContext(data))
    np.testing.assert_array_equal(harness.predict(out1, data.x_val),
                                  harness.predict(out2, data.x_val))
    with pytest.raises(ValueError, match="cannot run after"):
        at.Pipeline([at.Step.make("quantize"), at.Step.make("finetune")])
    with pytest.raises(ValueError, match="twice"):
        at.Pipeline([at.Step.make("prune"), at.Step.make("prune")])
    with pytest.raises(ValueError, match="known steps"):
        at.Pipeline([at.Step.make("sparsify")])


@pytest.mark.parametrize("target", sorted(at.TARGETS))
def test_optimization_pipeline_is_runnable_for_mlp_and_cnn(target, digits_mlp):
    model, data = digits_mlp
    p = at.optimization_pipeline(model, target)
    assert p.target == target
    out = p.run(model, steps.StepContext(data, teacher=model))
    assert at.model_bytes(out) <= at.model_bytes(model)
    cnn_p = at.optimization_pipeline(zoo.digits_cnn(), target)
    prune = [s.kwargs["amount"] for s in cnn_p.steps if s.name == "prune"]
    assert all(a <= 0.25 for a in prune), "the CNN rule caps structured pruning"
    with pytest.raises(ValueError, match="known targets"):
        at.optimization_pipeline(model, "toaster")


def test_search_space_configs_and_labels():
    space = at.SearchSpace()
    configs = space.configs()
    assert len(configs) == len(set(configs)) == len(space) == 78
    assert at.Config() in configs
    for c in configs:
        assert (c.recover == "none") or c.prune > 0
        p = c.pipeline(3)
        assert [s.name for s in p.steps] == [
            n for n, on in [("prune", c.prune > 0), ("finetune", c.recover != "none"),
                            ("quantize", c.quantize is not None),
                            ("backend", c.backend != "numpy")] if on]
    assert at.Config(0.5, "finetune", 8).at_most_as_aggressive_as(at.Config(0.75, "finetune", 4))
    assert not at.Config(0.5, "finetune", 8).at_most_as_aggressive_as(
        at.Config(0.75, "distill", 4))


# ============================================================================ pareto
points_st = st.lists(st.tuples(*[st.integers(0, 4)] * 3), max_size=15)


@settings(max_examples=200, deadline=None)
@given(points_st)
def test_pareto_front_is_exactly_the_non_dominated_set(pts):
    front = at.pareto_front(pts, lambda p: p)
    assert front == [p for p in pts if not any(at.dominates(q, p) for q in pts)]
    for p in pts:
        if p not in front:
            assert any(at.dominates(q, p) for q in front), "a dominated point has a front witness"
    assert at.pareto_front(front, lambda p: p) == front


# ============================================================================ cache, executor
def test_fingerprints_identify_models_and_data(digits_mlp):
    model, data = digits_mlp
    assert cache.fingerprint(copy.deepcopy(model)) == cache.fingerprint(model)
    other = copy.deepcopy(model)
    other[2].bias.data[0] += 1e-6
    assert cache.fingerprint(other) != cache.fingerprint(model)
    assert cache.data_fingerprint(data) == cache.data_fingerprint(copy.deepcopy(data))


def test_result_cache_persists_and_survives_corruption(tmp_path):
    path = tmp_path / "c.json"
    rc = cache.ResultCache(path)
    key = cache.ResultCache.key("model", {"prune": 0.5}, "hw")
    assert rc.get(key) is None and rc.misses == 1
    m = harness.Metrics(0.9, 0.1, 1000, 500)
    rc.put(key, m)
    again = cache.ResultCache(path)
    assert again.get(key) == m and again.hits == 1 and key in again and len(again) == 1
    path.write_text("{not json")
    assert len(cache.ResultCache(path)) == 0
    monkey = cache.default_cache_path()
    assert monkey.name == "autotuning.json" and "tinytorch" in str(monkey)


def test_evaluate_many_runs_through_any_executor(digits_mlp):
    model, data = digits_mlp
    ev = at.Evaluator(model, data, finetune_epochs=1, repeats=1)
    clone = pickle.loads(pickle.dumps(ev))  # what a process pool or a Dask worker receives
    configs = [at.Config(), at.Config(quantize=8), at.Config(0.75, "finetune", 4)]
    local = executor.evaluate_many(ev, configs)
    with ThreadPoolExecutor(2) as pool:
        threaded = executor.evaluate_many(clone, configs, pool)
    for a, b in zip(local, threaded):
        assert (a.accuracy, a.model_bytes) == (b.accuracy, b.model_bytes)


# ============================================================================ the tuner
def test_monotone_rule_unit():
    fail = at.Candidate(at.Config(0.5, "finetune", 8), harness.Metrics(0.9, 1, 1, 1), [], "search")
    assert at.monotone_infeasible(at.Config(0.75, "finetune", 4), [fail], 0.95, 0.01)
    assert not at.monotone_infeasible(at.Config(0.25, "finetune", 8), [fail], 0.95, 0.01)
    assert not at.monotone_infeasible(at.Config(0.75, "finetune", 4), [fail], None, 0.01)


TUNE_SETS = [
    ("loose", at.Constraints(max_accuracy_drop=0.05), "bytes"),
    ("mobile", at.Constraints(max_bytes=16 * K, max_accuracy_drop=0.02), "bytes"),
    ("laptop", at.Constraints(max_bytes=32 * K, max_accuracy_drop=0.01), "accuracy"),
    ("memory", at.Constraints(max_bytes=4 * K, max_peak_memory=36 * K,
                              max_accuracy_drop=0.03), "bytes"),
    ("infeasible", at.Constraints(max_bytes=700, max_accuracy_drop=0.0), "bytes"),
]


@pytest.mark.slow
def test_auto_optimize_matches_exhaustive_with_at_most_40_percent(tuned, digits_mlp):
    model, data = digits_mlp
    tuner, _ = tuned
    results = {name: tuner.auto_optimize(model, c, target="mobile", objective=obj)
               for name, c, obj in TUNE_SETS}
    ex = tuner.exhaustive(model)
    assert ex.evaluations == len(SMALL_SPACE) == 42
    for name, cons, obj in TUNE_SETS:
        r = results[name]
        opt = _best_under(ex, cons, obj)
        assert r.evaluations <= 0.4 * ex.evaluations, (name, r.evaluations)
        if opt is None:
            assert not r.feasible and r.model is None and r.closest, name
            report = r.report()
            assert "NO CONFIGURATION MEETS THE CONSTRAINTS" in report and "max_bytes" in report
            continue
        assert r.feasible, f"{name}: exhaustive found {opt.config.label()}, the tuner nothing"
        again = at.measure(r.model, data)
        assert not cons.violations(again, r.baseline.accuracy, margin=False), (name, again)
        tv = at.objective_value(r.best.metrics, obj)
        ov = at.objective_value(opt.metrics, obj)
        assert (tv <= 1.01 * ov) if obj == "bytes" else (tv >= 0.99 * ov), (name, tv, ov)
        rebuilt = r.pipeline.run(model, steps.StepContext(data, teacher=model))
        np.testing.assert_array_equal(harness.predict(rebuilt, data.x_val),
                                      harness.predict(r.model, data.x_val))
        assert r.best in r.pareto() or any(
            at.dominates((-c.metrics.accuracy, c.metrics.model_bytes, c.metrics.latency_ms),
                         (-r.best.metrics.accuracy, r.best.metrics.model_bytes,
                          r.best.metrics.latency_ms)) for c in r.pareto())
    assert "memory" in results and results["memory"].best.metrics.peak_memory <= 36 * K


@pytest.mark.slow
def test_rerun_is_served_from_the_cache(tuned, digits_mlp):
    model, _ = digits_mlp
    tuner, path = tuned
    first = tuner.auto_optimize(model, target="mobile")
    second = at.AutoTuner(tuner.data, space=SMALL_SPACE, cache=cache.ResultCache(path),
                          progress=False).auto_optimize(model, target="mobile")
    assert second.cache_hits == second.evaluations == first.evaluations
    assert second.pipeline == first.pipeline
    # another model (one weight changed) must not reuse the measurements
    other = copy.deepcopy(model)
    other[0].weight.data[0, 0] += 0.5
    third = at.AutoTuner(tuner.data, space=SMALL_SPACE, cache=cache.ResultCache(path),
                         progress=False).auto_optimize(other, target="mobile")
    assert third.cache_hits == 0


@pytest.mark.slow
def test_auto_optimize_through_a_thread_pool_gives_the_same_plan(digits_mlp):
    model, data = digits_mlp
    space = at.SearchSpace(prune=(0.0, 0.875), recover=("finetune",), quantize=(None, 8))
    local = at.AutoTuner(data, space=space, progress=False).auto_optimize(model, target="mobile")
    with ThreadPoolExecutor(2) as pool:
        pooled = at.AutoTuner(data, space=space, executor=pool, progress=False).auto_optimize(
            model, target="mobile")
    assert pooled.pipeline == local.pipeline


def test_auto_optimize_rejects_unknown_targets_and_objectives(digits_mlp):
    model, data = digits_mlp
    tuner = at.AutoTuner(data, space=SMALL_SPACE, progress=False)
    with pytest.raises(ValueError, match="known targets"):
        tuner.auto_optimize(model, target="toaster")
    with pytest.raises(ValueError, match="objective"):
        tuner.auto_optimize(model, target="mobile", objective="vibes")


# ============================================================================ accuracy-aware PTQ
@pytest.mark.slow
def test_accuracy_aware_quantization_falls_back_sensitive_layers(digits_cnn):
    model, data = digits_cnn
    r = at.accuracy_aware_quantize(model, data, tolerance=0.005, bits=4)
    assert r.within_tolerance
    assert r.fp32_layers == [row[0] for row in r.sensitivity[: len(r.fp32_layers)]]
    floats = {n for n, m in r.model.named_modules() if type(m).__name__ in ("Linear", "Conv2d")}
    assert floats == set(r.fp32_layers)
    full = at.model_bytes(model)
    assert r.steps[0][0] == [] and all(b < full for _, _, b in r.steps[:-1])
    with pytest.raises(ValueError):
        at.accuracy_aware_quantize(model, data, tolerance=2)


def test_accuracy_aware_quantize_sizes_attempts_with_model_bytes(digits_mlp):
    """Module 19's wrapper passes model_bytes (INT4 packed); the library defaults to the state
    arrays as they are."""
    model, data = digits_mlp
    lib = mixed_precision.accuracy_aware_quantize(model, data, tolerance=1.0, bits=4)
    ours = at.accuracy_aware_quantize(model, data, tolerance=1.0, bits=4)
    assert lib.fp32_layers == ours.fp32_layers == [] and len(ours.steps) == 1
    assert ours.steps[0][2] == at.model_bytes(ours.model)
    assert lib.steps[0][2] == sum(a.nbytes for a in lib.model.state_dict().values())
    assert ours.steps[0][2] < lib.steps[0][2]


# ============================================================================ hyperparameters
def _halving_cost(n0, rungs, eta):
    total, prev = 0, 0
    for k, r in enumerate(rungs):
        total += max(1, n0 // eta**k) * (r - prev)
        prev = r
    return total


@settings(max_examples=100, deadline=None)
@given(n=st.integers(1, 200), budget=st.integers(1, 300), lo=st.integers(1, 4),
       hi=st.integers(1, 30), eta=st.integers(2, 4))
def test_halving_plan_is_the_largest_that_fits(n, budget, lo, hi, eta):
    if hi < lo:
        lo, hi = hi, lo
    try:
        n0, rungs = search.halving_plan(n, budget, lo, hi, eta)
    except ValueError:
        assert _halving_cost(1, _rungs(lo, hi, eta), eta) > budget
        return
    assert rungs[0] == lo and rungs[-1] == hi and rungs == sorted(set(rungs))
    assert 1 <= n0 <= n and _halving_cost(n0, rungs, eta) <= budget
    assert n0 == n or _halving_cost(n0 + 1, rungs, eta) > budget


def _rungs(lo, hi, eta):
    r = [lo]
    while r[-1] * eta <= hi:
        r.append(r[-1] * eta)
    return r + ([hi] if r[-1] < hi else [])


@settings(max_examples=100, deadline=None)
@given(st.lists(st.floats(0, 1), min_size=1, max_size=12))
def test_median_rule_stops_exactly_the_below_median(scores):
    rule = search.MedianStoppingRule(grace=1, min_trials=3)
    for i, s in enumerate(scores):
        stop = rule.should_stop(search.Trial({}, scores=[s]))
        prev = scores[:i]
        assert stop == (len(prev) >= 3 and s < statistics.median(prev))
    assert rule.stops == sum(
        len(scores[:i]) >= 3 and s < statistics.median(scores[:i]) for i, s in enumerate(scores))


def test_tpe_prefers_values_near_the_good_observations():
    space = {"lr": [1, 2, 3, 4, 5, 6], "w": [0, 1]}
    observed = [({"lr": 5, "w": 1}, 0.99), ({"lr": 6, "w": 1}, 0.97), ({"lr": 1, "w": 0}, 0.2),
                ({"lr": 2, "w": 0}, 0.3), ({"lr": 1, "w": 1}, 0.25)]
    cands = search.grid(space)
    s = search.tpe_scores(space, observed, cands, gamma=0.4)
    assert cands[int(np.argmax(s))] in ({"lr": 5, "w": 1}, {"lr": 6, "w": 1}, {"lr": 4, "w": 1})
    assert s[cands.index({"lr": 1, "w": 0})] < s[cands.index({"lr": 5, "w": 1})]


HP_SPACE = {"lr": [1e-4, 3e-4, 1e-3, 3e-3, 1e-2, 3e-2, 1e-1], "hidden": [8, 16, 32, 64, 128],
            "weight_decay": [0.0, 0.01]}


def _build(cfg):
    m = zoo.digits_mlp(hidden=cfg["hidden"])
    return m, AdamW(m.parameters(), lr=cfg["lr"], weight_decay=cfg["weight_decay"])


@pytest.mark.slow
def test_halving_beats_random_search_in_4_of_5_seeds_and_the_median_rule_stops(digits_mlp):
    _, data = digits_mlp
    wins = stops = 0
    for seed in range(5):
        sh = search.hyperparameter_search(_build, data, HP_SPACE, 54, seed=seed, progress=False)
        rs = search.hyperparameter_search(_build, data, HP_SPACE, 54, method="random", seed=seed,
                                      progress=False)
        assert sh.epochs_used <= 54 and rs.epochs_used <= 54
        wins += search.config_quality(_build, data, sh.best_config) >= search.config_quality(
            _build, data, rs.best_config)
        stops += sh.median_stops
        assert sh.epochs_saved >= 0 and sh.median_stops == sum(
            t.stopped == "median rule" for t in sh.trials)
    assert wins >= 4, f"halving won only {wins} of 5 seeds"
    assert stops > 0


def test_hyperparameter_search_is_reproducible_and_validates(digits_mlp):
    _, data = digits_mlp
    space = {"lr": [1e-3, 1e-2], "hidden": [8, 16]}
    runs = [search.hyperparameter_search(_build_small, data, space, 6, method=m, seed=3,
                                     max_epochs=2, progress=False)
            for m in ("halving", "halving", "tpe", "tpe")]
    assert [t.scores for t in runs[0].trials] == [t.scores for t in runs[1].trials]
    assert [t.config for t in runs[2].trials] == [t.config for t in runs[3].trials]
    assert "epochs" in runs[0].table()
    with pytest.raises(ValueError, match="method"):
        search.hyperparameter_search(_build_small, data, space, 6, method="grid")
    with pytest.raises(ValueError, match="too small"):
        search.hyperparameter_search(_build_small, data, space, 1, method="random", max_epochs=2)


def _build_small(cfg):
    m = zoo.digits_mlp(hidden=cfg["hidden"])
    return m, AdamW(m.parameters(), lr=cfg["lr"])


# ============================================================================ adaptive training
def test_schedules_unit():
    es = adaptive.EarlyStopping(patience=2)
    assert [es.step(s, e) for e, s in enumerate([1, 2, 2, 1])] == [False, False, False, True]

    class Opt:
        lr = 1.0

    pl = adaptive.ReduceLROnPlateau(Opt, factor=0.5, patience=1, min_lr=0.3)
    assert [pl.step(s) for s in [1, 1, 1, 1]] == [False, True, True, False]
    assert Opt.lr == 0.3
    sub = adaptive.curriculum_subset(np.array([3.0, 1.0, 2.0, 0.5]), epoch=0, epochs=10, start=0.5)
    assert list(sub) == [1, 3]
    assert len(adaptive.curriculum_subset(np.arange(10.0), epoch=9, epochs=10)) == 10


@pytest.mark.slow
def test_adaptive_training_reaches_fixed_accuracy_in_fewer_epochs(digits_mlp):
    _, data = digits_mlp
    fixed_runs, adaptive_runs = [], []
    for seed in range(3):
        manual_seed(seed)
        init = zoo.digits_mlp()
        before = copy.deepcopy(init.state_dict())
        fixed_runs.append(adaptive.fixed_training(init, data, epochs=30, seed=seed)[1])
        adaptive_runs.append(adaptive.adaptive_training(init, data, epochs=30, seed=seed)[1])
        assert all(np.array_equal(before[k], v) for k, v in init.state_dict().items())
    f_acc = np.mean([r.test_acc for r in fixed_runs])
    a_acc = np.mean([r.test_acc for r in adaptive_runs])
    a_ep = np.mean([r.epochs for r in adaptive_runs])
    assert a_ep < 30 and a_acc >= f_acc, (a_acc, f_acc, a_ep)
    assert all(any("plateau" in e for e in r.events) for r in adaptive_runs)


def test_uncertainty_and_active_learning_bookkeeping(digits_mlp):
    _, data = digits_mlp
    np.testing.assert_allclose(active.uncertainty(np.array([[0.6, 0.4], [0.1, 0.9]])), [0.8, 0.2])
    with pytest.raises(ValueError):
        active.uncertainty(np.ones(3))
    r = active.active_learning(lambda: Sequential(Linear(64, 10)), data, initial=10, query=5,
                           rounds=2, epochs=2)
    assert r.labels == [10, 15, 20] and len(r.test_acc) == 3
    with pytest.raises(ValueError, match="strategy"):
        active.active_learning(lambda: Sequential(Linear(64, 10)), data, strategy="oracle")


# ============================================================================ bench
@pytest.mark.slow
def test_bench_quick_runs_and_writes_json(tmp_path):
    out = tmp_path / "autotuning.json"
    env = {**os.environ, "OPENBLAS_NUM_THREADS": "1", "MPLBACKEND": "Agg"}
    proc = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "autotuning.py"), "--quick", "--json", str(out)],
        capture_output=True, text=True, timeout=180, env=env, cwd=ROOT,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "Targets" in proc.stdout and "exhaustive" in proc.stdout
    data = json.loads(out.read_text())
    assert data["bench"] == "autotuning" and data["quick"] is True
    sets = data["results"]["mlp"]["sets"]
    assert sets["infeasible"]["reported_infeasible"] is True
    assert sets["mobile"]["tuner_evaluations"] <= 0.4 * sets["mobile"]["space"]
    for t in data["targets"]:
        assert isinstance(t["passed"], bool) and math.isfinite(t["value"]), t
    assert (ROOT / "bench" / "results" / "autotuning_pareto_quick.png").exists()


# ============================================================================ judges
def _judge_module():
    import importlib.util

    path = ROOT / "modules" / "19_autotuning" / "judge.py"
    spec = importlib.util.spec_from_file_location("judge_19_autotuning", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_judges_take_numpy_scalars_as_the_values_they_are():
    """In grading, a numpy scalar the student returns crosses the codec as a 0-d array (in
    local mode as a Python scalar): the judges must read both the same way."""
    from tito.judging import verdict
    from tito.plaindata import decode, encode, plain

    jm = _judge_module()
    inputs = jm.judges.draw("monotone_rule", 7)
    answers = {}
    for k, case in enumerate(inputs["cases"]):
        for j, q in enumerate(case["queries"]):
            answers[f"c{k}_{j}"] = np.bool_(case["floor"] is not None and any(
                jm.milder(m[:3], q) and m[3] + case["noise"] < case["floor"]
                for m in case["measured"]))
    local = {k: plain(v) for k, v in answers.items()}  # what local mode's probe keeps
    for outputs in (local, decode(encode(answers))):
        assert verdict(jm.judges, "monotone_rule", inputs, outputs, None) == (1.0, None)
    wrong = dict(answers, c0_0=not answers["c0_0"])
    frac, why = verdict(jm.judges, "monotone_rule", inputs, decode(encode(wrong)), None)
    assert frac == 0.0 and "monotone_infeasible" in why
    inputs = jm.judges.draw("model_bytes_counts_storage", 3)
    models = jm.build_models(inputs)
    sizes = {k: np.int64(jm.reference_model_bytes(m)) for k, m in models.items()}
    assert verdict(jm.judges, "model_bytes_counts_storage", inputs, decode(encode(sizes)),
                   None) == (1.0, None)
    assert sizes["int4"] < sum(a.nbytes for a in models["int4"].state_dict().values())


def test_judge_inputs_are_plain_python_data_and_fresh_per_seed():
    jm = _judge_module()

    def walk(x):
        if isinstance(x, dict):
            return all(walk(v) for v in x.values())
        if isinstance(x, list):
            return all(walk(v) for v in x)
        return not isinstance(x, np.generic)

    for check in sorted(jm.judges.checks):
        a, b = jm.judges.draw(check, 1), jm.judges.draw(check, 2)
        assert walk(a) and walk(b), f"{check}: numpy scalars in the inputs"
        assert json.dumps(a, default=lambda v: v.tolist()) != json.dumps(
            b, default=lambda v: v.tolist()), f"{check}: the same inputs for two seeds"
