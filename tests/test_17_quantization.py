"""Module 17: quantization math, observers, integer layers, the model flow, size and ONNX."""

from __future__ import annotations

import copy
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from tinytorch.core import nn
from tinytorch.core.data import DataLoader, TensorDataset
from tinytorch.core.losses import cross_entropy
from tinytorch.core.optim import Adam
from tinytorch.core.tensor import Tensor, no_grad
from tinytorch.core.train import fit
from tinytorch.datasets import load_digits, load_digits_images
from tinytorch.quantization import (
    DEPLOY_HINT,
    MinMaxObserver,
    MovingAverageMinMaxObserver,
    MSEObserver,
    Observed,
    PercentileObserver,
    QConfig,
    QParams,
    QuantizedConv2d,
    QuantizedLinear,
    Quantizer,
    calibrate,
    check_pair_sums,
    compute_qparams,
    convert,
    dequantize,
    im2col_int8,
    int8_matmul,
    integer_accumulators,
    pack_int4,
    pair_sum_range,
    prepare,
    qrange,
    quantize,
    quantized_compute,
    requantize,
    saturating_pair_matmul,
    serialized_size,
    size_report,
    state_nbytes,
    to_fp16,
    unpack_int4,
)

ROOT = Path(__file__).resolve().parent.parent

finite32 = st.floats(
    min_value=-1e6, max_value=1e6, allow_nan=False, allow_subnormal=False, width=32
)
bits_st = st.sampled_from([2, 3, 4, 8])


def half_step_ok(x, qp: QParams, scale) -> bool:
    err = np.abs(dequantize(quantize(x, qp), qp).astype(np.float64) - x.astype(np.float64))
    # half a step, plus float32 rounding of x / s and of s * (q - z) relative to |x|
    return bool((err <= 0.5 * scale * (1 + 1e-4) + 1e-6 * np.abs(x)).all())


# ----------------------------------------------------------------------------- the numbers
@settings(max_examples=150, deadline=None)
@given(hnp.arrays(np.float32, st.integers(1, 200), elements=finite32), bits_st, st.booleans())
def test_roundtrip_within_half_step_inside_the_calibrated_range(x, bits, symmetric):
    qp = compute_qparams(x.min(), x.max(), bits=bits, symmetric=symmetric)
    assert half_step_ok(x, qp, np.float64(qp.scale))


@settings(max_examples=60, deadline=None)
@given(
    hnp.arrays(np.float32, st.tuples(st.integers(1, 6), st.integers(1, 40)), elements=finite32),
    bits_st,
    st.booleans(),
)
def test_per_channel_error_is_within_the_per_tensor_bound(x, bits, symmetric):
    pc = compute_qparams(x.min(axis=1), x.max(axis=1), bits, symmetric, axis=0)
    pt = compute_qparams(x.min(), x.max(), bits, symmetric)
    # every channel with a range has a step <= the tensor's (a constant channel gets scale 1.0
    # by design and is reconstructed exactly, which the half-step checks below cover)
    wide = x.max(axis=1) > x.min(axis=1)
    assert (pc.scale[wide] <= pt.scale * (1 + 1e-6)).all()
    assert half_step_ok(x, pc, pc.scale.astype(np.float64)[:, None])  # its own half step
    assert half_step_ok(x, pc, np.float64(pt.scale))  # hence within per-tensor's guarantee


def test_per_channel_beats_per_tensor_on_channels_of_different_size():
    rng = np.random.default_rng(0)
    w = rng.standard_normal((64, 256)).astype(np.float32)
    w *= np.array([50.0] + [1.0] * 63, dtype=np.float32)[:, None]  # one outlier channel
    amax_c = np.abs(w).max(axis=1)
    pc = compute_qparams(-amax_c, amax_c, symmetric=True, axis=0)
    pt = compute_qparams(-np.abs(w).max(), np.abs(w).max(), symmetric=True)
    mse_pc = ((dequantize(quantize(w, pc), pc) - w) ** 2).mean(axis=1)
    mse_pt = ((dequantize(quantize(w, pt), pt) - w) ** 2).mean(axis=1)
    assert mse_pc[1:].sum() < mse_pt[1:].sum() / 100  # the other channels keep their resolution
    assert np.isclose(mse_pc[0], mse_pt[0])  # the outlier channel sets both scales


@pytest.mark.parametrize("symmetric", [False, True])
@pytest.mark.parametrize("bits", [2, 4, 8])
@pytest.mark.parametrize("value", [0.0, 5.0, -3.25, 1e-30])
def test_constant_and_zero_width_ranges_divide_by_nothing(value, bits, symmetric):
    x = np.full(17, value, dtype=np.float32)
    with np.errstate(divide="raise", invalid="raise", over="raise"):
        qp = compute_qparams(x.min(), x.max(), bits, symmetric)
        assert np.isfinite(float(qp.scale)) and float(qp.scale) > 0
        deq = dequantize(quantize(x, qp), qp)
        obs = MinMaxObserver(bits=bits, symmetric=symmetric)
        obs(x)
        obs.qparams()
        mse = MSEObserver(bits=bits, symmetric=symmetric, num_candidates=8)
        mse(x)
        mse.qparams()
    assert np.abs(deq - x).max() <= 0.5 * float(qp.scale) * (1 + 1e-4)
    if value == 0.0:
        assert float(qp.scale) == 1.0 and (deq == 0).all()


