"""Attention and TinyGPT: gradient checks, the causal mask, a numpy reference, generation and a
short training run on the bundled corpus."""

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from tinytorch.core import backends
from tinytorch.core.attention import (
    MultiHeadAttention,
    causal_mask,
    scaled_dot_product_attention,
)
from tinytorch.core.gradcheck import gradcheck
from tinytorch.core.losses import cross_entropy
from tinytorch.core.tensor import Tensor, default_dtype, is_grad_enabled, no_grad
from tinytorch.core.transformer import GPTConfig, TinyGPT, TransformerBlock

FAST = settings(max_examples=8, deadline=None)
TINY = dict(vocab_size=11, block_size=6, n_layer=2, n_head=2, d_model=8)


def rand(rng, shape):
    with default_dtype(np.float64):
        return Tensor(rng.standard_normal(shape), requires_grad=True)


def ref_attention(q, k, v, causal, mask=None):
    """Loop-per-query numpy reference: softmax over the allowed keys only."""
    b_, h_, tq, d = q.shape
    tk = k.shape[2]
    mask = None if mask is None else np.broadcast_to(mask, (b_, h_, tq, tk))
    out = np.zeros((b_, h_, tq, v.shape[-1]))
    for b in range(b_):
        for h in range(h_):
            for i in range(tq):
                allowed = np.ones(tk, dtype=bool)
                if causal:
                    allowed &= np.arange(tk) <= i + (tk - tq)
                if mask is not None:
                    allowed &= mask[b, h, i]
                if not allowed.any():
                    continue  # no key to attend to: zero output
                s = k[b, h][allowed] @ q[b, h, i] / math.sqrt(d)
                w = np.exp(s - s.max())
                out[b, h, i] = (w / w.sum()) @ v[b, h][allowed]
    return out


@st.composite
def attn_shapes(draw):
    b, h = draw(st.integers(1, 2)), draw(st.integers(1, 2))
    tq, extra = draw(st.integers(1, 4)), draw(st.integers(0, 3))
    d, dv = draw(st.integers(1, 4)), draw(st.integers(1, 3))
    return (b, h, tq, d), (b, h, tq + extra, d), (b, h, tq + extra, dv)


class CountingBackend(backends.Backend):
    """Records every matmul that reaches the routing point."""

    name = "counting_test"

    def __init__(self):
        self.calls = []

    def matmul(self, a, b):
        self.calls.append((a.shape, b.shape))
        return np.matmul(a, b)


@pytest.fixture
def counting():
    backend = backends.register_backend(CountingBackend())
    try:
        with backends.use_backend(backend.name):
            yield backend
    finally:
        backends.unregister_backend(backend.name)


def tiny_model(seed=0, **overrides):
    return TinyGPT(GPTConfig(**{**TINY, **overrides}), seed=seed)


# ----------------------------------------------------------------------------- attention


def test_causal_mask_aligns_last_queries_with_last_keys():
    np.testing.assert_array_equal(causal_mask(3, 3), np.tril(np.ones((3, 3), dtype=bool)))
    m = causal_mask(2, 5)  # queries are positions 3 and 4 of 5
    np.testing.assert_array_equal(m, [[1, 1, 1, 1, 0], [1, 1, 1, 1, 1]])
    assert not m.flags.writeable  # the cached array cannot be corrupted by a caller


@FAST
@given(shapes=attn_shapes(), causal=st.booleans(), seed=st.integers(0, 2**16))
def test_sdpa_gradcheck(shapes, causal, seed):
    rng = np.random.default_rng(seed)
    q, k, v = (rand(rng, s) for s in shapes)
    fn = lambda q, k, v: scaled_dot_product_attention(q, k, v, causal=causal)
    assert gradcheck(fn, [q, k, v]) <= 1e-5


@FAST
@given(shapes=attn_shapes(), causal=st.booleans(), data=st.data())
def test_sdpa_matches_numpy_reference(shapes, causal, data):
    rng = np.random.default_rng(0)
    q, k, v = (rand(rng, s) for s in shapes)
    b, h, tq, _ = shapes[0]
    tk = shapes[1][2]
    mask_shape = data.draw(st.sampled_from([None, (tq, tk), (b, 1, tq, tk), (b, h, tq, tk)]))
    mask = None if mask_shape is None else data.draw(hnp.arrays(bool, mask_shape))
    out = scaled_dot_product_attention(q, k, v, causal=causal, mask=mask)
    expected = ref_attention(q.data, k.data, v.data, causal, mask)
    assert out.shape == expected.shape
    np.testing.assert_allclose(out.data, expected, rtol=1e-10, atol=1e-12)
    assert np.isfinite(out.data).all()


