"""Module 15 bench: every matmul backend through the routing point, and TinyGPT generation.

    OPENBLAS_NUM_THREADS=1 python bench/acceleration.py [--quick] [--json PATH]

All times are medians of interleaved samples after warm-up (bench/_harness.py). Ratios are
against raw `np.matmul` on the same inputs in the same run, so they transfer between machines
better than absolute GFLOP/s. Targets (PASS/FAIL; a failure exits 1 in full mode):

- dispatch overhead: the numpy backend keeps >= 90% of raw np.matmul GFLOP/s at n >= 256
- blocked backend >= 25% of raw np.matmul at n = 512
- naive -> numpy backend >= 1000x at n = 128
- TinyGPT generation >= 100x faster on the numpy backend than on the naive one
- the optimized backend is never meaningfully slower than numpy (>= 0.9x at n >= 256 and on
  the integer / float16 / folded-batch cases it targets)
"""

from __future__ import annotations

import sys

import _harness as H  # first: pins BLAS to one thread before numpy is imported
import numpy as np

import tinytorch.acceleration  # noqa: F401  (registers naive/blocked/vectorized/optimized)
from tinytorch.core import backends
from tinytorch.core.transformer import GPTConfig, TinyGPT

BACKENDS = ["naive", "vectorized", "blocked", "optimized", "numpy"]
RAW = "np.matmul"


def ladder_row(n: int, names: list[str], repeats: int, min_time: float) -> dict[str, float]:
    """Seconds per (n, n) @ (n, n) float32 product: raw np.matmul and each backend (routed)."""
    rng = np.random.default_rng(n)
    a = rng.standard_normal((n, n)).astype(np.float32)
    b = rng.standard_normal((n, n)).astype(np.float32)
    fns = {RAW: lambda: np.matmul(a, b)}
    contexts = {}
    for name in names:
        fns[name] = lambda: backends.matmul(a, b)  # the routing point, as the model calls it
        contexts[name] = lambda name=name: backends.use_backend(name)
    return H.compare(fns, repeats=repeats, warmup=2, min_time=min_time, contexts=contexts)


def dtype_cases(quick: bool) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """The inputs OptimizedBackend has rules for (numpy has no BLAS path or a slow one)."""
    rng = np.random.default_rng(0)
    n = 64 if quick else 256
    x = rng.standard_normal((32, 1, 64)).astype(np.float32)
    w = rng.standard_normal((64, 256)).astype(np.float32)
    ai = rng.integers(-128, 128, size=(n, n))
    ah = rng.standard_normal((n, n)).astype(np.float16)
    return {
        f"int64 {n}x{n}": (ai, ai),
        f"float16 {n}x{n}": (ah, ah),
        "(32,1,64)@(64,256) f32": (x, w),
    }


def time_cases(cases, repeats: int, min_time: float) -> dict[str, dict[str, float]]:
    out = {}
    for label, (p, q) in cases.items():
        fns = {name: (lambda p=p, q=q: backends.matmul(p, q)) for name in ("numpy", "optimized")}
        contexts = {name: (lambda name=name: backends.use_backend(name)) for name in fns}
        out[label] = H.compare(fns, repeats=repeats, warmup=2, min_time=min_time, contexts=contexts)
    return out


def tinygpt(quick: bool, repeats: int) -> dict:
    """Seconds to generate tokens with TinyGPT on the naive, numpy and optimized backends."""
    if quick:
        config = GPTConfig(vocab_size=65, block_size=16, n_layer=1, n_head=2, d_model=16)
        prompt_len, new_tokens = 8, 2
    else:
        # small enough that the naive backend finishes in seconds, big enough that matmul (not
        # the Tensor bookkeeping every backend pays alike) is most of the naive time
        config = GPTConfig(vocab_size=65, block_size=64, n_layer=2, n_head=4, d_model=96)
        prompt_len, new_tokens = 32, 4
    model = TinyGPT(config, seed=0)
    prompt = np.random.default_rng(0).integers(0, config.vocab_size, size=prompt_len)
    outputs = {}

    def gen(name):
        def run():
            outputs[name] = model.generate(prompt, max_new_tokens=new_tokens, greedy=True)

        return run

    names = ["naive", "numpy", "optimized"]
    secs = H.compare(
        {name: gen(name) for name in names},
        repeats=repeats,
        warmup=1,
        min_time=0.0,
        contexts={name: (lambda name=name: backends.use_backend(name)) for name in names},
    )
    same = all(np.array_equal(outputs[n], outputs["numpy"]) for n in names)
    return {
        "config": {
            k: getattr(config, k)
            for k in ("vocab_size", "block_size", "n_layer", "n_head", "d_model")
        },
        "parameters": model.num_parameters(),
        "prompt_len": prompt_len,
        "new_tokens": new_tokens,
        "seconds": secs,
        "same_tokens_on_every_backend": same,
    }


