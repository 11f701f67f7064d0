"""Layers, the Module protocol and the losses: gradient checks (float64, finite differences,
hypothesis-generated shapes), state dicts, error messages, and a direct-loop convolution."""

import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from tinytorch.core import backends, nn
from tinytorch.core.gradcheck import gradcheck
from tinytorch.core.losses import cross_entropy, mse
from tinytorch.core.tensor import Tensor, default_dtype, get_default_dtype, no_grad

FAST = settings(max_examples=20, deadline=None)
SEEDS = st.integers(0, 2**16)


def rand(rng, shape, scale=1.0):
    """A float64 leaf tensor that requires grad."""
    with default_dtype(np.float64):
        return Tensor(rng.standard_normal(shape) * scale, requires_grad=True)


def f64(module_factory):
    """Build a module with float64 parameters."""
    with default_dtype(np.float64):
        return module_factory()


def randomize(module, rng):
    """Give every parameter random values (LayerNorm's ones/zeros would hide bugs)."""
    for p in module.parameters():
        p.data[...] = rng.standard_normal(p.shape)


def check(fn, inputs):
    assert gradcheck(fn, inputs, rtol=1e-5) <= 1e-5


# ============================================================================ gradient checks
@FAST
@given(
    n=st.integers(1, 4),
    lead=st.sampled_from([(), (2,), (2, 3)]),
    fin=st.integers(1, 5),
    fout=st.integers(1, 4),
    bias=st.booleans(),
    seed=SEEDS,
)
def test_linear_gradcheck(n, lead, fin, fout, bias, seed):
    rng = np.random.default_rng(seed)
    layer = f64(lambda: nn.Linear(fin, fout, bias=bias))
    x = rand(rng, (n, *lead, fin))
    params = [layer.weight] + ([layer.bias] if bias else [])
    assert layer(x).shape == (n, *lead, fout)
    check(lambda x, *ps: layer(x), [x, *params])


@st.composite
def conv_config(draw):
    n = draw(st.integers(1, 2))
    cin = draw(st.integers(1, 3))
    cout = draw(st.integers(1, 3))
    kh, kw = draw(st.integers(1, 3)), draw(st.integers(1, 3))
    stride = draw(st.sampled_from([1, 2, (1, 2), (2, 1)]))
    padding = draw(st.sampled_from([0, 1, 2, (0, 1)]))
    ph, pw = (padding, padding) if isinstance(padding, int) else padding
    h = draw(st.integers(max(1, kh - 2 * ph), 6))
    w = draw(st.integers(max(1, kw - 2 * pw), 6))
    return n, cin, cout, (kh, kw), stride, padding, h, w


@FAST
@given(cfg=conv_config(), bias=st.booleans(), seed=SEEDS)
def test_conv2d_gradcheck(cfg, bias, seed):
    n, cin, cout, k, stride, padding, h, w = cfg
    rng = np.random.default_rng(seed)
    conv = f64(lambda: nn.Conv2d(cin, cout, k, stride=stride, padding=padding, bias=bias))
    x = rand(rng, (n, cin, h, w))
    params = [conv.weight] + ([conv.bias] if bias else [])
    check(lambda x, *ps: conv(x), [x, *params])


