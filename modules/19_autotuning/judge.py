"""Judges of module 19's grade cells: the trusted half of each check (see tito/judging.py).

Instructor-only: never released, never inside a sandbox. Each grade cell's hidden probe drives
the student's code on the inputs drawn here (a fresh seed per grading: random cases plus
targeted ones with random values, so that every wrong version of
tests/wrong_versions/wrong_19_autotuning.py fails on every draw) and sends back plain data; the
judges below hold their own reference of each exercise and decide, in the grading worker. The
model-bytes judge rebuilds the probe's models itself (reference modules 17 and core).

What these judges cannot see: `interleaved_rounds` judges a call trace and per-call times that
the probe records inside the student's process on a fake clock, so they are whatever that
process reports (the timing *logic* is graded, not a speed); the other five judge return values
only, computed in the student's process on inputs it cannot predict.
"""

import math

import numpy as np

from tito.judging import Judges, expect

judges = Judges("19_autotuning")


def _py(value):
    """Outputs as Python values: a numpy scalar the student returned arrives as a 0-d array in
    grading (and as a Python scalar in local mode); both mean the same answer."""
    if isinstance(value, np.ndarray) and value.shape == ():
        return value.item()
    if isinstance(value, list):
        return [_py(v) for v in value]
    if isinstance(value, dict):
        return {k: _py(v) for k, v in value.items()}
    return value

STEP_STAGES = {"prune": 0, "finetune": 1, "quantize": 2, "backend": 3}
STAGES = ("shrink", "recover", "quantize", "runtime")


# ---- exercise 1: model_bytes -----------------------------------------------------------------
@judges.inputs("model_bytes_counts_storage")
def _bytes_inputs(rng: np.random.Generator) -> dict:
    n_in, hidden, n_out = (int(rng.integers(3, 12)) | 1, int(rng.integers(3, 12)) | 1,
                           int(rng.integers(2, 9)))  # odd sizes: an odd number of INT4 codes
    return {
        "dims": [n_in, hidden, n_out],
        "w0": rng.standard_normal((n_in, hidden)).astype(np.float32),
        "b0": rng.standard_normal(hidden).astype(np.float32),
        "w1": rng.standard_normal((hidden, n_out)).astype(np.float32),
        "b1": rng.standard_normal(n_out).astype(np.float32),
        "x": rng.standard_normal((16, n_in)).astype(np.float32),
    }


def build_models(inputs: dict) -> dict:
    """The models the probe measures, built the same way (the probe's copy of this code is in
    the grade cell): float32, float64, INT8, INT4, INT4 with its last layer float, and a bare
    INT4 layer as the root model."""
    from tinytorch.core.data import DataLoader, TensorDataset
    from tinytorch.core.nn import Linear, ReLU, Sequential
    from tinytorch.quantization import QConfig, Quantizer

    n_in, hidden, n_out = inputs["dims"]
    net = Sequential(Linear(n_in, hidden), ReLU(), Linear(hidden, n_out))
    net.load_state_dict({"0.weight": inputs["w0"], "0.bias": inputs["b0"],
                         "2.weight": inputs["w1"], "2.bias": inputs["b1"]})
    calib = DataLoader(TensorDataset(inputs["x"]), batch_size=8)
    q8 = Quantizer(QConfig(weight_bits=8)).quantize(net, calib, 2)
    q4 = Quantizer(QConfig(weight_bits=4)).quantize(net, calib, 2)
    mixed = Quantizer(QConfig(weight_bits=4)).quantize(net, calib, 2)
    mixed.__setattr__("2", Linear(hidden, n_out))  # the last layer back in float32
    return {"fp32": net, "fp64": Sequential(Linear(n_in, hidden)).double(), "int8": q8,
            "int4": q4, "mixed": mixed, "root4": q4[0]}


def reference_model_bytes(model) -> int:
    from tinytorch.quantization import pack_int4

    packed = {}
    for name, mod in model.named_modules():
        bits = getattr(mod, "weight_bits", None)
        if bits is not None and bits <= 4:
            packed[f"{name}.weight" if name else "weight"] = pack_int4(mod.weight).nbytes
    return int(sum(packed.get(k, a.nbytes) for k, a in model.state_dict().items()))


