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
# # Module 20: Competition — the AutoML Olympics
#
# You've built acceleration, memory tricks, quantization, compression and auto-tuning. Time to
# compete! In this module you turn a model into a **submission** and build the parts of a
# benchmark that make a competition fair:
#
# | category | question | the score (written down in `FORMULAS`) |
# |---|---|---|
# | **Speed** | who reaches the target accuracy fastest? | seconds of `train()` from scratch (DAWNBench) |
# | **Size** | who is most accurate under a size limit? | accuracy, if the stored weights fit the limit |
# | **Efficiency** | who has the best accuracy/resource trade-off? | accuracy / sqrt(p50 latency ms x size KiB) |
# | **Innovation** | who had the most creative idea? | points an instructor awards |
#
# Speed, size and efficiency only count **at or above the target accuracy**: a model that is
# fast because it is wrong wins nothing.
#
# A benchmark is only as good as its measurements, so most of this module is about measuring
# honestly:
#
# 1. **Latency like MLPerf single-stream**: untimed warm-up, then one query at a time, p50 and
#    p90 latency, the median of several repeats.
# 2. **Size as actually stored**: the bytes of the serialized weights, so int8 or sparse weights
#    only win if their *format* is smaller.
# 3. **A hidden test set** with a public part (on the scoreboard) and a private part (for the
#    final ranking), so nobody can tune to the scoreboard.
# 4. **Time to accuracy** (DAWNBench): train within a budget, stop as soon as the target is hit.
# 5. **Rankings** by the formulas, a **Pareto front**, and a **report** against the baseline.
# 6. **Packages**: a folder with the code, the weights and `submission.yaml` (team, category,
#    technique tags, description), checked before anything runs.
# 7. **Your own entry**: the shipped pretrained baseline, optimised with what modules 15-19
#    built, packaged, and shown to beat the baseline in the category you choose.
#
# The last section hands packages to the **arena's evaluation** (`tinytorch.arena`, written by
# the course staff, not by you): it runs every submission in its own sandboxed subprocess with
# time, memory, file-size and output limits and gives it the test *inputs* only; the course's
# server (`tito competition`) keeps the leaderboard. You will see your own entry scored and
# ranked against the baseline, and a broken one given a result that says exactly what went wrong.
#
# ## Learning objectives
# - Measure latency like MLPerf single-stream and explain why each rule is there.
# - Count model size as stored bytes.
# - Train to a target accuracy within a time budget and stop at the target.
# - Score on a public/private split and explain why the final ranking uses the private part.
# - Write ranking formulas that only count resources above a target accuracy.
# - Find the Pareto front of accuracy against cost; report gains against a baseline.
# - Validate an untrusted submission before running it.
# - Optimise a model into an entry of your own, package it, and beat the baseline with it.

# %%
#| default_exp competition

# %%
#| export
"""The AutoML Olympics: submissions, honest measurements, scoring rules and rankings.

Generated from modules/20_competition/competition_dev.py (module 20 of the course). The
instructor-side arena that runs untrusted packages lives in `tito.arena`; a package is read,
checked and evaluated locally (sandboxed, nothing stored) with `tinytorch.arena`.
"""

import io
import math
import re
import shutil
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import yaml

from tinytorch.core.data import DataLoader, TensorDataset
from tinytorch.core.losses import cross_entropy
from tinytorch.core.nn import Linear, Module, ReLU, Sequential, manual_seed
from tinytorch.core.optim import Adam
from tinytorch.core.tensor import Tensor, no_grad

__all__ = [
    "CATEGORIES",
    "ERROR_KINDS",
    "FORMULAS",
    "INPUT_DIM",
    "NUM_CLASSES",
    "METADATA_FILE",
    "SOURCE_FILE",
    "WEIGHTS_DIR",
    "WEIGHTS_FILE",
    # measuring
    "percentile",
    "PredictionError",
    "check_scores",
    "LatencyResult",
    "single_stream",
    "stored_bytes",
    "public_private_split",
    "split_accuracies",
    # submitting
    "TrainReport",
    "CompetitionSubmission",
    "PretrainedBaseline",
    # scoring
    "CompetitionRules",
    "Entry",
    "Standing",
    "category_score",
    "rank_category",
    "leaderboard",
    "pareto_front",
    "compare_to_baseline",
    "plot_comparison",
    # packaging
    "check_metadata",
    "package_submission",
]

INPUT_DIM = 64  # one flattened 8x8 digit image, values in [0, 1]
NUM_CLASSES = 10  # predict returns one score per digit class

CATEGORIES = ("speed", "size", "efficiency", "innovation")

# Every way an evaluation can fail, as the leaderboard names it.
ERROR_KINDS = {
    "malformed": "the package is not a valid submission",
    "crash": "the submission raised an exception or died",
    "timeout": "no result within the wall-time limit (a hang)",
    "cpu_limit": "used more CPU time than allowed",
    "memory": "exceeded the memory limit",
    "file_size": "wrote a file larger than allowed",
    "output": "printed more output than allowed",
    "wrong_shape": "predict returned an array of the wrong shape",
    "wrong_dtype": "predict returned something other than floating-point scores",
    "nan": "predict returned NaN or infinite scores",
    "forbidden_read": "tried to read the hidden test data",
    "forbidden_write": "tried to write outside its folder",
    "forbidden_call": "tried to start a process, use the network, change limits or load C code",
}

# The four categories, written down. `category_score` implements exactly these.
FORMULAS = {
    "speed": (
        "score = train_seconds, the wall time of train() from scratch (lower is better); counts "
        "only if the model train() produced reaches the target accuracy and train_seconds <= "
        "the training budget"
    ),
    "size": (
        "score = accuracy (higher is better; ties go to fewer stored bytes); counts only if "
        "accuracy >= target and the stored weights are at most the size limit"
    ),
    "efficiency": (
        "score = accuracy / sqrt(latency_p50_ms * model_KiB) (higher is better); counts only if "
        "accuracy >= target"
    ),
    "innovation": (
        "score = innovation points awarded by an instructor (higher is better); counts only if "
        "accuracy >= target and points > 0"
    ),
}

METADATA_FILE = "submission.yaml"  # team, category, tags, description (and optionally entry)
SOURCE_FILE = "submission.py"  # defines one CompetitionSubmission subclass
WEIGHTS_DIR = "weights"  # everything in here counts as model size
WEIGHTS_FILE = "weights.npz"  # what CompetitionSubmission.save writes into WEIGHTS_DIR

# %%
import os
import tempfile

import matplotlib.pyplot as plt

from tinytorch.datasets import load_digits

print("numpy", np.__version__, "| OPENBLAS_NUM_THREADS =", os.environ.get("OPENBLAS_NUM_THREADS"))
from tinytorch.core.threads import pin_blas_threads

print(pin_blas_threads(1))  # one BLAS thread: timings compare kernels, not scheduling
X_TRAIN, Y_TRAIN = load_digits("train")
X_TEST, Y_TEST = load_digits("test")
print(f"digits: train {X_TRAIN.shape}, test {X_TEST.shape} (the arena keeps the test labels)")

import contextlib
import traceback

# the function an exercise writes -> (exercise number, the exercise's cell)
EXERCISES = {"percentile": (1, "percentile"), "check_scores": (2, "check_scores"),
             "single_stream": (3, "single_stream"), "stored_bytes": (4, "stored_bytes"),
             "public_private_split": (5, "public_private"),
             "split_accuracies": (5, "public_private"), "train": (6, "submission_train"),
             "category_score": (7, "category_score"), "rank_category": (8, "rank_category"),
             "pareto_front": (9, "pareto_front"), "compare_to_baseline": (10, "compare_to_baseline"),
             "check_metadata": (11, "check_metadata")}


@contextlib.contextmanager
def needs_exercises():
    """An unfinished exercise used by a later cell names itself instead of a bare error."""
    try:
        yield
    except NotImplementedError as exc:
        used = [f.name for f in traceback.extract_tb(exc.__traceback__) if f.name in EXERCISES]
        if not used:
            raise
        number, cell = EXERCISES[used[-1]]
        raise RuntimeError(
            f"complete exercise {number}, `{cell}` ({used[-1]}), first: this cell uses it"
        ) from None


def require(*names: str, step: str) -> None:
    """Stop with what to run first when a cell needs names an earlier cell defines."""
    missing = [n for n in names if n not in globals()]
    if missing:
        raise RuntimeError(f"{step} first ({', '.join(missing)} is not defined yet)")

# %% [markdown]
# ## Step 1: latency like MLPerf single-stream
#
# MLPerf Inference's *single-stream* scenario models a phone answering one request at a time:
# the load generator sends one query, waits for the answer, sends the next. It reports the
# **90th-percentile latency**, because users notice the slow answers, not the average. We
# follow its rules:
#
# 1. an **untimed warm-up** (the first calls pay for allocation, imports and cold caches);
# 2. a fixed number of **one-at-a-time** queries, each timed on its own;
# 3. the **p50** (typical) and **p90** (tail) latency of each pass;
# 4. several passes, and the **median** across them (one unlucky pass cannot move it).
#
# Percentiles use the *nearest-rank* definition: the p-th percentile of n sorted values is the
# value at rank `ceil(p/100 * n)` (1-based), so it is always one of the measured latencies.
# The 0th percentile is the minimum.


# %% nbgrader={"grade": false, "grade_id": "percentile", "locked": false, "schema_version": 3, "solution": true, "task": false}
#| export
def percentile(values: Sequence[float], q: float) -> float:
    """Nearest-rank q-th percentile (0 <= q <= 100) of `values`: always one of the values."""
    values = [float(v) for v in values]
    if not values:
        raise ValueError("percentile of an empty list of values is undefined")
    if not 0 <= q <= 100:
        raise ValueError(f"q must be between 0 and 100, got {q}")
    if any(math.isnan(v) for v in values):
        raise ValueError("percentile got a NaN value")
    ### BEGIN SOLUTION
    ordered = sorted(values)
    if q == 0:
        return ordered[0]
    rank = math.ceil(q / 100 * len(ordered))  # 1-based
    return ordered[rank - 1]
    ### END SOLUTION


# %% nbgrader={"grade": true, "grade_id": "percentile_correct", "locked": true, "points": 2, "schema_version": 3, "solution": false, "task": false}
"""Nearest-rank percentiles: p50 and p90 of 1..10 are 5 and 9; always one of the values."""
assert percentile(range(1, 11), 50) == 5, f"p50 of 1..10 should be 5, got {percentile(range(1, 11), 50)}"
assert percentile(range(1, 11), 90) == 9, f"p90 of 1..10 should be 9, got {percentile(range(1, 11), 90)}"
assert percentile(range(1, 21), 90) == 18, "p90 of 1..20 is the 18th value (rank ceil(0.9 * 20))"
assert percentile([3.0, 1.0, 2.0], 100) == 3.0, "p100 is the maximum (sort the values first)"
assert percentile([5, 1, 4], 0) == 1, "p0 is the minimum"
assert percentile([0.2], 90) == 0.2, "the percentile of one value is that value"
assert percentile([4, 1, 3, 2], 30) == 2, "p30 of 4 values is rank ceil(1.2) = 2: the 2nd smallest"

### BEGIN HIDDEN TESTS
from tito.probe import probe as _probe

with _probe("20_competition", "percentile_correct") as _p:
    for _i, _case in enumerate(_p.inputs["cases"]):
        for _j, _q in enumerate(_case["qs"]):
            _p.record(f"p{_i}_{_j}", percentile, _case["values"], _q)
    for _k, (_values, _q) in enumerate(_p.inputs["bad"]):
        _p.record(f"bad{_k}", percentile, _values, _q)
### END HIDDEN TESTS


# %% [markdown]
# ### What a prediction must look like
#
# `predict(x)` receives a float32 array of shape `(n, 64)` and must return **class scores**: a
# floating-point array of shape `(n, 10)` (logits or probabilities; the arena takes the argmax).
# A benchmark that trusts its inputs can be crashed or fooled by them, so every answer is
# checked, and a bad one gets an error that names the problem and the values involved.
# `PredictionError.kind` is one of the keys of `ERROR_KINDS`, so the leaderboard can say
# exactly why a submission failed.


# %% nbgrader={"grade": false, "grade_id": "check_scores", "locked": false, "schema_version": 3, "solution": true, "task": false}
#| export
class PredictionError(ValueError):
    """A bad answer from `predict`; `kind` names the problem (an ERROR_KINDS key)."""

    def __init__(self, kind: str, message: str):
        if kind not in ERROR_KINDS:
            raise ValueError(f"unknown error kind {kind!r}")
        super().__init__(message)
        self.kind = kind


