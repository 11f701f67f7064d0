# ---
# jupyter:
#   jupytext:
#     text_representation:
#       extension: .py
#       format_name: percent
#       format_version: '1.3'
#       jupytext_version: 1.19.6
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # Module 19: Autotuning — systems that choose the optimizations for you
#
# You now own a toolbox: fast matmul backends (module 15), INT8/INT4 quantization (module 17),
# structured pruning and distillation (module 18). Each has knobs, they interact (an INT8 model
# is *slower* than float32 on the numpy backend here, *smaller* everywhere), and the right
# combination depends on where the model will run. Trying everything by hand does not scale;
# trying everything by machine is expensive. In this module you build the core of the system in
# between — and use the rest, which the course ships as library code you can read
# (`tinytorch/tuning/`, one idea per file):
#
# | piece | what it does | you write |
# |---|---|---|
# | one harness | accuracy, latency, peak memory, model bytes | 1. `model_bytes` |
# | honest timing | every candidate timed in the same interleaved rounds as the baseline | 2. `interleaved_seconds` |
# | budgets | constraints that say *which* limit fails and by how much | 3. `Constraints` |
# | one interface | every technique is a step `model -> new model`; a pipeline orders them | 4. `Pipeline` |
# | trade-offs | the Pareto front of accuracy against size and latency | 5. `pareto_front` |
# | the search | recipes first, then a grid search whose rules prune the grid | 6. `monotone_infeasible` |
#
# The library (`tinytorch.tuning`) supplies hardware detection (`hardware.py`), the step
# adapters around modules 15–18 (`steps.py`), the results cache (`cache.py`), the executor seam
# (`executor.py`), the tuner's reports and plots (`report.py`), and what the end of this
# notebook demonstrates: accuracy-aware quantization (`mixed_precision.py`), hyperparameter
# search (`search.py`), adaptive training (`adaptive.py`) and active learning (`active.py`).
#
# ## Learning objectives
# - Measure every candidate on **one harness**, with latencies that are comparable because
#   they are measured in the same rounds, and express deployment targets as **constraints**.
# - Give every optimization the **same shape** (a step that returns a new model) so a program can
#   choose, order and parameterize them.
# - Search a grid **smartly**: exact static checks, rules (monotonicity, bounds, backend
#   invariance) and recipes, verified against exhaustive search.
# - Report **trade-offs** (Pareto fronts) and **infeasibility** honestly, never a silent best effort.
# - Read how the same ideas tune training itself: successive halving, the median stopping rule,
#   TPE, adaptive schedules and active learning — each measured against a plain baseline.
#
# Every number this notebook prints is measured when you run it.

# %% [markdown]
# ## The goal first
#
# ```python
# from tinytorch.autotuning import AutoTuner, Constraints
#
# tuner = AutoTuner(data)                         # measures on data.x_val, caches results
# result = tuner.auto_optimize(model, Constraints(max_bytes=16 * 1024, max_accuracy_drop=0.02),
#                              target="mobile")   # objective: the smallest model that fits
# result.model                                    # the optimized model (None if infeasible)
# print(result.pipeline.describe())               # 1. prune(amount=0.875)  2. finetune(...) ...
# print(result.report())                          # every candidate measured, the Pareto front,
#                                                 # or which constraint fails and what came closest
# ```
#
# The tuner does not try all 78 configurations of its default grid. It checks sizes exactly
# without training, starts from the target's recipe, and uses rules that rule out whole regions
# of the grid after a single measurement. You will check it against exhaustive search and see it
# find the same answer with a fraction of the evaluations.

# %%
#| default_exp autotuning

# %%
#| export
import copy
import math
import statistics
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass

from tqdm import tqdm

from tinytorch.core.backends import available_backends
from tinytorch.core.nn import Conv2d, Linear, Module, Sequential
from tinytorch.core.tensor import Tensor, no_grad
from tinytorch.core.threads import blas_threads
from tinytorch.quantization import pack_int4
from tinytorch.tuning import mixed_precision as _mixed_precision
from tinytorch.tuning.active import ActiveLearningResult, active_learning, uncertainty
from tinytorch.tuning.adaptive import (
    EarlyStopping,
    ReduceLROnPlateau,
    TrainingReport,
    adaptive_training,
    curriculum_subset,
    fixed_training,
)
from tinytorch.tuning.cache import ResultCache, data_fingerprint, default_cache_path, fingerprint
from tinytorch.tuning.executor import InProcessExecutor, evaluate_many
from tinytorch.tuning.hardware import (
    SIMD_FLAGS,
    HardwareProfile,
    blas_info,
    cpu_flags,
    gpu_present,
    memory_bytes,
)
from tinytorch.tuning.harness import (
    Metrics,
    accuracy_on,
    calls_per_sample,
    iqr,
    median_seconds,
    peak_memory,
    per_example_loss,
    predict,
)
from tinytorch.tuning.mixed_precision import (
    AccuracyAwareResult,
    layer_sensitivity,
    quantizable_layers,
)
from tinytorch.tuning.report import TuningRecord, fmt_value
from tinytorch.tuning.search import (
    MedianStoppingRule,
    SearchResult,
    Trial,
    config_quality,
    grid,
    halving_plan,
    hyperparameter_search,
    random_search,
    successive_halving,
    tpe_scores,
    tpe_search,
)
from tinytorch.tuning.steps import (
    STAGES,
    STEPS,
    BackendModel,
    Step,
    StepContext,
    StepSpec,
    backend_step,
    finetune_step,
    prune_step,
    quantize_step,
    register_step,
)

__all__ = [
    # module 19's own (exercises 1-6 and the tuner around them)
    "model_bytes", "interleaved_seconds", "measure", "Violation", "Constraints", "Pipeline",
    "Config", "SearchSpace", "TargetProfile", "TARGETS", "preferred_backend",
    "optimization_pipeline", "dominates", "pareto_front", "Evaluator", "OBJECTIVES",
    "objective_value", "Candidate", "TuningResult", "monotone_infeasible", "AutoTuner",
    "accuracy_aware_quantize",
    # tinytorch.tuning (library), re-exported: harness, hardware, steps, cache, executor,
    # accuracy-aware quantization, hyperparameter search, adaptive training, active learning
    "Metrics", "peak_memory", "median_seconds", "calls_per_sample", "predict", "accuracy_on",
    "per_example_loss", "SIMD_FLAGS", "cpu_flags", "memory_bytes", "blas_info", "gpu_present",
    "HardwareProfile", "StepContext", "StepSpec", "STEPS", "STAGES", "register_step",
    "BackendModel", "prune_step", "finetune_step", "quantize_step", "backend_step", "Step",
    "fingerprint", "data_fingerprint", "default_cache_path", "ResultCache", "InProcessExecutor",
    "evaluate_many", "quantizable_layers", "layer_sensitivity", "AccuracyAwareResult", "grid",
    "Trial", "MedianStoppingRule", "SearchResult", "halving_plan", "successive_halving",
    "random_search", "tpe_scores", "tpe_search", "hyperparameter_search", "config_quality",
    "EarlyStopping", "ReduceLROnPlateau", "curriculum_subset", "TrainingReport", "fixed_training",
    "adaptive_training", "uncertainty", "ActiveLearningResult", "active_learning",
]

# %%
import contextlib
import os

import numpy as np

from tinytorch.core import zoo
from tinytorch.core.threads import pin_blas_threads
from tinytorch.quantization import QConfig, Quantizer

# one BLAS thread, as tito and bench/ use: the models are tiny, and on a busy machine several
# BLAS threads per matmul make training several times slower
print(pin_blas_threads(1))
print("numpy", np.__version__, "| OPENBLAS_NUM_THREADS =", os.environ.get("OPENBLAS_NUM_THREADS"))
digits = zoo.digits_data()

EXERCISES = {1: "model_bytes", 2: "interleaved_seconds", 3: "Constraints", 4: "Pipeline",
             5: "pareto_front", 6: "monotone_infeasible"}
_WRITTEN_IN = {"model_bytes": 1, "interleaved_seconds": 2, "Constraints.accuracy_floor": 3,
               "Constraints.violations": 3, "Pipeline.__init__": 4, "pareto_front": 5,
               "monotone_infeasible": 6}


@contextlib.contextmanager
def needs():
    """For cells that use your exercises: an unfinished one is named, not a bare traceback."""
    try:
        yield
    except NotImplementedError as e:
        tb, number = e.__traceback__, None
        while tb is not None:  # the innermost frame that is one of the exercises
            frame = tb.tb_frame
            name = getattr(frame.f_code, "co_qualname", None)  # Python >= 3.11
            if name is None:  # Python 3.10: the method's class from its `self`
                owner = frame.f_locals.get("self")
                prefix = "" if owner is None else f"{type(owner).__name__}."
                name = prefix + frame.f_code.co_name
            number = _WRITTEN_IN.get(name, number)
            tb = tb.tb_next
        which = (f"exercise {number}, `{EXERCISES[number]}`," if number
                 else "the exercises this cell uses")
        raise RuntimeError(f"complete {which} first: this cell runs it") from e
print(f"digits splits: train {len(digits.y_train)}, val {len(digits.y_val)}, "
      f"test {len(digits.y_test)}")

# %% tags=["demo"]
_t0 = time.perf_counter()
mlp, _history, _ = zoo.train_digits("mlp", seed=0, data=digits)
print(f"digits MLP trained in {time.perf_counter() - _t0:.1f}s: "
      f"val accuracy {_history.val_acc[-1]:.4f}, {mlp.num_parameters():,} parameters")

# %% [markdown]
# ## Step 1: one harness for every candidate
#
# A tuner compares candidates, so they must all be measured the same way. Our harness measures
# four things on the validation split:
#
# - **accuracy** — fraction of `data.x_val` classified correctly;
# - **latency** — median milliseconds of one forward pass over a batch of 32 images (Step 2);
# - **peak memory** — the model's arrays plus the peak that numpy allocates *during* that
#   forward pass (`peak_memory` of `tinytorch.tuning.harness` measures it with `tracemalloc`,
#   which numpy reports its buffers to);
# - **model bytes** — what must be stored on the device.
#
# Model bytes is the one you write. Sum `arr.nbytes` over `model.state_dict()` — with one
# exception: module 17's INT4 layers keep their 4-bit codes in an `int8` array for computing,
# but a file stores two codes per byte. A quantized layer has a `weight_bits` attribute; when it
# is `<= 4`, count its weight as `pack_int4(layer.weight).nbytes` instead. The state-dict key of
# a layer named `"0"` is `"0.weight"` (the root module's own weight is just `"weight"`).


# %% nbgrader={"grade": false, "grade_id": "model_bytes", "locked": false, "schema_version": 3, "solution": true, "task": false}
#| export
def model_bytes(model: Module) -> int:
    """Bytes to store `model`: every state array; INT4 weight codes count two per byte."""
    ### BEGIN SOLUTION
    packed = {}
    for name, mod in model.named_modules():
        bits = getattr(mod, "weight_bits", None)
        if bits is not None and bits <= 4:
            packed[f"{name}.weight" if name else "weight"] = pack_int4(mod.weight).nbytes
    return int(sum(packed.get(k, a.nbytes) for k, a in model.state_dict().items()))
    ### END SOLUTION


# %% nbgrader={"grade": true, "grade_id": "model_bytes_counts_storage", "locked": true, "points": 3, "schema_version": 3, "solution": false, "task": false}
"""model_bytes sums the state arrays and counts INT4 weights packed two codes per byte."""
from tinytorch.core.data import DataLoader, TensorDataset
from tinytorch.core.nn import ReLU, manual_seed


def _small_net_and_quantized(bits_list=(8, 4), hidden=24):
    """A float MLP built here (not exercise 1's output) and its quantized versions."""
    manual_seed(19)
    net = Sequential(Linear(64, hidden), ReLU(), Linear(hidden, 10))
    x = np.random.default_rng(19).standard_normal((32, 64)).astype(np.float32)
    calib = DataLoader(TensorDataset(x), batch_size=16)
    return net, {b: Quantizer(QConfig(weight_bits=b)).quantize(net, calib, 2) for b in bits_list}