def test_rounding_is_half_to_even_and_saturates():
    qp = QParams(scale=1.0, zero_point=3)
    x = np.array([0.5, 1.5, 2.5, -0.5, -1.5, -2.5, 200.0, -200.0, np.inf, -np.inf], np.float32)
    assert quantize(x, qp).tolist() == [3, 5, 5, 3, 1, 1, 127, -128, 127, -128]
    with pytest.raises(ValueError, match="NaN"):
        quantize(np.array([np.nan], np.float32), qp)


def test_qrange_and_qparams_validation():
    assert qrange(8, False) == (-128, 127) and qrange(8, True) == (-127, 127)
    assert qrange(4, False) == (-8, 7) and qrange(4, True) == (-7, 7)
    with pytest.raises(ValueError, match="bits"):
        qrange(9, False)
    with pytest.raises(ValueError, match="scale"):
        QParams(scale=0.0, zero_point=0)
    with pytest.raises(ValueError, match="zero_point"):
        QParams(scale=1.0, zero_point=200)
    with pytest.raises(ValueError, match="symmetric"):
        QParams(scale=1.0, zero_point=1, symmetric=True)
    with pytest.raises(ValueError, match="non-finite"):
        compute_qparams(0.0, np.inf)
    with pytest.raises(ValueError, match="channels along axis 1"):
        quantize(np.zeros((2, 5)), compute_qparams(np.zeros(3), np.ones(3), axis=1))


def test_affine_zero_point_formula():
    qp = compute_qparams(-1.0, 3.0)
    assert np.isclose(float(qp.scale), 4 / 255) and int(qp.zero_point) == -64
    assert dequantize(quantize(np.zeros(1), qp), qp)[0] == 0.0  # 0.0 is exactly on the grid


# ----------------------------------------------------------------------------- observers
def test_observers_track_ranges():
    rng = np.random.default_rng(1)
    batches = [rng.standard_normal((4, 3, 5)).astype(np.float32) for _ in range(5)]
    mm, ma = MinMaxObserver(axis=1), MovingAverageMinMaxObserver(averaging_constant=0.5, axis=1)
    for b in batches:
        mm(b)
        ma(b)
    allb = np.stack(batches)
    np.testing.assert_allclose(mm.min_val, allb.min(axis=(0, 1, 3)))
    np.testing.assert_allclose(mm.max_val, allb.max(axis=(0, 1, 3)))
    want = batches[0].max(axis=(0, 2))
    for b in batches[1:]:
        want = want + 0.5 * (b.max(axis=(0, 2)) - want)
    np.testing.assert_allclose(ma.max_val, want, rtol=1e-6)
    scale, zp = mm.calculate_qparams()
    assert scale.shape == (3,) and zp.shape == (3,)


def test_percentile_and_mse_observers():
    rng = np.random.default_rng(2)
    x = np.concatenate([rng.standard_normal(20_000), [500.0]]).astype(np.float32)
    p = PercentileObserver(percentile=99.9)
    p(x)
    assert p.qparams().scale < 10 / 255  # ignores the outlier
    g = rng.standard_normal(20_000).astype(np.float32)
    for bits, gain in ((8, 1.0), (4, 0.7)):
        m, mm = MSEObserver(bits=bits), MinMaxObserver(bits=bits)
        m(g)
        mm(g)
        err = [float(((dequantize(quantize(g, o.qparams()), o.qparams()) - g) ** 2).mean())
               for o in (m, mm)]
        assert err[0] <= err[1] * gain * (1 + 1e-6)


def test_reservoir_is_bounded_and_uniform():
    obs = PercentileObserver(max_samples=1000, seed=0)
    for i in range(50):
        obs(np.full(200, float(i), dtype=np.float32))
    s = obs.samples
    assert s.shape == (1, 1000)
    counts = np.bincount(s[0].astype(int), minlength=50)
    assert counts.min() > 0 and counts.max() < 60  # ~20 per batch, early batches not lost


def test_unobserved_observer_names_itself():
    with pytest.raises(RuntimeError, match="my layer"):
        MinMaxObserver(name="my layer").qparams()


# ----------------------------------------------------------------------------- integer kernels
@settings(max_examples=40, deadline=None)
@given(st.integers(1, 20), st.integers(1, 300), st.integers(1, 20), st.integers(-128, 127),
       st.integers(0, 2**32 - 1))
def test_int8_matmul_is_exact(n, k, c, zp, seed):
    rng = np.random.default_rng(seed)
    x = rng.integers(-128, 128, (n, k)).astype(np.int8)
    w = rng.integers(-128, 128, (k, c)).astype(np.int8)
    acc = int8_matmul(x, zp, w)
    assert acc.dtype == np.int32
    assert (acc.astype(np.int64) == (x.astype(np.int64) - zp) @ w.astype(np.int64)).all()


def test_int8_matmul_extremes_and_errors():
    x = np.full((1, 60_000), -128, np.int8)
    w = np.full((60_000, 1), -128, np.int8)
    assert int(int8_matmul(x, 127, w)[0, 0]) == 60_000 * 255 * 128  # int32, no wrap-around
    with pytest.raises(TypeError, match="int8"):
        int8_matmul(x.astype(np.int32), 0, w)
    with pytest.raises(ValueError, match=r"\(1, 60000\) and \(3, 1\)"):
        int8_matmul(x, 0, w[:3])
    with pytest.raises(TypeError, match="int32"):
        requantize(np.zeros(3, np.float32), 1.0)