BYTES_WHAT = {
    "fp32": "a float32 MLP",
    "fp64": "a float64 layer",
    "int8": "an INT8 model (every state array as stored)",
    "int4": "an INT4 model (4-bit weight codes packed two per byte, odd counts rounded up)",
    "mixed": "an INT4 model with one layer back in float32",
    "root4": "a bare INT4 layer used as the model (its weight's key is 'weight')",
}


@judges.judge("model_bytes_counts_storage")
def _bytes_judge(inputs: dict, outputs: dict, seconds):
    outputs = _py(outputs)
    models = build_models(inputs)
    for name, what in BYTES_WHAT.items():
        got = expect.returned(outputs, name, what=f"model_bytes of {what}")
        expect.that(isinstance(got, int) and not isinstance(got, bool),
                    f"model_bytes of {what}: should return an int, got {type(got).__name__}")
        expect.that(got == reference_model_bytes(models[name]),
                    f"model_bytes of {what}: wrong number of bytes ({got})")


# ---- exercise 2: interleaved_seconds -----------------------------------------------------------
@judges.inputs("interleaved_rounds")
def _rounds_inputs(rng: np.random.Generator) -> dict:
    n = int(rng.integers(2, 4))
    return {
        "costs": [float(c) for c in rng.uniform(1e-5, 9e-5, size=n)],
        "drift": float(rng.uniform(0.001, 0.004)),
        "rounds": int(rng.integers(3, 8)),
        "warmup": int(rng.integers(0, 4)),
        "min_time": float(rng.uniform(1e-4, 4e-4)),
    }


def reference_rounds(inputs: dict) -> tuple[list[int], list[list[float]]]:
    """(call trace, seconds per call per round) of the reference on the fake machine."""
    costs, drift = inputs["costs"], inputs["drift"]
    state = {"now": 0.0, "calls": 0}
    trace: list[int] = []

    def call(i):
        trace.append(i)
        state["now"] += costs[i] * (1.0 + drift * state["calls"])
        state["calls"] += 1

    numbers = []
    for i in range(len(costs)):  # calls_per_sample: warm-up, one timed call
        for _ in range(inputs["warmup"]):
            call(i)
        t0 = state["now"]
        call(i)
        numbers.append(max(1, math.ceil(inputs["min_time"] / max(state["now"] - t0, 1e-9))))
    times: list[list[float]] = [[] for _ in costs]
    for r in range(inputs["rounds"]):
        order = range(len(costs)) if r % 2 == 0 else reversed(range(len(costs)))
        for i in order:
            t0 = state["now"]
            for _ in range(numbers[i]):
                call(i)
            times[i].append((state["now"] - t0) / numbers[i])
    return trace, times


@judges.judge("interleaved_rounds")
def _rounds_judge(inputs: dict, outputs: dict, seconds):
    outputs = _py(outputs)
    trace, times = reference_rounds(inputs)
    n, rounds = len(inputs["costs"]), inputs["rounds"]
    what = f"interleaved_seconds of {n} functions over {rounds} rounds"
    got = expect.returned(outputs, "times", what=what)
    expect.that(isinstance(got, list) and len(got) == n
                and all(isinstance(t, list) and len(t) == rounds for t in got),
                f"{what}: should return {n} lists of {rounds} entries")
    got_trace = expect.returned(outputs, "trace", what=f"{what} (the calls made)")
    expect.that(len(got_trace) == len(trace),
                f"{what}: {len(got_trace)} calls of the functions, not the number warm-up, "
                "calibration and one sample of numbers[i] calls per round make")
    expect.that(list(got_trace) == trace,
                f"{what}: the functions were not called in the order of the rounds (every "
                "round each function once, numbers[i] calls in a row, odd rounds reversed)")
    for i in range(n):
        for r in range(rounds):
            g = got[i][r]
            expect.that(isinstance(g, int | float) and math.isclose(g, times[i][r], rel_tol=1e-9),
                        f"{what}: entry {r} of function {i} is not that round's seconds per call "
                        "measured on `clock`")