_net, _qs = _small_net_and_quantized()
_got = model_bytes(_net)
assert isinstance(_got, int | np.integer) and not isinstance(_got, bool), (
    f"model_bytes must return an int, got {type(_got).__name__}"
)
_want = (64 * 24 + 24 + 24 * 10 + 10) * 4
assert _got == _want, (
    f"a float32 Linear(64, 24) + Linear(24, 10) stores {_want} bytes of weights and biases, "
    f"got {_got}"
)
_sd8 = sum(a.nbytes for a in _qs[8].state_dict().values())
assert model_bytes(_qs[8]) == _sd8, (
    f"an INT8 model stores every state array as it is (codes, scales, zero points, biases): "
    f"expected {_sd8} bytes, got {model_bytes(_qs[8])}"
)
_sd4 = sum(a.nbytes for a in _qs[4].state_dict().values())
_codes = 64 * 24 + 24 * 10
_want4 = _sd4 - _codes + (64 * 24 + 1) // 2 + (24 * 10 + 1) // 2
assert model_bytes(_qs[4]) != _sd4, (
    f"INT4 weight codes are stored two per byte: {_sd4} bytes counts them one per byte "
    "(replace each 4-bit weight's bytes by pack_int4(layer.weight).nbytes)"
)
assert model_bytes(_qs[4]) == _want4, (
    f"INT4 model: expected {_want4} bytes (every state array, the two 4-bit weights packed two "
    f"codes per byte), got {model_bytes(_qs[4])}"
)
_tiny = Sequential(Linear(5, 3))  # 15 weights: an odd number of 4-bit codes
_root = Quantizer(QConfig(weight_bits=4)).quantize(
    _tiny, DataLoader(TensorDataset(np.ones((4, 5), np.float32)), batch_size=4), 1)[0]
_want_root = sum(a.nbytes for a in _root.state_dict().values()) - 15 + 8
assert model_bytes(_root) == _want_root, (
    f"a 4-bit Linear(5, 3) used as the model itself (its weight's state-dict key is 'weight'; "
    f"15 codes take 8 bytes): expected {_want_root} bytes, got {model_bytes(_root)}"
)
print("model_bytes: float, INT8, INT4 and a bare INT4 layer counted as stored")


### BEGIN HIDDEN TESTS
from tito.probe import probe as _probe

with _probe("19_autotuning", "model_bytes_counts_storage") as _p:
    _in = _p.inputs
    _ni, _nh, _no = _in["dims"]
    _pnet = Sequential(Linear(_ni, _nh), ReLU(), Linear(_nh, _no))
    _pnet.load_state_dict({"0.weight": _in["w0"], "0.bias": _in["b0"],
                           "2.weight": _in["w1"], "2.bias": _in["b1"]})
    _pcal = DataLoader(TensorDataset(_in["x"]), batch_size=8)
    _pq4 = Quantizer(QConfig(weight_bits=4)).quantize(_pnet, _pcal, 2)
    _pmixed = Quantizer(QConfig(weight_bits=4)).quantize(_pnet, _pcal, 2)
    _pmixed.__setattr__("2", Linear(_nh, _no))
    _pmodels = {"fp32": _pnet, "fp64": Sequential(Linear(_ni, _nh)).double(),
                "int8": Quantizer(QConfig(weight_bits=8)).quantize(_pnet, _pcal, 2),
                "int4": _pq4, "mixed": _pmixed, "root4": _pq4[0]}
    for _name, _model in _pmodels.items():
        _p.record(_name, model_bytes, _model)
### END HIDDEN TESTS

# %% [markdown]
# ## Step 2: measuring latency honestly
#
# A latency is only comparable with one measured under the same conditions. On a shared
# machine the speed of the CPU changes from second to second (other processes, frequency
# scaling, caches), so "candidate 0.41 ms today, baseline 0.45 ms an hour ago" says nothing.
# The harness therefore times a candidate and the baseline **in the same interleaved rounds**:
# each round times every function once, back to back, and the speed-up is computed **round by
# round** (baseline time / candidate time of the same round); its median over the rounds is the
# speed-up, and its interquartile range says how far to trust it.
#
# Three details make the rounds fair:
#
# - **warm-up** calls first, untimed (the first call pays for allocations and cold caches);
# - a **sample long enough for the clock**: one forward pass of a tiny model takes tens of
#   microseconds, so a sample calls the function `numbers[i]` times in a row and divides;
# - **alternating order**: even rounds (0, 2, ...) call the functions in the given order, odd
#   rounds in reverse, so that no function always runs right after the same other one.
#
# Write `interleaved_seconds`. The given first lines do the warm-up and find `numbers` with
# `calls_per_sample` (from `tinytorch.tuning.harness`). Then, for each of `rounds` rounds and
# each function `i` in that round's order: read `clock()`, call `fns[i]()` `numbers[i]` times,
# read `clock()` again, and append the seconds **per call** to `times[i]`. Use the `clock`
# argument, never `time.perf_counter` directly: the checks pass a fake clock. Return `times`,
# one list per function with one entry per round.


# %% nbgrader={"grade": false, "grade_id": "interleaved_seconds", "locked": false, "schema_version": 3, "solution": true, "task": false}
#| export
def interleaved_seconds(
    fns: Sequence[Callable[[], object]], rounds: int = 25, warmup: int = 2,
    min_time: float = 0.0002, clock: Callable[[], float] = time.perf_counter,
) -> list[list[float]]:
    """Seconds per call of each of `fns`: one list per function, one entry per round.

    Every round times every function once (`numbers[i]` calls in a row, divided), the order
    reversed every other round, so all of them see the same machine state. One BLAS thread
    throughout (`tinytorch.core.threads`), whatever the caller set.
    """
    if rounds < 1 or warmup < 0 or not fns:
        raise ValueError(f"need rounds >= 1, warmup >= 0 and a function, got {rounds}, {warmup}, "
                         f"{len(fns)} functions")
    with blas_threads(1):
        numbers = [calls_per_sample(fn, warmup, min_time, clock) for fn in fns]
        ### BEGIN SOLUTION
        times: list[list[float]] = [[] for _ in fns]
        for r in range(rounds):
            order = range(len(fns)) if r % 2 == 0 else reversed(range(len(fns)))
            for i in order:
                t0 = clock()
                for _ in range(numbers[i]):
                    fns[i]()
                times[i].append((clock() - t0) / numbers[i])
        return times
        ### END SOLUTION


# %% nbgrader={"grade": true, "grade_id": "interleaved_rounds", "locked": true, "points": 3, "schema_version": 3, "solution": false, "task": false}
"""interleaved_seconds alternates the order each round and reports seconds per call."""


class _FakeMachine:
    """A clock that only moves when a function runs; the machine slows down as time passes."""

    def __init__(self, costs):
        self.now, self.calls, self.trace, self.costs = 0.0, 0, [], costs

    def clock(self):
        return self.now

    def fn(self, i):
        def call():
            self.trace.append(i)
            self.now += self.costs[i] * (1.0 + 0.002 * self.calls)  # drift: later calls cost more
            self.calls += 1
        return call


_fm = _FakeMachine([3e-5, 7e-5])
_times = interleaved_seconds([_fm.fn(0), _fm.fn(1)], rounds=4, warmup=1, min_time=2e-4,
                             clock=_fm.clock)
assert isinstance(_times, list) and len(_times) == 2 and all(len(t) == 4 for t in _times), (
    f"expected one list per function with one entry per round (2 lists of 4), got "
    f"{[len(t) for t in _times] if isinstance(_times, list) else type(_times).__name__}"
)
# warm-up + calibration: fn 0 twice, fn 1 twice; then 7 calls of fn 0 per sample, 3 of fn 1
_rounds = _fm.trace[4:]
assert len(_rounds) == 4 * (7 + 3), (
    f"each sample calls fns[i] numbers[i] times (7 and 3 here), once per round: expected "
    f"{4 * 10} timed calls after the warm-up, got {len(_rounds)}"
)
_expected = []
for _r in range(4):
    for _i in (0, 1) if _r % 2 == 0 else (1, 0):
        _expected += [_i] * (7, 3)[_i]
assert _rounds == _expected, (
    "the timed samples must go fn 0 then fn 1 in rounds 0 and 2, fn 1 then fn 0 in rounds 1 and "
    "3 (reversed every odd round), each sample's calls in a row"
)
assert all(2.9e-5 < t < 4e-5 for t in _times[0]) and all(6.9e-5 < t < 9e-5 for t in _times[1]), (
    f"each entry is seconds PER CALL on `clock` (divide a sample by numbers[i]; use the clock "
    f"argument, not time.perf_counter): got {_times}"
)
assert _times[0][1] > _times[0][0] and _times[1][0] < _times[1][1], (
    "each round's entry must time that round's own calls (the fake machine slows down)"
)
print("interleaved_seconds: alternating rounds, seconds per call")


### BEGIN HIDDEN TESTS
from tito.probe import probe as _probe

with _probe("19_autotuning", "interleaved_rounds") as _p:
    _in = _p.inputs
    _pm = _FakeMachine(_in["costs"])
    _pm.drift = _in["drift"]

    def _pfn(i, _pm=_pm):
        def call():
            _pm.trace.append(i)
            _pm.now += _pm.costs[i] * (1.0 + _pm.drift * _pm.calls)
            _pm.calls += 1
        return call

    _p.record("times", interleaved_seconds, [_pfn(i) for i in range(len(_in["costs"]))],
              rounds=_in["rounds"], warmup=_in["warmup"], min_time=_in["min_time"],
              clock=_pm.clock)
    _p.put("trace", list(_pm.trace))
### END HIDDEN TESTS

# %% [markdown]
# `measure` (given) puts the harness together: accuracy on the validation split, your
# `interleaved_seconds` over 5 × `repeats` short rounds (the baseline, if given, in the same
# rounds), `peak_memory` of one forward pass, and your `model_bytes`.


# %%
#| export
def measure(model: Module, data, batch: int = 32, repeats: int = 5, warmup: int = 2,
            baseline: Module | None = None) -> Metrics:
    """Accuracy on data.x_val; latency (median over 5 * `repeats` short rounds, with its
    interquartile range) and peak memory on its first `batch` rows. With `baseline`, that model
    is timed in the same interleaved rounds and the speed-up over it is reported per round
    (`vs_baseline`)."""
    for name, m in (("model", model), ("baseline", baseline)):
        if not isinstance(m, Module) and (m is not None or name == "model"):
            raise TypeError(f"measure expects a tinytorch Module as {name}, got "
                            f"{type(m).__name__} {m!r:.60}")
    xt = Tensor(data.x_val[:batch])

    def forward_of(m: Module) -> Callable[[], None]:
        m.eval()

        def forward():
            with no_grad():
                m(xt)

        return forward

    forward = forward_of(model)
    acc = accuracy_on(model, data.x_val, data.y_val)
    fns = [forward] if baseline is None else [forward, forward_of(baseline)]
    rounds = interleaved_seconds(fns, rounds=5 * repeats, warmup=warmup)
    mine = rounds[0]
    ratio = spread = None
    if baseline is not None:
        ratios = [b / c for b, c in zip(rounds[1], mine)]  # (rounds,)
        ratio, spread = statistics.median(ratios), iqr(ratios)
    resident = int(sum(a.nbytes for a in model.state_dict().values()))
    return Metrics(acc, statistics.median(mine) * 1e3, resident + peak_memory(forward),
                   model_bytes(model), iqr(mine) * 1e3, ratio, spread)


# %% [markdown]
# Measure the float model and its INT8 version on the harness, the INT8 one in the same rounds
# as the float one. Before reading on, predict: which numbers will INT8 improve on *this*
# machine?

# %% tags=["demo"]
with needs():
    _q8 = Quantizer(QConfig(weight_bits=8)).quantize(mlp, digits.loader("train"), 1)
    _m_fp32 = measure(mlp, digits)
    _m_int8 = measure(_q8, digits, baseline=mlp)
    print(f"{'':>6}{'accuracy':>10}{'latency ms':>12}{'peak KiB':>10}{'KiB':>8}{'vs fp32':>14}")
    for _name, _m in [("fp32", _m_fp32), ("int8", _m_int8)]:
        print(f"{_name:>6}{_m.accuracy:>10.4f}{_m.latency_ms:>12.3f}{_m.peak_memory / 1024:>10.1f}"
              f"{_m.model_bytes / 1024:>8.1f}{_m.vs_baseline_text():>14}")

