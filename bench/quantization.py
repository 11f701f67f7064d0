"""Module 17 bench: FP32 vs INT8 on the digits MLP and CNN — size, accuracy and latency.

    OPENBLAS_NUM_THREADS=1 python bench/quantization.py [--quick] [--json PATH]

One run trains the two digits models (fixed seeds), quantizes them with `tinytorch.quantization`
(MinMax calibration on 256 training images, the default QConfig: 7-bit per-channel symmetric
weights stored in int8, int8 affine activations), exports both the FP32 and the INT8 model to
ONNX (the INT8 graph carries the model's own weight codes and scales) and times, at batch 1 and
64, interleaved, one thread:

- FP32 numpy (the reference of every ratio), INT8 integer path in numpy (int32 matmul),
  INT8 dequantize-on-the-fly in numpy (float32 matmul on rebuilt weights),
- onnxruntime FP32 and onnxruntime INT8 (MatMulInteger / ConvInteger), intra_op_num_threads=1.

The MLP (64 -> 1024 -> 1024 -> 10) is wide so that compute dominates; the CNN is small and
shows what an engine does (and does not do) for a model that is mostly call overhead. A last
table times onnxruntime's own convolution kernels on one 64-channel layer — FP32 `Conv`,
`ConvInteger` with int8 and with uint8 weights (int32 out: what our exporter uses, matching our
float-between-layers design; it writes uint8 conv weights, the faster of the two) and
`QLinearConv` (int8 in and out, requantized) — to show which INT8 conv is the engine's fast path.

A candidates table compares ways to write the INT8 model for the engine, because on AVX2 (and
AVX-512 without VNNI) CPUs onnxruntime's uint8 x int8 kernel adds each adjacent pair of products
into int16 with saturation (`vpmaddubsw`), while VNNI CPUs sum in int32:

- u8s8: 8-bit weights written as int8 (the old export): pairs reach 2*255*127 > 32767,
- u8u8: the same 8-bit codes written as uint8 with zero point 128 (uint8 x uint8 kernel:
  int16 x int16 products summed in int32, no saturation) -- what export_onnx writes for 8-bit
  weights (QConfig(weight_bits=8)),
- u8s7: 7-bit weights [-63, 63] written as int8: 2*255*63 fits int16 -- the default
  (QConfig().weight_bits == 7), chosen by this table: same accuracy and size, faster kernel,
- u7s8: 7-bit activations (uint8 [0, 127] via a Clip) with 8-bit int8 weights.

For each: test accuracy (numpy INT8 and onnxruntime), logit RMSE vs FP32, ONNX file bytes,
onnxruntime latency at batch 1 and 64 vs FP32 numpy, whether every integer node passes the
pair-sum check (`check_pair_sums`), max |onnxruntime - numpy| over every int32 accumulator of
every layer (on this CPU), and the same for a numpy emulation of the AVX2 kernel
(`integer_accumulators(kernel="avx2")`), which shows what an AVX2-only CPU computes. (For
`ConvInteger` with int8 weights onnxruntime passes the weights as the GEMM's first operand and
whether its AVX2 path saturates depends on its version; the check and the emulation treat every
uint8 x int8 node as the saturating kernel, the conservative case.)

FP32 convolution speed against onnxruntime (the digits CNN, a 3x3 64->64 layer) is in
bench/core.py.

Targets (PASS/FAIL; a failure exits 1 in full mode):

- onnxruntime INT8 (default export) >= 2x faster than FP32 numpy at batch 64 (MLP)
- default export: onnxruntime and the AVX2 emulation at 0 accumulator steps from the numpy
  INT8 model (MLP and CNN), and the same test accuracy
- INT8 np.savez file >= 3.9x smaller than FP32 (MLP)
- INT8 test accuracy >= FP32 - 1 point (MLP and CNN)
"""

from __future__ import annotations

import sys

import _harness as H  # first: pins BLAS to one thread before numpy is imported
import numpy as np

from tinytorch.core import nn
from tinytorch.core.data import DataLoader, TensorDataset
from tinytorch.core.hardware import cpu_features
from tinytorch.core.losses import cross_entropy
from tinytorch.core.optim import Adam
from tinytorch.core.tensor import Tensor, no_grad
from tinytorch.core.train import fit
from tinytorch.datasets import load_digits, load_digits_images
from tinytorch.quantization import (
    OnnxRunner,
    QConfig,
    Quantizer,
    check_pair_sums,
    export_onnx,
    integer_accumulators,
    quantized_compute,
    serialized_size,
)