# ---- exercise 3: Constraints -------------------------------------------------------------------
def reference_floor(c: dict, base):
    floors = []
    if c.get("min_accuracy") is not None:
        floors.append(c["min_accuracy"])
    if c.get("max_accuracy_drop") is not None:
        if base is None:
            raise ValueError("baseline")
        floors.append(base - c["max_accuracy_drop"])
    return max(floors) if floors else None


def reference_violations(m: dict, c: dict, base, margin: bool) -> list[list]:
    """[constraint, metric, value, limit, upper] per violation, in the reference's order."""
    out = []
    if c.get("max_bytes") is not None and m["model_bytes"] > c["max_bytes"]:
        out.append(["max_bytes", "model_bytes", m["model_bytes"], c["max_bytes"], True])
    if c.get("max_latency_ms") is not None:
        limit = c["max_latency_ms"] * ((1 - c.get("latency_margin", 0.15)) if margin else 1.0)
        if m["latency_ms"] > limit:
            out.append(["max_latency_ms", "latency_ms", m["latency_ms"], limit, True])
    if c.get("max_peak_memory") is not None and m["peak_memory"] > c["max_peak_memory"]:
        out.append(["max_peak_memory", "peak_memory", m["peak_memory"], c["max_peak_memory"],
                    True])
    floor = reference_floor(c, base)
    if floor is not None and m["accuracy"] < floor - 1e-12:
        name = "min_accuracy" if floor == c.get("min_accuracy") else "max_accuracy_drop"
        out.append([name, "accuracy", m["accuracy"], floor, False])
    return out


def _metrics(rng) -> dict:
    return {"accuracy": float(rng.uniform(0.8, 0.97)), "latency_ms": float(rng.uniform(0.1, 2)),
            "peak_memory": int(rng.integers(10_000, 200_000)),
            "model_bytes": int(rng.integers(1_000, 80_000))}


@judges.inputs("constraints_name_what_fails")
def _constraints_inputs(rng: np.random.Generator) -> dict:
    cases = []
    for _ in range(16):  # random budgets near the measured values
        m = _metrics(rng)
        c: dict = {"latency_margin": float(rng.choice([0.0, 0.1, 0.15, 0.3]))}
        if rng.random() < 0.6:  # over, under, or exactly at the limit
            c["max_bytes"] = int(m["model_bytes"] + rng.choice([-1, 0, 1]) * rng.integers(0, 500))
        if rng.random() < 0.6:
            c["max_latency_ms"] = float(m["latency_ms"] * rng.uniform(0.7, 1.4))
        if rng.random() < 0.5:
            c["max_peak_memory"] = int(m["peak_memory"] + rng.choice([-1, 0, 1])
                                       * rng.integers(0, 500))
        if rng.random() < 0.5:
            c["min_accuracy"] = float(m["accuracy"] + rng.choice([-0.02, 0.0, 0.02]))
        if rng.random() < 0.5:
            c["max_accuracy_drop"] = float(rng.uniform(0.0, 0.1))
        base = float(rng.uniform(0.85, 1.0))
        if "min_accuracy" in c and "max_accuracy_drop" in c and math.isclose(
                c["min_accuracy"], base - c["max_accuracy_drop"], abs_tol=1e-6):
            c.pop("max_accuracy_drop")  # no tie between the two floors
        cases.append({"metrics": m, "constraints": c, "base": base,
                      "margin": bool(rng.random() < 0.7)})
    # targeted: each budget's edge, with random values
    m = _metrics(rng)
    band = float(m["latency_ms"] / rng.uniform(0.75, 0.95))  # over the margin, under the budget
    margin = float(rng.choice([0.1, 0.15, 0.2]))
    while band * (1 - margin) >= m["latency_ms"]:
        margin += 0.05
    for use_margin in (True, False):
        cases.append({"metrics": m, "constraints": {"max_latency_ms": band,
                                                     "latency_margin": margin},
                      "base": None, "margin": use_margin})
    cases.append({"metrics": m, "constraints": {"max_bytes": m["model_bytes"],
                                                 "max_peak_memory": m["peak_memory"]},
                  "base": None, "margin": True})  # exactly at both limits
    cases.append({"metrics": m, "constraints": {"max_bytes": m["model_bytes"] - 1,
                                                 "max_peak_memory": m["peak_memory"] - 1},
                  "base": None, "margin": True})  # one byte over both
    base = float(rng.uniform(0.995, 1.0))
    gap = float(rng.uniform(0.005, 0.02))
    for tighter in ("min_accuracy", "max_accuracy_drop"):  # both floors, the accuracy between
        lo, hi = m["accuracy"] - gap, m["accuracy"] + gap
        c = ({"min_accuracy": hi, "max_accuracy_drop": base - lo} if tighter == "min_accuracy"
             else {"min_accuracy": lo, "max_accuracy_drop": base - hi})
        cases.append({"metrics": m, "constraints": c, "base": base, "margin": True})
    cases.append({"metrics": m, "constraints": {"min_accuracy": m["accuracy"]},
                  "base": None, "margin": True})  # exactly at the floor
    cases.append({"metrics": m, "constraints": {"max_accuracy_drop": 0.01},
                  "base": None, "margin": True})  # a relative floor without the baseline
    return {"cases": cases}