# %% [markdown]
# INT8 cuts the bytes by almost 4x at the same accuracy — but numpy has no fast integer matmul,
# so on the default backend the INT8 model is usually *slower* ("vs fp32" below 1x; module 15,
# Step 6). Module 15's `optimized` backend sends integer products to BLAS through float64,
# which fixes most of the speed and roughly doubles the peak memory of a forward pass (the
# float64 copies). There is no single "best" model: there are trade-offs, and budgets decide
# among them.

# %% [markdown]
# ## Step 3: budgets as constraints
#
# A deployment target comes with budgets: a storage budget (flash, download size), a latency
# budget per request, a RAM budget, and how much accuracy we may give up — either an absolute
# floor (`min_accuracy`) or a drop relative to the unoptimized model (`max_accuracy_drop`, in
# accuracy points: `0.01` is one point). `None` means no limit.
#
# A constraint check that only says "infeasible" is useless to a tuner and to you. Yours returns
# one `Violation` per broken constraint, naming the constraint, the metric, the measured value
# and the limit, in the order bytes, latency, peak memory, accuracy. A value exactly at its
# limit meets it. Two details:
#
# - **Latency is noisy.** A candidate measured at 0.98 ms against a 1 ms budget will exceed it
#   half of the time when measured again. While searching (`margin=True`), require
#   `latency_ms <= max_latency_ms * (1 - latency_margin)`; a final re-measurement uses the plain
#   budget (`margin=False`). The violation's `limit` is the limit actually applied.
# - **Two accuracy floors** may both be set: the effective floor is the *tighter* one
#   (`accuracy_floor`). A violation of the floor is named after the constraint that set it
#   (`"min_accuracy"` or `"max_accuracy_drop"`), with `upper=False` (the value must be *at least*
#   the limit). A relative floor without the baseline accuracy is a `ValueError` that says the
#   baseline is missing.


# %%
#| export
@dataclass(frozen=True)
class Violation:
    """One constraint a candidate breaks, and by how much."""

    constraint: str  # the Constraints field, e.g. "max_bytes" or "max_accuracy_drop"
    metric: str  # the Metrics field it limits, e.g. "model_bytes" or "accuracy"
    value: float  # what was measured
    limit: float  # what the constraint allows (after the latency margin, if any)
    upper: bool = True  # True: value must be <= limit; False: value must be >= limit

    @property
    def excess(self) -> float:
        """Relative distance past the limit (0.5 = 50% too much, or 50% too little)."""
        gap = self.value - self.limit if self.upper else self.limit - self.value
        return gap / abs(self.limit) if self.limit else math.inf

    def __str__(self) -> str:
        op = ">" if self.upper else "<"
        return (
            f"{self.constraint}: {self.metric} {fmt_value(self.metric, self.value)} {op} "
            f"{fmt_value(self.metric, self.limit)}"
        )


# %% nbgrader={"grade": false, "grade_id": "constraints", "locked": false, "schema_version": 3, "solution": true, "task": false}
#| export
@dataclass(frozen=True)
class Constraints:
    """Budgets a candidate must meet; None means "no limit"."""

    # Storage budget: flash on a device, download size of an app.
    max_bytes: int | None = None
    # Per-request budget: ms for one forward pass over the latency batch.
    max_latency_ms: float | None = None
    # RAM budget: the model's arrays plus the activations of one request.
    max_peak_memory: int | None = None
    # Absolute accuracy floor on the validation split.
    min_accuracy: float | None = None
    # Floor relative to the unoptimized model, in accuracy points (0.01 = one point).
    max_accuracy_drop: float | None = None
    # Timing is noisy: while searching, a candidate must beat max_latency_ms by this fraction,
    # so that it still meets the budget when it is measured again.
    latency_margin: float = 0.15

    def __post_init__(self):
        for name in ("max_bytes", "max_latency_ms", "max_peak_memory"):
            v = getattr(self, name)
            if v is not None and (isinstance(v, bool) or not isinstance(v, int | float) or v <= 0):
                raise ValueError(f"{name} must be a positive number or None, got {v!r}")
        for name in ("min_accuracy", "max_accuracy_drop"):
            v = getattr(self, name)
            if v is not None and (isinstance(v, bool) or not isinstance(v, int | float)
                                  or not 0 <= v <= 1):
                raise ValueError(f"{name} must be a fraction in [0, 1] or None, got {v!r}")
        if not 0 <= self.latency_margin < 1:
            raise ValueError(f"latency_margin must be in [0, 1), got {self.latency_margin!r}")

    def accuracy_floor(self, baseline_accuracy: float | None = None) -> float | None:
        """The effective minimum accuracy: the tighter of the absolute and relative floors."""
        ### BEGIN SOLUTION
        floors = []
        if self.min_accuracy is not None:
            floors.append(self.min_accuracy)
        if self.max_accuracy_drop is not None:
            if baseline_accuracy is None:
                raise ValueError("max_accuracy_drop needs the baseline model's accuracy")
            floors.append(baseline_accuracy - self.max_accuracy_drop)
        return max(floors) if floors else None
        ### END SOLUTION

    def violations(
        self, metrics: Metrics, baseline_accuracy: float | None = None, margin: bool = True
    ) -> list[Violation]:
        """Every constraint `metrics` breaks (an empty list: feasible)."""
        ### BEGIN SOLUTION
        out = []
        if self.max_bytes is not None and metrics.model_bytes > self.max_bytes:
            out.append(Violation("max_bytes", "model_bytes", metrics.model_bytes, self.max_bytes))
        if self.max_latency_ms is not None:
            limit = self.max_latency_ms * ((1 - self.latency_margin) if margin else 1.0)
            if metrics.latency_ms > limit:
                out.append(Violation("max_latency_ms", "latency_ms", metrics.latency_ms, limit))
        if self.max_peak_memory is not None and metrics.peak_memory > self.max_peak_memory:
            out.append(
                Violation("max_peak_memory", "peak_memory", metrics.peak_memory,
                          self.max_peak_memory)
            )
        floor = self.accuracy_floor(baseline_accuracy)
        if floor is not None and metrics.accuracy < floor - 1e-12:
            name = "min_accuracy" if floor == self.min_accuracy else "max_accuracy_drop"
            out.append(Violation(name, "accuracy", metrics.accuracy, floor, upper=False))
        return out
        ### END SOLUTION


# %% nbgrader={"grade": true, "grade_id": "constraints_name_what_fails", "locked": true, "points": 4, "schema_version": 3, "solution": false, "task": false}
"""Constraints.violations names each broken budget, applies the latency margin and the floors."""
_m = Metrics(accuracy=0.95, latency_ms=0.9, peak_memory=100_000, model_bytes=20_000)
assert Constraints().violations(_m) == [], "no limits set: nothing can be violated"
_v = Constraints(max_bytes=10_000, max_latency_ms=1.0).violations(_m)
assert [v.constraint for v in _v] == ["max_bytes", "max_latency_ms"], (
    f"20,000 B > 10,000 B and 0.9 ms > 1.0 * (1 - 0.15) = 0.85 ms should both fail, in that "
    f"order, got {[v.constraint for v in _v]}"
)
assert _v[0].metric == "model_bytes" and _v[0].value == 20_000 and _v[0].limit == 10_000, (
    f"the violation should carry the metric, the measured value and the limit, got {_v[0]!r}"
)
assert _v[1].metric == "latency_ms" and abs(_v[1].limit - 0.85) < 1e-12, (
    f"the latency limit applied (with the 15% margin) is 0.85 ms, got {_v[1]!r}"
)
assert Constraints(max_latency_ms=1.0).violations(_m, margin=False) == [], (
    "without the margin 0.9 ms meets a 1.0 ms budget"
)
assert Constraints(max_bytes=20_000, max_peak_memory=100_000).violations(_m) == [], (
    "a value exactly at its limit meets it"
)
_v = Constraints(max_peak_memory=99_999).violations(_m)
assert [v.constraint for v in _v] == ["max_peak_memory"] and _v[0].metric == "peak_memory", (
    f"100,000 B of peak memory is over a 99,999 B budget: got {_v}"
)
_v = Constraints(max_accuracy_drop=0.02).violations(_m, baseline_accuracy=0.98)
assert len(_v) == 1 and _v[0].constraint == "max_accuracy_drop" and _v[0].upper is False, (
    f"0.95 is below 0.98 - 0.02 = 0.96: expect one max_accuracy_drop violation with "
    f"upper=False, got {_v}"
)
assert abs(_v[0].limit - 0.96) < 1e-12 and _v[0].metric == "accuracy", (
    f"the floor is 0.96 on the accuracy, got {_v[0]!r}"
)
_c = Constraints(min_accuracy=0.90, max_accuracy_drop=0.01)
assert _c.accuracy_floor(0.99) is not None and abs(_c.accuracy_floor(0.99) - 0.98) < 1e-12, (
    f"min_accuracy 0.90 and 0.99 - 0.01 = 0.98: the tighter floor is 0.98, got "
    f"{_c.accuracy_floor(0.99)}"
)
_v = Constraints(min_accuracy=0.97, max_accuracy_drop=0.1).violations(_m, baseline_accuracy=0.99)
assert [v.constraint for v in _v] == ["min_accuracy"], (
    f"0.97 is tighter than 0.99 - 0.1 = 0.89: the violation is named min_accuracy, got {_v}"
)
assert Constraints(min_accuracy=0.95).violations(_m) == [], "accuracy equal to the floor is ok"
assert Constraints().accuracy_floor() is None, "no floor set: accuracy_floor() is None"
try:
    Constraints(max_accuracy_drop=0.01).violations(_m)
except ValueError as _e:
    assert "baseline" in str(_e), f"the error should say the baseline is missing: {_e}"
else:
    raise AssertionError("a relative floor without the baseline accuracy should raise ValueError")
print("Constraints: every budget named, margin and floors applied")


### BEGIN HIDDEN TESTS
from tito.probe import probe as _probe


def _violation_rows(c, m, base, margin):
    return [[v.constraint, v.metric, v.value, v.limit, v.upper]
            for v in c.violations(Metrics(**m), base, margin)]


with _probe("19_autotuning", "constraints_name_what_fails") as _p:
    for _k, _case in enumerate(_p.inputs["cases"]):
        _pc = Constraints(**_case["constraints"])
        _p.record(f"v{_k}", _violation_rows, _pc, _case["metrics"], _case["base"],
                  _case["margin"])
        _p.record(f"floor{_k}", _pc.accuracy_floor, _case["base"])
### END HIDDEN TESTS

# %% tags=["demo"]
for _bad in [dict(max_bytes=-1), dict(min_accuracy=1.5), dict(latency_margin=1.0)]:
    try:
        Constraints(**_bad)
    except ValueError as _e:
        print(f"Constraints({_bad}) -> ValueError: {_e}")
_m = Metrics(accuracy=0.96, latency_ms=0.09, peak_memory=60_000, model_bytes=20_000)
print(f"a candidate measured at {_m}:")
with needs():
    print(*Constraints(max_bytes=16 * 1024, max_latency_ms=0.1).violations(_m), sep="\n")

# %% [markdown]
# ## Step 4: what machine is this?
#
# Tuning decisions depend on the hardware: how many cores, which vector instructions (an
# `avx512_vnni` CPU has INT8 dot-product instructions; a microcontroller may have none), how
# much RAM, which BLAS numpy calls, whether a GPU or onnxruntime (module 17's INT8 engine) is
# there. `tinytorch.tuning.hardware` reads all of it at run time: `cpu_flags` parses the
# `flags` (x86) or `Features` (ARM) lines of `/proc/cpuinfo`, whole words only (`avx512f` does
# not imply `avx`); `HardwareProfile.detect()` adds cores, RAM, BLAS, GPU and onnxruntime; its
# `fingerprint()` is part of every cache key, because a timing is only valid on the machine that
# made it. Read `tinytorch/tuning/hardware.py`: it is short.