try:
    import onnxruntime  # noqa: F401

    HAVE_ORT = True
except ImportError:
    HAVE_ORT = False

CALIBRATION_IMAGES = 256

# name -> (QConfig of the numpy INT8 model, export_onnx weight_type, allow_saturation)
CANDIDATES = {
    "u8s8 (old export)": (QConfig(weight_bits=8), "int8", True),
    "u8u8 (w zp 128)": (QConfig(weight_bits=8), "auto", False),
    "u8s7 (default)": (QConfig(), "auto", False),  # 7-bit weights, the QConfig default
    "u7s8 (7-bit inputs)": (QConfig(weight_bits=8, activation_bits=7), "auto", False),
}
DEFAULT = "u8s7 (default)"


def mlp(hidden: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Linear(64, hidden), nn.ReLU(), nn.Linear(hidden, hidden), nn.ReLU(),
        nn.Linear(hidden, 10),
    )


def cnn() -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(1, 16, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),  # (N, 16, 4, 4)
        nn.Conv2d(16, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),  # (N, 32, 2, 2)
        nn.Flatten(), nn.Linear(128, 10),
    )


def train(model, x, y, epochs: int, lr: float):
    nn.manual_seed(0)
    loader = DataLoader(TensorDataset(x, y), batch_size=64, shuffle=True, seed=0)
    fit(model, loader, cross_entropy, Adam(model.parameters(), lr=lr), epochs, progress=False)
    return model.eval()


def logits(model, x) -> np.ndarray:
    with no_grad():
        out = model(x)
    return out.data if isinstance(out, Tensor) else np.asarray(out)


