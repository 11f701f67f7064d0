"""Module 18 (compression): pruning reaches the sparsity asked for and keeps it through
fine-tuning; structured pruning shrinks layers without changing what zero units computed;
CSR storage and matmuls agree with dense; the distillation loss is the formula; and on the
bundled digits the accuracy targets hold. The bench runs in --quick mode."""

from __future__ import annotations

import copy
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import tinytorch.compression as C
from tinytorch.core.data import DataLoader, TensorDataset
from tinytorch.core.gradcheck import gradcheck
from tinytorch.core.losses import cross_entropy
from tinytorch.core.nn import (
    Conv2d,
    Flatten,
    LayerNorm,
    Linear,
    MaxPool2d,
    ReLU,
    Sequential,
    manual_seed,
)
from tinytorch.core.optim import SGD, Adam, AdamW
from tinytorch.core.tensor import Tensor, default_dtype, no_grad
from tinytorch.core.train import evaluate, fit
from tinytorch.datasets import load_digits

ROOT = Path(__file__).resolve().parents[1]
FAST = settings(max_examples=40, deadline=None)


# ------------------------------------------------------------------------------ helpers
def random_mlp(sizes, seed=0):
    model = C.make_mlp(sizes, seed=seed)
    rng = np.random.default_rng(seed)
    for layer in C.prunable_layers(model).values():  # continuous weights: no accidental ties
        layer.weight.data[...] = rng.standard_normal(layer.weight.shape)
    return model


def small_cnn(seed=0):
    manual_seed(seed)
    model = Sequential(
        Conv2d(1, 6, 3, padding=1),  # (N, 6, 8, 8)
        ReLU(),
        MaxPool2d(2),  # (N, 6, 4, 4)
        Conv2d(6, 8, 3, padding=1),  # (N, 8, 4, 4)
        ReLU(),
        MaxPool2d(2),  # (N, 8, 2, 2)
        Flatten(),  # (N, 32)
        Linear(32, 12),
        ReLU(),
        Linear(12, 10),
    )
    rng = np.random.default_rng(seed)
    for layer in C.prunable_layers(model).values():
        layer.weight.data[...] = rng.standard_normal(layer.weight.shape) * 0.5
    return model


def forward(model, x):
    with no_grad():
        return model(Tensor(x)).data


def zero_counts(model):
    return {n: int((m.weight.data == 0).sum()) for n, m in C.prunable_layers(model).items()}


mlp_sizes = st.lists(st.integers(1, 12), min_size=2, max_size=4).map(lambda h: [5, *h, 3])
amounts = st.floats(0.0, 1.0, allow_nan=False)


# ============================================================================ unstructured
@FAST
@given(
    shape=st.lists(st.integers(1, 9), min_size=1, max_size=3),
    amount=amounts,
    seed=st.integers(0, 2**16),
    ties=st.booleans(),
)
def test_magnitude_mask_prunes_exactly_the_smallest(shape, amount, seed, ties):
    rng = np.random.default_rng(seed)
    w = rng.standard_normal(shape)
    if ties:
        w = np.round(w)  # many equal magnitudes (and zeros): the count must still be exact
    keep = C.magnitude_mask(w, amount)
    assert keep.shape == w.shape and keep.dtype == bool
    assert (~keep).sum() == round(amount * w.size)
    if keep.any() and (~keep).any():
        assert np.abs(w[~keep]).max() <= np.abs(w[keep]).min()


@FAST
@given(sizes=mlp_sizes, amount=amounts, seed=st.integers(0, 1000))
def test_per_layer_pruning_reaches_sparsity_within_one_weight(sizes, amount, seed):
    model = random_mlp(sizes, seed)
    pruner = C.MagnitudePruner(model, scope="layer")
    masks = pruner.prune(amount)
    for name, layer in pruner.layers.items():
        n = layer.weight.numel()
        assert abs(int((~masks[name]).sum()) - amount * n) <= 1
        assert abs(int((layer.weight.data == 0).sum()) - amount * n) <= 1
        assert np.all(layer.weight.data[~masks[name]] == 0)
        assert C.get_mask(layer) is masks[name] or np.array_equal(C.get_mask(layer), masks[name])


