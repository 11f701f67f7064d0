"""Judges of module 17's grade cells: the trusted half of each check (see tito/judging.py).

Instructor-only: never released, never inside a sandbox. Each grade cell's hidden probe drives
the student's code on the inputs drawn here (a fresh seed per grading) and sends back what it
produced (codes, scales, ranges, accumulators, logits, byte counts); the judges below compare it
with a numpy reference of the same formulas, in the grading worker. The reference reproduces
the notebook's float32 arithmetic (``np.rint(x / scale) + z`` in float32), so integer codes are
compared exactly; the shipped digits weights and labels are read from the project's files.

What stays forgeable (the probe runs in the student's process, so it only reports):

- every output is the student's *answer*: a notebook that computes the reference itself in the
  probe's place scores, but that is doing the exercise. No expected value ever enters the
  sandbox, and the inputs (ranges, codes, batches, calibration images) are fresh per grading.
- ``convert_builds_new_int8_model`` judges the float model's weights as recorded after
  quantizing; a patch that restores them before the recording would pass that part.
- ``minmax_and_moving_average_observers`` records whether ``observer(x) is x`` as a boolean
  (identity cannot cross the boundary); a forged ``True`` passes that one line.
- ``digits_int8_accuracy_within_one_point`` judges the logits the probe reports for the test
  images: logits computed by any means (e.g. the float model) pass the accuracy part; the
  integer-vs-dequant agreement and the calibration indices drawn here make a lookup table
  useless but not a float model run twice.
- ``size_accounting_matches_dtypes`` compares byte counts with ``np.savez`` of the same arrays;
  a hard-coded formula for these layer kinds would pass.
"""

from __future__ import annotations

import functools
import io
from pathlib import Path

import numpy as np

from tito.judging import Judges, expect

judges = Judges("17_quantization")

FLOOR = float(np.finfo(np.float32).tiny)  # SCALE_FLOOR of the module
DATASETS = Path(__file__).resolve().parents[2] / "tinytorch" / "datasets"


# ---- reference formulas ----------------------------------------------------------------------
def _qrange(bits: int, sym: bool) -> tuple[int, int]:
    qmax = 2 ** (bits - 1) - 1
    return (-qmax if sym else -qmax - 1), qmax


