"""KV cache (module 16): cached vs uncached TinyGPT generation, the library's cached path against a
minimal raw-numpy cached loop over the same weights, and measured memory against the model.

    OPENBLAS_NUM_THREADS=1 python bench/memory.py [--quick] [--json PATH]

Model: TinyGPT with 4 layers, d_model 128, 4 heads, vocab 96, block_size = prompt (16) + 1024.
For 64 ... 1024 new tokens (greedy), measured interleaved with medians after a warm-up (the
cached paths 9 runs per length; the uncached baseline 3 runs up to 256 tokens, 2 at 512 and one
~80-second run at 1024, itself an average over 1024 steps):

- uncached: `model.generate(prompt, n, greedy=True)` recomputes the whole context every step;
- cached: `model.generate(..., use_cache=True)`, which preallocates the core's
  `tinytorch.core.cache.StaticCache` of prompt + n positions (no copies per step), and, for
  comparison, the growing `tinytorch.memory.KVCache` passed as `cache=KVCache(n_layer)` (a
  copy per step);
- raw numpy: the same cached algorithm written directly on the weight arrays (`raw_generate`),
  with the same formulas (layer norm, tanh-GELU, max-shifted softmax). It is the floor for
  the library's cached path: their ratio is the cost of the `Tensor` / `Module` abstractions.

Times are this process's CPU time (`time.process_time`): every method runs on one thread, and
on a shared machine wall time would also count the turns other processes take on the core.
Targets: use_cache=True >= 0.9 of the raw-numpy tokens/s at EVERY length, >= 30x over
uncached at 512 new tokens, >= 50x at 1024, the same tokens.

Memory (tracemalloc, via `tinytorch.memory.MemoryProfiler`, in runs separate from timing): the
peak of static-cache generation against `weights + kv_cache_bytes(...)`, and the sliding
window's peak at two lengths. `--quick` uses small lengths and repeats (a few seconds).
"""

from __future__ import annotations

import statistics
import sys
import time
from pathlib import Path

import _harness as H  # first: pins BLAS to one thread before numpy is imported
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run from a checkout

from tinytorch.core.tensor import no_grad  # noqa: E402
from tinytorch.core.transformer import GPTConfig, TinyGPT  # noqa: E402
from tinytorch.memory import (  # noqa: E402
    KVCache,
    MemoryProfiler,
    SlidingWindowKVCache,
    StaticKVCache,
    kv_cache_bytes,
)

CLOCK = time.process_time  # CPU time of this process (see the docstring)
PROMPT_LEN = 16
MAX_NEW = 1024
CONFIG = GPTConfig(vocab_size=96, block_size=PROMPT_LEN + MAX_NEW, n_layer=4, n_head=4, d_model=128)


# ------------------------------------------------------------------------ the raw-numpy floor
def raw_weights(model: TinyGPT) -> dict:
    """The model's parameters as plain numpy arrays (no copies)."""
    layers = []
    for b in model.blocks:
        layers.append(
            (
                b.ln1.weight.data, b.ln1.bias.data,
                b.attn.qkv.weight.data, b.attn.qkv.bias.data,
                b.attn.proj.weight.data, b.attn.proj.bias.data,
                b.ln2.weight.data, b.ln2.bias.data,
                b.mlp.fc.weight.data, b.mlp.fc.bias.data,
                b.mlp.proj.weight.data, b.mlp.proj.bias.data,
            )
        )  # fmt: skip
    return {
        "tok": model.tok_emb.weight.data,
        "pos": model.pos_emb.weight.data,
        "layers": layers,
        "lnf": (model.ln_f.weight.data, model.ln_f.bias.data),
        "head": (model.lm_head.weight.data, model.lm_head.bias.data),
        "n_head": model.config.n_head,
        "eps": model.ln_f.eps,
    }