def test_sdpa_user_mask_gradcheck_and_fully_masked_row():
    rng = np.random.default_rng(3)
    q, k, v = rand(rng, (1, 2, 3, 2)), rand(rng, (1, 2, 4, 2)), rand(rng, (1, 2, 4, 2))
    mask = np.array([[1, 0, 1, 1], [0, 0, 0, 0], [1, 1, 0, 1]], dtype=bool)  # row 1: no key
    out = scaled_dot_product_attention(q, k, v, causal=False, mask=mask)
    np.testing.assert_array_equal(out.data[:, :, 1], 0.0)  # zero output, not NaN
    fn = lambda q, k, v: scaled_dot_product_attention(q, k, v, causal=True, mask=mask)
    assert gradcheck(fn, [q, k, v]) <= 1e-5
    # with causal (Tk - Tq = 1) and the mask, query 0 sees key 0, query 1 nothing, query 2
    # keys 0, 1, 3: key 2 is attended by no query, so it gets exactly zero gradient
    assert np.all(k.grad[:, :, 2] == 0) and np.all(v.grad[:, :, 2] == 0)


def test_sdpa_large_scores_are_stable():
    q = Tensor(np.full((1, 1, 3, 2), 1e4))
    k = Tensor(np.full((1, 1, 3, 2), 1e4))
    v = Tensor(np.arange(6.0).reshape(1, 1, 3, 2))
    out = scaled_dot_product_attention(q, k, v)
    assert np.isfinite(out.data).all()
    np.testing.assert_allclose(out.data[0, 0, 0], v.data[0, 0, 0])  # only key 0 visible


def test_sdpa_routes_both_products_through_the_backend(counting):
    rng = np.random.default_rng(0)
    q, k, v = rand(rng, (2, 3, 4, 5)), rand(rng, (2, 3, 6, 5)), rand(rng, (2, 3, 6, 7))
    out = scaled_dot_product_attention(q, k, v)
    assert counting.calls == [((2, 3, 4, 5), (2, 3, 5, 6)), ((2, 3, 4, 6), (2, 3, 6, 7))]
    out.sum().backward()
    assert len(counting.calls) == 2 + 4  # each product's backward is two matmuls


@pytest.mark.parametrize(
    "qs,ks,vs,causal",
    [
        ((2, 3, 4), (2, 3, 4), (2, 3, 4), True),  # rank 3
        ((1, 2, 4, 8), (1, 2, 4, 6), (1, 2, 4, 8), True),  # head dim differs
        ((1, 2, 4, 8), (2, 2, 4, 8), (2, 2, 4, 8), True),  # batch differs
        ((1, 2, 4, 8), (1, 3, 4, 8), (1, 3, 4, 8), False),  # heads differ
        ((1, 2, 4, 8), (1, 2, 5, 8), (1, 2, 4, 8), False),  # Tk of k and v differ
        ((1, 2, 4, 8), (1, 2, 3, 8), (1, 2, 3, 8), True),  # causal with Tk < Tq
    ],
)
def test_sdpa_bad_shapes_name_all_shapes(qs, ks, vs, causal):
    q, k, v = Tensor(np.zeros(qs)), Tensor(np.zeros(ks)), Tensor(np.zeros(vs))
    with pytest.raises(ValueError) as exc:
        scaled_dot_product_attention(q, k, v, causal=causal)
    msg = str(exc.value)
    for s in (qs, ks, vs):
        assert str(s) in msg


def test_sdpa_bad_mask():
    q = Tensor(np.zeros((1, 1, 3, 2)))
    with pytest.raises(ValueError, match=r"\(2, 2\).*\(1, 1, 3, 3\)"):
        scaled_dot_product_attention(q, q, q, mask=np.ones((2, 2), dtype=bool))
    with pytest.raises(TypeError, match="boolean"):
        scaled_dot_product_attention(q, q, q, mask=np.ones((3, 3)) * 0.5)


@FAST
@given(
    b=st.integers(1, 2),
    t=st.integers(1, 4),
    h=st.integers(1, 2),
    d=st.integers(1, 3),
    seed=st.integers(0, 2**16),
)
def test_multihead_attention_gradcheck(b, t, h, d, seed):
    rng = np.random.default_rng(seed)
    with default_dtype(np.float64):
        mha = MultiHeadAttention(h * d, h)
    x = rand(rng, (b, t, h * d))
    params = mha.parameters()
    assert all(p.dtype == np.float64 for p in params)
    assert mha(x).shape == (b, t, h * d)
    assert gradcheck(lambda x, *ps: mha(x), [x, *params]) <= 1e-5


