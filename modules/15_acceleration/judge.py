"""Judges of module 15's grade cells: the trusted half of each check (see tito/judging.py).

Instructor-only: never released, never inside a sandbox. Each grade cell's hidden probe drives
the student's code on the inputs drawn here (a fresh seed per grading) and sends back what it
produced; the judge below compares it with numpy, in the grading worker.

Behaviour is judged from evidence the student's code cannot choose:

- ``naive_matmul`` must loop in Python: the grade cell's wall time (``seconds``, measured by the
  worker outside the sandbox) must be at least 0.4 of what a plain Python triple loop of the same
  size takes when this judge runs it, here and now (a kernel that calls BLAS, or numpy once per
  output element, finishes in a small fraction of that). The operands of the timed product
  are made inside the probe from a seed drawn here, so no megabytes cross the boundary and the
  outside time is the work.
- ``blocked_matmul`` must use ``block_size``: the cell runs a ``block_size=1`` product, one tile
  product per multiply-add; the cell must take at least 0.3 of what the judge's own tile loop
  takes for it (a kernel that ignores ``block_size`` does one tile).
- ``OptimizedBackend`` must take the float64 route for exact integer products: the cell runs
  several int64 products, and must finish in half the time numpy's integer loop needs for them,
  when this machine's BLAS is faster for them at all (measured here).
- ``benchmark`` is driven by a stand-in clock (``time.perf_counter`` replaced for the call) and a
  ``fn`` whose calls "take" durations drawn here: the result must be exactly the median of the
  timed calls and ``fn`` must be called ``warmup + repeats`` times.
- The backends are driven with stand-ins for the kernels and ``broadcast_matmul`` that record
  which kernel ran, with which ``block_size``, on arrays of which rank.

When grading locally (``tito validate``, the wrong-versions runner) there is no outside clock;
the probes put their own time of the timed call (``local_seconds``), used only then.

What stays forgeable (a student who reads the hidden probe during grading can answer it):

- Timing evidence is a lower or upper bound on wall time: a ``naive_matmul`` that calls BLAS and
  then sleeps, or a ``blocked_matmul`` that ignores ``block_size`` and busy-waits, passes.
- ``OptimizedBackend`` that memoises products across calls of the probe could look fast.
- ``benchmark`` that recognises the stand-in clock (it is not ``time.perf_counter``) could
  answer it differently from the real clock.
- The stand-in kernels of the backend check record calls made through the names
  ``naive_matmul``/``blocked_matmul``/``vectorized_matmul``/``broadcast_matmul``; a backend that
  calls them and then computes its result another way passes if the values agree.
- ``vectorized_matmul`` that calls BLAS (``@``) instead of the row loop passes: its values agree
  and the cost difference (a few milliseconds) is too small to see from outside.
"""

from __future__ import annotations

import math
import statistics
import time

import numpy as np

from tito.judging import Judges, expect

judges = Judges("15_acceleration")

# a timed cell may be this much faster than the judge's own run of the same work (load, noise);
# the cell's fixed cost seen from outside (~0.1 s, plus its visible checks) stays well below
SLACK = 0.4
SLACK_TILES = 0.3  # the tile loop: its visible check alone costs ~0.1 s even when wrong


def timed_operands(seed: int, shape: list, kind: str) -> tuple[np.ndarray, np.ndarray]:
    """The operands of a timed product, made from ``seed`` by the probe (inside) and again by
    the judge: megabytes of input never travel, so the cell's outside time is the work (the
    probe has the same two lines)."""
    g = np.random.default_rng(seed)
    m, k, n = shape
    if kind == "int64":
        return g.integers(-100, 100, size=(m, k)), g.integers(-100, 100, size=(k, n))
    return (g.standard_normal((m, k)).astype(kind), g.standard_normal((k, n)).astype(kind))


def _elapsed(seconds, outputs) -> float | None:
    """The grade cell's wall time from outside; locally (no outside clock) the probe's own."""
    if seconds is not None:
        return float(seconds)
    local = outputs.get("local_seconds")
    return float(local) if isinstance(local, (int, float)) and not isinstance(local, bool) else None