def raw_generate(w: dict, prompt: np.ndarray, n: int) -> np.ndarray:
    """Greedy cached generation for one sequence, straight numpy: prefill, then one token per
    step, keys and values written into preallocated (L, H, T, D) buffers."""
    tok, pos, layers = w["tok"], w["pos"], w["layers"]
    n_layer, c = len(layers), tok.shape[1]
    h = w["n_head"]
    d = c // h
    eps = w["eps"]
    total = len(prompt) + n
    kbuf = np.zeros((n_layer, h, total, d), dtype=tok.dtype)
    vbuf = np.zeros((n_layer, h, total, d), dtype=tok.dtype)
    scale = np.asarray(1.0 / np.sqrt(d), dtype=tok.dtype)
    c0 = np.sqrt(2 / np.pi).astype(tok.dtype)
    masked = np.finfo(tok.dtype).min / 4

    def ln(x, g, b):
        mu = x.mean(axis=-1, keepdims=True)
        xc = x - mu
        var = (xc * xc).mean(axis=-1, keepdims=True)
        return xc * (1.0 / np.sqrt(var + eps)) * g + b

    def step(ids: np.ndarray, start: int) -> np.ndarray:
        t = len(ids)
        end = start + t
        x = tok[ids] + pos[start:end]  # (t, C)
        for i, (g1, b1, wqkv, bqkv, wp, bp, g2, b2, wf, bf, wm, bm) in enumerate(layers):
            qkv = (ln(x, g1, b1) @ wqkv + bqkv).reshape(t, 3, h, d)  # (t, 3, H, D)
            qkv = qkv.transpose(1, 2, 0, 3)  # (3, H, t, D)
            kbuf[i, :, start:end] = qkv[1]
            vbuf[i, :, start:end] = qkv[2]
            s = qkv[0] @ kbuf[i, :, :end].transpose(0, 2, 1) * scale  # (H, t, end)
            if t > 1:  # the prefill: causal mask aligned with the last t keys
                s = s + np.where(np.tri(t, end, start, dtype=bool), 0.0, masked).astype(s.dtype)
            e = np.exp(s - s.max(axis=-1, keepdims=True))
            p = e / e.sum(axis=-1, keepdims=True)  # (H, t, end)
            y = (p @ vbuf[i, :, :end]).transpose(1, 0, 2).reshape(t, c)  # (t, C)
            x = x + (y @ wp + bp)
            f = ln(x, g2, b2) @ wf + bf  # (t, 4C)
            f = 0.5 * f * (1 + np.tanh(c0 * (f + 0.044715 * (f * f * f))))
            x = x + (f @ wm + bm)
        return ln(x[-1], *w["lnf"]) @ w["head"][0] + w["head"][1]  # (vocab,)

    out = np.empty(total, dtype=np.int64)
    out[: len(prompt)] = prompt
    if n:
        logits = step(np.asarray(prompt), 0)
        for t in range(len(prompt), total):
            out[t] = logits.argmax()
            if t + 1 < total:
                logits = step(out[t : t + 1], t)
    return out


# ------------------------------------------------------------------------------ measurements
def time_generation(model, weights, prompt, lengths, repeats, uncached_repeats):
    """Median seconds per method and length, interleaved; tokens from each method; and, per
    cached method, the median over rounds of (raw numpy time / its time) in the same round.

    `repeats` timed calls per cached method and length; `uncached_repeats(n)` for the uncached
    baseline, whose long runs are each already an average over n steps. A round runs every
    method once, back to back, so a paired ratio cancels what disturbs the whole round (a busy
    neighbour on a shared machine) better than a ratio of two medians does."""
    methods = {
        "uncached": lambda n: model.generate(prompt, n, greedy=True),
        "cached (KVCache)": lambda n: model.generate(
            prompt, n, greedy=True, cache=KVCache(model.config.n_layer)
        ),
        "cached (use_cache=True)": lambda n: model.generate(prompt, n, greedy=True, use_cache=True),
        "raw numpy (static)": lambda n: raw_generate(weights, prompt, n),
    }
    for fn in methods.values():  # warm-up: code paths, allocator, BLAS
        fn(8)
    times: dict[str, dict[int, float]] = {m: {} for m in methods}
    paired: dict[str, dict[int, float]] = {m: {} for m in methods if m.startswith("cached")}
    tokens: dict[str, dict[int, np.ndarray]] = {m: {} for m in methods}
    for n in lengths:
        for fn in methods.values():
            fn(min(n, 32))  # a short warm-up at this prompt before the timed calls
        samples: dict[str, list[float]] = {m: [] for m in methods}
        for rep in range(max(repeats, uncached_repeats(n))):
            for name, fn in methods.items():
                if rep >= (uncached_repeats(n) if name == "uncached" else repeats):
                    continue
                start = CLOCK()
                out = fn(n)
                samples[name].append(CLOCK() - start)
                tokens[name][n] = out
        for name in methods:
            times[name][n] = statistics.median(samples[name])
        raw = samples["raw numpy (static)"]
        for name in paired:
            paired[name][n] = statistics.median(r / t for r, t in zip(raw, samples[name]))
        print(
            f"  {n:>5} new tokens: "
            + ", ".join(f"{m} {times[m][n]:.3f} s" for m in methods),
            flush=True,
        )
    return times, tokens, paired