def test_multihead_attention_equals_per_head_reference():
    rng = np.random.default_rng(1)
    with default_dtype(np.float64):
        mha = MultiHeadAttention(6, 3)
    x = rng.standard_normal((2, 5, 6))
    w, bias = mha.qkv.weight.data, mha.qkv.bias.data
    qkv = x @ w + bias  # (B, T, 3C)
    heads = []
    for i in range(3):  # head i owns columns [2i, 2i+2) of each of q, k, v
        q, k, v = (qkv[..., j * 6 + 2 * i : j * 6 + 2 * i + 2][:, None] for j in range(3))
        heads.append(ref_attention(q, k, v, causal=True)[:, 0])
    expected = np.concatenate(heads, axis=-1) @ mha.proj.weight.data + mha.proj.bias.data
    with default_dtype(np.float64):  # a raw float array input takes the default dtype
        out = mha(x).data
    np.testing.assert_allclose(out, expected, rtol=1e-10, atol=1e-12)


def test_multihead_attention_split_steps_match_forward():
    """project_qkv + attend on new positions against the full k, v (the KV-cache pattern)."""
    rng = np.random.default_rng(2)
    with default_dtype(np.float64):
        mha = MultiHeadAttention(8, 2)
    x = Tensor(rng.standard_normal((1, 5, 8)), dtype=np.float64)
    full = mha(x).data
    _, k, v = mha.project_qkv(x)  # keys and values of all 5 positions
    q_new, _, _ = mha.project_qkv(x[:, 3:])  # queries of the last 2 positions only
    np.testing.assert_allclose(mha.attend(q_new, k, v).data, full[:, 3:], atol=1e-12)


def test_multihead_attention_bad_config_and_input():
    with pytest.raises(ValueError, match="d_model=10.*n_heads=4"):
        MultiHeadAttention(10, 4)
    with pytest.raises(ValueError, match=r"\(B, T, 8\).*\(2, 3, 6\)"):
        MultiHeadAttention(8, 2)(Tensor(np.zeros((2, 3, 6))))


@FAST
@given(b=st.integers(1, 2), t=st.integers(1, 3), h=st.integers(1, 2), seed=st.integers(0, 99))
def test_transformer_block_gradcheck(b, t, h, seed):
    rng = np.random.default_rng(seed)
    c = 2 * h
    with default_dtype(np.float64):
        block = TransformerBlock(c, h, mlp_ratio=2)
    for p in block.parameters():  # move LayerNorm off its trivial 1 / 0 initialisation
        p.data[...] = rng.standard_normal(p.shape) * 0.5 + (1.0 if p.ndim == 1 else 0.0)
    x = rand(rng, (b, t, c))
    params = block.parameters()
    assert gradcheck(lambda x, *ps: block(x), [x, *params]) <= 1e-5


def test_tinygpt_loss_gradcheck():
    with default_dtype(np.float64):
        model = TinyGPT(GPTConfig(vocab_size=5, block_size=4, n_layer=1, n_head=2, d_model=4), 0)
    rng = np.random.default_rng(0)
    for p in model.parameters():
        p.data[...] = rng.standard_normal(p.shape) * 0.3 + (1.0 if p.ndim == 1 else 0.0)
    idx = rng.integers(0, 5, (2, 4))
    targets = rng.integers(0, 5, (2, 4))
    params = model.parameters()
    assert gradcheck(lambda *ps: cross_entropy(model(idx), targets), params) <= 1e-5


# ----------------------------------------------------------------------------- TinyGPT


def test_config_validation_names_the_bad_value():
    with pytest.raises(ValueError, match="vocab_size.*0"):
        GPTConfig(vocab_size=0, block_size=4, n_layer=1, n_head=1, d_model=4)
    with pytest.raises(ValueError, match="d_model=6.*n_head=4"):
        GPTConfig(vocab_size=5, block_size=4, n_layer=1, n_head=4, d_model=6)
    with pytest.raises(ValueError, match="dropout.*1.5"):
        GPTConfig(vocab_size=5, block_size=4, n_layer=1, n_head=1, d_model=4, dropout=1.5)
    with pytest.raises(ValueError, match="block_size.*2.5"):
        GPTConfig(vocab_size=5, block_size=2.5, n_layer=1, n_head=1, d_model=4)