@judges.judge("constraints_name_what_fails")
def _constraints_judge(inputs: dict, outputs: dict, seconds):
    outputs = _py(outputs)
    for k, case in enumerate(inputs["cases"]):
        c, base, m = case["constraints"], case["base"], case["metrics"]
        budgets = ", ".join(sorted(n for n in c if n != "latency_margin")) or "no budgets"
        what = f"Constraints({budgets}).violations (case {k}, margin={case['margin']})"
        if base is None and c.get("max_accuracy_drop") is not None:
            expect.raised(outputs, f"v{k}", ValueError, contains=("baseline",),
                          what=f"{what} without the baseline accuracy")
            expect.raised(outputs, f"floor{k}", ValueError, contains=("baseline",),
                          what="accuracy_floor of a relative floor without the baseline accuracy")
            continue
        want = reference_violations(m, c, base, case["margin"])
        got = expect.returned(outputs, f"v{k}", what=what)
        expect.that(isinstance(got, list), f"{what}: should return a list of Violations")
        names = [v[0] if isinstance(v, list) and v else v for v in got]
        expect.that(names == [w[0] for w in want],
                    f"{what}: reported {names}, not exactly the broken budgets in the order "
                    "bytes, latency, peak memory, accuracy")
        for g, w in zip(got, want, strict=True):
            expect.that(g[1] == w[1] and g[4] is w[4],
                        f"{what}: the {w[0]} violation has the wrong metric or direction")
            expect.that(math.isclose(g[2], w[2], rel_tol=1e-12) and math.isclose(
                g[3], w[3], rel_tol=1e-9, abs_tol=1e-12),
                f"{what}: the {w[0]} violation carries the wrong value or limit")
        want_floor = reference_floor(c, base)
        got_floor = expect.returned(outputs, f"floor{k}", what=f"accuracy_floor (case {k})")
        expect.that(want_floor is None and got_floor is None or (
            want_floor is not None and isinstance(got_floor, int | float)
            and math.isclose(got_floor, want_floor, rel_tol=1e-12, abs_tol=1e-12)),
            f"accuracy_floor of case {k} ({budgets}): wrong floor ({got_floor!r})")