def _quantized_linear(lin, x):
    iq = compute_qparams(x.min(), x.max())
    amax = np.abs(lin.weight.data).max(axis=0)
    return QuantizedLinear.from_float(lin, iq, compute_qparams(-amax, amax, symmetric=True, axis=1))


@settings(max_examples=25, deadline=None)
@given(st.integers(1, 96), st.integers(1, 40), st.integers(0, 2**32 - 1))
def test_quantized_linear_integer_path_equals_its_formula_and_the_dequant_path(k, c, seed):
    rng = np.random.default_rng(seed)
    nn.manual_seed(seed % 1000)
    lin = nn.Linear(k, c)
    x = (rng.standard_normal((7, k)) * rng.uniform(0.1, 4) + rng.uniform(-1, 1)).astype(np.float32)
    ql = _quantized_linear(lin, x)
    iq = ql.input_qparams
    acc = (quantize(x, iq).astype(np.int64) - int(iq.zero_point)) @ ql.weight.astype(np.int64)
    want = acc * (np.float64(iq.scale) * ql.weight_scale) + lin.bias.data
    got = ql(x).data
    tol = 1e-5 * max(1.0, float(np.abs(want).max()))
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=tol)
    with quantized_compute("dequant"):
        np.testing.assert_allclose(ql(x).data, got, rtol=1e-4, atol=tol)
    with no_grad():
        ref = lin(x).data
    # error bound: per output, sum_k |x| * w_step/2 + |w| * x_step/2 (+ their product)
    bound = (np.abs(x) @ (np.broadcast_to(ql.weight_scale / 2, (k, c)))
             + float(iq.scale) / 2 * np.abs(lin.weight.data).sum(axis=0)
             + k * float(iq.scale) * ql.weight_scale.max() / 4)
    assert (np.abs(got - ref) <= bound * 1.01 + tol).all()


@pytest.mark.parametrize("k,s,p", [(3, 1, 1), (3, 2, 0), (2, 2, 0), (1, 1, 2), (5, 1, 2)])
def test_quantized_conv_matches_dequant_and_float(k, s, p):
    rng = np.random.default_rng(k * 10 + s + p)
    nn.manual_seed(k)
    conv = nn.Conv2d(3, 4, k, stride=s, padding=p)
    x = rng.uniform(0.3, 2.0, (2, 3, 7, 7)).astype(np.float32)  # zero point far from 0
    iq = compute_qparams(x.min(), x.max())
    amax = np.abs(conv.weight.data).reshape(4, -1).max(axis=1)
    qc = QuantizedConv2d.from_float(conv, iq, compute_qparams(-amax, amax, symmetric=True, axis=0))
    got = qc(x).data
    with quantized_compute("dequant"):
        np.testing.assert_allclose(qc(x).data, got, rtol=1e-4, atol=1e-5)
    with no_grad():
        ref = conv(x).data
    assert got.shape == ref.shape and np.abs(got - ref).max() < 0.05
    cols = im2col_int8(quantize(x, iq), (k, k), (s, s), (p, p), int(iq.zero_point))
    core = nn.im2col(Tensor(quantize(x, iq).astype(np.float32) - int(iq.zero_point)), k, s, p)
    assert (cols.astype(np.float32) - int(iq.zero_point) == core.data).all()


def test_quantized_layers_work_in_sequential_and_reload_from_state_dict():
    nn.manual_seed(3)
    model = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(),
                          nn.Linear(64, 5))
    x = np.random.default_rng(3).uniform(0, 1, (16, 1, 8, 8)).astype(np.float32)
    q = Quantizer().quantize(model, [(x, None)])
    assert [type(m) for m in q][:1] == [QuantizedConv2d] and isinstance(q[4], QuantizedLinear)
    assert isinstance(model[0], nn.Conv2d)  # untouched
    sd = q.state_dict()
    assert sd["0.weight"].dtype == np.int8 and sd["4.weight"].dtype == np.int8
    q2 = Quantizer().quantize(model, [(x * 3, None)])  # different calibration
    assert not np.allclose(q2(x).data, q(x).data)
    q2.load_state_dict(sd)
    np.testing.assert_array_equal(q2(x).data, q(x).data)


def test_compute_mode_is_scoped_and_validated():
    from tinytorch.quantization import get_quantized_compute

    assert get_quantized_compute() == "integer"
    with quantized_compute("dequant"):
        assert get_quantized_compute() == "dequant"
    assert get_quantized_compute() == "integer"
    with pytest.raises(ValueError, match="integer"):
        with quantized_compute("fast"):
            pass


def test_weights_must_be_symmetric():
    lin = nn.Linear(4, 3)
    with pytest.raises(ValueError, match="symmetric"):
        QuantizedLinear.from_float(lin, compute_qparams(0.0, 1.0), compute_qparams(-1.0, 1.0))


# ----------------------------------------------------------------------------- the flow
def _tiny_mlp():
    nn.manual_seed(0)
    return nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 4))


def test_prepare_calibrate_convert_leave_their_inputs_untouched():
    model = _tiny_mlp()
    before = {k: v.copy() for k, v in model.state_dict().items()}
    x = np.random.default_rng(0).uniform(-1, 1, (32, 8)).astype(np.float32)
    prepared = prepare(model)
    assert isinstance(prepared[0], Observed) and isinstance(model[0], nn.Linear)
    assert calibrate(prepared, [(x[:16], None), (x[16:], None)], num_batches=1) == 16
    q = convert(prepared)
    assert isinstance(prepared[0], Observed) and isinstance(q[0], QuantizedLinear)
    assert prepared[0].input_observer.num_batches == 1
    assert all(np.array_equal(before[k], v) for k, v in model.state_dict().items())
    assert q is not model and q is not prepared and not q.training