def test_tinygpt_forward_shapes_and_bad_input():
    model = tiny_model()
    idx = np.arange(12).reshape(2, 6) % 11
    assert model(idx).shape == (2, 6, 11)
    np.testing.assert_array_equal(model(Tensor(idx)).data, model(idx.tolist()).data)
    with pytest.raises(ValueError, match="T=7.*block_size=6"):
        model(np.zeros((1, 7), dtype=np.int64))
    with pytest.raises(TypeError, match="integer"):
        model(np.zeros((1, 3)))
    with pytest.raises(ValueError, match=r"\(B, T\).*\(3,\)"):
        model(np.zeros(3, dtype=np.int64))
    with pytest.raises(ValueError, match="11.*vocab_size 11"):
        model(np.array([[1, 11]]))


def test_tinygpt_routes_every_matmul_through_the_backend(counting):
    model = tiny_model()
    model(np.zeros((2, 5), dtype=np.int64))
    # per block: qkv, scores, weights @ v, attn proj, mlp fc, mlp proj; then the LM head
    assert len(counting.calls) == 6 * TINY["n_layer"] + 1


def test_inference_resolves_the_backend_once_and_still_routes_every_product(counting):
    """The inference forward looks the active backend up once (`resolved_matmul`), yet under a
    non-reference backend every product of a cached generation step still reaches it."""
    assert backends.resolved_matmul() is backends.matmul  # the counting backend: checked route
    with backends.use_backend("numpy"):
        assert backends.resolved_matmul() is np.matmul  # the reference: numpy's ufunc directly
    model = tiny_model()
    prompt, n = np.array([[1, 2, 3]]), 3
    out = model.generate(prompt, n, use_cache=True)
    with backends.use_backend("numpy"):
        np.testing.assert_array_equal(out, model.generate(prompt, n, use_cache=True))
    # the prefill and each of the n - 1 later steps: 6 products per block, then the LM head
    assert len(counting.calls) == n * (6 * TINY["n_layer"] + 1)
    assert counting.calls[-1] == ((8,), (8, 11))  # one new position (a vector): its logits


@FAST
@given(
    rows=st.integers(1, 4),
    dtype=st.sampled_from([np.float32, np.float64]),
    seed=st.integers(0, 99),
)
def test_one_position_as_a_vector_gives_its_rows_values(rows, dtype, seed):
    """A cached step runs its one position as a vector (C,) (scalar LayerNorm statistics, no
    broadcasting): the kernels give it exactly the values they give that position as a row."""
    from tinytorch.core.nn import layer_norm_kernel, linear_kernel

    rng = np.random.default_rng(seed)
    a = (rng.standard_normal((rows, 16)) * 3 + 1).astype(dtype)
    w, b = rng.standard_normal(16).astype(dtype), rng.standard_normal(16).astype(dtype)
    for i in range(rows):
        out, xhat, inv = layer_norm_kernel(a[i], w, b, 1e-5)
        row = layer_norm_kernel(a[i : i + 1], w, b, 1e-5)
        np.testing.assert_array_equal(out, row[0][0])
        np.testing.assert_array_equal(xhat, row[1][0])
        assert np.ndim(inv) == 0 and inv == row[2][0, 0]
    weight = rng.standard_normal((16, 5)).astype(dtype)
    vec, row = linear_kernel(a[0], weight, b[:5]), linear_kernel(a[:1], weight, b[:5])
    assert vec.shape == (5,)
    np.testing.assert_array_equal(vec, row[0])
    model = tiny_model(seed=seed)
    model.eval()
    with no_grad():
        step = model(np.array([[3]]), start_pos=2).data  # (1, 1, V) from the vector path
        pair = model(np.array([[3], [3]]), start_pos=2).data  # (2, 1, V): rows
    np.testing.assert_allclose(step[0], pair[0], rtol=1e-5, atol=1e-6)


