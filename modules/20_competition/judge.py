"""Judges of module 20's grade cells: the trusted half of each check (see tito/judging.py).

Instructor-only: never released, never inside a sandbox. Each grade cell's hidden probe drives
the student's code on the inputs drawn here (a fresh seed per grading) and sends back what it
produced, as plain data; the judges below hold the reference and decide, in the grading worker.

The references are written out here (a few lines each) rather than imported from
`tinytorch.competition`, so a judge depends on nothing the graded module defines. The student's
own entry (the last two cells) is judged from its package *bytes* (read, never run) and from
predictions on inputs drawn here, scored against labels that never enter the sandbox; its
latency is the cell's wall time, measured by the worker.

What these judges cannot see: anything the student's process reports about itself. The
single_stream and train() checks drive the student's functions with a fake clock, a counting
optimizer and sleeps made in that process, so a function that recognises the probe's callables
can answer differently (the answers are still checked against numbers drawn fresh here). The
entry's answers come from code that ran there: the test digits ship with the library, so an
entry can memorise them (a nearest-neighbour lookup survives the noise added here), and its
predict() can behave differently under grading. Its latency is bounded from above by the
cell's wall time, never measured from below. Speed (train() from scratch) is not graded: loading
shipped weights cannot be told from training without reading the code.
"""

from __future__ import annotations

import io
import math
import re
import zipfile
from pathlib import PurePosixPath

import numpy as np

from tito.judging import Judges, expect
from tito.probe import RAISED

judges = Judges("20_competition")

CATEGORIES = ("speed", "size", "efficiency", "innovation")
GRADED_CATEGORIES = ("size", "efficiency")  # verifiable from outside (see the entry cells)
TARGET = 0.90  # CompetitionRules().target_accuracy
SIZE_LIMIT = 8 * 1024  # CompetitionRules().size_limit_bytes
ENTRY_QUERIES = 5 * 360  # single queries the entry answers in the timed probe (5 passes)
EFFICIENCY_MARGIN = 1.05  # in-process (local) comparisons: beat the baseline by 5%


def _raised(value) -> bool:
    return isinstance(value, dict) and RAISED in value


def _ok(outputs: dict, name: str, what: str):
    """Output ``name``, or fail saying what raised (the probe's own driver counts too)."""
    for key in (name, "_run"):
        value = outputs.get(key)
        if _raised(value) and "NotImplementedError" in value[RAISED]:
            raise AssertionError(
                f"{what}: not implemented yet (finish this exercise and the ones it uses; "
                "your notebook names them)"
            )
    if name not in outputs and _raised(outputs.get("_run")):
        return expect.returned(outputs, "_run", what)
    return expect.returned(outputs, name, what)


# ---- 1. percentile ---------------------------------------------------------------------------
def _nearest_rank(values, q: float) -> float:
    ordered = sorted(float(v) for v in values)
    if q == 0:
        return ordered[0]
    return ordered[math.ceil(q / 100 * len(ordered)) - 1]