@FAST
@given(
    n=st.integers(1, 2),
    c=st.integers(1, 2),
    k=st.integers(1, 3),
    stride=st.sampled_from([None, 1, 2]),
    hw=st.tuples(st.integers(3, 7), st.integers(3, 7)),
    seed=SEEDS,
)
def test_maxpool2d_gradcheck(n, c, k, stride, hw, seed):
    rng = np.random.default_rng(seed)
    x = rand(rng, (n, c, *hw))
    pool = nn.MaxPool2d(k, stride)
    s = k if stride is None else stride
    assert pool(x).shape == (n, c, (hw[0] - k) // s + 1, (hw[1] - k) // s + 1)
    check(pool, [x])


def test_maxpool2d_values_and_overlapping_windows():
    x = Tensor(np.arange(16, dtype=np.float32).reshape(1, 1, 4, 4), requires_grad=True)
    out = nn.MaxPool2d(2)(x)
    np.testing.assert_array_equal(out.data[0, 0], [[5, 7], [13, 15]])
    out = nn.MaxPool2d(2, stride=1)(x)  # overlapping: pixel 5 is the max of one window only
    np.testing.assert_array_equal(out.data[0, 0], [[5, 6, 7], [9, 10, 11], [13, 14, 15]])
    out.sum().backward()
    expected = np.zeros((4, 4))
    expected[1:, 1:] = 1
    np.testing.assert_array_equal(x.grad[0, 0], expected)


@FAST
@given(shape=st.sampled_from([(3, 4), (2, 3, 5), (1, 2)]), seed=SEEDS)
def test_layernorm_gradcheck(shape, seed):
    rng = np.random.default_rng(seed)
    ln = f64(lambda: nn.LayerNorm(shape[-1]))
    randomize(ln, rng)
    x = rand(rng, shape, scale=2.0)
    check(lambda x, w, b: ln(x), [x, ln.weight, ln.bias])


def test_layernorm_normalizes():
    x = np.random.default_rng(0).standard_normal((4, 16)) * 5 + 3
    with default_dtype(np.float64):
        out = nn.LayerNorm(16)(x).data
    np.testing.assert_allclose(out.mean(-1), 0, atol=1e-12)
    np.testing.assert_allclose(out.var(-1), 1, atol=1e-4)  # eps=1e-5 shrinks it a little


@FAST
@given(
    num=st.integers(1, 6),
    dim=st.integers(1, 4),
    idx_shape=st.sampled_from([(3,), (2, 4), (5,)]),
    seed=SEEDS,
)
def test_embedding_gradcheck_with_repeated_ids(num, dim, idx_shape, seed):
    rng = np.random.default_rng(seed)
    emb = f64(lambda: nn.Embedding(num, dim))
    idx = rng.integers(0, num, size=idx_shape)  # repeats are likely: add.at must accumulate
    assert emb(idx).shape == (*idx_shape, dim)
    check(lambda w: emb(Tensor(idx)), [emb.weight])


@pytest.mark.parametrize("act", [nn.ReLU, nn.GELU, nn.Tanh, nn.Sigmoid, lambda: nn.Softmax(0)])
@FAST
@given(shape=st.sampled_from([(5,), (2, 3), (2, 2, 3)]), seed=SEEDS)
def test_activation_gradcheck(act, shape, seed):
    rng = np.random.default_rng(seed)
    x = rand(rng, shape, scale=2.0)
    x.data[np.abs(x.data) < 1e-3] = 0.5  # keep finite differences away from ReLU's kink
    check(act(), [x])


@FAST
@given(n=st.integers(1, 3), hidden=st.integers(1, 5), seed=SEEDS)
def test_sequential_mlp_gradcheck(n, hidden, seed):
    rng = np.random.default_rng(seed)
    model = f64(lambda: nn.Sequential(nn.Linear(3, hidden), nn.Tanh(), nn.Linear(hidden, 2)))
    x = rand(rng, (n, 3))
    check(lambda x, *ps: model(x), [x, *model.parameters()])


def test_small_cnn_gradcheck():
    rng = np.random.default_rng(0)
    model = f64(
        lambda: nn.Sequential(
            nn.Conv2d(1, 2, 3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Flatten(),
            nn.Linear(8, 3),
        )
    )
    x = rand(rng, (2, 1, 4, 4))
    y = np.array([0, 2])
    check(lambda x, *ps: cross_entropy(model(x), y), [x, *model.parameters()])


@FAST
@given(
    lead=st.sampled_from([(1,), (4,), (2, 3)]),
    c=st.integers(2, 5),
    smoothing=st.sampled_from([0.0, 0.1]),
    seed=SEEDS,
)
def test_cross_entropy_gradcheck(lead, c, smoothing, seed):
    rng = np.random.default_rng(seed)
    logits = rand(rng, (*lead, c), scale=3.0)
    targets = rng.integers(0, c, size=lead)
    check(lambda z: cross_entropy(z, targets, label_smoothing=smoothing), [logits])


@FAST
@given(shape=st.sampled_from([(3,), (2, 4), (2, 2, 2)]), seed=SEEDS)
def test_mse_gradcheck(shape, seed):
    rng = np.random.default_rng(seed)
    a, b = rand(rng, shape), rand(rng, shape)
    check(mse, [a, b])


# ============================================================================ losses
def test_cross_entropy_value_and_stability():
    z = np.array([[1.0, 2.0, 3.0], [1000.0, 0.0, -1000.0]])
    t = np.array([2, 0])
    with default_dtype(np.float64):
        loss = cross_entropy(Tensor(z), t).item()
    logp0 = 3.0 - np.log(np.exp([1.0, 2.0, 3.0]).sum())
    assert np.isfinite(loss)
    assert loss == pytest.approx(-(logp0 + 0.0) / 2, rel=1e-12)
    # (B, T, C) with (B, T) targets equals the flattened (B*T, C) loss
    rng = np.random.default_rng(1)
    z3 = rng.standard_normal((2, 3, 4))
    t3 = rng.integers(0, 4, size=(2, 3))
    with default_dtype(np.float64):
        a = cross_entropy(Tensor(z3), t3).item()
        b = cross_entropy(Tensor(z3.reshape(6, 4)), t3.reshape(6)).item()
    assert a == pytest.approx(b, rel=1e-12)


def test_cross_entropy_uniform_logits_give_log_c():
    loss = cross_entropy(Tensor(np.zeros((5, 7))), np.arange(5)).item()
    assert loss == pytest.approx(np.log(7), rel=1e-6)


def test_cross_entropy_errors_name_shapes():
    z = Tensor(np.zeros((4, 3)))
    with pytest.raises(ValueError, match=r"\(4, 3\).*\(4,\).*\(5,\)"):
        cross_entropy(z, np.zeros(5, dtype=np.int64))
    with pytest.raises(ValueError, match=r"\[0, 3\).*from 0 to 3"):
        cross_entropy(z, np.array([0, 1, 2, 3]))
    with pytest.raises(ValueError, match=r"-1"):
        cross_entropy(z, np.array([0, -1, 2, 1]))
    with pytest.raises(TypeError, match="integer"):
        cross_entropy(z, np.zeros(4))
    with pytest.raises(ValueError, match=r"\(3,\)"):
        cross_entropy(Tensor(np.zeros(3)), np.zeros((), dtype=np.int64))


def test_mse_value_and_shape_error():
    assert mse(Tensor([1.0, 2.0]), np.array([0.0, 0.0])).item() == pytest.approx(2.5)
    with pytest.raises(ValueError, match=r"\(2,\).*\(2, 1\)"):
        mse(Tensor([1.0, 2.0]), np.zeros((2, 1)))


# ============================================================================ convolution
def reference_conv2d(x, w, b, stride, padding):
    """The textbook six nested loops."""
    n, c, h, wd = x.shape
    oc, _, kh, kw = w.shape
    xp = np.pad(x, ((0, 0), (0, 0), (padding, padding), (padding, padding)))
    ho = (h + 2 * padding - kh) // stride + 1
    wo = (wd + 2 * padding - kw) // stride + 1
    out = np.zeros((n, oc, ho, wo))
    for i in range(n):
        for o in range(oc):
            for r in range(ho):
                for q in range(wo):
                    patch = xp[i, :, r * stride : r * stride + kh, q * stride : q * stride + kw]
                    out[i, o, r, q] = (patch * w[o]).sum() + (b[o] if b is not None else 0)
    return out


@pytest.mark.parametrize(
    ("cin", "cout", "k", "stride", "padding", "hw"),
    [(1, 1, 3, 1, 0, (5, 5)), (3, 4, 3, 1, 1, (6, 7)), (2, 3, 2, 2, 0, (7, 6)),
     (2, 2, 3, 2, 2, (5, 4)), (1, 5, 1, 1, 0, (3, 3)), (2, 3, (2, 3), 1, 1, (4, 5))],
)  # fmt: skip
def test_conv2d_matches_direct_loops(cin, cout, k, stride, padding, hw):
    rng = np.random.default_rng(0)
    conv = f64(lambda: nn.Conv2d(cin, cout, k, stride=stride, padding=padding))
    x = rng.standard_normal((2, cin, *hw))
    with default_dtype(np.float64):
        out = conv(x).data
    ref = reference_conv2d(x, conv.weight.data, conv.bias.data, stride, padding)
    assert out.shape == ref.shape
    np.testing.assert_allclose(out, ref, rtol=1e-12, atol=1e-12)


@FAST
@given(cfg=conv_config(), pool=st.sampled_from([(2, None), (2, 1), (3, 2)]), seed=SEEDS)
def test_conv_relu_pool_inference_equals_the_graph_path(cfg, pool, seed):
    """Under no_grad, conv (channels-last result viewed as NCHW) -> relu -> max pool (strided
    maxima without argmax) -> flatten gives the values of the recorded path and of loops."""
    n, cin, cout, k, stride, padding, h, w = cfg
    rng = np.random.default_rng(seed)
    conv = f64(lambda: nn.Conv2d(cin, cout, k, stride=stride, padding=padding))
    x = rand(rng, (n, cin, h, w))
    y = conv(x)
    pk, ps = pool
    if min(y.shape[2:]) < pk:
        return
    model = nn.Sequential(conv, nn.ReLU(), nn.MaxPool2d(pk, ps), nn.Flatten())
    graph = model(x)  # x requires grad: the argmax path
    with no_grad(), default_dtype(np.float64):
        fast = model(x.data)
    np.testing.assert_allclose(fast.data, graph.data, rtol=0, atol=1e-12)
    ref = np.maximum(y.data, 0)
    win = np.lib.stride_tricks.sliding_window_view(ref, (pk, pk), axis=(2, 3))
    s = pk if ps is None else ps
    ref = win[:, :, ::s, ::s].max(axis=(4, 5)).reshape(n, -1)
    np.testing.assert_allclose(fast.data, ref, rtol=0, atol=1e-12)


@pytest.mark.parametrize(
    ("cin", "stride", "hw", "bias", "layout"),
    [(1, 1, (6, 7), True, "pixels"), (3, 1, (5, 12), False, "pixels"),
     (3, 1, (5, 5), True, "channels-last"), (1, 2, (7, 8), False, "channels-last")],
)  # fmt: skip
def test_conv2d_both_im2col_layouts(cin, stride, hw, bias, layout):
    """Each patch layout `conv_layout` can pick matches the direct loops and the finite
    differences (the hypothesis configurations above cover both too, but not by name)."""
    assert nn.conv_layout(cin, 3, stride, nn._out_size(hw[1], 3, stride, 1)) == layout
    rng = np.random.default_rng(1)
    conv = f64(lambda: nn.Conv2d(cin, 2, 3, stride=stride, padding=1, bias=bias))
    x = rand(rng, (2, cin, *hw))
    b = conv.bias.data if bias else None
    ref = reference_conv2d(x.data, conv.weight.data, b, stride, 1)
    np.testing.assert_allclose(conv(x).data, ref, rtol=1e-12, atol=1e-12)
    check(lambda x, *ps: conv(x), [x, conv.weight] + ([conv.bias] if bias else []))


def test_conv2d_sees_in_place_weight_changes():
    """The weight is packed at every call: an in-place update is never served stale."""
    conv = f64(lambda: nn.Conv2d(2, 3, 3, padding=1))
    x = np.random.default_rng(0).standard_normal((1, 2, 5, 5))
    with no_grad():
        a = conv(x).data.copy()
        conv.weight.data *= 2.0
        conv.bias.data *= 2.0
        np.testing.assert_allclose(conv(x).data, 2 * a, rtol=1e-12)


class CountingBackend(backends.Backend):
    name = "counting-test"

    def __init__(self):
        self.calls = []

    def matmul(self, a, b):
        self.calls.append((a.shape, b.shape))
        return np.matmul(a, b)


def test_linear_and_conv_route_through_backend():
    counter = backends.register_backend(CountingBackend())
    try:
        lin = nn.Linear(6, 4)
        conv = nn.Conv2d(2, 5, 3, padding=1)
        with backends.use_backend("counting-test"), no_grad():
            lin(np.ones((3, 6)))
            assert counter.calls == [((3, 6), (6, 4))]
            counter.calls.clear()
            lin(np.ones((2, 3, 6)))  # leading dims are flattened: still one (N, in) @ (in, out)
            assert counter.calls == [((6, 6), (6, 4))]
            counter.calls.clear()
            conv(np.ones((2, 2, 4, 4)))
            # one matmul; the bias is the weight of one more column of ones
            assert counter.calls == [((2 * 4 * 4, 2 * 3 * 3 + 1), (2 * 3 * 3 + 1, 5))]
        counter.calls.clear()
        with backends.use_backend("counting-test"):
            conv(np.ones((2, 2, 4, 4))).sum().backward()
        assert len(counter.calls) == 3  # forward + grad wrt cols + grad wrt weight
    finally:
        backends.unregister_backend("counting-test")


# ============================================================================ errors
def test_linear_shape_error_names_both_shapes():
    with pytest.raises(
        ValueError, match=r"Linear\(64, 32\) expects input \(\.\.\., 64\), got \(5, 10\)"
    ):
        nn.Linear(64, 32)(np.zeros((5, 10)))


def test_conv2d_shape_errors():
    conv = nn.Conv2d(3, 8, 3)
    with pytest.raises(ValueError, match=r"\(N, 3, H, W\), got \(2, 1, 8, 8\)"):
        conv(np.zeros((2, 1, 8, 8)))
    with pytest.raises(ValueError, match=r"\(N, 3, H, W\), got \(3, 8, 8\)"):
        conv(np.zeros((3, 8, 8)))  # wrong rank: a single image without the batch axis
    with pytest.raises(ValueError, match=r"does not fit input \(1, 3, 2, 2\)"):
        conv(np.zeros((1, 3, 2, 2)))


def test_non_numeric_input_is_a_type_error():
    for layer in (nn.Linear(2, 2), nn.Conv2d(1, 1, 1), nn.ReLU(), nn.LayerNorm(2)):
        with pytest.raises(TypeError, match="numeric"):
            layer(np.array([["a", "b"]]))
    with pytest.raises(TypeError):
        nn.Linear(2, 2)("not an array")


def test_numpy_and_integer_inputs_are_accepted():
    lin = nn.Linear(2, 3)
    out = lin(np.array([[1, 2]]))  # integers become floats
    assert out.dtype == np.float32
    np.testing.assert_allclose(out.data, lin(Tensor([[1.0, 2.0]])).data)


def test_embedding_errors():
    emb = nn.Embedding(5, 3)
    with pytest.raises(IndexError, match=r"\[0, 5\).*5"):
        emb(np.array([0, 5]))
    with pytest.raises(IndexError, match=r"-1"):
        emb(np.array([-1]))
    with pytest.raises(TypeError, match="integer"):
        emb(np.array([0.0, 1.0]))
    np.testing.assert_array_equal(emb(Tensor(np.array([[4, 0]]))).data, emb.weight.data[[[4, 0]]])


# ============================================================================ dropout
def test_dropout_eval_is_identity_and_train_scales():
    x = Tensor(np.ones((200, 50), dtype=np.float32), requires_grad=True)
    drop = nn.Dropout(0.3, seed=0)
    drop.eval()
    assert drop(x) is x
    drop.train()
    out = drop(x)
    kept = out.data != 0
    assert 0.25 < 1 - kept.mean() < 0.35
    np.testing.assert_allclose(out.data[kept], 1 / 0.7, rtol=1e-6)
    out.sum().backward()
    np.testing.assert_allclose(x.grad, kept / 0.7, rtol=1e-6)  # grad uses the same mask
    assert nn.Dropout(0.0)(x) is x
    assert not nn.Dropout(1.0)(x).data.any()
    with pytest.raises(ValueError, match="1.5"):
        nn.Dropout(1.5)


def test_dropout_masks_follow_manual_seed():
    x = np.ones((4, 8))
    nn.manual_seed(3)
    a = nn.Dropout(0.5)(x).data
    nn.manual_seed(3)
    b = nn.Dropout(0.5)(x).data
    np.testing.assert_array_equal(a, b)


# ============================================================================ Module protocol
class Block(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(4, 3)
        self.norm = nn.LayerNorm(3)
        self.register_buffer("running", np.arange(3.0))
        self.scale = 2.0  # a plain attribute: not registered

    def forward(self, x):
        return self.norm(self.fc(x)) * self.scale


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.block = Block()
        self.layers = nn.ModuleList([nn.Linear(3, 3), nn.Linear(3, 2, bias=False)])
        self.drop = nn.Dropout(0.1)

    def forward(self, x):
        x = self.block(x)
        for layer in self.layers:
            x = self.drop(layer(x).relu())
        return x


def test_named_parameters_modules_and_children():
    net = Net()
    names = [n for n, _ in net.named_parameters()]
    assert names == [
        "block.fc.weight",
        "block.fc.bias",
        "block.norm.weight",
        "block.norm.bias",
        "layers.0.weight",
        "layers.0.bias",
        "layers.1.weight",
    ]
    assert [n for n, _ in net.named_children()] == ["block", "layers", "drop"]
    assert net.children()[0] is net.block
    assert [n for n, _ in net.named_modules()] == [
        "", "block", "block.fc", "block.norm", "layers", "layers.0", "layers.1", "drop",
    ]  # fmt: skip
    assert net.num_parameters() == 4 * 3 + 3 + 3 + 3 + 3 * 3 + 3 + 3 * 2
    assert all(isinstance(p, nn.Parameter) and p.requires_grad for p in net.parameters())
    assert "scale" not in dict(net.block.named_parameters())
    assert net.block.scale == 2.0
    with pytest.raises(AttributeError, match="nope"):
        _ = net.nope


def test_tied_parameters_are_listed_once():
    a, b = nn.Linear(3, 3), nn.Linear(3, 3)
    b.weight = a.weight
    model = nn.Sequential(a, b)
    assert len(model.parameters()) == 3
    assert model.num_parameters() == 9 + 3 + 3


def test_train_eval_recursive_and_zero_grad():
    net = Net()
    assert net.training and net.block.fc.training
    assert net.eval() is net
    assert not any(m.training for m in net.modules())
    net.train()
    assert all(m.training for m in net.modules())
    net(np.ones((2, 4))).sum().backward()
    assert all(p.grad is not None for p in net.parameters())
    net.zero_grad()
    assert all(p.grad is None for p in net.parameters())


def test_state_dict_is_a_copy_with_buffers():
    net = Net()
    sd = net.state_dict()
    assert "block.running" in sd and "layers.1.bias" not in sd
    sd["block.fc.weight"][...] = 0
    assert np.abs(net.block.fc.weight.data).sum() > 0


def test_state_dict_round_trip_bit_for_bit():
    nn.manual_seed(0)
    a = Net().eval()
    nn.manual_seed(1)
    b = Net().eval()
    x = np.random.default_rng(0).standard_normal((5, 4)).astype(np.float32)
    assert not np.array_equal(a(x).data, b(x).data)
    b.load_state_dict(a.state_dict())
    np.testing.assert_array_equal(a(x).data, b(x).data)
    np.testing.assert_array_equal(b.block.running, a.block.running)


def test_state_dict_round_trip_cnn():
    def make():
        return nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                             nn.Flatten(), nn.Linear(16, 3))  # fmt: skip

    nn.manual_seed(0)
    a = make()
    b = make()
    x = np.random.default_rng(0).random((2, 1, 4, 4)).astype(np.float32)
    b.load_state_dict(a.state_dict())
    np.testing.assert_array_equal(a(x).data, b(x).data)


def test_load_state_dict_names_missing_and_unexpected_keys():
    net = Net()
    sd = net.state_dict()
    del sd["block.norm.bias"]
    sd["layers.7.weight"] = np.zeros(3)
    before = net.block.fc.weight.data.copy()
    sd["block.fc.weight"] = before + 1
    with pytest.raises(KeyError, match=r"block\.norm\.bias.*layers\.7\.weight"):
        net.load_state_dict(sd)
    np.testing.assert_array_equal(net.block.fc.weight.data, before)  # nothing half-loaded
    result = net.load_state_dict(sd, strict=False)
    assert result.missing_keys == ["block.norm.bias"]
    assert result.unexpected_keys == ["layers.7.weight"]
    np.testing.assert_array_equal(net.block.fc.weight.data, before + 1)


def test_load_state_dict_shape_mismatch_names_entry_and_shapes():
    net = Net()
    sd = net.state_dict()
    sd["layers.0.weight"] = np.zeros((3, 4))
    with pytest.raises(ValueError, match=r"layers\.0\.weight.*\(3, 3\).*\(3, 4\)"):
        net.load_state_dict(sd)
    with pytest.raises(ValueError, match=r"layers\.0\.weight.*\(3, 3\).*\(3, 4\)"):
        net.load_state_dict(sd, strict=False)


def test_repr_is_nested_like_pytorch():
    model = nn.Sequential(nn.Linear(2, 3), nn.ReLU(), nn.Sequential(nn.Dropout(0.5)))
    assert repr(model) == (
        "Sequential(\n"
        "  (0): Linear(in_features=2, out_features=3, bias=True)\n"
        "  (1): ReLU()\n"
        "  (2): Sequential(\n"
        "    (0): Dropout(p=0.5)\n"
        "  )\n"
        ")"
    )


def test_sequential_container():
    layers = [nn.Linear(4, 4), nn.ReLU(), nn.Linear(4, 2)]
    model = nn.Sequential(*layers)
    assert len(model) == 3 and model[0] is layers[0] and model[-1] is layers[2]
    assert list(model) == layers
    head = model[:2]
    assert isinstance(head, nn.Sequential) and len(head) == 2 and head[1] is layers[1]
    model.append(nn.Tanh())
    assert len(model) == 4 and "3.weight" not in model.state_dict()
    x = np.ones((1, 4), dtype=np.float32)
    expected = np.tanh(layers[2](layers[1](layers[0](x))).data)
    np.testing.assert_allclose(model(x).data, expected, rtol=1e-6)
    with pytest.raises(TypeError, match="Modules"):
        nn.Sequential(nn.ReLU(), lambda x: x)


def test_module_list():
    ml = nn.ModuleList([nn.Linear(2, 2)])
    ml.append(nn.Linear(2, 2)).extend([nn.ReLU()])
    assert len(ml) == 3 and [n for n, _ in ml.named_parameters()][-1] == "1.bias"
    with pytest.raises(NotImplementedError):
        ml(np.ones(2))


def test_default_dtype_and_manual_seed():
    with default_dtype(np.float64):
        lin = nn.Linear(3, 2)
        conv = nn.Conv2d(1, 1, 2)
    assert lin.weight.dtype == np.float64 and conv.bias.dtype == np.float64
    assert nn.Linear(3, 2).weight.dtype == np.float32 == get_default_dtype()
    nn.manual_seed(7)
    w1 = nn.Linear(5, 5).weight.data.copy()
    nn.manual_seed(7)
    w2 = nn.Linear(5, 5).weight.data.copy()
    np.testing.assert_array_equal(w1, w2)
    assert np.abs(w1).max() <= 1 / np.sqrt(5)


def test_forgotten_super_init_is_explained():
    class Bad(nn.Module):
        def __init__(self):
            self.fc = nn.Linear(1, 1)

    with pytest.raises(AttributeError, match="super"):
        Bad()


def test_parameter_assignment_rules():
    lin = nn.Linear(2, 2)
    with pytest.raises(TypeError, match="bias"):
        lin.bias = np.zeros(2)
    lin.bias = None
    assert [n for n, _ in lin.named_parameters()] == ["weight"]
    assert lin(np.ones((1, 2))).shape == (1, 2)


@FAST
@given(n=st.integers(1, 3), h=st.integers(2, 6), w=st.integers(2, 6), k=st.integers(1, 2))
def test_flatten_and_im2col_shapes(n, h, w, k):
    assume(k <= min(h, w))
    x = Tensor(np.zeros((n, 2, h, w)))
    assert nn.Flatten()(x).shape == (n, 2 * h * w)
    cols = nn.im2col(x, k)
    assert cols.shape == (n * (h - k + 1) * (w - k + 1), 2 * k * k)


def test_deepcopy_gives_an_independent_equal_model():
    import copy

    model = nn.Sequential(nn.Linear(2, 3), nn.LayerNorm(3))
    clone = copy.deepcopy(model)
    x = np.ones((1, 2), dtype=np.float32)
    np.testing.assert_array_equal(model(x).data, clone(x).data)
    clone[0].weight.data += 1
    assert not np.array_equal(model(x).data, clone(x).data)


@pytest.mark.slow
def test_bench_core_quick_runs_and_writes_valid_json(tmp_path):
    """bench/core.py --quick: per-op rows for every op, conv rows that agree with onnxruntime
    (when installed), training rows with step times."""
    import json
    import os
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    out = tmp_path / "core.json"
    proc = subprocess.run(
        [sys.executable, str(root / "bench" / "core.py"), "--quick", "--json", str(out)],
        capture_output=True,
        text=True,
        env={**os.environ, "OPENBLAS_NUM_THREADS": "1"},
        timeout=300,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    data = json.loads(out.read_text())["results"]
    assert set(data["ops_seconds"]) == {"add", "matmul", "relu", "softmax"}
    for secs in data["ops_seconds"].values():
        assert secs["numpy fwd"] > 0 and secs["tinytorch fwd+bwd"] > 0
    if data["conv"] is not None:
        rows = {k: r for k, r in data["conv"].items() if k != "im2col layouts"}
        assert len(rows) == 4
        assert all(r["max_abs_diff"] < 1e-4 for r in rows.values())
    assert {"MLP digits", "CNN digits"} <= set(data["training"])
    assert all(r["median_step_ms"] > 0 for r in data["training"].values())


# ===================================================== Sequential's no_grad array path
def _mixed_model():
    return nn.Sequential(
        nn.Conv2d(2, 4, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2), nn.Tanh(),  # Tanh: no kernel
        nn.Conv2d(4, 3, 3, stride=2), nn.ReLU(), nn.Flatten(), nn.Dropout(0.5), nn.Linear(3, 5),
    )  # fmt: skip


def test_sequential_no_grad_path_equals_the_module_path():
    """Under no_grad, runs of layers with an array kernel give the values of each layer's own
    forward, around layers without one (Tanh, Dropout in eval), and return a Tensor."""
    model = f64(_mixed_model).eval()
    x = np.random.default_rng(0).standard_normal((3, 2, 6, 6))
    with default_dtype(np.float64):
        ref = x
        for layer in model:  # one Module call at a time, recording a graph
            ref = layer(ref)
        with no_grad():
            fast = model(x)
            from_tensor = model(Tensor(x))
    assert type(fast) is Tensor and fast.dtype == np.float64 and not fast.requires_grad
    np.testing.assert_array_equal(fast.data, ref.data)
    np.testing.assert_array_equal(from_tensor.data, ref.data)


def test_sequential_no_grad_path_respects_replaced_forwards():
    """A subclass or an instance whose forward was replaced runs its own forward."""

    class Doubling(nn.ReLU):
        def forward(self, x):
            return super().forward(x) * 2.0

    x = np.abs(np.random.default_rng(1).standard_normal((2, 3))) + 0.1
    with no_grad():
        np.testing.assert_allclose(nn.Sequential(Doubling())(x).data, 2 * x, rtol=1e-6)
        relu = nn.ReLU()
        relu.forward = lambda t: t * 3.0
        np.testing.assert_allclose(nn.Sequential(relu)(x).data, 3 * x, rtol=1e-6)


def test_sequential_no_grad_path_errors_name_the_layer_and_shapes():
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.Flatten(), nn.Linear(8, 2))
    with no_grad():
        with pytest.raises(ValueError, match=r"Conv2d\(3, 4.*expects input \(N, 3, H, W\), got"):
            model(np.zeros((1, 2, 5, 5), np.float32))
        with pytest.raises(ValueError, match=r"does not fit input \(1, 3, 2, 2\)"):
            model(np.zeros((1, 3, 2, 2), np.float32))
        with pytest.raises(ValueError, match=r"Linear\(8, 2\) expects input \(\.\.\., 8\), got"):
            model(np.zeros((1, 3, 5, 5), np.float32))


def test_sequential_no_grad_path_routes_through_the_backend():
    counter = backends.register_backend(CountingBackend())
    try:
        model = nn.Sequential(nn.Conv2d(1, 2, 3, padding=1), nn.ReLU(), nn.Flatten(),
                              nn.Linear(2 * 4 * 4, 3))
        with backends.use_backend("counting-test"), no_grad():
            model(np.ones((2, 1, 4, 4), np.float32))
        assert len(counter.calls) == 2  # the conv's one product and the linear's
    finally:
        backends.unregister_backend("counting-test")


@pytest.mark.parametrize("n", [1, 64])  # below and above nn.POOL_RESHAPE_MAX_SIZE
@pytest.mark.parametrize(
    ("k", "s"), [(2, 2), (3, 3), (2, 1), (3, 2), ((1, 2), (1, 2)), ((2, 1), 1), (1, 1)]
)
def test_max_pool_values_both_paths_equal_the_window_maxima(n, k, s):
    """Small inputs with non-overlapping windows take one reduction over a reshaped view, the
    rest strided maxima: both give the window maxima, leftover rows and columns dropped, on a
    channels-last view (what a conv returns) and on NCHW memory."""
    rng = np.random.default_rng(n)
    nhwc = rng.standard_normal((n, 9, 7, 4)).astype(np.float32)
    assert (n * 9 * 7 * 4 <= nn.POOL_RESHAPE_MAX_SIZE) == (n == 1)
    (kh, kw), (sh, sw) = nn._pair(k, "k"), nn._pair(s, "s")
    for a in (nhwc.transpose(0, 3, 1, 2), np.ascontiguousarray(nhwc.transpose(0, 3, 1, 2))):
        ho, wo = (9 - kh) // sh + 1, (7 - kw) // sw + 1
        win = np.lib.stride_tricks.sliding_window_view(a, (kh, kw), axis=(2, 3))
        want = win[:, :, ::sh, ::sw].max(axis=(4, 5))
        got = nn._max_pool_values(a, kh, kw, sh, sw, ho, wo)
        np.testing.assert_array_equal(got, want)
        assert not np.shares_memory(got, a)
