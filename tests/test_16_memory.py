"""Module 16 (memory): KV caches reproduce the uncached model exactly (tokens and logits) for
random configs and every strategy; the core plumbing (forward/generate with a cache) behaves;
bad input fails clearly; memory matches the analytic model and stays flat for the sliding
window; the bench runs."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tracemalloc
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tinytorch.core.attention import MultiHeadAttention, scaled_dot_product_attention
from tinytorch.core.tensor import Tensor, default_dtype, no_grad
from tinytorch.core.transformer import GPTConfig, TinyGPT
from tinytorch.memory import (
    DynamicKVCache,
    KVCache,
    MemoryProfiler,
    SlidingWindowKVCache,
    StaticKVCache,
    cached_attention,
    generate_cached,
    incremental_forward,
    kv_cache_bytes,
    positions_processed,
)

ROOT = Path(__file__).resolve().parents[1]
STRATEGIES = ["dynamic", "static", "sliding"]


def make_cache(kind: str, model: TinyGPT, batch: int, length: int):
    """A cache of `kind` that can hold `length` positions (the window covers all of them)."""
    if kind == "dynamic":
        return KVCache(model.config.n_layer)
    if kind == "static":
        return StaticKVCache.for_model(model, batch, length)
    return SlidingWindowKVCache(model.config.n_layer, window=length)


@st.composite
def model_and_prompt(draw, dtype=np.float64):
    n_head = draw(st.integers(1, 4))
    head_dim = draw(st.integers(1, 8))
    cfg = GPTConfig(
        vocab_size=draw(st.integers(2, 40)),
        block_size=draw(st.integers(4, 24)),
        n_layer=draw(st.integers(1, 3)),
        n_head=n_head,
        d_model=n_head * head_dim,
    )
    with default_dtype(dtype):
        model = TinyGPT(cfg, seed=draw(st.integers(0, 10_000)))
    if dtype == np.float64:  # sharper logits: an argmax tie cannot be broken by rounding
        for p in model.parameters():
            p.data *= 20.0
    batch = draw(st.integers(1, 2))
    t = draw(st.integers(1, cfg.block_size))
    n = draw(st.integers(0, cfg.block_size - t + 5))  # up to 4 steps past block_size
    seed = draw(st.integers(0, 2**31))
    prompt = np.random.default_rng(seed).integers(0, cfg.vocab_size, size=(batch, t))
    return model, prompt, n


# ------------------------------------------------------------------------------ exactness
@settings(max_examples=25, deadline=None)
@given(case=model_and_prompt(), kind=st.sampled_from(STRATEGIES))
def test_cached_greedy_generation_gives_the_uncached_tokens(case, kind):
    model, prompt, n = case
    want = model.generate(prompt, n, greedy=True)
    total = prompt.shape[1] + n
    cache = make_cache(kind, model, prompt.shape[0], total)
    got = model.generate(prompt, n, greedy=True, cache=cache)
    np.testing.assert_array_equal(got, want)
    if total - 1 <= model.config.block_size:  # the module's loop does not crop
        np.testing.assert_array_equal(generate_cached(model, prompt, n), want)
    if kind == "dynamic":
        np.testing.assert_array_equal(model.generate(prompt, n, greedy=True, use_cache=True), want)
    # past block_size every step resets the cache and prefills the cropped context
    assert cache.get_seq_length() == (min(total - 1, model.config.block_size) if n else 0)


@settings(max_examples=25, deadline=None)
@given(case=model_and_prompt(dtype=np.float32), kind=st.sampled_from(STRATEGIES), data=st.data())
def test_cached_logits_match_the_full_forward_in_float32(case, kind, data):
    """Teacher-forced: the same ids fed in random chunks through the cache give model(ids)."""
    model, prompt, _ = case
    cfg = model.config
    t = data.draw(st.integers(prompt.shape[1], cfg.block_size))
    ids = np.random.default_rng(t).integers(0, cfg.vocab_size, size=(prompt.shape[0], t))
    with no_grad():
        full = model(ids).data  # (B, T, vocab)
        cache = make_cache(kind, model, ids.shape[0], t)
        pieces, pos = [], 0
        while pos < t:
            step = data.draw(st.integers(1, t - pos))
            pieces.append(model(ids[:, pos : pos + step], cache=cache).data)
            pos += step
    np.testing.assert_allclose(np.concatenate(pieces, axis=1), full, rtol=0, atol=1e-4)


def test_library_and_module_incremental_paths_agree():
    model = TinyGPT(GPTConfig(vocab_size=17, block_size=12, n_layer=2, n_head=2, d_model=8), 1)
    ids = np.random.default_rng(0).integers(0, 17, size=(2, 12))
    with no_grad():
        a = [model(ids[:, :5], cache=(ca := KVCache(2))).data]
        b = [incremental_forward(model, ids[:, :5], cb := KVCache(2)).data]
        for t in range(5, 12):
            a.append(model(ids[:, t : t + 1], cache=ca).data)
            b.append(incremental_forward(model, ids[:, t : t + 1], cb).data)
    np.testing.assert_allclose(np.concatenate(a, 1), np.concatenate(b, 1), rtol=0, atol=1e-6)
    for x, y in zip(ca.keys, cb.keys):
        np.testing.assert_array_equal(x, y)


def test_cached_attention_and_mha_forward_with_cache_equal_full_attention():
    rng = np.random.default_rng(3)
    with default_dtype(np.float64):
        mha = MultiHeadAttention(12, 3)
    x = Tensor(rng.standard_normal((2, 7, 12)), dtype=np.float64)
    full = mha(x).data
    c1, c2 = KVCache(1), StaticKVCache(1, 2, 3, 7, 4, np.float64)
    parts1 = [cached_attention(mha, x[:, :3], c1, 0).data]
    parts2 = [mha(x[:, :3], cache=c2, layer_idx=0).data]
    for t in range(3, 7):
        parts1.append(cached_attention(mha, x[:, t : t + 1], c1, 0).data)
        parts2.append(mha(x[:, t : t + 1], cache=c2, layer_idx=0).data)
    np.testing.assert_allclose(np.concatenate(parts1, 1), full, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(np.concatenate(parts2, 1), full, rtol=1e-12, atol=1e-12)


def test_a_cache_may_return_numpy_arrays():
    """The core plumbing is duck-typed: a minimal numpy-only cache works too."""

    class ListCache:
        def __init__(self):
            self.k, self.v = {}, {}

        def get_seq_length(self, layer_idx=0):
            return 0 if layer_idx not in self.k else self.k[layer_idx].shape[2]

        def update(self, key, value, layer_idx):
            k, v = key.data, value.data
            if layer_idx in self.k:
                k = np.concatenate([self.k[layer_idx], k], axis=2)
                v = np.concatenate([self.v[layer_idx], v], axis=2)
            self.k[layer_idx], self.v[layer_idx] = k, v
            return k, v

    with default_dtype(np.float64):
        model = TinyGPT(GPTConfig(vocab_size=9, block_size=10, n_layer=2, n_head=1, d_model=4), 2)
    for p in model.parameters():
        p.data *= 20.0
    prompt = np.array([[1, 2, 3]])
    np.testing.assert_array_equal(
        model.generate(prompt, 6, greedy=True, cache=ListCache()),
        model.generate(prompt, 6, greedy=True),
    )


def test_sliding_window_equals_full_while_short_and_differs_when_long():
    with default_dtype(np.float64):
        model = TinyGPT(GPTConfig(vocab_size=13, block_size=32, n_layer=2, n_head=2, d_model=8), 4)
    for p in model.parameters():
        p.data *= 20.0
    ids = np.random.default_rng(5).integers(0, 13, size=(1, 32))
    with no_grad():
        full = model(ids).data
        cache = SlidingWindowKVCache(2, window=8)
        steps = [model(ids[:, t : t + 1], cache=cache).data for t in range(32)]
    inc = np.concatenate(steps, axis=1)
    # position p sees min(p, 8) stored positions plus itself: exact while p <= 8
    np.testing.assert_allclose(inc[:, :9], full[:, :9], rtol=1e-10, atol=1e-10)
    assert not np.allclose(inc[:, -1], full[:, -1], atol=1e-6)
    assert cache.get_seq_length() == 32
    assert all(k.shape[2] == 8 for k in cache.keys)
    assert cache.memory_bytes() == kv_cache_bytes(2, 1, 2, 8, 4, np.float64)


# ------------------------------------------------------------------------------ fused attention
@settings(max_examples=30, deadline=None)
@given(
    b=st.integers(1, 2),
    h=st.integers(1, 3),
    tq=st.integers(1, 5),
    extra=st.integers(0, 4),
    d=st.integers(1, 4),
    causal=st.booleans(),
    masked=st.booleans(),
    dtype=st.sampled_from([np.float32, np.float64]),
    seed=st.integers(0, 2**16),
)
def test_fused_attention_equals_the_composed_one(b, h, tq, extra, d, causal, masked, dtype, seed):
    """Without dropout attention is one fused graph node; with a dropout callable it is composed
    from Tensor ops. Same values (bit for bit) and the same gradients."""
    rng = np.random.default_rng(seed)
    tk = tq + extra
    mask = rng.random((b, 1, tq, tk)) < 0.7 if masked else None

    arrays = [rng.standard_normal(s) for s in [(b, h, tq, d), (b, h, tk, d), (b, h, tk, 2)]]

    def run(dropout):
        q, k, v = (Tensor(a, requires_grad=True, dtype=dtype) for a in arrays)
        out = scaled_dot_product_attention(q, k, v, causal=causal, mask=mask, dropout=dropout)
        (out * out).sum().backward()
        return out.data, q.grad, k.grad, v.grad

    fused, composed = run(None), run(lambda w: w)
    np.testing.assert_array_equal(fused[0], composed[0])
    tol = 1e-5 if dtype == np.float32 else 1e-12
    for gf, gc in zip(fused[1:], composed[1:]):
        np.testing.assert_allclose(gf, gc, rtol=tol, atol=tol)


# ------------------------------------------------------------------------------ strategies
def test_static_cache_writes_in_place_and_allocates_nothing_per_step():
    cache = StaticKVCache(2, 1, 4, 300, 16)
    buffers = [id(k) for k in cache.keys]
    k = np.ones((1, 4, 1, 16), np.float32)
    cache.update(np.ones((1, 4, 10, 16), np.float32), np.ones((1, 4, 10, 16), np.float32), 0)
    with MemoryProfiler() as prof:
        for _ in range(200):
            keys, values = cache.update(k, k, 0)
    assert [id(x) for x in cache.keys] == buffers
    assert np.shares_memory(keys, cache.keys[0]) and keys.shape == (1, 4, 210, 16)
    assert prof.numpy_bytes == 0  # no array allocated per step survives ...
    assert prof.peak_bytes < k.nbytes * 4  # ... and nothing of the cache's size is allocated


def test_growing_cache_copies_the_past_every_step():
    cache = DynamicKVCache(1)
    assert DynamicKVCache is KVCache
    big = np.ones((1, 4, 1000, 16), np.float32)
    cache.update(big, big, 0)
    with MemoryProfiler() as prof:
        cache.update(big[:, :, :1], big[:, :, :1], 0)
    assert prof.peak_bytes >= 2 * big.nbytes  # a new (1, 4, 1001, 16) array for keys and values


def test_reset_makes_every_cache_reusable_for_a_new_prompt():
    with default_dtype(np.float64):
        model = TinyGPT(GPTConfig(vocab_size=11, block_size=16, n_layer=2, n_head=2, d_model=8), 0)
    for p in model.parameters():
        p.data *= 20.0
    for kind in STRATEGIES:
        cache = make_cache(kind, model, 1, 16)
        a = model.generate([[1, 2, 3]], 5, greedy=True, cache=cache)
        with pytest.raises(ValueError, match="holds 7 positions.*reset"):
            model.generate([[4, 5]], 3, greedy=True, cache=cache)
        cache.reset()
        assert cache.get_seq_length() == 0
        b = model.generate([[4, 5]], 3, greedy=True, cache=cache)
        np.testing.assert_array_equal(b, model.generate([[4, 5]], 3, greedy=True))
        cache.reset()
        np.testing.assert_array_equal(model.generate([[1, 2, 3]], 5, greedy=True, cache=cache), a)


# ------------------------------------------------------------------------------ bad input
def test_bad_layer_idx_names_the_range_and_the_value():
    cache = KVCache(4)
    k = np.zeros((1, 2, 1, 3))
    for bad in (4, -1, 1.5, True, "0"):
        with pytest.raises(ValueError, match=rf"0\.\.3 .*4 layers.*{bad!r}"):
            cache.update(k, k, bad)
    with pytest.raises(ValueError, match="0..1"):
        StaticKVCache(2, 1, 2, 4, 3).update(k, k, 2)
    with pytest.raises(ValueError, match="0..3"):
        cache.get_seq_length(9)


def test_key_value_shape_and_batch_mismatches_name_both_shapes():
    cache = KVCache(1)
    with pytest.raises(ValueError, match=r"key \(1, 2, 3, 4\) and value \(1, 2, 3, 5\)"):
        cache.update(np.zeros((1, 2, 3, 4)), np.zeros((1, 2, 3, 5)), 0)
    with pytest.raises(ValueError, match=r"\(B, H, T, D\).*\(2, 3, 4\)"):
        cache.update(np.zeros((2, 3, 4)), np.zeros((2, 3, 4)), 0)
    cache.update(np.zeros((2, 2, 3, 4)), np.zeros((2, 2, 3, 4)), 0)
    with pytest.raises(ValueError, match=r"B=2.*\(2, 2, T, 4\); got \(1, 2, 1, 4\)"):
        cache.update(np.zeros((1, 2, 1, 4)), np.zeros((1, 2, 1, 4)), 0)
    with pytest.raises(ValueError, match=r"H=2 heads of dim D=4.*got \(2, 3, 1, 4\)"):
        cache.update(np.zeros((2, 3, 1, 4)), np.zeros((2, 3, 1, 4)), 0)
    static = StaticKVCache(1, 2, 2, 8, 4)
    with pytest.raises(ValueError, match=r"B=2.*got \(3, 2, 1, 4\)"):
        static.update(np.zeros((3, 2, 1, 4)), np.zeros((3, 2, 1, 4)), 0)
    with pytest.raises(TypeError, match="float"):
        KVCache(1).update(np.zeros((1, 1, 1, 1), int), np.zeros((1, 1, 1, 1), int), 0)
    assert cache.get_seq_length() == 3  # rejected updates change nothing


def test_prompt_longer_than_the_static_capacity():
    model = TinyGPT(GPTConfig(vocab_size=11, block_size=32, n_layer=2, n_head=2, d_model=8), 0)
    cache = StaticKVCache.for_model(model, 1, max_seq_len=6)
    with pytest.raises(ValueError, match=r"full: layer 0 holds 0 of max_seq_len=6.*9 more"):
        model.generate(np.arange(9), 4, greedy=True, cache=cache)
    cache.reset()
    model.generate(np.arange(4), 3, greedy=True, cache=cache)  # 4 + 2 = 6 positions: fits
    cache.reset()
    with pytest.raises(ValueError, match="max_seq_len=6"):
        model.generate(np.arange(4), 4, greedy=True, cache=cache)  # 7 positions


def test_core_generate_and_forward_reject_bad_cache_use():
    model = TinyGPT(GPTConfig(vocab_size=11, block_size=8, n_layer=1, n_head=1, d_model=4), 0)
    with pytest.raises(TypeError, match="has no update"):
        model.generate(np.arange(3), 2, cache=object())
    cache = KVCache(1)
    with no_grad():
        model(np.arange(6)[None], cache=cache)
        with pytest.raises(ValueError, match=r"positions 6\.\.8 .*block_size=8"):
            model(np.arange(3)[None], cache=cache)
    with pytest.raises(ValueError, match="block_size=8"):
        model(np.arange(3)[None], start_pos=6)


def test_forward_start_pos_selects_the_position_embeddings():
    model = TinyGPT(GPTConfig(vocab_size=11, block_size=8, n_layer=1, n_head=1, d_model=4), 0)
    with no_grad():
        a = model(np.array([[3]]), start_pos=5).data
        cache = KVCache(1)
        model(np.arange(5)[None], cache=cache)
        b = model(np.array([[3]]), cache=cache).data  # start_pos defaults to 5
        c = model(np.array([[3]])).data  # position 0
    assert not np.allclose(a, c)
    assert b.shape == (1, 1, 11)


def test_generate_with_cache_runs_without_grad_and_restores_training_mode():
    model = TinyGPT(GPTConfig(vocab_size=11, block_size=16, n_layer=2, n_head=2, d_model=8), 0)
    model.train()
    for cache in (None, StaticKVCache.for_model(model)):
        model.generate([1, 2], 5, use_cache=True, cache=cache, do_sample=True, seed=0)
        assert model.training
        assert all(p.grad is None for p in model.parameters())
    # sampling with a cache uses the same random stream as without
    a = model.generate([1, 2], 8, do_sample=True, top_p=0.9, seed=3)
    b = model.generate([1, 2], 8, do_sample=True, top_p=0.9, seed=3, use_cache=True)
    np.testing.assert_array_equal(a, b)


def test_cached_generation_past_block_size_crops_like_the_uncached_path():
    """Cached and uncached generation past block_size: same tokens, greedy and sampled, with
    the core's StaticCache and with the module's caches; a cache without reset() is refused."""
    with default_dtype(np.float64):
        model = TinyGPT(GPTConfig(vocab_size=13, block_size=8, n_layer=2, n_head=2, d_model=8), 0)
    for p in model.parameters():
        p.data *= 20.0
    for prompt in (np.arange(5), np.arange(11) % 13, np.array([[1, 2, 3], [4, 5, 6]])):
        want = model.generate(prompt, 12)
        np.testing.assert_array_equal(model.generate(prompt, 12, use_cache=True), want)
        np.testing.assert_array_equal(model.generate(prompt, 12, cache=KVCache(2)), want)
        sampled = model.generate(prompt, 12, do_sample=True, top_k=5, seed=1)
        np.testing.assert_array_equal(
            model.generate(prompt, 12, do_sample=True, top_k=5, seed=1, use_cache=True), sampled
        )

    class NoReset:
        def __init__(self):
            self.inner = KVCache(2)

        def update(self, k, v, layer_idx):
            return self.inner.update(k, v, layer_idx)

        def get_seq_length(self, layer_idx=0):
            return self.inner.get_seq_length(layer_idx)

    model.generate(np.arange(4), 5, cache=NoReset())  # 8 positions fit: no reset needed
    with pytest.raises(TypeError, match="NoReset has no reset"):
        model.generate(np.arange(4), 6, cache=NoReset())


def test_module_caches_build_on_the_core_protocol():
    from tinytorch.core.cache import Cache

    for cache in (KVCache(1), StaticKVCache(1, 1, 1, 4, 2), SlidingWindowKVCache(1, 2)):
        assert isinstance(cache, Cache)


def test_core_does_not_import_the_module_at_import_time():
    code = (
        "import sys, tinytorch.core.transformer, tinytorch.core.attention;"
        "from tinytorch.core.transformer import GPTConfig, TinyGPT;"
        "m = TinyGPT(GPTConfig(vocab_size=5, block_size=4, n_layer=1, n_head=1, d_model=2), 0);"
        "m.generate([1, 2], 5, use_cache=True);"
        "print('tinytorch.memory' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_cache_constructor_validation():
    for bad in (0, -1, 2.0, True):
        with pytest.raises(ValueError, match="n_layers"):
            KVCache(bad)
    with pytest.raises(ValueError, match="window"):
        SlidingWindowKVCache(2, 0)
    with pytest.raises(ValueError, match="max_seq_len"):
        StaticKVCache(1, 1, 1, 0, 1)
    with pytest.raises(TypeError, match="floats"):
        StaticKVCache(1, 1, 1, 4, 1, dtype=np.int32)


# ------------------------------------------------------------------------------ counting
def test_positions_processed_and_kv_cache_bytes():
    assert positions_processed(16, 512, False) == 16 * 512 + 512 * 511 // 2
    assert positions_processed(16, 512, True) == 16 + 511
    assert positions_processed(3, 0, False) == positions_processed(3, 0, True) == 0
    with pytest.raises(ValueError):
        positions_processed(0, 2, True)
    assert kv_cache_bytes(4, 1, 4, 1040, 32) == 2 * 4 * 4 * 1040 * 32 * 4
    assert kv_cache_bytes(32, 1, 32, 4096, 128, "float16") == 2 * 2**30
    for kind in STRATEGIES:  # every cache's memory_bytes matches the formula when full
        model = TinyGPT(GPTConfig(vocab_size=7, block_size=10, n_layer=3, n_head=2, d_model=6), 0)
        cache = make_cache(kind, model, 2, 10)
        model.generate(np.ones((2, 4), dtype=np.int64), 7, cache=cache, do_sample=True, seed=0)
        assert cache.memory_bytes() == kv_cache_bytes(3, 2, 2, 10, 3)


# ------------------------------------------------------------------------------ memory
def test_memory_profiler_counts_numpy_allocations():
    with MemoryProfiler() as prof:
        keep = np.ones((1000, 1000), np.float32)  # 4 MB alive at the end
        tmp = np.ones((1000, 2000), np.float32)  # 8 MB, freed inside
        del tmp
    assert not tracemalloc.is_tracing()
    assert 4_000_000 <= prof.numpy_bytes < 4_010_000 and prof.numpy_blocks >= 1
    assert 12_000_000 <= prof.peak_bytes < 12_200_000
    assert 4_000_000 <= prof.current_bytes < 4_200_000
    del keep
    with pytest.raises(RuntimeError, match="already tracing"):
        with MemoryProfiler(), MemoryProfiler():
            pass
    assert not tracemalloc.is_tracing()


@pytest.mark.parametrize("batch,n_new", [(1, 64), (2, 16)])
def test_static_cache_peak_is_within_10_percent_of_weights_plus_the_kv_model(batch, n_new):
    cfg = GPTConfig(vocab_size=64, block_size=512, n_layer=4, n_head=4, d_model=128)
    with MemoryProfiler() as prof:
        model = TinyGPT(cfg, seed=0)
        cache = StaticKVCache.for_model(model, batch)
        model.generate(np.ones((batch, 16), dtype=np.int64), n_new, greedy=True, cache=cache)
    weights = sum(p.data.nbytes for p in model.parameters())
    kv = kv_cache_bytes(cfg.n_layer, batch, cfg.n_head, cfg.block_size, cfg.head_dim)
    assert cache.memory_bytes() == kv
    assert 1.0 <= prof.peak_bytes / (weights + kv) <= 1.10


def test_sliding_window_memory_is_flat_while_the_growing_cache_grows():
    cfg = GPTConfig(vocab_size=32, block_size=600, n_layer=2, n_head=4, d_model=64)
    model = TinyGPT(cfg, seed=0)
    prompt = np.arange(8)
    model.generate(prompt, 16, greedy=True, cache=SlidingWindowKVCache(2, 64))  # warm-up
    peaks = {}
    for n in (100, 500):
        with MemoryProfiler() as pw:
            model.generate(prompt, n, greedy=True, cache=SlidingWindowKVCache(2, 64))
        with MemoryProfiler() as pg:
            model.generate(prompt, n, greedy=True, cache=KVCache(2))
        peaks[n] = (pw.peak_bytes, pg.peak_bytes)
    assert peaks[500][0] <= 1.10 * peaks[100][0]  # flat
    grown = kv_cache_bytes(2, 1, 4, 400, 16)  # 400 more positions in the growing cache
    assert peaks[500][1] - peaks[100][1] >= grown


# ------------------------------------------------------------------------------ bench
@pytest.mark.slow
def test_bench_quick_runs_and_writes_valid_json(tmp_path):
    out = tmp_path / "memory.json"
    env = {**os.environ, "OPENBLAS_NUM_THREADS": "1"}
    proc = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "memory.py"), "--quick", "--json", str(out)],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "PASS" in proc.stdout or "FAIL" in proc.stdout
    data = json.loads(out.read_text())
    assert data["bench"] == "memory" and data["quick"] is True
    by_length = data["results"]["by_length"]
    assert set(by_length) == {"16", "32", "64"}
    for row in by_length.values():
        assert all(row["same_tokens_as_uncached"].values())
        assert row["tokens_per_s"]["uncached"] > 0
    assert data["results"]["max_logit_diff_cached_vs_full"] < 1e-4
    assert {t["name"] for t in data["targets"]} >= {
        "max |logit| difference cached vs full forward",
        "static-cache peak / (weights + KV model)",
    }


# ------------------------------------------------------------------------------ grade cells
def _module_cells():
    from wrong_versions.runner import module_cells

    return module_cells("16_memory")


def test_every_grade_cell_is_a_probe_with_a_judge():
    """Each grade cell's hidden part is the probe of its own id, and judge.py judges exactly
    the module's grade cells (points come only from the judge)."""
    from wrong_versions.runner import split_grade_cell

    from tito.judging import load_source

    path = ROOT / "modules" / "16_memory" / "judge.py"
    judges = load_source(path.read_text(encoding="utf-8"), str(path))
    grade = [c for c in _module_cells() if c.is_grade]
    assert {c.grade_id for c in grade} == set(judges.checks)
    for cell in grade:
        _, hidden = split_grade_cell(cell)
        assert f'_probe("16_memory", "{cell.grade_id}")' in hidden, cell.grade_id
        assert "assert " not in hidden, f"{cell.grade_id}: the probe decides nothing"