# %% tags=["demo"]
hardware = HardwareProfile.detect()
print(hardware.describe())
print("parsed from ARM text:", cpu_flags("processor : 0\nFeatures : fp asimd evtstrm asimddp\n"))
print("BLAS details:", blas_info())

# %% [markdown]
# ## Step 5: one interface for every technique
#
# Modules 15–18 each have their own API: `use_backend(name)` is a context manager,
# `Quantizer(qconfig).quantize(model, loader, n)` returns a new model, `structured_prune` returns
# a new model, `MagnitudePruner` edits a model in place, `distillation_loss` is a loss. A program
# cannot compose what does not share a shape. So we give them one:
#
# ```
# step(model, ctx, **params) -> a NEW model      # the input model is never modified
# ```
#
# `ctx` (a `StepContext`) carries what some steps need besides the model: the data (to fine-tune
# or calibrate) and the teacher (the original model, for distillation). The adapters live in
# `tinytorch/tuning/steps.py` and wrap the earlier modules' functions — no change to those
# modules was needed:
#
# | step | stage | wraps |
# |---|---|---|
# | `prune(amount)` | shrink | module 18 `structured_prune` (whole neurons / filters: really smaller) |
# | `finetune(epochs, distill)` | recover | the core training loop; `distill=True` uses module 18 `distillation_loss` |
# | `quantize(bits, keep_fp32)` | quantize | module 17 `Quantizer(QConfig(weight_bits=bits))` |
# | `backend(backend)` | runtime | module 15 `use_backend`, frozen into a `BackendModel` wrapper |
#
# `STEPS` maps each name to its `StepSpec` (the function and the index of its stage in
# `STAGES`); `Step.make("prune", amount=0.5)` names one technique with its parameters.
#
# **Order** is not free: fine-tuning must come after pruning (it repairs the damage) and before
# quantization (module 17's quantized layers do not train), and the runtime wraps the finished
# model. A pipeline must list stages in the order `shrink -> recover -> quantize -> runtime`;
# it may skip stages.
#
# Write the check in the `Pipeline` constructor. Raise `ValueError` for
#
# - an unknown step name (name it and list the known ones: `sorted(STEPS)`),
# - a step used twice (say "twice"),
# - a step whose stage comes *before* the stage of an earlier step (name both stages).


# %% nbgrader={"grade": false, "grade_id": "pipeline", "locked": false, "schema_version": 3, "solution": true, "task": false}
#| export
class Pipeline:
    """An ordered list of Steps: inspectable, JSON round-trippable, re-runnable."""

    def __init__(self, steps: Iterable[Step] = (), target: str | None = None):
        self.steps = list(steps)
        self.target = target
        ### BEGIN SOLUTION
        seen = set()
        last = -1
        for s in self.steps:
            if s.name not in STEPS:
                raise ValueError(f"unknown step {s.name!r}; known steps: {sorted(STEPS)}")
            if s.name in seen:
                raise ValueError(f"step {s.name!r} appears twice in the pipeline")
            seen.add(s.name)
            stage = STEPS[s.name].stage
            if stage < last:
                raise ValueError(f"step {s.name!r} ({STAGES[stage]}) cannot run after a "
                                 f"{STAGES[last]} step: the order is {' -> '.join(STAGES)}")
            last = stage
        ### END SOLUTION

    def run(self, model: Module, ctx: StepContext) -> Module:
        """Apply every step in order to a copy; `model` itself is left untouched."""
        out = model
        for s in self.steps:
            out = STEPS[s.name].fn(out, ctx, **s.kwargs)
        return out if self.steps else copy.deepcopy(model)

    def describe(self) -> str:
        if not self.steps:
            return "(no optimization: the model as it is)"
        return "\n".join(f"{i}. {s}" for i, s in enumerate(self.steps, 1))

    def to_dict(self) -> dict:
        return {"target": self.target, "steps": [[s.name, dict(s.params)] for s in self.steps]}

    @classmethod
    def from_dict(cls, d: dict) -> "Pipeline":
        return cls([Step.make(name, **params) for name, params in d["steps"]], d.get("target"))

    def __eq__(self, other) -> bool:
        return isinstance(other, Pipeline) and self.steps == other.steps

    def __len__(self) -> int:
        return len(self.steps)

    def __repr__(self) -> str:
        return f"Pipeline([{', '.join(map(str, self.steps))}])"


# %% nbgrader={"grade": true, "grade_id": "pipeline_order", "locked": true, "points": 3, "schema_version": 3, "solution": false, "task": false}
"""Pipelines accept shrink -> recover -> quantize -> runtime (stages may be skipped) only."""
import json

for _ok in (
    [Step.make("prune", amount=0.5), Step.make("finetune", epochs=1), Step.make("quantize"),
     Step.make("backend")],
    [Step.make("prune"), Step.make("quantize", bits=4)],
    [Step.make("finetune", epochs=1)],
    [Step.make("quantize"), Step.make("backend", backend="numpy")],
    [],
):
    try:
        _p = Pipeline(_ok)
    except ValueError as _e:
        raise AssertionError(f"Pipeline({[str(s) for s in _ok]}) is in stage order but raised "
                             f"ValueError: {_e}") from None
    assert _p.steps == _ok, "the pipeline must keep its steps in the given order"


def _raises(steps, *words):
    try:
        Pipeline(steps)
    except ValueError as e:
        missing = [w for w in words if w not in str(e)]
        assert not missing, (f"Pipeline({[str(s) for s in steps]}): the error should name "
                             f"{missing}, got: {e}")
    else:
        raise AssertionError(f"Pipeline({[str(s) for s in steps]}) should raise ValueError")


_raises([Step.make("quantize"), Step.make("prune")], "shrink", "quantize")
_raises([Step.make("backend"), Step.make("quantize")], "runtime", "quantize")
_raises([Step.make("prune"), Step.make("quantize"), Step.make("finetune")], "recover", "quantize")
_raises([Step.make("prune"), Step.make("prune", amount=0.25)], "twice")
_raises([Step.make("sparsify")], "sparsify", "quantize", "prune")
_pipe = Pipeline([Step.make("prune", amount=0.5), Step.make("quantize", bits=8)], "mobile")
assert Pipeline.from_dict(json.loads(json.dumps(_pipe.to_dict()))) == _pipe, (
    "a pipeline must survive a JSON round trip (to_dict / from_dict)"
)
print("Pipeline: stage order enforced, unknown and repeated steps refused")


### BEGIN HIDDEN TESTS
from tito.probe import probe as _probe

with _probe("19_autotuning", "pipeline_order") as _p:
    for _k, _seq in enumerate(_p.inputs["seqs"]):
        _p.record(f"p{_k}", lambda seq=_seq: [s.name for s in
                                             Pipeline([Step.make(n) for n in seq]).steps])
### END HIDDEN TESTS

# %% tags=["demo"]
with needs():
    _ctx = StepContext(digits, teacher=mlp)
    _before = {k: v.copy() for k, v in mlp.state_dict().items()}
    _pipe = Pipeline([Step.make("prune", amount=0.5), Step.make("finetune", epochs=1),
                      Step.make("quantize", bits=8), Step.make("backend", backend="optimized")])
    _out = _pipe.run(mlp, _ctx)
    print(_pipe.describe())
    print(json.dumps(_pipe.to_dict()))
    print(f"input untouched: {all(np.array_equal(_before[k], v) for k, v in mlp.state_dict().items())}")
    print(f"{model_bytes(mlp):,} B -> {model_bytes(_out):,} B; val accuracy "
          f"{accuracy_on(mlp, digits.x_val, digits.y_val):.4f} -> "
          f"{accuracy_on(_out, digits.x_val, digits.y_val):.4f}; result: {_out}")
# %% [markdown]
# ## Step 6: the search space and the targets
#
# A `Config` is one point of the grid the tuner searches: how much to prune, how to recover,
# how many weight bits, which backend. It turns itself into a `Pipeline`. The grid is small on
# purpose (78 points by default) so that we can afford the exhaustive search the tuner is judged
# against.
#
# A `TargetProfile` names a deployment target with its assumed hardware, its **budgets**, its
# **objective** (what to optimize once the budgets hold) and its **recipe** — the known-good
# starting point a practitioner would try first ("mobile: INT8 + pruning"). The budgets are
# sized for the digits models of this course (the float32 MLP is 75 KiB), not for ImageNet.
#
# `optimization_pipeline(model, target)` is the rule-based answer without any search: the
# target's recipe, adapted by rules to the model and to this machine. Rules we measured:
# convolution filters are few, so pruning a CNN by half loses far more than pruning an MLP by
# half (module 18), and integer models should run on the backend that routes integer matmuls to
# BLAS (module 15).



# %%
#| export
def _bits(q: int | None) -> int:
    return 32 if q is None else int(q)


@dataclass(frozen=True, order=True)
class Config:
    """One point of the search space: what to apply to the model, and where to run it."""

    prune: float = 0.0  # fraction of hidden units / filters removed (structured pruning)
    recover: str = "none"  # after pruning: "none", "finetune" or "distill" (from the original)
    quantize: int | None = None  # weight bits (8 or 4); None: stay float32
    backend: str = "numpy"  # matmul backend at run time (module 15)

    def pipeline(self, finetune_epochs: int = 3, target: str | None = None) -> Pipeline:
        steps = []
        if self.prune > 0:
            steps.append(Step.make("prune", amount=self.prune))
            if self.recover != "none":
                steps.append(
                    Step.make("finetune", epochs=finetune_epochs,
                              distill=self.recover == "distill")
                )
        if self.quantize is not None:
            steps.append(Step.make("quantize", bits=self.quantize))
        if self.backend != "numpy":
            steps.append(Step.make("backend", backend=self.backend))
        return Pipeline(steps, target)

    @property
    def variant(self) -> tuple:
        """Everything but the backend: the model this builds (the same numbers on any backend)."""
        return (self.prune, self.recover, self.quantize)

    def at_most_as_aggressive_as(self, other: "Config") -> bool:
        """Same recovery, no more pruning and no fewer weight bits than `other`."""
        return (
            self.recover == other.recover
            and self.prune <= other.prune
            and _bits(self.quantize) >= _bits(other.quantize)
        )

    def label(self) -> str:
        parts = []
        if self.prune > 0:
            parts.append(f"prune{self.prune:g}")
            if self.recover != "none":
                parts.append({"finetune": "ft", "distill": "kd"}[self.recover])
        parts.append("fp32" if self.quantize is None else f"int{self.quantize}")
        return "+".join(parts) + f"@{self.backend}"

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class SearchSpace:
    """A grid of Configs; the recovery options only apply when something was pruned."""

    prune: tuple = (0.0, 0.5, 0.75, 0.875, 0.9375)  # MLP hidden 256 -> 128, 64, 32, 16
    recover: tuple = ("none", "finetune", "distill")
    quantize: tuple = (None, 8, 4)
    backend: tuple = ("numpy", "optimized")
    finetune_epochs: int = 3  # epochs of every "finetune" / "distill" recovery

    def configs(self) -> list[Config]:
        out = []
        for p in self.prune:
            for r in self.recover if p > 0 else ("none",):
                for q in self.quantize:
                    for b in self.backend:
                        out.append(Config(float(p), r, q, b))
        return out

    def __len__(self) -> int:
        return len(self.configs())


@dataclass(frozen=True)
class TargetProfile:
    """A deployment target: its hardware, its budgets, what to optimize, where to start."""

    name: str
    description: str
    cores: int  # cores the target gives one model
    simd: tuple  # vector instructions it has
    memory_bytes: int  # RAM of the device
    constraints: Constraints  # budgets for one digits model on this target
    objective: str  # "accuracy", "bytes" or "latency": what to optimize once budgets hold
    recipe: tuple  # Configs to try first (known-good starting points)


