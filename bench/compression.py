"""Compression (module 18): accuracy, bytes and latency of pruned and distilled digit models.

    OPENBLAS_NUM_THREADS=1 python bench/compression.py [--quick] [--json PATH] [--png PATH]

One run, everything as a ratio to the baseline measured in the same run:

- baseline: an MLP 64 -> W -> W -> 10 on the bundled 8x8 digits (raw pixels in [0, 1]). The
  full run uses W = 1024 so that a batch-64 forward pass is dominated by the matmuls rather
  than by Python overhead; at W = 256 (the notebook's model) a forward pass takes tens of
  microseconds and the ratios mostly measure the interpreter.
- unstructured 50/80/90/95%: global magnitude pruning (one threshold over all layers), then
  fine-tuning with the masks held (`MagnitudePruner.wrap`).
- structured 25/50/75%: that fraction of the units of every hidden layer removed by L1 norm
  (`structured_prune`), then fine-tuning.
- distilled student: 64 -> 32 -> 10 trained from scratch against the baseline as teacher
  (T = 8, alpha = 0.9); compared with the same student trained on the labels only, mean over
  3 seeds.

Columns: test accuracy, non-zero parameters, dense bytes, CSR bytes (smallest index types,
and int32 indices), batch-64 forward latency with dense kernels and, for the unstructured
rows, with the CSR kernel (`to_sparse`, `csr_matmul_blocked`). Latencies are medians of
interleaved samples (bench/_harness.py). The sparsity-accuracy curve (before and after
fine-tuning, unstructured and structured) is saved as a PNG, by default in bench/results/.
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))  # run from a checkout

import _harness as H  # noqa: E402  (first: pins BLAS to one thread before numpy loads)
import numpy as np  # noqa: E402

import tinytorch.compression as C  # noqa: E402
from tinytorch.core import zoo  # noqa: E402
from tinytorch.core.data import DataLoader, TensorDataset  # noqa: E402
from tinytorch.core.losses import cross_entropy  # noqa: E402
from tinytorch.core.optim import Adam  # noqa: E402
from tinytorch.core.tensor import no_grad  # noqa: E402
from tinytorch.core.train import evaluate, fit  # noqa: E402
from tinytorch.datasets import load_digits  # noqa: E402

DEFAULT_PNG = HERE / "results" / "compression_sparsity_accuracy.png"
QUICK_PNG = HERE / "results" / "compression_sparsity_accuracy_quick.png"  # keeps the full one


@dataclass(frozen=True)
class Recipe:
    width: int  # hidden width of the baseline 64 -> W -> W -> 10 (compute must dominate)
    teacher_epochs: int  # baseline training (Adam, batch 32)
    teacher_lr: float
    finetune_epochs: int  # after each pruning step (Adam, lr 1e-3)
    student: tuple  # distilled student sizes (<= 1/4 of the baseline's parameters)
    student_epochs: int  # distillation and plain training alike (Adam 3e-3, batch 64)
    seeds: tuple  # student seeds; accuracies are means over them
    temperature: float = 8.0  # high T spreads the teacher's probability over wrong classes
    alpha: float = 0.9  # weight of the soft (KL) term
    unstructured: tuple = (0.5, 0.8, 0.9, 0.95)
    structured: tuple = (0.25, 0.5, 0.75)
    curve: tuple = (0.0, 0.5, 0.8, 0.9, 0.95, 0.98)  # unstructured sparsities on the PNG
    batch: int = 64  # latency batch
    repeats: int = 15  # latency samples (medians; the machine may be shared, so many)


FULL = Recipe(width=1024, teacher_epochs=20, teacher_lr=1e-3, finetune_epochs=5,
              student=(64, 32, 10), student_epochs=60, seeds=(0, 1, 2))  # fmt: skip
QUICK = Recipe(width=128, teacher_epochs=3, teacher_lr=2e-3, finetune_epochs=1,
               student=(64, 32, 10), student_epochs=3, seeds=(0,), curve=(0.0, 0.5, 0.9),
               repeats=3)  # fmt: skip


def parse_args(argv=None) -> argparse.Namespace:
    extra = argparse.ArgumentParser(add_help=False)
    extra.add_argument("--png", default=None, help=f"where to save the curve ({DEFAULT_PNG})")
    known, rest = extra.parse_known_args(argv)
    args = H.parse_args(__doc__.splitlines()[0], rest)
    args.png = known.png or str(QUICK_PNG if args.quick else DEFAULT_PNG)
    return args


class Digits:
    def __init__(self):
        self.x, self.y = load_digits("train")
        xte, yte = load_digits("test")
        self.test = DataLoader(TensorDataset(xte, yte), batch_size=512)
        self.batch = xte[:64]

    def train(self, seed: int, batch_size: int = 32) -> DataLoader:
        return DataLoader(TensorDataset(self.x, self.y), batch_size=batch_size, shuffle=True,
                          seed=seed)  # fmt: skip


def fine_tune(model, data: Digits, epochs: int, pruner=None):
    opt = Adam(model.parameters(), lr=1e-3)
    if pruner is not None:
        opt = pruner.wrap(opt)
    fit(model, data.train(1), cross_entropy, opt, epochs, progress=False)
    return model


def copy_model(model, sizes):
    out = C.make_mlp(sizes)
    out.load_state_dict(model.state_dict())
    return out


def distill_on_standardized_inputs(r: Recipe) -> dict:
    """The same student comparison on the zoo's standardized digits (informational).

    Standardizing the pixels makes the small student much easier to train on labels alone;
    this measures whether distillation still adds anything there.
    """
    data = zoo.digits_data()
    teacher, _, _ = zoo.train_digits("mlp", model=C.make_mlp([64, 256, 256, 10]), data=data)
    test = data.loader("test")
    out = {"teacher": evaluate(teacher, test), "distilled": [], "plain": []}
    for seed in r.seeds:
        for kind, alpha in (("distilled", r.alpha), ("plain", 0.0)):
            student = C.make_mlp(r.student, seed=seed)
            loader = data.loader("train", batch_size=64, shuffle=True, seed=seed)
            C.distill(student, teacher, loader, Adam(student.parameters(), lr=3e-3),
                      r.student_epochs, temperature=r.temperature, alpha=alpha)  # fmt: skip
            out[kind].append(evaluate(student, test))
    return out


def main(argv=None) -> int:
    args = parse_args(argv)
    r = QUICK if args.quick else FULL
    data = Digits()
    sizes = [64, r.width, r.width, 10]
    start = time.perf_counter()

    baseline = C.make_mlp(sizes, seed=0)
    fit(baseline, data.train(0), cross_entropy, Adam(baseline.parameters(), lr=r.teacher_lr),
        r.teacher_epochs, progress=False)  # fmt: skip
    base_acc = evaluate(baseline, data.test)
    print(f"baseline 64-{r.width}-{r.width}-10: {baseline.num_parameters():,} parameters, "
          f"test accuracy {100 * base_acc:.1f}% ({time.perf_counter() - start:.0f} s)")

    models: dict[str, object] = {"baseline": baseline}
    sparse_fwd: dict[str, object] = {}
    curve = {"unstructured_one_shot": [], "unstructured_fine_tuned": [],
             "structured_one_shot": [], "structured_fine_tuned": []}  # fmt: skip
    for s in sorted(set(r.unstructured) | set(r.curve)):
        if s == 0.0:
            for key in ("unstructured_one_shot", "unstructured_fine_tuned"):
                curve[key].append((0.0, base_acc))
            continue
        model = copy_model(baseline, sizes)
        pruner = C.MagnitudePruner(model, scope="global")
        pruner.prune(s)
        one_shot = evaluate(model, data.test)
        fine_tune(model, data, r.finetune_epochs, pruner)
        tuned = evaluate(model, data.test)
        if s in r.curve:
            curve["unstructured_one_shot"].append((s, one_shot))
            curve["unstructured_fine_tuned"].append((s, tuned))
        if s in r.unstructured:
            models[f"unstructured {s:.0%}"] = model
            sparse_fwd[f"unstructured {s:.0%}"] = C.to_sparse(model)
    for frac in r.structured:
        model = C.structured_prune(baseline, frac)
        removed = 1 - model.num_parameters() / baseline.num_parameters()
        curve["structured_one_shot"].append((removed, evaluate(model, data.test)))
        fine_tune(model, data, r.finetune_epochs)
        curve["structured_fine_tuned"].append((removed, evaluate(model, data.test)))
        models[f"structured {frac:.0%}"] = model
    print(f"pruned and fine-tuned ({time.perf_counter() - start:.0f} s)")

    distill = {"distilled": [], "plain": []}
    students = {}
    for seed in r.seeds:
        for kind, alpha in (("distilled", r.alpha), ("plain", 0.0)):
            student = C.make_mlp(r.student, seed=seed)
            C.distill(student, baseline, data.train(seed, 64), Adam(student.parameters(), lr=3e-3),
                      r.student_epochs, temperature=r.temperature, alpha=alpha)  # fmt: skip
            distill[kind].append(evaluate(student, data.test))
            students.setdefault(kind, student)
    standardized = None if args.quick else distill_on_standardized_inputs(r)
    models["distilled student"] = students["distilled"]
    models["plain student"] = students["plain"]
    print(f"distilled ({time.perf_counter() - start:.0f} s)")

    # ---------------------------------------------------------------- latency, interleaved
    x = data.batch[: r.batch]
    fns = {}
    for name, m in models.items():
        m.eval()
        fns[name] = (lambda m=m: m(x))
    for name, m in sparse_fwd.items():
        fns[name + " (CSR)"] = (lambda m=m: m(x))
    fns["baseline, timed again"] = lambda: baseline(x)  # the noise floor of these ratios
    with no_grad():
        secs = H.compare(fns, repeats=r.repeats, warmup=2, min_time=0.02)
    noise = secs["baseline"] / secs["baseline, timed again"]

    # ---------------------------------------------------------------- table
    base_size = C.model_size(baseline)
    rows, table = [], []
    for name, m in models.items():
        size, size32 = C.model_size(m), C.model_size(m, np.int32)
        if name == "distilled student":
            acc = float(np.mean(distill["distilled"]))
        elif name == "plain student":
            acc = float(np.mean(distill["plain"]))
        else:
            acc = evaluate(m, data.test)
        row = {
            "model": name,
            "accuracy": acc,
            "delta_points": 100 * (acc - base_acc),
            "params": m.num_parameters(),
            "nonzero": size.nonzero,
            "dense_bytes": size.dense_bytes,
            "csr_bytes": size.sparse_bytes,
            "csr_int32_bytes": size32.sparse_bytes,
            "latency_s": secs[name],
            "speedup": secs["baseline"] / secs[name],
            "csr_latency_s": secs.get(name + " (CSR)"),
            "csr_speedup": secs["baseline"] / secs[name + " (CSR)"] if name in sparse_fwd else None,
        }
        rows.append(row)
        table.append([
            name, 100 * acc, row["delta_points"], size.nonzero / base_size.nonzero,
            size.dense_bytes / base_size.dense_bytes, size.sparse_bytes / base_size.dense_bytes,
            size32.sparse_bytes / base_size.dense_bytes, row["speedup"], row["csr_speedup"],
        ])  # fmt: skip
    H.print_table(
        ["model", "acc %", "delta pts", "non-zeros", "dense B", "CSR B", "CSR int32 B",
         "speed-up", "CSR speed-up"],
        table,
        title=f"ratios to the dense baseline (64-{r.width}-{r.width}-10); latency at batch "
        f"{r.batch}, medians of {r.repeats} interleaved samples",
    )  # fmt: skip
    print(f"timing noise: the baseline against itself gives a speed-up of {noise:.2f}x")
    if standardized is not None:
        print(f"distillation on standardized inputs (zoo recipe, teacher 64-256-256-10, "
              f"{100 * standardized['teacher']:.2f}%): distilled "
              f"{100 * np.mean(standardized['distilled']):.2f}%, plain "
              f"{100 * np.mean(standardized['plain']):.2f}% (informational, no target)")
    d_pct = [round(100 * a, 1) for a in distill["distilled"]]
    p_pct = [round(100 * a, 1) for a in distill["plain"]]
    print(f"\ndistillation over seeds {r.seeds}: distilled {np.mean(d_pct):.2f}% {d_pct}, "
          f"plain {np.mean(p_pct):.2f}% {p_pct}, teacher {100 * base_acc:.2f}%")

    # ---------------------------------------------------------------- curve
    png = Path(args.png)
    png.parent.mkdir(parents=True, exist_ok=True)
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    styles = {"unstructured_one_shot": ("tab:blue", "--", "unstructured, one-shot"),
              "unstructured_fine_tuned": ("tab:blue", "-", "unstructured, fine-tuned"),
              "structured_one_shot": ("tab:orange", "--", "structured, one-shot"),
              "structured_fine_tuned": ("tab:orange", "-", "structured, fine-tuned")}  # fmt: skip
    for key, points in curve.items():
        if points:
            color, ls, label = styles[key]
            xs, ys = zip(*points)
            ax.plot(xs, [100 * y for y in ys], ls, marker="o", color=color, label=label)
    ax.axhline(100 * base_acc, color="gray", lw=0.8)
    ax.set_xlabel("fraction of weights removed")
    ax.set_ylabel("test accuracy (%)")
    ax.set_title(f"digits MLP 64-{r.width}-{r.width}-10")
    ax.legend(fontsize=8, handlelength=3)
    fig.tight_layout()
    fig.savefig(png, dpi=110)
    print(f"saved the sparsity-accuracy curve to {png}")

    # ---------------------------------------------------------------- targets
    by_name = {row["model"]: row for row in rows}
    note = "quick: width 128, few epochs" if args.quick else f"width {r.width}"
    targets = [
        H.Target("unstructured 90%: accuracy loss after fine-tuning",
                 -by_name["unstructured 90%"]["delta_points"], 2.0, unit=" pts",
                 higher_is_better=False, note=note),
        H.Target("structured 50%: forward speed-up at batch 64",
                 by_name["structured 50%"]["speedup"], 1.6, unit="x", note=note),
        H.Target("structured 50%: accuracy loss after fine-tuning",
                 -by_name["structured 50%"]["delta_points"], 3.0, unit=" pts",
                 higher_is_better=False, note=note),
        H.Target("distilled student: parameters / teacher's",
                 by_name["distilled student"]["params"] / baseline.num_parameters(), 0.25,
                 higher_is_better=False, note=note),
        H.Target("distilled student: points below the teacher (mean over seeds)",
                 -by_name["distilled student"]["delta_points"], 2.0, unit=" pts",
                 higher_is_better=False, note=note),
        H.Target("distilled minus plain student (mean over seeds)",
                 100 * (np.mean(distill["distilled"]) - np.mean(distill["plain"])), 1e-9,
                 unit=" pts", note=note + "; target > 0"),
        H.Target("unstructured 50%: CSR (int32) bytes / dense bytes (not smaller)",
                 by_name["unstructured 50%"]["csr_int32_bytes"] / base_size.dense_bytes, 1.0,
                 note="an honesty check: 50% zeros in CSR with int32 indices save nothing"),
    ]  # fmt: skip
    results = {
        "recipe": asdict(r),
        "baseline_accuracy": base_acc,
        "rows": rows,
        "curve": {k: [list(p) for p in v] for k, v in curve.items()},
        "distillation": distill,
        "timing_noise_baseline_vs_itself": noise,
        "distillation_standardized_inputs": standardized,
        "png": str(png),
        "seconds": time.perf_counter() - start,
    }
    print(f"total {results['seconds']:.0f} s")
    return H.finish(args, "compression", results, targets)


if __name__ == "__main__":
    sys.exit(main())