def study(name, float_model, x_train, y_train, x_test, y_test, input_shape, repeats) -> dict:
    """Quantize one trained model; sizes, accuracies, logit agreement and latencies."""
    calib = DataLoader(TensorDataset(x_train, y_train), batch_size=64, shuffle=True, seed=1)
    q = Quantizer().quantize(float_model, calib, num_batches=CALIBRATION_IMAGES // 64)
    z32, z8 = logits(float_model, x_test), logits(q, x_test)
    res = {
        "fp32_file_bytes": serialized_size(float_model),
        "int8_file_bytes": serialized_size(q),
        "acc_fp32": float((z32.argmax(1) == y_test).mean()),
        "acc_int8_numpy": float((z8.argmax(1) == y_test).mean()),
    }
    res["size_ratio"] = res["fp32_file_bytes"] / res["int8_file_bytes"]
    fns = {
        "FP32 numpy": lambda x: logits(float_model, x),
        "INT8 numpy integer": lambda x: logits(q, x),
        "INT8 numpy dequant": lambda x: _dequant(q, x),
    }
    if HAVE_ORT:
        ort32 = OnnxRunner(export_onnx(float_model, input_shape))
        proto8 = export_onnx(q, input_shape)  # the default export
        ort8 = OnnxRunner(proto8)  # timed: no extra outputs that could block engine fusions
        o8 = ort8(x_test)
        res.update(
            onnx_fp32_bytes=ort32.nbytes,
            onnx_int8_bytes=ort8.nbytes,
            acc_ort_fp32=float((ort32(x_test).argmax(1) == y_test).mean()),
            acc_ort_int8=float((o8.argmax(1) == y_test).mean()),
            ort_vs_numpy_int8_max_abs=float(np.abs(o8 - z8).max()),
            ort_vs_numpy_int8_steps=_max_steps(
                OnnxRunner.with_accumulators(proto8).accumulators(x_test), q, x_test
            ),
            ort_vs_numpy_argmax_agree=float((o8.argmax(1) == z8.argmax(1)).mean()),
        )
        fns["ORT FP32"] = ort32
        fns["ORT INT8"] = ort8
    latency = {}
    for batch in (1, 64):
        xb = np.ascontiguousarray(x_test[:batch])
        secs = H.compare(
            {k: (lambda f=f, x=xb: f(x)) for k, f in fns.items()}, repeats=repeats, warmup=2
        )
        latency[batch] = secs
    res["latency_ms"] = {
        f"batch {b}": {k: v * 1e3 for k, v in s.items()} for b, s in latency.items()
    }
    res["speedup_vs_fp32_numpy"] = {
        f"batch {b}": {k: s["FP32 numpy"] / v for k, v in s.items()} for b, s in latency.items()
    }
    H.print_table(
        ["path", "batch 1 (ms)", "x FP32 numpy", "batch 64 (ms)", "x FP32 numpy"],
        [
            [k, latency[1][k] * 1e3, latency[1]["FP32 numpy"] / latency[1][k],
             latency[64][k] * 1e3, latency[64]["FP32 numpy"] / latency[64][k]]
            for k in fns
        ],
        title=f"{name}: latency, one thread (x > 1 means faster than FP32 numpy)",
    )
    rows = [
        ["FP32 numpy", res["fp32_file_bytes"], res["acc_fp32"] * 100],
        ["INT8 numpy", res["int8_file_bytes"], res["acc_int8_numpy"] * 100],
    ]
    if HAVE_ORT:
        rows += [
            ["ORT FP32 (.onnx)", res["onnx_fp32_bytes"], res["acc_ort_fp32"] * 100],
            ["ORT INT8 (.onnx)", res["onnx_int8_bytes"], res["acc_ort_int8"] * 100],
        ]
    H.print_table(["model", "file bytes", "test acc (%)"], rows, title=f"{name}: size, accuracy")
    if HAVE_ORT:
        print(
            f"{name}: ORT INT8 (default export) vs numpy INT8: logits max |diff| "
            f"{res['ort_vs_numpy_int8_max_abs']:.3g}, int32 accumulators max |diff| "
            f"{res['ort_vs_numpy_int8_steps']:.0f} steps; argmax agree "
            f"{res['ort_vs_numpy_argmax_agree']:.2%}"
        )
        res["candidates"] = candidates(name, float_model, calib, z32, x_test, y_test,
                                       input_shape, repeats)
    return res


def _max_steps(accs, q, x) -> int:
    """Largest |engine - numpy| over every int32 accumulator of every quantized layer."""
    ref = integer_accumulators(q, x)
    if len(accs) != len(ref):
        raise RuntimeError(f"{len(accs)} engine accumulators vs {len(ref)} quantized layers")
    return max(int(np.abs(a.astype(np.int64) - r).max()) for a, r in zip(accs, ref))


def candidates(name, float_model, calib, z32, x_test, y_test, input_shape, repeats) -> dict:
    """One row per way of writing the INT8 model for the engine (see CANDIDATES)."""
    out, runners = {}, {"FP32 numpy": lambda x: logits(float_model, x)}
    for cand, (cfg, weight_type, allow) in CANDIDATES.items():
        q = Quantizer(cfg).quantize(float_model, calib, num_batches=CALIBRATION_IMAGES // 64)
        proto = export_onnx(q, input_shape, weight_type=weight_type, allow_saturation=allow)
        runner = OnnxRunner(proto)  # timed; accumulators come from a second session
        z8, o8 = logits(q, x_test), runner(x_test)
        ref = integer_accumulators(q, x_test)
        avx2 = integer_accumulators(q, x_test, kernel="avx2", weight_type=weight_type)
        ops = sorted({c.operands for c in check_pair_sums(proto)})
        out[cand] = {
            "operands": ", ".join(ops),
            "acc_numpy": float((z8.argmax(1) == y_test).mean()),
            "acc_ort": float((o8.argmax(1) == y_test).mean()),
            "logit_rmse_vs_fp32": float(np.sqrt(((z8 - z32) ** 2).mean())),
            "onnx_bytes": runner.nbytes,
            "pair_check_ok": all(c.ok for c in check_pair_sums(proto)),
            "ort_vs_numpy_steps": _max_steps(
                OnnxRunner.with_accumulators(proto).accumulators(x_test), q, x_test
            ),
            "avx2_vs_numpy_steps": max(
                int(np.abs(a.astype(np.int64) - r).max()) for a, r in zip(avx2, ref)
            ),
            "avx2_accumulators_differing": int(sum((a != r).sum() for a, r in zip(avx2, ref))),
        }
        runners[cand] = runner
    for batch in (1, 64):
        xb = np.ascontiguousarray(x_test[:batch])
        secs = H.compare({k: (lambda f=f, x=xb: f(x)) for k, f in runners.items()},
                         repeats=2 * repeats, warmup=2)
        for cand in CANDIDATES:
            out[cand][f"ms_batch_{batch}"] = secs[cand] * 1e3
            out[cand][f"speedup_batch_{batch}"] = secs["FP32 numpy"] / secs[cand]
    H.print_table(
        ["export", "operands", "acc np (%)", "acc ORT (%)", "RMSE vs FP32", "ONNX bytes",
         "x FP32 b1", "x FP32 b64", "pairs fit", "ORT-np steps", "AVX2-np steps",
         "AVX2 diffs"],
        [[k, r["operands"], r["acc_numpy"] * 100, r["acc_ort"] * 100, r["logit_rmse_vs_fp32"],
          r["onnx_bytes"], r["speedup_batch_1"], r["speedup_batch_64"],
          "yes" if r["pair_check_ok"] else "NO", r["ort_vs_numpy_steps"],
          r["avx2_vs_numpy_steps"], r["avx2_accumulators_differing"]]
         for k, r in out.items()],
        title=f"{name}: INT8 export candidates (x FP32 = speed-up of onnxruntime vs FP32 numpy; "
        "steps = max |int32 accumulator diff| over all layers; AVX2 = numpy emulation of "
        "vpmaddubsw)",
    )
    return out


def ort_conv_kernels(quick: bool, repeats: int) -> dict:
    """ms per call of one 3x3 conv layer in onnxruntime: FP32 Conv, ConvInteger, QLinearConv."""
    from onnx import TensorProto as T
    from onnx import helper
    from onnx import numpy_helper as nh

    n, c, hw = (4, 16, 8) if quick else (16, 64, 16)
    rng = np.random.default_rng(0)
    w = (rng.standard_normal((c, c, 3, 3)) * 0.05).astype(np.float32)
    w_q = np.clip(np.rint(w / (np.abs(w).max() / 127)), -127, 127).astype(np.int8)
    x = rng.random((n, c, hw, hw)).astype(np.float32)
    s_x, z_x = np.array(1 / 255, np.float32), np.array(0, np.uint8)
    pads = dict(pads=[1, 1, 1, 1])

    def model(nodes, inits, out_type):
        graph = helper.make_graph(
            nodes, "conv", [helper.make_tensor_value_info("x", T.FLOAT, [n, c, hw, hw])],
            [helper.make_tensor_value_info("y", out_type, [n, c, hw, hw])],
            [nh.from_array(v, k) for k, v in inits.items()],
        )
        return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])

    quant = helper.make_node("QuantizeLinear", ["x", "s_x", "z_x"], ["q"])
    protos = {
        "Conv (FP32)": model(
            [helper.make_node("Conv", ["x", "w"], ["y"], **pads)], {"w": w}, T.FLOAT
        ),
        "ConvInteger (int32 out)": model(
            [quant, helper.make_node("ConvInteger", ["q", "w_q", "z_x"], ["y"], **pads)],
            {"w_q": w_q, "s_x": s_x, "z_x": z_x}, T.INT32,
        ),
        "ConvInteger, uint8 weights": model(  # what export_onnx writes for Conv2d
            [quant, helper.make_node("ConvInteger", ["q", "w_u", "z_x", "z_w"], ["y"], **pads)],
            {"w_u": (w_q.astype(np.int16) + 128).astype(np.uint8), "s_x": s_x, "z_x": z_x,
             "z_w": np.array(128, np.uint8)}, T.INT32,
        ),
        "QLinearConv (uint8 out)": model(
            [quant, helper.make_node(
                "QLinearConv", ["q", "s_x", "z_x", "w_q", "s_w", "z_w", "s_y", "z_y"], ["y"],
                **pads,
            )],
            {"w_q": w_q, "s_x": s_x, "z_x": z_x, "s_w": np.array(0.001, np.float32),
             "z_w": np.array(0, np.int8), "s_y": np.array(0.01, np.float32),
             "z_y": np.array(128, np.uint8)},
            T.UINT8,
        ),
    }
    runners = {k: OnnxRunner(p) for k, p in protos.items()}
    secs = H.compare({k: (lambda r=r: r(x)) for k, r in runners.items()}, repeats=repeats)
    ref = secs["Conv (FP32)"]
    H.print_table(
        ["onnxruntime kernel", "ms", "x FP32 Conv"],
        [[k, v * 1e3, ref / v] for k, v in secs.items()],
        title=f"onnxruntime conv kernels, ({n}, {c}, {hw}, {hw}) 3x3, {c} -> {c} channels",
    )
    return {k: v * 1e3 for k, v in secs.items()}