def test_flow_errors_are_clear():
    model = _tiny_mlp()
    with pytest.raises(ValueError, match="no observers"):
        calibrate(model, [(np.zeros((1, 8)), None)])
    with pytest.raises(ValueError, match="prepare"):
        convert(model)
    with pytest.raises(RuntimeError, match="layer '0'.*calibrate"):
        convert(prepare(model))
    with pytest.raises(ValueError, match="no Linear or Conv2d"):
        prepare(nn.Sequential(nn.ReLU()))
    with pytest.raises(ValueError, match="already"):
        prepare(prepare(model))


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_nan_or_inf_in_calibration_data_names_the_layer(bad):
    model = _tiny_mlp()
    x = np.ones((4, 8), dtype=np.float32)
    x[2, 3] = bad
    with pytest.raises(ValueError, match=r"layer '0' \(Linear\(8, 16\)\) input.*(NaN|inf)"):
        calibrate(prepare(model), [(x, None)])


@pytest.mark.filterwarnings("ignore:overflow encountered")
def test_non_finite_activation_deeper_in_the_model_names_that_layer():
    model = _tiny_mlp()
    model[0].weight.data[:] = 1.0
    x = np.full((2, 8), 1e38, dtype=np.float32)  # finite input; 8e38 overflows in layer 0
    with pytest.raises(ValueError, match=r"layer '2' \(Linear\(16, 4\)\) input"):
        calibrate(prepare(model), [(x, None)])


def test_nan_weight_is_caught_at_prepare_naming_the_layer():
    model = _tiny_mlp()
    model[2].weight.data[0, 0] = np.nan
    with pytest.raises(ValueError, match=r"layer '2' .* weight"):
        prepare(model)


def test_qconfig_variants_produce_the_requested_grids():
    model = _tiny_mlp()
    x = np.random.default_rng(1).uniform(0, 1, (64, 8)).astype(np.float32)
    q4 = Quantizer(QConfig(weight_bits=4)).quantize(model, [(x, None)])
    assert np.abs(q4[0].weight).max() <= 7 and q4[0].weight_bits == 4
    qt = Quantizer(QConfig(per_channel=False)).quantize(model, [(x, None)])
    assert np.unique(qt[0].weight_scale).size == 1
    qp = Quantizer(QConfig(activation=PercentileObserver)).quantize(model, [(x, None)])
    assert int(qp[0].input_zero_point) == -128  # inputs are >= 0


# ----------------------------------------------------------------------------- int4 and size
@given(hnp.arrays(np.int8, st.integers(0, 301), elements=st.integers(-8, 7)))
def test_int4_pack_roundtrip(q):
    packed = pack_int4(q)
    assert packed.dtype == np.uint8 and packed.size == (q.size + 1) // 2
    assert (unpack_int4(packed, q.size) == q).all()


def test_int4_range_is_checked():
    with pytest.raises(ValueError, match=r"\[-8, 7\]"):
        pack_int4(np.array([8], np.int8))


def test_size_accounting():
    model = _tiny_mlp()
    x = np.random.default_rng(1).uniform(0, 1, (64, 8)).astype(np.float32)
    q8 = Quantizer().quantize(model, [(x, None)])
    q4 = Quantizer(QConfig(weight_bits=4)).quantize(model, [(x, None)])
    rows = size_report(model, q8, q4)
    assert [r.name for r in rows] == ["0", "2"]
    for r in rows:
        assert r.fp32 == 4 * r.params and r.fp16 == 2 * r.params
    assert rows[0].int8 == 8 * 16 + 16 * 4 + 16 * 4 + 4 + 4  # codes, scales, bias, s_x, z_x
    assert rows[0].int4 == 8 * 16 // 2 + 16 * 4 + 16 * 4 + 4 + 4
    assert state_nbytes(model) == sum(r.fp32 for r in rows)
    assert serialized_size(model) > state_nbytes(model)
    assert serialized_size(to_fp16(model)) < serialized_size(model)
    assert all(p.dtype == np.float16 for p in to_fp16(model).parameters())


# ----------------------------------------------------------------------------- digits
def _train(model, x, y, epochs, lr):
    nn.manual_seed(0)
    loader = DataLoader(TensorDataset(x, y), batch_size=64, shuffle=True, seed=0)
    fit(model, loader, cross_entropy, Adam(model.parameters(), lr=lr), epochs, progress=False)
    return model.eval()


def _acc(model, x, y):
    with no_grad():
        return float((model(x).data.argmax(1) == y).mean())