@judges.inputs("percentile_correct")
def _percentile_inputs(rng: np.random.Generator) -> dict:
    sizes = [1, 2, 3, int(rng.integers(4, 12)), int(rng.integers(90, 130)), 20]
    cases = []
    for n in sizes:
        if rng.random() < 0.5:  # ties: latencies on a coarse clock repeat
            v = rng.integers(0, max(2, n // 3), n).astype(np.float64) / 10
        else:
            v = rng.permutation(rng.standard_normal(n) * 5 + 3)
        qs = [0, 100, 50, 90, float(rng.uniform(0.5, 99.5)), int(rng.integers(1, 100))]
        cases.append({"values": v, "qs": qs})
    # Distinct values with ranks q/100*n that fall between two integers, once just above one
    # (ceil and round disagree) and once just below the next (ceil and floor disagree): drawn
    # at random, the cases above can all land on ties or whole ranks. And whole ranks (n a
    # multiple of 4, q 25 and 75: exact in binary), where floor + 1 and ceil disagree.
    n = 4 * int(rng.integers(2, 10))
    lo, hi = float(rng.uniform(0.1, 0.4)), float(rng.uniform(0.6, 0.9))
    whole = int(rng.integers(1, n - 1))
    cases.append({
        "values": rng.permutation(np.arange(n) * 1.5 + rng.uniform(0, 1)),
        "qs": [100 * (whole + lo) / n, 100 * (whole + hi) / n, 25, 75],
    })
    return {"cases": cases, "bad": [[[], 50], [[1.0], -1], [[1.0], 101], [[1.0, math.nan], 50]]}


def _ties(v) -> str:
    return "unsorted, with ties" if len(set(np.asarray(v).tolist())) < len(v) else "unsorted"


@judges.judge("percentile_correct")
def _percentile_judge(inputs: dict, outputs: dict, seconds):
    for i, case in enumerate(inputs["cases"]):
        v = case["values"]
        for j, q in enumerate(case["qs"]):
            got = _ok(outputs, f"p{i}_{j}", f"percentile of {len(v)} values at q={q:g}")
            expect.that(
                isinstance(got, (int, float)) and not isinstance(got, bool),
                f"percentile of {len(v)} values at q={q:g} should return a number",
            )
            expect.that(
                float(got) == _nearest_rank(v, q),
                f"percentile of {len(v)} values ({_ties(v)}) at q={q:g} is not the nearest-rank "
                "value",
            )
    for k, (values, q) in enumerate(inputs["bad"]):
        expect.raised(outputs, f"bad{k}", ValueError, what=f"percentile({values}, {q})")


# ---- 2. check_scores ---------------------------------------------------------------------------
# each case: how the probe builds the answer, the rows asked for, and the kind it must get
def _scores_case(kind, shape, dtype, fill, rows, want, query=None, num_classes=10):
    return {
        "kind": kind,
        "shape": list(shape),
        "dtype": dtype,
        "fill": fill,
        "rows": rows,
        "want": want,
        "query": query,
        "num_classes": num_classes,
    }


@judges.inputs("check_scores_correct")
def _scores_inputs(rng: np.random.Generator) -> dict:
    r = int(rng.integers(2, 6))
    q = int(rng.integers(1, 400))
    bad_row, bad_col = int(rng.integers(0, r)), int(rng.integers(0, 10))
    cases = [
        _scores_case("array", (r, 10), "float32", 0.0, r, "ok"),
        _scores_case("array", (r, 10), "float64", 1.5, r, "ok"),
        _scores_case("array", (r, 10), "float16", -2.0, r, "ok"),
        _scores_case("array", (r, 7), "float32", 0.0, r, "ok", num_classes=7),
        _scores_case("list", (r, 10), "float64", 0.0, r, "wrong_dtype"),
        _scores_case("array", (r * 10,), "float32", 0.0, r, "wrong_shape"),
        _scores_case("array", (10, r), "float32", 0.0, r, "wrong_shape"),
        _scores_case("array", (r + 1, 10), "int64", 0.0, r, "wrong_shape"),  # shape first
        _scores_case("array", (r, 10), "int64", 0.0, r, "wrong_dtype"),
        _scores_case("array", (r, 10), "bool", 0.0, r, "wrong_dtype"),
        _scores_case("array", (r, 10), "object", 0.0, r, "wrong_dtype"),
        _scores_case("array", (r, 10), "float32", "nan", r, "nan", query=q),
        _scores_case("array", (r, 10), "float64", "inf", r, "nan", query=q),
        _scores_case("array", (r, 10), "float32", "-inf", r, "nan"),
    ]
    return {"cases": cases, "bad_at": [bad_row, bad_col]}


@judges.judge("check_scores_correct")
def _scores_judge(inputs: dict, outputs: dict, seconds):
    for i, case in enumerate(inputs["cases"]):
        what = (
            f"check_scores of a {case['kind']} of {case['dtype']} {tuple(case['shape'])} "
            f"({case['fill']}) for {case['rows']} rows of {case['num_classes']} classes"
        )
        got = _ok(outputs, f"case{i}", what)
        expect.that(isinstance(got, list) and len(got) == 2, f"{what}: no result")
        kind, text = got
        if case["want"] == "ok":
            expect.that(kind == "ok", f"{what} should be accepted, got {kind}: {text}")
            expect.that(text is True, f"{what}: a valid answer must be returned unchanged")
            continue
        expect.that(kind == case["want"], f"{what}: should fail as {case['want']!r}, got {kind!r}")
        if case["want"] == "wrong_shape":
            expect.that(
                str(tuple(case["shape"])) in text and f"({case['rows']}, " in text,
                f"{what}: the message must name the shape returned and the one expected",
            )
        if case["query"] is not None:
            expect.that(str(case["query"]) in text, f"{what}: the message must name the query")


# ---- 3. single_stream --------------------------------------------------------------------------
@judges.inputs("single_stream_correct")
def _stream_inputs(rng: np.random.Generator) -> dict:
    n, warmup, repeats = int(rng.integers(3, 9)), int(rng.integers(1, 6)), int(rng.integers(3, 6))
    calls = warmup + n * repeats
    durations = rng.integers(1, 50, calls).astype(np.float64)  # ms per predict call
    # each pass on its own level (uneven steps, random order): pooling the passes, or taking
    # their mean instead of their median, gives a different number
    levels = rng.permutation(np.array([0.0, 200.0, 500.0, 900.0, 1400.0])[:repeats])
    for r in range(repeats):
        durations[warmup + r * n : warmup + (r + 1) * n] += levels[r]
    durations[:warmup] += 1000.0  # slow warm-up: timing it moves every percentile
    return {
        "inputs": rng.standard_normal((n, int(rng.integers(2, 6)))).astype(np.float32),
        "warmup": warmup,
        "repeats": repeats,
        "durations_ms": durations,
        "bad_call": int(rng.integers(warmup + n, calls)),  # a NaN answer in a later pass
    }


@judges.judge("single_stream_correct")
def _stream_judge(inputs: dict, outputs: dict, seconds):
    n, warmup, repeats = len(inputs["inputs"]), inputs["warmup"], inputs["repeats"]
    d = inputs["durations_ms"]
    res = _ok(
        outputs, "result", f"single_stream over {n} queries, warm-up {warmup}, {repeats} passes"
    )
    calls = _ok(outputs, "calls", "single_stream's calls of predict")
    expect.that(
        calls["count"] == warmup + n * repeats,
        f"single_stream should call predict {warmup} + {repeats} x {n} times "
        f"(warm-up, then every query once per pass); it called it {calls['count']} times",
    )
    expect.that(calls["all_single"], "every query must be one input of shape (1, features)")
    expect.that(
        calls["order_ok"],
        "each pass must send the inputs in order, one at a time; the warm-up cycles through them",
    )
    p50s, p90s = [], []
    for r in range(repeats):
        pass_ms = d[warmup + r * n : warmup + (r + 1) * n]
        p50s.append(_nearest_rank(pass_ms, 50))
        p90s.append(_nearest_rank(pass_ms, 90))
    ctx = f"with a fake clock ({n} queries, {warmup} warm-up, {repeats} passes)"
    for name, want in (("repeats_p50_ms", p50s), ("repeats_p90_ms", p90s)):
        got = res.get(name)
        expect.that(
            isinstance(got, list) and len(got) == repeats,
            f"{name} should hold one value per timed pass {ctx}",
        )
        expect.that(
            np.allclose(np.asarray(got, float), want, rtol=1e-9, atol=1e-9),
            f"{name} are not the per-pass percentiles in milliseconds {ctx} (is the "
            "warm-up untimed, and every query timed on its own?)",
        )
    for name, want in (("p50_ms", float(np.median(p50s))), ("p90_ms", float(np.median(p90s)))):
        got = res.get(name)
        expect.that(
            isinstance(got, (int, float)) and math.isclose(got, want, rel_tol=1e-9),
            f"{name} is not the median of the passes' values {ctx}",
        )
    expect.that(
        res.get("queries") == n and res.get("warmup") == warmup,
        "queries and warmup must be what was run",
    )
    out = res.get("outputs")
    want_out = np.repeat(inputs["inputs"][:, :1], 10, axis=1)
    expect.that(
        isinstance(out, np.ndarray) and out.shape == (n, 10) and np.allclose(out, want_out),
        "outputs must be the first pass's answers, stacked in query order into (queries, classes)",
    )
    msg = expect.raised(
        outputs,
        "nan_later",
        "PredictionError",
        what="single_stream with a NaN answer in a later pass",
    )
    bad_query = (inputs["bad_call"] - warmup) % n
    expect.that(
        f"query {bad_query}" in msg,
        "single_stream must check every answer of every "
        "pass with check_scores(..., query=i), naming the query",
    )


# ---- 4. stored_bytes ----------------------------------------------------------------------------
@judges.inputs("stored_bytes_correct")
def _bytes_inputs(rng: np.random.Generator) -> dict:
    dicts = []
    for _ in range(4):
        arrays = {}
        for j in range(int(rng.integers(1, 5))):
            dtype = ["float32", "float16", "int8", "uint16", "float64", "int64"][
                int(rng.integers(6))
            ]
            shape = tuple(int(s) for s in rng.integers(1, 40, int(rng.integers(0, 3))))
            arrays[f"w{j}"] = (rng.standard_normal(shape) * 50).astype(dtype)
        dicts.append(arrays)
    dicts.append({"zeros": np.zeros(int(rng.integers(500, 3000)), np.float32)})  # compressible
    return {"dicts": dicts}


@judges.judge("stored_bytes_correct")
def _bytes_judge(inputs: dict, outputs: dict, seconds):
    for i, arrays in enumerate(inputs["dicts"]):
        buf = io.BytesIO()
        np.savez(buf, **arrays)
        got = _ok(outputs, f"d{i}", f"stored_bytes of {len(arrays)} arrays")
        expect.that(
            got == len(buf.getvalue()),
            f"stored_bytes of {len(arrays)} array(s) "
            f"({', '.join(str(a.dtype) for a in arrays.values())}) is not the size of the "
            "np.savez file (uncompressed, headers included)",
        )
    for k in range(3):
        expect.raised(outputs, f"bad{k}", ValueError, what="stored_bytes of an invalid dict")


# ---- 5. public/private split ---------------------------------------------------------------------
@judges.inputs("public_private_correct")
def _split_inputs(rng: np.random.Generator) -> dict:
    cases = [
        [int(rng.integers(300, 400)), 0.3],
        [11, 0.5],
        [int(rng.integers(20, 60)), 0.25],
        [2, 0.5],
        [int(rng.integers(5, 15)), 0.9],
    ]
    for c in cases:
        c.append(int(rng.integers(0, 2**31)))
    n = int(rng.integers(40, 90))
    labels = rng.integers(0, 10, n)
    pred = np.where(rng.random(n) < 0.8, labels, rng.integers(0, 10, n))
    pub = np.sort(rng.choice(n, n // 3, replace=False)).astype(np.int64)
    priv = np.setdiff1d(np.arange(n), pub).astype(np.int64)
    correct = pred == labels
    if correct[pub].mean() == correct[priv].mean():  # equal parts: the whole set's accuracy
        i = pub[0]  # would pass for both; make them differ
        pred[i] = labels[i] if not correct[i] else (labels[i] + 1) % 10
    return {
        "cases": cases,
        "bad": [[10, 0.0], [10, 1.0], [1, 0.5], [3, 0.1]],
        "pred": pred,
        "labels": labels,
        "pub": pub,
        "priv": priv,
    }


@judges.judge("public_private_correct")
def _split_judge(inputs: dict, outputs: dict, seconds):
    for i, (n, frac, _seed) in enumerate(inputs["cases"]):
        what = f"public_private_split({n}, {frac})"
        a = _ok(outputs, f"split{i}", what)
        again = _ok(outputs, f"again{i}", what)
        other = _ok(outputs, f"other{i}", what)
        expect.that(isinstance(a, list) and len(a) == 2, f"{what} must return (public, private)")
        pub, priv = a
        for part, name in ((pub, "public"), (priv, "private")):
            expect.that(
                isinstance(part, np.ndarray) and part.dtype == np.int64 and part.ndim == 1,
                f"{what}: the {name} indices must be a 1-D int64 array",
            )
            expect.that(
                bool(np.all(np.diff(part) > 0)),
                f"{what}: the {name} indices must be sorted, without repeats",
            )
        expect.that(
            len(pub) == round(n * frac),
            f"{what}: the public part must hold round(n * public_fraction) indices",
        )
        expect.that(
            np.array_equal(np.sort(np.concatenate([pub, priv])), np.arange(n)),
            f"{what}: the two parts must partition range(n)",
        )
        expect.that(
            all(np.array_equal(x, y) for x, y in zip(a, again, strict=True)),
            f"{what}: the same seed must give the same split",
        )
        if n >= 20:
            expect.that(
                not np.array_equal(pub, other[0]),
                f"{what}: a different seed must give a different split",
            )
            expect.that(
                not np.array_equal(pub, np.arange(len(pub))),
                f"{what}: the split must be random, not the first rows",
            )
    for k, (n, frac) in enumerate(inputs["bad"]):
        expect.raised(outputs, f"bad{k}", ValueError, what=f"public_private_split({n}, {frac})")
    correct = inputs["pred"] == inputs["labels"]
    want = [float(correct[inputs["pub"]].mean()), float(correct[inputs["priv"]].mean())]
    got = _ok(outputs, "acc", "split_accuracies")
    expect.that(
        isinstance(got, list)
        and len(got) == 2
        and all(math.isclose(float(g), w, rel_tol=1e-12) for g, w in zip(got, want, strict=True)),
        "split_accuracies must return (accuracy on the public part, accuracy on the private part)",
    )
    expect.raised(outputs, "acc_bad", ValueError, what="split_accuracies of mismatched shapes")


# ---- 6. CompetitionSubmission.train -------------------------------------------------------------
def _capped_inputs(rng: np.random.Generator) -> dict:
    n, holdout = int(rng.integers(10, 26)) * 10, float(rng.choice([0.1, 0.2]))
    if n * holdout < 16:
        holdout = 0.2  # n >= 100: 20 or more held out
    # a batch no larger than the held-out part: training on it too takes more steps
    sizes = [b for b in (16, 32, 48) if b <= n * holdout]
    return {"n": n, "epochs": int(rng.integers(2, 4)), "batch_size": int(rng.choice(sizes)),
            "holdout": holdout, "seed": int(rng.integers(0, 1000))}


@judges.inputs("submission_train_correct")
def _train_inputs(rng: np.random.Generator) -> dict:
    return {
        "budget": {
            "n": 1000,
            "batch_size": 16,
            "sleep": 0.02,
            "budget": float(rng.uniform(0.12, 0.2)),
            "seed": int(rng.integers(0, 1000)),
        },
        "capped": _capped_inputs(rng),
        "tuned": {
            "n": int(rng.integers(5, 16)) * 10,
            "hidden": int(rng.integers(4, 12)),
            "holdout": float(rng.choice([0.1, 0.2])),
        },
        "target": {
            "stop": float(rng.choice([0.85, 0.9])),
            "seed": int(rng.integers(0, 100)),
            "x": _noisy_test_images(rng),
        },
    }


@judges.judge("submission_train_correct")
def _train_judge(inputs: dict, outputs: dict, seconds):
    b = inputs["budget"]
    rep = _ok(outputs, "budget", "train() of an endless run")
    steps_allowed = b["budget"] / b["sleep"] + 2
    expect.that(
        rep["stopped"] == "budget",
        "an endless run (no target, 1000 epochs) must stop on the budget; "
        f"stopped={rep['stopped']!r}",
    )
    expect.that(
        rep["steps"] <= steps_allowed and rep["optimizer_steps"] <= steps_allowed,
        f"with {b['sleep'] * 1e3:.0f} ms per optimizer step and a {b['budget']:.2f} s budget, "
        f"train() took {rep['optimizer_steps']} steps: the clock must be checked after "
        "every batch, not only after each epoch",
    )
    expect.that(
        rep["steps"] == rep["optimizer_steps"],
        "TrainReport.steps must count the optimizer steps taken",
    )
    c = inputs["capped"]
    rep = _ok(outputs, "capped", "train() with max_epochs and no target")
    n_train = c["n"] - round(c["n"] * c["holdout"])
    want_steps = c["epochs"] * math.ceil(n_train / c["batch_size"])
    expect.that(
        rep["stopped"] == "max_epochs" and rep["epochs"] == c["epochs"],
        f"with max_epochs={c['epochs']} and no target, train() must run exactly "
        f"{c['epochs']} epochs and stop with 'max_epochs'",
    )
    expect.that(
        rep["steps"] == want_steps,
        f"{c['epochs']} epochs over {c['n']} examples with holdout_fraction="
        f"{c['holdout']} and batch_size={c['batch_size']}: wrong number of steps "
        "(hold out the fraction, then one step per mini-batch of the rest)",
    )
    same = _ok(outputs, "same_seed", "two trainings with one seed")
    expect.that(
        same["equal"],
        "the same seed must give the same weights (seed the "
        "initialisation with manual_seed(self.seed) and the shuffles with self.seed)",
    )
    expect.that(not same["other_equal"], "a different seed must give different weights")
    t = inputs["tuned"]
    tuned = _ok(outputs, "tuned", "train() with an autotuner")
    n_val = round(t["n"] * t["holdout"])
    expect.that(tuned["tuner"] == "tuner", "autotune must receive what build_autotuner returned")
    expect.that(
        tuned["sizes"] == [t["n"] - n_val, n_val],
        "autotune must get the training part and the held-out part of the data",
    )
    expect.that(0 < tuned["budget"] <= 60, "autotune must get the time left of the budget")
    expect.that(
        tuned["width"] == t["hidden"], "autotune runs before build_model, so what it sets is used"
    )
    tgt = _ok(outputs, "target", "train() on the digits with a target")
    expect.that(
        tgt["stopped"] == "target" and tgt["holdout_accuracy"] >= inputs["target"]["stop"],
        f"the baseline reaches hold-out accuracy {inputs['target']['stop']}: train() "
        f"should stop there with 'target' (stopped={tgt['stopped']!r})",
    )
    expect.that(tgt["epochs"] < 30, "train() must stop at the target, not run every epoch")
    labels = _labels_of(inputs["target"]["x"])
    scores = tgt["scores"]
    expect.that(
        isinstance(scores, np.ndarray) and scores.shape == (len(labels), 10),
        "the trained model must predict (n, 10) scores",
    )
    acc = float((scores.argmax(axis=1) == labels).mean())
    expect.that(acc >= 0.75, "the model train() produced is not accurate on unseen digits")
    expect.raised(outputs, "zero_budget", ValueError, what="train() with a zero budget")


def _digits(split: str) -> tuple[np.ndarray, np.ndarray]:
    from tinytorch.datasets import load_digits

    return load_digits(split)


def _noisy_test_images(rng: np.random.Generator) -> np.ndarray:
    """The test digits, shuffled, with noise below half a pixel step (see _labels_of)."""
    x, _ = _digits("test")
    noise = rng.uniform(-1e-3, 1e-3, x.shape).astype(np.float32)  # no exact-image lookups
    return np.ascontiguousarray(x[rng.permutation(len(x))] + noise)  # (360, 64)


def _labels_of(x: np.ndarray) -> np.ndarray:
    """The labels of the judge's inputs: each is a test image (pixels on a 1/16 grid) plus
    noise below half a grid step, so rounding finds it; the labels never leave the judge."""
    tx, ty = _digits("test")
    table = {np.round(r * 16).astype(np.int8).tobytes(): int(label) for r, label in zip(tx, ty)}
    return np.array([table[np.round(r * 16).astype(np.int8).tobytes()] for r in x])


# ---- 7. category_score -------------------------------------------------------------------------
_ENTRY_FIELDS = (
    "acc_public",
    "acc_private",
    "speed_acc_public",
    "speed_acc_private",
    "train_seconds",
    "latency_p50_ms",
    "model_bytes",
)


def _ref_score(e: dict, category: str, rules: dict, final: bool):
    """(score or None, words the reason must contain)."""
    if e["status"] != "ok":
        return None, [e["status"]]
    target = rules["target_accuracy"]
    if category == "speed":
        acc = e["speed_acc_private"] if final else e["speed_acc_public"]
        if acc is None or e["train_seconds"] is None:
            return None, []
        if acc < target:
            return None, [f"{acc:.3f}"]
        if e["train_seconds"] > rules["train_budget_seconds"]:
            return None, ["budget"]
        return float(e["train_seconds"]), []
    acc = e["acc_private"] if final else e["acc_public"]
    if acc is None:
        return None, []
    if acc < target:
        return None, [f"{acc:.3f}"]
    if category == "size":
        if e["model_bytes"] is None:
            return None, []
        if e["model_bytes"] > rules["size_limit_bytes"]:
            return None, [str(e["model_bytes"])]
        return float(acc), []
    if category == "efficiency":
        if not e["latency_p50_ms"] or not e["model_bytes"]:
            return None, []
        return float(acc / math.sqrt(e["latency_p50_ms"] * e["model_bytes"] / 1024)), []
    if e["innovation_points"] <= 0:
        return None, []
    return float(e["innovation_points"]), []


def _random_entry(rng, team: str, sid: int, target: float, rules: dict) -> dict:
    def acc():
        if rng.random() < 0.15:
            return None
        if rng.random() < 0.2:
            return target  # exactly at the target counts
        return float(np.round(rng.uniform(target - 0.1, 1.0), 3))

    e = {
        "team": team,
        "submission_id": sid,
        "status": "ok",
        "error": "",
        "acc_public": acc(),
        "acc_private": acc(),
        "speed_acc_public": acc(),
        "speed_acc_private": acc(),
        "train_seconds": None
        if rng.random() < 0.1
        else float(
            rules["train_budget_seconds"]
            if rng.random() < 0.15
            else np.round(rng.uniform(0.1, rules["train_budget_seconds"] * 1.3), 2)
        ),
        "latency_p50_ms": None if rng.random() < 0.1 else float(np.round(rng.uniform(0.01, 2), 3)),
        "model_bytes": None
        if rng.random() < 0.1
        else int(
            rules["size_limit_bytes"]
            if rng.random() < 0.15
            else rng.integers(500, rules["size_limit_bytes"] * 2)
        ),
        "innovation_points": float(rng.choice([0.0, 0.0, 1.0, 2.5])),
    }
    if rng.random() < 0.1:
        e["status"], e["error"] = str(rng.choice(["crash", "nan", "timeout"])), "boom"
    return e


def _random_rules(rng) -> dict:
    return {
        "target_accuracy": float(rng.choice([0.85, 0.9, 0.95])),
        "size_limit_bytes": int(rng.integers(2000, 9000)),
        "train_budget_seconds": float(rng.choice([5.0, 10.0, 20.0])),
    }


@judges.inputs("category_score_correct")
def _category_inputs(rng: np.random.Generator) -> dict:
    rules = _random_rules(rng)
    entries = [
        _random_entry(rng, f"t{i}", i + 1, rules["target_accuracy"], rules) for i in range(40)
    ]
    # and one that counts everywhere standing exactly on every limit (accuracy at the target,
    # training at the budget, size at the limit): a draw need not produce one
    target = rules["target_accuracy"]
    entries.append({
        **_random_entry(rng, "t40", 41, target, rules),
        "status": "ok", "error": "",
        "acc_public": target, "acc_private": target,
        "speed_acc_public": target, "speed_acc_private": target,
        "train_seconds": rules["train_budget_seconds"],
        "latency_p50_ms": float(np.round(rng.uniform(0.01, 2), 3)),
        "model_bytes": rules["size_limit_bytes"],
    })
    return {"rules": rules, "entries": entries}


@judges.judge("category_score_correct")
def _category_judge(inputs: dict, outputs: dict, seconds):
    rules = inputs["rules"]
    for i, e in enumerate(inputs["entries"]):
        for cat in CATEGORIES:
            for final in (False, True):
                what = (
                    f"category_score({cat!r}, final={final}) of an entry "
                    f"({_describe_entry(e, rules)})"
                )
                got = _ok(outputs, f"e{i}_{cat}_{int(final)}", what)
                expect.that(
                    isinstance(got, list) and len(got) == 2, f"{what} must return (score, reason)"
                )
                score, reason = got
                want, words = _ref_score(e, cat, rules, final)
                if want is None:
                    expect.that(score is None, f"{what} must not count")
                    expect.that(
                        isinstance(reason, str) and reason.strip(),
                        f"{what}: an entry that does not count needs a reason",
                    )
                    for w in words:
                        expect.that(
                            w in reason,
                            f"{what}: the reason should name {w!r}"
                            if not w[0].isdigit()
                            else f"{what}: the reason should name the value that fails the rule",
                        )
                else:
                    expect.that(
                        isinstance(score, (int, float))
                        and not isinstance(score, bool)
                        and math.isclose(score, want, rel_tol=1e-9),
                        f"{what}: the score does not follow FORMULAS[{cat!r}]",
                    )
                    expect.that(reason == "", f"{what}: a counting entry has reason ''")
    expect.raised(outputs, "unknown", ValueError, what="category_score of an unknown category")


def _describe_entry(e: dict, rules: dict) -> str:
    if e["status"] != "ok":
        return f"status {e['status']}"
    bits = []
    for name in ("acc_public", "acc_private", "speed_acc_public", "speed_acc_private"):
        v = e[name]
        if v is None:
            bits.append(f"{name} missing")
        elif v == rules["target_accuracy"]:
            bits.append(f"{name} exactly the target")
    if e["model_bytes"] == rules["size_limit_bytes"]:
        bits.append("size exactly the limit")
    if e["train_seconds"] == rules["train_budget_seconds"]:
        bits.append("train_seconds exactly the budget")
    for name in ("model_bytes", "train_seconds", "latency_p50_ms"):
        if e[name] is None:
            bits.append(f"{name} missing")
    return ", ".join(bits) or "all metrics present"


# ---- 8. rank_category ----------------------------------------------------------------------------
def _ref_rank(entries: list[dict], category: str, rules: dict, final: bool) -> list[tuple]:
    best, latest = {}, {}
    for e in entries:
        if e["team"] not in latest or e["submission_id"] > latest[e["team"]]["submission_id"]:
            latest[e["team"]] = e
        score, _ = _ref_score(e, category, rules, final)
        if score is None:
            continue
        if category == "speed":
            key = (score, e["submission_id"])
        elif category == "size":
            key = (-score, e["model_bytes"], e["submission_id"])
        else:
            key = (-score, e["submission_id"])
        if e["team"] not in best or key < best[e["team"]][0]:
            best[e["team"]] = (key, score, e)
    ranked = sorted(best.items(), key=lambda item: item[1][0])
    out = [
        (team, i + 1, score, e["submission_id"]) for i, (team, (_, score, e)) in enumerate(ranked)
    ]
    rest = sorted((e for t, e in latest.items() if t not in best), key=lambda e: e["submission_id"])
    out += [(e["team"], None, None, e["submission_id"]) for e in rest]
    return out


@judges.inputs("rank_category_correct")
def _rank_inputs(rng: np.random.Generator) -> dict:
    rules = _random_rules(rng)
    boards = []
    for _ in range(6):
        teams = [f"team{k}" for k in range(int(rng.integers(2, 7)))]
        ids = rng.permutation(60)[: int(rng.integers(3, 14))] + 1
        entries = [
            _random_entry(rng, str(rng.choice(teams)), int(sid), rules["target_accuracy"], rules)
            for sid in ids
        ]
        # ties: copies of another team's numbers, submitted later or earlier
        for _ in range(2):
            src = entries[int(rng.integers(len(entries)))]
            entries.append(
                {**src, "team": str(rng.choice(teams)), "submission_id": int(rng.integers(61, 200))}
            )
        # a tie at the top of every category between two teams: equal numbers, except that
        # the later one is smaller (size: it wins on bytes; elsewhere the earlier one wins)
        size = int(rng.integers(600, rules["size_limit_bytes"]))
        first, second = (str(t) for t in rng.choice(teams, 2, replace=False))
        for team, sid, nbytes in ((first, 201, size), (second, 202, size - 100)):
            entries.append({**_random_entry(rng, team, sid, rules["target_accuracy"], rules),
                            "status": "ok", "acc_public": 1.0, "acc_private": 1.0,
                            "speed_acc_public": 1.0, "speed_acc_private": 1.0,
                            "train_seconds": 0.05, "latency_p50_ms": 0.001,
                            "model_bytes": nbytes, "innovation_points": 3.0})
        boards.append(entries)
    return {"rules": rules, "boards": boards}


@judges.judge("rank_category_correct")
def _rank_judge(inputs: dict, outputs: dict, seconds):
    rules = inputs["rules"]
    for b, entries in enumerate(inputs["boards"]):
        for cat in CATEGORIES:
            for final in (False, True):
                what = (
                    f"rank_category({cat!r}, final={final}) of {len(entries)} submissions by "
                    f"{len({e['team'] for e in entries})} teams"
                )
                got = _ok(outputs, f"b{b}_{cat}_{int(final)}", what)
                want = _ref_rank(entries, cat, rules, final)
                expect.that(
                    isinstance(got, list) and len(got) == len(want),
                    f"{what}: every team must appear exactly once",
                )
                for g, (team, rank, score, sid) in zip(got, want, strict=True):
                    expect.that(
                        g[0] == team and g[1] == rank,
                        f"{what}: wrong order or ranks (best counting submission per "
                        "team; ties to the earlier submission; for size, ties to fewer "
                        "bytes; unranked teams last, by their latest submission)",
                    )
                    expect.that(
                        g[3] == sid,
                        f"{what}: a standing must carry the submission "
                        "that earned it (or the team's latest one when unranked)",
                    )
                    if rank is None:
                        expect.that(
                            g[2] is None and isinstance(g[4], str) and g[4].strip(),
                            f"{what}: an unranked team has no score and a reason",
                        )
                    else:
                        expect.that(
                            g[2] is not None
                            and math.isclose(g[2], score, rel_tol=1e-9)
                            and g[4] == "",
                            f"{what}: a ranked team's score is its "
                            "best counting one, with reason ''",
                        )


# ---- 9. pareto_front ----------------------------------------------------------------------------
def _ref_pareto(points) -> list[int]:
    front = [
        i
        for i, (a, c) in enumerate(points)
        if not any(b >= a and d <= c and (b > a or d < c) for b, d in points)
    ]
    return sorted(front, key=lambda i: (points[i][1], i))


@judges.inputs("pareto_front_correct")
def _pareto_inputs(rng: np.random.Generator) -> dict:
    sets = []
    for _ in range(25):
        n = int(rng.integers(1, 14))
        acc = rng.integers(0, 5, n) / 4
        cost = rng.integers(0, 5, n).astype(float)
        sets.append([[float(a), float(c)] for a, c in zip(acc, cost, strict=True)])
    sets.append([[0.5, 1.0], [0.5, 1.0]])
    sets.append([])
    return {"sets": sets}


@judges.judge("pareto_front_correct")
def _pareto_judge(inputs: dict, outputs: dict, seconds):
    for i, pts in enumerate(inputs["sets"]):
        got = _ok(outputs, f"s{i}", f"pareto_front of {len(pts)} points")
        expect.that(
            isinstance(got, list) and [int(g) for g in got] == _ref_pareto(pts),
            f"pareto_front of {len(pts)} points (with ties and equal points) is wrong: "
            "keep exactly the points no other point dominates, cheapest first, then by "
            "index",
        )
    expect.raised(outputs, "nan", ValueError, what="pareto_front with a NaN")


# ---- 10. compare_to_baseline ---------------------------------------------------------------------
@judges.inputs("compare_to_baseline_correct")
def _compare_inputs(rng: np.random.Generator) -> dict:
    rules = {"target_accuracy": 0.5, "size_limit_bytes": 10**9, "train_budget_seconds": 100.0}
    pairs = []
    for k in range(8):
        e = _random_entry(rng, "e", 2 * k + 2, 0.5, rules)
        base = _random_entry(rng, "base", 2 * k + 1, 0.5, rules)
        e["status"] = base["status"] = "ok"
        if k < 2:  # all metrics present
            for d in (e, base):
                for f in _ENTRY_FIELDS:
                    if d[f] is None:
                        d[f] = 1.0 if f != "model_bytes" else 1000
        pairs.append([e, base])
    failed = _random_entry(rng, "x", 99, 0.5, rules)
    failed["status"] = "crash"
    return {"pairs": pairs, "failed": failed}


def _ref_compare(e: dict, base: dict, final: bool) -> dict:
    def ratio(b, n):
        return None if b is None or n is None or n <= 0 else b / n

    key = "acc_private" if final else "acc_public"
    acc, base_acc = e[key], base[key]
    return {
        "latency_speedup": ratio(base["latency_p50_ms"], e["latency_p50_ms"]),
        "size_reduction": ratio(base["model_bytes"], e["model_bytes"]),
        "train_speedup": ratio(base["train_seconds"], e["train_seconds"]),
        "accuracy_delta_points": None
        if acc is None or base_acc is None
        else 100.0 * (acc - base_acc),
    }


@judges.judge("compare_to_baseline_correct")
def _compare_judge(inputs: dict, outputs: dict, seconds):
    for k, (e, base) in enumerate(inputs["pairs"]):
        for final in (False, True):
            what = f"compare_to_baseline(final={final})"
            got = _ok(outputs, f"c{k}_{int(final)}", what)
            want = _ref_compare(e, base, final)
            expect.that(
                isinstance(got, dict) and set(got) == set(want),
                f"{what} must return exactly the keys {sorted(want)}",
            )
            for key, w in want.items():
                g = got[key]
                if w is None:
                    expect.that(
                        g is None, f"{what}: {key} must be None when a side lacks the metric"
                    )
                else:
                    expect.that(
                        isinstance(g, (int, float))
                        and math.isclose(g, w, rel_tol=1e-9, abs_tol=1e-9),
                        f"{what}: {key} is wrong (ratios are baseline / entry; the "
                        "accuracy change is in percentage points)",
                    )
    expect.raised(outputs, "failed", ValueError, what="compare_to_baseline with a failed entry")


# ---- 11. check_metadata --------------------------------------------------------------------------
_TEAM = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,39}")
_TAG = re.compile(r"[a-z0-9][a-z0-9-]{0,31}")
_REQUIRED = ("team", "category", "tags", "description")


def _ref_metadata_problems(meta) -> int:
    """How many problems the reference reports (0 = valid)."""
    if not isinstance(meta, dict):
        return 1
    n = sum(k not in meta for k in _REQUIRED)
    n += sum(k not in _REQUIRED + ("entry",) for k in meta)
    team = meta.get("team")
    n += "team" in meta and not (isinstance(team, str) and _TEAM.fullmatch(team))
    n += "category" in meta and meta.get("category") not in CATEGORIES
    if "tags" in meta:
        tags = meta["tags"]
        if not isinstance(tags, list) or not 1 <= len(tags) <= 10:
            n += 1
        elif any(not (isinstance(t, str) and _TAG.fullmatch(t)) for t in tags):
            n += 1
        elif len(set(tags)) != len(tags):
            n += 1
    d = meta.get("description")
    n += "description" in meta and not (isinstance(d, str) and d.strip() and len(d) <= 500)
    entry = meta.get("entry")
    n += "entry" in meta and not (isinstance(entry, str) and entry.isidentifier())
    return int(n)


@judges.inputs("check_metadata_correct")
def _metadata_inputs(rng: np.random.Generator) -> dict:
    letters = "abcdefghijklmnopqrstuvwxyz"
    team = "".join(rng.choice(list(letters + "0123456789"), int(rng.integers(1, 12))))
    good = {
        "team": team,
        "category": str(rng.choice(CATEGORIES)),
        "tags": [f"{t}{k}" for k, t in enumerate(rng.choice(["int8", "prune", "mlp"], 2))],
        "description": "d" * int(rng.integers(1, 400)),
    }
    cases = {
        "valid": good,
        "valid with entry": {**good, "entry": "MyEntry"},
        "valid 40-character team": {**good, "team": "A" + "b" * 38 + "9"},
        "valid punctuation": {**good, "team": "A.b_c-9", "tags": ["x-1"]},
        "valid 10 tags": {**good, "tags": [f"t{i}" for i in range(10)]},
        "valid 500 characters": {**good, "description": "x" * 500},
        "unknown key": {**good, "weights": "x"},
        "team not a string": {**good, "team": 5},
        "team too long": {**good, "team": "a" * 41},
        "team leading dash": {**good, "team": "-" + team},
        "team trailing newline": {**good, "team": team + "\n"},
        "team with a space": {**good, "team": team + " x"},
        "team trailing text": {**good, "team": team + "!"},
        "category unknown": {**good, "category": "beauty"},
        "category capitalised": {**good, "category": "Size"},
        "tags a string": {**good, "tags": "int8"},
        "tags empty": {**good, "tags": []},
        "eleven tags": {**good, "tags": [f"t{i}" for i in range(11)]},
        "tag upper case": {**good, "tags": ["Int8"]},
        "tag repeated": {**good, "tags": ["a", "a"]},
        "tag trailing newline": {**good, "tags": ["int8\n"]},
        "tag not a string": {**good, "tags": [8]},
        "description blank": {**good, "description": "   "},
        "description too long": {**good, "description": "x" * 501},
        "description not a string": {**good, "description": 5},
        "entry not a name": {**good, "entry": "not a name"},
        "missing team": {k: v for k, v in good.items() if k != "team"},
        "missing tags": {k: v for k, v in good.items() if k != "tags"},
        "empty": {},
        "a list": ["team"],
        "None": None,
    }
    return {"cases": cases}


@judges.judge("check_metadata_correct")
def _metadata_judge(inputs: dict, outputs: dict, seconds):
    for label, meta in inputs["cases"].items():
        got = _ok(outputs, label, f"check_metadata ({label})")
        expect.that(
            isinstance(got, list) and all(isinstance(p, str) for p in got),
            f"check_metadata ({label}) must return a list of problems (strings)",
        )
        want = _ref_metadata_problems(meta)
        if want == 0:
            expect.that(got == [], f"check_metadata: valid metadata ({label}) was rejected")
        else:
            expect.that(len(got) >= 1, f"check_metadata: {label} must be reported")
    expect.that(len(outputs["empty"]) == 4, "check_metadata({}): each missing key is one problem")
    expect.that(
        any("team" in p for p in outputs["missing team"]),
        "check_metadata: a missing key must be named",
    )


# ---- 12-13. the student's own entry -------------------------------------------------------
def _read_package_bytes(data) -> tuple[dict, list[str], dict, int]:
    """(files: path -> bytes, problems, metadata, model bytes) of a zip given as uint8 bytes.
    Read only: nothing in it is run."""
    problems: list[str] = []
    files: dict[str, bytes] = {}
    expect.that(
        isinstance(data, np.ndarray) and data.dtype == np.uint8 and data.ndim == 1,
        "the entry's package must come back as the bytes of its zip (uint8)",
    )
    expect.that(data.size <= 16 << 20, "the package is larger than 16 MiB")
    try:
        zf = zipfile.ZipFile(io.BytesIO(data.tobytes()))
        infos = zf.infolist()
        if len(infos) > 64 or sum(i.file_size for i in infos) > 16 << 20:
            raise ValueError("too many files or bytes")
        for info in infos:
            rel = PurePosixPath(info.filename)
            if info.filename.startswith("/") or ".." in rel.parts or "\\" in info.filename:
                problems.append(f"zip entry {info.filename!r} points outside the package")
                continue
            if info.is_dir() or "__pycache__" in rel.parts:
                continue
            files[rel.as_posix()] = zf.read(info)
    except (
        zipfile.BadZipFile,
        ValueError,
        OSError,
        EOFError,
        RuntimeError,
        NotImplementedError,
    ) as exc:
        raise AssertionError(f"the entry's package is not a readable zip ({exc})") from None
    meta: dict = {}
    if "submission.yaml" not in files:
        problems.append("missing submission.yaml")
    else:
        import yaml

        try:
            loaded = yaml.safe_load(files["submission.yaml"].decode("utf-8"))
        except (yaml.YAMLError, UnicodeDecodeError):
            loaded = None
        if _ref_metadata_problems(loaded):
            problems.append("submission.yaml does not pass check_metadata")
        else:
            meta = loaded
    if "submission.py" not in files:
        problems.append("missing submission.py")
    weights = 0
    for rel, content in files.items():
        parts = PurePosixPath(rel).parts
        if parts[0] == "weights" and len(parts) > 1:
            weights += len(content)
            if rel.endswith(".npz"):
                try:
                    with np.load(io.BytesIO(content), allow_pickle=False) as npz:
                        for key in npz.files:
                            if npz[key].dtype.kind not in "biuf":
                                problems.append(f"{rel}: array {key} is not numeric")
                except Exception:  # whatever numpy raises on a malformed file
                    problems.append(f"{rel} is not a readable .npz without pickles")
        elif len(parts) == 1 and rel.endswith(".py"):
            try:
                compile(content, rel, "exec", dont_inherit=True)  # compiled, never run
            except (SyntaxError, ValueError, RecursionError, MemoryError):
                problems.append(f"{rel} is not valid Python")
        elif not (len(parts) == 1 and (rel.endswith(".md") or rel == "submission.yaml")):
            problems.append(f"{rel} is outside weights/ (every byte the model needs must count)")
    if weights == 0:
        problems.append("no weights: weights/ is missing or empty")
    return files, problems, meta, weights


@judges.inputs("entry_package")
def _package_inputs(rng: np.random.Generator) -> dict:
    return {}


@judges.judge("entry_package")
def _package_judge(inputs: dict, outputs: dict, seconds):
    data = _ok(outputs, "package", "packaging your entry")
    _, problems, meta, weights = _read_package_bytes(data)
    expect.that(not problems, "your entry's package is not valid: " + "; ".join(problems[:3]))
    expect.that(
        meta["category"] in GRADED_CATEGORIES,
        f"your entry competes in {meta['category']!r}; the graded entry must choose "
        f"one of {', '.join(GRADED_CATEGORIES)} (speed and innovation cannot be verified "
        "from outside; see the notes above the entry cells)",
    )
    expect.that(meta["team"] != "baseline", "give your entry its own team name")


@judges.inputs("entry_beats_baseline")
def _beats_inputs(rng: np.random.Generator) -> dict:
    return {"x": _noisy_test_images(rng)}


def baseline_numbers(x: np.ndarray, timed: bool = True) -> dict:
    """Scores, stored bytes and per-query latency (ms) of the shipped baseline on the judge's
    inputs, measured here (the worker) the way the entry is charged: the same predict path
    (`CompetitionSubmission.predict`: eval, no graph, float32 Tensor), every query alone, five
    passes, total time / queries, now (the load of the moment applies to both)."""
    import time

    from tinytorch.core.pretrained import load_pretrained
    from tinytorch.core.tensor import Tensor, no_grad

    model = load_pretrained("digits_mlp_256")

    def predict(q):
        model.eval()
        with no_grad():
            return model(Tensor(np.asarray(q, dtype=np.float32))).data

    buf = io.BytesIO()
    np.savez(buf, **model.state_dict())
    out = {"scores": predict(x), "bytes": len(buf.getvalue()), "ms": None}
    if timed:
        for i in range(50):  # warm-up, untimed
            predict(x[i : i + 1])
        start = time.perf_counter()
        for _ in range(ENTRY_QUERIES // len(x)):
            for i in range(len(x)):
                predict(x[i : i + 1])
        out["ms"] = (time.perf_counter() - start) * 1e3 / ENTRY_QUERIES
    return out


@judges.judge("entry_beats_baseline")
def _beats_judge(inputs: dict, outputs: dict, seconds):
    data = _ok(outputs, "package", "packaging your entry")
    _, problems, meta, weights = _read_package_bytes(data)
    expect.that(not problems, "your entry's package is not valid (see entry_package)")
    category = meta["category"]
    expect.that(
        category in GRADED_CATEGORIES,
        f"the graded entry must compete in {' or '.join(GRADED_CATEGORIES)}",
    )
    x = inputs["x"]
    y = _labels_of(x)
    scores = _ok(outputs, "scores", "your entry's predictions")
    expect.that(
        isinstance(scores, np.ndarray)
        and scores.shape == (len(x), 10)
        and scores.dtype.kind == "f"
        and bool(np.all(np.isfinite(scores))),
        f"your entry must answer each of the {len(x)} queries with 10 finite float scores",
    )
    acc = float((scores.argmax(axis=1) == y).mean())
    expect.that(
        acc >= TARGET,
        f"your packaged entry reaches accuracy {acc:.3f} on the judge's "
        f"digits, below the target {TARGET}: it counts in no category",
    )
    if category == "size":
        expect.that(
            weights <= SIZE_LIMIT,
            f"size: the weights in your package take {weights} bytes, over the "
            f"{SIZE_LIMIT}-byte limit (the baseline does not fit either: fit it to win)",
        )
        return None
    base = baseline_numbers(x, timed=seconds is not None)
    base_acc = float((base["scores"].argmax(axis=1) == y).mean())
    if seconds is None:  # local run: no latency measured from outside; at equal latency, the
        # entry's accuracy and size must beat the baseline's by the margin
        expect.that(
            acc / math.sqrt(weights / 1024)
            >= EFFICIENCY_MARGIN * base_acc / math.sqrt(base["bytes"] / 1024),
            "efficiency: at equal latency your entry is not 5% more efficient than the baseline",
        )
        return None
    ms = seconds * 1e3 / ENTRY_QUERIES  # an upper bound: the whole cell is charged to the queries
    base_eff = base_acc / math.sqrt(base["ms"] * base["bytes"] / 1024)
    eff = acc / math.sqrt(ms * weights / 1024)
    expect.that(
        eff >= base_eff,  # the bound already charges the cell's own cost to the entry
        f"efficiency: your entry scores {eff:.3g} (accuracy {acc:.3f}, at most {ms:.3f} "
        f"ms per query measured from outside, {weights / 1024:.1f} KiB) against the "
        f"baseline's {base_eff:.3g} (accuracy {base_acc:.3f}, {base['ms']:.3f} ms, "
        f"{base['bytes'] / 1024:.1f} KiB); it must beat it even with the whole cell's time "
        "charged to its queries",
    )
    return None