def test_cached_generation_honours_overrides_and_checks_cache_positions():
    """`generate` runs cached steps on arrays only when `forward` and `next_token_logits` are the
    core's; a cache that misreports its length gets the forward's position error."""
    calls = []

    class Spy(TinyGPT):
        def forward(self, idx, cache=None, start_pos=None):
            calls.append(np.shape(idx))
            return super().forward(idx, cache=cache, start_pos=start_pos)

    spy = Spy(GPTConfig(**TINY), seed=0)
    want = tiny_model().generate([[1, 2]], 3, use_cache=True)
    np.testing.assert_array_equal(spy.generate([[1, 2]], 3, use_cache=True), want)
    assert calls == [(1, 2), (1, 1), (1, 1)]  # the prefill, then one position per step

    class Lying:  # after the prefill, says it holds `claim` positions
        def __init__(self, claim):
            self.n, self.claim = 0, claim

        def update(self, k, v, layer_idx):
            self.n = self.claim
            return k, v

        def get_seq_length(self, layer_idx=0):
            return self.n

        def reset(self):  # forgets nothing
            pass

    for use_spy in (False, True):  # the array steps and the Tensor steps check alike
        model = spy if use_spy else tiny_model()
        with pytest.raises(ValueError, match="cache holds 5 positions but the context has 3"):
            model.generate([[1, 2]], 3, cache=Lying(5))
        with pytest.raises(ValueError, match=r"positions 6\.\.6 do not fit block_size=6"):
            model.generate([[1, 2, 3, 4, 5, 6]], 3, cache=Lying(6))  # cropping, no reset


def test_num_parameters():
    c, v, blk, L = TINY["d_model"], TINY["vocab_size"], TINY["block_size"], TINY["n_layer"]
    per_block = 2 * 2 * c + (c * 3 * c + 3 * c) + (c * c + c) + (c * 4 * c + 4 * c + 4 * c * c + c)
    expected = v * c + blk * c + L * per_block + 2 * c + (c * v + v)
    assert tiny_model().num_parameters() == expected


@settings(max_examples=15, deadline=None)
@given(data=st.data())
def test_changing_future_tokens_leaves_earlier_logits_unchanged(data):
    model = tiny_model(seed=4)
    t = data.draw(st.integers(2, TINY["block_size"]))
    ids = np.array(data.draw(st.lists(st.integers(0, 10), min_size=t, max_size=t)))[None]
    cut = data.draw(st.integers(0, t - 1))
    changed = ids.copy()
    changed[0, cut:] = (changed[0, cut:] + 1 + np.arange(t - cut)) % 11
    a, b = model(ids).data, model(changed).data
    np.testing.assert_allclose(a[:, :cut], b[:, :cut], rtol=0, atol=1e-6)
    assert not np.allclose(a[:, cut], b[:, cut], atol=1e-6)  # the changed position does move


def test_state_dict_round_trip_gives_identical_logits():
    a, b = tiny_model(seed=0), tiny_model(seed=1)
    idx = np.array([[1, 2, 3, 4], [5, 6, 7, 8]])
    assert not np.allclose(a(idx).data, b(idx).data)
    b.load_state_dict(a.state_dict())
    np.testing.assert_array_equal(a(idx).data, b(idx).data)
    assert tiny_model(seed=0).state_dict().keys() == a.state_dict().keys()


def test_same_seed_same_model():
    idx = np.array([[3, 1, 4, 1, 5]])
    np.testing.assert_array_equal(tiny_model(seed=7)(idx).data, tiny_model(seed=7)(idx).data)


def test_dropout_is_active_in_train_mode_only():
    model = tiny_model(dropout=0.5)
    idx = np.array([[1, 2, 3, 4]])
    assert not np.allclose(model(idx).data, model(idx).data)  # new dropout masks each call
    model.eval()
    np.testing.assert_array_equal(model(idx).data, model(idx).data)


# ----------------------------------------------------------------------------- generation


def test_generate_is_deterministic_for_a_seed_and_varies_across_seeds():
    model = tiny_model()
    prompt = np.array([1, 2, 3])
    a = model.generate(prompt, 20, do_sample=True, seed=5)
    b = model.generate(prompt, 20, do_sample=True, seed=5)
    c = model.generate(prompt, 20, do_sample=True, seed=6)
    assert a.shape == (23,) and a.dtype == np.int64
    np.testing.assert_array_equal(a[:3], prompt)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)
    assert ((a >= 0) & (a < 11)).all()


def test_greedy_generate_equals_manual_argmax_loop():
    model = tiny_model(seed=2)
    for p in model.parameters():  # sharper logits than the 0.02-std init, fewer near-ties
        p.data *= 20.0
    prompt = np.array([[4, 2, 7], [1, 1, 9]])
    n = 8  # 3 + 8 > block_size 6: the context gets cropped
    ids = prompt.copy()
    for _ in range(n):
        logits = model(ids[:, -TINY["block_size"] :]).data  # (B, T, V)
        ids = np.concatenate([ids, logits[:, -1].argmax(-1)[:, None]], axis=1)
    np.testing.assert_array_equal(model.generate(prompt, n), ids)  # greedy by default (HF)
    np.testing.assert_array_equal(model.generate(prompt, n, do_sample=False), ids)
    np.testing.assert_array_equal(model.generate(prompt, n, greedy=True, seed=3), ids)
    np.testing.assert_array_equal(model.generate(prompt, n, do_sample=True, top_k=1, seed=3), ids)
    np.testing.assert_array_equal(model.generate(prompt[1], n, temperature=0), ids[1])