def logit_agreement(model, prompt, n) -> float:
    """Max |logit difference| between the cached path and a full forward on the same ids."""
    ids = model.generate(prompt, n, greedy=True)[None, :-1]  # (1, T + n - 1)
    with no_grad():
        full = model(ids).data  # (1, T + n - 1, vocab)
        cache = KVCache(model.config.n_layer)
        parts = [model(ids[:, :PROMPT_LEN], cache=cache).data]
        for t in range(PROMPT_LEN, ids.shape[1]):
            parts.append(model(ids[:, t : t + 1], cache=cache).data)
    return float(np.abs(np.concatenate(parts, axis=1) - full).max())


def measure_memory(model, prompt, lengths_window, n_static) -> dict:
    """Peaks (tracemalloc) of static-cache generation (model built inside) and of the sliding
    window and the growing cache at two lengths."""
    c = model.config
    with MemoryProfiler() as prof:
        m = TinyGPT(c, seed=0)
        cache = StaticKVCache.for_model(m, 1, c.block_size)
        m.generate(prompt, n_static, greedy=True, cache=cache)
    weights = sum(p.data.nbytes for p in m.parameters())
    kv = kv_cache_bytes(c.n_layer, 1, c.n_head, c.block_size, c.head_dim)
    out = {
        "static_peak_bytes": prof.peak_bytes,
        "weights_bytes": weights,
        "kv_model_bytes": kv,
        "static_peak_over_model": prof.peak_bytes / (weights + kv),
    }
    window = 64
    model.generate(prompt, 16, greedy=True, cache=SlidingWindowKVCache(c.n_layer, window))
    for n in lengths_window:
        with MemoryProfiler() as pw:
            model.generate(prompt, n, greedy=True, cache=SlidingWindowKVCache(c.n_layer, window))
        with MemoryProfiler() as pg:
            model.generate(prompt, n, greedy=True, cache=KVCache(c.n_layer))
        out[f"window{window}_peak_bytes_{n}"] = pw.peak_bytes
        out[f"growing_peak_bytes_{n}"] = pg.peak_bytes
    short, long = lengths_window
    out["window_peak_growth"] = out[f"window{window}_peak_bytes_{long}"] / out[
        f"window{window}_peak_bytes_{short}"
    ]
    out["growing_peak_growth"] = out[f"growing_peak_bytes_{long}"] / out[
        f"growing_peak_bytes_{short}"
    ]
    return out