def check_scores(
    out, rows: int, num_classes: int = NUM_CLASSES, query: int | None = None
) -> np.ndarray:
    """Return `out` if it is a finite float array of shape (rows, num_classes), else raise.

    Checks, in order: a numpy array (else "wrong_dtype"), the shape ("wrong_shape"), a
    floating-point dtype ("wrong_dtype"), every value finite ("nan").
    """
    where = "" if query is None else f" for query {query}"
    ### BEGIN SOLUTION
    if not isinstance(out, np.ndarray):
        raise PredictionError(
            "wrong_dtype",
            f"predict returned a {type(out).__name__}{where}; expected a numpy array of "
            f"float class scores of shape ({rows}, {num_classes})",
        )
    if out.shape != (rows, num_classes):
        raise PredictionError(
            "wrong_shape",
            f"predict returned shape {out.shape}{where}; expected ({rows}, {num_classes}) "
            f"(one row of {num_classes} class scores per input row)",
        )
    if out.dtype.kind != "f":
        raise PredictionError(
            "wrong_dtype",
            f"predict returned dtype {out.dtype}{where}; expected floating-point class scores "
            "(float16, float32 or float64)",
        )
    bad = int(np.size(out) - np.count_nonzero(np.isfinite(out)))
    if bad:
        raise PredictionError(
            "nan", f"predict returned {bad} non-finite score(s) (NaN or inf){where}"
        )
    return out
    ### END SOLUTION


# %% nbgrader={"grade": true, "grade_id": "check_scores_correct", "locked": true, "points": 2, "schema_version": 3, "solution": false, "task": false}
"""check_scores accepts finite float (rows, 10) arrays and names every other problem."""
_ok = np.zeros((2, 10), np.float32)
assert check_scores(_ok, 2) is _ok, "a valid answer is returned unchanged"
assert check_scores(np.zeros((2, 10), np.float64), 2).dtype == np.float64, "float64 scores are fine"
assert check_scores(np.zeros((1, 10), np.float16), 1).dtype == np.float16, "float16 scores are fine"
_inf = np.zeros((1, 10), np.float32)
_inf[0, 3] = np.inf
for _bad, _rows, _kind in [
    (np.zeros((2, 9), np.float32), 2, "wrong_shape"),
    (np.zeros((3, 10), np.int64), 2, "wrong_shape"),  # the shape is checked before the dtype
    (np.zeros((2, 10), np.int64), 2, "wrong_dtype"),
    ([[0.0] * 10], 1, "wrong_dtype"),  # a list is not a numpy array
    (np.full((2, 10), np.nan, np.float32), 2, "nan"),
    (_inf, 1, "nan"),  # inf is not a score either
]:
    try:
        check_scores(_bad, _rows, query=7)
    except PredictionError as exc:
        assert exc.kind == _kind, f"expected kind {_kind!r}, got {exc.kind!r} ({exc})"
        if _kind != "wrong_dtype" or isinstance(_bad, np.ndarray):
            assert "7" in str(exc), f"the message should name query 7: {exc}"
    else:
        raise AssertionError(f"check_scores should reject {_bad!r:.60} for {_rows} rows")

### BEGIN HIDDEN TESTS
from tito.probe import probe as _probe