def _dequant(q, x):
    with quantized_compute("dequant"):
        return logits(q, x)


def main() -> int:
    args = H.parse_args(__doc__.splitlines()[0])
    if not HAVE_ORT:
        print("onnxruntime is not installed (pip install tinytorch[deploy]): engine rows skipped")
    cpu = cpu_features()
    print(f"CPU: {cpu.model}; INT8 dot product: {cpu.int8_dot_instruction}")
    hidden = H.pick(args, 128, 1024)
    x_flat, y_flat = load_digits("train")
    x_img, y_img = load_digits_images("train")
    xt_flat, yt = load_digits("test")
    xt_img, _ = load_digits_images("test")
    repeats = H.pick(args, 3, 9)
    results = {"hidden": hidden, "cpu_int8_dot": cpu.int8_dot_instruction}
    m = train(mlp(hidden), x_flat, y_flat, epochs=H.pick(args, 2, 8), lr=1e-3)
    results["mlp"] = study(
        f"MLP 64-{hidden}-{hidden}-10", m, x_flat, y_flat, xt_flat, yt, (64,), repeats
    )
    c = train(cnn(), x_img, y_img, epochs=H.pick(args, 2, 15), lr=3e-3)
    results["cnn"] = study("CNN", c, x_img, y_img, xt_img, yt, (1, 8, 8), repeats)
    if HAVE_ORT:
        results["ort_conv_kernels_ms"] = ort_conv_kernels(args.quick, repeats)

    nan = float("nan")
    r_m, r_c = results["mlp"], results["cnn"]
    ort_speedup = r_m["speedup_vs_fp32_numpy"]["batch 64"].get("ORT INT8", nan)
    note = f"hidden={hidden}" if args.quick else ""
    targets = [
        H.Target("MLP: ORT INT8 vs FP32 numpy, batch 64", ort_speedup, 2.0, unit="x", note=note),
        H.Target(
            "MLP: ORT INT8 vs numpy INT8 (accumulator steps, this CPU)",
            r_m.get("ort_vs_numpy_int8_steps", nan), 0.0, higher_is_better=False,
        ),
        H.Target(
            "CNN: ORT INT8 vs numpy INT8 (accumulator steps, this CPU)",
            r_c.get("ort_vs_numpy_int8_steps", nan), 0.0, higher_is_better=False,
        ),
        H.Target(
            "MLP: AVX2 kernel emulation vs numpy INT8, default export (steps)",
            r_m.get("candidates", {}).get(DEFAULT, {}).get("avx2_vs_numpy_steps", nan), 0.0,
            higher_is_better=False,
        ),
        H.Target(
            "CNN: AVX2 kernel emulation vs numpy INT8, default export (steps)",
            r_c.get("candidates", {}).get(DEFAULT, {}).get("avx2_vs_numpy_steps", nan), 0.0,
            higher_is_better=False,
        ),
        H.Target(
            "MLP: |ORT INT8 - numpy INT8| test accuracy (points)",
            abs(r_m.get("acc_ort_int8", nan) - r_m["acc_int8_numpy"]) * 100, 0.0,
            higher_is_better=False,
        ),
        H.Target("MLP: INT8 file smaller than FP32", r_m["size_ratio"], 3.9, unit="x", note=note),
        H.Target(
            "MLP: INT8 accuracy drop (points)", (r_m["acc_fp32"] - r_m["acc_int8_numpy"]) * 100,
            1.0, higher_is_better=False,
        ),
        H.Target(
            "CNN: INT8 accuracy drop (points)", (r_c["acc_fp32"] - r_c["acc_int8_numpy"]) * 100,
            1.0, higher_is_better=False,
        ),
    ]
    return H.finish(args, "quantization", results, targets)


if __name__ == "__main__":
    sys.exit(main())