@pytest.mark.slow
def test_an_unsolved_exercise_fails_only_its_own_checks():
    """With one exercise left as the student gets it (a stub), every other exercise's checks
    still pass: no check goes through another exercise's result."""
    import dataclasses
    import re

    from wrong_versions.runner import run

    cells = _module_cells()
    owners: dict[str, str] = {}
    exercise = None
    for c in cells:  # each grade cell belongs to the exercise written before it
        if c.is_solution:
            exercise = c.grade_id
        elif c.is_grade:
            owners[c.grade_id] = exercise
    for k, c in enumerate(cells):
        if not c.is_solution:
            continue
        stub = re.sub(r"( *)### BEGIN SOLUTION.*?### END SOLUTION",
                      lambda m: m.group(1) + "raise NotImplementedError()", c.body, flags=re.S)
        plain = dataclasses.replace(c, source=stub, metadata={}, regions=[],
                                    directive_lines=set(), export=False)
        # the whole notebook runs (wrong=None), with this exercise as the student gets it
        out = run("16_memory", None, [*cells[:k], plain, *cells[k + 1 :]])
        failed = {g for g in {*out.visible, *out.hidden} if g in owners}
        assert failed == {g for g, ex in owners.items() if ex == c.grade_id}, (
            f"with {c.grade_id} unsolved, these checks fail: {sorted(failed)}"
        )