def main(argv=None) -> int:
    args = H.parse_args(__doc__.splitlines()[0], argv)
    sizes = H.pick(args, [16, 32, 64], [32, 64, 128, 256, 512, 1024])
    naive_max = H.pick(args, 32, 128)
    repeats = H.pick(args, 3, 7)
    min_time = H.pick(args, 0.0005, 0.01)
    print(f"matmul backends through the routing point; float32, {H.environment()}")

    secs: dict[int, dict[str, float]] = {}
    for n in sizes:
        names = [b for b in BACKENDS if b != "naive" or n <= naive_max]
        secs[n] = ladder_row(n, names, repeats if n < 1024 else 3, min_time)

    def gf(n, name):
        return 2 * n**3 / secs[n][name] / 1e9 if name in secs[n] else None

    def frac(n, name):
        return secs[n][RAW] / secs[n][name] if name in secs[n] else None

    H.print_table(
        ["backend"] + [f"n={n}" for n in sizes],
        [[name] + [gf(n, name) for n in sizes] for name in BACKENDS + [RAW]],
        title="GFLOP/s (median)",
    )
    H.print_table(
        ["backend"] + [f"n={n}" for n in sizes],
        [[name] + [frac(n, name) for n in sizes] for name in BACKENDS],
        title="fraction of raw np.matmul in the same run (1.0 = as fast)",
    )

    cases = time_cases(dtype_cases(args.quick), repeats, min_time)
    H.print_table(
        ["case", "numpy (us)", "optimized (us)", "speed-up"],
        [
            [label, c["numpy"] * 1e6, c["optimized"] * 1e6, c["numpy"] / c["optimized"]]
            for label, c in cases.items()
        ],
        title="OptimizedBackend vs the numpy backend on the inputs its rules target",
    )

    gpt = tinygpt(args.quick, repeats=3)
    g = gpt["seconds"]
    H.print_table(
        ["backend", "generate (s)", "speed-up vs naive"],
        [[name, t, g["naive"] / t] for name, t in g.items()],
        title=(
            f"TinyGPT generation: {gpt['new_tokens']} tokens after a {gpt['prompt_len']}-token "
            f"prompt, {gpt['parameters']:,} parameters, {gpt['config']}"
        ),
    )
    if not gpt["same_tokens_on_every_backend"]:
        print("WARNING: greedy generation differed between backends")

    big = [n for n in sizes if n >= 256] or [max(sizes)]
    blocked_n = 512 if 512 in sizes else max(sizes)
    naive_n = naive_max
    quick_note = "quick mode: tiny sizes" if args.quick else ""
    targets = [
        H.Target(
            f"numpy backend / raw np.matmul, worst of n in {big}",
            min(frac(n, "numpy") for n in big),
            0.90,
            note=quick_note,
        ),
        H.Target(
            f"blocked backend / raw np.matmul at n={blocked_n}",
            frac(blocked_n, "blocked"),
            0.25,
            note=quick_note,
        ),
        H.Target(
            f"naive -> numpy backend speed-up at n={naive_n}",
            secs[naive_n]["naive"] / secs[naive_n]["numpy"],
            1000.0,
            unit="x",
            note=quick_note,
        ),
        H.Target(
            "TinyGPT generation: numpy backend speed-up over naive",
            g["naive"] / g["numpy"],
            100.0,
            unit="x",
            note=quick_note,
        ),
        H.Target(
            f"optimized / numpy backend speed, worst of n in {big} and the targeted cases",
            min(
                [secs[n]["numpy"] / secs[n]["optimized"] for n in big]
                + [c["numpy"] / c["optimized"] for c in cases.values()]
            ),
            0.90,
            unit="x",
            note=quick_note,
        ),
    ]
    results = {
        "sizes": sizes,
        "seconds": {str(n): secs[n] for n in sizes},
        "gflops": {name: {str(n): gf(n, name) for n in sizes} for name in BACKENDS + [RAW]},
        "fraction_of_np_matmul": {
            name: {str(n): frac(n, name) for n in sizes} for name in BACKENDS
        },
        "optimized_cases_seconds": cases,
        "tinygpt_generation": gpt,
    }
    return H.finish(args, "acceleration", results, targets)


if __name__ == "__main__":
    sys.exit(main())