# ---- exercise 4: Pipeline ----------------------------------------------------------------------
@judges.inputs("pipeline_order")
def _pipeline_inputs(rng: np.random.Generator) -> dict:
    names = list(STEP_STAGES)
    seqs = []
    for _ in range(10):  # valid: any subset in stage order
        seqs.append([n for n in names if rng.random() < 0.5])
    for _ in range(8):  # one order error (distinct steps)
        k = int(rng.integers(2, 5))
        while True:
            seq = [names[i] for i in rng.permutation(4)[:k]]
            if [STEP_STAGES[s] for s in seq] != sorted(STEP_STAGES[s] for s in seq):
                break
        seqs.append(seq)
    for _ in range(4):  # one repeated step, otherwise in order
        seq = sorted({names[i] for i in rng.integers(0, 4, size=2)}, key=STEP_STAGES.get)
        j = int(rng.integers(0, len(seq)))
        seqs.append(seq[: j + 1] + [seq[j]] + seq[j + 1:])
    a, b, c = sorted(rng.choice(4, size=3, replace=False))  # [a, c, b]: b is out of order
    seqs.append([names[a], names[c], names[b]])  # only against the step before it, not the first
    for bad in ("sparsify", "distill", "Prune"):  # an unknown name, otherwise in order
        seq = sorted({names[i] for i in rng.integers(0, 4, size=2)}, key=STEP_STAGES.get)
        seqs.append(seq + [bad] if rng.random() < 0.5 else [bad] + seq)
    return {"seqs": seqs}


def expected_error(seq: list[str]) -> tuple[str, ...] | None:
    """None if `seq` is a valid pipeline, else the words its ValueError must contain."""
    seen, last = set(), -1
    for s in seq:
        if s not in STEP_STAGES:
            return (s, *STEP_STAGES)
        if s in seen:
            return ("twice",)
        seen.add(s)
        if STEP_STAGES[s] < last:
            return (STAGES[STEP_STAGES[s]], STAGES[last])
        last = STEP_STAGES[s]
    return None


@judges.judge("pipeline_order")
def _pipeline_judge(inputs: dict, outputs: dict, seconds):
    outputs = _py(outputs)
    for k, seq in enumerate(inputs["seqs"]):
        what = f"Pipeline({seq})"
        words = expected_error(seq)
        if words is None:
            got = expect.returned(outputs, f"p{k}", what=f"{what} (a valid order)")
            expect.that(got == seq, f"{what}: should keep its steps in the given order")
        else:
            expect.raised(outputs, f"p{k}", ValueError, contains=words, what=what)


# ---- exercise 5: pareto_front ------------------------------------------------------------------
def reference_front(vals: list) -> list[int]:
    def dom(a, b):
        return all(x <= y for x, y in zip(a, b)) and any(x < y for x, y in zip(a, b))

    return [i for i, v in enumerate(vals) if not any(dom(w, v) for w in vals)]


@judges.inputs("pareto_front_filters")
def _pareto_inputs(rng: np.random.Generator) -> dict:
    sets = []
    for k in range(14):
        dims, n = int(rng.integers(1, 4)), int(rng.integers(0 if k == 0 else 1, 12))
        pts = [[int(v) for v in rng.integers(0, 5, size=dims)] for _ in range(n)]
        if n > 2:
            pts.append(list(pts[int(rng.integers(0, n))]))  # an identical pair
        sets.append(pts)
    for dims in (2, 3):  # incomparable points (all on the front), one of them twice, shuffled
        n = int(rng.integers(4, 8))
        pts = [[int(v) for v in rng.permutation(8)[:dims]] for _ in range(n)]
        pts = [[int(i), 8 - int(i)] + p[2:] for i, p in zip(rng.permutation(9)[:n], pts,
                                                            strict=False)]
        pts.append(list(pts[int(rng.integers(0, n))]))
        sets.append([pts[i] for i in rng.permutation(len(pts))])
    return {"sets": sets}


@judges.judge("pareto_front_filters")
def _pareto_judge(inputs: dict, outputs: dict, seconds):
    outputs = _py(outputs)
    for k, pts in enumerate(inputs["sets"]):
        what = f"pareto_front of {len(pts)} items with {len(pts[0]) if pts else 0} values each"
        want = [pts[i] for i in reference_front(pts)]
        got = expect.returned(outputs, f"front{k}", what=what)
        expect.that(isinstance(got, list) and got == want,
                    f"{what}: not exactly the items nothing dominates, in input order")
        want = reference_front([[-v for v in p] for p in pts])
        got = expect.returned(outputs, f"neg{k}", what=f"{what} (a key that maps the items)")
        expect.that(isinstance(got, list) and got == want,
                    f"{what}, items compared through key(item) (here: the values negated): not "
                    "exactly the non-dominated items, in input order")


