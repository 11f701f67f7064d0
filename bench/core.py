"""The core's costs: per-op overhead, convolution against onnxruntime, and training runs.

    OPENBLAS_NUM_THREADS=1 python bench/core.py [--quick] [--json PATH]

1. Per-op overhead: 64x64 add, matmul, relu, softmax, forward under `no_grad` and forward +
   backward, tinytorch time over the same computation written in raw numpy (the backward by
   hand); beside it PyTorch eager over the same numpy, if `torch` is importable (optional:
   `pip install tinytorch[bench]`). Target: tinytorch <= 2x numpy under no_grad.
2. Convolution forward (no_grad, eval) against onnxruntime FP32 on the same weights, one
   thread: the digits CNN (conv-relu-pool x2, linear) and one 3x3 64->64 conv at 16x16, at
   batch 1 and 64. Targets: <= 5x onnxruntime at batch 1, <= 3x at batch 64. A second table
   shows why the im2col rows are channels-last: the copy and product of both layouts.
3. Training: the MLP and CNN on the 8x8 digits (`tinytorch.core.zoo` recipes, whose
   accuracies `tests/test_core_training.py` asserts) and TinyGPT steps on the corpus: wall
   seconds, median epoch, median step (the first epoch/step excluded as warm-up).

Sections 1 and 2 are interleaved medians after a warm-up (`_harness.compare`) of this
process's CPU time (one thread each: on a shared machine wall time also counts other
processes' turns); section 3 is wall time. One BLAS thread throughout.
`--quick` uses a few repeats and epochs, so its accuracies are not the full-run numbers.
"""

from __future__ import annotations

import statistics
import sys
import time
from pathlib import Path

import _harness as H  # first: pins BLAS to one thread before numpy is imported
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run from a checkout

from tinytorch.core import nn, zoo  # noqa: E402
from tinytorch.core.losses import cross_entropy  # noqa: E402
from tinytorch.core.optim import AdamW  # noqa: E402
from tinytorch.core.tensor import Tensor, no_grad  # noqa: E402
from tinytorch.core.train import evaluate  # noqa: E402

OP_SIZE = 64  # the per-op table's operands are (64, 64) float32
# Ratios are timed in this process's CPU time: everything compared runs on one thread, and
# on a shared machine wall time would also count the turns other processes take on the core.
CLOCK = time.process_time