@pytest.fixture(scope="module")
def digits():
    """Trained FP32 digits MLP (64-1024-1024-10) and CNN with their INT8 versions."""
    x, y = load_digits("train")
    xi, yi = load_digits_images("train")
    xt, yt = load_digits("test")
    xti, _ = load_digits_images("test")
    nn.manual_seed(0)
    mlp = _train(
        nn.Sequential(nn.Linear(64, 1024), nn.ReLU(), nn.Linear(1024, 1024), nn.ReLU(),
                      nn.Linear(1024, 10)),
        x, y, epochs=8, lr=1e-3,
    )
    nn.manual_seed(0)
    cnn = _train(
        nn.Sequential(nn.Conv2d(1, 16, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                      nn.Conv2d(16, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                      nn.Flatten(), nn.Linear(128, 10)),
        xi, yi, epochs=15, lr=3e-3,
    )
    cal = DataLoader(TensorDataset(x, y), batch_size=64, shuffle=True, seed=1)
    cal_i = DataLoader(TensorDataset(xi, yi), batch_size=64, shuffle=True, seed=1)
    return {
        "x": x, "xi": xi, "xt": xt, "xti": xti, "yt": yt, "cal": cal, "cal_i": cal_i,
        "mlp": mlp, "cnn": cnn,
        "mlp8": Quantizer().quantize(mlp, cal, num_batches=4),  # 256 calibration images
        "cnn8": Quantizer().quantize(cnn, cal_i, num_batches=4),
    }


@pytest.mark.slow
def test_digits_int8_accuracy_within_one_point(digits):
    d = digits
    a32, a8 = _acc(d["mlp"], d["xt"], d["yt"]), _acc(d["mlp8"], d["xt"], d["yt"])
    c32, c8 = _acc(d["cnn"], d["xti"], d["yt"]), _acc(d["cnn8"], d["xti"], d["yt"])
    assert a32 > 0.9 and c32 > 0.9, (a32, c32)
    assert a8 >= a32 - 0.01, f"MLP: int8 {a8:.4f} vs fp32 {a32:.4f}"
    assert c8 >= c32 - 0.01, f"CNN: int8 {c8:.4f} vs fp32 {c32:.4f}"


@pytest.mark.slow
def test_digits_int8_file_is_at_least_3_9x_smaller(digits):
    ratio = serialized_size(digits["mlp"]) / serialized_size(digits["mlp8"])
    assert ratio >= 3.9, ratio
    weights = [m.weight for m in digits["mlp8"] if isinstance(m, QuantizedLinear)]
    assert all(w.dtype == np.int8 for w in weights)


@pytest.mark.slow
def test_outlier_channel_per_channel_beats_per_tensor(digits):
    model = copy.deepcopy(digits["mlp"])
    k = 128.0  # relu(k z) = k relu(z): the function is unchanged, layer 0 gets an outlier channel
    model[0].weight.data[:, 0] *= k
    model[0].bias.data[0] *= k
    model[2].weight.data[0, :] /= k
    xt, yt = digits["xt"], digits["yt"]
    with no_grad():
        ref = model(xt).data
        np.testing.assert_allclose(ref, digits["mlp"](xt).data, rtol=1e-3, atol=1e-3)
    out = {}
    for pc in (False, True):
        q = Quantizer(QConfig(per_channel=pc)).quantize(model, digits["cal"], num_batches=4)
        z = q(xt).data
        out[pc] = (float(np.sqrt(((z - ref) ** 2).mean())), float((z.argmax(1) == yt).mean()))
    assert out[True][0] < out[False][0] / 2, out
    assert out[True][1] >= out[False][1], out


# ----------------------------------------------------------------------------- ONNX engine
def test_missing_onnx_gives_the_install_hint(monkeypatch):
    from tinytorch.quantization import OnnxRunner, export_onnx

    monkeypatch.setitem(sys.modules, "onnx", None)
    monkeypatch.setitem(sys.modules, "onnxruntime", None)
    with pytest.raises(ImportError, match=r"pip install tinytorch\[deploy\]"):
        export_onnx(_tiny_mlp(), (8,))
    with pytest.raises(ImportError, match=r"pip install tinytorch\[deploy\]"):
        OnnxRunner(b"")
    assert "tinytorch[deploy]" in DEPLOY_HINT


def test_onnx_small_models_match_numpy():
    pytest.importorskip("onnx")
    pytest.importorskip("onnxruntime")
    from tinytorch.quantization import OnnxRunner, export_onnx

    model = _tiny_mlp()
    x = np.random.default_rng(5).uniform(-1, 1, (9, 8)).astype(np.float32)
    with no_grad():
        np.testing.assert_allclose(OnnxRunner(export_onnx(model, (8,)))(x), model(x).data,
                                   rtol=1e-5, atol=1e-5)
    q = Quantizer().quantize(model, [(x, None)])
    proto = export_onnx(q, (8,))
    ops = {n.op_type for n in proto.graph.node}
    assert {"QuantizeLinear", "MatMulInteger"} <= ops
    assert all(c.ok for c in check_pair_sums(proto))  # holds on AVX2 and VNNI CPUs alike
    runner = OnnxRunner.with_accumulators(proto)
    for got, want in zip(runner.accumulators(x), integer_accumulators(q, x), strict=True):
        np.testing.assert_array_equal(got, want)  # the same integers, not merely close
    np.testing.assert_allclose(OnnxRunner(proto)(x), q(x).data, rtol=1e-6, atol=1e-6)
    with pytest.raises(TypeError, match="GELU"):
        export_onnx(nn.Sequential(nn.Linear(8, 8), nn.GELU()), (8,))


@pytest.mark.slow
def test_onnx_int8_engine_agrees_with_the_numpy_integer_path(digits, tmp_path):
    pytest.importorskip("onnx")
    pytest.importorskip("onnxruntime")
    import onnx
    from onnx import numpy_helper

    from tinytorch.quantization import OnnxRunner, export_onnx

    for key, x, shape in (("mlp8", digits["xt"], (64,)), ("cnn8", digits["xti"], (1, 8, 8))):
        q = digits[key]
        path = tmp_path / f"{key}.onnx"
        export_onnx(q, shape, path=path)
        assert all(c.ok for c in check_pair_sums(path)), check_pair_sums(path)
        ort = OnnxRunner.with_accumulators(path)
        want = integer_accumulators(q, x)
        for got, acc in zip(ort.accumulators(x), want, strict=True):
            np.testing.assert_array_equal(got, acc)  # 0 accumulator steps, on any x86 CPU
        # float epilogue (Cast, Mul, Add) in float32 on both sides; the engine may fuse it
        np.testing.assert_allclose(OnnxRunner(path)(x), q(x).data, rtol=1e-6, atol=1e-6)
        # what an AVX2-only CPU computes from the same file: identical as well
        for got, acc in zip(integer_accumulators(q, x[:128], kernel="avx2"), want, strict=True):
            np.testing.assert_array_equal(got, acc[: len(got)])
        # the file carries the model's own codes: 7-bit Linear weights (the default) stay int8,
        # Conv2d weights are written as uint8 (+ 128, zero point 128)
        inits = {i.name: numpy_helper.to_array(i) for i in onnx.load(str(path)).graph.initializer}
        weights = [a for k, a in inits.items() if k.startswith(("w_int8", "w_uint8"))]
        layers = [m for m in q if isinstance(m, QuantizedLinear | QuantizedConv2d)]
        assert len(weights) == len(layers) and all(m.weight_bits == 7 for m in layers)
        for w, m in zip(weights, layers, strict=True):
            want = np.uint8 if isinstance(m, QuantizedConv2d) else np.int8
            assert w.dtype == want, (type(m).__name__, w.dtype)
            np.testing.assert_array_equal(w.astype(np.int16) - (128 if want == np.uint8 else 0),
                                          m.weight)


# ----------------------------------------------------------------------------- int16 pair sums
def _old_scheme_mlp(seed=0, weight_bits=8):
    """A trained-looking MLP quantized with post-ReLU inputs in [0, 255] as uint8."""
    nn.manual_seed(seed)
    model = nn.Sequential(nn.Linear(32, 48), nn.ReLU(), nn.Linear(48, 10))
    x = np.random.default_rng(seed).uniform(0, 1, (64, 32)).astype(np.float32)
    return Quantizer(QConfig(weight_bits=weight_bits)).quantize(model, [(x, None)]), x


@settings(max_examples=40, deadline=None)
@given(st.integers(1, 9), st.integers(1, 40), st.integers(1, 6), st.integers(0, 2**32 - 1))
def test_saturating_pair_matmul_is_the_avx2_kernel(n, k, c, seed):
    rng = np.random.default_rng(seed)
    a = rng.integers(0, 256, (n, k)).astype(np.uint8)
    b = rng.integers(-128, 128, (k, c)).astype(np.int8)
    # reference: one k pair at a time, products in Python ints, clamp, sum
    want = np.zeros((n, c), np.int64)
    for i in range(n):
        for j in range(c):
            for p in range(0, k, 2):
                s = int(a[i, p]) * int(b[p, j])
                if p + 1 < k:
                    s += int(a[i, p + 1]) * int(b[p + 1, j])
                want[i, j] += min(max(s, -32768), 32767)
    np.testing.assert_array_equal(saturating_pair_matmul(a, b), want)
    small = np.clip(b, -63, 63)  # 7-bit weights: every pair fits, the kernel is exact
    np.testing.assert_array_equal(
        saturating_pair_matmul(a, small), a.astype(np.int64) @ small.astype(np.int64)
    )


@settings(max_examples=60, deadline=None)
@given(st.integers(1, 12), st.integers(1, 5), st.integers(1, 127), st.integers(0, 2**32 - 1))
def test_pair_check_is_sound_and_tight(k, c, wmax, seed):
    """pair_sum_range inside int16 <=> the AVX2 kernel is exact for every input in the range."""
    rng = np.random.default_rng(seed)
    w = rng.integers(-wmax, wmax + 1, (k, c)).astype(np.int8)
    hi_x = int(rng.choice([127, 255]))
    lo, hi = pair_sum_range(w, 0, hi_x)
    fits = -32768 <= lo and hi <= 32767
    a = rng.integers(0, hi_x + 1, (16, k)).astype(np.uint8)
    # the worst inputs of every column: each code at the end of the range that maximizes
    # (or minimizes) its product
    worst = np.concatenate([np.where(w.T > 0, hi_x, 0), np.where(w.T < 0, hi_x, 0)])
    a = np.concatenate([a, worst.astype(np.uint8)])  # (16 + 2C, K)
    exact = a.astype(np.int64) @ w.astype(np.int64)
    same = np.array_equal(saturating_pair_matmul(a, w), exact)
    assert same == fits, (lo, hi, same)


def test_saturation_is_what_the_issue_measured():
    a = np.array([[255, 255]], np.uint8)
    w = np.array([[127], [127]], np.int8)
    assert int(saturating_pair_matmul(a, w)[0, 0]) == 32767  # 2 * 255 * 127 = 64770 clamped
    with pytest.raises(TypeError, match="uint8 @ int8"):
        saturating_pair_matmul(a.astype(np.int8), w)


def test_pair_sum_range_is_exact_at_the_ends_of_the_input_range():
    w = np.array([[127, -127, 3], [127, -127, -5], [64, 0, 0]], np.int8)  # (K=3, C=3)
    assert pair_sum_range(w, 0, 255) == (-64770, 64770)
    assert pair_sum_range(w, 0, 127) == (-32258, 32258)
    assert pair_sum_range(np.array([[-63], [-63]], np.int8), 0, 255) == (-32130, 0)


def test_old_int8_export_is_flagged_and_refused():
    """The check can fail: the old scheme (8-bit int8 weights) is caught from the file alone."""
    pytest.importorskip("onnx")
    from tinytorch.quantization import export_onnx

    q, x = _old_scheme_mlp()
    with pytest.raises(ValueError, match=r"saturate.*int16.*weight_bits=7"):
        export_onnx(q, (32,), weight_type="int8")
    old = export_onnx(q, (32,), weight_type="int8", allow_saturation=True)
    checks = check_pair_sums(old)
    assert [c.operands for c in checks] == ["uint8 x int8"] * 2
    assert not any(c.ok for c in checks)
    assert max(c.pair_max for c in checks) > 32767
    # and the emulated AVX2 kernel really computes different integers on ordinary inputs
    avx2 = integer_accumulators(q, x, kernel="avx2", weight_type="int8")
    ref = integer_accumulators(q, x)
    assert any((a != r).any() for a, r in zip(avx2, ref, strict=True))


@pytest.mark.parametrize(
    "cfg,operands",
    [(QConfig(), "uint8 x int8"), (QConfig(weight_bits=8), "uint8 x uint8"),
     (QConfig(weight_bits=8, activation_bits=7), "uint8 x int8")],
)
def test_default_export_cannot_saturate_and_matches_numpy_and_avx2(cfg, operands):
    pytest.importorskip("onnx")
    pytest.importorskip("onnxruntime")
    from tinytorch.quantization import OnnxRunner, export_onnx

    nn.manual_seed(1)
    model = nn.Sequential(nn.Conv2d(1, 8, 3, padding=1), nn.ReLU(), nn.Flatten(),
                          nn.Linear(8 * 6 * 6, 24), nn.ReLU(), nn.Linear(24, 5))
    rng = np.random.default_rng(1)
    x = rng.uniform(-1, 3, (40, 1, 6, 6)).astype(np.float32)
    q = Quantizer(cfg).quantize(model, [(x, None)])
    proto = export_onnx(q, (1, 6, 6))
    checks = check_pair_sums(proto)
    assert [c.op for c in checks] == ["ConvInteger", "MatMulInteger", "MatMulInteger"]
    assert all(c.ok for c in checks), checks
    assert checks[0].operands == "uint8 x uint8"  # conv: uint8 weights, the faster ConvInteger
    assert all(c.operands == operands for c in checks[1:]), checks
    if cfg.activation_bits == 7:
        assert all(c.input_range == (0, 127) for c in checks)  # the Clip is seen by the check
    x_out = x * 4  # beyond the calibrated range: saturating QuantizeLinear must agree too
    ref = integer_accumulators(q, x_out)
    runner = OnnxRunner.with_accumulators(proto)
    for eng, emu, r in zip(runner.accumulators(x_out), integer_accumulators(q, x_out, "avx2"),
                           ref, strict=True):
        np.testing.assert_array_equal(eng, r)
        np.testing.assert_array_equal(emu, r)
    np.testing.assert_allclose(OnnxRunner(proto)(x_out), q(x_out).data, rtol=1e-6, atol=1e-6)


def test_export_weight_type_is_validated():
    pytest.importorskip("onnx")
    from tinytorch.quantization import export_onnx

    assert QConfig().weight_bits == 7  # the default: pairs fit int16, the fast kernel is exact
    q, _ = _old_scheme_mlp(weight_bits=7)
    with pytest.raises(ValueError, match="weight_type.*'int4'"):
        export_onnx(q, (32,), weight_type="int4")
    assert all(c.operands == "uint8 x int8" for c in check_pair_sums(export_onnx(q, (32,))))


def test_cpu_features_reads_flags_and_falls_back(tmp_path):
    from tinytorch.core.hardware import cpu_features, parse_cpuinfo

    avx2 = tmp_path / "avx2"
    avx2.write_text("processor\t: 0\nmodel name\t: Some EPYC\nflags\t\t: sse2 avx2 fma\n\n"
                    "processor\t: 1\nflags\t\t: sse2 avx2 fma\n")
    cpu = cpu_features(avx2)
    assert cpu.model == "Some EPYC" and cpu.has("AVX2") and not cpu.has("avx512_vnni")
    if cpu.x86:
        assert cpu.saturating_int8_pairs is True and "vpmaddubsw" in cpu.int8_dot_instruction
    vnni = tmp_path / "vnni"
    vnni.write_text("flags\t: avx2 avx512f avx512bw avx512_vnni\n")
    assert "vpdpbusd" in cpu_features(vnni).int8_dot_instruction
    assert parse_cpuinfo("Features\t: fp asimd asimddp\n")[1] >= {"asimddp"}
    missing = cpu_features(tmp_path / "nope")
    if missing.source == "unavailable":  # Linux: nothing to read -> unknown, never "safe"
        assert not missing.known and missing.saturating_int8_pairs is None
    assert cpu_features().model  # this machine: something readable


# ----------------------------------------------------------------------------- bench
@pytest.mark.slow
def test_bench_quick_runs_and_writes_valid_json(tmp_path):
    out = tmp_path / "q.json"
    proc = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "quantization.py"), "--quick", "--json", str(out)],
        capture_output=True, text=True, timeout=120, cwd=ROOT,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    data = json.loads(out.read_text())
    assert data["bench"] == "quantization" and data["quick"] is True
    assert {"mlp", "cnn"} <= set(data["results"])
    assert "PASS" in proc.stdout or "FAIL" in proc.stdout