# ---- exercise 6: monotone_infeasible -----------------------------------------------------------
PRUNE, RECOVER, QUANT = (0.0, 0.25, 0.5, 0.75, 0.875), ("none", "finetune", "distill"), (None, 8, 4)


def _bits(q):
    return 32 if q is None else q


def milder(a: list, b: list) -> bool:
    """Config a is at most as aggressive as config b ([prune, recover, quantize])."""
    return a[1] == b[1] and a[0] <= b[0] and _bits(a[2]) >= _bits(b[2])


@judges.inputs("monotone_rule")
def _monotone_inputs(rng: np.random.Generator) -> dict:
    def config():
        return [float(rng.choice(PRUNE)), str(rng.choice(RECOVER)),
                [None, 8, 4][int(rng.integers(0, 3))]]

    cases = []
    for k in range(30):
        measured = [[*config(), float(rng.choice([0.75, 0.8125, 0.875, 0.9375, 1.0]))]
                    for _ in range(int(rng.integers(0, 5)))]
        floor = None if k % 10 == 9 else float(rng.choice([0.8125, 0.875, 0.9375]))
        noise = float(rng.choice([0.0, 0.0625, 0.125]))  # dyadic: acc + noise == floor is exact
        queries = [config() for _ in range(4)] + [m[:3] for m in measured[:2]]
        cases.append({"measured": measured, "floor": floor, "noise": noise, "queries": queries})
    # targeted, with random configs: a failing relative milder / more aggressive than the
    # query, one failing only without the noise, one exactly at the floor with it, one failing
    # and one passing relative, a failing config with another recovery
    r, other = [str(x) for x in rng.choice(RECOVER, size=2, replace=False)]
    lo, hi = sorted(float(x) for x in rng.choice(PRUNE[1:], size=2, replace=False))
    mild, harsh = [lo, r, 8], [hi, r, 4]
    cases += [
        {"measured": [[*mild, 0.75]], "floor": 0.875, "noise": 0.0625, "queries": [harsh]},
        {"measured": [[*harsh, 0.75]], "floor": 0.875, "noise": 0.0625, "queries": [mild]},
        {"measured": [[*mild, 0.8125]], "floor": 0.875, "noise": 0.125, "queries": [harsh]},
        {"measured": [[*mild, 0.8125]], "floor": 0.875, "noise": 0.0625, "queries": [harsh]},
        {"measured": [[*mild, 1.0], [lo, r, None, 0.75]], "floor": 0.875, "noise": 0.0,
         "queries": [harsh]},
        {"measured": [[lo, other, 8, 0.75]], "floor": 0.875, "noise": 0.0, "queries": [harsh]},
        # no floor: nothing is infeasible, even behind a milder relative that scored low
        {"measured": [[*mild, 0.75]], "floor": None, "noise": 0.0, "queries": [harsh, mild]},
    ]
    return {"cases": cases}


@judges.judge("monotone_rule")
def _monotone_judge(inputs: dict, outputs: dict, seconds):
    outputs = _py(outputs)
    for k, case in enumerate(inputs["cases"]):
        floor, noise = case["floor"], case["noise"]
        for j, q in enumerate(case["queries"]):
            want = floor is not None and any(
                milder(m[:3], q) and m[3] + noise < floor for m in case["measured"])
            got = expect.returned(outputs, f"c{k}_{j}",
                                  what=f"monotone_infeasible (case {k}, query {j})")
            expect.that(isinstance(got, bool), "monotone_infeasible should return a bool, got "
                        f"{type(got).__name__}")
            expect.that(got == want,
                        f"monotone_infeasible of config {q} given {len(case['measured'])} "
                        f"measured candidates, floor {floor}, noise {noise}: wrong answer")