TARGETS = {
    "server": TargetProfile(
        "server", "many cores, wide SIMD, GBs of RAM: serve fast, size is free",
        32, ("avx2", "fma", "avx512f", "avx512_vnni"), 64 * 2**30,
        Constraints(max_accuracy_drop=0.005), "latency",
        (Config(),),
    ),
    "laptop": TargetProfile(
        "laptop", "a few cores, AVX2: ship a small app, lose at most one point",
        4, ("avx2", "fma"), 16 * 2**30,
        Constraints(max_bytes=32 * 1024, max_accuracy_drop=0.01), "accuracy",
        (Config(quantize=8, backend="optimized"),),
    ),
    "mobile": TargetProfile(
        "mobile", "ARM big.LITTLE with NEON: INT8 + pruning, the smallest model within 2 points",
        2, ("neon", "asimd"), 4 * 2**30,
        Constraints(max_bytes=16 * 1024, max_accuracy_drop=0.02), "bytes",
        (Config(prune=0.5, recover="finetune", quantize=8, backend="optimized"),),
    ),
    "microcontroller": TargetProfile(
        "microcontroller", "Cortex-M class: one core, KiBs of flash and RAM",
        1, (), 256 * 1024,
        Constraints(max_bytes=4 * 1024, max_peak_memory=36 * 1024, max_accuracy_drop=0.03),
        "bytes",
        (Config(prune=0.875, recover="finetune", quantize=4, backend="numpy"),),
    ),
}


def preferred_backend(config: Config, backends: Sequence[str]) -> str:
    """Rule: integer models on "optimized" (int matmul -> BLAS), float models on "numpy"."""
    if config.quantize is not None and "optimized" in backends:
        return "optimized"
    return "numpy" if "numpy" in backends else backends[0]


def optimization_pipeline(
    model: Module, target_hardware: str | TargetProfile = "mobile", finetune_epochs: int = 3
) -> Pipeline:
    """The ordered, re-runnable pipeline for a target by rules alone (no search)."""
    profile = target_hardware
    if not isinstance(profile, TargetProfile):
        if profile not in TARGETS:
            raise ValueError(f"unknown target {profile!r}; known targets: {sorted(TARGETS)}")
        profile = TARGETS[profile]
    c = profile.recipe[0]
    prune = c.prune
    if not isinstance(model, Sequential):
        prune = 0.0  # structured pruning needs a Sequential (module 18)
    elif any(isinstance(m, Conv2d) for m in model.modules()):
        prune = min(prune, 0.25)  # few filters: a CNN loses far more than an MLP per unit
    quantize = c.quantize if any(isinstance(m, Linear | Conv2d) for m in model.modules()) else None
    rule = Config(prune, c.recover if prune else "none", quantize)
    backend = preferred_backend(rule, available_backends())
    return Config(rule.prune, rule.recover, rule.quantize, backend).pipeline(
        finetune_epochs, profile.name
    )


# %% tags=["demo"]
_mlp_shape, _cnn_shape = zoo.digits_mlp(), zoo.digits_cnn()  # rules read the structure only
print(f"the default grid has {len(SearchSpace())} configurations\n")
with needs():
    for _name, _p in TARGETS.items():
        print(f"{_name:>15}: {_p.description}")
        print(f"{'':>15}  budgets {_p.constraints}")
        print(f"{'':>15}  objective {_p.objective!r}; MLP pipeline "
              f"{optimization_pipeline(_mlp_shape, _name)!r}; CNN pipeline "
              f"{optimization_pipeline(_cnn_shape, _name)!r}")

# %% [markdown]
# ## Step 7: trade-offs — the Pareto front
#
# Candidate A **dominates** B if A is at least as good in every objective and strictly better in
# one. The **Pareto front** is every candidate nothing dominates: the only ones worth choosing
# between, whatever the budgets. With accuracy (higher is better) we flip its sign so that every
# objective is minimised.
#
# Write `pareto_front(items, key)`: `key(item)` gives a tuple of values to minimise; return the
# items no other item dominates, **in their input order**. Two items with identical values do
# not dominate each other (both stay). `dominates` is given.


# %% nbgrader={"grade": false, "grade_id": "pareto_front", "locked": false, "schema_version": 3, "solution": true, "task": false}
#| export
def dominates(a: Sequence[float], b: Sequence[float]) -> bool:
    """a is no worse than b everywhere and better somewhere (all values are minimised)."""
    return all(x <= y for x, y in zip(a, b)) and any(x < y for x, y in zip(a, b))


def pareto_front(items: Sequence, key: Callable) -> list:
    """The items no other item dominates (key(item) -> a tuple to minimise), in input order."""
    ### BEGIN SOLUTION
    vals = [tuple(key(it)) for it in items]
    return [
        it
        for i, it in enumerate(items)
        if not any(dominates(vals[j], vals[i]) for j in range(len(items)) if j != i)
    ]
    ### END SOLUTION


# %% nbgrader={"grade": true, "grade_id": "pareto_front_filters", "locked": true, "points": 3, "schema_version": 3, "solution": false, "task": false}
"""pareto_front keeps exactly the non-dominated items, in input order."""
_pts = [(0.98, 70), (0.97, 20), (0.96, 25), (0.90, 5), (0.97, 20)]  # (accuracy, KiB)
_front = pareto_front(_pts, lambda p: (-p[0], p[1]))
assert isinstance(_front, list), f"pareto_front returns a list, got {type(_front).__name__}"
assert (0.96, 25) not in _front, (
    f"(0.96, 25) is dominated by (0.97, 20) (less accurate AND bigger): drop it; got {_front}"
)
assert _front == [(0.98, 70), (0.97, 20), (0.90, 5), (0.97, 20)], (
    f"expected [(0.98, 70), (0.97, 20), (0.90, 5), (0.97, 20)]: identical points both stay, "
    f"in input order; got {_front}"
)
assert pareto_front([], lambda p: p) == [], "the front of nothing is empty"
assert pareto_front([(3, 1), (1, 3), (2, 2)], lambda p: p) == [(3, 1), (1, 3), (2, 2)], (
    "none of (3, 1), (1, 3), (2, 2) dominates another (each is better somewhere): all stay"
)
assert pareto_front([(1, 2), (1, 3), (0, 5)], lambda p: p) == [(1, 2), (0, 5)], (
    "(1, 3) is dominated by (1, 2): equal in one value and worse in the other"
)
_objs = ["a", "b", "c"]
_vals = {"a": (2, 2, 2), "b": (1, 2, 3), "c": (2, 2, 3)}
assert pareto_front(_objs, _vals.get) == ["a", "b"], (
    "with three values per item, c = (2, 2, 3) is dominated by a = (2, 2, 2); "
    f"key(item) gives the values, the items are returned: got {pareto_front(_objs, _vals.get)}"
)
print("pareto_front: exactly the non-dominated items, in input order")


### BEGIN HIDDEN TESTS
from tito.probe import probe as _probe

with _probe("19_autotuning", "pareto_front_filters") as _p:
    for _k, _pts in enumerate(_p.inputs["sets"]):
        _items = [tuple(_q) for _q in _pts]
        _p.record(f"front{_k}", lambda items=_items: [list(q) for q in
                                                      pareto_front(items, lambda q: q)])
        _p.record(f"neg{_k}", lambda pts=_pts: list(pareto_front(
            list(range(len(pts))), lambda i: tuple(-v for v in pts[i]))))
### END HIDDEN TESTS

# %% [markdown]
# ## Step 8: the AutoTuner — recipes, then a grid search that prunes itself
#
# Exhaustive search of the default grid means 78 fine-tunings and timings. The tuner gets the
# same answer with a fraction of them, using knowledge instead of brute force:
#
# 1. **Exact static checks.** Model bytes depend only on the structure (how many units are
#    left, how many bits per weight), not on training. The tuner builds each structure once
#    without training and drops every configuration over `max_bytes` before evaluating anything.
# 2. **Backend invariance.** Backends compute the same numbers (module 15 checked it), so
#    accuracy and size do not depend on the backend. The search measures each model on its
#    preferred backend; it tries another backend only for a model that fails on time or memory
#    alone, and for the best few when latency or memory matter.
# 3. **Recipes first.** The target's recipe is measured first: often it is already good, and it
#    gives the search an incumbent to beat.
# 4. **Monotonicity.** Pruning more or keeping fewer bits (with the same recovery) does not
#    *raise* accuracy beyond noise. So when a configuration fails the accuracy floor, every
#    configuration at least as aggressive fails too — without being measured. Likewise a model
#    pruned more is no slower and needs no more memory on the same runtime.
# 5. **Bounds.** Sizes are exact, and monotonicity bounds accuracy by that of a milder
#    relative: anything whose best possible objective cannot beat the best feasible candidate so
#    far is skipped. For the `bytes` objective the order is a **bisection** over size: each
#    answer (fits / fails) rules out about half of what is left.
#
# Each rule is a bet on how the techniques behave; the exhaustive search below checks the bets.
#
# Write rule 4, `monotone_infeasible(config, measured, floor, noise)`: `config` is hopeless when
# one of the already measured candidates is a *milder* relative of it (`Config` can tell you
# whether one configuration is at most as aggressive as another) and missed the accuracy floor
# by more than the measurement noise (`accuracy + noise < floor`): the more aggressive `config`
# will fail too. A configuration is its own mildest relative. Without a floor (`floor=None`)
# nothing is hopeless.
#
# Two pieces of engineering from the library make the search practical. **A results cache**
# (`tinytorch/tuning/cache.py`): a measurement depends on the model (its architecture and
# weights: its `fingerprint`), the data, the configuration, the hardware and the measurement
# settings, so the cache key hashes all of them, and re-running a session re-measures nothing.
# **An executor seam** (`tinytorch/tuning/executor.py`): every evaluation goes through
# `evaluate_many(evaluate, configs, executor)`, which only needs `executor.map(fn, items)` — this
# process by default, a `concurrent.futures` pool or a Dask cluster (`tinytorch.infra`) without
# touching the tuner. That is why the `Evaluator` below is a class with plain attributes (it
# pickles), not a closure.


# %%
#| export
class Evaluator:
    """Build a Config's model from the base model and measure it. Picklable (no closures)."""

    def __init__(self, model: Module, data, finetune_epochs: int = 3, seed: int = 0,
                 batch: int = 32, repeats: int = 5):
        self.model, self.data = model, data
        self.finetune_epochs, self.seed = finetune_epochs, seed
        self.batch, self.repeats = batch, repeats

    def settings(self) -> dict:
        return {"epochs": self.finetune_epochs, "seed": self.seed, "batch": self.batch}

    def build(self, config: Config) -> Module:
        ctx = StepContext(self.data, teacher=self.model, seed=self.seed)
        return config.pipeline(self.finetune_epochs).run(self.model, ctx)

    def __call__(self, config: Config) -> Metrics:
        """Metrics of `config`'s model, timed in the same interleaved rounds as the base model
        (the baseline too: its own `vs_baseline` says how repeatable one measurement is)."""
        return measure(self.build(config), self.data, batch=self.batch, repeats=self.repeats,
                       baseline=self.model)



# %% nbgrader={"grade": false, "grade_id": "monotone_infeasible", "locked": false, "schema_version": 3, "solution": true, "task": false}
#| export
OBJECTIVES = {  # sort key of Metrics per objective: the objective first, then tie-breaks
    "accuracy": lambda m: (-m.accuracy, m.model_bytes, m.latency_ms),
    "bytes": lambda m: (m.model_bytes, -m.accuracy, m.latency_ms),
    "latency": lambda m: (m.latency_ms, -m.accuracy, m.model_bytes),
}


def objective_value(metrics: Metrics, objective: str) -> float:
    """The number an objective is about (accuracy is maximised, the others minimised)."""
    return {"accuracy": metrics.accuracy, "bytes": metrics.model_bytes,
            "latency": metrics.latency_ms}[objective]


@dataclass
class Candidate:
    """A measured configuration."""

    config: Config
    metrics: Metrics
    violations: list  # Violations (empty: feasible)
    phase: str  # "baseline", "recipe", "search", "refine", "closest" or "exhaustive"
    cached: bool = False

    @property
    def feasible(self) -> bool:
        return not self.violations