@FAST
@given(sizes=mlp_sizes, amount=amounts, seed=st.integers(0, 1000))
def test_global_pruning_one_threshold_total_within_one_weight(sizes, amount, seed):
    model = random_mlp(sizes, seed)
    for i, layer in enumerate(C.prunable_layers(model).values()):
        layer.weight.data *= 10.0**i  # layers on different scales: global must not spread evenly
    before = {n: np.abs(m.weight.data).copy() for n, m in C.prunable_layers(model).items()}
    pruner = C.MagnitudePruner(model, scope="global")
    masks = pruner.prune(amount)
    total = sum(w.size for w in before.values())
    pruned = sum(int((~m).sum()) for m in masks.values())
    assert abs(pruned - amount * total) <= 1
    if 0 < pruned < total:  # one threshold: every pruned |w| <= every kept |w|, across layers
        gone = max(before[n][~masks[n]].max(initial=0.0) for n in masks)
        kept = min(before[n][masks[n]].min(initial=np.inf) for n in masks)
        assert gone <= kept


def test_global_and_per_layer_pruning_differ_on_scaled_layers():
    model = random_mlp([5, 8, 8, 3], seed=1)
    layers = list(C.prunable_layers(model).values())
    layers[0].weight.data *= 100.0  # the first layer is large: global pruning spares it
    g = copy.deepcopy(model)
    C.MagnitudePruner(g, scope="global").prune(0.5)
    sp = C.layer_sparsity(g)
    assert sp["0"] < 0.1 and sp["2"] > 0.55 and sp["4"] > 0.55
    per = copy.deepcopy(model)
    C.MagnitudePruner(per, scope="layer").prune(0.5)
    assert all(abs(s - 0.5) < 0.07 for s in C.layer_sparsity(per).values())


def test_pruned_weights_stay_pruned_when_pruning_again():
    model = random_mlp([5, 10, 3], seed=2)
    pruner = C.MagnitudePruner(model)
    first = pruner.prune(0.6)
    second = pruner.prune(0.3)  # less than the current sparsity: nothing comes back
    for name in first:
        assert not (second[name] & ~first[name]).any()
    third = pruner.prune(0.8)
    for name in first:
        assert not (third[name] & ~first[name]).any()
        assert abs((~third[name]).mean() - 0.8) < 0.05