def main() -> int:
    args = H.parse_args("KV cache: cached vs uncached generation, raw-numpy floor, memory")
    lengths = H.pick(args, [16, 32, 64], [64, 128, 256, 512, 1024])
    model = TinyGPT(CONFIG, seed=0)
    model.eval()
    weights = raw_weights(model)
    prompt = np.random.default_rng(0).integers(0, CONFIG.vocab_size, size=PROMPT_LEN)
    print(f"TinyGPT {CONFIG}, {model.num_parameters():,} parameters; prompt {PROMPT_LEN} tokens")

    times, tokens, paired = time_generation(
        model,
        weights,
        prompt,
        lengths,
        repeats=H.pick(args, 3, 9),
        # uncached 1024 takes over a minute per run (O(N^2)): 3 runs up to 256, 2 at 512, 1 above
        uncached_repeats=lambda n: H.pick(args, 2, 3 if n <= 256 else 2 if n <= 512 else 1),
    )
    rows, results = [], {"lengths": lengths, "by_length": {}}
    base = "uncached"
    for n in lengths:
        tps = {m: n / times[m][n] for m in times}
        same = {m: bool(np.array_equal(tokens[m][n], tokens[base][n])) for m in tokens}
        r = {
            "tokens_per_s": tps,
            "speedup_kvcache": times[base][n] / times["cached (KVCache)"][n],
            "speedup_static": times[base][n] / times["cached (use_cache=True)"][n],
            # tokens/s over raw numpy's: the median of the per-round paired ratios
            "kvcache_over_raw": paired["cached (KVCache)"][n],
            "static_over_raw": paired["cached (use_cache=True)"][n],
            "same_tokens_as_uncached": same,
        }
        results["by_length"][n] = r
        rows.append(
            [
                n,
                tps[base],
                tps["cached (KVCache)"],
                tps["cached (use_cache=True)"],
                tps["raw numpy (static)"],
                r["speedup_kvcache"],
                r["speedup_static"],
                r["kvcache_over_raw"],
                r["static_over_raw"],
                "yes" if all(same.values()) else "NO",
            ]
        )
    H.print_table(
        [
            "new tokens",
            "uncached tok/s",
            "KVCache tok/s",
            "use_cache=True tok/s",
            "raw numpy tok/s",
            "speed-up (KVCache)",
            "speed-up (use_cache=True)",
            "KVCache / raw",
            "use_cache=True / raw",
            "same tokens",
        ],
        rows,
        title="Greedy generation after a 16-token prompt (CPU-time medians; tokens/s of new "
        "tokens; X / raw: median of per-round paired ratios)",
    )
    diff = logit_agreement(model, prompt, lengths[-1])
    results["max_logit_diff_cached_vs_full"] = diff
    print(f"\nmax |logit| difference, cached steps vs one full forward ({lengths[-1]} tokens): "
          f"{diff:.2e}")  # fmt: skip

    mem = measure_memory(
        model, prompt, H.pick(args, (96, 192), (128, 1024)), H.pick(args, 16, 256)
    )
    results["memory"] = mem
    short, long = H.pick(args, (96, 192), (128, 1024))
    H.print_table(
        ["measurement", "bytes / ratio"],
        [
            ["static: peak (model built inside)", mem["static_peak_bytes"]],
            ["weights + kv_cache_bytes(block_size)", mem["weights_bytes"] + mem["kv_model_bytes"]],
            ["peak / model", mem["static_peak_over_model"]],
            [f"window 64: peak at {short} new tokens", mem[f"window64_peak_bytes_{short}"]],
            [f"window 64: peak at {long} new tokens", mem[f"window64_peak_bytes_{long}"]],
            [f"growing: peak at {short} new tokens", mem[f"growing_peak_bytes_{short}"]],
            [f"growing: peak at {long} new tokens", mem[f"growing_peak_bytes_{long}"]],
        ],
        title="Memory (tracemalloc, separate runs from the timing)",
    )

    at = {n: results["by_length"][n] for n in lengths}
    ratios_kv = [at[n]["kvcache_over_raw"] for n in lengths]
    ratios_static = [at[n]["static_over_raw"] for n in lengths]
    n512, n1024 = H.pick(args, (lengths[-2], lengths[-1]), (512, 1024))
    note = "--quick: small lengths" if args.quick else ""
    print(
        f"growing KVCache (a copy of the cache per step) / raw numpy, median over lengths: "
        f"{statistics.median(ratios_kv):.3f} (reported; the targets are on use_cache=True)"
    )
    targets = [
        H.Target(
            f"speed-up, use_cache=True vs uncached, {n512} new tokens",
            at[n512]["speedup_static"], 30.0, unit="x", note=note,
        ),
        H.Target(
            f"speed-up, use_cache=True vs uncached, {n1024} new tokens",
            at[n1024]["speedup_static"], 50.0, unit="x", note=note,
        ),
        H.Target(
            "cached tok/s (use_cache=True) / raw numpy, the worst length "
            f"({lengths[int(np.argmin(ratios_static))]} new tokens)",
            min(ratios_static), 0.9, note=note,
        ),
        H.Target(
            "max |logit| difference cached vs full forward",
            diff, 1e-4, higher_is_better=False,
        ),
        H.Target(
            "static-cache peak / (weights + KV model)",
            mem["static_peak_over_model"], 1.10, higher_is_better=False,
        ),
        H.Target(
            f"sliding-window peak growth, {short} -> {long} new tokens",
            mem["window_peak_growth"], 1.10, higher_is_better=False,
        ),
    ]  # fmt: skip
    return H.finish(args, "memory", results, targets)


if __name__ == "__main__":
    sys.exit(main())