# ----------------------------------------------------------------------------- the judges
def _judge_module():
    """(the module's Judges, the judge file as a module: its numpy reference)."""
    import importlib.util

    path = ROOT / "modules" / "17_quantization" / "judge.py"
    spec = importlib.util.spec_from_file_location("judge_17_quantization", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod.judges, mod


@settings(max_examples=80, deadline=None)
@given(
    st.floats(-50, 0, allow_subnormal=False), st.floats(0, 50, allow_subnormal=False), bits_st,
    st.booleans(), hnp.arrays(np.float32, st.integers(1, 50), elements=finite32),
)
def test_judge_reference_is_the_module_arithmetic(lo, hi, bits, symmetric, x):
    """The judge's numpy reference gives the module's exact scales, zero points and codes."""
    _, ref = _judge_module()
    qp = compute_qparams(lo, hi, bits=bits, symmetric=symmetric)
    scale, zp = ref.ref_qparams(lo, hi, bits, symmetric)
    assert np.array_equal(qp.scale, scale) and np.array_equal(qp.zero_point, zp)
    codes = ref.ref_quantize(x, scale, zp, bits, symmetric)
    np.testing.assert_array_equal(quantize(x, qp), codes)
    np.testing.assert_array_equal(dequantize(codes, qp), ref.ref_dequantize(codes, scale, zp))


def test_judge_float_predictions_are_the_shipped_models():
    """The judge's numpy forward of the shipped digits models predicts what tinytorch does."""
    from tinytorch.core.pretrained import load_pretrained

    _, ref = _judge_module()
    mlp_pred, cnn_pred, labels = ref.float_predictions()
    x_flat, y = load_digits("test")
    x_img, _ = load_digits_images("test")
    assert np.array_equal(labels, y)
    with no_grad():
        mlp = load_pretrained("digits_mlp_256")(x_flat).data.argmax(1)
        cnn = load_pretrained("digits_cnn")(x_img).data.argmax(1)
    assert (mlp_pred == mlp).mean() > 0.995 and (cnn_pred == cnn).mean() > 0.995


def test_every_grade_cell_has_a_judge_and_inputs_draw_fresh():
    """Every grade cell of the module is judged; two seeds draw different inputs."""
    from tito.modules import load_module
    from tito.source import parse_source

    judges, _ = _judge_module()
    grade_ids = {c.grade_id for c in parse_source(load_module(ROOT / "modules" /
                                                             "17_quantization")).cells
                 if c.is_grade}
    assert grade_ids == set(judges.checks)
    a, b = judges.draw("int4_pack_roundtrip", 1), judges.draw("int4_pack_roundtrip", 2)
    assert not np.array_equal(a["q5"], b["q5"]) or a["q5"].shape != b["q5"].shape


def test_a_check_that_needs_an_unfinished_exercise_names_it():
    """A grade cell that runs another exercise (here: the integer kernels, exercise 5) stops with
    'complete exercise 5, ...' instead of a bare NotImplementedError or NameError."""
    import contextlib
    import io

    sys.path.insert(0, str(ROOT / "tests"))
    from wrong_versions.runner import module_cells, split_grade_cell

    ns: dict = {"__name__": "__main__"}
    failures = {}
    for cell in module_cells("17_quantization"):
        if cell.cell_type != "code" or "demo" in (cell.metadata.get("tags") or ()):
            continue
        body = split_grade_cell(cell)[0] if cell.is_grade else cell.body
        if cell.grade_id == "integer_kernels":  # the released stub of exercise 5
            start = body.index("    ### BEGIN SOLUTION\n    acc =")
            body = body.replace(body[start:body.index("    return acc\n")],
                                "    raise NotImplementedError()\n")
        try:
            with contextlib.redirect_stdout(io.StringIO()):
                exec(compile(body, cell.grade_id or "cell", "exec"), ns)
        except Exception as exc:  # noqa: BLE001 -- the failures are what we look at
            failures[cell.grade_id] = f"{type(exc).__name__}: {exc}"
    needing = ("quantized_linear_matches_float_reference", "digits_int8_accuracy_within_one_point")
    for cell in needing:
        assert "complete exercise 5, `int8_matmul / requantize`" in failures[cell], failures


def test_require_reaches_every_exercise_on_the_reference():
    """The notebook's `_require(N)` (first line of each measurement cell) runs on the solved
    notebook, and on an unfinished exercise names it."""
    import contextlib
    import io

    sys.path.insert(0, str(ROOT / "tests"))
    from wrong_versions.runner import module_cells

    ns: dict = {"__name__": "__main__"}
    for cell in module_cells("17_quantization"):
        if cell.cell_type == "code" and not cell.is_grade and "demo" not in (
            cell.metadata.get("tags") or ()
        ):
            with contextlib.redirect_stdout(io.StringIO()):
                exec(cell.body, ns)
    ns["_require"](1, 2, 3, 4, 5, 6, 7, 8)

    exec("def pack_int4(q):\n    raise NotImplementedError()\n", ns)  # the released stub
    with pytest.raises(RuntimeError, match=r"complete exercise 7, `pack_int4 / unpack_int4`"):
        ns["_require"](6, 7)
