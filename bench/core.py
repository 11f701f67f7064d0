"""Wall times of the core training runs: MLP and CNN on the 8x8 digits, TinyGPT on the corpus.

    OPENBLAS_NUM_THREADS=1 python bench/core.py [--quick] [--json PATH]

The digit recipes are `tinytorch.core.zoo`'s, whose accuracies `tests/test_core_training.py`
asserts. Times are wall seconds on this machine; "median step" excludes the first
(warm-up) epoch or step. `--quick` runs a few epochs / steps only, so its accuracies are not
the full-run numbers.
"""

from __future__ import annotations

import statistics
import sys
import time
from pathlib import Path

import _harness as H  # first: pins BLAS to one thread before numpy is imported
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run from a checkout

from tinytorch.core import zoo  # noqa: E402
from tinytorch.core.losses import cross_entropy  # noqa: E402
from tinytorch.core.optim import AdamW  # noqa: E402
from tinytorch.core.tensor import no_grad  # noqa: E402
from tinytorch.core.train import evaluate  # noqa: E402


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
    print(f"core training runs ({'quick' if args.quick else 'full'}); {H.environment()}")
    runs = [bench_digits("mlp", epochs_mlp), bench_digits("cnn", epochs_cnn)]
    gpt = bench_tinygpt(gpt_steps)
    if gpt is not None:
        runs.append(gpt)
    H.print_table(
        ["run", "work", "total (s)", "median step (ms)", "params", "result", "value"],
        [
            [r["run"], r["steps"], r["total_s"], r["median_step_ms"], r["params"], r["metric"],
             r["value"]]
            for r in runs
        ],
        title="Wall times (one run each; the median step excludes the first epoch/step)",
    )  # fmt: skip
    note = "--quick: a few epochs/steps only" if args.quick else ""
    by_run = {r["run"]: r for r in runs}
    targets = []
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
    return H.finish(args, "core", {r["run"]: r for r in runs}, targets)


if __name__ == "__main__":
    raise SystemExit(main())