def monotone_infeasible(
    config: Config, measured: Sequence[Candidate], floor: float | None, noise: float
) -> bool:
    """True if a milder measured relative of `config` already fails the accuracy floor."""
    ### BEGIN SOLUTION
    if floor is None:
        return False
    return any(
        d.config.at_most_as_aggressive_as(config) and d.metrics.accuracy + noise < floor
        for d in measured
    )
    ### END SOLUTION


# %% nbgrader={"grade": true, "grade_id": "monotone_rule", "locked": true, "points": 4, "schema_version": 3, "solution": false, "task": false}
"""monotone_infeasible rules out configs at least as aggressive as a measured failure."""


def _cand(config, accuracy):
    return Candidate(config, Metrics(accuracy, 0.1, 1000, 1000), [], "search")


_fail = _cand(Config(0.5, "finetune", 8), 0.90)
assert monotone_infeasible(Config(0.75, "finetune", 4), [_fail], floor=0.95, noise=0.01), (
    "prune 0.75 + int4 is more aggressive than a failing prune 0.5 + int8 (0.90 + 0.01 < 0.95): "
    "it will fail too"
)
assert not monotone_infeasible(Config(0.25, "finetune", 8), [_fail], floor=0.95, noise=0.01), (
    "a MILDER config (prune 0.25) is not ruled out by a failure of prune 0.5"
)
assert not monotone_infeasible(Config(0.5, "finetune", None), [_fail], floor=0.95, noise=0.01), (
    "float32 keeps MORE bits than the failing int8: it is milder, not ruled out"
)
assert not monotone_infeasible(Config(0.75, "distill", 4), [_fail], floor=0.95, noise=0.01), (
    "a different recovery is not comparable: no conclusion"
)
assert not monotone_infeasible(Config(0.75, "finetune", 4), [_fail], floor=None, noise=0.01), (
    "no accuracy floor: nothing is infeasible by accuracy"
)
assert not monotone_infeasible(Config(0.75, "finetune", 4), [], floor=0.95, noise=0.0), (
    "nothing measured yet: no conclusion"
)
_near = _cand(Config(0.5, "none", None), 0.945)
assert not monotone_infeasible(Config(0.75, "none", None), [_near], floor=0.95, noise=0.01), (
    "0.945 + noise 0.01 is not below the floor 0.95: within noise, do not rule out"
)
assert monotone_infeasible(Config(0.5, "none", None), [_near], floor=0.95, noise=0.0), (
    "the same config, measured below the floor with zero noise, is infeasible (a configuration "
    "is its own mildest relative)"
)
_edge = _cand(Config(0.5, "none", 8), 0.875)  # 0.875 + 0.0625 == 0.9375 exactly (binary fractions)
assert not monotone_infeasible(Config(0.75, "none", 8), [_edge], floor=0.9375, noise=0.0625), (
    "0.875 + noise 0.0625 equals the floor 0.9375: not BELOW it, so do not rule out"
)
_pass = _cand(Config(0.25, "finetune", 8), 0.99)
assert monotone_infeasible(Config(0.75, "finetune", 4), [_pass, _fail], floor=0.95, noise=0.01), (
    "ANY failing milder relative is enough, even if another measured candidate passes"
)
assert not monotone_infeasible(Config(0.75, "finetune", 4), [_pass], floor=0.95, noise=0.01), (
    "a milder relative that PASSES the floor says nothing about a more aggressive config"
)
print("monotone_infeasible: failures of milder relatives rule out the aggressive configs")


### BEGIN HIDDEN TESTS
from tito.probe import probe as _probe

with _probe("19_autotuning", "monotone_rule") as _p:
    for _k, _case in enumerate(_p.inputs["cases"]):
        _measured = [_cand(Config(_pr, _re, _qu), _acc)
                     for _pr, _re, _qu, _acc in _case["measured"]]
        for _j, (_pr, _re, _qu) in enumerate(_case["queries"]):
            _p.record(f"c{_k}_{_j}", monotone_infeasible, Config(_pr, _re, _qu), _measured,
                      _case["floor"], _case["noise"])
### END HIDDEN TESTS


# %%
#| export
class TuningResult(TuningRecord):
    """What auto_optimize found, how, and everything it measured on the way (the fields, the
    report, the table and the plot: `tinytorch.tuning.report.TuningRecord`)."""

    def pareto(self, latency: bool = True) -> list[Candidate]:
        """Pareto front of accuracy (max) against model bytes and latency (min); without
        `latency`, of accuracy against model bytes only (what the plot draws)."""
        if latency:
            return pareto_front(
                self.candidates,
                lambda c: (-c.metrics.accuracy, c.metrics.model_bytes, c.metrics.latency_ms),
            )
        return pareto_front(self.candidates, lambda c: (-c.metrics.accuracy, c.metrics.model_bytes))


def _snap(config: Config, space: SearchSpace) -> Config:
    """The Config of `space` nearest to `config` (a recipe may name an off-grid point)."""
    return min(
        space.configs(),
        key=lambda c: (
            abs(c.prune - config.prune),
            c.recover != config.recover,
            abs(_bits(c.quantize) - _bits(config.quantize)),
            c.backend != config.backend,
        ),
    )


RESOURCE_CONSTRAINTS = ("max_latency_ms", "max_peak_memory")  # depend on the backend


class AutoTuner:
    """Chooses, orders and parameterizes optimizations under constraints."""

    def __init__(
        self,
        data,
        space: SearchSpace | None = None,
        cache: ResultCache | None = None,
        executor=None,
        hardware: HardwareProfile | None = None,
        seed: int = 0,
        batch: int = 32,
        repeats: int = 5,
        max_fraction: float = 0.4,
        noise: float | None = None,
        progress: bool = True,
    ):
        self.data = data
        self.space = space or SearchSpace()
        self.cache = cache  # a ResultCache, or None: measure everything
        self.executor = executor  # anything with .map(fn, items); None: in this process
        self.hardware = hardware or HardwareProfile.detect()
        self.seed, self.batch, self.repeats = seed, batch, repeats
        self.max_fraction = max_fraction  # evaluation cap, as a fraction of the space
        # accuracy differences below this are noise (default: one validation example)
        self.noise = noise if noise is not None else 1.0 / len(data.y_val)
        self.progress = progress

    def _session(self, model: Module, constraints: Constraints) -> "_Session":
        if not isinstance(model, Module):
            raise TypeError(
                f"the tuner expects a tinytorch Module (the model to optimize), got "
                f"{type(model).__name__} {model!r:.60}"
            )
        ev = Evaluator(model, self.data, self.space.finetune_epochs, self.seed, self.batch,
                       self.repeats)
        return _Session(self, ev, constraints)

    def exhaustive(self, model: Module, constraints: Constraints | None = None,
                   objective: str = "accuracy", target: str = "custom") -> TuningResult:
        """Evaluate every configuration of the space: the reference the tuner is judged by."""
        s = self._session(model, constraints or Constraints())
        s.measure([Config()], "baseline")
        s.measure([c for c in self.space.configs() if c != Config()], "exhaustive")
        return s.result(target, objective, {})

    def auto_optimize(self, model: Module, constraints: Constraints | None = None,
                      target: str = "laptop", objective: str | None = None) -> TuningResult:
        """Recipes first, then a self-pruning grid search; the model, its plan and a report."""
        if target not in TARGETS:
            raise ValueError(f"unknown target {target!r}; known targets: {sorted(TARGETS)}")
        profile = TARGETS[target]
        constraints = constraints if constraints is not None else profile.constraints
        objective = objective or profile.objective
        if objective not in OBJECTIVES:
            raise ValueError(f"unknown objective {objective!r}; choose from {sorted(OBJECTIVES)}")
        s = self._session(model, constraints)
        configs = self.space.configs()
        cap = max(2, int(self.max_fraction * len(configs)))
        resources = bool(constraints.max_latency_ms or constraints.max_peak_memory
                         or objective == "latency")
        skipped: dict[str, int] = {}
        s.measure([Config()], "baseline")
        # rule 1: sizes are exact before any training
        sbytes = {c: s.static_bytes(c) for c in configs}
        alive = [c for c in configs
                 if constraints.max_bytes is None or sbytes[c] <= constraints.max_bytes]
        if len(alive) < len(configs):
            skipped["size budget (exact, no training)"] = len(configs) - len(alive)
        # rule 2: one backend per model while searching
        main = [c for c in alive if c.backend == preferred_backend(c, self.space.backend)]
        others = [c for c in alive if c not in main]
        # rule 3: the target's recipe first
        recipes = [_snap(r, self.space) for r in profile.recipe]
        s.measure([r for r in dict.fromkeys(recipes) if r in alive], "recipe")
        # rules 4 and 5: search in objective order, skipping what they rule out
        pending = [c for c in main if not s.seen(c)]
        reserve = 3 if resources else 0  # evaluations kept for the backend refinement
        while pending and len(s.cands) < cap - reserve:
            keep, promote = [], []
            for c in pending:
                why = s.skip_reason(c, objective, sbytes)
                if not why:
                    keep.append(c)
                    continue
                skipped[why] = skipped.get(why, 0) + 1
                if why.startswith(RESOURCE_CONSTRAINTS):  # time/memory: try other backends
                    promote += [o for o in others if o.variant == c.variant]
            pending = keep + [o for o in dict.fromkeys(promote)
                              if not s.seen(o) and o not in keep]
            if pending:
                nxt = s.next_candidate(pending, objective, sbytes)
                pending.remove(nxt)
                s.measure([nxt], "search")
                # a model that fails only on time or memory may pass on another backend
                if s.by_config[nxt].violations and all(
                    v.constraint in RESOURCE_CONSTRAINTS for v in s.by_config[nxt].violations
                ):
                    pending += [c for c in others
                                if c.variant == nxt.variant and not s.seen(c) and c not in pending]
        if pending:
            s.notes.append(f"stopped at the evaluation cap ({cap}); {len(pending)} unexplored")
        # refine: the other backends of the best models, when latency or memory matter
        if resources:
            tops = {c.config.variant for c in s.ranked(objective, feasible_only=True)[:3]}
            extra = [c for c in others if c.variant in tops and not s.seen(c)]
            s.measure(extra[: max(0, cap - len(s.cands))], "refine")
        left = len([c for c in others if not s.seen(c)])
        if left:
            skipped["backend rule (same accuracy and size)"] = left
        # nothing feasible: also measure the smallest models, so the report has real numbers
        if not s.ranked(objective, feasible_only=True):
            prefer = [c for c in configs if c.backend == preferred_backend(c, self.space.backend)]
            smallest = sorted((c for c in prefer if not s.seen(c)), key=lambda c: (sbytes[c], c))
            s.measure(smallest[: max(0, min(2, cap - len(s.cands)))], "closest")
        return s.result(target, objective, skipped)