def _scores_answer(case):
    if case["kind"] == "list":
        return np.zeros(case["shape"]).tolist()
    answer = np.zeros(case["shape"], dtype=case["dtype"])
    if case["dtype"] != "object" and case["fill"] != 0.0:
        fill = float(case["fill"]) if isinstance(case["fill"], str) else case["fill"]
        answer.flat[np.prod(case["shape"]) // 2] = fill
    return answer


def _scores_kind(case):
    answer = _scores_answer(case)
    try:
        back = check_scores(answer, case["rows"], num_classes=case["num_classes"],
                            query=case["query"])
    except PredictionError as exc:
        return [str(exc.kind), str(exc)]
    return ["ok", back is answer]


with _probe("20_competition", "check_scores_correct") as _p:
    for _i, _case in enumerate(_p.inputs["cases"]):
        _p.record(f"case{_i}", _scores_kind, _case)
### END HIDDEN TESTS


# %% [markdown]
# ### The single-stream loop
#
# Implement `single_stream(predict, inputs, warmup, repeats)`:
#
# - `warmup` untimed calls, each with one input `inputs[i % n : i % n + 1]` (shape `(1, 64)`),
# - then `repeats` passes; each pass sends every input once, **alone** (shape `(1, 64)`), in
#   order, timing each call with `clock()` (`time.perf_counter` by default), and checks each
#   answer with `check_scores(out, 1, num_classes, query=i)` *outside* the timed region,
# - per pass: the p50 and p90 latency in **milliseconds** (`percentile`),
# - overall: the median of the passes' p50s and of their p90s, and the outputs of the first
#   pass stacked into an `(n, num_classes)` array (the arena scores accuracy from these).


# %% nbgrader={"grade": false, "grade_id": "single_stream", "locked": false, "schema_version": 3, "solution": true, "task": false}
#| export
@dataclass
class LatencyResult:
    """What `single_stream` measured. Latencies in milliseconds."""

    p50_ms: float  # median over the passes of each pass's p50
    p90_ms: float  # median over the passes of each pass's p90
    repeats_p50_ms: list[float]  # one p50 per timed pass
    repeats_p90_ms: list[float]  # one p90 per timed pass
    queries: int  # queries per timed pass (one per input)
    warmup: int  # untimed queries before the first pass
    outputs: np.ndarray = field(repr=False)  # (queries, num_classes) scores of the first pass

    @property
    def spread(self) -> float:
        """max / min of the passes' p50s: 1.0 means perfectly repeatable."""
        return max(self.repeats_p50_ms) / min(self.repeats_p50_ms)


def single_stream(
    predict: Callable[[np.ndarray], np.ndarray],
    inputs: np.ndarray,
    *,
    warmup: int = 50,
    repeats: int = 5,
    num_classes: int = NUM_CLASSES,
    clock: Callable[[], float] = time.perf_counter,
) -> LatencyResult:
    """MLPerf single-stream: untimed warm-up, one query at a time, p50/p90, median of passes."""
    inputs = np.asarray(inputs)
    if inputs.ndim != 2 or len(inputs) == 0:
        raise ValueError(f"inputs must be a non-empty (n, features) array, got {inputs.shape}")
    if repeats < 1:
        raise ValueError(f"repeats must be >= 1, got {repeats}")
    if warmup < 0:
        raise ValueError(f"warmup must be >= 0, got {warmup}")
    n = len(inputs)
    ### BEGIN SOLUTION
    for i in range(warmup):
        j = i % n
        check_scores(predict(inputs[j : j + 1]), 1, num_classes, query=j)
    p50s, p90s = [], []
    first = None
    for r in range(repeats):
        times_ms = []
        outs = []
        for i in range(n):
            x = inputs[i : i + 1]  # (1, features): one query, alone
            start = clock()
            out = predict(x)
            times_ms.append((clock() - start) * 1e3)
            outs.append(check_scores(out, 1, num_classes, query=i))
        if r == 0:
            first = np.concatenate(outs, axis=0)  # (n, num_classes)
        p50s.append(percentile(times_ms, 50))
        p90s.append(percentile(times_ms, 90))
    return LatencyResult(
        p50_ms=statistics.median(p50s),
        p90_ms=statistics.median(p90s),
        repeats_p50_ms=p50s,
        repeats_p90_ms=p90s,
        queries=n,
        warmup=warmup,
        outputs=first,
    )
    ### END SOLUTION


# %% nbgrader={"grade": true, "grade_id": "single_stream_correct", "locked": true, "points": 3, "schema_version": 3, "solution": false, "task": false}
"""single_stream warms up untimed, sends one query at a time and takes the median of passes."""
_seen = []


def _fake_predict(x):
    _seen.append(x.shape)
    return np.tile(x[:, :1], (1, 10)).astype(np.float32)  # (1, 10)


_inputs = np.arange(12, dtype=np.float32).reshape(4, 3)  # 4 queries of 3 features
_res = single_stream(_fake_predict, _inputs, warmup=3, repeats=2)
assert len(_seen) == 3 + 2 * 4, f"3 warm-up + 2 passes x 4 queries = 11 calls, got {len(_seen)}"
assert set(_seen) == {(1, 3)}, f"every query must be one input of shape (1, 3), got {set(_seen)}"
assert _res.outputs.shape == (4, 10), f"outputs should be (4, 10), got {_res.outputs.shape}"
assert np.array_equal(_res.outputs[:, 0], _inputs[:, 0]), "outputs must be in query order"

# a fake clock: call k (1-based) of predict takes k ms, so every number is predictable
_clock = {"t": 0.0, "calls": 0}


def _slow_predict(x):
    _clock["calls"] += 1
    _clock["t"] += _clock["calls"] / 1000.0  # this call "takes" `calls` ms
    return np.zeros((1, 10), np.float64)


_res = single_stream(_slow_predict, np.zeros((5, 2), np.float32), warmup=2, repeats=3,
                     clock=lambda: _clock["t"])
# warm-up calls 1-2 are untimed; pass r times calls 3+5r .. 7+5r (ms)
assert np.allclose(_res.repeats_p50_ms, [5, 10, 15]), (
    f"per-pass p50 should be [5, 10, 15] ms (untimed warm-up, times in ms), got {_res.repeats_p50_ms}"
)
assert np.allclose(_res.repeats_p90_ms, [7, 12, 17]), f"per-pass p90: got {_res.repeats_p90_ms}"
assert np.isclose(_res.p50_ms, 10) and np.isclose(_res.p90_ms, 12), (
    f"p50/p90 are the medians of the passes' values, got {_res.p50_ms}, {_res.p90_ms}"
)
_calls = []


def _nan_later(x):
    _calls.append(1)
    return np.full((1, 10), np.nan if len(_calls) == 4 else 0.0, dtype=np.float32)


try:
    single_stream(_nan_later, np.zeros((3, 2)), warmup=0, repeats=2)
except PredictionError as exc:
    assert exc.kind == "nan" and "query 0" in str(exc), f"the 4th call is query 0: {exc}"
else:
    raise AssertionError("single_stream must check every answer, also in later passes")

### BEGIN HIDDEN TESTS
from tito.probe import probe as _probe


def _stream_probe(p):
    d = p.inputs["durations_ms"]
    state = {"t": 0.0, "calls": 0, "shapes": [], "firsts": []}
    bad = p.inputs["bad_call"]

    def predict(x, nan_at=None):
        k = state["calls"]
        state["calls"] += 1
        state["t"] += float(d[k % len(d)]) / 1000.0
        state["shapes"].append(tuple(np.shape(x)))
        state["firsts"].append(float(np.asarray(x).ravel()[0]))
        which = (k - p.inputs["warmup"]) // len(p.inputs["inputs"])  # pass (-1: warm-up)
        scores = np.repeat(np.asarray(x, np.float64)[:, :1], 10, axis=1) + 1000.0 * which  # (1, 10)
        if nan_at is not None and k == nan_at:
            scores[0, 0] = np.nan
        return scores

    inputs, warmup, repeats = p.inputs["inputs"], p.inputs["warmup"], p.inputs["repeats"]
    res = single_stream(predict, inputs, warmup=warmup, repeats=repeats,
                        clock=lambda: state["t"])
    n = len(inputs)
    expected_firsts = [float(inputs[i % n, 0]) for i in range(warmup)]
    expected_firsts += [float(inputs[i, 0]) for _ in range(repeats) for i in range(n)]
    p.put("calls", {"count": state["calls"],
                    "all_single": all(s == (1, inputs.shape[1]) for s in state["shapes"]),
                    "order_ok": state["firsts"] == expected_firsts})
    p.put("result", {"p50_ms": float(res.p50_ms), "p90_ms": float(res.p90_ms),
                     "repeats_p50_ms": [float(v) for v in res.repeats_p50_ms],
                     "repeats_p90_ms": [float(v) for v in res.repeats_p90_ms],
                     "queries": int(res.queries), "warmup": int(res.warmup),
                     "outputs": np.asarray(res.outputs)})
    state.update(t=0.0, calls=0, shapes=[], firsts=[])
    p.record("nan_later", lambda: single_stream(lambda x: predict(x, nan_at=bad), inputs,
                                               warmup=warmup, repeats=repeats,
                                               clock=lambda: state["t"]).p50_ms)


with _probe("20_competition", "single_stream_correct") as _p:
    _p.record("_run", _stream_probe, _p)
### END HIDDEN TESTS


# %% [markdown]
# Let's measure a real model. The default `build_model` of the submission class (Step 4) is
# the baseline: `Linear(64, 64) -> ReLU -> Linear(64, 10)`. We train it for a few epochs here
# with the core library, then compare the first (cold) call with the warmed-up ones and the
# single-query latency with the per-image cost of one big batch.

# %% tags=["demo"]
with needs_exercises():
    manual_seed(0)
    _model = Sequential(Linear(INPUT_DIM, 64), ReLU(), Linear(64, NUM_CLASSES))
    _opt = Adam(_model.parameters(), lr=1e-2)
    for _epoch in range(8):
        for _xb, _yb in DataLoader(TensorDataset(X_TRAIN, Y_TRAIN), batch_size=64, shuffle=True, seed=_epoch):
            _loss = cross_entropy(_model(Tensor(_xb)), _yb)
            _opt.zero_grad()
            _loss.backward()
            _opt.step()


    def _predict(x):
        with no_grad():
            return _model(Tensor(x)).data


    _t0 = time.perf_counter()
    _predict(X_TEST[:1])
    _cold_ms = (time.perf_counter() - _t0) * 1e3
    _lat = single_stream(_predict, X_TEST, warmup=50, repeats=5)
    _acc = float((_lat.outputs.argmax(axis=1) == Y_TEST).mean())
    _predict(X_TEST)  # warm up the batch path too: its first call allocates the big arrays
    _batch_times = []
    for _ in range(20):
        _t0 = time.perf_counter()
        _predict(X_TEST)
        _batch_times.append(time.perf_counter() - _t0)
    _batch_ms = statistics.median(_batch_times) * 1e3
    print(f"accuracy {_acc:.3f} on {len(X_TEST)} test images")
    print(f"first call (cold)         {_cold_ms:8.3f} ms")
    print(f"single-stream p50 / p90   {_lat.p50_ms:8.3f} / {_lat.p90_ms:.3f} ms")
    print(f"per-pass p50s (ms)        {[round(v, 4) for v in _lat.repeats_p50_ms]} (spread {_lat.spread:.2f}x)")
    print(f"one batch of {len(X_TEST)} (median of 20): {_batch_ms:.3f} ms = "
          f"{_batch_ms / len(X_TEST) * 1e3:.2f} us per image")

# %% [markdown]
# Two lessons hide in these numbers. The per-image cost of a big batch is far below the
# single-query latency: batching amortizes the Python and call overhead, so **a latency
# benchmark must fix the batch size**, or it measures a different thing for every team.
# And the p90 is never below the p50: the gap between them is the tail, where a scheduler, a
# cache miss or a garbage collection shows up. On a busy machine the tail grows first, which
# is why MLPerf reports it; and the cold first call shows why the warm-up is not timed.

# %% [markdown]
# ## Step 2: size as actually stored
#
# "This model has 4,810 parameters" says nothing about bytes: float32, float16, int8 and a
# sparse format store the same parameters in very different sizes, and a pruned model stored
# densely is exactly as big as before. The only honest measure is **the bytes of the file the
# weights are stored in**. Submissions store their weights with `np.savez` (uncompressed, one
# `.npy` entry per array), so implement `stored_bytes(arrays)`: serialize the dict of arrays
# with `np.savez` into an in-memory `io.BytesIO()` and return its length. The arena counts the
# files in the package's `weights/` folder, which is the same number.


# %% nbgrader={"grade": false, "grade_id": "stored_bytes", "locked": false, "schema_version": 3, "solution": true, "task": false}
#| export
def stored_bytes(arrays: dict) -> int:
    """Bytes of `np.savez(file, **arrays)`: the model size a submission is charged for."""
    if not isinstance(arrays, dict) or not arrays:
        raise ValueError("stored_bytes needs a non-empty dict of name -> array")
    for name, value in arrays.items():
        if not isinstance(name, str) or not name:
            raise ValueError(f"array names must be non-empty strings, got {name!r}")
        if np.asarray(value).dtype.kind not in "biuf":
            raise ValueError(
                f"array {name!r} has dtype {np.asarray(value).dtype}; only numbers can be stored"
            )
    ### BEGIN SOLUTION
    buffer = io.BytesIO()
    np.savez(buffer, **{k: np.asarray(v) for k, v in arrays.items()})
    return len(buffer.getvalue())
    ### END SOLUTION


# %% nbgrader={"grade": true, "grade_id": "stored_bytes_correct", "locked": true, "points": 2, "schema_version": 3, "solution": false, "task": false}
"""stored_bytes is the size of the np.savez file; int8 is about 4x smaller than float32."""
_w = np.random.default_rng(0).standard_normal((64, 64)).astype(np.float32)
_b32 = stored_bytes({"w": _w})
_b8 = stored_bytes({"w": _w.astype(np.int8)})
assert _b32 > 64 * 64 * 4, f"float32 (64, 64) needs more than {64 * 64 * 4} bytes, got {_b32}"
assert 3.0 < _b32 / _b8 < 4.0, f"int8 should be ~4x smaller (minus headers), got {_b32 / _b8:.2f}x"
_two = {"a": np.zeros(100, np.float32), "b": np.arange(3, dtype=np.int16)}
with tempfile.TemporaryDirectory() as _tmp:
    np.savez(Path(_tmp) / "w.npz", **_two)
    _size = (Path(_tmp) / "w.npz").stat().st_size
assert stored_bytes(_two) == _size, (
    f"stored_bytes must equal the np.savez file size ({_size} bytes), got {stored_bytes(_two)}"
)

### BEGIN HIDDEN TESTS
from tito.probe import probe as _probe

with _probe("20_competition", "stored_bytes_correct") as _p:
    for _i, _arrays in enumerate(_p.inputs["dicts"]):
        _p.record(f"d{_i}", stored_bytes, _arrays)
    for _k, _bad in enumerate([{}, {"x": np.array(["a"])}, [np.zeros(2)]]):
        _p.record(f"bad{_k}", stored_bytes, _bad)
### END HIDDEN TESTS


# %% [markdown]
# The baseline's weights in three formats. The int8 version stores one float32 scale per
# tensor next to the int8 values (symmetric quantization, module 17), and the sparse version
# keeps 20% of each weight matrix as float16 values plus uint16 positions (module 18): sparse
# storage pays for its indices, so it only wins well past 50% sparsity.

# %% tags=["demo"]
with needs_exercises():
    _state = _model.state_dict()
    _int8 = {}
    _sparse = {}
    for _name, _value in _state.items():
        _scale = float(np.abs(_value).max()) / 127 or 1.0
        _int8[_name] = np.round(_value / _scale).astype(np.int8)
        _int8[_name + ".scale"] = np.float32(_scale)
        _flat = _value.ravel()
        _keep = np.sort(np.argsort(-np.abs(_flat))[: max(1, _flat.size // 5)])
        _sparse[_name + ".values"] = _flat[_keep].astype(np.float16)
        _sparse[_name + ".index"] = _keep.astype(np.uint16)
    _sizes = {
        "float32": stored_bytes(_state),
        "float16": stored_bytes({k: v.astype(np.float16) for k, v in _state.items()}),
        "int8 + scales": stored_bytes(_int8),
        "20% sparse (f16 + u16 index)": stored_bytes(_sparse),
    }
    _params = sum(v.size for v in _state.values())
    for _fmt, _bytes in _sizes.items():
        print(f"{_fmt:>30}: {_bytes:6d} bytes ({_bytes / _params:.2f} bytes/parameter)")

# %% [markdown]
# Notice the headers: every `.npy` entry in the zip costs about 200 bytes of header and
# directory, so splitting weights into many small arrays is not free either.
#
# ## Step 3: a hidden test set with a public and a private part
#
# If the leaderboard showed accuracy on the whole test set, teams could submit many variants
# and keep the one that scores best *on the test set* — tuning to the scoreboard. The Kaggle
# answer: the test labels stay hidden, the scoreboard shows accuracy on a **public** part, and
# the final ranking uses the **private** rest, which nobody has seen a score for.
#
# Implement `public_private_split(n, public_fraction, seed)`: a seeded random permutation of
# `range(n)`; the first `round(n * public_fraction)` indices are public, the rest private, both
# returned sorted (int64). Then `split_accuracies(pred_labels, labels, public_idx,
# private_idx)` returns the accuracy on each part.


# %% nbgrader={"grade": false, "grade_id": "public_private", "locked": false, "schema_version": 3, "solution": true, "task": false}
#| export
def public_private_split(
    n: int, public_fraction: float = 0.3, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """Sorted int64 (public, private) index arrays that partition range(n)."""
    if not 0 < public_fraction < 1:
        raise ValueError(f"public_fraction must be strictly between 0 and 1, got {public_fraction}")
    n_public = round(n * public_fraction)
    if n_public < 1 or n_public > n - 1:
        raise ValueError(
            f"a split of {n} examples with public_fraction {public_fraction} leaves an empty part"
        )
    ### BEGIN SOLUTION
    order = np.random.default_rng(seed).permutation(n)
    public = np.sort(order[:n_public]).astype(np.int64)
    private = np.sort(order[n_public:]).astype(np.int64)
    return public, private
    ### END SOLUTION


def split_accuracies(
    pred_labels: np.ndarray, labels: np.ndarray, public_idx: np.ndarray, private_idx: np.ndarray
) -> tuple[float, float]:
    """(accuracy on the public part, accuracy on the private part)."""
    pred_labels, labels = np.asarray(pred_labels), np.asarray(labels)
    if pred_labels.shape != labels.shape or labels.ndim != 1:
        raise ValueError(
            f"pred_labels {pred_labels.shape} and labels {labels.shape} must be equal 1-D shapes"
        )
    ### BEGIN SOLUTION
    correct = pred_labels == labels
    return float(correct[public_idx].mean()), float(correct[private_idx].mean())
    ### END SOLUTION


# %% nbgrader={"grade": true, "grade_id": "public_private_correct", "locked": true, "points": 2, "schema_version": 3, "solution": false, "task": false}
"""The split partitions range(n), is seeded, and accuracies are per part."""
_pub, _priv = public_private_split(10, 0.3, seed=1)
assert len(_pub) == 3 and len(_priv) == 7, f"30% of 10 is 3 public, got {len(_pub)}"
assert sorted(np.concatenate([_pub, _priv]).tolist()) == list(range(10)), "must partition range(10)"
assert np.array_equal(_pub, public_private_split(10, 0.3, seed=1)[0]), "same seed, same split"
assert _pub.dtype == np.int64 and np.all(np.diff(_pub) > 0), "sorted int64 indices"
_big = public_private_split(360, 0.3, seed=0)[0]
assert not np.array_equal(_big, public_private_split(360, 0.3, seed=1)[0]), "seeds must differ"
assert not np.array_equal(_big, np.arange(len(_big))), "the split must be random, not the first rows"
_labels = np.arange(10) % 3
_pred = _labels.copy()
_pred[_priv[0]] = 99  # one private mistake
assert split_accuracies(_pred, _labels, _pub, _priv) == (1.0, 6 / 7), (
    f"(public, private) accuracy should be (1.0, 6/7), got {split_accuracies(_pred, _labels, _pub, _priv)}"
)

### BEGIN HIDDEN TESTS
from tito.probe import probe as _probe

with _probe("20_competition", "public_private_correct") as _p:
    for _i, (_n, _frac, _seed) in enumerate(_p.inputs["cases"]):
        _p.record(f"split{_i}", public_private_split, _n, _frac, _seed)
        _p.record(f"again{_i}", public_private_split, _n, _frac, _seed)
        _p.record(f"other{_i}", public_private_split, _n, _frac, _seed + 1)
    for _k, (_n, _frac) in enumerate(_p.inputs["bad"]):
        _p.record(f"bad{_k}", public_private_split, _n, _frac)
    _p.record("acc", split_accuracies, _p.inputs["pred"], _p.inputs["labels"], _p.inputs["pub"],
              _p.inputs["priv"])
    _p.record("acc_bad", split_accuracies, np.zeros(3), np.zeros(4), np.arange(1), np.arange(1, 3))
### END HIDDEN TESTS


# %% [markdown]
# Why bother? Here is "tuning to the scoreboard" in action: 12 small models that differ only in
# their random seed (so they are about equally good), and a team that keeps whichever scores
# best on the *public* part. The choice itself inflates the winner's public score (the winner's
# curse): it won partly because the public images happened to suit it. The private part played
# no role in the choice, so the winner's private score is the honest estimate.

# %% tags=["demo"]
with needs_exercises():
    _pub, _priv = public_private_split(len(Y_TEST), 0.3, seed=2020)
    _results = []
    for _seed in range(12):
        manual_seed(_seed)
        _m = Sequential(Linear(INPUT_DIM, 16), ReLU(), Linear(16, NUM_CLASSES))
        _o = Adam(_m.parameters(), lr=1e-2)
        for _ep in range(3):
            for _xb, _yb in DataLoader(TensorDataset(X_TRAIN, Y_TRAIN), batch_size=64, shuffle=True,
                                       seed=_seed * 100 + _ep):
                _l = cross_entropy(_m(Tensor(_xb)), _yb)
                _o.zero_grad()
                _l.backward()
                _o.step()
        with no_grad():
            _labels = _m(Tensor(X_TEST)).data.argmax(axis=1)
        _results.append(split_accuracies(_labels, Y_TEST, _pub, _priv))
    _best = max(range(12), key=lambda i: _results[i][0])
    print(f"public part {len(_pub)} images, private part {len(_priv)} images")
    _mean_pub = np.mean([r[0] for r in _results])
    _mean_priv = np.mean([r[1] for r in _results])
    print(f"picked by public score: seed {_best}: public {_results[_best][0]:.3f}, "
          f"private {_results[_best][1]:.3f}")
    print(f"mean over all 12 seeds:  public {_mean_pub:.3f}, private {_mean_priv:.3f}")
    print(f"the winner's public score is {100 * (_results[_best][0] - _mean_pub):+.1f} points above "
          f"the average seed; its private score {100 * (_results[_best][1] - _mean_priv):+.1f}")

# %% [markdown]
# ## Step 4: the submission class
#
# A team subclasses `CompetitionSubmission`. The hooks, in the order the arena uses them:
#
# | hook | default | override it to ... |
# |---|---|---|
# | `build_model()` | the baseline MLP 64-64-10 | change the architecture |
# | `build_autotuner()` | `None` (no tuning) | return a tuner from module 19; `autotune()` then runs it |
# | `build_optimizer(model)` | Adam, `learning_rate` | change the optimizer |
# | `train(x, y, budget_seconds)` | **you write it below** | (rarely) |
# | `optimize()` | nothing | quantize, prune, fold layers after training |
# | `predict(x)` | forward pass, no graph | use a faster inference path |
# | `state()` / `load_state(arrays)` | `state_dict` / `load_state_dict` | store weights in a smaller format |
#
# **Speed** is measured DAWNBench style: the arena builds a *fresh* instance (without your
# weights), calls `train(x, y, budget_seconds)` on the training split, and times it; the model
# it produces must reach the target accuracy on the hidden test set. So `train` should stop as
# soon as the model is good enough — not after a fixed number of epochs.
#
# Write `train`: hold out `holdout_fraction` of the training data (a seeded shuffle), seed the
# initialisation with `manual_seed` and the class's `seed`, run the autotuner if
# `build_autotuner()` returns one, build the model and optimizer, then train in epochs of
# shuffled mini-batches. After each epoch measure the hold-out accuracy (`self._accuracy`);
# stop with `stopped="target"` when it reaches `stop_accuracy`, with `"budget"` once
# `budget_seconds` have passed (check the clock after every batch, so a slow epoch cannot blow
# the budget), or with `"max_epochs"`. Return (and keep in `self.report`) a `TrainReport`.


# %% nbgrader={"grade": false, "grade_id": "submission_train", "locked": false, "schema_version": 3, "solution": true, "task": false}
#| export
@dataclass
class TrainReport:
    """What `CompetitionSubmission.train` did."""

    epochs: int  # epochs started (the last one may have been cut short by the budget)
    steps: int  # optimizer steps taken
    seconds: float  # wall time of the whole call
    holdout_accuracy: float  # accuracy on the held-out part of the training data at the end
    stopped: str  # "target", "budget" or "max_epochs"


class CompetitionSubmission:
    """Base class of a competition entry: subclass it, override hooks, package it."""

    # --- package metadata (written to submission.yaml by package_submission) --------------
    team: str = ""  # letters, digits, '.', '_' or '-'; your name on the leaderboard
    category: str = "efficiency"  # the category you mainly compete in (ranked in all four)
    tags: tuple = ()  # technique tags shown publicly, e.g. ("quantization", "int8")
    description: str = ""  # one or two sentences on what you did

    # --- training knobs (class attributes, so a subclass changes them in one line) --------
    seed: int = 0  # initialisation and shuffling: the same seed trains the same model
    batch_size: int = 64  # mini-batch size
    learning_rate: float = 1e-2  # Adam step size
    max_epochs: int = 30  # hard stop even if the target is never reached
    stop_accuracy: float | None = 0.97  # stop once the hold-out accuracy reaches this
    holdout_fraction: float = 0.1  # share of the training data kept aside to decide when to stop
    hidden: int = 64  # width of the baseline MLP's hidden layer

    def __init__(self):
        self.model: Module | None = None
        self.tuning = None  # whatever autotune() returned
        self.report: TrainReport | None = None

    # --- hooks ----------------------------------------------------------------------------
    def build_model(self) -> Module:
        """The model to train; the baseline is a 64-hidden-unit MLP."""
        return Sequential(Linear(INPUT_DIM, self.hidden), ReLU(), Linear(self.hidden, NUM_CLASSES))

    def build_autotuner(self):
        """Optional: a tuner (module 19) that `autotune` runs before training. None = no tuning."""
        return None

    def autotune(self, tuner, x_train, y_train, x_val, y_val, budget_seconds: float):
        """Run `tuner` and apply what it found (e.g. set self.learning_rate); return its result."""
        raise NotImplementedError(
            f"{type(self).__name__}.build_autotuner() returned {type(tuner).__name__}; override "
            "autotune() to run it and apply the configuration it finds"
        )

    def build_optimizer(self, model: Module):
        return Adam(model.parameters(), lr=self.learning_rate)

    def optimize(self) -> None:
        """After training: quantize, prune, ... (the baseline does nothing)."""

    def predict(self, x: np.ndarray) -> np.ndarray:
        """(n, 64) float32 images -> (n, 10) float class scores."""
        if self.model is None:
            raise RuntimeError("no model yet: call train() or load() first")
        self.model.eval()
        with no_grad():
            return self.model(Tensor(np.asarray(x, dtype=np.float32))).data

    def state(self) -> dict:
        """The arrays to store (their file size is the model size you are charged for)."""
        if self.model is None:
            raise RuntimeError("no model yet: call train() or load() first")
        return self.model.state_dict()

    def load_state(self, arrays: dict) -> None:
        """Rebuild the model from `state()`'s arrays."""
        self.model = self.build_model()
        self.model.load_state_dict(dict(arrays))

    # --- storage ----------------------------------------------------------------------------
    def save(self, folder) -> Path:
        """Write `state()` to folder/weights.npz (uncompressed np.savez); returns the path."""
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / WEIGHTS_FILE
        np.savez(path, **self.state())
        return path

    def load(self, folder) -> None:
        """Read folder/weights.npz (no pickles) into the model."""
        with np.load(Path(folder) / WEIGHTS_FILE, allow_pickle=False) as data:
            self.load_state({k: data[k] for k in data.files})

    def metadata(self) -> dict:
        return {
            "team": self.team,
            "category": self.category,
            "tags": list(self.tags),
            "description": self.description,
            "entry": type(self).__name__,
        }

    def _accuracy(self, x: np.ndarray, y: np.ndarray) -> float:
        """Accuracy of the model being trained (its forward pass, not an overridden predict)."""
        self.model.eval()
        with no_grad():
            scores = self.model(Tensor(np.asarray(x, dtype=np.float32))).data
        return float((scores.argmax(axis=1) == y).mean())

    # --- training ---------------------------------------------------------------------------
    def train(self, x: np.ndarray, y: np.ndarray, budget_seconds: float) -> TrainReport:
        """Train from scratch on (x, y) within `budget_seconds`; stop at the target."""
        if budget_seconds <= 0:
            raise ValueError(f"budget_seconds must be positive, got {budget_seconds}")
        x, y = np.asarray(x, dtype=np.float32), np.asarray(y)
        if x.ndim != 2 or y.shape != (len(x),):
            raise ValueError(f"x must be (n, features) and y (n,), got {x.shape} and {y.shape}")
        start = time.perf_counter()
        deadline = start + budget_seconds
        ### BEGIN SOLUTION
        order = np.random.default_rng(self.seed).permutation(len(x))
        n_val = max(1, int(round(len(x) * self.holdout_fraction)))
        val, tr = order[:n_val], order[n_val:]
        x_tr, y_tr, x_val, y_val = x[tr], y[tr], x[val], y[val]
        manual_seed(self.seed)
        tuner = self.build_autotuner()
        if tuner is not None:
            self.tuning = self.autotune(
                tuner, x_tr, y_tr, x_val, y_val, deadline - time.perf_counter()
            )
        self.model = self.build_model()
        optimizer = self.build_optimizer(self.model)
        loader = DataLoader(
            TensorDataset(x_tr, y_tr), batch_size=self.batch_size, shuffle=True, seed=self.seed
        )
        epochs = steps = 0
        stopped = "max_epochs"
        acc = 0.0
        for epoch in range(self.max_epochs):
            epochs += 1
            loader.set_epoch(epoch)
            self.model.train()
            out_of_time = False
            for xb, yb in loader:
                batch_loss = cross_entropy(self.model(Tensor(xb)), yb)
                optimizer.zero_grad()
                batch_loss.backward()
                optimizer.step()
                steps += 1
                if time.perf_counter() >= deadline:
                    out_of_time = True
                    break
            acc = self._accuracy(x_val, y_val)
            if self.stop_accuracy is not None and acc >= self.stop_accuracy:
                stopped = "target"
                break
            if out_of_time or time.perf_counter() >= deadline:
                stopped = "budget"
                break
        self.report = TrainReport(epochs, steps, time.perf_counter() - start, acc, stopped)
        return self.report
        ### END SOLUTION


# %% nbgrader={"grade": true, "grade_id": "submission_train_correct", "locked": true, "points": 3, "schema_version": 3, "solution": false, "task": false}
"""train() reaches the target and stops there; budget, epochs, seed and autotuner are honoured."""
_sub = CompetitionSubmission()
_rep = _sub.train(X_TRAIN, Y_TRAIN, budget_seconds=30)
print(_rep)
assert _rep.stopped == "target", f"the baseline reaches 97% hold-out accuracy; stopped={_rep.stopped!r}"
assert _rep.holdout_accuracy >= 0.97 and _rep.epochs < _sub.max_epochs
_test_acc = float((_sub.predict(X_TEST).argmax(axis=1) == Y_TEST).mean())
assert _test_acc >= 0.9, f"the trained baseline should reach 90% test accuracy, got {_test_acc:.3f}"


class _Capped(CompetitionSubmission):
    stop_accuracy, max_epochs = None, 2


_a, _b = _Capped(), _Capped()
_rep = _a.train(X_TRAIN[:200], Y_TRAIN[:200], budget_seconds=60)
assert _rep.stopped == "max_epochs" and _rep.epochs == 2, f"2 epochs, then 'max_epochs': {_rep}"
assert _rep.steps == 2 * math.ceil(180 / 64), (
    f"2 epochs of 180 examples (200 minus 10% held out) in batches of 64 = 6 steps, got {_rep.steps}"
)
_b.train(X_TRAIN[:200], Y_TRAIN[:200], budget_seconds=60)
assert all(np.array_equal(_a.state()[_k], _b.state()[_k]) for _k in _a.state()), (
    "the same seed must give the same weights: seed the initialisation (and shuffles) with it"
)


class _Slow(CompetitionSubmission):
    stop_accuracy, max_epochs, batch_size = None, 1000, 16

    def build_optimizer(self, model):
        opt = super().build_optimizer(model)
        step = opt.step
        opt.step = lambda: (time.sleep(0.02), step())  # every step takes 20 ms
        return opt


_rep = _Slow().train(X_TRAIN[:1000], Y_TRAIN[:1000], budget_seconds=0.1)
assert _rep.stopped == "budget", f"an endless run must stop on the budget, got {_rep.stopped!r}"
assert _rep.steps <= 7, (
    f"0.1 s at 20 ms per step is 5 steps; train took {_rep.steps} steps in {_rep.seconds:.2f} s: "
    "check the clock after every batch, not only after each epoch"
)


class _Tuned(CompetitionSubmission):
    max_epochs = 1

    def build_autotuner(self):
        return "tuner"

    def autotune(self, tuner, x_tr, y_tr, x_val, y_val, budget):
        self.hidden = 8  # what a tuner found: build_model must see it
        return {"hidden": 8, "sizes": (len(x_tr), len(x_val))}


_t = _Tuned()
_t.train(X_TRAIN[:100], Y_TRAIN[:100], 60)
assert _t.tuning == {"hidden": 8, "sizes": (90, 10)}, f"autotune's result is kept in .tuning: {_t.tuning}"
assert _t.model[0].weight.shape == (64, 8), "autotune runs before build_model, so what it sets is used"

### BEGIN HIDDEN TESTS
from tito.probe import probe as _probe


def _train_probe(p):
    b, c, t, g = (p.inputs[k] for k in ("budget", "capped", "tuned", "target"))
    counted = {"steps": 0}

    class Slow(CompetitionSubmission):
        stop_accuracy, max_epochs, batch_size, seed = None, 1000, b["batch_size"], b["seed"]

        def build_optimizer(self, model):
            opt = super().build_optimizer(model)
            step = opt.step

            def slow_step():
                counted["steps"] += 1
                time.sleep(b["sleep"])
                step()

            opt.step = slow_step
            return opt

    rep = Slow().train(X_TRAIN[: b["n"]], Y_TRAIN[: b["n"]], budget_seconds=b["budget"])
    p.put("budget", {"stopped": str(rep.stopped), "steps": int(rep.steps),
                     "optimizer_steps": counted["steps"], "seconds": float(rep.seconds)})

    class Capped(CompetitionSubmission):
        stop_accuracy, max_epochs, seed = None, c["epochs"], c["seed"]
        batch_size, holdout_fraction = c["batch_size"], c["holdout"]

    rep = Capped().train(X_TRAIN[: c["n"]], Y_TRAIN[: c["n"]], 60)
    p.put("capped", {"stopped": str(rep.stopped), "epochs": int(rep.epochs),
                     "steps": int(rep.steps)})
    runs = []
    for seed in (c["seed"], c["seed"], c["seed"] + 1):
        sub = Capped()
        sub.seed = seed
        sub.train(X_TRAIN[:100], Y_TRAIN[:100], 60)
        runs.append({k: np.asarray(v).copy() for k, v in sub.state().items()})
    same = all(np.array_equal(runs[0][k], runs[1][k]) for k in runs[0])
    other = all(np.array_equal(runs[0][k], runs[2][k]) for k in runs[0])
    p.put("same_seed", {"equal": bool(same), "other_equal": bool(other)})
    seen = {}

    class Tuned(CompetitionSubmission):
        max_epochs, holdout_fraction = 1, t["holdout"]

        def build_autotuner(self):
            return "tuner"

        def autotune(self, tuner, x_tr, y_tr, x_val, y_val, budget):
            seen.update(tuner=str(tuner), sizes=[len(x_tr), len(x_val)], budget=float(budget))
            self.hidden = t["hidden"]
            return {"hidden": t["hidden"]}

    tuned = Tuned()
    tuned.train(X_TRAIN[: t["n"]], Y_TRAIN[: t["n"]], 60)
    p.put("tuned", {**seen, "width": int(tuned.model[0].weight.shape[1])})

    class Target(CompetitionSubmission):
        stop_accuracy, seed = g["stop"], g["seed"]

    sub = Target()
    rep = sub.train(X_TRAIN, Y_TRAIN, 60)
    p.put("target", {"stopped": str(rep.stopped), "epochs": int(rep.epochs),
                     "holdout_accuracy": float(rep.holdout_accuracy),
                     "scores": np.asarray(sub.predict(g["x"]), dtype=np.float64)})
    p.record("zero_budget", CompetitionSubmission().train, X_TRAIN[:10], Y_TRAIN[:10], 0)


with _probe("20_competition", "submission_train_correct") as _p:
    _p.record("_run", _train_probe, _p)
### END HIDDEN TESTS


# %% [markdown]
# ## Step 5: the scoring rules
#
# The rules of the competition are data (`CompetitionRules`, below) and the formulas are
# written down in `FORMULAS`:

# %%
for _cat in CATEGORIES:
    print(f"{_cat:>10}: {FORMULAS[_cat]}")

# %% [markdown]
# One evaluated submission is an `Entry`. "Accuracy" means the **public** accuracy while the
# competition runs (`final=False`) and the **private** accuracy for the final ranking
# (`final=True`); for speed, it is the accuracy of the model `train()` produced in the timed
# run. Implement `category_score(entry, category, rules, final)`: return `(score, "")` when the
# entry counts in that category, else `(None, reason)` with a short reason (for example
# `"accuracy 0.850 < target 0.900"`). A failed evaluation never counts.


# %% nbgrader={"grade": false, "grade_id": "category_score", "locked": false, "schema_version": 3, "solution": true, "task": false}
#| export
@dataclass(frozen=True)
class CompetitionRules:
    """The rules of one competition; the arena stores them with the leaderboard."""

    target_accuracy: float = 0.90  # speed, size and efficiency only count at or above this
    size_limit_bytes: int = 8 * 1024  # Size: stored weights must fit in this many bytes
    train_budget_seconds: float = 20.0  # Speed: train() must finish within this wall time
    public_fraction: float = 0.3  # share of the hidden test set shown on the scoreboard
    split_seed: int = 2020  # fixes which test images are public
    daily_limit: int = 5  # distinct packages a team may submit per (UTC) day

    def __post_init__(self):
        if not 0 < self.target_accuracy <= 1:
            raise ValueError(f"target_accuracy must be in (0, 1], got {self.target_accuracy}")
        if self.size_limit_bytes <= 0 or self.train_budget_seconds <= 0 or self.daily_limit < 1:
            raise ValueError(f"size limit, budget and daily limit must be positive: {self}")
        if not 0 < self.public_fraction < 1:
            raise ValueError(f"public_fraction must be in (0, 1), got {self.public_fraction}")


@dataclass
class Entry:
    """One evaluated submission, as the leaderboard sees it."""

    team: str
    submission_id: int = 0  # order of submission: earlier wins ties
    status: str = "ok"  # "ok", or an ERROR_KINDS key
    error: str = ""  # why it failed (empty when ok)
    acc_public: float | None = None  # accuracy of the submitted model on the public part
    acc_private: float | None = None  # ... on the private part (hidden until the end)
    speed_acc_public: float | None = None  # accuracy of the model train() produced, public part
    speed_acc_private: float | None = None  # ... private part
    train_seconds: float | None = None  # wall time of train() from scratch
    latency_p50_ms: float | None = None  # single-stream p50, median of passes
    latency_p90_ms: float | None = None  # single-stream p90, median of passes
    model_bytes: int | None = None  # bytes of the stored weights
    peak_rss_kb: int | None = None  # peak resident memory of the process that ran it
    innovation_points: float = 0.0  # awarded by an instructor, per team
    category: str = ""  # the category the team declared
    tags: tuple = ()  # technique tags, shown publicly

    def accuracy(self, final: bool = False) -> float | None:
        return self.acc_private if final else self.acc_public

    def speed_accuracy(self, final: bool = False) -> float | None:
        return self.speed_acc_private if final else self.speed_acc_public


def category_score(
    entry: Entry, category: str, rules: CompetitionRules, final: bool = False
) -> tuple[float | None, str]:
    """(score, "") if `entry` counts in `category` by FORMULAS, else (None, reason)."""
    if category not in CATEGORIES:
        raise ValueError(f"unknown category {category!r}; categories are {', '.join(CATEGORIES)}")
    if entry.status != "ok":
        return None, f"evaluation failed ({entry.status})"
    target = rules.target_accuracy
    ### BEGIN SOLUTION
    if category == "speed":
        acc = entry.speed_accuracy(final)
        if acc is None or entry.train_seconds is None:
            return None, "no timed training run"
        if acc < target:
            return None, f"trained model accuracy {acc:.3f} < target {target:.3f}"
        if entry.train_seconds > rules.train_budget_seconds:
            return None, (
                f"train took {entry.train_seconds:.2f}s > budget {rules.train_budget_seconds:g}s"
            )
        return float(entry.train_seconds), ""
    acc = entry.accuracy(final)
    if acc is None:
        return None, "no accuracy"
    if acc < target:
        return None, f"accuracy {acc:.3f} < target {target:.3f}"
    if category == "size":
        if entry.model_bytes is None:
            return None, "no model size"
        if entry.model_bytes > rules.size_limit_bytes:
            return None, f"{entry.model_bytes} bytes > size limit {rules.size_limit_bytes}"
        return float(acc), ""
    if category == "efficiency":
        if not entry.latency_p50_ms or not entry.model_bytes:
            return None, "no latency or size"
        return float(acc / math.sqrt(entry.latency_p50_ms * entry.model_bytes / 1024)), ""
    if entry.innovation_points <= 0:
        return None, "no innovation points awarded"
    return float(entry.innovation_points), ""
    ### END SOLUTION


# %% nbgrader={"grade": true, "grade_id": "category_score_correct", "locked": true, "points": 3, "schema_version": 3, "solution": false, "task": false}
"""Each category follows its written formula, and nothing counts below the target."""
_rules = CompetitionRules(target_accuracy=0.9, size_limit_bytes=8192, train_budget_seconds=20)
_e = Entry("a", 1, acc_public=0.95, acc_private=0.93, speed_acc_public=0.92, speed_acc_private=0.91,
           train_seconds=1.5, latency_p50_ms=0.02, latency_p90_ms=0.03, model_bytes=4096,
           innovation_points=2)
assert category_score(_e, "speed", _rules) == (1.5, "")
assert category_score(_e, "size", _rules) == (0.95, "")
assert category_score(_e, "size", _rules, final=True) == (0.93, ""), "final uses the private part"
assert abs(category_score(_e, "efficiency", _rules)[0] - 0.95 / math.sqrt(0.02 * 4)) < 1e-12, (
    "efficiency = accuracy / sqrt(p50 ms * KiB), with KiB = bytes / 1024"
)
assert category_score(_e, "innovation", _rules) == (2.0, "")
_low = Entry("b", 2, acc_public=0.85, acc_private=0.95, model_bytes=100, latency_p50_ms=0.01,
             innovation_points=5)
for _cat in ["size", "efficiency", "innovation"]:
    _score, _why = category_score(_low, _cat, _rules)
    assert _score is None and "0.850" in _why, f"{_cat}: below target must not count ({_why!r})"
_edge = Entry("c", 3, acc_public=0.9, speed_acc_public=0.9, train_seconds=20.0, model_bytes=8192,
              latency_p50_ms=1.0)
assert category_score(_edge, "size", _rules) == (0.9, ""), "exactly the target and the limit count"
assert category_score(_edge, "speed", _rules) == (20.0, ""), "exactly the budget counts"
_speedy = Entry("d", 4, acc_public=0.5, speed_acc_public=0.95, train_seconds=2.5)
assert category_score(_speedy, "speed", _rules) == (2.5, ""), (
    "speed uses the accuracy of the model train() produced (speed_acc_*), not the submitted one"
)
_slow = Entry("e", 5, acc_public=0.99, speed_acc_public=0.99, train_seconds=25.0, model_bytes=9000)
assert "budget" in category_score(_slow, "speed", _rules)[1], "over the budget must say so"
assert "9000" in category_score(_slow, "size", _rules)[1], "over the size limit names the bytes"
assert category_score(Entry("f", 6, acc_public=0.99), "innovation", _rules)[0] is None, (
    "zero innovation points do not count"
)

### BEGIN HIDDEN TESTS
from tito.probe import probe as _probe


def _score_pair(entry, cat, rules, final):
    score, reason = category_score(entry, cat, rules, final)
    return [None if score is None else float(score), reason]


with _probe("20_competition", "category_score_correct") as _p:
    _r = CompetitionRules(**_p.inputs["rules"])
    for _i, _d in enumerate(_p.inputs["entries"]):
        for _cat in CATEGORIES:
            for _final in (False, True):
                _p.record(f"e{_i}_{_cat}_{int(_final)}", _score_pair, Entry(**_d), _cat, _r, _final)
    _p.record("unknown", category_score, Entry("x"), "beauty", _r)
### END HIDDEN TESTS


# %% [markdown]
# ### Ranking teams
#
# A leaderboard ranks **teams**, not submissions: a team's place in a category is its best
# counting submission there (lowest seconds for speed; highest score otherwise; for size, ties
# go to fewer bytes). Ties between teams go to the **earlier** submission (lower
# `submission_id`), so a copy cannot overtake the original. Teams without a counting submission
# are listed after the ranked ones, unranked, with the reason from their latest submission.
#
# Implement `rank_category(entries, category, rules, final)` returning a list of `Standing`:
# ranked teams first (rank 1, 2, ...), then unranked ones (`rank=None`) in order of their latest
# submission.


# %% nbgrader={"grade": false, "grade_id": "rank_category", "locked": false, "schema_version": 3, "solution": true, "task": false}
#| export
@dataclass
class Standing:
    """One team's place in one category."""

    team: str
    rank: int | None  # 1 = best; None = not ranked (see reason)
    score: float | None
    reason: str  # why not ranked ("" when ranked)
    entry: Entry  # the submission that earned the place (or the latest one)


def _sort_key(category: str, score: float, entry: Entry) -> tuple:
    """Smaller is better: the order rank_category sorts counting submissions in."""
    if category == "speed":
        return (score, entry.submission_id)
    if category == "size":
        return (-score, entry.model_bytes, entry.submission_id)
    return (-score, entry.submission_id)


def rank_category(
    entries: Sequence[Entry], category: str, rules: CompetitionRules, final: bool = False
) -> list[Standing]:
    """Every team once: ranked teams (best first), then unranked ones with a reason."""
    ### BEGIN SOLUTION
    best: dict[str, tuple[tuple, float, Entry]] = {}
    latest: dict[str, Entry] = {}
    for entry in entries:
        if entry.team not in latest or entry.submission_id > latest[entry.team].submission_id:
            latest[entry.team] = entry
        score, _ = category_score(entry, category, rules, final)
        if score is None:
            continue
        key = _sort_key(category, score, entry)
        if entry.team not in best or key < best[entry.team][0]:
            best[entry.team] = (key, score, entry)
    ranked = sorted(best.items(), key=lambda item: item[1][0])
    out = [
        Standing(team, i + 1, score, "", entry)
        for i, (team, (_, score, entry)) in enumerate(ranked)
    ]
    rest = sorted(
        (e for team, e in latest.items() if team not in best), key=lambda e: e.submission_id
    )
    for entry in rest:
        reason = category_score(entry, category, rules, final)[1]
        out.append(Standing(entry.team, None, None, reason, entry))
    return out
    ### END SOLUTION


def leaderboard(
    entries: Sequence[Entry], rules: CompetitionRules, final: bool = False
) -> dict[str, list[Standing]]:
    """`rank_category` for every category."""
    return {cat: rank_category(entries, cat, rules, final) for cat in CATEGORIES}


# %% nbgrader={"grade": true, "grade_id": "rank_category_correct", "locked": true, "points": 3, "schema_version": 3, "solution": false, "task": false}
"""Best counting submission per team, ties to the earlier one, unranked teams last."""
with needs_exercises():  # rank_category ranks by category_score: exercise 7 comes first
    category_score(Entry("x", acc_public=1.0), "size", CompetitionRules())
_rules = CompetitionRules(target_accuracy=0.9, train_budget_seconds=20, size_limit_bytes=1000)


def _speed(team, sid, secs, acc=0.95):
    return Entry(team, sid, acc_public=acc, speed_acc_public=acc, train_seconds=secs)


_entries = [_speed("a", 1, 3.0), _speed("b", 2, 2.0), _speed("a", 3, 1.0), _speed("c", 4, 1.0),
            _speed("d", 5, 0.5, acc=0.5)]
_st = rank_category(_entries, "speed", _rules)
assert [(s.team, s.rank) for s in _st] == [("a", 1), ("c", 2), ("b", 3), ("d", None)], (
    f"lowest seconds first, one row per team, a tie to the earlier submission: "
    f"got {[(s.team, s.rank) for s in _st]}"
)
assert _st[0].entry.submission_id == 3 and _st[0].score == 1.0, "a's best run is submission 3"
assert "0.500" in _st[3].reason, "the unranked team says why"
_size = rank_category([Entry("x", 1, acc_public=0.95, model_bytes=900),
                       Entry("y", 2, acc_public=0.95, model_bytes=800),
                       Entry("w", 3, status="crash", error="boom"),
                       Entry("z", 4, acc_public=0.97, model_bytes=1200),
                       Entry("z", 5, acc_public=0.93, model_bytes=500),
                       Entry("u", 6, acc_public=0.5), Entry("u", 7, status="nan", error="NaN")],
                      "size", _rules)
assert [(s.team, s.rank) for s in _size] == [("y", 1), ("x", 2), ("z", 3), ("w", None),
                                             ("u", None)], (
    f"size: highest accuracy, ties to fewer bytes; unranked in order of their latest submission: "
    f"got {[(s.team, s.rank) for s in _size]}"
)
assert _size[2].entry.submission_id == 5, "z's only counting submission is 5 (4 is over the limit)"
assert "nan" in _size[4].reason, "an unranked team's reason comes from its latest submission"

### BEGIN HIDDEN TESTS
from tito.probe import probe as _probe


def _standings(entries, cat, rules, final):
    return [[s.team, s.rank, None if s.score is None else float(s.score),
             int(s.entry.submission_id), s.reason] for s in rank_category(entries, cat, rules, final)]


with _probe("20_competition", "rank_category_correct") as _p:
    _r = CompetitionRules(**_p.inputs["rules"])
    for _b, _board in enumerate(_p.inputs["boards"]):
        for _cat in CATEGORIES:
            for _final in (False, True):
                _p.record(f"b{_b}_{_cat}_{int(_final)}", _standings,
                          [Entry(**_d) for _d in _board], _cat, _r, _final)
### END HIDDEN TESTS


# %% [markdown]
# ## Step 6: the Pareto front
#
# One number per category hides the trade-off. A model is **Pareto-optimal** if no other
# model is at least as accurate *and* at least as cheap (latency, or bytes) while being
# strictly better in one of the two. The Pareto front is the menu of sensible choices;
# everything behind it is beaten on both axes. Implement `pareto_front(points)` for points
# `(accuracy, cost)`: the indices of the non-dominated points, sorted by cost (then index).
# Equal points do not dominate each other.


# %% nbgrader={"grade": false, "grade_id": "pareto_front", "locked": false, "schema_version": 3, "solution": true, "task": false}
#| export
def pareto_front(points: Sequence[tuple[float, float]]) -> list[int]:
    """Indices of the (accuracy, cost) points no other point dominates, by cost then index."""
    pts = [(float(a), float(c)) for a, c in points]
    if any(math.isnan(a) or math.isnan(c) for a, c in pts):
        raise ValueError("pareto_front got a NaN accuracy or cost")
    ### BEGIN SOLUTION
    front = []
    for i, (acc_i, cost_i) in enumerate(pts):
        dominated = any(
            acc_j >= acc_i and cost_j <= cost_i and (acc_j > acc_i or cost_j < cost_i)
            for acc_j, cost_j in pts
        )
        if not dominated:
            front.append(i)
    return sorted(front, key=lambda i: (pts[i][1], i))
    ### END SOLUTION


# %% nbgrader={"grade": true, "grade_id": "pareto_front_correct", "locked": true, "points": 2, "schema_version": 3, "solution": false, "task": false}
"""Non-dominated points only, cheapest first."""
_pts = [(0.95, 10.0), (0.97, 20.0), (0.94, 15.0), (0.90, 5.0), (0.97, 25.0)]
assert pareto_front(_pts) == [3, 0, 1], f"got {pareto_front(_pts)}"
assert pareto_front([(0.5, 1.0), (0.5, 1.0)]) == [0, 1], "equal points do not dominate each other"
assert pareto_front([(0.9, 2.0), (0.9, 1.0)]) == [1], "as accurate and cheaper dominates"
assert pareto_front([(0.8, 1.0), (0.9, 1.0)]) == [1], "as cheap and more accurate dominates"
assert pareto_front([]) == []

### BEGIN HIDDEN TESTS
from tito.probe import probe as _probe

with _probe("20_competition", "pareto_front_correct") as _p:
    for _i, _pts in enumerate(_p.inputs["sets"]):
        _p.record(f"s{_i}", pareto_front, [tuple(_q) for _q in _pts])
    _p.record("nan", pareto_front, [(float("nan"), 1.0)])
### END HIDDEN TESTS


# %% [markdown]
# ## Step 7: the report against the baseline
#
# Every submission gets a short performance report: how it compares with the baseline, as
# ratios (`> 1` is better for the speed-ups and the size reduction), plus the accuracy change in
# percentage points. Implement `compare_to_baseline(entry, baseline, final)` returning
# `latency_speedup = baseline p50 / entry p50`, `size_reduction = baseline bytes / entry bytes`,
# `train_speedup = baseline train_seconds / entry train_seconds` and
# `accuracy_delta_points = 100 * (entry accuracy - baseline accuracy)`; a value is `None` when
# either side lacks the metric. Comparing with a failed evaluation raises `ValueError`.


# %% nbgrader={"grade": false, "grade_id": "compare_to_baseline", "locked": false, "schema_version": 3, "solution": true, "task": false}
#| export
def compare_to_baseline(entry: Entry, baseline: Entry, final: bool = False) -> dict:
    """Ratios against the baseline (> 1 is better) and the accuracy change in points."""
    for name, e in (("entry", entry), ("baseline", baseline)):
        if e.status != "ok":
            raise ValueError(f"cannot compare: the {name} ({e.team}) failed with {e.status}")
    ### BEGIN SOLUTION
    def ratio(base, new):
        return None if base is None or new is None or new <= 0 else base / new

    acc, base_acc = entry.accuracy(final), baseline.accuracy(final)
    return {
        "latency_speedup": ratio(baseline.latency_p50_ms, entry.latency_p50_ms),
        "size_reduction": ratio(baseline.model_bytes, entry.model_bytes),
        "train_speedup": ratio(baseline.train_seconds, entry.train_seconds),
        "accuracy_delta_points": None
        if acc is None or base_acc is None
        else 100.0 * (acc - base_acc),
    }
    ### END SOLUTION


def plot_comparison(comparison: dict, ax=None, title: str = "against the baseline"):
    """Bar chart of the three ratios (log scale, 1 = the baseline) with the accuracy change."""
    if ax is None:
        import matplotlib.pyplot as plt

        _, ax = plt.subplots(figsize=(5, 3))
    names = ["latency_speedup", "size_reduction", "train_speedup"]
    labels = ["latency\nspeed-up", "size\nreduction", "training\nspeed-up"]
    values = [comparison.get(n) or float("nan") for n in names]
    colors = ["tab:green" if v >= 1 else "tab:red" for v in np.nan_to_num(values, nan=1.0)]
    ax.bar(labels, values, color=colors)
    ax.axhline(1.0, color="black", linewidth=1)
    ax.set_yscale("log")
    ax.set_ylabel("x baseline (higher is better)")
    for i, v in enumerate(values):
        if not math.isnan(v):
            ax.annotate(f"{v:.2f}x", (i, v), ha="center", va="bottom", fontsize=9)
    delta = comparison.get("accuracy_delta_points")
    ax.set_title(title + ("" if delta is None else f" (accuracy {delta:+.1f} points)"), fontsize=10)
    return ax


# %% nbgrader={"grade": true, "grade_id": "compare_to_baseline_correct", "locked": true, "points": 2, "schema_version": 3, "solution": false, "task": false}
"""Ratios are baseline / entry, accuracy change in points, None where a metric is missing."""
_base = Entry("base", 1, acc_public=0.95, acc_private=0.9, latency_p50_ms=0.04, model_bytes=20000,
              train_seconds=2.0)
_q = Entry("q", 2, acc_public=0.94, acc_private=0.92, latency_p50_ms=0.02, model_bytes=5000)
_c = compare_to_baseline(_q, _base)
assert abs(_c["latency_speedup"] - 2.0) < 1e-12 and abs(_c["size_reduction"] - 4.0) < 1e-12, _c
assert _c["train_speedup"] is None, "the entry has no training time"
assert abs(_c["accuracy_delta_points"] - (-1.0)) < 1e-9, f"-1 percentage point, got {_c}"
assert abs(compare_to_baseline(_q, _base, final=True)["accuracy_delta_points"] - 2.0) < 1e-9, (
    "final=True compares the private accuracies"
)

### BEGIN HIDDEN TESTS
from tito.probe import probe as _probe


def _compared(e, b, final):
    return {k: None if v is None else float(v) for k, v in compare_to_baseline(e, b, final).items()}


with _probe("20_competition", "compare_to_baseline_correct") as _p:
    for _k, (_e, _b) in enumerate(_p.inputs["pairs"]):
        for _final in (False, True):
            _p.record(f"c{_k}_{int(_final)}", _compared, Entry(**_e), Entry(**_b), _final)
    _p.record("failed", compare_to_baseline, Entry(**_p.inputs["failed"]),
              Entry(**_p.inputs["pairs"][0][1]))
### END HIDDEN TESTS


# %% [markdown]
# ## Step 8: the package
#
# A submission travels as a folder (or a zip of it):
#
# ```
# my_team/
#   submission.py      one CompetitionSubmission subclass (and any helpers it needs)
#   submission.yaml    team, category, tags, description (and entry: the class name)
#   weights/           weights.npz as written by save(): everything here counts as model size
# ```
#
# The arena will not run anything before the metadata passes `check_metadata(meta)`, which
# returns a list of problems (empty = fine). The rules: `meta` is a mapping with exactly the
# keys `team`, `category`, `tags`, `description` and optionally `entry`; `team` matches
# `TEAM_PATTERN`; `category` is one of `CATEGORIES`; `tags` is a list of 1 to 10 distinct
# strings matching `TAG_PATTERN`; `description` is a non-empty string of at most 500
# characters; `entry`, if present, is a Python identifier.
#
# "Matches" means the *whole* string: `TEAM_PATTERN.fullmatch(team)`. With `re.match` and a
# pattern ending in `$`, `"baseline\n"` passes (`$` also matches before a final newline), and
# a second team would show up on the board as `baseline`.


# %% nbgrader={"grade": false, "grade_id": "check_metadata", "locked": false, "schema_version": 3, "solution": true, "task": false}
#| export
TEAM_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,39}")  # use .fullmatch
TAG_PATTERN = re.compile(r"[a-z0-9][a-z0-9-]{0,31}")  # use .fullmatch
REQUIRED_KEYS = ("team", "category", "tags", "description")
OPTIONAL_KEYS = ("entry",)


def check_metadata(meta) -> list[str]:
    """Problems with a submission.yaml mapping; an empty list means it is valid."""
    if not isinstance(meta, dict):
        return [f"{METADATA_FILE} must be a mapping of keys to values, got {type(meta).__name__}"]
    problems = []
    ### BEGIN SOLUTION
    for key in REQUIRED_KEYS:
        if key not in meta:
            problems.append(f"missing key {key!r}")
    for key in meta:
        if key not in REQUIRED_KEYS + OPTIONAL_KEYS:
            problems.append(
                f"unknown key {key!r} (allowed: {', '.join(REQUIRED_KEYS + OPTIONAL_KEYS)})"
            )
    team = meta.get("team")
    if "team" in meta and not (isinstance(team, str) and TEAM_PATTERN.fullmatch(team)):
        problems.append(
            f"team {team!r} must be 1-40 letters, digits, '.', '_' or '-' (starting with a "
            "letter or digit)"
        )
    category = meta.get("category")
    if "category" in meta and category not in CATEGORIES:
        problems.append(f"category {category!r} must be one of {', '.join(CATEGORIES)}")
    tags = meta.get("tags")
    if "tags" in meta:
        if not isinstance(tags, list) or not 1 <= len(tags) <= 10:
            problems.append(f"tags must be a list of 1 to 10 technique tags, got {tags!r}")
        else:
            bad = [t for t in tags if not (isinstance(t, str) and TAG_PATTERN.fullmatch(t))]
            if bad:
                problems.append(
                    f"tag {bad[0]!r} must be lower-case letters, digits and '-' (at most 32)"
                )
            elif len(set(tags)) != len(tags):
                problems.append("tags must not repeat")
    description = meta.get("description")
    if "description" in meta and not (
        isinstance(description, str) and description.strip() and len(description) <= 500
    ):
        problems.append("description must be a non-empty string of at most 500 characters")
    entry = meta.get("entry")
    if "entry" in meta and not (isinstance(entry, str) and entry.isidentifier()):
        problems.append(f"entry {entry!r} must be the name of a class in {SOURCE_FILE}")
    ### END SOLUTION
    return problems


def package_submission(submission: CompetitionSubmission, source, dest) -> Path:
    """Write a package folder: the source file, the weights, submission.yaml. Returns `dest`.

    `source` is the .py file that defines `type(submission)`. Raises ValueError listing the
    metadata problems, so a broken package never leaves your machine by accident.
    """
    source, dest = Path(source), Path(dest)
    meta = submission.metadata()
    problems = check_metadata(meta)
    if problems:
        raise ValueError(f"{type(submission).__name__}: " + "; ".join(problems))
    if not source.is_file():
        raise ValueError(f"source file {source} does not exist")
    if f"class {type(submission).__name__}" not in source.read_text(encoding="utf-8"):
        raise ValueError(f"{source} does not define class {type(submission).__name__}")
    if dest.exists():
        shutil.rmtree(dest)
    dest.mkdir(parents=True)
    shutil.copyfile(source, dest / SOURCE_FILE)
    submission.save(dest / WEIGHTS_DIR)
    (dest / METADATA_FILE).write_text(yaml.safe_dump(meta, sort_keys=False), encoding="utf-8")
    return dest


# %% nbgrader={"grade": true, "grade_id": "check_metadata_correct", "locked": true, "points": 3, "schema_version": 3, "solution": false, "task": false}
"""Valid metadata passes; each broken rule is reported."""
_good = {"team": "tiny-team", "category": "size", "tags": ["int8", "pruning"],
         "description": "int8 weights, 80% pruned"}
assert check_metadata(_good) == [], check_metadata(_good)
assert check_metadata({**_good, "entry": "MySubmission"}) == []
for _label, _bad in {
    "a space in the team": {**_good, "team": "no spaces allowed"},
    "a newline after the team": {**_good, "team": "baseline\n"},
    "an unknown category": {**_good, "category": "beauty"},
    "no tags": {**_good, "tags": []},
    "a repeated tag": {**_good, "tags": ["int8", "int8"]},
    "a blank description": {**_good, "description": "   "},
    "an unknown key": {**_good, "weights": "w.npz"},
    "no description": {k: v for k, v in _good.items() if k != "description"},
}.items():
    assert check_metadata(_bad), f"{_label} should be a problem: {_bad}"
assert len(check_metadata({})) == 4, "each missing key is one problem"

### BEGIN HIDDEN TESTS
from tito.probe import probe as _probe

with _probe("20_competition", "check_metadata_correct") as _p:
    for _label, _meta in _p.inputs["cases"].items():
        _p.record(_label, check_metadata, _meta)
### END HIDDEN TESTS


# %% [markdown]
# ## Step 9: your own entry
#
# Time to compete. The competition's **baseline** is the model the course ships with the library
# (bytes, not a download): `load_pretrained("digits_mlp_256")` from `tinytorch.core.pretrained`,
# a 64-256-256-10 MLP trained on the digits, stored as float32 (about 333 KiB). It is
# `PretrainedBaseline` below: a `CompetitionSubmission` whose `start_from_pretrained(x, y)`
# loads the shipped weights (and keeps the training data for your `optimize()`).
#
# Your job: **make an entry that beats the baseline in a category you choose**, with what
# modules 15-19 built, and package it. Two categories are graded, because they can be verified
# from outside your code:
#
# - **size**: accuracy >= 0.90 with weights of at most 8 KiB as stored (the baseline, at
#   333 KiB, does not even qualify). Think structured pruning and fine-tuning
#   (`tinytorch.compression`: `structured_prune`, `distill`), fewer bits per weight
#   (`tinytorch.quantization`, float16 storage), sparse formats.
# - **efficiency**: accuracy / sqrt(p50 ms x KiB) at least 5% above the baseline's, with
#   accuracy >= 0.90. Size counts under the root as much as latency: a smaller model is usually
#   both smaller and faster; module 19's `AutoTuner` can pick the matmul backend. Measure
#   before you believe: a single query is mostly Python overhead, and module 17's int8 layers
#   quantize each input and rescale each output in numpy, so on some machines int8 answers a
#   query more slowly than float32 and loses in efficiency; the cell after your entry measures
#   both on yours.
#
# (Speed is ranked in the arena but not graded here: a `train()` that quietly loads the shipped
# weights would "train" in no time, and only an instructor reading the code can tell. Innovation
# points are awarded by an instructor.)
#
# Write your entry as the **source of a `submission.py`** in the string `ENTRY_SOURCE`: one
# subclass of `PretrainedBaseline` that sets `team`, `category` ("size" or "efficiency"),
# `tags` and `description`, and overrides `optimize()` (runs after `start_from_pretrained`)
# and, if you store weights differently, `state()` / `load_state()` (and `build_model()` if
# the architecture changes: `load_state` rebuilds the model from it). A starting point:
#
# ```python
# ENTRY_SOURCE = """
# import numpy as np
#
#
# class MyEntry(PretrainedBaseline):
#     team = "my-team"
#     category = "size"
#     tags = ("pruning", "fp16")
#     description = "What I did, in a sentence or two."
#
#     def optimize(self):
#         x, y = self.data  # the training digits, for calibration or fine-tuning
#         ...               # change self.model
# """
# ```
#
# The cells after it build the package exactly as the arena will read it: a fresh instance,
# `start_from_pretrained`, your `optimize()`, `package_submission` (source, `weights/`,
# `submission.yaml`), zipped. The package is then loaded again from its files alone, like the
# arena's inference run does, and measured against the baseline. The notebook starts the file
# with `from tinytorch.competition import CompetitionSubmission, PretrainedBaseline`
# (`ENTRY_IMPORTS`); in this notebook that name means the code *you* wrote above (`load_entry`
# below arranges it), so your entry runs on your own build. Import anything else you use.

# %%
#| export
class PretrainedBaseline(CompetitionSubmission):
    """The competition's baseline: the shipped 64-256-256-10 digits MLP, stored as float32."""

    team = "baseline"
    category = "efficiency"
    tags = ("mlp", "pretrained", "float32")
    description = "The shipped pretrained 64-256-256-10 MLP (tinytorch.core.pretrained), float32."
    pretrained = "digits_mlp_256"  # load_pretrained(name): the weights shipped with the library
    hidden = 256  # width of both hidden layers (build_model, so load_state rebuilds the model)

    def build_model(self) -> Module:
        h = self.hidden
        return Sequential(
            Linear(INPUT_DIM, h), ReLU(), Linear(h, h), ReLU(), Linear(h, NUM_CLASSES)
        )

    def start_from_pretrained(self, x: np.ndarray, y: np.ndarray):
        """model = the shipped weights (no training); keep (x, y) for `optimize()`. Returns self."""
        from tinytorch.core.pretrained import load_pretrained

        x, y = np.asarray(x, dtype=np.float32), np.asarray(y)
        if x.ndim != 2 or y.shape != (len(x),):
            raise ValueError(f"x must be (n, features) and y (n,), got {x.shape} and {y.shape}")
        self.model = load_pretrained(self.pretrained)
        self.data = (x, y)
        return self


# %%
import builtins
import types

import yaml


def load_entry(source: str, filename: str = SOURCE_FILE) -> type:
    """The CompetitionSubmission subclass defined by `source` (a submission.py), run against
    the definitions of THIS notebook: `from tinytorch.competition import X` inside it gets your X."""
    mine = types.ModuleType("tinytorch.competition")
    mine.__dict__.update({k: v for k, v in globals().items() if k in __all__ or k.isupper()})
    real_import = builtins.__import__

    def entry_import(name, globals=None, locals=None, fromlist=(), level=0):
        if name == "tinytorch.competition" and level == 0 and fromlist:
            return mine
        return real_import(name, globals, locals, fromlist, level)

    namespace = {"__name__": "submission", "__file__": filename,
                 "__builtins__": {**vars(builtins), "__import__": entry_import}}
    exec(compile(source, filename, "exec"), namespace)
    found = [v for v in namespace.values() if isinstance(v, type) and v.__module__ == "submission"
             and issubclass(v, CompetitionSubmission)]
    if len(found) != 1:
        raise ValueError(f"{filename} must define exactly one CompetitionSubmission subclass, "
                         f"found {[c.__name__ for c in found]}")
    return found[0]


# the first lines of your submission.py (the arena imports the file on its own)
ENTRY_IMPORTS = (
    '"""A competition entry written in competition.ipynb (ENTRY_SOURCE)."""\n\n'
    "from tinytorch.competition import CompetitionSubmission, PretrainedBaseline  # noqa: F401\n"
)


def entry_from_package(folder) -> CompetitionSubmission:
    """A fresh instance of a package's entry, holding only what its files hold."""
    folder = Path(folder)
    cls = load_entry((folder / SOURCE_FILE).read_text(encoding="utf-8"), str(folder / SOURCE_FILE))
    fresh = cls()
    fresh.load(folder / WEIGHTS_DIR)
    return fresh


# %% nbgrader={"grade": false, "grade_id": "my_entry", "locked": false, "schema_version": 3, "solution": true, "task": false}
### BEGIN SOLUTION
ENTRY_SOURCE = """
# Size: the shipped baseline with 232 of 256 units per hidden layer pruned, fine-tuned, fp16.
import numpy as np

from tinytorch.compression import structured_prune
from tinytorch.core.data import DataLoader, TensorDataset
from tinytorch.core.losses import cross_entropy
from tinytorch.core.tensor import Tensor  # the autograd array of the core library


class PrunedFp16(PretrainedBaseline):
    team = "pruned-fp16"
    category = "size"
    tags = ("structured-pruning", "fine-tuning", "fp16")
    description = (
        "The pretrained 64-256-256-10 MLP, L1 structured pruning to 24 units per hidden layer "
        "(module 18), 6 epochs of fine-tuning, weights stored as float16."
    )
    hidden = 24  # units kept per hidden layer; build_model and load_state use it
    fine_tune_epochs = 6

    def optimize(self):
        self.model = structured_prune(self.model, 1 - self.hidden / 256)  # (64, 24, 24, 10)
        images, labels = self.data
        optimizer = self.build_optimizer(self.model)
        self.model.train()
        for epoch in range(self.fine_tune_epochs):
            batches = DataLoader(TensorDataset(images, labels), batch_size=64, shuffle=True,
                                 seed=epoch)
            for xb, yb in batches:
                step_loss = cross_entropy(self.model(Tensor(xb)), yb)
                optimizer.zero_grad()
                step_loss.backward()
                optimizer.step()
        self.model.eval()

    def state(self):
        return {name: value.astype(np.float16) for name, value in super().state().items()}

    def load_state(self, arrays):
        super().load_state({name: np.asarray(v, np.float32) for name, v in arrays.items()})
"""
### END SOLUTION

# %%
with needs_exercises():
    if "ENTRY_SOURCE" not in globals():
        raise RuntimeError("complete exercise 12, `my_entry` (ENTRY_SOURCE), first")
    ENTRY_DIR = Path(tempfile.mkdtemp(prefix="my-entry-"))
    (ENTRY_DIR / "src").mkdir()
    (ENTRY_DIR / "src" / SOURCE_FILE).write_text(ENTRY_IMPORTS + ENTRY_SOURCE, encoding="utf-8")
    _t0 = time.perf_counter()
    entry = load_entry(ENTRY_IMPORTS + ENTRY_SOURCE)().start_from_pretrained(X_TRAIN, Y_TRAIN)
    entry.optimize()
    ENTRY_PACKAGE = package_submission(entry, ENTRY_DIR / "src" / SOURCE_FILE, ENTRY_DIR / "package")
    ENTRY_ZIP = Path(shutil.make_archive(str(ENTRY_DIR / "entry"), "zip", ENTRY_PACKAGE))
    print(f"{type(entry).__name__}: optimized and packaged in {time.perf_counter() - _t0:.2f} s")
    for _f in sorted(ENTRY_PACKAGE.rglob("*")):
        if _f.is_file():
            print(f"  {_f.relative_to(ENTRY_PACKAGE)}: {_f.stat().st_size} bytes")

# %% nbgrader={"grade": true, "grade_id": "entry_package", "locked": true, "points": 2, "schema_version": 3, "solution": false, "task": false}
"""Your entry is a valid package: its metadata, its source, its weights; a graded category."""
require("ENTRY_PACKAGE", step="run the cell that builds your package (after exercise 12, `my_entry`)")
_meta = yaml.safe_load((ENTRY_PACKAGE / METADATA_FILE).read_text(encoding="utf-8"))
assert check_metadata(_meta) == [], f"{METADATA_FILE}: {check_metadata(_meta)}"
assert _meta["category"] in ("size", "efficiency"), (
    f"choose category 'size' or 'efficiency' for the graded entry, not {_meta['category']!r}"
)
assert _meta["team"] != "baseline", "give your entry a team name of its own"
assert sorted(p.name for p in ENTRY_PACKAGE.iterdir()) == sorted(
    [METADATA_FILE, SOURCE_FILE, WEIGHTS_DIR]
), f"a package holds {SOURCE_FILE}, {METADATA_FILE} and {WEIGHTS_DIR}/ only"
_fresh = entry_from_package(ENTRY_PACKAGE)
check_scores(_fresh.predict(X_TEST[:1]), 1)  # it loads from its own files and answers

### BEGIN HIDDEN TESTS
from tito.probe import probe as _probe

with _probe("20_competition", "entry_package") as _p:
    _p.record("package", lambda: np.frombuffer(ENTRY_ZIP.read_bytes(), dtype=np.uint8))
### END HIDDEN TESTS

# %% [markdown]
# Where does it stand? The cell below loads a fresh copy of your entry from its package and
# the baseline from the shipped weights, measures both the way the arena does (accuracy on the
# test digits, stored bytes, MLPerf single-stream p50), and scores them with *your*
# `category_score` and `compare_to_baseline`.

# %%
require("ENTRY_PACKAGE", "_meta", step="run the cell that builds your package (after exercise 12, `my_entry`) and the `entry_package` check")
with needs_exercises():
    _baseline = PretrainedBaseline().start_from_pretrained(X_TRAIN, Y_TRAIN)
    _mine = entry_from_package(ENTRY_PACKAGE)
    LOCAL = {}
    for _name, _sub in (("baseline", _baseline), (_meta["team"], _mine)):
        _lat = single_stream(_sub.predict, X_TEST, warmup=20, repeats=3)
        _acc = float((_lat.outputs.argmax(axis=1) == Y_TEST).mean())
        LOCAL[_name] = Entry(_name, len(LOCAL) + 1, acc_public=_acc, acc_private=_acc,
                             latency_p50_ms=_lat.p50_ms, latency_p90_ms=_lat.p90_ms,
                             model_bytes=stored_bytes(_sub.state()), category=_sub.category)
    _rules = CompetitionRules()
    print(f"{'':>14} {'accuracy':>9} {'p50 ms':>8} {'KiB':>8} {'size score':>22} {'efficiency':>12}")
    for _name, _e in LOCAL.items():
        _size = category_score(_e, "size", _rules)
        _eff = category_score(_e, "efficiency", _rules)
        print(f"{_name:>14} {_e.acc_public:9.3f} {_e.latency_p50_ms:8.4f} {_e.model_bytes / 1024:8.1f} "
              f"{_size[0] if _size[0] is not None else _size[1]:>22} "
              f"{_eff[0] if _eff[0] is not None else float('nan'):12.4f}")
    print("against the baseline:", {k: (None if v is None else round(v, 2)) for k, v in
                                    compare_to_baseline(LOCAL[_meta["team"]], LOCAL["baseline"]).items()})

# %% nbgrader={"grade": true, "grade_id": "entry_beats_baseline", "locked": true, "points": 3, "schema_version": 3, "solution": false, "task": false}
"""Your packaged entry beats the baseline in its category (measured in the cell above)."""
require("LOCAL", step="run the cell above, which measures your entry and the baseline,")
_me, _base = LOCAL[_meta["team"]], LOCAL["baseline"]
assert _me.acc_public >= _rules.target_accuracy, (
    f"your entry reaches accuracy {_me.acc_public:.3f}, below the target {_rules.target_accuracy}"
)
if _meta["category"] == "size":
    assert _me.model_bytes <= _rules.size_limit_bytes, (
        f"size: {_me.model_bytes} bytes of weights, over the {_rules.size_limit_bytes}-byte limit"
    )
else:
    _gain = category_score(_me, "efficiency", _rules)[0] / category_score(_base, "efficiency", _rules)[0]
    assert _gain >= 1.05, f"efficiency: {_gain:.2f}x the baseline's; beat it by at least 5%"

### BEGIN HIDDEN TESTS
from tito.probe import probe as _probe

with _probe("20_competition", "entry_beats_baseline") as _p:
    _fresh = entry_from_package(ENTRY_PACKAGE)
    _x = _p.inputs["x"]
    _answers = []
    for _pass in range(5):  # every query alone, five times: the judge times the cell
        _answers = [_fresh.predict(_x[_i : _i + 1]) for _i in range(len(_x))]
    _p.record("scores", lambda: np.concatenate([np.asarray(_a) for _a in _answers], axis=0))
    _p.record("package", lambda: np.frombuffer(ENTRY_ZIP.read_bytes(), dtype=np.uint8))
### END HIDDEN TESTS

# %% [markdown]
# ### What the grade can and cannot verify
#
# The two cells above are judged outside your notebook's process, from plain data: the bytes of
# your package's zip (read, never run: its files, `submission.yaml`, that `submission.py`
# compiles, the `.npz` weights without pickles, their size) and your packaged entry's answers to
# digits the judge drew for this grading (shuffled, with noise below half a pixel step), scored
# against labels that never enter your process. For efficiency, the judge charges the whole
# grade cell's wall time, measured from outside, to your 5 x 360 single queries: an upper bound
# on your latency (so there your entry need only beat the baseline's efficiency; your notebook's
# in-process check asks for 5% more); the baseline's latency is measured by the judge itself.
#
# What remains possible, and would take an instructor reading the code to catch: the test
# digits ship with the library, so an "entry" could memorise them (a nearest-neighbour lookup
# survives the noise); `predict` could behave differently outside the arena; and the arena's
# training run (speed) cannot tell training from loading weights shipped with the library.
# The arena's leaderboard is kept by instructors, who read the packages that win.

# %% [markdown]
# ## The arena: running untrusted packages
#
# Everything so far runs in your own process. A competition server cannot do that: a
# submission is *untrusted code*. It may crash, hang, eat all memory, print gigabytes, or
# simply read the test labels and "predict" them. The arena therefore runs each package in its
# **own subprocess**, behind an **OS boundary** where the machine has one (Linux namespaces
# through bubblewrap: its own file system view, no network, its own process IDs):
#
# - a fresh temporary directory holding a copy of the package and the test **inputs** (a
#   shuffled `.npy`); the labels never leave the scoring process, and the bundled test data is
#   not even in the sandbox's view of the file system;
# - wall-time and CPU-time limits, a memory limit (`RLIMIT_AS`), a file-size limit
#   (`RLIMIT_FSIZE`), a cap on printed output, killed as a whole at the end;
# - one BLAS thread, pinned to one CPU (`os.sched_setaffinity`), so runs are comparable;
# - an audit hook (`sys.addaudithook`) as a second layer, naming what was tried.
#
# Two timed runs per package: the **inference run** loads the packaged weights and measures
# `single_stream` latency and accuracy; the **training run** gets a fresh instance *without*
# the weights and times `train(x, y, budget)` for the speed category. On the course server the
# results go into a leaderboard (course staff code, `tito competition evaluate`); here you use
# the same evaluation **locally** (`tinytorch.arena.Evaluator`, which stores nothing) on three
# packages: the baseline, **your entry**, and one that overflows to NaN, then rank them with your
# `leaderboard`. The arena's runner imports `tinytorch.competition` from the installed library,
# in a process of its own: on a student build, export this notebook first (`python -m
# tinytorch.student export competition.ipynb`) so that it runs your code. Your own code on your
# own machine may run without the OS boundary (the cell says which one it used); the course's
# arena never does. (These cells are demos: grading skips them.)

# %% tags=["demo"]
import importlib
import textwrap

require("ENTRY_PACKAGE", "_meta", step="run the cell that builds your package (after exercise 12, `my_entry`) and the `entry_package` check")
with needs_exercises():
    from tinytorch.arena import ArenaLimits, Evaluator
    from tinytorch.arena import boundary as _boundary

    _installed = importlib.import_module("tinytorch.competition")
    if not hasattr(_installed, "PretrainedBaseline"):
        raise RuntimeError(
            "the arena runs each package in its own process with the installed tinytorch, whose "
            "tinytorch.competition does not have PretrainedBaseline yet: export this notebook first "
            "(`python -m tinytorch.student export competition.ipynb`), restart, and run again"
        )
    _BROKEN_NAN = textwrap.dedent("""
    import numpy as np

    from tinytorch.competition import PretrainedBaseline


    class Overflows(PretrainedBaseline):
        team = "broken_nan"
        tags = ("broken", "nan")
        description = "Softmax without subtracting the max, at temperature 1e-3."

        def predict(self, x):
            with np.errstate(over="ignore", invalid="ignore"):
                e = np.exp(super().predict(x).astype(np.float32) * 1000.0)
                return e / e.sum(axis=1, keepdims=True)
    """)
    _packages = {_meta["team"]: ENTRY_PACKAGE}
    for _team, _code in (("baseline", "from tinytorch.competition import PretrainedBaseline\n\n\n"
                                      "class Baseline(PretrainedBaseline):\n    pass\n"),
                         ("broken_nan", _BROKEN_NAN)):
        (ENTRY_DIR / _team).mkdir()
        (ENTRY_DIR / _team / SOURCE_FILE).write_text(_code, encoding="utf-8")
        _sub = load_entry(_code)().start_from_pretrained(X_TRAIN, Y_TRAIN)
        _packages[_team] = package_submission(_sub, ENTRY_DIR / _team / SOURCE_FILE,
                                              ENTRY_DIR / _team / "package")
    _why_not = _boundary.probe()  # None when an OS boundary can be started on this machine
    print("OS boundary:", "bubblewrap namespaces" if _why_not is None else f"none here ({_why_not})")
    _evaluator = Evaluator(CompetitionRules(), ArenaLimits(wall_seconds=20, repeats=3),
                           sandboxed=_why_not is None)
    _arena_entries = []
    for _sid, (_team, _pkg) in enumerate(_packages.items(), start=1):
        _e = _evaluator.evaluate(_pkg)
        _e.submission_id = _sid
        _arena_entries.append(_e)
        if _e.status == "ok":
            print(f"{_team:>14}: ok, public accuracy {_e.acc_public:.3f}, p50 {_e.latency_p50_ms:.4f}"
                  f" ms, {_e.model_bytes} bytes, train() from scratch {_e.train_seconds:.2f} s")
        else:
            print(f"{_team:>14}: {_e.status}: {_e.error}")
    for _cat, _standings in leaderboard(_arena_entries, CompetitionRules()).items():
        print(f"{_cat:>10}: " + ", ".join(
            f"{s.rank}. {s.team}" if s.rank else f"{s.team} (unranked: {s.reason})" for s in _standings
        ))

# %% [markdown]
# The report the arena writes for each submission compares it with the baseline's run. Here
# is yours:

# %% tags=["demo"]
require("_arena_entries", step="run the arena cell above")
with needs_exercises():
    _by_team = {e.team: e for e in _arena_entries}
    if _by_team[_meta["team"]].status == "ok" and _by_team["baseline"].status == "ok":
        _cmp = compare_to_baseline(_by_team[_meta["team"]], _by_team["baseline"])
        print({k: (None if v is None else round(v, 3)) for k, v in _cmp.items()})
        plot_comparison(_cmp, title=f"{_meta['team']} vs the baseline (arena)")
        plt.tight_layout()
        plt.show()
    shutil.rmtree(ENTRY_DIR, ignore_errors=True)  # the packages and their sources

# %% [markdown]
# ## Reflection questions
#
# 1. Your single-query p50 is far above the per-image time of a 360-image batch. Which
#    deployment does each number describe, and why must a latency leaderboard fix the batch
#    size?
# 2. A team prunes 50% of its weights and stores them as float32 values plus int32 indices.
#    Does its size score improve? At what sparsity would it start to?
# 3. Why does the arena time `train()` on a fresh instance *without* the packaged weights?
#    What would a team do if it did not?
# 4. The winner's curse demo picked a seed by its public score. Why is the private score the
#    honest estimate, and what happens if the private part is too small?
# 5. The efficiency formula multiplies latency and size under a square root. Propose a
#    different formula and give one submission it would rank differently.
# 6. The arena runs each package behind an OS boundary (namespaces) plus an audit hook. Name
#    one thing a determined attacker could still try, and what layer (seccomp, a VM, separate
#    machines) stops it.