def test_generate_recomputes_the_cropped_context_without_grad():
    seen = []

    class Spy(TinyGPT):
        def next_token_logits(self, ids):
            seen.append((ids.shape, is_grad_enabled(), self.training))
            return super().next_token_logits(ids)

    model = Spy(GPTConfig(**TINY), seed=0)
    out = model.generate([[1, 2]], 6, do_sample=True, seed=0)
    assert out.shape == (1, 8)
    assert [s[0] for s in seen] == [(1, t) for t in range(2, 8)]  # the whole context each step
    assert all(not grad and not training for _, grad, training in seen)
    assert model.training  # restored
    assert all(p.grad is None for p in model.parameters())


def test_generate_with_zero_new_tokens_and_bad_arguments():
    model = tiny_model()
    np.testing.assert_array_equal(model.generate([[1, 2]], 0), [[1, 2]])
    with pytest.raises(TypeError, match="integer"):
        model.generate([1.5, 2.0], 3)
    with pytest.raises(ValueError, match="temperature.*-1"):
        model.generate([1], 3, temperature=-1, do_sample=True)
    with pytest.raises(ValueError, match="top_k.*-1"):
        model.generate([1], 3, top_k=-1, do_sample=True)
    with pytest.raises(ValueError, match="max_new_tokens.*-2"):
        model.generate([1], -2)
    with pytest.raises(ValueError, match="12.*vocab_size 11"):
        model.generate([12], 3)
    with pytest.raises(ValueError, match=r"shape \(0,\)"):
        model.generate([], 3)


def test_generate_has_hugging_face_meanings():
    model = tiny_model(seed=1)
    prompt = np.array([[3, 1, 4]])
    greedy = model.generate(prompt, 6)  # do_sample=False by default: the argmax, no randomness
    np.testing.assert_array_equal(model.generate(prompt, 6, do_sample=False), greedy)
    np.testing.assert_array_equal(model.generate(prompt, 6, greedy=True), greedy)
    np.testing.assert_array_equal(
        model.generate(prompt, 6, greedy=False, seed=4),
        model.generate(prompt, 6, do_sample=True, seed=4),
    )
    outs = {model.generate(prompt, 6, do_sample=True, seed=s).tobytes() for s in range(6)}
    assert len(outs) > 1  # sampling varies with the seed
    # temperature / top_k / top_p / a seed without do_sample=True would silently do nothing
    for kwargs in (dict(temperature=0.7), dict(top_k=5), dict(top_p=0.9), dict(seed=3)):
        with pytest.raises(ValueError, match="do_sample=True"):
            model.generate(prompt, 3, **kwargs)
    with pytest.raises(ValueError, match="temperature=0 with do_sample=True.*do_sample=False"):
        model.generate(prompt, 3, do_sample=True, temperature=0)
    with pytest.raises(ValueError, match="contradicts"):
        model.generate(prompt, 3, do_sample=True, greedy=True)
    with pytest.raises(ValueError, match=r"top_p must be a probability in \(0, 1\], got 1.5"):
        model.generate(prompt, 3, do_sample=True, top_p=1.5)
    with pytest.raises(TypeError, match="do_sample must be True or False"):
        model.generate(prompt, 3, do_sample="yes")


def test_generate_with_text_names_the_mistake():
    model = tiny_model()
    with pytest.raises(TypeError, match=r"token ids .*\(B, T\).*'hello'.*tokenizer"):
        model.generate("hello", 3)
    with pytest.raises(TypeError, match=r"integer token ids.*\(B, T\).*dtype <U5"):
        model.generate(["hello"], 3)