# ------------------------------------------------------------------------- per-op overhead
def _np_softmax(a: np.ndarray) -> np.ndarray:
    e = np.exp(a - a.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def _numpy_ops(a: np.ndarray, b: np.ndarray, g: np.ndarray) -> dict:
    """op -> (forward, forward + hand-written backward) in raw numpy."""

    def softmax_fb():
        out = _np_softmax(a)
        return out * (g - (g * out).sum(axis=-1, keepdims=True))

    return {
        "add": (lambda: a + b, lambda: (a + b, g, g)),
        "matmul": (lambda: a @ b, lambda: (a @ b, g @ b.T, a.T @ g)),
        "relu": (lambda: np.maximum(a, 0), lambda: (np.maximum(a, 0), g * (a > 0))),
        "softmax": (lambda: _np_softmax(a), softmax_fb),
    }


def _tensor_ops(a: np.ndarray, b: np.ndarray, g: np.ndarray) -> dict:
    """op -> (forward under no_grad, forward + backward) in tinytorch."""
    x, y = Tensor(a), Tensor(b)
    xg, yg = Tensor(a, requires_grad=True), Tensor(b, requires_grad=True)
    forwards = {
        "add": lambda p, q: p + q,
        "matmul": lambda p, q: p @ q,
        "relu": lambda p, q: p.relu(),
        "softmax": lambda p, q: p.softmax(axis=-1),
    }

    def train_step(f):
        def run():
            xg.grad = yg.grad = None
            f(xg, yg).backward(g)

        return run

    return {k: ((lambda f=f: f(x, y)), train_step(f)) for k, f in forwards.items()}


def _torch_ops(a: np.ndarray, b: np.ndarray, g: np.ndarray):
    """The same ops in PyTorch eager (one thread), or None when torch is not importable."""
    try:
        import torch
    except ImportError:
        return None
    torch.set_num_threads(1)
    x, y, gt = torch.from_numpy(a), torch.from_numpy(b), torch.from_numpy(g)
    xg, yg = x.clone().requires_grad_(True), y.clone().requires_grad_(True)
    forwards = {
        "add": lambda p, q: p + q,
        "matmul": lambda p, q: p @ q,
        "relu": lambda p, q: torch.relu(p),
        "softmax": lambda p, q: torch.softmax(p, dim=-1),
    }

    def no_grad_fwd(f):
        def run():
            with torch.no_grad():
                return f(x, y)

        return run

    def train_step(f):
        def run():
            xg.grad = yg.grad = None
            f(xg, yg).backward(gt)

        return run

    return {k: (no_grad_fwd(f), train_step(f)) for k, f in forwards.items()}


def bench_ops(repeats: int) -> dict:
    """Seconds per call of each op: numpy, tinytorch (and torch), forward and forward+backward,
    all interleaved in one `compare` per op."""
    rng = np.random.default_rng(0)
    a, b, g = (rng.standard_normal((OP_SIZE, OP_SIZE)).astype(np.float32) for _ in range(3))
    impls = {"numpy": _numpy_ops(a, b, g), "tinytorch": _tensor_ops(a, b, g)}
    torch_ops = _torch_ops(a, b, g)
    if torch_ops is not None:
        impls["torch"] = torch_ops
    out = {}
    for op in impls["numpy"]:
        fns = {}
        for lib, ops in impls.items():
            fns[f"{lib} fwd"], fns[f"{lib} fwd+bwd"] = ops[op]
        secs = H.compare(
            fns,
            repeats=repeats,
            contexts={f"{lib} fwd": no_grad for lib in impls if lib != "torch"},
            timer=CLOCK,
        )
        out[op] = secs
    return out


def print_ops(ops: dict) -> list:
    """The per-op table; returns the targets (tinytorch / numpy under no_grad <= 2)."""
    libs = [lib for lib in ("tinytorch", "torch") if f"{lib} fwd" in next(iter(ops.values()))]
    headers = ["op (64x64 float32)", "numpy fwd (us)", "numpy fwd+bwd (us)"]
    for lib in libs:
        headers += [f"{lib} fwd (us)", f"{lib} / numpy fwd", f"{lib} / numpy fwd+bwd"]
    rows = []
    for op, s in ops.items():
        row = [op, s["numpy fwd"] * 1e6, s["numpy fwd+bwd"] * 1e6]
        for lib in libs:
            row += [
                s[f"{lib} fwd"] * 1e6,
                s[f"{lib} fwd"] / s["numpy fwd"],
                s[f"{lib} fwd+bwd"] / s["numpy fwd+bwd"],
            ]
        rows.append(row)
    title = "Per-op overhead: time / the same computation in raw numpy (fwd: under no_grad)"
    if "torch" not in libs:
        title += "; PyTorch not installed (pip install tinytorch[bench])"
    H.print_table(headers, rows, title=title)
    return [
        H.Target(
            f"tinytorch {op} (64x64) / numpy, under no_grad",
            s["tinytorch fwd"] / s["numpy fwd"], 2.0, unit="x", higher_is_better=False,
        )
        for op, s in ops.items()
    ]  # fmt: skip


# ------------------------------------------------------------------- convolution vs ORT
def digits_cnn() -> nn.Sequential:
    """The digits CNN of bench/quantization.py (8x8 images)."""
    return nn.Sequential(
        nn.Conv2d(1, 16, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),  # (N, 16, 4, 4)
        nn.Conv2d(16, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),  # (N, 32, 2, 2)
        nn.Flatten(), nn.Linear(128, 10),
    )  # fmt: skip


def bench_conv(repeats: int, quick: bool) -> dict | None:
    """Forward latency of tinytorch vs onnxruntime FP32 (same weights, one thread)."""
    try:
        import onnxruntime  # noqa: F401

        from tinytorch.quantization import OnnxRunner, export_onnx
    except ImportError as exc:
        print(f"note: conv vs onnxruntime skipped ({exc}; pip install tinytorch[deploy])")
        return None
    nn.manual_seed(0)
    cases = {
        "digits CNN (1x8x8)": (digits_cnn(), (1, 8, 8)),
        "conv 3x3 64->64 (64x16x16)": (nn.Sequential(nn.Conv2d(64, 64, 3, padding=1)),
                                       (64, 16, 16)),
    }  # fmt: skip
    rng = np.random.default_rng(0)
    out = {}
    for name, (model, shape) in cases.items():
        model.eval()
        ort = OnnxRunner(export_onnx(model, shape))
        for batch in (1, 8) if quick else (1, 64):
            x = rng.random((batch, *shape), dtype=np.float32)

            def ours(model=model, x=x):
                with no_grad():
                    return model(x).data

            diff = float(np.abs(ours() - ort(x)).max())
            secs = H.compare({"tinytorch": ours, "onnxruntime": lambda r=ort, x=x: r(x)},
                             repeats=repeats, warmup=3, timer=CLOCK)  # fmt: skip
            out[f"{name}, batch {batch}"] = {
                "batch": batch,
                "tinytorch_ms": secs["tinytorch"] * 1e3,
                "onnxruntime_ms": secs["onnxruntime"] * 1e3,
                "ratio": secs["tinytorch"] / secs["onnxruntime"],
                "max_abs_diff": diff,
            }
    H.print_table(
        ["model, batch", "tinytorch (ms)", "onnxruntime FP32 (ms)", "tinytorch / ORT",
         "max |diff|"],
        [[k, r["tinytorch_ms"], r["onnxruntime_ms"], r["ratio"], r["max_abs_diff"]]
         for k, r in out.items()],
        title="Convolution forward, no_grad, one thread: tinytorch vs onnxruntime FP32",
    )  # fmt: skip
    out["im2col layouts"] = bench_im2col_layouts(repeats, quick)
    return out


def bench_im2col_layouts(repeats: int, quick: bool) -> dict:
    """The im2col copy in each layout on each conv layer, and which one `conv_layout` picks."""
    from tinytorch.core.nn import _out_size, conv_layout, im2col_patches

    n = 8 if quick else 64
    rng = np.random.default_rng(1)
    layers = {  # name: (input shape, kernel, padding)
        "digits conv1 1->16, 8x8": ((n, 1, 8, 8), 3, 1),
        "digits conv2 16->32, 4x4": ((n, 16, 4, 4), 3, 1),
        "3x3 64->64, 16x16": ((n, 64, 16, 16), 3, 1),
    }
    out, rows = {}, []
    for name, (shape, k, p) in layers.items():
        x = rng.random(shape, dtype=np.float32)
        secs = H.compare(
            {lay: (lambda lay=lay, x=x, k=k, p=p: im2col_patches(x, (k, k), (1, 1), (p, p), lay))
             for lay in ("pixels", "channels-last")},
            repeats=repeats, timer=CLOCK,
        )  # fmt: skip
        picked = conv_layout(shape[1], k, 1, _out_size(shape[3], k, 1, p))
        faster = min(secs, key=secs.get)
        out[name] = {"pixels_ms": secs["pixels"] * 1e3,
                     "channels_last_ms": secs["channels-last"] * 1e3,
                     "picked": picked, "faster": faster}  # fmt: skip
        rows.append([name, secs["pixels"] * 1e3, secs["channels-last"] * 1e3, picked, faster])
    H.print_table(
        ["layer", "pixels (C, kh, kw) (ms)", "channels-last (kh, kw, C) (ms)", "conv_layout",
         "faster"],
        rows,
        title=f"im2col copy per layout, batch {n} (conv_layout: runs of Wo pixels vs kw*C "
              "channels)",
    )  # fmt: skip
    return out


def bench_digits(kind: str, epochs: int, seed: int = 0) -> dict:
    """Train the shared MLP or CNN recipe (tinytorch.core.zoo); time it; report test accuracy."""
    start = time.perf_counter()
    model, history, data = zoo.train_digits(kind, seed=seed, epochs=epochs)
    total = time.perf_counter() - start
    n_batches = len(data.loader("train", batch_size=32))
    steady = history.epoch_time[1:] or history.epoch_time
    return {
        "run": f"{kind.upper()} digits",
        "steps": f"{epochs} epochs x {n_batches} batches",
        "total_s": total,
        "median_step_ms": 1000 * statistics.median(steady) / n_batches,
        "median_epoch_s": statistics.median(steady),
        "metric": "test acc",
        "value": evaluate(model, data.loader("test")),
        "params": model.num_parameters(),
    }


def bench_tinygpt(steps: int, seed: int = 0) -> dict | None:
    """A few hundred AdamW steps of a small character-level TinyGPT."""
    try:
        from tinytorch.core.transformer import GPTConfig, TinyGPT
        from tinytorch.datasets import load_corpus_ids, unigram_entropy
    except ImportError as exc:  # the transformer is written by another part of the project
        print(f"note: TinyGPT skipped ({exc})")
        return None
    train_ids, tok = load_corpus_ids("train")
    val_ids, _ = load_corpus_ids("val")
    cfg = GPTConfig(vocab_size=tok.vocab_size, block_size=32, n_layer=2, n_head=2, d_model=64)
    model = TinyGPT(cfg, seed=seed)
    opt = AdamW(model.parameters(), lr=3e-3, weight_decay=0.01)
    rng = np.random.default_rng(seed)
    batch, t_len = 16, cfg.block_size

    def sample(ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        starts = rng.integers(0, len(ids) - t_len - 1, size=batch)
        x = np.stack([ids[s : s + t_len] for s in starts])  # (B, T)
        y = np.stack([ids[s + 1 : s + t_len + 1] for s in starts])  # (B, T), shifted by one
        return x, y

    times, losses = [], []
    start = time.perf_counter()
    for _ in range(steps):
        t0 = time.perf_counter()
        x, y = sample(train_ids)
        loss = cross_entropy(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        times.append(time.perf_counter() - t0)
        losses.append(loss.item())
    total = time.perf_counter() - start
    model.eval()
    with no_grad():
        val_loss = float(np.mean([cross_entropy(model(x), y).item() for x, y in
                                  (sample(val_ids) for _ in range(8))]))  # fmt: skip
    return {
        "run": "TinyGPT corpus",
        "steps": f"{steps} steps x {batch}x{t_len} tokens",
        "total_s": total,
        "median_step_ms": 1000 * statistics.median(times[1:] or times),
        "median_epoch_s": None,
        "metric": "val loss (nats)",
        "value": val_loss,
        "params": model.num_parameters(),
        "first_train_loss": losses[0],
        "unigram_entropy": unigram_entropy(train_ids),
    }


def main(argv: list[str] | None = None) -> int:
    args = H.parse_args(__doc__.splitlines()[0], argv)
    epochs_mlp, epochs_cnn = H.pick(args, 3, 30), H.pick(args, 2, 30)
    gpt_steps = H.pick(args, 20, 300)
    print(f"core benchmarks ({'quick' if args.quick else 'full'}); {H.environment()}")
    ops = bench_ops(repeats=H.pick(args, 3, 9))
    targets = print_ops(ops)
    conv = bench_conv(repeats=H.pick(args, 3, 9), quick=args.quick)
    if conv is not None:
        for name, r in conv["im2col layouts"].items():
            if not args.quick:  # tiny batches time copies too short to call
                ms = {"pixels": r["pixels_ms"], "channels-last": r["channels_last_ms"]}
                targets.append(H.Target(f"{name}: im2col copy conv_layout picks / the faster",
                                        ms[r["picked"]] / ms[r["faster"]], 1.1, unit="x",
                                        higher_is_better=False))
        for key, r in conv.items():
            if key != "im2col layouts":
                limit = 5.0 if r["batch"] == 1 else 3.0
                targets.append(H.Target(f"{key}: tinytorch / onnxruntime FP32", r["ratio"],
                                        limit, unit="x", higher_is_better=False))  # fmt: skip
    runs = [bench_digits("mlp", epochs_mlp), bench_digits("cnn", epochs_cnn)]
    gpt = bench_tinygpt(gpt_steps)
    if gpt is not None:
        runs.append(gpt)
    H.print_table(
        ["run", "work", "total (s)", "median epoch (s)", "median step (ms)", "params",
         "result", "value"],
        [
            [r["run"], r["steps"], r["total_s"], r["median_epoch_s"] or "-",
             r["median_step_ms"], r["params"], r["metric"], r["value"]]
            for r in runs
        ],
        title="Wall times (one run each; the median step excludes the first epoch/step)",
    )  # fmt: skip
    note = "--quick: a few epochs/steps only" if args.quick else ""
    by_run = {r["run"]: r for r in runs}
    if args.quick:  # a few epochs cannot reach the full-run accuracies: nothing to claim
        print("--quick: digit accuracy targets (MLP >= 0.95, CNN >= 0.97) need the full run")
    else:
        targets += [
            H.Target("MLP digits test accuracy", by_run["MLP digits"]["value"], 0.95),
            H.Target("CNN digits test accuracy", by_run["CNN digits"]["value"], 0.97),
        ]
    if gpt is not None:
        print(
            f"TinyGPT: first train loss {gpt['first_train_loss']:.3f} nats; unigram entropy "
            f"{gpt['unigram_entropy']:.3f} nats is the best a context-free model can do"
        )
        targets.append(
            H.Target(
                "TinyGPT val loss below the unigram entropy (nats)",
                gpt["value"],
                gpt["unigram_entropy"],
                higher_is_better=False,
                note=note,
            )
        )
    else:
        print("TinyGPT: skipped (tinytorch.core.transformer is not available)")
    results = {"ops_seconds": ops, "conv": conv, "training": {r["run"]: r for r in runs}}
    return H.finish(args, "core", results, targets)


if __name__ == "__main__":
    raise SystemExit(main())