def ref_qparams(lo, hi, bits: int = 8, sym: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """(float32 scale, int32 zero point) exactly as the module defines them."""
    lo = np.minimum(np.asarray(lo, dtype=np.float64), 0.0)
    hi = np.maximum(np.asarray(hi, dtype=np.float64), 0.0)
    qmin, qmax = _qrange(bits, sym)
    step = np.maximum(-lo, hi) / qmax if sym else (hi - lo) / (qmax - qmin)
    scale = np.where(step > 0, np.maximum(step, FLOOR), 1.0).astype(np.float32)
    if sym:
        return scale, np.zeros(scale.shape, dtype=np.int32)
    return scale, np.clip(qmin - np.rint(lo / scale), qmin, qmax).astype(np.int32)


def _view(a: np.ndarray, axis: int | None, ndim: int) -> np.ndarray:
    if axis is None:
        return a
    shape = [1] * ndim
    shape[axis % ndim] = -1
    return a.reshape(shape)


def ref_quantize(x, scale, zp, bits=8, sym=False, axis=None) -> np.ndarray:
    x = np.asarray(x, dtype=np.float32)
    s = _view(np.asarray(scale, np.float32), axis, x.ndim)
    z = _view(np.asarray(zp, np.int32), axis, x.ndim).astype(np.float32)
    qmin, qmax = _qrange(bits, sym)
    with np.errstate(all="ignore"):
        return np.clip(np.rint(x / s) + z, qmin, qmax).astype(np.int8)


def ref_dequantize(q, scale, zp, axis=None) -> np.ndarray:
    q = np.asarray(q)
    s = _view(np.asarray(scale, np.float32), axis, q.ndim)
    z = _view(np.asarray(zp, np.int32), axis, q.ndim).astype(np.float32)
    return (q.astype(np.float32) - z) * s


def _got_array(outputs, name: str, shape: tuple, what: str) -> np.ndarray:
    """Output ``name``: a finite float array of ``shape`` (values judged by the caller)."""
    got = expect.returned(outputs, name, what)
    expect.that(isinstance(got, np.ndarray) and got.dtype.kind in "fiu",
                f"{what}: not a numeric array")
    expect.that(got.shape == tuple(shape), f"{what}: shape {got.shape}, expected {tuple(shape)}")
    expect.that(bool(np.isfinite(got).all()), f"{what}: contains NaN or inf")
    return got


def _half_step_ok(got, x, scale, axis=None) -> bool:
    s = _view(np.asarray(scale, np.float64), axis, np.asarray(x).ndim)
    err = np.abs(np.asarray(got, np.float64) - np.asarray(x, np.float64))
    return bool((err <= 0.5 * s * (1 + 1e-4) + 1e-30).all())


# ---- 1. compute_qparams ----------------------------------------------------------------------
@judges.inputs("qparams_affine_and_symmetric")
def _qp_inputs(rng: np.random.Generator) -> dict:
    cases = []
    for bits in (8, 4, 6, 2, 3, 7):
        for _ in range(4):
            lo, hi = -float(rng.uniform(0, 10)), float(rng.uniform(0.01, 10))
            cases.append([lo, hi, bits])
    # only positive / only negative ranges: stretched to include 0
    cases.append([float(rng.uniform(0.5, 3)), float(rng.uniform(4, 9)), 8])
    cases.append([-float(rng.uniform(4, 9)), -float(rng.uniform(0.5, 3)), 8])
    # exact ties lo / scale = -(k + 0.5): scale 2^-e exactly (half-to-even vs half-away). An
    # even k tells them apart (k + 0.5 rounds to k, not k + 1), an odd k catches rounding down.
    for bits in (8, 4):
        n = 2**bits - 1
        for parity in (0, 1, 0):
            e = int(rng.integers(1, 6))
            k = 2 * int(rng.integers(1, (n - 1) // 2)) - 1 + parity  # in [1, n - 2]
            s = 2.0**-e
            cases.append([-(k + 0.5) * s, (n - k - 0.5) * s, bits])
    # fractional parts below and above one half (floor vs ceil vs trunc)
    for frac in (0.2, 0.8):
        k = int(rng.integers(5, 120))
        s = float(rng.uniform(0.005, 0.05))
        cases.append([-(k + frac) * s, (255 - k - frac) * s, 8])
    c = int(rng.integers(3, 9))
    return {
        "cases": cases,
        "pc_lo": -rng.uniform(0, 5, c),
        "pc_hi": rng.uniform(0.01, 5, c),
        "pc_bits": int(rng.choice([8, 4])),
    }


@judges.judge("qparams_affine_and_symmetric")
def _qp_judge(inputs: dict, outputs: dict, seconds):
    for k, (lo, hi, bits) in enumerate(inputs["cases"]):
        for sym in (False, True):
            kind = f"{'symmetric' if sym else 'affine'} {bits}-bit range"
            s, z = ref_qparams(lo, hi, bits, sym)
            got = expect.returned(outputs, f"c{k}_{int(sym)}", f"compute_qparams of a {kind}")
            expect.array(got, "scale", s, rtol=1e-6, what=f"scale of a {kind}")
            expect.array(got, "zero_point", z, rtol=0, atol=0,
                         what=f"zero point of a {kind} (qmin - round half to even(min / scale))")
    bits = inputs["pc_bits"]
    for sym in (False, True):
        s, z = ref_qparams(inputs["pc_lo"], inputs["pc_hi"], bits, sym)
        kind = f"per-channel {'symmetric' if sym else 'affine'} {bits}-bit ranges (axis=0)"
        got = expect.returned(outputs, f"pc_{int(sym)}", f"compute_qparams of {kind}")
        expect.array(got, "scale", s, rtol=1e-6, what=f"scales of {kind}")
        expect.array(got, "zero_point", z, rtol=0, atol=0, what=f"zero points of {kind}")
        expect.that(got.get("axis") == 0, f"compute_qparams of {kind}: axis is not kept")


# ---- 2. zero width ---------------------------------------------------------------------------
@judges.inputs("qparams_zero_width_is_safe")
def _zw_inputs(rng: np.random.Generator) -> dict:
    return {
        "const": float(rng.uniform(0.5, 9)),
        "tiny": float(10.0 ** rng.uniform(-44, -40)),
        "channels": int(rng.integers(2, 6)),
        "bits": [int(b) for b in rng.permutation([2, 4, 8])],
    }


@judges.judge("qparams_zero_width_is_safe")
def _zw_judge(inputs: dict, outputs: dict, seconds):
    for sym in (False, True):
        kind = "symmetric" if sym else "affine"
        got = expect.returned(outputs, f"zero_{int(sym)}", f"{kind} all-zero range")
        expect.that(float(got["scale"]) == 1.0, f"an {kind} all-zero range must get scale 1.0")
        qmin, qmax = _qrange(8, sym)
        expect.that(qmin <= int(got["zero_point"]) <= qmax and (not sym or got["zero_point"] == 0),
                    f"an {kind} all-zero range: zero point off the grid")
        tiny = expect.returned(outputs, f"tiny_{int(sym)}", f"{kind} range [0, tiny]")
        s = float(tiny["scale"])
        expect.that(np.isfinite(s) and s >= FLOOR,
                    f"an {kind} range far below float32 resolution must get a finite scale "
                    ">= SCALE_FLOOR")
        want_s, _ = ref_qparams(0.0, inputs["const"], 8, sym)
        const = expect.returned(outputs, f"const_{int(sym)}", f"{kind} constant range")
        expect.array(const, "scale", want_s, rtol=1e-6,
                     what=f"scale of an {kind} constant positive range (stretched to [0, c])")
        for bits in inputs["bits"]:
            pc = expect.returned(outputs, f"pc_{bits}_{int(sym)}",
                                 f"{kind} {bits}-bit all-zero channels")
            expect.array(pc, "scale", np.ones(inputs["channels"], np.float32), rtol=0,
                         what=f"scales of {kind} {bits}-bit all-zero channels")


# ---- 3. quantize / dequantize ----------------------------------------------------------------
@judges.inputs("quantize_rounds_half_to_even_and_saturates")
def _qz_inputs(rng: np.random.Generator) -> dict:
    cases = []
    for _ in range(6):
        scale = np.float32(rng.uniform(0.01, 2.0))
        zp = int(rng.integers(-128, 128))
        k = rng.integers(-200, 200, size=300)
        x = ((k + 0.5) * scale).astype(np.float32)  # exact ties where representable
        x = np.concatenate([x, rng.normal(0, 100 * float(scale), 200).astype(np.float32),
                            np.array([1e30, -1e30, np.inf, -np.inf], np.float32)])
        cases.append({"scale": float(scale), "zp": zp, "x": x})
    s2 = float(2.0 ** -int(rng.integers(0, 4)))
    ties = (np.arange(-12, 12) + 0.5) * s2
    return {
        "cases": cases,
        "ties": ties,  # scale s2: x / s exactly k + 0.5
        "tie_scale": s2,
        "x4": np.array([9.0, -9.0, 2.5, 3.5, -2.5, -8.4, 7.6]) * s2,
        "nan_at": int(rng.integers(0, 5)),
        "codes": rng.integers(-128, 128, 50).astype(np.int8),
    }


@judges.judge("quantize_rounds_half_to_even_and_saturates")
def _qz_judge(inputs: dict, outputs: dict, seconds):
    for k, c in enumerate(inputs["cases"]):
        s, z = np.float32(c["scale"]), np.int32(c["zp"])
        expect.array(outputs, f"q{k}", ref_quantize(c["x"], s, z), dtype=np.int8, rtol=0,
                     atol=0, what="quantize of ties, large values and +-inf (8-bit affine, "
                     "zero point != 0)")
        codes = inputs["codes"]
        expect.array(outputs, f"dq{k}", ref_dequantize(codes, s, z), dtype=np.float32,
                     rtol=1e-6, atol=1e-6 * float(s), what="dequantize of int8 codes")
    s2 = inputs["tie_scale"]
    for bits in (8, 4):
        for sym in (False, True):
            expect.array(outputs, f"ties_{bits}_{int(sym)}",
                         ref_quantize(inputs["ties"], s2, 0, bits, sym), dtype=np.int8, rtol=0,
                         atol=0, what=f"quantize of exact ties (x / scale = k + 0.5), {bits}-bit "
                         f"{'symmetric' if sym else 'affine'}")
            expect.array(outputs, f"x4_{bits}_{int(sym)}",
                         ref_quantize(inputs["x4"], s2, 0, bits, sym), dtype=np.int8, rtol=0,
                         atol=0, what=f"saturation of a {bits}-bit "
                         f"{'symmetric' if sym else 'affine'} grid")
    expect.raised(outputs, "nan", ValueError, what="quantize of an array containing NaN")


# ---- 4. round trip ---------------------------------------------------------------------------
@judges.inputs("roundtrip_within_half_step")
def _rt_inputs(rng: np.random.Generator) -> dict:
    cases = []
    for _ in range(16):
        bits = int(rng.choice([2, 3, 4, 8]))
        sym = bool(rng.integers(2))
        spread, shift = 10 ** rng.uniform(-4, 4), rng.uniform(-5, 5)
        x = (rng.standard_normal(500) * spread + shift).astype(np.float32)
        x[0] = 0.0
        s, z = ref_qparams(x.min(), x.max(), bits, sym)
        cases.append({"x": x, "scale": float(s), "zp": int(z), "bits": bits, "sym": sym})
    return {"cases": cases}


@judges.judge("roundtrip_within_half_step")
def _rt_judge(inputs: dict, outputs: dict, seconds):
    for k, c in enumerate(inputs["cases"]):
        kind = f"{c['bits']}-bit {'symmetric' if c['sym'] else 'affine'}"
        got = _got_array(outputs, f"rt{k}", c["x"].shape, f"dequantize(quantize(x)) ({kind})")
        expect.that(got.dtype == np.float32, f"dequantize must return float32 ({kind})")
        expect.that(_half_step_ok(got, c["x"], c["scale"]),
                    f"{kind}: dequantize(quantize(x)) is more than half a step from x")
        codes = ref_quantize(c["x"], c["scale"], c["zp"], c["bits"], c["sym"])
        expect.array(outputs, f"q{k}", codes, dtype=np.int8, rtol=0, atol=0,
                     what=f"quantize ({kind}, a range calibrated on x)")
        want = ref_dequantize(codes, c["scale"], c["zp"])
        expect.array(outputs, f"rt{k}", want, rtol=1e-6, atol=1e-6 * c["scale"],
                     what=f"dequantize(quantize(x)) ({kind})")
        expect.that(float(got[0]) == 0.0, f"{kind}: 0.0 does not round-trip exactly")


# ---- 5. per channel --------------------------------------------------------------------------
@judges.inputs("per_channel_scales_follow_the_axis")
def _pc_inputs(rng: np.random.Generator) -> dict:
    cases = []
    shape = [int(v) for v in rng.integers(2, 6, size=4)]
    for axis in (0, 1, 2, 3, -1):
        ax = axis % 4
        mag = 10.0 ** rng.uniform(-2, 2, shape[ax])
        x = (rng.standard_normal(shape) * _view(mag, ax, 4)).astype(np.float32)
        red = tuple(i for i in range(4) if i != ax)
        for sym in (False, True):
            s, z = ref_qparams(x.min(axis=red), x.max(axis=red), 8, sym)
            cases.append({"x": x, "axis": axis, "sym": sym, "scale": s, "zp": z})
    return {"cases": cases, "shape": shape}


@judges.judge("per_channel_scales_follow_the_axis")
def _pc_judge(inputs: dict, outputs: dict, seconds):
    for k, c in enumerate(inputs["cases"]):
        kind = f"per-channel {'symmetric' if c['sym'] else 'affine'} along axis {c['axis']}"
        q = ref_quantize(c["x"], c["scale"], c["zp"], 8, c["sym"], c["axis"])
        expect.array(outputs, f"q{k}", q, dtype=np.int8, rtol=0, atol=0,
                     what=f"quantize {kind} (scale[c] for channel c)")
        expect.array(outputs, f"dq{k}", ref_dequantize(q, c["scale"], c["zp"], c["axis"]),
                     dtype=np.float32, rtol=1e-6, atol=1e-30, what=f"dequantize {kind}")
    expect.raised(outputs, "bad", ValueError, what="quantize with too few per-channel scales")


# ---- 6. min/max observers --------------------------------------------------------------------
@judges.inputs("minmax_and_moving_average_observers")
def _mm_inputs(rng: np.random.Generator) -> dict:
    shape = tuple(int(v) for v in rng.integers(2, 7, size=3))
    batches = [(rng.standard_normal(shape) * 3 + rng.uniform(-2, 2)).astype(np.float32)
               for _ in range(int(rng.integers(4, 8)))]
    return {"batches": batches, "c": float(rng.uniform(0.1, 0.6)), "axis": 1}


def _rows(x: np.ndarray, axis) -> np.ndarray:
    if axis is None:
        return x.reshape(1, -1)
    return np.moveaxis(x, axis, 0).reshape(x.shape[axis], -1)


@judges.judge("minmax_and_moving_average_observers")
def _mm_judge(inputs: dict, outputs: dict, seconds):
    c = inputs["c"]
    for axis in (None, inputs["axis"]):
        where = "per tensor" if axis is None else f"per channel (axis={axis})"
        lo = hi = mlo = mhi = None
        for b, x in enumerate(inputs["batches"]):
            r = _rows(x, axis)
            blo, bhi = r.min(axis=1), r.max(axis=1)
            if lo is None:
                lo, hi, mlo, mhi = blo, bhi, blo, bhi
            else:
                lo, hi = np.minimum(lo, blo), np.maximum(hi, bhi)
                mlo, mhi = mlo + c * (blo - mlo), mhi + c * (bhi - mhi)
            after = f"after batch {b + 1}"
            expect.array(outputs, f"mm_lo_{axis}_{b}", lo, rtol=0, atol=0,
                         what=f"MinMaxObserver.min_val {where} {after}")
            expect.array(outputs, f"mm_hi_{axis}_{b}", hi, rtol=0, atol=0,
                         what=f"MinMaxObserver.max_val {where} {after}")
            expect.array(outputs, f"ma_lo_{axis}_{b}", mlo, rtol=1e-5, atol=1e-6,
                         what=f"MovingAverageMinMaxObserver.min_val {where} {after}")
            expect.array(outputs, f"ma_hi_{axis}_{b}", mhi, rtol=1e-5, atol=1e-6,
                         what=f"MovingAverageMinMaxObserver.max_val {where} {after}")
    expect.equal(outputs, "same", True, what="an observer returns its input unchanged")


# ---- 7. percentile / MSE observers -----------------------------------------------------------
@judges.inputs("percentile_and_mse_observers_clip_outliers")
def _pm_inputs(rng: np.random.Generator) -> dict:
    n = 1500
    w = np.stack([
        rng.standard_normal(n),  # Gaussian: clipping the tails pays
        rng.standard_normal(n) * 0.1 + 0.3,
        rng.uniform(-1, 1, n) * 5,  # uniform: the full range is best at 8 bits
        rng.standard_t(3, n) * 0.01,
    ]).astype(np.float32)
    w[int(rng.integers(4)), int(rng.integers(n))] = np.float32(rng.uniform(40, 90))  # outlier
    return {"w": w, "pct": float(rng.uniform(97, 99.9)), "cands": int(rng.integers(20, 50))}


def _mse_errors(s: np.ndarray, lo, hi, fracs, bits, sym) -> np.ndarray:
    """(len(fracs), C) quantization MSE of the rows of `s` for each shrunk range."""
    out = []
    for f in fracs:
        sc, zp = ref_qparams(lo * f, hi * f, bits, sym)
        q = ref_quantize(s, sc, zp, bits, sym, axis=0)
        out.append(((ref_dequantize(q, sc, zp, axis=0) - s) ** 2).mean(axis=1))
    return np.array(out)


@judges.judge("percentile_and_mse_observers_clip_outliers")
def _pm_judge(inputs: dict, outputs: dict, seconds):
    w, p, n = inputs["w"], inputs["pct"], inputs["cands"]
    for sym in (False, True):
        kind = f"{'symmetric' if sym else 'affine'}, per channel"
        lo = expect.returned(outputs, f"p_lo_{int(sym)}", f"PercentileObserver._range ({kind})")
        if sym:
            want = np.percentile(np.abs(w), p, axis=1)
            want_lo = -want
        else:
            want, want_lo = np.percentile(w, p, axis=1), np.percentile(w, 100 - p, axis=1)
        expect.array(outputs, f"p_hi_{int(sym)}", want, rtol=1e-5, atol=1e-7,
                     what=f"PercentileObserver upper end ({kind})")
        expect.array(outputs, f"p_lo_{int(sym)}", want_lo, rtol=1e-5, atol=1e-7,
                     what=f"PercentileObserver lower end ({kind})")
        del lo
        mn, mx = w.min(axis=1).astype(np.float64), w.max(axis=1).astype(np.float64)
        fracs = np.arange(n, 0, -1) / n
        for bits in (8, 4):
            what = f"MSEObserver range ({kind}, {bits} bits, {n} candidates)"
            glo = _got_array(outputs, f"m_lo_{bits}_{int(sym)}", mn.shape, what)
            ghi = _got_array(outputs, f"m_hi_{bits}_{int(sym)}", mx.shape, what)
            err = _mse_errors(w, mn, mx, fracs, bits, sym)  # (n, C)
            for ch in range(w.shape[0]):
                ok = np.isclose(glo[ch], mn[ch] * fracs, rtol=1e-6, atol=1e-12) & np.isclose(
                    ghi[ch], mx[ch] * fracs, rtol=1e-6, atol=1e-12)
                expect.that(ok.any(), f"{what}: channel {ch} is not one of the shrunk ranges "
                            "[min, max] * k / n")
                best = err[:, ch].min()
                got = err[ok, ch].min()
                expect.that(got <= best * (1 + 1e-6) + 1e-30,
                            f"{what}: channel {ch} does not have the smallest error of the "
                            "candidates (the error must be measured per channel)")
    z = expect.returned(outputs, "zeros", "MSEObserver on all-zero data")
    expect.that(float(z) == 1.0, "MSEObserver on all-zero data must give scale 1.0")


# ---- 8. NaN / inf ----------------------------------------------------------------------------
@judges.inputs("observers_reject_nan_and_name_the_layer")
def _nan_inputs(rng: np.random.Generator) -> dict:
    return {"name": f"layer 'fc{int(rng.integers(1, 99))}' input", "n": int(rng.integers(3, 9))}


@judges.judge("observers_reject_nan_and_name_the_layer")
def _nan_judge(inputs: dict, outputs: dict, seconds):
    name = inputs["name"].split("'")[1]
    for kind in ("minmax", "ma", "pct", "mse"):
        for bad in ("nan", "inf", "-inf"):
            expect.raised(outputs, f"{kind}_{bad}", ValueError, contains=(name,),
                          what=f"{kind} observer fed a batch with {bad}")
        expect.equal(outputs, f"{kind}_batches", 1,
                     what=f"{kind} observer: batches recorded (a rejected one must not count)")
    expect.equal(outputs, "pct_samples", inputs["n"],
                 what="PercentileObserver samples after a rejected batch")


# ---- 9. integer kernels ----------------------------------------------------------------------
@judges.inputs("int8_matmul_is_exact_integer_arithmetic")
def _mk_inputs(rng: np.random.Generator) -> dict:
    cases = []
    for n, k, c in [(1, 1, 1), *(tuple(int(v) for v in rng.integers(1, 120, 3)) for _ in range(4))]:
        cases.append({
            "x": rng.integers(-128, 128, (n, k)).astype(np.int8),
            "w": rng.integers(-127, 128, (k, c)).astype(np.int8),
            "z": int(rng.integers(-128, 128)),
            "m": rng.uniform(1e-4, 1e-2, c).astype(np.float32),
            "acc": rng.integers(-(2**24), 2**24, (n, c)).astype(np.int32),
        })
    k = int(rng.integers(6000, 9000))
    return {
        "cases": cases,
        "big_x": np.full((2, k), -128, np.int8),
        "big_w": np.full((k, 3), -128, np.int8),
        "m_scalar": float(rng.uniform(1e-3, 1e-1)),
    }


@judges.judge("int8_matmul_is_exact_integer_arithmetic")
def _mk_judge(inputs: dict, outputs: dict, seconds):
    for i, c in enumerate(inputs["cases"]):
        x, w = c["x"], c["w"]
        want = (x.astype(np.int64) - c["z"]) @ w.astype(np.int64)
        expect.array(outputs, f"acc{i}", want, dtype=np.int32, rtol=0, atol=0,
                     what=f"int8_matmul of {x.shape} @ {w.shape} codes with zero point != 0")
        acc = c["acc"]
        expect.array(outputs, f"y{i}", acc.astype(np.float32) * c["m"], dtype=np.float32,
                     rtol=1e-6, atol=0, what="requantize with one multiplier per column")
        expect.array(outputs, f"ys{i}", acc.astype(np.float32) * np.float32(inputs["m_scalar"]),
                     dtype=np.float32, rtol=1e-6, atol=0,
                     what="requantize with one scalar multiplier")
    bx, bw = inputs["big_x"], inputs["big_w"]
    want = (bx.astype(np.int64) - 127) @ bw.astype(np.int64)
    expect.array(outputs, "big", want, dtype=np.int32, rtol=0, atol=0,
                 what=f"int8_matmul of extreme codes, K={bx.shape[1]} (accumulate in int32)")


# ---- 10. QuantizedLinear ---------------------------------------------------------------------
@judges.inputs("quantized_linear_matches_float_reference")
def _ql_inputs(rng: np.random.Generator) -> dict:
    cases = []
    for _ in range(4):
        k, c = int(rng.integers(1, 120)), int(rng.integers(1, 40))
        x = (rng.standard_normal((7, k)) * rng.uniform(0.1, 5) + rng.uniform(-2, 2))
        x = x.astype(np.float32)
        s, z = ref_qparams(x.min(), x.max())
        cases.append({
            "x": x, "s": float(s), "z": int(z),
            "wq": rng.integers(-63, 64, (k, c)).astype(np.int8),
            "ws": rng.uniform(1e-3, 2e-2, c).astype(np.float32),
            "b": rng.standard_normal(c).astype(np.float32),
        })
    return {"cases": cases}


@judges.judge("quantized_linear_matches_float_reference")
def _ql_judge(inputs: dict, outputs: dict, seconds):
    for i, c in enumerate(inputs["cases"]):
        xq = ref_quantize(c["x"], c["s"], c["z"]).astype(np.int64)
        acc = (xq - c["z"]) @ c["wq"].astype(np.int64)
        mult = (np.float32(c["s"]) * c["ws"]).astype(np.float32)
        want = acc.astype(np.float32) * mult + c["b"]
        tol = 1e-5 * float(np.abs(want).max()) + 1e-6
        shape = c["wq"].shape
        expect.array(outputs, f"int{i}", want, rtol=1e-5, atol=tol,
                     what=f"QuantizedLinear{shape} integer path (s_x s_w sum (x_q - z_x) w_q + b)")
        expect.array(outputs, f"deq{i}", want, rtol=1e-4, atol=10 * tol,
                     what=f"QuantizedLinear{shape} dequant path")


# ---- 11. im2col_int8 / QuantizedConv2d -------------------------------------------------------
def ref_im2col(x, k, s, p, pad):
    n, c, h, w = x.shape
    xp = np.pad(x, ((0, 0), (0, 0), (p, p), (p, p)), constant_values=pad)
    ho, wo = (h + 2 * p - k) // s + 1, (w + 2 * p - k) // s + 1
    out = np.empty((n, ho, wo, c, k, k), dtype=x.dtype)
    for i in range(ho):
        for j in range(wo):
            out[:, i, j] = xp[:, :, i * s : i * s + k, j * s : j * s + k]
    return out.reshape(n * ho * wo, c * k * k)


@judges.inputs("quantized_conv_pads_with_zero_point")
def _qc_inputs(rng: np.random.Generator) -> dict:
    cases = []
    for k, s, p in [(3, 1, 1), (3, 2, 1), (2, 2, 0), (1, 1, 2), (3, 1, 0), (2, 1, 1)]:
        h, w = int(rng.integers(k + 1, 8)), int(rng.integers(k + 1, 8))
        c_in, c_out = int(rng.integers(1, 4)), int(rng.integers(1, 5))
        x = rng.uniform(0.2, 1.5, (2, c_in, h, w)).astype(np.float32)  # zero point != 0
        sx, zx = ref_qparams(x.min(), x.max())
        cases.append({"sx": float(sx), "zx": int(zx),
            "xq": rng.integers(-128, 128, (2, c_in, h, w)).astype(np.int8),
            "k": k, "s": s, "p": p, "pad": int(rng.integers(-128, 128)),
            "x": x,
            "wq": rng.integers(-63, 64, (c_out, c_in, k, k)).astype(np.int8),
            "ws": rng.uniform(1e-3, 2e-2, c_out).astype(np.float32),
            "b": rng.standard_normal(c_out).astype(np.float32),
        })
    return {"cases": cases}


@judges.judge("quantized_conv_pads_with_zero_point")
def _qc_judge(inputs: dict, outputs: dict, seconds):
    for i, c in enumerate(inputs["cases"]):
        k, s, p = c["k"], c["s"], c["p"]
        geo = f"kernel {k}, stride {s}, padding {p}, input {c['xq'].shape}"
        expect.array(outputs, f"cols{i}", ref_im2col(c["xq"], k, s, p, c["pad"]),
                     dtype=np.int8, rtol=0, atol=0,
                     what=f"im2col_int8 ({geo}; rows (n, ho, wo), columns (c, kh, kw), "
                     "padded with pad_value)")
        x = c["x"]
        sx, zx = np.float32(c["sx"]), np.int32(c["zx"])
        xq = ref_quantize(x, sx, zx)
        cols = ref_im2col(xq, k, s, p, int(zx)).astype(np.int64) - int(zx)
        acc = cols @ c["wq"].reshape(len(c["ws"]), -1).T.astype(np.int64)
        mult = (sx * c["ws"]).astype(np.float32)
        y = acc.astype(np.float32) * mult + c["b"]
        n, _, h, w = x.shape
        ho, wo = (h + 2 * p - k) // s + 1, (w + 2 * p - k) // s + 1
        y = y.reshape(n, ho, wo, -1).transpose(0, 3, 1, 2)
        tol = 1e-5 * float(np.abs(y).max()) + 1e-6
        expect.array(outputs, f"conv{i}", y, rtol=1e-5, atol=tol,
                     what=f"QuantizedConv2d integer path ({geo}, zero point != 0)")


# ---- 12. prepare -> calibrate -> convert -----------------------------------------------------
@judges.inputs("convert_builds_new_int8_model")
def _cv_inputs(rng: np.random.Generator) -> dict:
    k, h, c = int(rng.integers(8, 40)), int(rng.integers(8, 40)), int(rng.integers(2, 10))
    return {
        "w0": (rng.standard_normal((k, h)) * rng.uniform(0.05, 0.5, h)).astype(np.float32),
        "b0": rng.standard_normal(h).astype(np.float32) * 0.1,
        "w2": (rng.standard_normal((h, c)) * 0.2).astype(np.float32),
        "b2": rng.standard_normal(c).astype(np.float32) * 0.1,
        "calib": [rng.uniform(0, 1, (16, k)).astype(np.float32) for _ in range(3)],
        "x": rng.uniform(0, 1, (10, k)).astype(np.float32),
    }


@judges.judge("convert_builds_new_int8_model")
def _cv_judge(inputs: dict, outputs: dict, seconds):
    expect.equal(outputs, "kinds", ["QuantizedLinear", "ReLU", "QuantizedLinear"],
                 what="the converted model's layers (Linear -> QuantizedLinear, order kept)")
    after = expect.returned(outputs, "float_after", "the float model's state after quantizing")
    for key, name in (("0.weight", "w0"), ("0.bias", "b0"), ("2.weight", "w2"), ("2.bias", "b2")):
        expect.array(after, key, inputs[name], dtype=np.float32, rtol=0, atol=0,
                     what=f"the float model's {key} after quantizing (must be unchanged)")
    w0, b0, w2 = inputs["w0"], inputs["b0"], inputs["w2"]
    calib = np.concatenate(inputs["calib"])
    s0, z0 = ref_qparams(calib.min(), calib.max())
    expect.array(outputs, "in_scale0", s0, rtol=1e-6, what="layer 0 input scale (min/max)")
    expect.array(outputs, "in_zp0", z0, rtol=0, atol=0, what="layer 0 input zero point")
    amax = np.abs(w0).max(axis=0)
    ws, _ = ref_qparams(-amax, amax, 7, True)
    expect.array(outputs, "w_scale0", ws, rtol=1e-6,
                 what="layer 0 weight scales (7-bit symmetric, one per output column)")
    expect.array(outputs, "w0", ref_quantize(w0, ws, 0, 7, True, axis=1), dtype=np.int8,
                 rtol=0, atol=0, what="layer 0 int8 weight codes")
    hid = np.maximum(calib @ w0 + b0, 0)
    s2, z2 = ref_qparams(hid.min(), hid.max())
    expect.array(outputs, "in_scale2", s2, rtol=1e-5, what="layer 2 input scale (after ReLU)")
    amax2 = np.abs(w2).max(axis=0)
    ws2, _ = ref_qparams(-amax2, amax2, 7, True)
    expect.array(outputs, "w_scale2", ws2, rtol=1e-6, what="layer 2 weight scales")
    # the int8 model on fresh inputs, against the reference integer forward
    x = inputs["x"]
    h = np.maximum(_ref_qlinear(x, s0, z0, ref_quantize(w0, ws, 0, 7, True, 1), ws, b0), 0)
    y = _ref_qlinear(h, s2, z2, ref_quantize(w2, ws2, 0, 7, True, 1), ws2, inputs["b2"])
    expect.array(outputs, "y", y, rtol=1e-3, atol=0.02 * float(np.abs(y).max()),
                 what="the converted model's output")
    # per-tensor weights and the percentile activation observer
    pt = expect.returned(outputs, "pt_scales", "per_channel=False weight scales")
    expect.that(np.unique(np.asarray(pt)).size == 1, "QConfig(per_channel=False) must give one "
                "weight scale per layer")
    expect.equal(outputs, "pct_zp", -128,
                 what="layer 0 input zero point with PercentileObserver on inputs in [0, 1]")
    expect.raised(outputs, "uncalibrated", RuntimeError, contains=("layer '0'",),
                  what="convert of a prepared model that saw no data")


def _ref_qlinear(x, s, z, wq, ws, b):
    xq = ref_quantize(x, s, z).astype(np.int64)
    acc = (xq - int(z)) @ wq.astype(np.int64)
    return acc.astype(np.float32) * (np.float32(s) * ws).astype(np.float32) + b


# ---- 13. digits accuracy ---------------------------------------------------------------------
def _digits_test() -> tuple[np.ndarray, np.ndarray]:
    with np.load(DATASETS / "digits.npz", allow_pickle=False) as d:
        keep = d["split"] == 2  # the test split
        images, labels = d["images"][keep], d["labels"][keep]
    return images.astype(np.float32) / np.float32(16.0), labels.astype(np.int64)


def _weights(name: str) -> dict:
    with np.load(DATASETS / f"pretrained_{name}.npz", allow_pickle=False) as d:
        return {k: np.array(d[k]) for k in d.files}


def _conv(x, w, b):  # stride 1, padding 1
    n, c, h, wd = x.shape
    cols = ref_im2col(x, w.shape[2], 1, 1, 0.0)  # (N*H*W, C*k*k)
    y = cols @ w.reshape(w.shape[0], -1).T + b
    return y.reshape(n, h, wd, -1).transpose(0, 3, 1, 2)


def _pool(x):
    n, c, h, w = x.shape
    return x.reshape(n, c, h // 2, 2, w // 2, 2).max(axis=(3, 5))


@functools.lru_cache(maxsize=1)  # the shipped models and test set: once per grading worker
def float_predictions() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(MLP predictions, CNN predictions, labels) of the shipped float models on the test set."""
    img, y = _digits_test()
    m = _weights("digits_mlp_256")
    h = np.maximum(img.reshape(-1, 64) @ m["0.weight"] + m["0.bias"], 0)
    h = np.maximum(h @ m["2.weight"] + m["2.bias"], 0)
    mlp = (h @ m["4.weight"] + m["4.bias"]).argmax(1)
    c = _weights("digits_cnn")
    h = _pool(np.maximum(_conv(img[:, None], c["0.weight"], c["0.bias"]), 0))
    h = _pool(np.maximum(_conv(h, c["3.weight"], c["3.bias"]), 0))
    cnn = (h.reshape(len(h), -1) @ c["7.weight"] + c["7.bias"]).argmax(1)
    return mlp, cnn, y


@judges.inputs("digits_int8_accuracy_within_one_point")
def _acc_inputs(rng: np.random.Generator) -> dict:
    return {"calib": np.sort(rng.choice(1257, size=256, replace=False)).astype(np.int64)}


@judges.judge("digits_int8_accuracy_within_one_point")
def _acc_judge(inputs: dict, outputs: dict, seconds):
    mlp_f, cnn_f, y = float_predictions()
    for name, pred_f in (("MLP", mlp_f), ("CNN", cnn_f)):
        what = f"INT8 {name} logits on the 360 test digits"
        got = _got_array(outputs, name, (len(y), 10), what)
        a_int8, a_f = float((got.argmax(1) == y).mean()), float((pred_f == y).mean())
        expect.that(a_int8 >= a_f - 0.01,
                    f"{what}: more than 1 point of accuracy lost (calibrated on 256 images)")
        deq = _got_array(outputs, f"{name}_deq", got.shape, f"{what}, dequant path")
        expect.that((deq.argmax(1) == got.argmax(1)).mean() > 0.99,
                    f"INT8 {name}: the integer and dequant paths disagree on predictions")


# ---- 14. int4 --------------------------------------------------------------------------------
@judges.inputs("int4_pack_roundtrip")
def _i4_inputs(rng: np.random.Generator) -> dict:
    sizes = [0, 1, 2, 7, int(rng.integers(100, 300)) * 2, int(rng.integers(100, 300)) * 2 + 1]
    out = {f"q{i}": rng.integers(-8, 8, n).astype(np.int8) for i, n in enumerate(sizes)}
    out["n"] = len(sizes)
    out["q2d"] = rng.integers(-8, 8, (3, 5)).astype(np.int8)
    return out


def ref_pack(q):
    flat = q.reshape(-1).astype(np.int16)
    if flat.size % 2:
        flat = np.concatenate([flat, np.zeros(1, np.int16)])
    nib = (flat & 0xF).astype(np.uint8)
    return nib[0::2] | (nib[1::2] << 4)


@judges.judge("int4_pack_roundtrip")
def _i4_judge(inputs: dict, outputs: dict, seconds):
    for i in range(inputs["n"]):
        q = inputs[f"q{i}"]
        expect.array(outputs, f"p{i}", ref_pack(q), dtype=np.uint8, rtol=0, atol=0,
                     what=f"pack_int4 of {q.size} codes (low nibble = even index)")
        expect.array(outputs, f"u{i}", q, dtype=np.int8, rtol=0, atol=0,
                     what=f"unpack_int4(pack_int4(q)) of {q.size} codes")
    q = inputs["q2d"]
    expect.array(outputs, "p2d", ref_pack(q), dtype=np.uint8, rtol=0, atol=0,
                 what="pack_int4 of a (3, 5) array (flattened)")


# ---- 15. size accounting ---------------------------------------------------------------------
@judges.inputs("size_accounting_matches_dtypes")
def _sz_inputs(rng: np.random.Generator) -> dict:
    k, c = int(rng.integers(2, 300)), int(rng.integers(1, 80))
    return {"k": k, "c": c, "wq": rng.integers(-63, 64, (k, c)).astype(np.int8),
            "hidden": int(rng.integers(200, 300))}


def _npz_bytes(arrays: dict) -> int:
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    return len(buf.getvalue())


@judges.judge("size_accounting_matches_dtypes")
def _sz_judge(inputs: dict, outputs: dict, seconds):
    k, c = inputs["k"], inputs["c"]
    lin = {"weight": np.zeros((k, c), np.float32), "bias": np.zeros(c, np.float32)}
    q = {"weight": np.zeros((k, c), np.int8), "weight_scale": np.zeros(c, np.float32),
         "bias": np.zeros(c, np.float32), "input_scale": np.zeros((), np.float32),
         "input_zero_point": np.zeros((), np.int32)}
    for label, arrays in ((f"Linear({k}, {c})", lin), (f"QuantizedLinear({k}, {c})", q)):
        key = "lin" if label.startswith("Linear") else "q"
        expect.equal(outputs, f"{key}_nbytes", sum(a.nbytes for a in arrays.values()),
                     what=f"state_nbytes of a {label}")
        expect.equal(outputs, f"{key}_file", _npz_bytes(arrays),
                     what=f"serialized_size of a {label} (np.savez of its state dict)")