def _what_went_wrong(got: float, durations: list, warmup: int, repeats: int) -> str:
    """A hint for a benchmark that did not return the median of its timed calls."""
    timed = durations[warmup : warmup + repeats]
    guesses = [
        (statistics.fmean(timed), "the mean of the timed calls"),
        (min(timed), "the fastest timed call"),
        (max(timed), "the slowest timed call"),
        (sum(timed), "the total of the timed calls"),
        (statistics.median(durations), "a median that includes the warm-up calls"),
        (sorted(timed)[len(timed) // 2], "the upper middle value (for an even number of "
         "calls the median is the mean of the two middle values)"),
    ]
    labels = [label for value, label in guesses if math.isclose(got, value, rel_tol=1e-9)]
    if labels:
        return "it returned " + " or ".join(labels)
    return "use time.perf_counter() around each timed call and statistics.median"


# ---- Step 0: gflops and benchmark -------------------------------------------------------------
@judges.inputs("measure_helpers_correct")
def _measure_inputs(rng: np.random.Generator) -> dict:
    out: dict = {
        "g_n": [int(x) for x in rng.integers(1, 5000, size=6)],
        "g_s": [float(x) for x in 10.0 ** rng.uniform(-6, 1, size=6)],
    }
    # (repeats, warmup): odd and even counts, no warm-up, a single call
    plans = [(5, 2), (int(rng.choice([4, 6])), 1), (1, 0), (7, 3)]
    schedules = []
    for repeats, warmup in plans:
        timed = [float(x) for x in rng.permutation(rng.uniform(1e-3, 1e-1, size=repeats))]
        if repeats >= 3:  # one slow outlier: the mean moves, the median does not
            timed[int(rng.integers(repeats))] = float(rng.uniform(1.0, 2.0))
        warm = [float(x) for x in rng.uniform(3.0, 5.0, size=warmup)]  # cold calls are slow
        schedules.append({"repeats": repeats, "warmup": warmup, "durations": warm + timed})
    out["schedules"] = schedules
    out["bm_n"] = int(rng.integers(3, 10))
    out["bm_dtype"] = str(rng.choice(["float32", "float64"]))
    return out


@judges.judge("measure_helpers_correct")
def _measure_judge(inputs: dict, outputs: dict, seconds):
    for k, (n, s) in enumerate(zip(inputs["g_n"], inputs["g_s"], strict=True)):
        expect.value(outputs, f"g{k}", 2.0 * n**3 / s / 1e9, rel=1e-9,
                     what="gflops(n, seconds) for a random size and time")
    for k, sch in enumerate(inputs["schedules"]):
        repeats, warmup, durations = sch["repeats"], sch["warmup"], sch["durations"]
        label = f"benchmark(fn, repeats={repeats}, warmup={warmup})"
        calls = expect.returned(outputs, f"calls{k}", label)
        expect.that(
            calls == warmup + repeats,
            f"{label} called fn {calls} times; it should call it warmup + repeats times",
        )
        got = expect.returned(outputs, f"b{k}", label)
        expect.that(
            isinstance(got, float),
            f"{label} should return the seconds as a float, got {type(got).__name__}",
        )
        want = statistics.median(durations[warmup:])
        expect.that(
            math.isclose(got, want, rel_tol=1e-9),
            f"{label} did not return the median of the timed calls: "
            + _what_went_wrong(got, durations, warmup, repeats),
        )
    n, dtype = inputs["bm_n"], inputs["bm_dtype"]
    expect.equal(outputs, "bm_seen", [[n, n, dtype], [n, n, dtype]],
                 what=f"benchmark_matmul(fn, {n}, dtype={dtype}) operands")


# ---- Step 1: naive_matmul ---------------------------------------------------------------------
@judges.inputs("naive_matches_numpy")
def _naive_inputs(rng: np.random.Generator) -> dict:
    shapes = [tuple(int(x) for x in rng.integers(1, 6, size=3)) for _ in range(5)]
    shapes += [(0, 3, 2), (2, 0, 3), (3, 2, 0)]  # empty dimensions
    out: dict = {"n_cases": len(shapes)}
    for k, (m, n_inner, n) in enumerate(shapes):
        out[f"a{k}"] = rng.standard_normal((m, n_inner))
        out[f"b{k}"] = rng.standard_normal((n_inner, n))
    out["ai"] = rng.integers(-50, 50, size=(4, 6))
    out["bi"] = rng.integers(-50, 50, size=(6, 3))
    out["ai32"] = rng.integers(-50, 50, size=(3, 5)).astype(np.int32)
    out["bi32"] = rng.integers(-50, 50, size=(5, 2)).astype(np.int32)
    out["a32"] = rng.standard_normal((3, 4)).astype(np.float32)
    out["b32"] = rng.standard_normal((4, 2)).astype(np.float32)
    out["v"] = rng.standard_normal(3)
    out["t3"] = rng.standard_normal((2, 3, 4))
    # the timed product: ~3M multiply-adds, about half a second of Python loops (the wall time of
    # the cell's fixed costs is ~0.1 s); a long inner dimension, so that even one numpy call per
    # output element is far faster
    m, k, n = int(rng.integers(24, 30)), int(rng.integers(4000, 5000)), int(rng.integers(24, 30))
    out["timed_seed"] = int(rng.integers(2**31))
    out["timed_shape"] = [m, k, n]
    return out


CALIBRATION_ROWS = 1  # rows of a product the judges time themselves (cost per unit is constant)


def _python_loop_seconds(m: int, k: int, n: int) -> float:
    """Seconds a plain Python triple loop over lists takes for an (m, k) @ (k, n) product, here
    and now: best of two runs of a few rows, scaled to m rows (the cost per multiply-add is
    constant; a few rows keep the judge's own share of grading small)."""
    rows = min(CALIBRATION_ROWS, m)
    a = [[1.0 + i * 1e-3] * k for i in range(rows)]
    b = [[1.0 + p * 1e-3] * n for p in range(k)]
    best = math.inf
    for _ in range(2):
        t0 = time.perf_counter()
        out = [[0.0] * n for _ in a]
        for i, a_row in enumerate(a):
            o_row = out[i]
            for j in range(n):
                s = 0.0
                for p in range(k):
                    s += a_row[p] * b[p][j]
                o_row[j] = s
        best = min(best, time.perf_counter() - t0)
    return best * m / rows


@judges.judge("naive_matches_numpy")
def _naive_judge(inputs: dict, outputs: dict, seconds):
    for k in range(inputs["n_cases"]):
        a, b = inputs[f"a{k}"], inputs[f"b{k}"]
        expect.array(outputs, f"out{k}", a @ b, dtype=np.float64, rtol=1e-12, atol=1e-12,
                     what=f"naive_matmul of {a.shape} @ {b.shape} (float64)")
    for key, (a, b) in {"int": ("ai", "bi"), "int32": ("ai32", "bi32")}.items():
        a, b = inputs[a], inputs[b]
        expect.array(outputs, key, a @ b, dtype=(a @ b).dtype, rtol=0, atol=0,
                     what=f"naive_matmul of {a.dtype} inputs (exact, numpy's result dtype)")
    a32, b32 = inputs["a32"], inputs["b32"]
    expect.array(outputs, "f32", a32 @ b32, dtype=np.float32, rtol=1e-5, atol=1e-5,
                 what="naive_matmul of float32 inputs")
    expect.raised(outputs, "bad_1d", ValueError, what="naive_matmul of a 1-D and a 2-D input")
    expect.raised(outputs, "bad_3d", ValueError, what="naive_matmul of a 3-D and a 2-D input")
    expect.raised(outputs, "bad_inner", ValueError, contains=("(3, 4)",),
                  what="naive_matmul of (3, 4) and (3, 4)")
    at, bt = timed_operands(inputs["timed_seed"], inputs["timed_shape"], "float64")
    expect.array(outputs, "timed", at @ bt, dtype=np.float64, rtol=1e-10, atol=1e-10,
                 what=f"naive_matmul of {at.shape} @ {bt.shape}")
    took = _elapsed(seconds, outputs)
    if took is not None:
        loops = _python_loop_seconds(at.shape[0], at.shape[1], bt.shape[1])
        expect.that(
            took >= SLACK * loops,
            f"naive_matmul of {at.shape} @ {bt.shape} finished far faster than three Python "
            "loops can: it must compute every multiply-add in pure Python (no @, np.dot, "
            "np.matmul, np.einsum or array sums)",
        )


# ---- Step 2: blocked_matmul -------------------------------------------------------------------
TIMED_BLOCKED = [50, 50, 50]  # block_size=1: one tile product per multiply-add


@judges.inputs("blocked_matches_numpy")
def _blocked_inputs(rng: np.random.Generator) -> dict:
    cases = []
    for _ in range(10):
        bs = int(rng.integers(2, 9))
        # sizes that are not multiples of the block (an edge tile in every direction)
        m, k, n = (int(bs * rng.integers(0, 3) + rng.integers(1, bs)) for _ in range(3))
        cases.append((m, k, n, bs))
    cases += [(0, 4, 3, 2), (3, 0, 4, 2), (4, 3, 0, 2), (5, 5, 5, 5), (7, 6, 5, 1)]
    out: dict = {"n_cases": len(cases), "bs": [c[3] for c in cases]}
    for j, (m, k, n, _bs) in enumerate(cases):
        out[f"a{j}"] = rng.standard_normal((m, k)).astype(np.float32)
        out[f"b{j}"] = rng.standard_normal((k, n)).astype(np.float32)
    out["ai"] = rng.integers(-9, 9, size=(13, 7))
    out["bi"] = rng.integers(-9, 9, size=(7, 11))
    out["bs_i"] = int(rng.integers(2, 6))
    out["a64"] = rng.standard_normal((9, 9))
    out["bad_bs"] = [0, -int(rng.integers(1, 9)), 2.5, "8", True]
    out["timed_seed"] = int(rng.integers(2**31))
    out["timed_shape"] = TIMED_BLOCKED
    return out


def _blocked_loop_seconds(a: np.ndarray, b: np.ndarray, bs: int) -> float:
    """Seconds of a tile loop (one numpy tile product per tile triple), here and now: best of
    two runs on a few rows, scaled to all of them (the cost per tile is constant)."""
    few = a[: min(CALIBRATION_ROWS, a.shape[0])]
    best = math.inf
    for _ in range(2):
        t0 = time.perf_counter()
        m, k = few.shape
        n = b.shape[1]
        out = np.zeros((m, n), dtype=np.result_type(few, b))
        for i0 in range(0, m, bs):
            for j0 in range(0, n, bs):
                c = out[i0 : i0 + bs, j0 : j0 + bs]
                for k0 in range(0, k, bs):
                    c += few[i0 : i0 + bs, k0 : k0 + bs] @ b[k0 : k0 + bs, j0 : j0 + bs]
        best = min(best, time.perf_counter() - t0)
    return best * a.shape[0] / few.shape[0]


@judges.judge("blocked_matches_numpy")
def _blocked_judge(inputs: dict, outputs: dict, seconds):
    for j in range(inputs["n_cases"]):
        a, b, bs = inputs[f"a{j}"], inputs[f"b{j}"], inputs["bs"][j]
        expect.array(outputs, f"out{j}", a @ b, dtype=np.float32, rtol=1e-4, atol=1e-4,
                     what=f"blocked_matmul of {a.shape} @ {b.shape} with block_size={bs}")
    ai, bi = inputs["ai"], inputs["bi"]
    expect.array(outputs, "int", ai @ bi, dtype=(ai @ bi).dtype, rtol=0, atol=0,
                 what=f"blocked_matmul of integer {ai.shape} @ {bi.shape} (exact)")
    a64 = inputs["a64"]
    expect.array(outputs, "big_block", a64 @ a64, dtype=np.float64, rtol=1e-12, atol=1e-12,
                 what="blocked_matmul with a block larger than the matrix")
    for j, bad in enumerate(inputs["bad_bs"]):
        expect.raised(outputs, f"bad{j}", ValueError, what=f"blocked_matmul(block_size={bad!r})")
    at, bt = timed_operands(inputs["timed_seed"], inputs["timed_shape"], "float32")
    expect.array(outputs, "timed", at @ bt, dtype=np.float32, rtol=1e-4, atol=1e-4,
                 what=f"blocked_matmul of {at.shape} @ {bt.shape} with block_size=1")
    took = _elapsed(seconds, outputs)
    if took is not None:
        tiles = _blocked_loop_seconds(at, bt, 1)
        expect.that(
            took >= SLACK_TILES * tiles,
            f"blocked_matmul of {at.shape} @ {bt.shape} with block_size=1 finished far faster "
            "than one tile product per (i0, j0, k0) tile triple allows: use block_size for the "
            "tile loops (not a fixed size, not one product of the whole matrices)",
        )


# ---- Step 3: vectorized_matmul ----------------------------------------------------------------
@judges.inputs("vectorized_matches_numpy")
def _vectorized_inputs(rng: np.random.Generator) -> dict:
    shapes = [tuple(int(x) for x in rng.integers(1, 9, size=3)) for _ in range(8)]
    shapes += [(0, 3, 2), (2, 0, 3), (3, 2, 0)]
    out: dict = {"n_cases": len(shapes)}
    for k, (m, n_inner, n) in enumerate(shapes):
        out[f"a{k}"] = rng.standard_normal((m, n_inner))
        out[f"b{k}"] = rng.standard_normal((n_inner, n))
    out["a32"] = rng.standard_normal((5, 7)).astype(np.float32)
    out["b32"] = rng.standard_normal((7, 3)).astype(np.float32)
    out["ai"] = rng.integers(-20, 20, size=(5, 8))
    out["bi"] = rng.integers(-20, 20, size=(8, 3))
    out["ai8"] = rng.integers(-20, 20, size=(4, 6)).astype(np.int8)
    out["bi8"] = rng.integers(-20, 20, size=(6, 5)).astype(np.int8)
    return out


@judges.judge("vectorized_matches_numpy")
def _vectorized_judge(inputs: dict, outputs: dict, seconds):
    for k in range(inputs["n_cases"]):
        a, b = inputs[f"a{k}"], inputs[f"b{k}"]
        expect.array(outputs, f"out{k}", a @ b, dtype=np.float64, rtol=1e-12, atol=1e-12,
                     what=f"vectorized_matmul of {a.shape} @ {b.shape} (float64)")
    a32, b32 = inputs["a32"], inputs["b32"]
    expect.array(outputs, "f32", a32 @ b32, dtype=np.float32, rtol=1e-5, atol=1e-5,
                 what="vectorized_matmul of float32 inputs")
    for key, (a, b) in {"int": ("ai", "bi"), "int8": ("ai8", "bi8")}.items():
        a, b = inputs[a], inputs[b]
        expect.array(outputs, key, a @ b, dtype=(a @ b).dtype, rtol=0, atol=0,
                     what=f"vectorized_matmul of {a.dtype} inputs (exact, numpy's dtype, "
                     "wrapping around like numpy)")
    expect.raised(outputs, "bad_inner", ValueError, what="vectorized_matmul of (2, 3) @ (2, 3)")
    expect.raised(outputs, "bad_1d", ValueError, what="vectorized_matmul of a 1-D input")


# ---- Step 4: broadcast_matmul -----------------------------------------------------------------
BROADCAST_SHAPES = [
    ((3,), (3,)),
    ((1, 4), (2, 3, 4, 2)),
    ((3, 1, 2, 5), (1, 4, 5, 3)),
    ((0, 2, 3), (3, 4)),
    ((2, 0, 3), (3, 2)),
    ((5,), (2, 5, 3)),
    ((2, 2, 3), (3,)),
    ((3, 0), (0, 2)),
    ((4, 3), (3, 2)),
]


@judges.inputs("broadcast_matches_numpy")
def _broadcast_inputs(rng: np.random.Generator) -> dict:
    shapes = list(BROADCAST_SHAPES)
    for _ in range(3):  # random broadcastable batches
        batch = tuple(int(x) for x in rng.integers(1, 4, size=int(rng.integers(1, 3))))
        squashed = tuple(1 if rng.random() < 0.5 else s for s in batch)
        m, k, n = (int(x) for x in rng.integers(1, 5, size=3))
        shapes.append((batch + (m, k), squashed + (k, n)))
    out: dict = {"n_cases": len(shapes), "scale": int(rng.integers(2, 9))}
    for j, (sa, sb) in enumerate(shapes):
        out[f"a{j}"] = rng.standard_normal(sa).astype(np.float32)
        out[f"b{j}"] = rng.standard_normal(sb).astype(np.float32)
    out["ai"] = rng.integers(-5, 5, size=(2, 3, 4))
    out["bf"] = rng.standard_normal((4, 2)).astype(np.float32)
    return out


@judges.judge("broadcast_matches_numpy")
def _broadcast_judge(inputs: dict, outputs: dict, seconds):
    scale = inputs["scale"]
    for j in range(inputs["n_cases"]):
        a, b = inputs[f"a{j}"], inputs[f"b{j}"]
        want = scale * np.matmul(a, b)
        what = f"broadcast_matmul(kernel, a, b) for {a.shape} @ {b.shape}"
        expect.array(outputs, f"out{j}", want, dtype=want.dtype, rtol=1e-5, atol=1e-5,
                     what=what + " (the result must be made of the kernel's results)")
        ranks = expect.returned(outputs, f"ranks{j}", what)
        expect.that(
            all(r == [2, 2] for r in ranks),
            f"{what}: the kernel must only be given 2-D arrays, it got ranks {ranks[:3]}",
        )
        expect.that(
            want.size == 0 or len(ranks) >= 1,
            f"{what}: the kernel was never called (compute every matrix product with kernel)",
        )
    ai, bf = inputs["ai"], inputs["bf"]
    want = scale * np.matmul(ai, bf)
    expect.array(outputs, "mixed", want, dtype=want.dtype, rtol=1e-5, atol=1e-5,
                 what="broadcast_matmul of int64 (2, 3, 4) @ float32 (4, 2) (numpy's dtype)")
    for name, shapes in [("bad2d", "(2, 3)"), ("bad3d", "(2, 3, 4)")]:
        expect.raised(outputs, name, ValueError, contains=(shapes,),
                      what=f"broadcast_matmul of mismatched {shapes} operands")


# ---- Step 5: the backend classes --------------------------------------------------------------
@judges.inputs("backends_route_correctly")
def _backends_inputs(rng: np.random.Generator) -> dict:
    m, k, n, batch = (int(x) for x in rng.integers(2, 6, size=4))
    return {
        "a2": rng.standard_normal((m, k)).astype(np.float32),
        "b2": rng.standard_normal((k, n)).astype(np.float32),
        "a3": rng.standard_normal((batch, m, k)).astype(np.float32),
        "block_size": int(rng.integers(2, 9)),
    }


@judges.judge("backends_route_correctly")
def _backends_judge(inputs: dict, outputs: dict, seconds):
    a2, b2, a3, bs = inputs["a2"], inputs["b2"], inputs["a3"], inputs["block_size"]
    kernels = {"naive": ["naive", None], "blocked": ["blocked", bs],
               "vectorized": ["vectorized", None]}
    for name, want_call in kernels.items():
        label = f"BlockedBackend({bs})" if name == "blocked" else f"{name.title()}Backend()"
        expect.equal(outputs, f"{name}_is_backend", True,
                     what=f"{label} is a subclass of Backend")
        expect.equal(outputs, f"{name}_name", name, what=f"{label}.name")
        for key, (x, y) in {"2d": (a2, b2), "3d": (a3, b2)}.items():
            what = f"{label}.matmul of {x.shape} @ {y.shape}"
            expect.array(outputs, f"{name}_{key}", x @ y, rtol=1e-4, atol=1e-4, what=what)
            calls = expect.returned(outputs, f"{name}_{key}_calls", what)
            bm = expect.returned(outputs, f"{name}_{key}_broadcast", what)
            expect.that(bm >= 1, f"{what}: it should go through broadcast_matmul (which handles "
                        "batches and 1-D operands)")
            expect.that(len(calls) >= 1, f"{what}: it never called a kernel function")
            wrong = [c for c in calls if c[:2] != want_call]
            expect.that(
                not wrong,
                f"{what}: it called the {wrong[0][0] if wrong else ''} kernel"
                + (f" with block_size={wrong[0][1]}" if wrong and wrong[0][1] is not None
                   else "")
                + f"; {label} should call {want_call[0]}_matmul"
                + (" with its own block_size" if name == "blocked" else ""),
            )
            ranks = [c[2] for c in calls]
            expect.that(all(r == [2, 2] for r in ranks),
                        f"{what}: the kernel must only see 2-D arrays, got ranks {ranks[:3]}")


# ---- Step 6: exact_in_float64 -----------------------------------------------------------------
def _exact(a: np.ndarray, b: np.ndarray) -> bool:
    if a.dtype.kind not in "biu" or b.dtype.kind not in "biu":
        return False
    if a.size == 0 or b.size == 0:
        return True
    a_max = max(abs(int(a.max())), abs(int(a.min())))
    b_max = max(abs(int(b.max())), abs(int(b.min())))
    return a.shape[-1] * a_max * b_max <= 2**53


@judges.inputs("exact_in_float64_correct")
def _exact_inputs(rng: np.random.Generator) -> dict:
    cases: list[tuple[np.ndarray, np.ndarray]] = []

    def place(shape, value, dtype=np.int64, low=-3, high=4):
        """Small random entries, with `value` at a random position (it sets the bound)."""
        x = rng.integers(low, high, size=shape).astype(dtype)
        if x.size:
            x.flat[int(rng.integers(x.size))] = value
        return x

    # the bound exactly at 2**53 (exact) and just above it; the largest entry negative or not
    p = int(rng.integers(0, 8))
    q = int(rng.integers(20, 30))
    k = 2**p
    for extra in (0, 1):
        sign = int(rng.choice([-1, 1]))
        cases.append((place((2, k), sign * 2**q), place((k, 3), 2 ** (53 - p - q) + extra)))
    # the negative entry sets the bound
    cases.append((place((1, 2), -int(rng.integers(3, 9)), low=0, high=2), place((2, 1), 2**51)))
    # K is the inner dimension, not the number of rows: many rows, a few columns, or the reverse
    k = int(rng.integers(4, 9))
    big = 2**25
    cases.append((place((1, k), big), place((k, 5), 2**28 // k + 1)))  # K * ... > 2**53
    cases.append((place((40, 2), big), place((2, 40), 2**26)))  # 2 * 2**25 * 2**26 = 2**52
    # products that overflow int64 (numpy integer arithmetic would wrap around)
    cases.append((place((2, 2), 2**40), place((2, 2), 2**40)))
    cases.append((np.array([[np.iinfo(np.int64).min, 1]], np.int64), np.ones((2, 1), np.int64)))
    u = np.full((1, 2), np.iinfo(np.uint64).max, dtype=np.uint64)
    cases.append((u, np.ones((2, 1), np.uint64)))
    # dtypes: bool and small ints count as integers; floats (or one float operand) do not
    cases.append((rng.random((2, 3)) < 0.5, rng.random((3, 2)) < 0.5))
    cases.append((rng.integers(0, 9, (2, 3)).astype(np.uint8),
                  rng.integers(-9, 9, (3, 2)).astype(np.int8)))
    cases.append((rng.integers(-9, 9, (2, 3)), rng.standard_normal((3, 2))))
    cases.append((rng.standard_normal((2, 3)).astype(np.float32),
                  rng.standard_normal((3, 2)).astype(np.float32)))
    # empty operands are trivially exact
    cases.append((np.zeros((0, 3), np.int64), rng.integers(-9, 9, (3, 2))))
    cases.append((np.zeros((2, 0), np.int32), np.zeros((0, 4), np.int32)))
    # random small cases (all exact)
    for _ in range(3):
        m, k, n = (int(x) for x in rng.integers(1, 6, size=3))
        cases.append((rng.integers(-100, 100, (m, k)), rng.integers(-100, 100, (k, n))))
    order = rng.permutation(len(cases))
    out: dict = {"n_cases": len(cases)}
    for j, i in enumerate(order):
        out[f"a{j}"], out[f"b{j}"] = cases[int(i)]
    return out


def _describe(x: np.ndarray) -> str:
    return f"{x.dtype} {x.shape}"


@judges.judge("exact_in_float64_correct")
def _exact_judge(inputs: dict, outputs: dict, seconds):
    for j in range(inputs["n_cases"]):
        a, b = inputs[f"a{j}"], inputs[f"b{j}"]
        what = f"exact_in_float64 of {_describe(a)} and {_describe(b)}"
        got = expect.returned(outputs, f"out{j}", what)
        expect.that(type(got) is bool, f"{what}: should return True or False, got "
                    f"{type(got).__name__}")
        want = _exact(a, b)
        if got != want:
            reason = (
                "a bound just above 2**53 (or exactly at it)" if want is False and a.size
                and a.dtype.kind in "biu" and b.dtype.kind in "biu" else "this case"
            )
            raise AssertionError(
                f"{what}: wrong answer for {reason}; the bound is K * max|a| * max|b| <= 2**53 "
                "with K the inner dimension, |min| counted too, in Python integers"
            )


# ---- Step 6: OptimizedBackend -----------------------------------------------------------------
OPT_SHAPES = [
    ((5, 7), (7, 3)),
    ((7,), (7, 3)),
    ((5, 7), (7,)),
    ((7,), (7,)),
    ((2, 3, 1, 7), (7, 4)),
    ((2, 2, 7), (7, 4)),
    ((3, 5, 7), (3, 7, 2)),
    ((2, 1, 5, 7), (3, 7, 2)),
    ((0, 1, 7), (7, 4)),
    ((3, 1, 0), (0, 4)),
    ((40, 40), (40, 40)),
    ((3, 40, 40), (40, 40)),
]
OPT_DTYPES = ["float32", "float64", "int64", "int32", "int8", "float16", "bool"]
TIMED_INT = 384  # int64 (n, n) @ (n, n): numpy's integer loop vs float64 BLAS
TIMED_ROWS = 4  # rows of the timed product the probe sends back (the values are checked)
TIMED_REPS = 16


@judges.inputs("optimized_matches_numpy")
def _optimized_inputs(rng: np.random.Generator) -> dict:
    out: dict = {"n_shapes": len(OPT_SHAPES), "dtypes": OPT_DTYPES}
    for d, dtype in enumerate(OPT_DTYPES):
        for s, (sa, sb) in enumerate(OPT_SHAPES):
            if dtype == "bool":
                a, b = rng.random(sa) < 0.5, rng.random(sb) < 0.5
            elif dtype.startswith("int"):
                a = rng.integers(-5, 5, size=sa).astype(dtype)
                b = rng.integers(-5, 5, size=sb).astype(dtype)
            else:
                a = rng.standard_normal(sa).astype(dtype)
                b = rng.standard_normal(sb).astype(dtype)
            out[f"a{d}_{s}"], out[f"b{d}_{s}"] = a, b
    out["big"] = np.full((40, 40), 2**40 + int(rng.integers(0, 100)), dtype=np.int64)
    out["strided_a"] = rng.standard_normal((30, 60)).astype(np.float32)  # used as [:, ::2]
    out["strided_b"] = rng.standard_normal((30, 20))
    out["batch_x"] = rng.standard_normal((2, 3, 1, 8)).astype(np.float32)  # transposed (1, 0)
    out["batch_w"] = rng.standard_normal((8, 5)).astype(np.float32)
    out["tiny_int"] = rng.integers(-3, 3, size=(2, 2))
    out["timed_seed"] = int(rng.integers(2**31))
    out["timed_shape"] = [TIMED_INT, TIMED_INT, TIMED_INT]
    out["timed_rows"] = TIMED_ROWS
    out["reps"] = TIMED_REPS
    return out


def _route_seconds(a: np.ndarray, b: np.ndarray, via_float: bool) -> float:
    """Seconds of a @ b by numpy's integer loop or by the float64 route, here and now: one run
    on an eighth of a's rows, scaled (the cost is linear in the rows; an outlier only makes the
    check more lenient)."""
    part = a[: max(a.shape[0] // 8, 1)]
    t0 = time.perf_counter()
    if via_float:
        np.matmul(part.astype(np.float64), b.astype(np.float64)).astype(np.result_type(a, b))
    else:
        np.matmul(part, b)
    return (time.perf_counter() - t0) * a.shape[0] / part.shape[0]


@judges.judge("optimized_matches_numpy")
def _optimized_judge(inputs: dict, outputs: dict, seconds):
    for d, dtype in enumerate(inputs["dtypes"]):
        for s in range(inputs["n_shapes"]):
            a, b = inputs[f"a{d}_{s}"], inputs[f"b{d}_{s}"]
            want = np.matmul(a, b)
            what = f"OptimizedBackend().matmul of {dtype} {a.shape} @ {b.shape}"
            if np.dtype(dtype).kind in "biu":
                expect.array(outputs, f"out{d}_{s}", want, dtype=want.dtype, rtol=0, atol=0,
                             what=what + " (integer results must be exact, numpy's dtype)")
            else:
                tol = 2e-2 if dtype == "float16" else 1e-4
                expect.array(outputs, f"out{d}_{s}", want, dtype=want.dtype, rtol=tol, atol=tol,
                             what=what)
    big = inputs["big"]
    expect.array(outputs, "big", big @ big, dtype=np.int64, rtol=0, atol=0,
                 what="OptimizedBackend of int64 products that overflow (numpy wraps around; "
                 "the float64 route is not exact there)")
    a, b = inputs["strided_a"][:, ::2], inputs["strided_b"]
    expect.array(outputs, "strided", a @ b, dtype=np.float64, rtol=1e-6, atol=1e-6,
                 what="OptimizedBackend of a strided float32 view @ float64")
    x, w = inputs["batch_x"].transpose(1, 0, 2, 3), inputs["batch_w"]
    expect.array(outputs, "batch", x @ w, dtype=np.float32, rtol=1e-5, atol=1e-5,
                 what="OptimizedBackend of a non-contiguous (3, 2, 1, 8) batch @ (8, 5)")
    ti = inputs["tiny_int"]
    expect.array(outputs, "custom", ti @ ti, dtype=ti.dtype, rtol=0, atol=0,
                 what="OptimizedBackend(OptimizedConfig(min_convert_flops=0, fold_max_rows=0))")
    timed, timed_b = timed_operands(inputs["timed_seed"], inputs["timed_shape"], "int64")
    want = timed[: inputs["timed_rows"]] @ timed_b  # the rows the probe sends back
    expect.array(outputs, "timed", want, dtype=np.int64, rtol=0, atol=0,
                 what=f"OptimizedBackend of int64 {timed.shape} @ {timed.shape}")
    took = _elapsed(seconds, outputs)
    reps = inputs["reps"]
    if took is not None:
        fast = _route_seconds(timed, timed_b, via_float=True)
        # fast enough whatever numpy's integer loop costs (the check below needs slow >= 4 fast)
        if took <= 0.5 * reps * 4 * fast:
            return None
        slow = _route_seconds(timed, timed_b, via_float=False)
        if slow >= 4 * fast:  # this machine's BLAS is faster for these: the rule must be used
            expect.that(
                took <= 0.5 * reps * slow,
                f"OptimizedBackend took about as long as numpy's integer loop for int64 "
                f"{timed.shape} products that are exact in float64: send them through float64 "
                "BLAS (exact_in_float64) and convert back",
            )