@FAST
@given(
    amount=st.floats(0.05, 0.95),
    opt_kind=st.sampled_from(["sgd", "momentum", "adam", "adamw"]),
    scope=st.sampled_from(["layer", "global"]),
    seed=st.integers(0, 100),
)
def test_masked_weights_stay_zero_through_fine_tuning(amount, opt_kind, scope, seed):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((16, 5)).astype(np.float32)
    y = rng.integers(0, 3, 16)
    model = random_mlp([5, 8, 3], seed)
    make = {
        "sgd": lambda p: SGD(p, lr=0.1),
        "momentum": lambda p: SGD(p, lr=0.1, momentum=0.9, weight_decay=1e-3),
        "adam": lambda p: Adam(p, lr=0.01),
        "adamw": lambda p: AdamW(p, lr=0.01, weight_decay=0.1),
    }[opt_kind]
    pruner = C.MagnitudePruner(model, scope=scope)
    masks = pruner.prune(amount)
    before = zero_counts(model)
    opt = pruner.wrap(make(model.parameters()))
    for _ in range(4):
        loss = cross_entropy(model(Tensor(x)), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    for name, layer in pruner.layers.items():
        assert np.all(layer.weight.data[~masks[name]] == 0)
    after = zero_counts(model)
    assert all(after[n] >= before[n] for n in before)  # the sparsity never drops


def test_without_the_wrapper_training_revives_pruned_weights():
    """The control for the test above: the masking is what keeps the zeros."""
    rng = np.random.default_rng(0)
    x, y = rng.standard_normal((16, 5)).astype(np.float32), rng.integers(0, 3, 16)
    model = random_mlp([5, 8, 3], 0)
    pruner = C.MagnitudePruner(model)
    masks = pruner.prune(0.5)
    opt = Adam(model.parameters(), lr=0.01)
    loss = cross_entropy(model(Tensor(x)), y)
    opt.zero_grad()
    loss.backward()
    opt.step()
    revived = sum(int((m.weight.data[~masks[n]] != 0).sum()) for n, m in pruner.layers.items())
    assert revived > 0


def test_masked_optimizer_works_inside_fit():
    rng = np.random.default_rng(1)
    x, y = rng.standard_normal((40, 5)).astype(np.float32), rng.integers(0, 3, 40)
    model = random_mlp([5, 8, 3], 1)
    pruner = C.MagnitudePruner(model, scope="global")
    pruner.prune(0.7)
    opt = pruner.wrap(Adam(model.parameters(), lr=0.01))
    loader = DataLoader(TensorDataset(x, y), batch_size=8, shuffle=True, seed=0)
    fit(model, loader, cross_entropy, opt, 3, progress=False)
    assert opt.step_count == 15
    assert abs(pruner.overall_sparsity() - 0.7) < 0.02
    assert opt.lr == 0.01  # the wrapper exposes the inner optimizer's attributes


def test_remove_makes_pruning_permanent():
    model = random_mlp([5, 8, 3], 3)
    layer = model[0]
    C.l1_unstructured(layer, "weight", 0.5)
    zeros = layer.weight.data == 0
    assert C.get_mask(layer) is not None
    assert "0.weight_mask" not in model.state_dict()  # non-persistent: state dicts unchanged
    C.remove(layer, "weight")
    assert C.get_mask(layer) is None
    assert np.array_equal(layer.weight.data == 0, zeros)
    with pytest.raises(ValueError, match="not pruned"):
        C.remove(layer, "weight")
    with pytest.raises(ValueError, match="no parameter 'kernel'"):
        C.l1_unstructured(layer, "kernel", 0.5)


@FAST
@given(
    s_f=st.floats(0.05, 0.99),
    frac=st.floats(0.0, 1.0),
    t0=st.integers(0, 20),
    n=st.integers(1, 15),
    dt=st.integers(1, 6),
)
def test_cubic_schedule_is_zhu_gupta(s_f, frac, t0, n, dt):
    s_i = frac * s_f
    sched = C.CubicSchedule(s_f, s_i, t0, n, dt)
    values = [sched(t) for t in range(t0 + n * dt + 10)]
    assert all(v == 0.0 for v in values[:t0])
    assert math.isclose(values[t0], s_i, abs_tol=1e-12)
    assert math.isclose(values[-1], s_f, abs_tol=1e-12)
    assert all(b >= a - 1e-12 for a, b in zip(values, values[1:]))
    for k in range(n + 1):
        t = t0 + k * dt
        assert sched.is_pruning_step(t)
        assert math.isclose(values[t], s_f + (s_i - s_f) * (1 - k / n) ** 3, abs_tol=1e-12)
    assert not sched.is_pruning_step(t0 + n * dt + dt)


def test_gradual_pruning_follows_the_schedule_during_training():
    rng = np.random.default_rng(2)
    x, y = rng.standard_normal((32, 5)).astype(np.float32), rng.integers(0, 3, 32)
    model = random_mlp([5, 16, 3], 2)
    pruner = C.MagnitudePruner(model, scope="global")
    sched = C.CubicSchedule(final_sparsity=0.9, begin_step=2, n_prunes=5, frequency=3)
    opt = pruner.wrap(SGD(model.parameters(), lr=0.05), schedule=sched)
    seen = []
    for _ in range(sched.end_step + 4):
        loss = cross_entropy(model(Tensor(x)), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        seen.append(pruner.overall_sparsity())
    assert seen[0] == 0.0 and seen[1] == 0.0  # nothing before t0
    assert all(b >= a for a, b in zip(seen, seen[1:]))
    total = sum(m.weight.numel() for m in pruner.layers.values())
    assert abs(seen[-1] * total - 0.9 * total) <= 1
    with pytest.raises(ValueError, match="needs a pruner"):
        C.MaskedOptimizer(SGD(model.parameters(), lr=0.1), model, schedule=sched)


# ------------------------------------------------------------------------------ errors
@pytest.mark.parametrize("bad", [-0.1, 1.01, float("nan"), float("inf")])
def test_invalid_amounts_raise_naming_the_value(bad):
    model = random_mlp([5, 8, 3])
    for call in (
        lambda: C.check_amount(bad),
        lambda: C.MagnitudePruner(model).prune(bad),
        lambda: C.MagnitudePruner(model, scope="global").prune(bad),
        lambda: C.structured_prune(model, bad),
        lambda: C.magnitude_mask(np.ones(4), bad),
    ):
        with pytest.raises(ValueError, match=str(bad)):
            call()


def test_non_numeric_amounts_and_bad_options_raise():
    model = random_mlp([5, 8, 3])
    for bad in ("0.5", None, True):
        with pytest.raises(TypeError, match="number in"):
            C.check_amount(bad)
    with pytest.raises(ValueError, match="scope"):
        C.MagnitudePruner(model, scope="everything")
    with pytest.raises(ValueError, match="norm"):
        C.structured_prune(model, 0.5, norm="l3")
    with pytest.raises(ValueError, match="initial_sparsity"):
        C.CubicSchedule(final_sparsity=0.3, initial_sparsity=0.5)


def test_unknown_layer_names_raise_naming_the_layer():
    model = random_mlp([5, 8, 4, 3])
    with pytest.raises(ValueError, match=r"unknown layer 'fc9'.*'0', '2', '4'"):
        C.MagnitudePruner(model, layers=["fc9"])
    with pytest.raises(ValueError, match="unknown layer '1'"):  # a ReLU is not prunable
        C.structured_prune(model, 0.5, layers=["1"])


def test_pruning_every_unit_or_the_output_layer_raises():
    model = random_mlp([5, 8, 4, 3])
    with pytest.raises(ValueError, match="all 8 units of layer '0'"):
        C.structured_prune(model, 1.0)
    with pytest.raises(ValueError, match="all 4 units of layer '2'"):
        C.structured_prune(model, 0.9, layers=["2"])
    with pytest.raises(ValueError, match="layer '4'.*output layer"):
        C.structured_prune(model, 0.5, layers=["4"])
    mixed = Sequential(Linear(5, 8), LayerNorm(8), Linear(8, 3))
    with pytest.raises(ValueError, match="LayerNorm"):
        C.structured_prune(mixed, 0.5)


# ============================================================================ structured
@FAST
@given(sizes=mlp_sizes, data=st.data(), seed=st.integers(0, 1000))
def test_structured_pruning_keeps_shape_and_exact_outputs_of_zero_units(sizes, data, seed):
    model = random_mlp(sizes, seed)
    rng = np.random.default_rng(seed)
    hidden = list(C.prunable_layers(model).items())[:-1]
    name, layer = data.draw(st.sampled_from(hidden))
    n = layer.out_features
    if n < 2:
        return
    k = data.draw(st.integers(1, n - 1))
    dead = rng.choice(n, size=k, replace=False)
    layer.weight.data[:, dead] = 0
    layer.bias.data[dead] = 0
    original = copy.deepcopy(model.state_dict())
    small = C.structured_prune(model, k / n, layers=[name])
    x = rng.standard_normal((7, sizes[0])).astype(np.float32)
    np.testing.assert_allclose(forward(small, x), forward(model, x), rtol=1e-5, atol=1e-5)
    assert small[int(name)].out_features == n - k
    for key, value in model.state_dict().items():  # the input model is untouched
        assert np.array_equal(value, original[key])


@FAST
@given(
    sizes=st.lists(st.integers(2, 12), min_size=1, max_size=3).map(lambda h: [5, *h, 3]),
    amount=st.floats(0.0, 0.6),  # with >= 2 units, round(0.6 * n) < n: a unit always stays
    seed=st.integers(0, 100),
)
def test_structured_pruning_shrinks_every_hidden_layer_and_its_consumer(sizes, amount, seed):
    model = random_mlp(sizes, seed)
    small = C.structured_prune(model, amount, norm="l2")
    before = list(C.prunable_layers(model).values())
    after = list(C.prunable_layers(small).values())
    for i, (b, a) in enumerate(zip(before, after)):
        if i < len(before) - 1:
            assert a.out_features == b.out_features - round(amount * b.out_features)
            assert after[i + 1].in_features == a.out_features
        else:
            assert a.out_features == b.out_features
    assert small.num_parameters() <= model.num_parameters()
    x = np.ones((2, sizes[0]), np.float32)
    assert forward(small, x).shape == forward(model, x).shape


def test_structured_pruning_keeps_the_largest_units():
    model = random_mlp([4, 6, 2])
    model[0].weight.data[...] = np.arange(1, 7, dtype=np.float32)  # column j has norm ~ j+1
    small = C.structured_prune(model, 0.5)
    np.testing.assert_array_equal(small[0].weight.data[0], [4, 5, 6])
    np.testing.assert_array_equal(small[2].weight.data, model[2].weight.data[3:])


@pytest.mark.parametrize("layer", ["0", "3"])
def test_structured_pruning_cnn_filters_through_flatten(layer):
    cnn = small_cnn(seed=4)
    rng = np.random.default_rng(4)
    conv = cnn[int(layer)]
    dead = rng.choice(conv.out_channels, size=conv.out_channels // 2, replace=False)
    conv.weight.data[dead] = 0
    conv.bias.data[dead] = 0
    cut = C.StructuredPruner(layers=[layer]).prune(cnn, 0.5)
    kept = conv.out_channels - len(dead)
    assert cut[int(layer)].weight.shape[0] == kept
    if layer == "0":
        assert cut[3].weight.shape == (8, kept, 3, 3)  # the next conv loses input channels
    else:
        assert cut[7].weight.shape == (kept * 2 * 2, 12)  # (C, H, W) flatten order
    x = rng.standard_normal((5, 1, 8, 8)).astype(np.float32)
    np.testing.assert_allclose(forward(cut, x), forward(cnn, x), rtol=1e-5, atol=1e-5)


def test_structured_pruning_whole_cnn_and_training_mode_is_kept():
    cnn = small_cnn(seed=5)
    cnn.eval()
    cut = C.structured_prune(cnn, 0.5)
    assert [tuple(m.weight.shape) for m in C.prunable_layers(cut).values()] == [
        (3, 1, 3, 3), (4, 3, 3, 3), (16, 6), (6, 10)
    ]  # fmt: skip
    assert not cut.training
    x = np.zeros((2, 1, 8, 8), np.float32)
    assert forward(cut, x).shape == (2, 10)


# ============================================================================ storage
@FAST
@given(
    rows=st.integers(1, 40),
    cols=st.integers(1, 300),
    density=st.floats(0.0, 1.0),
    seed=st.integers(0, 1000),
)
def test_csr_round_trip_bytes_and_matmuls(rows, cols, density, seed):
    rng = np.random.default_rng(seed)
    dense = rng.standard_normal((rows, cols)).astype(np.float32)
    dense[rng.random((rows, cols)) >= density] = 0
    a = C.CSRMatrix.from_dense(dense)
    np.testing.assert_array_equal(a.to_dense(), dense)
    assert a.col_indices.dtype == C.index_dtype_for(cols - 1)
    assert a.row_ptr.dtype == C.index_dtype_for(a.nnz)
    itemsize = a.col_indices.dtype.itemsize
    assert a.nbytes == a.nnz * (4 + itemsize) + (rows + 1) * a.row_ptr.dtype.itemsize
    x = rng.standard_normal((cols, 3)).astype(np.float32)
    want = dense.astype(np.float64) @ x
    for kernel in (C.csr_matmul, C.csr_matmul_blocked):
        np.testing.assert_allclose(kernel(a, x), want, rtol=1e-4, atol=1e-4)
        np.testing.assert_allclose(kernel(a, x[:, 0]), want[:, 0], rtol=1e-4, atol=1e-4)
    with pytest.raises(ValueError, match="cannot matmul"):
        C.csr_matmul(a, np.ones((cols + 1, 2)))


def test_csr_is_not_smaller_at_half_sparsity_with_int32_indices():
    w = np.random.default_rng(0).standard_normal((256, 256)).astype(np.float32)
    w[:, ::2] = 0
    dense = w.nbytes
    a32 = C.CSRMatrix.from_dense(w, index_dtype=np.int32)
    assert a32.nbytes == 32768 * 8 + 257 * 4 > dense
    small = C.CSRMatrix.from_dense(w)  # uint8 columns, uint16 row pointers
    assert small.col_indices.dtype == np.uint8 and small.row_ptr.dtype == np.uint16
    assert small.nbytes < dense
    assert C.index_dtype_for(255) == np.uint8 and C.index_dtype_for(256) == np.uint16
    assert C.index_dtype_for(70000) == np.uint32


def test_model_size_counts_dense_and_csr_bytes():
    model = random_mlp([64, 32, 10])
    dense0 = C.model_size(model)
    assert dense0.dense_bytes == model.num_parameters() * 4
    assert dense0.sparse_bytes > dense0.dense_bytes  # CSR of a dense model is larger
    C.MagnitudePruner(model, scope="global").prune(0.9)
    r = C.model_size(model)
    assert r.dense_bytes == dense0.dense_bytes  # zeros stored densely cost the same
    assert r.ratio < 0.3
    assert r.nonzero == model.num_parameters() - round(0.9 * (64 * 32 + 32 * 10))
    names = [row[0] for row in r.layers]
    assert names == ["0.weight", "0.bias", "2.weight", "2.bias"]


def test_sparse_linear_and_to_sparse_match_the_dense_model():
    model = random_mlp([12, 20, 7], 6)
    C.MagnitudePruner(model).prune(0.8)
    sparse = C.to_sparse(model)
    assert isinstance(sparse[0], C.SparseLinear) and sparse[0].csr.nnz == round(0.2 * 240)
    x = np.random.default_rng(6).standard_normal((9, 12)).astype(np.float32)
    np.testing.assert_allclose(forward(sparse, x), forward(model, x), rtol=1e-5, atol=1e-5)
    with pytest.raises(ValueError, match="expects"):
        sparse[0](np.ones((2, 11), np.float32))


def test_latency_helpers_return_medians():
    calls = []
    t = C.measure_latency(lambda: calls.append(1), repeat=3, warmup=2, min_time=0.0)
    assert t >= 0 and len(calls) >= 2 + 1 + 3
    times = C.compare_latency({"a": lambda: None, "b": lambda: sum(range(1000))}, repeat=3)
    assert set(times) == {"a", "b"} and times["b"] > times["a"]
    with pytest.raises(ValueError, match="repeat"):
        C.compare_latency({"a": lambda: None}, repeat=0)


def test_plots_draw_what_they_say(monkeypatch):
    monkeypatch.setenv("MPLBACKEND", "Agg")
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    model = random_mlp([6, 8, 3])
    pruned = copy.deepcopy(model)
    C.MagnitudePruner(pruned).prune(0.5)
    fig = C.plot_layer_sparsity(pruned)
    heights = [p.get_height() for p in fig.axes[0].patches]
    assert np.allclose(heights, [100 * s for s in C.layer_sparsity(pruned).values()])
    fig2 = C.plot_weight_histograms(model, pruned)
    assert len(fig2.axes) == 2 and "50%" in fig2.axes[1].get_title()
    fig3 = C.plot_mask(C.get_mask(pruned[0]))
    assert fig3.axes[0].images[0].get_array().shape == (6, 8)
    plt.close("all")


# ============================================================================ distillation
def _lsm(z):
    z = z - z.max(axis=1, keepdims=True)
    return z - np.log(np.exp(z).sum(axis=1, keepdims=True))


@FAST
@given(
    n=st.integers(1, 8),
    c=st.integers(2, 10),
    temperature=st.floats(0.5, 10.0),
    alpha=st.floats(0.0, 1.0),
    scale=st.floats(0.1, 50.0),
    seed=st.integers(0, 1000),
)
def test_distillation_loss_is_the_formula(n, c, temperature, alpha, scale, seed):
    rng = np.random.default_rng(seed)
    s = rng.standard_normal((n, c)) * scale
    t = rng.standard_normal((n, c)) * scale
    y = rng.integers(0, c, n)
    with default_dtype(np.float64):
        got = C.distillation_loss(Tensor(s), t, y, temperature, alpha).item()
    pt = np.exp(_lsm(t / temperature))
    kl = np.mean(np.sum(pt * (_lsm(t / temperature) - _lsm(s / temperature)), axis=1))
    ce = -np.mean(_lsm(s)[np.arange(n), y])
    want = alpha * temperature**2 * kl + (1 - alpha) * ce
    assert math.isclose(got, want, rel_tol=1e-9, abs_tol=1e-9)


def test_distillation_loss_gradient_matches_finite_differences():
    rng = np.random.default_rng(0)
    t = rng.standard_normal((4, 5)) * 3
    y = rng.integers(0, 5, 4)
    with default_dtype(np.float64):
        s = Tensor(rng.standard_normal((4, 5)) * 3, requires_grad=True)
        gradcheck(lambda z: C.distillation_loss(z, t, y, 3.0, 0.7), [s])


def test_distillation_loss_edges():
    rng = np.random.default_rng(1)
    s = rng.standard_normal((6, 4)).astype(np.float32)
    t = rng.standard_normal((6, 4)).astype(np.float32)
    y = rng.integers(0, 4, 6)
    hard = C.distillation_loss(Tensor(s), t, y, 4.0, 0.0).item()
    assert math.isclose(hard, cross_entropy(Tensor(s), y).item(), rel_tol=1e-6)
    same = C.distillation_loss(Tensor(s), s, y, 2.0, 1.0).item()
    assert abs(same) < 1e-6  # KL of a distribution with itself
    big = C.distillation_loss(
        Tensor(np.array([[3e4, -3e4, 0.0]], np.float32)), np.array([[-3e4, 3e4, 0.0]]), [2], 1.0
    )
    assert np.isfinite(big.item())
    teacher = Tensor(t, requires_grad=True)
    student = Tensor(s, requires_grad=True)
    C.distillation_loss(student, teacher, y).backward()
    assert teacher.grad is None and student.grad is not None
    for bad in (0.0, -1.0, float("nan")):
        with pytest.raises(ValueError, match="temperature"):
            C.distillation_loss(Tensor(s), t, y, bad)
    with pytest.raises(ValueError, match="alpha"):
        C.distillation_loss(Tensor(s), t, y, 2.0, 1.5)
    with pytest.raises(ValueError, match=r"\(6, 4\).*\(6, 3\)"):
        C.distillation_loss(Tensor(s), t[:, :3], y)


# ============================================================================ digits targets
# The recipe of the module notebook: raw pixels in [0, 1] (load_digits), Adam.
TEACHER = [64, 256, 256, 10]
STUDENT = [64, 32, 10]


def _train_loader(x, y, seed, batch_size=32):
    return DataLoader(TensorDataset(x, y), batch_size=batch_size, shuffle=True, seed=seed)


@pytest.fixture(scope="session")
def digits():
    xtr, ytr = load_digits("train")
    xte, yte = load_digits("test")
    test = DataLoader(TensorDataset(xte, yte), batch_size=512)
    teacher = C.make_mlp(TEACHER, seed=0)
    fit(teacher, _train_loader(xtr, ytr, 0), cross_entropy,
        Adam(teacher.parameters(), lr=2e-3), 40, progress=False)  # fmt: skip
    return {"x": xtr, "y": ytr, "test": test, "teacher": teacher,
            "acc": evaluate(teacher, test)}  # fmt: skip


def _copy_of(d):
    model = C.make_mlp(TEACHER)
    model.load_state_dict(d["teacher"].state_dict())
    return model


@pytest.mark.slow
def test_teacher_is_a_good_baseline(digits):
    assert digits["acc"] >= 0.96, f"baseline accuracy {digits['acc']:.4f}"


@pytest.mark.slow
def test_90_percent_sparsity_within_2_points_after_fine_tuning(digits):
    model = _copy_of(digits)
    pruner = C.MagnitudePruner(model, scope="global")
    pruner.prune(0.9)
    opt = pruner.wrap(Adam(model.parameters(), lr=1e-3))
    fit(model, _train_loader(digits["x"], digits["y"], 1), cross_entropy, opt, 10,
        progress=False)  # fmt: skip
    acc = evaluate(model, digits["test"])
    total = sum(m.weight.numel() for m in pruner.layers.values())
    assert abs(pruner.overall_sparsity() * total - 0.9 * total) <= 1
    assert acc >= digits["acc"] - 0.02, f"{acc:.4f} vs baseline {digits['acc']:.4f}"


@pytest.mark.slow
def test_half_of_hidden_units_removed_within_3_points_after_fine_tuning(digits):
    small = C.structured_prune(digits["teacher"], 0.5)
    assert [m.weight.shape for m in C.prunable_layers(small).values()] == [
        (64, 128), (128, 128), (128, 10)
    ]  # fmt: skip
    fit(small, _train_loader(digits["x"], digits["y"], 1), cross_entropy,
        Adam(small.parameters(), lr=1e-3), 10, progress=False)  # fmt: skip
    acc = evaluate(small, digits["test"])
    assert acc >= digits["acc"] - 0.03, f"{acc:.4f} vs baseline {digits['acc']:.4f}"


@pytest.mark.slow
def test_distilled_student_beats_plain_student_and_nears_teacher(digits):
    teacher = digits["teacher"]
    n_student = C.make_mlp(STUDENT).num_parameters()
    assert n_student <= teacher.num_parameters() / 4
    accs = {"distilled": [], "plain": []}
    for seed in (0, 1, 2):
        for kind, alpha in (("distilled", 0.9), ("plain", 0.0)):
            student = C.make_mlp(STUDENT, seed=seed)
            C.distill(student, teacher, _train_loader(digits["x"], digits["y"], seed, 64),
                      Adam(student.parameters(), lr=3e-3), 60, temperature=8.0, alpha=alpha)
            accs[kind].append(evaluate(student, digits["test"]))
    distilled, plain = np.mean(accs["distilled"]), np.mean(accs["plain"])
    assert distilled >= digits["acc"] - 0.02, f"distilled {distilled:.4f}, teacher {digits['acc']}"
    assert distilled > plain, f"distilled {accs['distilled']} vs plain {accs['plain']}"


# ============================================================================ bench
@pytest.mark.slow
def test_bench_quick_runs_and_writes_json(tmp_path):
    out = tmp_path / "compression.json"
    env = {**os.environ, "MPLBACKEND": "Agg", "OPENBLAS_NUM_THREADS": "1"}
    proc = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "compression.py"), "--quick", "--json", str(out),
         "--png", str(tmp_path / "curve.png")],
        capture_output=True, text=True, timeout=120, env=env, cwd=ROOT,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout + proc.stderr
    data = json.loads(out.read_text())
    assert data["bench"] == "compression" and data["quick"] is True
    labels = [row["model"] for row in data["results"]["rows"]]
    for want in ("baseline", "unstructured 90%", "structured 50%", "distilled student"):
        assert want in labels
    assert (tmp_path / "curve.png").stat().st_size > 0
    assert "PASS" in proc.stdout or "FAIL" in proc.stdout


# ============================================================================ judges
def _judges():
    from tito.judging import load_source

    path = ROOT / "modules" / "18_compression" / "judge.py"
    return load_source(path.read_text(encoding="utf-8"), str(path))


def _equal(a, b) -> bool:
    if isinstance(a, np.ndarray) or isinstance(b, np.ndarray):
        return (isinstance(a, np.ndarray) and isinstance(b, np.ndarray) and a.dtype == b.dtype
                and np.array_equal(a, b))
    if isinstance(a, dict) and isinstance(b, dict):
        return list(a) == list(b) and all(_equal(a[k], b[k]) for k in a)
    if isinstance(a, list | tuple) and isinstance(b, list | tuple):
        return len(a) == len(b) and all(_equal(x, y) for x, y in zip(a, b))
    return type(a) is type(b) and a == b


def test_every_grade_cell_has_a_judge_and_inputs_follow_the_seed():
    """One judge per grade cell of the notebook; the inputs of a seed are drawn the same way
    twice (grading draws them for the probe and the judge keeps its own copy) and plain data."""
    from tito.modules import load_module
    from tito.plaindata import decode, encode
    from tito.source import parse_source

    judges = _judges()
    cells = parse_source(load_module(ROOT / "modules" / "18_compression")).cells
    assert judges.checks == {c.grade_id for c in cells if c.is_grade}
    for check in sorted(judges.checks):
        for seed in (0, 1, 2**62 + 5):
            first, again = judges.draw(check, seed), judges.draw(check, seed)
            assert _equal(first, again), f"{check}: inputs of seed {seed} differ between draws"
            assert _equal(decode(encode(first)), first), f"{check}: inputs are not plain data"
        assert not _equal(judges.draw(check, 1), judges.draw(check, 2)), f"{check}: seed unused"


def test_judges_fail_a_probe_that_collected_nothing_with_a_message():
    """An empty or malformed probe output loses the points with a stated reason, never a crash."""
    from tito.judging import verdict

    judges = _judges()
    for check in sorted(judges.checks):
        inputs = judges.draw(check, 7)
        for outputs in ({}, {k: None for k in ("m0", "g0", "sgd", "c0", "lin_l1", "lin_out",
                                               "csr0", "out0", "d0")}):
            frac, why = verdict(judges, check, inputs, outputs, None)
            assert frac == 0.0 and why, f"{check}: {outputs} judged {frac} ({why})"