def test_top_p_keeps_the_smallest_nucleus_like_hugging_face():
    logits = np.log(np.array([[0.1, 0.2, 0.3, 0.4]]))
    rng = np.random.default_rng(0)
    draws = np.array([TinyGPT.sample_next(logits, rng, top_p=0.5)[0] for _ in range(4000)])
    freq = np.bincount(draws, minlength=4) / len(draws)
    np.testing.assert_allclose(freq, [0, 0, 3 / 7, 4 / 7], atol=0.03)
    draws = [TinyGPT.sample_next(logits, rng, top_p=0.4)[0] for _ in range(200)]
    assert set(draws) == {3}  # the top token alone reaches 0.4
    draws = np.array([TinyGPT.sample_next(logits, rng, top_p=1.0)[0] for _ in range(4000)])
    assert set(draws.tolist()) == {0, 1, 2, 3}
    draws = [TinyGPT.sample_next(logits, rng, do_sample=False)[0] for _ in range(5)]
    assert set(draws) == {3}


def test_static_cache_is_the_core_protocol_and_names_bad_input():
    from tinytorch.core.cache import Cache, StaticCache

    model = tiny_model()
    cache = StaticCache.for_model(model, batch_size=2, max_cache_len=5)
    assert isinstance(cache, Cache) and cache.get_seq_length() == 0
    k = np.ones((2, 2, 3, 4), np.float32)  # (B, H, T, D) for d_model 8, 2 heads
    keys, values = cache.update(k, 2 * k, 0)
    assert keys.shape == (2, 2, 3, 4) and np.shares_memory(keys, cache.keys[0])
    np.testing.assert_array_equal(keys, k)
    np.testing.assert_array_equal(values, 2 * k)
    # keys are stored transposed: q @ k^T reads each key dimension's row contiguously
    assert keys.swapaxes(-1, -2).strides[-1] == keys.itemsize
    assert cache.get_seq_length(0) == 3 and cache.get_seq_length(1) == 0
    with pytest.raises(ValueError, match=r"B=2, H=2 heads of dim D=4.*got key \(1, 2, 1, 4\)"):
        cache.update(k[:1, :, :1], k[:1, :, :1], 0)  # a batch of 1 would broadcast silently
    with pytest.raises(ValueError, match=r"full: layer 0 holds 3 of max_cache_len=5.*3 more"):
        cache.update(k, k, 0)
    with pytest.raises(ValueError, match=r"layer_idx must be an integer in 0\.\.1, got -1"):
        cache.update(k, k, -1)
    cache.reset()
    assert cache.get_seq_length() == 0
    with pytest.raises(NotImplementedError, match="must implement update"):
        Cache().update(k, k, 0)


def test_cached_generation_past_block_size_equals_uncached_in_the_core():
    model = tiny_model(seed=3)
    for p in model.parameters():  # sharper logits, fewer near-ties
        p.data *= 20.0
    prompt = np.array([[1, 2, 3, 4], [5, 6, 7, 8]])  # block_size 6: crosses after 2 tokens
    np.testing.assert_array_equal(
        model.generate(prompt, 9, use_cache=True), model.generate(prompt, 9)
    )
    long_prompt = np.arange(9) % 11  # longer than block_size already
    np.testing.assert_array_equal(
        model.generate(long_prompt, 4, use_cache=True), model.generate(long_prompt, 4)
    )


def test_sampler_follows_the_softmax_and_respects_top_k():
    logits = np.log(np.array([[0.1, 0.2, 0.3, 0.4]]))
    rng = np.random.default_rng(0)
    draws = np.array([TinyGPT.sample_next(logits, rng)[0] for _ in range(20000)])
    freq = np.bincount(draws, minlength=4) / len(draws)
    np.testing.assert_allclose(freq, [0.1, 0.2, 0.3, 0.4], atol=0.015)
    draws = np.array([TinyGPT.sample_next(logits, rng, top_k=2)[0] for _ in range(4000)])
    freq = np.bincount(draws, minlength=4) / len(draws)
    np.testing.assert_allclose(freq, [0, 0, 3 / 7, 4 / 7], atol=0.03)
    # temperature -> 0 sharpens towards the argmax
    draws = np.array([TinyGPT.sample_next(logits, rng, temperature=0.05)[0] for _ in range(500)])
    assert (draws == 3).mean() > 0.95


# ----------------------------------------------------------------------------- training


def _lm_batch(data, rng, batch, block):
    starts = rng.integers(0, len(data) - block - 1, batch)
    x = np.stack([data[s : s + block] for s in starts])  # (B, T)
    y = np.stack([data[s + 1 : s + block + 1] for s in starts])  # (B, T), shifted by one
    return x, y