class _Session:
    """One tuning run: the measurements so far and the rules that use them."""

    def __init__(self, tuner: AutoTuner, ev: Evaluator, constraints: Constraints):
        self.tuner, self.ev, self.constraints = tuner, ev, constraints
        self.cands: list[Candidate] = []
        self.by_config: dict[Config, Candidate] = {}
        self.notes: list[str] = []
        self.hits = 0
        self.start = time.perf_counter()
        self._static: dict[tuple, int] = {}
        self._keys = (fingerprint(ev.model), data_fingerprint(ev.data),
                      tuner.hardware.fingerprint(), ev.settings())
        self.baseline_accuracy: float | None = None
        self.bar = tqdm(desc="evaluations", disable=not tuner.progress, leave=False)

    def seen(self, c: Config) -> bool:
        return c in self.by_config

    def static_bytes(self, c: Config) -> int:
        """Exact model bytes of `c` from its structure alone (prune + quantize, no training)."""
        key = (c.prune, c.quantize)
        if key not in self._static:
            ctx = StepContext(self.ev.data, seed=self.ev.seed)
            m = prune_step(self.ev.model, ctx, amount=c.prune) if c.prune else self.ev.model
            if c.quantize is not None:
                m = quantize_step(m, ctx, bits=c.quantize, calibration_batches=1)
            self._static[key] = model_bytes(m)
        return self._static[key]

    def measure(self, configs: Sequence[Config], phase: str) -> None:
        configs = [c for c in dict.fromkeys(configs) if not self.seen(c)]
        if not configs:
            return
        cache = self.tuner.cache
        keys = {c: ResultCache.key(*self._keys, c.to_dict()) for c in configs}
        found = {c: cache.get(keys[c]) for c in configs} if cache is not None else {}
        todo = [c for c in configs if found.get(c) is None]
        fresh = dict(zip(todo, evaluate_many(self.ev, todo, self.tuner.executor)))
        for c in configs:
            cached = found.get(c) is not None
            m = found[c] if cached else fresh[c]
            if cache is not None and not cached:
                cache.put(keys[c], m)
            self.hits += cached
            if phase == "baseline":
                self.baseline_accuracy = m.accuracy
            v = self.constraints.violations(m, self.baseline_accuracy)
            self.by_config[c] = Candidate(c, m, v, phase, cached)
            self.cands.append(self.by_config[c])
            self.bar.update(1)

    def ranked(self, objective: str, feasible_only: bool = False) -> list[Candidate]:
        pool = [c for c in self.cands if c.feasible or not feasible_only]
        return sorted(pool, key=lambda c: (not c.feasible, OBJECTIVES[objective](c.metrics)))

    def bound(self, c: Config, objective: str, sbytes: dict) -> float:
        """Optimistic objective value of an unmeasured config (lower is better)."""
        if objective == "bytes":
            return sbytes[c]
        if objective == "accuracy":  # no better than a milder relative (+ noise)
            accs = [d.metrics.accuracy for d in self.cands
                    if d.config.at_most_as_aggressive_as(c)]
            return -(min(accs) + self.tuner.noise) if accs else -1.0
        lats = [d.metrics.latency_ms for d in self.cands  # latency: more pruning only helps
                if (d.config.quantize, d.config.backend) == (c.quantize, c.backend)
                and d.config.prune >= c.prune]
        return max(lats) * 0.9 if lats else 0.0

    def skip_reason(self, c: Config, objective: str, sbytes: dict) -> str | None:
        floor = self.constraints.accuracy_floor(self.baseline_accuracy)
        if monotone_infeasible(c, self.cands, floor, self.tuner.noise):
            return "accuracy monotonicity (a milder config fails)"
        for d in self.cands:  # more pruning never costs time or memory on the same runtime
            if ((d.config.quantize, d.config.backend) == (c.quantize, c.backend)
                    and d.config.prune >= c.prune):
                for v in d.violations:
                    if v.constraint == "max_peak_memory" or (
                        v.constraint == "max_latency_ms" and v.excess > 0.5  # clearly, not noise
                    ):
                        return f"{v.constraint} monotonicity (a smaller model fails)"
        best = self.ranked(objective, feasible_only=True)
        if best:
            value = objective_value(best[0].metrics, objective)
            if self.bound(c, objective, sbytes) >= (-value if objective == "accuracy" else value):
                return "bound (cannot beat the best so far)"
        return None

    def next_candidate(self, pending: list[Config], objective: str, sbytes: dict) -> Config:
        if objective == "bytes":  # bisection over size: each answer rules out half of the rest
            order = sorted(pending, key=lambda c: (sbytes[c], c))
            return order[len(order) // 2]
        if objective == "accuracy":  # the most promising bound first, then the biggest model
            return min(pending, key=lambda c: (self.bound(c, objective, sbytes), -sbytes[c], c))
        return min(pending, key=lambda c: (self.bound(c, objective, sbytes), sbytes[c], c))

    def result(self, target: str, objective: str, skipped: dict) -> TuningResult:
        self.bar.close()
        feasible = self.ranked(objective, feasible_only=True)
        best = feasible[0] if feasible else None
        closest = [] if best else sorted(
            self.cands, key=lambda c: sum(min(v.excess, 1e6) for v in c.violations)
        )[:3]
        return TuningResult(
            target, objective, self.constraints, self.tuner.hardware,
            next(c.metrics for c in self.cands if c.phase == "baseline"), self.cands,
            len(self.tuner.space.configs()), skipped, best,
            self.ev.build(best.config) if best else None,
            best.config.pipeline(self.ev.finetune_epochs, target) if best else None,
            closest, self.hits, time.perf_counter() - self.start, self.notes,
        )

# %% [markdown]
# ### The tuner at work, one target at a time
#
# We give the tuner a cache file in a temporary directory (so this notebook always measures
# afresh) and run it for each target. Read the report of one: each candidate, the phase that
# chose it (recipe, search, refine), its four metrics and its verdict; the plan; and the counts
# of configurations each rule skipped.

# %% tags=["demo"]
import tempfile
from pathlib import Path

with needs():
    _cache_dir = tempfile.mkdtemp(prefix="tinytorch-autotuning-")
    cache = ResultCache(Path(_cache_dir) / "autotuning.json")
    tuner = AutoTuner(digits, cache=cache, progress=False)
    results = {}
    for _target in TARGETS:
        _t = time.perf_counter()
        results[_target] = tuner.auto_optimize(mlp, target=_target)
        _r = results[_target]
        _pick = _r.best.config.label() if _r.feasible else "INFEASIBLE"
        print(f"{_target:>15}: {_r.evaluations:>2} of {_r.space_size} evaluated in "
              f"{time.perf_counter() - _t:4.1f}s -> {_pick}")
    print()
    print(results["mobile"].report())

# %% [markdown]
# Now the check: **exhaustive search** of the same 78 configurations (reusing what the tuner
# already measured, so both see the same numbers), then, per target, the best feasible objective
# it finds against the tuner's. Finally every chosen model is **measured again** from scratch
# and checked against the budgets *without* the latency margin.

# %% tags=["demo"]
if "results" not in globals() or len(results) < len(TARGETS):
    raise RuntimeError("complete exercises 1-6 (`model_bytes` to `monotone_infeasible`) and run "
                       "the tuner cell above first")
_t = time.perf_counter()
exhaustive = tuner.exhaustive(mlp)
print(f"exhaustive search: {exhaustive.evaluations} evaluations "
      f"({exhaustive.cache_hits} cached) in {time.perf_counter() - _t:.1f}s")


def best_under(result: TuningResult, constraints: Constraints, objective: str):
    """The best candidate of `result` under other constraints (the same measurements)."""
    ok = [c for c in result.candidates
          if not constraints.violations(c.metrics, result.baseline.accuracy)]
    return min(ok, key=lambda c: OBJECTIVES[objective](c.metrics)) if ok else None


print(f"\n{'target':>15}{'objective':>10}{'tuner':>10}{'exhaustive':>12}{'evals':>8}"
      f"{'re-measured':>13}")
for _target, _r in results.items():
    _ex = best_under(exhaustive, _r.constraints, _r.objective)
    if _r.feasible:
        _again = measure(_r.model, digits)
        _ok = not _r.constraints.violations(_again, _r.baseline.accuracy, margin=False)
        _tv = objective_value(_r.best.metrics, _r.objective)
    else:
        _ok, _tv = "-", float("nan")
    _ev = objective_value(_ex.metrics, _r.objective) if _ex else float("nan")
    _verdict = "meets budgets" if _ok is True else "FAILS" if _ok is False else "-"
    print(f"{_target:>15}{_r.objective:>10}{_tv:>10.4g}{_ev:>12.4g}"
          f"{_r.evaluations:>5}/{_r.space_size}  {_verdict}")

# %% [markdown]
# Expect the tuner to match exhaustive search on the accuracy and bytes objectives with a
# fraction of its evaluations (`bench/autotuning.py` checks it on every run, and
# `tests/test_19_autotuning.py` on a smaller grid). The `server` target optimizes **latency**,
# and there the two may differ by a few per cent: timing noise decides between configurations
# that are equally fast, and the tuner only times the few models its rules leave. That is one
# reason the budgets use a latency margin. Here is the trade-off picture for the whole grid, with
# the mobile choice (`TuningResult.plot`, drawn by `tinytorch.tuning.report.plot_tuning`):

# %% tags=["demo"]
import matplotlib.pyplot as plt

if "exhaustive" not in globals() or len(results) < len(TARGETS):
    raise RuntimeError("complete exercises 1-6 (`model_bytes` to `monotone_infeasible`) and run "
                       "the two tuner cells above first")
_fig, _axes = plt.subplots(1, 2, figsize=(12, 4))
exhaustive.plot(_axes[0], title=f"exhaustive: all {exhaustive.evaluations} configurations")
results["mobile"].plot(_axes[1])
plt.tight_layout()
plt.show()

# %% [markdown]
# ### When nothing fits
#
# Ask for a model under 700 bytes that loses nothing. A tuner that returns "the best it could"
# would hand you a broken deployment. Ours returns no model and says which constraint fails,
# how often, the best value anyone reached, and the closest candidates.

# %% tags=["demo"]
if len(globals().get("results", {})) < len(TARGETS):
    raise RuntimeError("complete exercises 1-6 (`model_bytes` to `monotone_infeasible`) and run "
                       "the tuner cell above first")
impossible = tuner.auto_optimize(mlp, Constraints(max_bytes=700, max_accuracy_drop=0.0),
                                 target="microcontroller")
print(impossible.report())

# %% [markdown]
# ### Re-running a tuning session is instant
#
# The cache is keyed by (model fingerprint, data, configuration, hardware, settings). Run the
# mobile session again with a fresh tuner reading the same file: every measurement is a hit,
# and the only work left is rebuilding the chosen model once.

# %% tags=["demo"]
if len(globals().get("results", {})) < len(TARGETS):
    raise RuntimeError("complete exercises 1-6 (`model_bytes` to `monotone_infeasible`) and run "
                       "the tuner cell above first")
_t = time.perf_counter()
_again_r = AutoTuner(digits, cache=ResultCache(cache.path), progress=False).auto_optimize(
    mlp, target="mobile")
print(f"second run: {_again_r.evaluations} evaluations, {_again_r.cache_hits} from the cache, "
      f"{time.perf_counter() - _t:.2f}s (first run {results['mobile'].seconds:.2f}s); same plan: "
      f"{_again_r.pipeline == results['mobile'].pipeline}")

# %% [markdown]
# ## Step 9: accuracy-aware quantization (library)
#
# Quantizing every layer is the default, but layers are not equally sensitive.
# `tinytorch/tuning/mixed_precision.py` does what Intel Neural Compressor and OpenVINO's
# accuracy-aware quantization do:
#
# 1. `layer_sensitivity`: quantize *only one layer* and see how much accuracy (and, to break
#    ties on a small validation set, loss) it costs, for every layer;
# 2. quantize everything; while the accuracy drop exceeds the tolerance, return the **most
#    sensitive** layer still quantized to float32 and measure again.
#
# The loop stops at the first mix within tolerance — keeping as many layers in low precision as
# possible — or when every layer is back in float32. Each attempt is recorded in `steps` as
# `(fp32 layers, accuracy, bytes)`; module 19 passes your `model_bytes` as the size.


# %%
#| export
def accuracy_aware_quantize(
    model: Module, data, tolerance: float = 0.01, bits: int = 8, per_channel: bool = True,
    seed: int = 0,
) -> AccuracyAwareResult:
    """Quantize everything; while the drop exceeds `tolerance`, return the most sensitive
    remaining layer to float32 (tinytorch.tuning.mixed_precision, sized by `model_bytes`)."""
    return _mixed_precision.accuracy_aware_quantize(model, data, tolerance, bits, per_channel,
                                                    seed, size_fn=model_bytes)


# The digits MLP loses nothing to INT8 or INT4 on the validation set, so there is nothing to
# repair. The CNN is different: it has few filters, and INT4 weights cost it accuracy. Take the
# zoo's trained CNN (the weights `zoo.train_digits("cnn", seed=0)` produces, shipped with the
# package so no time goes to training: `load_pretrained("zoo_digits_cnn")`) and ask for at most
# half a point of loss with 4-bit weights:

# %% tags=["demo"]
from tinytorch.core.pretrained import load_pretrained
from tinytorch.tuning.steps import get_submodule

cnn, digits_img = load_pretrained("zoo_digits_cnn"), zoo.digits_data(images=True)
_val = accuracy_on(cnn, digits_img.x_val, digits_img.y_val)
with needs():
    print(f"digits CNN: val accuracy {_val:.4f} (measured now), {model_bytes(cnn):,} B")
    aaq = accuracy_aware_quantize(cnn, digits_img, tolerance=0.005, bits=4)
print("sensitivity (layer, accuracy drop, loss increase), most sensitive first:")
for _row in aaq.sensitivity:
    print(f"  {_row[0]:>3} {type(get_submodule(cnn, _row[0])).__name__:<7}"
          f" {_row[1]:+.4f} {_row[2]:+.4f}")
for _fp32, _acc, _bytes in aaq.steps:
    print(f"fp32 layers {_fp32!s:<16} accuracy {_acc:.4f} (float {aaq.float_accuracy:.4f}), "
          f"{_bytes:,} B")

# %% [markdown]
# The sensitivity ranking is what makes the loop short: falling back layers in a random order
# would often return big layers to float32 first and keep far more bytes for the same accuracy.
# A tuner can add "INT4, accuracy-aware" as one more quantization option of its grid.
# %% [markdown]
# ## Step 10: hyperparameter search — successive halving, the median rule, and TPE (library)
#
# The same question one level up: which *training* configuration (learning rate, width,
# weight decay) to use. Each trial costs epochs, so the budget is counted in **epochs**.
#
# - **Random search** trains a few random grid points to the end. Most of the budget goes to
#   trials that were bad after one epoch.
# - **Successive halving** (the inner loop of Hyperband) starts many trials cheaply and keeps
#   the best `1/eta` at each **rung**: with `min_epochs=1, max_epochs=9, eta=3`, `n0` trials get
#   1 epoch, the best `n0 // 3` continue to 3 epochs, the best `n0 // 9` to 9. Survivors keep
#   training (no restart), so rung `k` costs `n_k * (r_k - r_{k-1})` epochs, where
#   `n_k = max(1, n0 // eta**k)`.
# - The **median stopping rule** (Google Vizier) stops a running trial whose score at epoch `e`
#   is below the median of what earlier trials scored at epoch `e`.
# - **TPE** (the Tree-structured Parzen Estimator of Hyperopt/Optuna) is the "Bayesian
#   optimization basics": after a few random trials, split the results into good and bad, fit a
#   smoothed density to each, and try the grid point where `good / bad` is largest.
#
# All four live in `tinytorch/tuning/search.py` (`halving_plan` sizes the first rung to the
# budget, `MedianStoppingRule` keeps the history per epoch); `hyperparameter_search(build_fn,
# data, space, budget, method=...)` is the one entry point, seeded and reproducible, and
# `tinytorch.infra.parallel_search` runs successive halving with trials in parallel on an
# executor.

# %% [markdown]
# Compare the methods at an **equal budget** of 54 epochs (six full 9-epoch trainings) on a grid
# of 70 MLP training configurations, one search seed here (`bench/autotuning.py` repeats it
# over five). "How good is a choice" is measured independently of the search: the chosen
# configuration is retrained from two seeds and scored on the **test** split, which no search
# has seen.

# %% tags=["demo"]
from tinytorch.core.optim import AdamW

hp_space = {
    "lr": [1e-4, 3e-4, 1e-3, 3e-3, 1e-2, 3e-2, 1e-1],
    "hidden": [8, 16, 32, 64, 128],
    "weight_decay": [0.0, 0.01],
}


def build_mlp(config):
    model = zoo.digits_mlp(hidden=config["hidden"])
    return model, AdamW(model.parameters(), lr=config["lr"], weight_decay=config["weight_decay"])


_methods = {
    "halving": dict(method="halving"),
    "random": dict(method="random"),
    "tpe": dict(method="tpe"),
}
hp_quality, _t = {}, time.perf_counter()
for _k, _kw in _methods.items():  # 3 searches of 54 epochs + 2 retrainings of each choice
    _res = hyperparameter_search(build_mlp, digits, hp_space, budget=54, seed=0, progress=False,
                                 **_kw)
    hp_quality[_k] = config_quality(build_mlp, digits, _res.best_config)
    if _k == "halving":
        print(_res.table(), "\n")
print(f"test accuracy of each method's choice, retrained from 2 seeds "
      f"({time.perf_counter() - _t:.1f}s):")
for _k, _q in hp_quality.items():
    print(f"  {_k:>8}: {_q:.4f}")
print(f"successive halving {'>=' if hp_quality['halving'] >= hp_quality['random'] else '<'} "
      f"random search on this seed")

# %% [markdown]
# With six full trainings, random search usually draws a few bad learning rates; successive
# halving looks at 26 configurations for one epoch each and spends the rest on the promising
# ones (the table above shows how many the median rule stopped inside the rungs). Its savings
# are modest there because halving already drops bad trials after one epoch; it matters more for
# random search, where trials run to the end (`random_search(..., median_rule=True)`; the
# benchmark `bench/autotuning.py` compares it over five seeds). TPE needs more trials than six
# to learn much: three random starts and three guided picks are often no better than random —
# at this budget the cheap multi-fidelity trick tends to beat the model. The lines above say how
# it went on this run.

# %% [markdown]
# ## Step 11: training that adapts to progress (library)
#
# A fixed schedule trains for a fixed number of epochs at a fixed learning rate, whatever
# happens. Adaptive training watches a signal and reacts:
#
# - **reduce the learning rate on a plateau**: when the signal has not improved for `patience`
#   epochs, multiply the lr by `factor` (never below `min_lr`);
# - **early stopping**: when it has not improved for `patience` epochs, stop, and restore the
#   weights of the best epoch;
# - **a curriculum**: easy examples first (lowest loss under the current model), the harder ones
#   added as training goes on.
#
# `tinytorch/tuning/adaptive.py` has `EarlyStopping`, `ReduceLROnPlateau` and
# `curriculum_subset`, and the two training loops they are measured with: `fixed_training` (the
# baseline) and `adaptive_training`.

# %% [markdown]
# The experiment: the zoo's digits MLP (256 hidden units), Adam with weight decay at lr 0.01,
# batch 32. The fixed schedule trains 30 epochs at that lr. The adaptive one may train at most
# 30 epochs; it cuts the lr on plateaus and stops early. Both are scored on the test split,
# over two seeds. Then the curriculum, each against the same schedule without it.

# %% tags=["demo"]
_t = time.perf_counter()
adapt_rows = []
for _seed in range(2):
    manual_seed(_seed)
    _init = zoo.digits_mlp()
    _, _fixed = fixed_training(_init, digits, epochs=30, seed=_seed)
    _, _adaptive = adaptive_training(_init, digits, epochs=30, seed=_seed)
    _, _fixed_cur = fixed_training(_init, digits, epochs=30, seed=_seed, curriculum=True)
    adapt_rows.append((_fixed, _adaptive, _fixed_cur))
    print(f"seed {_seed}: fixed {_fixed.test_acc:.4f} in {_fixed.epochs} epochs | adaptive "
          f"{_adaptive.test_acc:.4f} in {_adaptive.epochs} epochs ({'; '.join(_adaptive.events)})")
_mean = lambda xs: float(np.mean(xs))  # noqa: E731
print(f"\nmean over 2 seeds ({time.perf_counter() - _t:.1f}s):")
for _i, _name in enumerate(["fixed", "adaptive", "fixed + curriculum"]):
    print(f"  {_name:>19}: test accuracy {_mean([r[_i].test_acc for r in adapt_rows]):.4f}, "
          f"epochs {_mean([r[_i].epochs for r in adapt_rows]):.1f}, examples seen "
          f"{_mean([sum(r[_i].examples) for r in adapt_rows]):,.0f}")
_acc = {n: _mean([r[i].test_acc for r in adapt_rows]) for i, n in enumerate(["f", "a", "c"])}
_ep = {n: _mean([r[i].epochs for r in adapt_rows]) for i, n in enumerate(["f", "a", "c"])}
if _acc["a"] >= _acc["f"] and _ep["a"] < _ep["f"]:
    print(f"adaptive reached the fixed schedule's accuracy with {_ep['f'] - _ep['a']:.1f} "
          f"fewer epochs ({_ep['a'] / _ep['f']:.0%} of them)")
else:
    print(f"adaptive did NOT reach the fixed schedule's accuracy ({_acc['a']:.4f} vs "
          f"{_acc['f']:.4f}) with fewer epochs on this run")
_diff = (_acc["c"] - _acc["f"]) * len(digits.y_test)
print(f"curriculum vs random order, same 30 epochs: {_acc['c'] - _acc['f']:+.4f} test accuracy "
      f"({_diff:+.1f} of {len(digits.y_test)} test images, mean of 2 seeds)")

# %% [markdown]
# Adaptive training typically reaches the fixed schedule's test accuracy in about a third of
# the epochs here: once the validation loss stops improving at lr 0.01, two lr cuts and an early
# stop follow, and the best weights are restored. The curriculum's effect is small on digits —
# a handful of test images either way, within seed-to-seed noise — because the digits are all
# about equally easy for an MLP; it does see fewer examples in its first epochs. (Curricula help
# most when data has a real difficulty range.) Measure before you adopt a technique — that
# includes the clever ones.
#
# ## Step 12: active learning — which labels to pay for (library)
#
# When labels are expensive, choose which examples to label. **Uncertainty sampling**: train on
# what is labelled, then label the pool examples the model is least sure about. The *margin*
# uncertainty of a prediction is `1 - (p_top1 - p_top2)`: near 1 when the two most likely
# classes are tied, near 0 when one class takes all the probability (`uncertainty` in
# `tinytorch/tuning/active.py`). `active_learning` starts from 20 random labels and buys 20 more
# per round, by uncertainty or at random.

# %% tags=["demo"]
import matplotlib.pyplot as plt

_t = time.perf_counter()
_curves = {s: [] for s in ("uncertainty", "random")}
for _seed in range(2):
    for _s in _curves:
        _r = active_learning(lambda: zoo.digits_mlp(hidden=64), digits, strategy=_s, seed=_seed)
        _curves[_s].append(_r.test_acc)
print(f"labels: {_r.labels} ({time.perf_counter() - _t:.1f}s)")
for _s, _accs in _curves.items():
    print(f"{_s:>12}: " + " ".join(f"{a:.3f}" for a in np.mean(_accs, axis=0)))
plt.figure(figsize=(6, 3.5))
for _s, _accs in _curves.items():
    plt.plot(_r.labels, np.mean(_accs, axis=0), marker="o", label=_s)
plt.xlabel("labelled training examples")
plt.ylabel("test accuracy (mean of 2 seeds)")
plt.title("Active learning on digits: which 20 labels to buy next")
plt.legend()
plt.grid(alpha=0.3)
plt.show()
_gap = np.mean(_curves["uncertainty"], axis=0)[-1] - np.mean(_curves["random"], axis=0)[-1]
print(f"at {_r.labels[-1]} labels uncertainty sampling is {_gap:+.4f} test accuracy vs random")

# %% [markdown]
# Uncertainty sampling buys the labels that change the decision boundary; at the same label
# budget expect it to pull ahead of random labelling after a few rounds (the line above says by
# how much on this run).
#
# ## Reflection questions
#
# 1. The tuner measured INT8 as *slower* than float32 on the numpy backend. Which rule of the
#    tuner turns that measurement into a decision, and what would change on a CPU with
#    `avx512_vnni` and an INT8 engine such as onnxruntime?
# 2. Monotonicity let the tuner skip configurations it never measured. Find a pair of
#    configurations in the exhaustive table where the rule's assumption is violated. Why did it
#    not change the tuner's answer? When could it?
# 3. For the `bytes` objective the tuner bisects over size. Why is that a good order for this
#    objective and a bad one for `accuracy`?
# 4. Compare successive halving and random search at 54 epochs above. Construct a search space in which it
#    would lose (hint: what if one epoch says little about the ninth?).
# 5. Adaptive training saved epochs against a *constant-lr* schedule above.
#    Would it against the zoo's cosine schedule? How would you measure it fairly?