def _train(steps, seed=0, batch=16, block=32):
    from tinytorch.core.optim import Adam
    from tinytorch.datasets import load_corpus_ids

    train_ids, tok = load_corpus_ids("train")
    cfg = GPTConfig(tok.vocab_size, block_size=block, n_layer=2, n_head=4, d_model=64)
    model = TinyGPT(cfg, seed=seed)
    opt = Adam(model.parameters(), lr=3e-3)
    rng = np.random.default_rng(seed)
    losses = []
    for _ in range(steps):
        x, y = _lm_batch(train_ids, rng, batch, block)
        loss = cross_entropy(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    return model, losses


def _eval_loss(model, split, seed=123, batches=4, batch=64, block=32):
    from tinytorch.datasets import load_corpus_ids

    ids, _ = load_corpus_ids(split)
    rng = np.random.default_rng(seed)
    model.eval()
    with no_grad():
        vals = [
            cross_entropy(model(x), y).item()
            for x, y in (_lm_batch(ids, rng, batch, block) for _ in range(batches))
        ]
    model.train()
    return float(np.mean(vals))


def test_training_is_deterministic_with_seeds():
    _, a = _train(3, seed=0, batch=4)
    _, b = _train(3, seed=0, batch=4)
    _, c = _train(3, seed=1, batch=4)
    assert a == b and a != c


@pytest.mark.slow
def test_tinygpt_learns_the_corpus_beyond_unigram_statistics():
    from tinytorch.datasets import load_corpus_ids, unigram_entropy

    train_ids, tok = load_corpus_ids("train")
    val_ids, _ = load_corpus_ids("val")
    h_train, h_val = unigram_entropy(train_ids), unigram_entropy(val_ids)
    model, losses = _train(300)
    assert abs(losses[0] - math.log(tok.vocab_size)) < 0.1  # starts near uniform guessing
    train_loss, val_loss = _eval_loss(model, "train"), _eval_loss(model, "val")
    print(
        f"unigram entropy train {h_train:.3f} val {h_val:.3f}; "
        f"TinyGPT loss train {train_loss:.3f} val {val_loss:.3f}"
    )
    # a context-free model cannot beat the unigram entropy; this one must use the context
    assert train_loss < h_train - 0.5
    assert val_loss < h_val - 0.5


def test_inference_fast_path_equals_the_tensor_path():
    """Under no_grad in eval mode a block runs on plain arrays: same values, with and without a
    cache, and the same matmuls through the routing point."""
    from tinytorch.core.tensor import is_grad_enabled

    cfg = GPTConfig(vocab_size=11, block_size=16, n_layer=2, n_head=2, d_model=8)
    model = TinyGPT(cfg, seed=3)
    model.eval()
    ids = np.random.default_rng(0).integers(0, 11, size=(2, 9))
    assert is_grad_enabled()
    slow = model(ids).data  # grad enabled: the Tensor path
    with no_grad():
        block = model.blocks[0]
        x = model.tok_emb(ids) + model.pos_emb(np.arange(9))
        assert block._fast_path_ok(x)
        fast = model(ids).data
    np.testing.assert_allclose(fast, slow, rtol=1e-6, atol=1e-6)

    class Cache:  # a minimal growing cache: the duck type the attention expects
        def __init__(self):
            self.k, self.v = {}, {}

        def get_seq_length(self, layer_idx=0):
            return 0 if layer_idx not in self.k else self.k[layer_idx].shape[2]

        def update(self, k, v, layer_idx):
            k, v = getattr(k, "data", k), getattr(v, "data", v)
            if layer_idx in self.k:
                k = np.concatenate([self.k[layer_idx], k], axis=2)
                v = np.concatenate([self.v[layer_idx], v], axis=2)
            self.k[layer_idx], self.v[layer_idx] = k, v
            return k, v

    cache = Cache()
    with no_grad():
        steps = [model(ids[:, :5], cache=cache).data[:, -1]]
        steps += [model(ids[:, t : t + 1], cache=cache).data[:, -1] for t in range(5, 9)]
    np.testing.assert_allclose(np.stack(steps, 1), slow[:, 4:], rtol=1e-5, atol=1e-5)

    model.train()  # dropout is 0, so training mode alone does not leave the fast path...
    with no_grad():
        assert model.blocks[0]._fast_path_ok(Tensor(np.zeros((1, 2, 8), dtype=np.float32)))
    drop_cfg = GPTConfig(vocab_size=11, block_size=16, n_layer=1, n_head=2, d_model=8, dropout=0.5)
    dropped = TinyGPT(drop_cfg, seed=3)  # ...but active dropout does
    with no_grad():
        assert not dropped.blocks[0]._fast_path_ok(Tensor(np.zeros((1, 2, 8), dtype=np.float32)))
