# ---
# jupyter:
#   jupytext:
#     text_representation:
#       extension: .py
#       format_name: percent
#       format_version: '1.3'
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # Module 18: Compression — pruning, sparsity and distillation
#
# Module 17 stored every weight in fewer bits. This module asks the next question:
# **we're using fewer bits, but can we remove weights entirely?**
#
# Trained networks are heavily over-parameterised. Many weights are close to zero and the
# network barely notices when they are set to exactly zero, provided it gets a few epochs to
# re-adjust the rest. The goal we test against in this module is the classic one: **90%
# of the weights removed with less than a few points of accuracy lost**.
#
# But "removed" has two very different meanings, and this module is about the difference:
#
# | technique | what disappears | smaller? | faster? |
# |---|---|---|---|
# | unstructured pruning | single weights, anywhere | in a sparse format, past break-even | no |
# | structured pruning | whole neurons, channels, filters | yes: matrices shrink | yes |
# | distillation | the big model (a small one imitates it) | yes | yes |
#
# You will build, in order:
#
# 1. **Magnitude masks**, per layer and global (one threshold across layers), kept *beside*
#    the weights as in `torch.nn.utils.prune`, with fine-tuning that keeps pruned weights at
#    zero, and the gradual cubic sparsity schedule of Zhu & Gupta (2017).
# 2. **Pictures** of where the zeros are: per-layer sparsity, weight histograms, mask images.
# 3. **Structured pruning** that physically removes neurons or filters *and* the inputs of the
#    next layer that read them, returning a new, smaller model.
# 4. **Honest size accounting**: the compressed-sparse-row (CSR) format, and why 50%
#    sparsity does not make a model smaller.
# 5. **Speed**: a vectorised CSR matmul against the dense matmul, and why unstructured zeros
#    alone buy no speed on a CPU.
# 6. **Knowledge distillation** with Hinton's temperature-scaled loss.
#
# Every number printed below is measured when the cell runs, on the bundled 8x8 digits.

# %%
#| default_exp compression

# %%
#| export
"""Compression: magnitude and structured pruning, sparse storage, knowledge distillation.

Generated from modules/18_compression/compression_dev.py (module 18 of the course).

- Unstructured pruning: `magnitude_mask`, `global_magnitude_masks`, the torch-style
  `l1_unstructured` / `global_unstructured` / `remove` (the keep-mask lives beside the weight
  as the buffer `<name>_mask`), `MagnitudePruner`, `MaskedOptimizer` (pruned weights stay zero
  while fine-tuning) and the cubic schedule of Zhu & Gupta (`cubic_sparsity`, `CubicSchedule`).
- Structured pruning: `unit_norms`, `shrink_outputs`, `shrink_inputs`, `structured_prune`,
  `StructuredPruner` (returns a new, physically smaller `Sequential`).
- Storage and speed: `CSRMatrix` (values + column indices + row pointers, index dtype chosen
  by size), `model_size`, `SparseLinear`, `to_sparse`, `measure_latency`.
- Distillation: `distillation_loss` (KL at temperature T, scaled by T^2, mixed with
  cross-entropy) and the `distill` training loop.
- Pictures: `plot_layer_sparsity`, `plot_weight_histograms`, `plot_mask`.
"""

import copy
import math
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import numpy as np

from tinytorch.core.losses import cross_entropy
from tinytorch.core.nn import (
    GELU,
    Conv2d,
    Dropout,
    Flatten,
    Identity,
    Linear,
    MaxPool2d,
    Module,
    Parameter,
    ReLU,
    Sequential,
    Sigmoid,
    Tanh,
    manual_seed,
)
from tinytorch.core.tensor import Tensor, no_grad

__all__ = [
    "make_mlp",
    # unstructured pruning
    "check_amount",
    "prune_count",
    "magnitude_mask",
    "global_magnitude_masks",
    "PRUNABLE",
    "prunable_layers",
    "select_layers",
    "get_mask",
    "l1_unstructured",
    "global_unstructured",
    "remove",
    "apply_masks",
    "mask_gradients",
    "layer_sparsity",
    "model_sparsity",
    "MaskedOptimizer",
    "MagnitudePruner",
    "cubic_sparsity",
    "CubicSchedule",
    # pictures
    "plot_layer_sparsity",
    "plot_weight_histograms",
    "plot_mask",
    # structured pruning
    "unit_norms",
    "shrink_outputs",
    "shrink_inputs",
    "CHANNELWISE",
    "keep_units",
    "structured_prune",
    "StructuredPruner",
    # storage and speed
    "index_dtype_for",
    "CSRMatrix",
    "csr_matmul",
    "SizeReport",
    "model_size",
    "csr_matmul_blocked",
    "SparseLinear",
    "to_sparse",
    "compare_latency",
    "measure_latency",
    # distillation
    "distillation_loss",
    "distill",
]

# %% [markdown]
# ## Setup: a model worth compressing
#
# The running example is a multi-layer perceptron on the 8x8 digits (64 inputs, 10 classes),
# deliberately wider than it needs to be: 64 → 256 → 256 → 10. `make_mlp` builds such a
# `Sequential` of `Linear` and `ReLU` layers from a seed, so every experiment below starts
# from the same weights.
#
# The trained baseline ships with the package (`load_pretrained("digits_mlp_256")`: 40 epochs
# of Adam at lr 2e-3, batch 32, from `make_mlp([64, 256, 256, 10], seed=0)`, made by
# `tools/make_pretrained.py`), so this notebook spends its time on compression, not on
# training the model to compress. Its accuracy below is measured now.

# %%
#| export
def make_mlp(sizes, seed: int = 0) -> Sequential:
    """Sequential MLP: Linear(sizes[0], sizes[1]), ReLU, ..., Linear(sizes[-2], sizes[-1]).

    Re-seeds the layer-initialisation RNG (`manual_seed(seed)`), so equal seeds give equal
    weights.
    """
    sizes = [int(s) for s in sizes]
    if len(sizes) < 2 or min(sizes) <= 0:
        raise ValueError(f"make_mlp needs at least two positive sizes, got {sizes}")
    manual_seed(seed)
    layers: list[Module] = []
    for i, (n_in, n_out) in enumerate(zip(sizes[:-1], sizes[1:])):
        layers.append(Linear(n_in, n_out))
        if i < len(sizes) - 2:
            layers.append(ReLU())
    return Sequential(*layers)


# %%
import time

import numpy as np

from tinytorch.core.losses import cross_entropy
from tinytorch.core.optim import SGD, Adam
from tinytorch.core.tensor import Tensor, no_grad
from tinytorch.core.threads import pin_blas_threads

print(pin_blas_threads(1))  # one BLAS thread: timings compare kernels, not scheduling


def linear_with(weight):  # the checks build their layers with these two
    """A Linear whose (in, out) weight is `weight`."""
    layer = Linear(*weight.shape)
    layer.weight.data[...] = weight
    return layer


def conv_with(weight, bias=None, stride=1, padding=0):
    """A Conv2d whose (out, in, k, k) weight is `weight` (and bias, if given)."""
    out_c, in_c, k, _ = weight.shape
    layer = Conv2d(in_c, out_c, k, stride=stride, padding=padding)
    layer.weight.data[...] = weight
    if bias is not None:
        layer.bias.data[...] = bias
    return layer


def _masked_step():
    tiny = make_mlp([1, 1])
    MaskedOptimizer(SGD(tiny.parameters(), lr=0.0), tiny).step()


EXERCISES = {  # number -> (what to write, a tiny call of it)
    1: ("`magnitude_mask`", lambda: magnitude_mask(np.ones(2), 0.5)),
    2: ("`global_magnitude_masks`", lambda: global_magnitude_masks({"w": np.ones(2)}, 0.5)),
    3: ("`MaskedOptimizer.step`", _masked_step),
    4: ("`cubic_sparsity`", lambda: cubic_sparsity(1, 0.5)),
    5: ("`unit_norms`", lambda: unit_norms(Linear(1, 1))),
    6: ("`shrink_outputs` and `shrink_inputs`",
        lambda: (shrink_outputs(Linear(1, 1), [0]), shrink_inputs(Linear(1, 1), [0]))),
    7: ("`CSRMatrix.from_dense`", lambda: CSRMatrix.from_dense(np.eye(2))),
    8: ("`csr_matmul`", lambda: csr_matmul(
        CSRMatrix(np.ones(1), np.zeros(1, np.uint8), np.array([0, 1], np.uint8), (1, 1)),
        np.ones(1))),
    9: ("`distillation_loss`",
        lambda: distillation_loss(np.zeros((1, 2)), np.zeros((1, 2)), np.array([0]))),
}


def require(*numbers):
    """Stop a cell that uses exercises `numbers` with a message naming those not written."""
    missing = []
    for number in numbers:
        name, call = EXERCISES[number]
        try:
            call()
        except (NotImplementedError, NameError):
            missing.append(f"exercise {number}, {name},")
    if missing:
        them = "them" if len(missing) > 1 else "it"
        raise RuntimeError(f"complete {' and '.join(missing)} first (and run the cells after "
                           f"{them}): this cell uses {them}")


# %% tags=["demo"]
import matplotlib.pyplot as plt

from tinytorch.core.data import DataLoader, TensorDataset
from tinytorch.core.pretrained import load_pretrained
from tinytorch.core.train import evaluate, fit
from tinytorch.datasets import load_digits

X_train, y_train = load_digits("train")
X_test, y_test = load_digits("test")
test_loader = DataLoader(TensorDataset(X_test, y_test), batch_size=512)


def train_loader(seed=0, batch_size=32):
    return DataLoader(TensorDataset(X_train, y_train), batch_size=batch_size, shuffle=True,
                      seed=seed)


def acc(model):
    """Test accuracy in percent."""
    return 100.0 * evaluate(model, test_loader)


baseline = make_mlp([64, 256, 256, 10], seed=0)
baseline.load_state_dict(load_pretrained("digits_mlp_256").state_dict())  # shipped weights
base_acc = acc(baseline)
base_state = baseline.state_dict()  # every experiment restarts from these weights
print(f"baseline 64-256-256-10: {baseline.num_parameters():,} parameters, "
      f"test accuracy {base_acc:.1f}% (pretrained weights, measured now)")


def fresh_baseline():
    """A copy of the trained baseline (same weights, its own arrays)."""
    model = make_mlp([64, 256, 256, 10])
    model.load_state_dict(base_state)
    return model


# %% [markdown]
# ## Part 1 — Unstructured pruning by magnitude
#
# ### 1.1 How many weights is "50%"?
#
# A pruning *amount* is a fraction of a tensor's entries, so it must be a real number in
# [0, 1]. A layer of `n` weights pruned by `amount` loses `round(amount * n)` of them (the
# rule `torch.nn.utils.prune` uses), so the sparsity you ask for is met to within one weight.
# Bad amounts — negative, above one, NaN, a string — are errors that name the value.

# %%
#| export
def check_amount(amount, what: str = "pruning amount") -> float:
    """`amount` as a float in [0, 1]; anything else (NaN, < 0, > 1, non-numbers) raises."""
    if isinstance(amount, bool) or not isinstance(amount, int | float | np.integer | np.floating):
        kind = type(amount).__name__
        raise TypeError(f"{what} must be a number in [0, 1], got {kind} {amount!r}")
    value = float(amount)
    if math.isnan(value) or not 0.0 <= value <= 1.0:
        raise ValueError(f"{what} must be in [0, 1], got {amount!r}")
    return value


def prune_count(amount, n: int) -> int:
    """How many of `n` entries a fraction `amount` removes: round(amount * n)."""
    return int(round(check_amount(amount) * int(n)))


# %% [markdown]
# ### 1.2 The magnitude mask of one tensor
#
# The simplest importance score is the weight's magnitude |w|: a weight near zero contributes
# little to any output. Pruning keeps a boolean **keep-mask** the shape of the weight
# (`True` = kept) and sets the pruned entries to zero.
#
# Write `magnitude_mask(weight, amount, mask=None)`:
#
# - prune exactly `k = prune_count(amount, weight.size)` entries: the `k` smallest |w|
#   (ties broken by position, so the count is exact even when many weights are equal —
#   `np.argsort(..., kind="stable")` does that for you);
# - if a current keep-mask is given, weights it already prunes **stay pruned**: rank them
#   first, and never turn a `False` back into `True` (so asking for less sparsity than the
#   tensor already has changes nothing).
#
# Return the keep-mask (bool, same shape as the weight).

# %% nbgrader={"grade": false, "grade_id": "magnitude_mask", "locked": false, "schema_version": 3, "solution": true, "task": false}
#| export
def _as_array(x) -> np.ndarray:
    return np.asarray(x.data if isinstance(x, Tensor) else x)


def magnitude_mask(weight, amount, mask=None) -> np.ndarray:
    """Keep-mask (bool, weight's shape) that prunes the round(amount * size) smallest |w|.

    Entries that `mask` (a current keep-mask) already prunes are ranked first and stay pruned.
    """
    w = _as_array(weight)
    k = prune_count(amount, w.size)
    if mask is not None:
        mask = np.asarray(mask, dtype=bool)
        if mask.shape != w.shape:
            raise ValueError(f"mask shape {mask.shape} does not match weight shape {w.shape}")
    ### BEGIN SOLUTION
    scores = np.abs(w).astype(np.float64).ravel()
    if mask is not None:
        scores[~mask.ravel()] = -1.0  # already pruned: first in line
    order = np.argsort(scores, kind="stable")
    keep = np.ones(w.size, dtype=bool)
    keep[order[:k]] = False
    if mask is not None:
        keep &= mask.ravel()
    ### END SOLUTION
    return keep.reshape(w.shape)


# %%
require(1)
w_demo = np.array([[0.5, -0.1, 2.0], [-3.0, 0.05, 0.2]])
print(w_demo)
print("keep-mask at 50%:\n", magnitude_mask(w_demo, 0.5))


# %% nbgrader={"grade": true, "grade_id": "magnitude_mask_prunes_the_smallest", "locked": true, "points": 2, "schema_version": 3, "solution": false, "task": false}
def check_magnitude_mask():
    """magnitude_mask prunes exactly round(amount * n) of the smallest |w| and never revives."""
    w = np.array([[0.5, -0.1, 2.0], [-3.0, 0.05, 0.2]])
    m = magnitude_mask(w, 0.5)
    assert isinstance(m, np.ndarray) and m.dtype == bool and m.shape == w.shape, (
        "return a bool array shaped like the weight"
    )
    assert (~m).sum() == 3, f"50% of 6 weights means 3 pruned, you pruned {(~m).sum()}"
    assert m[1, 0], "-3.0 has the largest magnitude |w|: rank by np.abs(w), not by the signed w"
    assert not m[0, 1] and not m[1, 1] and not m[1, 2], "the three smallest |w| must go"
    assert magnitude_mask(w, 0.0).all() and not magnitude_mask(w, 1.0).any(), (
        "amount 0 prunes nothing, amount 1 prunes everything"
    )
    ties = np.array([[1.0, -1.0, 1.0, 1.0], [-1.0, 1.0, 2.0, -1.0]])
    pruned = (~magnitude_mask(ties, 0.5)).sum()
    assert pruned == 4, (
        f"7 weights tie at |w| = 1 and 50% of 8 is 4: prune exactly 4, you pruned {pruned} "
        "(rank with np.argsort(..., kind='stable'), not with a threshold)"
    )
    old = np.array([[True, True, False], [True, False, True]])  # 2 pruned already
    more = magnitude_mask(w, 0.5, mask=old)
    assert not (more & ~old).any(), "a weight the current mask prunes must stay pruned"
    assert (~more).sum() == 3, (
        f"50% with 2 already pruned: 3 pruned in total (the 2 + the smallest other), "
        f"you pruned {(~more).sum()}; rank the already-pruned weights first"
    )
    assert not more[0, 1] and more[1, 2], "the third weight to prune is the smallest remaining |w|"
    less = magnitude_mask(w, 0.0, mask=old)
    assert np.array_equal(less, old), "asking for less sparsity than the mask has changes nothing"


check_magnitude_mask()

### BEGIN HIDDEN TESTS
from tito.probe import probe as _probe

with _probe("18_compression", "magnitude_mask_prunes_the_smallest") as _p:
    _in = _p.inputs
    for _k in range(_in["n_cases"]):
        _p.record(f"m{_k}", magnitude_mask, _in[f"w{_k}"], _in[f"amount{_k}"])
    for _k in range(_in["n_masked"]):
        _p.record(f"mm{_k}", magnitude_mask, _in[f"mw{_k}"], _in[f"mamount{_k}"],
                  mask=_in[f"mold{_k}"])
### END HIDDEN TESTS


# %% [markdown]
# ### 1.3 One threshold across layers (global pruning)
#
# Pruning every layer by the same fraction treats a 64x256 input layer and a 256x10 output
# layer alike. **Global** pruning instead pools the magnitudes of all layers and removes the
# `round(amount * total)` smallest wherever they are: one threshold for the whole model.
# Layers whose weights are small lose more; a layer of large weights may lose almost nothing.
#
# Write `global_magnitude_masks(weights, amount, masks=None)` where `weights` maps names to
# arrays; return a dict of keep-masks with the same names and shapes. The same rules as
# above apply: an exact count, ties by position (concatenate the layers in the order given),
# and weights that `masks[name]` already prunes stay pruned.

# %% nbgrader={"grade": false, "grade_id": "global_magnitude_masks", "locked": false, "schema_version": 3, "solution": true, "task": false}
#| export
def global_magnitude_masks(weights: dict, amount, masks: dict | None = None) -> dict:
    """Keep-masks pruning the round(amount * total) smallest |w| across all tensors at once."""
    if not weights:
        raise ValueError("global pruning needs at least one weight tensor")
    names = list(weights)
    arrays = [_as_array(weights[n]) for n in names]
    total = sum(a.size for a in arrays)
    k = prune_count(amount, total)
    masks = masks or {}
    olds = []
    for n, a in zip(names, arrays):
        old = masks.get(n)
        if old is not None and np.shape(old) != a.shape:
            raise ValueError(f"mask of {n!r} has shape {np.shape(old)}, weight has {a.shape}")
        olds.append(np.ones(a.size, bool) if old is None else np.asarray(old, bool).ravel())
    ### BEGIN SOLUTION
    scores = np.concatenate([np.abs(a).astype(np.float64).ravel() for a in arrays])
    old_keep = np.concatenate(olds)
    scores[~old_keep] = -1.0
    order = np.argsort(scores, kind="stable")
    keep = np.ones(total, dtype=bool)
    keep[order[:k]] = False
    keep &= old_keep
    parts = np.split(keep, np.cumsum([a.size for a in arrays])[:-1])
    ### END SOLUTION
    return {n: part.reshape(a.shape) for n, a, part in zip(names, arrays, parts)}


# %%
require(2)
small = np.full((4, 4), 0.01)
big = np.full((2, 2), 5.0)
demo = global_magnitude_masks({"small": small, "big": big}, 0.5)
print("global 50% over a layer of small and a layer of big weights:")
for name, m in demo.items():
    print(f"  {name}: {(~m).sum()} of {m.size} pruned")


# %% nbgrader={"grade": true, "grade_id": "global_pruning_ranks_across_layers", "locked": true, "points": 2, "schema_version": 3, "solution": false, "task": false}
def check_global_masks():
    """Global pruning uses one threshold over all layers, with an exact total count."""
    small, big = np.full((4, 4), 0.01), np.full((2, 2), -5.0)
    m = global_magnitude_masks({"small": small, "big": big}, 0.5)
    assert isinstance(m, dict) and list(m) == ["small", "big"], "return one mask per name"
    assert m["small"].shape == (4, 4) and m["big"].shape == (2, 2), "masks shaped like weights"
    assert m["big"].all(), (
        "the layer of -5.0 weights must keep all of them at 50% global: one threshold on |w| "
        "over all layers (not the same fraction per layer, not the signed value)"
    )
    assert (~m["small"]).sum() == 10, "10 of the 20 weights, all from the small layer, must go"
    three = {"a": np.array([[3.0, -0.2]]), "b": np.array([[0.1], [-4.0], [0.3]]),
             "c": np.array([[-0.4, 5.0, 0.05]])}
    m3 = global_magnitude_masks(three, 0.5)
    assert [x.shape for x in m3.values()] == [(1, 2), (3, 1), (1, 3)], (
        "split the joint mask back at the layer boundaries (np.cumsum of the sizes)"
    )
    kept = {n: np.abs(w[m3[n]]).tolist() for n, w in three.items()}
    assert kept == {"a": [3.0], "b": [4.0], "c": [0.4, 5.0]}, (
        f"50% of 8 weights over three layers keeps the 4 largest |w|; you kept {kept}"
    )
    first = {"a": np.array([[False, True]]), "b": np.ones((3, 1), bool)}  # a[0, 0] pruned
    again = global_magnitude_masks(three, 0.25, masks=first)
    assert not again["a"][0, 0], "a weight the current mask prunes must stay pruned"
    total = sum(int((~x).sum()) for x in again.values())
    assert total == 2, (
        f"25% of 8 is 2 pruned in total, with the already-pruned one counted first; "
        f"you pruned {total}"
    )


check_global_masks()

### BEGIN HIDDEN TESTS
from tito.probe import probe as _probe

with _probe("18_compression", "global_pruning_ranks_across_layers") as _p:
    for _k, _case in enumerate(_p.inputs["cases"]):
        _p.record(f"g{_k}", global_magnitude_masks, _case["weights"], _case["amount"],
                  _case["masks"])
### END HIDDEN TESTS


# %% [markdown]
# ### 1.4 Masks beside the weights
#
# PyTorch's `torch.nn.utils.prune.l1_unstructured(module, name="weight", amount)` does not
# throw the mask away: it keeps the original tensor as `weight_orig`, the mask as the buffer
# `weight_mask`, and recomputes `weight = weight_orig * weight_mask` before every forward.
# `remove(module, "weight")` later makes the pruning permanent and drops the bookkeeping.
#
# Our `Module` has no forward hooks, so we keep the same bookkeeping a little differently:
# the keep-mask is stored beside the weight as the (non-persistent) buffer `weight_mask`,
# and the pruned entries of the weight itself are set to zero. Training will try to bring
# them back (their gradients are not zero!), so after every optimizer step the masks must be
# re-applied: `apply_masks(model)`. The functions below are given; read them.

# %%
#| export
PRUNABLE = (Linear, Conv2d)  # layer types whose `weight` the pruners handle


def prunable_layers(model: Module) -> dict:
    """Dotted name -> module for every Linear / Conv2d in `model` (named_modules order)."""
    return {name: m for name, m in model.named_modules() if isinstance(m, PRUNABLE)}


def select_layers(model: Module, layers=None) -> dict:
    """The prunable layers named in `layers` (all of them if None); unknown names raise."""
    found = prunable_layers(model)
    if layers is None:
        if not found:
            raise ValueError(f"{type(model).__name__} has no Linear or Conv2d layer to prune")
        return found
    if isinstance(layers, str):
        layers = [layers]
    out = {}
    for name in layers:
        if name not in found:
            raise ValueError(
                f"unknown layer {name!r}; the prunable layers are {', '.join(map(repr, found))}"
            )
        out[name] = found[name]
    return out


def _param(module: Module, name: str) -> Parameter:
    p = module._parameters.get(name) if isinstance(module, Module) else None
    if p is None:
        have = [n for n, q in module._parameters.items() if q is not None]
        raise ValueError(f"{type(module).__name__} has no parameter {name!r} (it has {have})")
    return p


def get_mask(module: Module, name: str = "weight") -> np.ndarray | None:
    """The keep-mask stored beside `module.<name>`, or None if it is not pruned."""
    return getattr(module, f"{name}_mask", None)


def _set_mask(module: Module, name: str, mask: np.ndarray) -> None:
    p = _param(module, name)
    module.register_buffer(f"{name}_mask", mask, persistent=False)
    p.data[~mask] = 0


def l1_unstructured(module: Module, name: str = "weight", amount=0.5) -> np.ndarray:
    """Prune `amount` of `module.<name>` by |w| (like torch.nn.utils.prune.l1_unstructured).

    `amount` is the target sparsity of the whole tensor; weights pruned before stay pruned.
    """
    p = _param(module, name)
    mask = magnitude_mask(p.data, amount, get_mask(module, name))
    _set_mask(module, name, mask)
    return mask


def global_unstructured(parameters: Iterable, amount) -> dict:
    """Prune (module, name) pairs together with one magnitude threshold; returns the masks."""
    pairs = list(parameters)
    weights = {i: _param(m, n).data for i, (m, n) in enumerate(pairs)}
    old = {i: get_mask(m, n) for i, (m, n) in enumerate(pairs) if get_mask(m, n) is not None}
    masks = global_magnitude_masks(weights, amount, old)
    for i, (m, n) in enumerate(pairs):
        _set_mask(m, n, masks[i])
    return masks


def remove(module: Module, name: str = "weight") -> None:
    """Make the pruning of `module.<name>` permanent: the zeros stay, the mask goes."""
    if get_mask(module, name) is None:
        raise ValueError(f"{type(module).__name__}.{name} is not pruned (no {name}_mask)")
    delattr(module, f"{name}_mask")


def _masked_params(model: Module):
    for _, mod in model.named_modules():
        for pname, p in mod._parameters.items():
            mask = get_mask(mod, pname) if p is not None else None
            if mask is not None:
                yield p, mask


def apply_masks(model: Module) -> None:
    """Zero every pruned entry again (call after each optimizer step)."""
    for p, mask in _masked_params(model):
        p.data[~mask] = 0


def mask_gradients(model: Module) -> None:
    """Zero the gradients of pruned entries (so momentum and Adam moments stay clean)."""
    for p, mask in _masked_params(model):
        if p.grad is not None:
            p.grad = np.where(mask, p.grad, 0).astype(p.grad.dtype)


def layer_sparsity(model: Module) -> dict:
    """Dotted layer name -> fraction of exact zeros in its weight, for Linear / Conv2d."""
    return {name: float(np.mean(m.weight.data == 0)) for name, m in prunable_layers(model).items()}


def model_sparsity(model: Module) -> float:
    """Fraction of exact zeros over all Linear / Conv2d weights together."""
    layers = prunable_layers(model).values()
    zeros = sum(int((m.weight.data == 0).sum()) for m in layers)
    return zeros / max(sum(m.weight.numel() for m in layers), 1)


# %% [markdown]
# Prune the trained baseline to 90% in one shot — once layer by layer, once globally — and
# measure the accuracy *before* any fine-tuning:

# %% tags=["demo"]
require(1, 2)
per_layer = fresh_baseline()
for layer in prunable_layers(per_layer).values():
    l1_unstructured(layer, "weight", 0.9)
global_model = fresh_baseline()
global_unstructured([(m, "weight") for m in prunable_layers(global_model).values()], 0.9)

print(f"{'':>14}{'sparsity per layer':>34}{'overall':>9}{'accuracy':>10}")
print(f"{'baseline':>14}{'':>34}{model_sparsity(baseline):9.1%}{base_acc:9.1f}%")
for label, m in (("per-layer 90%", per_layer), ("global 90%", global_model)):
    per = " ".join(f"{s:6.1%}" for s in layer_sparsity(m).values())
    print(f"{label:>14}{per:>34}{model_sparsity(m):9.1%}{acc(m):9.1f}%")

# %% [markdown]
# ### 1.5 Fine-tuning with the masks held in place
#
# One-shot pruning hurts; a few epochs of training let the surviving weights compensate. The
# pruned weights must stay at zero during that training, so we wrap the optimizer. Write
# `MaskedOptimizer.step`:
#
# 1. if a schedule is attached and this step is one of its pruning steps, prune further to
#    `schedule(step_count)` with the pruner (this is used in 1.6);
# 2. zero the gradients of pruned entries (`mask_gradients`), so momentum does not build up
#    behind them;
# 3. take the wrapped optimizer's step;
# 4. re-apply the masks (`apply_masks`): some optimizers (weight decay, Adam's old moments)
#    move weights even with a zero gradient.
#
# `fit` only calls `optimizer.step()`, `optimizer.zero_grad()` and reads `optimizer.lr`, so a
# `MaskedOptimizer` drops straight into it.

# %% nbgrader={"grade": false, "grade_id": "masked_optimizer", "locked": false, "schema_version": 3, "solution": true, "task": false}
#| export
class MaskedOptimizer:
    """Wraps an optimizer so that pruned weights stay zero (and, with a schedule, prunes more).

    `step_count` counts the steps taken; `schedule(step)` gives the target sparsity and
    `schedule.is_pruning_step(step)` says when to prune (see `CubicSchedule`).
    """

    def __init__(self, optimizer, model: Module, pruner=None, schedule=None):
        if schedule is not None and pruner is None:
            raise ValueError("a pruning schedule needs a pruner to prune with")
        self.__dict__.update(optimizer=optimizer, model=model, pruner=pruner, schedule=schedule)
        self.step_count = 0

    def __getattr__(self, name):  # lr, params, state, ...: those of the wrapped optimizer
        inner = self.__dict__.get("optimizer")
        if inner is None:
            raise AttributeError(name)
        return getattr(inner, name)

    def zero_grad(self) -> None:
        self.optimizer.zero_grad()

    def step(self) -> None:
        ### BEGIN SOLUTION
        if self.schedule is not None and self.schedule.is_pruning_step(self.step_count):
            self.pruner.prune(self.schedule(self.step_count))
        mask_gradients(self.model)
        self.optimizer.step()
        apply_masks(self.model)
        ### END SOLUTION
        self.step_count += 1


# %% [markdown]
# `MagnitudePruner` bundles it: which layers (all `Linear`/`Conv2d` by default, or a list of
# dotted names), `scope="layer"` (each layer pruned by `amount`) or `scope="global"` (one
# threshold), `prune(amount)`, `wrap(optimizer)` for fine-tuning, and `remove()`.

# %%
#| export
class MagnitudePruner:
    """Unstructured magnitude pruning of `model`'s Linear / Conv2d weights, masks kept beside.

    scope="layer": every layer is pruned to `amount`; scope="global": one threshold over all
    selected layers, so the overall sparsity is `amount`. Modifies `model` in place.
    """

    def __init__(self, model: Module, layers=None, scope: str = "layer"):
        if scope not in ("layer", "global"):
            raise ValueError(f"scope must be 'layer' or 'global', got {scope!r}")
        self.model = model
        self.layers = select_layers(model, layers)
        self.scope = scope

    def prune(self, amount) -> dict:
        """Prune to sparsity `amount` (already-pruned weights stay pruned); returns masks."""
        amount = check_amount(amount)
        if self.scope == "global":
            pairs = [(m, "weight") for m in self.layers.values()]
            masks = global_unstructured(pairs, amount)
            return dict(zip(self.layers, masks.values()))
        return {n: l1_unstructured(m, "weight", amount) for n, m in self.layers.items()}

    def masks(self) -> dict:
        return {n: get_mask(m) for n, m in self.layers.items() if get_mask(m) is not None}

    def sparsity(self) -> dict:
        """Layer name -> fraction of its weight that is zero."""
        return {n: float(np.mean(m.weight.data == 0)) for n, m in self.layers.items()}

    def overall_sparsity(self) -> float:
        zeros = sum(int((m.weight.data == 0).sum()) for m in self.layers.values())
        return zeros / sum(m.weight.numel() for m in self.layers.values())

    def wrap(self, optimizer, schedule=None) -> MaskedOptimizer:
        """An optimizer that keeps the masks (and follows `schedule`, if given)."""
        return MaskedOptimizer(optimizer, self.model, pruner=self, schedule=schedule)

    def remove(self) -> None:
        """Make the pruning permanent (drop the masks, keep the zeros)."""
        for m in self.layers.values():
            if get_mask(m) is not None:
                remove(m, "weight")


# %% nbgrader={"grade": true, "grade_id": "masked_weights_stay_zero_while_fine_tuning", "locked": true, "points": 2, "schema_version": 3, "solution": false, "task": false}
def train_masked(sizes, state, masks, x, y, kind, lr, momentum=0.9, pre_steps=0, steps=5):
    """Train make_mlp(sizes) loaded with `state` under `masks` (name -> keep-mask) with a
    MaskedOptimizer around SGD (kind "sgd") or Adam (kind "adam": `pre_steps` plain Adam
    steps before pruning, so its moments are not zero). Returns weights, buffers, steps."""
    model = make_mlp(sizes)
    model.load_state_dict({k: np.array(v, copy=True) for k, v in state.items()})
    params = [model[0].weight, model[0].bias, model[2].weight, model[2].bias]

    def loss_backward():
        loss = cross_entropy(model(Tensor(x)), y)
        inner.zero_grad()
        loss.backward()

    if kind == "sgd":
        inner = SGD(params, lr=lr, momentum=momentum)
    else:
        inner = Adam(params, lr=lr / 5)
        for _ in range(pre_steps):
            loss_backward()
            inner.step()
    for name, mask in masks.items():
        _set_mask(model[int(name.split(".")[0])], "weight", mask)  # keep-mask beside the weight
    opt = MaskedOptimizer(inner, model)
    for _ in range(steps):
        loss_backward()
        opt.step()
    bufs = [inner.state.get(i, {}).get("momentum_buffer") for i in range(len(params))]
    return {"state": {k: v.copy() for k, v in model.state_dict().items()}, "buffers": bufs,
            "step_count": opt.step_count}


class ScheduleLog:
    """A stand-in schedule and pruner: prunes at the steps in `at` to `values[step]`, and
    logs the calls as [step_count, amount]."""

    def __init__(self, at, values):
        self.at, self.values, self.calls, self.opt = set(at), list(values), [], None

    def is_pruning_step(self, step):
        return step in self.at

    def __call__(self, step):
        return self.values[step]

    def prune(self, amount):
        self.calls.append([self.opt.step_count, amount])


def follow_schedule(at, values, x, y):
    model = make_mlp([x.shape[1], 3])
    log = ScheduleLog(at, values)
    log.opt = MaskedOptimizer(SGD(model.parameters(), lr=0.01), model, pruner=log, schedule=log)
    for _ in range(len(values)):
        loss = cross_entropy(model(Tensor(x)), y)
        log.opt.zero_grad()
        loss.backward()
        log.opt.step()
    return log.calls


def check_masked_optimizer():
    """Pruned weights stay exactly zero through fine-tuning; momentum stays clean; the
    schedule is followed at its pruning steps."""
    rng = np.random.default_rng(0)
    x, y = rng.standard_normal((32, 8)).astype(np.float32), rng.integers(0, 3, 32)
    state = make_mlp([8, 16, 3], seed=1).state_dict()
    masks = {"0.weight": rng.random((8, 16)) > 0.7, "2.weight": rng.random((16, 3)) > 0.5}
    for kind in ("sgd", "adam"):
        out = train_masked([8, 16, 3], state, masks, x, y, kind, lr=0.1, pre_steps=3)
        for name, keep in masks.items():
            w = out["state"][name]
            assert np.all(w[~keep] == 0), (
                f"{kind}: pruned weights of {name} came back to life; re-apply the masks after "
                "the step (Adam's moments from before pruning move them even with zero gradient)"
            )
            assert np.any(w[keep] != state[name][keep]), f"{kind}: kept weights must still train"
        assert out["step_count"] == 5, "count the steps taken"
        if kind == "sgd":
            for i, name in ((0, "0.weight"), (2, "2.weight")):
                buf = out["buffers"][i]
                assert buf is not None and np.all(buf[~masks[name]] == 0), (
                    f"momentum built up behind the pruned weights of {name}: zero their "
                    "gradients (mask_gradients) before the wrapped optimizer's step"
                )
    calls = follow_schedule(at=[1, 4, 7], values=[0.1 * s for s in range(9)], x=x, y=y)
    assert [c[0] for c in calls] == [1, 4, 7], (
        f"prune exactly when schedule.is_pruning_step(step_count) holds (steps 1, 4, 7), "
        f"before taking the step; you pruned at steps {[c[0] for c in calls]}"
    )
    assert np.allclose([c[1] for c in calls], [0.1, 0.4, 0.7]), (
        "prune to schedule(step_count), the target sparsity of the current step"
    )


check_masked_optimizer()

### BEGIN HIDDEN TESTS
from tito.probe import probe as _probe

with _probe("18_compression", "masked_weights_stay_zero_while_fine_tuning") as _p:
    _in = _p.inputs
    for _kind in ("sgd", "adam"):
        _p.record(_kind, train_masked, _in["sizes"], _in["state"], _in["masks"], _in["x"],
                  _in["y"], _kind, _in["lr"], momentum=_in["momentum"],
                  pre_steps=_in["pre_steps"], steps=_in["steps"])
    _p.record("sched_calls", follow_schedule, _in["sched_prune_at"], _in["sched_values"],
              _in["x"], _in["y"])
### END HIDDEN TESTS


# %% [markdown]
# Now fine-tune both 90%-sparse models for a few epochs (batches of 64) and compare with the
# baseline:

# %% tags=["demo"]
require(1, 2, 3)
def fine_tune(model, epochs=5, lr=2e-3, seed=1, pruner=None, schedule=None):
    """Adam fine-tuning (batches of 64); with a pruner the masks are held (and a schedule
    followed)."""
    opt = Adam(model.parameters(), lr=lr)
    if pruner is not None:
        opt = pruner.wrap(opt, schedule)
    fit(model, train_loader(seed, 64), cross_entropy, opt, epochs, progress=False)
    return model


results, tuned = {}, {}
for label, scope in (("per-layer 90%", "layer"), ("global 90%", "global")):
    model = fresh_baseline()
    pruner = MagnitudePruner(model, scope=scope)
    pruner.prune(0.9)
    one_shot = acc(model)
    fine_tune(model, epochs=5, pruner=pruner)
    results[label], tuned[label] = acc(model), (model, pruner)
    print(f"{label}: sparsity {pruner.overall_sparsity():.1%}, accuracy {one_shot:.1f}% after "
          f"pruning -> {results[label]:.1f}% after 5 epochs of fine-tuning "
          f"(baseline {base_acc:.1f}%, change {results[label] - base_acc:+.1f} points)")

# %% [markdown]
# ### 1.6 Gradual pruning: the cubic schedule of Zhu & Gupta (2017)
#
# Instead of removing 90% at once, *To prune, or not to prune* (Zhu & Gupta, 2017) raises the
# sparsity step by step while training continues, quickly at first (when there are many
# redundant weights) and slowly at the end:
#
# $$ s_t = s_f + (s_i - s_f)\left(1 - \frac{t - t_0}{n\,\Delta t}\right)^3,
#    \qquad t \in \{t_0,\ t_0 + \Delta t,\ \dots,\ t_0 + n\Delta t\} $$
#
# with initial sparsity $s_i$, final sparsity $s_f$, first pruning step $t_0$, $n$ pruning
# steps after the first, and $\Delta t$ optimizer steps between pruning steps.
#
# Write `cubic_sparsity(step, final_sparsity, initial_sparsity, begin_step, n_prunes,
# frequency)`. Between pruning steps the sparsity stays at the value of the **last pruning
# step not after** `step`; before $t_0$ nothing is pruned (0.0); after $t_0 + n\Delta t$ it
# stays at $s_f$.

# %% nbgrader={"grade": false, "grade_id": "cubic_sparsity", "locked": false, "schema_version": 3, "solution": true, "task": false}
#| export
def cubic_sparsity(step: int, final_sparsity, initial_sparsity=0.0, begin_step: int = 0,
                   n_prunes: int = 10, frequency: int = 1) -> float:
    """Target sparsity at optimizer step `step` under the Zhu & Gupta cubic schedule."""
    s_f = check_amount(final_sparsity, "final_sparsity")
    s_i = check_amount(initial_sparsity, "initial_sparsity")
    if s_i > s_f:
        raise ValueError(f"initial_sparsity {s_i} exceeds final_sparsity {s_f}")
    if int(n_prunes) < 1 or int(frequency) < 1 or int(begin_step) < 0:
        raise ValueError(
            f"need n_prunes >= 1, frequency >= 1, begin_step >= 0; got {n_prunes}, "
            f"{frequency}, {begin_step}"
        )
    if step < begin_step:
        return 0.0
    ### BEGIN SOLUTION
    done = min((int(step) - int(begin_step)) // int(frequency), int(n_prunes))
    progress = done / int(n_prunes)
    return float(s_f + (s_i - s_f) * (1.0 - progress) ** 3)
    ### END SOLUTION


# %%
#| export
@dataclass(frozen=True)
class CubicSchedule:
    """The Zhu & Gupta schedule as an object `MaskedOptimizer` can follow."""

    final_sparsity: float  # s_f: the sparsity at the end of the ramp
    initial_sparsity: float = 0.0  # s_i: the sparsity of the first pruning step
    begin_step: int = 0  # t0: optimizer step of the first pruning step
    n_prunes: int = 10  # n: pruning steps after the first (n + 1 in total)
    frequency: int = 1  # delta t: optimizer steps between two pruning steps

    def __post_init__(self):
        cubic_sparsity(self.begin_step, self.final_sparsity, self.initial_sparsity,
                       self.begin_step, self.n_prunes, self.frequency)  # validates the fields

    def __call__(self, step: int) -> float:
        return cubic_sparsity(step, self.final_sparsity, self.initial_sparsity,
                              self.begin_step, self.n_prunes, self.frequency)

    @property
    def end_step(self) -> int:
        return self.begin_step + self.n_prunes * self.frequency

    def is_pruning_step(self, step: int) -> bool:
        offset = step - self.begin_step
        return 0 <= offset <= self.n_prunes * self.frequency and offset % self.frequency == 0


# %% nbgrader={"grade": true, "grade_id": "cubic_schedule_follows_zhu_gupta", "locked": true, "points": 2, "schema_version": 3, "solution": false, "task": false}
def check_cubic_schedule():
    """cubic_sparsity follows s_f + (s_i - s_f)(1 - (t - t0)/(n dt))^3 and holds between steps."""
    assert cubic_sparsity(0, 0.9) == 0.0, "at t0 with s_i = 0 the sparsity is 0"
    assert abs(cubic_sparsity(10, 0.9) - 0.9) < 1e-12, "after n steps the sparsity is s_f"
    assert abs(cubic_sparsity(5, 0.8) - 0.7) < 1e-12, "halfway: 0.8 + (0 - 0.8) * 0.5^3 = 0.7"
    assert cubic_sparsity(99, 0.9) == 0.9, "after the ramp the sparsity stays at s_f"
    # t0 = 10, n = 4 pruning steps after the first, every 2 steps: prunes at 10, 12, ..., 18
    ramp = [cubic_sparsity(t, 0.8, 0.0, begin_step=10, n_prunes=4, frequency=2)
            for t in range(8, 22)]
    assert ramp[:2] == [0.0, 0.0], f"before begin_step nothing is pruned, got {ramp[:2]}"
    assert ramp[2] == 0.0, f"at begin_step the sparsity is s_i = 0, got {ramp[2]}"
    assert abs(ramp[4] - 0.4625) < 1e-12, (
        f"step 12 is the first pruning step after t0 = 10 (frequency 2): "
        f"0.8 * (1 - (1 - 2/8)^3) = 0.4625, got {ramp[4]} (use (t - begin_step) // frequency)"
    )
    assert ramp[5] == ramp[4], (
        f"between pruning steps (step 13) the sparsity stays at that of step 12: {ramp[5]} != "
        f"{ramp[4]}"
    )
    assert abs(ramp[10] - 0.8) < 1e-12 and ramp[13] == ramp[10], "from step 18 on: s_f"
    assert abs(cubic_sparsity(20, 0.9, 0.5, 20, 5, 3) - 0.5) < 1e-12, (
        "at begin_step the sparsity is the initial sparsity s_i"
    )
    assert abs(cubic_sparsity(26, 0.9, 0.5, 20, 5, 3) - (0.9 - 0.4 * 0.6**3)) < 1e-12, (
        "s_f + (s_i - s_f)(1 - 2/5)^3 two pruning steps after t0"
    )


check_cubic_schedule()

### BEGIN HIDDEN TESTS
from tito.probe import probe as _probe

with _probe("18_compression", "cubic_schedule_follows_zhu_gupta") as _p:
    for _k, _c in enumerate(_p.inputs["cases"]):
        _p.record(f"c{_k}", lambda c=_c: [
            cubic_sparsity(t, c["s_f"], c["s_i"], c["t0"], c["n"], c["dt"]) for t in c["steps"]
        ])
### END HIDDEN TESTS


# %% [markdown]
# Go to 95% both ways with the same budget of 10 epochs: one-shot prune then fine-tune,
# versus the cubic ramp over the first 6 epochs and 4 more at the final sparsity.

# %% tags=["demo"]
require(2, 3, 4)
steps_per_epoch = len(train_loader(0, 64))
ramp = CubicSchedule(final_sparsity=0.95, n_prunes=6, frequency=steps_per_epoch)
s_by_epoch = [ramp(e * steps_per_epoch) for e in range(7)]
print("target sparsity at the start of epochs 0..6:", " ".join(f"{s:.2f}" for s in s_by_epoch))

one_shot_95 = fresh_baseline()
p1 = MagnitudePruner(one_shot_95, scope="global")
p1.prune(0.95)
fine_tune(one_shot_95, epochs=10, pruner=p1)
gradual_95 = fresh_baseline()
p2 = MagnitudePruner(gradual_95, scope="global")
fine_tune(gradual_95, epochs=10, pruner=p2, schedule=ramp)
print(f"95% sparsity, 10 epochs: one-shot {acc(one_shot_95):.1f}% "
      f"(sparsity {p1.overall_sparsity():.1%}), gradual {acc(gradual_95):.1f}% "
      f"(sparsity {p2.overall_sparsity():.1%}); baseline {base_acc:.1f}%")

# %% [markdown]
# On a small, easy problem both roads may end close together; the gradual schedule matters
# more for large models and high sparsities, where a one-shot cut removes weights the network
# still needs before it can adapt.
#
# ## Part 2 — Seeing the sparsity
#
# Three pictures tell you what pruning did: how sparse each layer ended up (global pruning
# does *not* spread the zeros evenly), what the weight distribution looks like (the band
# around zero is cut out and a spike at exactly zero appears), and where in a matrix the
# surviving weights sit. For the input layer each row belongs to one pixel of the 8x8 image,
# so counting the kept weights per row gives a picture of which pixels the pruned network
# still reads; compare it with the average digit.

# %%
#| export
def plot_layer_sparsity(model: Module, ax=None, title: str = "sparsity per layer"):
    """Bar chart of the fraction of zero weights in each Linear / Conv2d layer."""
    import matplotlib.pyplot as plt

    sp = layer_sparsity(model)
    if ax is None:
        _, ax = plt.subplots(figsize=(5, 3))
    names = list(sp)
    bars = ax.bar(range(len(sp)), [100 * s for s in sp.values()], color="tab:blue")
    sizes = [m.weight.shape for m in prunable_layers(model).values()]
    ax.set_xticks(range(len(sp)), [f"{n}\n{tuple(s)}" for n, s in zip(names, sizes)])
    for bar, s in zip(bars, sp.values()):
        ax.annotate(f"{s:.0%}", (bar.get_x() + bar.get_width() / 2, bar.get_height()),
                    ha="center", va="bottom", fontsize=8)
    ax.set_ylim(0, 110)
    ax.set_ylabel("zero weights (%)")
    ax.set_title(title)
    ax.figure.tight_layout()
    return ax.figure


def _all_weights(model: Module) -> np.ndarray:
    return np.concatenate([m.weight.data.ravel() for m in prunable_layers(model).values()])


def plot_weight_histograms(before: Module, after: Module, bins: int = 80):
    """Histograms of all Linear / Conv2d weights of two models (log count axis)."""
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(9, 3), sharex=True)
    for ax, model, label in ((axes[0], before, "before"), (axes[1], after, "after")):
        w = _all_weights(model)
        ax.hist(w, bins=bins, color="tab:gray" if label == "before" else "tab:orange")
        ax.set_yscale("log")
        ax.set_title(f"{label}: {np.mean(w == 0):.0%} exact zeros")
        ax.set_xlabel("weight value")
    axes[0].set_ylabel("count")
    fig.tight_layout()
    return fig


def plot_mask(mask, ax=None, title: str = "keep-mask (white = kept)"):
    """Image of a 2-D keep-mask (or of a weight's non-zeros); Conv2d masks are flattened."""
    import matplotlib.pyplot as plt

    m = _as_array(mask)
    m = m if m.dtype == bool else m != 0
    m = m.reshape(m.shape[0], -1) if m.ndim > 2 else m  # (out, in * kh * kw) for conv
    if ax is None:
        _, ax = plt.subplots(figsize=(6, 2.5))
    ax.imshow(m, cmap="gray", aspect="auto", interpolation="nearest", vmin=0, vmax=1)
    ax.set_title(f"{title}: {m.mean():.0%} of {m.size} kept")
    ax.figure.tight_layout()
    return ax.figure


# %% tags=["demo"]
require(1, 2, 3)
if "global 90%" not in tuned:
    raise RuntimeError("this cell shows the global 90% model: complete exercises 1-3 (`magnitude_mask`, `global_magnitude_masks`, `masked_optimizer`) and run the fine-tuning cell of section 1.5 first")
pruned_90, pruner_90 = tuned["global 90%"]  # the global 90% model fine-tuned above
fig, axes = plt.subplots(1, 2, figsize=(10, 3))
plot_layer_sparsity(pruned_90, ax=axes[0], title="global 90%: sparsity per layer")
plot_mask(get_mask(pruned_90[0]), ax=axes[1], title="layer 0 (64 pixels x 256 units)")
axes[1].set_xlabel("hidden unit")
axes[1].set_ylabel("input pixel")
plt.show()
plot_weight_histograms(baseline, pruned_90)
plt.show()
kept_per_pixel = get_mask(pruned_90[0]).sum(axis=1).reshape(8, 8)  # (8, 8) image
fig, axes = plt.subplots(1, 2, figsize=(6, 3))
axes[0].imshow(kept_per_pixel, cmap="viridis")
axes[0].set_title("kept weights per input pixel")
axes[1].imshow(X_train.mean(axis=0).reshape(8, 8), cmap="gray")  # (8, 8) image
axes[1].set_title("the average digit")
plt.show()
blank = X_train.max(axis=0) == 0  # (64,) pixels that are 0 in every training image
print(f"kept weights per pixel: {kept_per_pixel.min()} to {kept_per_pixel.max()} of 256; "
      f"{blank.sum()} pixels are blank in every training image and keep "
      f"{kept_per_pixel.ravel()[blank].mean():.1f} weights on average, the others "
      f"{kept_per_pixel.ravel()[~blank].mean():.1f}")

# %% [markdown]
# ## Part 3 — Structured pruning: make the matrices smaller
#
# A 90%-sparse 256x256 matrix is still a 256x256 matrix to `np.matmul`: every zero is
# multiplied like any other number. To make a model *faster* with ordinary dense kernels, we
# remove whole units: a hidden neuron of a `Linear` (a column of its `(in, out)` weight and an
# entry of its bias) or a filter of a `Conv2d` (a slice `weight[o]` of `(out, in, kh, kw)`).
# The next layer then has fewer inputs: the matching **rows** of the next `Linear`'s weight,
# or the matching **input channels** `weight[:, c]` of the next `Conv2d`, go too.
#
# Which units? Those with the smallest weight norm. Write `unit_norms(layer, norm)`: one score
# per output unit, the L1 (`"l1"`: sum of |w|) or L2 (`"l2"`: square root of the sum of
# squares) norm of the weights that compute that unit. A `Linear` has `out_features` units, a
# `Conv2d` has `out_channels`.

# %% nbgrader={"grade": false, "grade_id": "unit_norms", "locked": false, "schema_version": 3, "solution": true, "task": false}
#| export
def unit_norms(layer: Module, norm: str = "l1") -> np.ndarray:
    """L1 or L2 norm of the weights of each output unit: (out_features,) or (out_channels,)."""
    if norm not in ("l1", "l2"):
        raise ValueError(f"norm must be 'l1' or 'l2', got {norm!r}")
    if not isinstance(layer, PRUNABLE):
        raise TypeError(f"unit_norms needs a Linear or Conv2d, got {type(layer).__name__}")
    w = layer.weight.data.astype(np.float64)
    ### BEGIN SOLUTION
    if isinstance(layer, Linear):
        per_unit = w.T  # (out, in)
    else:
        per_unit = w.reshape(w.shape[0], -1)  # (out_c, in_c * kh * kw)
    if norm == "l1":
        return np.abs(per_unit).sum(axis=1)
    return np.sqrt((per_unit * per_unit).sum(axis=1))
    ### END SOLUTION


# %% nbgrader={"grade": true, "grade_id": "unit_norms_score_neurons_and_filters", "locked": true, "points": 2, "schema_version": 3, "solution": false, "task": false}
def check_unit_norms():
    """unit_norms scores the output units of Linear (columns) and Conv2d (filters)."""
    lin = linear_with(np.array([[1, -4], [2, 0], [-2, 3]]))
    assert unit_norms(lin, "l1").shape == (2,), "a Linear(3, 2) has 2 output units (columns)"
    assert np.allclose(unit_norms(lin, "l1"), [5, 7]), "L1 of column j: sum |W[:, j]|"
    assert np.allclose(unit_norms(lin, "l2"), [3, 5]), "L2 of column j: sqrt(sum W[:, j]^2)"
    w = np.zeros((3, 2, 2, 2))  # 3 filters over 2 input channels
    w[0, 0, 0, 0], w[1, 1, 1, 1], w[1, 0, 0, 1], w[2] = -3.0, 3.0, 4.0, 0.5
    conv = conv_with(w)
    assert unit_norms(conv, "l1").shape == (3,), (
        "a Conv2d(2, 3, 2) has 3 output units (filters weight[o]), not 2 input channels"
    )
    assert np.allclose(unit_norms(conv, "l1"), [3, 7, 4]), "L1 of filter o: sum |weight[o]|"
    assert np.allclose(unit_norms(conv, "l2"), [3, 5, 2 ** 0.5]), (
        "L2 of filter o: sqrt(sum weight[o]^2) over its in_channels x kh x kw weights"
    )


check_unit_norms()

### BEGIN HIDDEN TESTS
from tito.probe import probe as _probe

with _probe("18_compression", "unit_norms_score_neurons_and_filters") as _p:
    for _name, _make in (("lin", linear_with), ("conv", conv_with)):
        for _norm in ("l1", "l2"):
            _p.record(f"{_name}_{_norm}", lambda m=_make, n=_name, q=_norm: unit_norms(
                m(_p.inputs[n]), q))
### END HIDDEN TESTS


# %% [markdown]
# ### Shrinking a layer and the next one
#
# Write the two halves of a cut, each returning a **new** layer (the old one is untouched):
#
# - `shrink_outputs(layer, keep)`: keep only the output units `keep` (sorted indices). A
#   `Linear` keeps columns `weight[:, keep]` and `bias[keep]`; a `Conv2d` keeps filters
#   `weight[keep]` and `bias[keep]`.
# - `shrink_inputs(layer, keep)`: keep only the inputs `keep`. A `Linear` keeps rows
#   `weight[keep, :]` (its bias is unchanged); a `Conv2d` keeps input channels
#   `weight[:, keep]`.
#
# Build the new layer with its constructor (same kernel size, stride, padding and bias
# setting for a `Conv2d`), then copy the kept values into its parameters.

# %% nbgrader={"grade": false, "grade_id": "shrink_layers", "locked": false, "schema_version": 3, "solution": true, "task": false}
#| export
def _new_like(layer: Module, n_in: int, n_out: int) -> Module:
    """An empty layer of `layer`'s type and settings with new input/output sizes."""
    has_bias = layer.bias is not None
    if isinstance(layer, Linear):
        return Linear(n_in, n_out, bias=has_bias)
    return Conv2d(n_in, n_out, layer.kernel_size, stride=layer.stride, padding=layer.padding,
                  bias=has_bias)


def _check_keep(keep, n: int, what: str) -> np.ndarray:
    keep = np.asarray(keep, dtype=np.int64).ravel()
    if keep.size == 0:
        raise ValueError(f"cannot keep zero {what}; keep at least one")
    if keep.min() < 0 or keep.max() >= n:
        raise ValueError(f"{what} indices must be in [0, {n}), got {keep.min()}..{keep.max()}")
    return keep


def shrink_outputs(layer: Module, keep) -> Module:
    """A new Linear/Conv2d with only the output units (columns / filters) in `keep`."""
    n_in, n_out = (layer.in_features, layer.out_features) if isinstance(layer, Linear) else (
        layer.in_channels, layer.out_channels)
    keep = _check_keep(keep, n_out, "output units")
    new = _new_like(layer, n_in, len(keep))
    ### BEGIN SOLUTION
    if isinstance(layer, Linear):
        new.weight.data[...] = layer.weight.data[:, keep]  # (in, kept)
    else:
        new.weight.data[...] = layer.weight.data[keep]  # (kept, in_c, kh, kw)
    if layer.bias is not None:
        new.bias.data[...] = layer.bias.data[keep]
    ### END SOLUTION
    return new


def shrink_inputs(layer: Module, keep) -> Module:
    """A new Linear/Conv2d that reads only the inputs (rows / input channels) in `keep`."""
    n_in, n_out = (layer.in_features, layer.out_features) if isinstance(layer, Linear) else (
        layer.in_channels, layer.out_channels)
    keep = _check_keep(keep, n_in, "inputs")
    new = _new_like(layer, len(keep), n_out)
    ### BEGIN SOLUTION
    if isinstance(layer, Linear):
        new.weight.data[...] = layer.weight.data[keep, :]  # (kept, out)
    else:
        new.weight.data[...] = layer.weight.data[:, keep]  # (out_c, kept, kh, kw)
    if layer.bias is not None:
        new.bias.data[...] = layer.bias.data
    ### END SOLUTION
    return new


# %% [markdown]
# `structured_prune` (given) walks a `Sequential`. For each pruned layer it finds the next
# `Linear`/`Conv2d` — the layer that consumes its outputs. Between the two there may be
# layers that act on each channel separately (`ReLU`, `MaxPool2d`, `Dropout`, ...), which
# need no change, and possibly a `Flatten`. **Mind the flatten order:** `Flatten` turns
# `(N, C, H, W)` into `(N, C*H*W)` channel by channel, so channel `c` owns the features
# `c*H*W ... (c+1)*H*W - 1` of the following `Linear`. Any other layer in between (e.g.
# `LayerNorm`, which mixes units) makes the cut unsafe and is an error.
#
# By default every `Linear`/`Conv2d` except the last (the output layer: its units are the
# classes) is pruned by `amount`. Removing all units of a layer is an error naming it.

# %%
#| export
CHANNELWISE = (ReLU, GELU, Tanh, Sigmoid, Dropout, MaxPool2d, Identity)  # act per unit


def _units(layer: Module) -> int:
    return layer.out_features if isinstance(layer, Linear) else layer.out_channels


def _consumer(layers: list, i: int, names: list) -> tuple[int, bool]:
    """(index of the layer reading layer i's units, whether a Flatten sits in between)."""
    flatten = False
    for j in range(i + 1, len(layers)):
        layer = layers[j]
        if isinstance(layer, PRUNABLE):
            if flatten and not isinstance(layer, Linear):
                raise ValueError(f"layer {names[j]!r} after a Flatten must be a Linear")
            return j, flatten
        if isinstance(layer, Flatten):
            flatten = True
        elif not isinstance(layer, CHANNELWISE):
            raise ValueError(
                f"cannot prune layer {names[i]!r}: {type(layer).__name__} (layer {names[j]!r}) "
                f"mixes units; only {', '.join(t.__name__ for t in CHANNELWISE)} and Flatten may "
                "sit between a pruned layer and the next Linear/Conv2d"
            )
    raise ValueError(
        f"cannot prune layer {names[i]!r}: it is the output layer (no later Linear/Conv2d "
        "reads its units, so removing them would change the output shape)"
    )


def keep_units(norms: np.ndarray, amount, layer_name: str = "layer") -> np.ndarray:
    """Sorted indices of the units kept when `amount` of them (smallest norm) are removed."""
    n = len(norms)
    k = prune_count(amount, n)
    if k >= n:
        raise ValueError(
            f"pruning amount {amount} removes all {n} units of layer {layer_name!r}; "
            "keep at least one"
        )
    order = np.argsort(norms, kind="stable")
    return np.sort(order[k:])


def structured_prune(model: Sequential, amount, norm: str = "l1", layers=None) -> Sequential:
    """A NEW Sequential with `amount` of the units of each chosen layer removed (smallest
    L1/L2 norm first) together with the next layer's matching inputs. `model` is untouched."""
    if not isinstance(model, Sequential):
        raise TypeError(f"structured_prune works on a Sequential, got {type(model).__name__}")
    amount = check_amount(amount)
    if norm not in ("l1", "l2"):
        raise ValueError(f"norm must be 'l1' or 'l2', got {norm!r}")
    names = [name for name, _ in model.named_children()]
    new = [copy.deepcopy(layer) for layer in model]
    candidates = [n for n, layer in zip(names, new) if isinstance(layer, PRUNABLE)]
    if layers is None:
        targets = candidates[:-1]
    else:
        targets = [layers] if isinstance(layers, str) else list(layers)
        for t in targets:
            if t not in candidates:
                raise ValueError(
                    f"unknown layer {t!r}; the prunable layers are "
                    f"{', '.join(map(repr, candidates))}"
                )
    for i, name in enumerate(names):
        if name not in targets:
            continue
        j, through_flatten = _consumer(new, i, names)
        n_units = _units(new[i])
        keep = keep_units(unit_norms(new[i], norm), amount, name)
        new[i] = shrink_outputs(new[i], keep)
        if through_flatten:
            per_unit, rest = divmod(new[j].in_features, n_units)
            if rest:
                raise ValueError(
                    f"layer {names[j]!r} has {new[j].in_features} inputs, not a multiple of the "
                    f"{n_units} channels of layer {name!r}"
                )
            # channel c owns features c*H*W ... (c+1)*H*W - 1 after Flatten
            keep = (keep[:, None] * per_unit + np.arange(per_unit)).ravel()  # (kept * H*W,)
        new[j] = shrink_inputs(new[j], keep)
    out = Sequential(*new)
    out.train(model.training)
    return out


class StructuredPruner:
    """Remove whole neurons / filters by L1 or L2 norm; `prune` returns a new, smaller model."""

    def __init__(self, norm: str = "l1", layers=None):
        if norm not in ("l1", "l2"):
            raise ValueError(f"norm must be 'l1' or 'l2', got {norm!r}")
        self.norm = norm
        self.layers = layers

    def prune(self, model: Sequential, amount) -> Sequential:
        return structured_prune(model, amount, norm=self.norm, layers=self.layers)


# %% nbgrader={"grade": true, "grade_id": "structured_pruning_shrinks_the_next_layer", "locked": true, "points": 3, "schema_version": 3, "solution": false, "task": false}
def shrunk(fn, layer, keep):
    """What `fn(layer, keep)` made: the new layer's weight, bias and settings, and the old
    layer's weight afterwards (it must be untouched)."""
    new = fn(layer, keep)
    return {"weight": new.weight.data, "bias": None if new.bias is None else new.bias.data,
            "settings": [list(getattr(new, "stride", ())), list(getattr(new, "padding", ()))],
            "same_object": new is layer, "orig_weight": layer.weight.data}


def check_shrink():
    """shrink_outputs keeps output units; shrink_inputs keeps inputs; the old layer stays."""
    rng = np.random.default_rng(3)
    lin = linear_with(rng.standard_normal((6, 8)).astype(np.float32))
    lin.bias.data[...] = rng.standard_normal(8)
    before = lin.weight.data.copy()
    x = rng.standard_normal((5, 6)).astype(np.float32)
    keep = np.array([1, 2, 5, 7])
    out = shrink_outputs(lin, keep)
    assert out is not lin and out.weight.shape == (6, 4), (
        "Linear(6, 8) keeping 4 output units is a NEW Linear(6, 4)"
    )
    with no_grad():
        full, cut = lin(Tensor(x)).data, out(Tensor(x)).data
    assert np.allclose(cut, full[:, keep], atol=1e-6), (
        "the kept units must compute what they computed before: copy weight[:, keep] and "
        "bias[keep]"
    )
    keep_in = np.array([0, 3, 4])
    inp = shrink_inputs(lin, keep_in)
    assert inp.weight.shape == (3, 8), "Linear(6, 8) reading 3 of its inputs is a Linear(3, 8)"
    x_zeroed = np.zeros_like(x)
    x_zeroed[:, keep_in] = x[:, keep_in]
    with no_grad():
        same = np.allclose(inp(Tensor(x[:, keep_in])).data, lin(Tensor(x_zeroed)).data,
                           atol=1e-5)
    assert same, "the kept inputs must be read with the same weights (rows weight[keep]) and bias"
    assert np.array_equal(lin.weight.data, before), "the layer passed in must be left untouched"
    conv = conv_with(rng.standard_normal((5, 3, 3, 3)), rng.standard_normal(5), padding=1)
    xi = rng.standard_normal((2, 3, 6, 6)).astype(np.float32)
    fkeep, ckeep = np.array([0, 2, 3]), np.array([0, 2])
    c_out, c_in = shrink_outputs(conv, fkeep), shrink_inputs(conv, ckeep)
    assert c_out.weight.shape == (3, 3, 3, 3), "Conv2d(3, 5) keeping 3 filters: weight[keep]"
    assert c_in.weight.shape == (5, 2, 3, 3), "Conv2d(3, 5) reading 2 channels: weight[:, keep]"
    xi_zeroed = np.zeros_like(xi)
    xi_zeroed[:, ckeep] = xi[:, ckeep]
    with no_grad():
        ok_out = np.allclose(c_out(Tensor(xi)).data, conv(Tensor(xi)).data[:, fkeep], atol=1e-5)
        ok_in = np.allclose(c_in(Tensor(xi[:, ckeep])).data, conv(Tensor(xi_zeroed)).data,
                            atol=1e-5)
    assert ok_out, "the kept filters must compute what they computed before (weight and bias)"
    assert ok_in, "the kept input channels must be read with the same weights, and the same bias"


check_shrink()

### BEGIN HIDDEN TESTS
from tito.probe import probe as _probe

with _probe("18_compression", "structured_pruning_shrinks_the_next_layer") as _p:
    _in = _p.inputs

    def _lin():
        layer = linear_with(_in["lin_w"])
        layer.bias.data[...] = _in["lin_b"]
        return layer

    def _conv():
        return conv_with(_in["conv_w"], _in["conv_b"], _in["conv_stride"], _in["conv_padding"])

    for _kind, _make in (("lin", _lin), ("conv", _conv)):
        _p.record(f"{_kind}_out", shrunk, shrink_outputs, _make(), _in[f"{_kind}_keep_out"])
        _p.record(f"{_kind}_in", shrunk, shrink_inputs, _make(), _in[f"{_kind}_keep_in"])
    _p.record("lin_nobias", lambda: shrink_outputs(
        Linear(*_in["lin_w"].shape, bias=False), _in["lin_keep_out"]).bias)
    _p.record("conv_nobias", lambda: shrink_inputs(
        Conv2d(_in["conv_w"].shape[1], _in["conv_w"].shape[0], _in["conv_w"].shape[2],
               bias=False), _in["conv_keep_in"]).bias)
### END HIDDEN TESTS


# %% [markdown]
# Remove half the hidden units of the trained baseline, then fine-tune:

# %% tags=["demo"]
require(5, 6)
half = structured_prune(baseline, 0.5)
print("pruned model:", [tuple(m.weight.shape) for m in prunable_layers(half).values()])
print(f"parameters {baseline.num_parameters():,} -> {half.num_parameters():,} "
      f"({half.num_parameters() / baseline.num_parameters():.0%}); "
      f"accuracy {base_acc:.1f}% -> {acc(half):.1f}% right after the cut")
fine_tune(half, epochs=5)
print(f"after 5 epochs of fine-tuning: {acc(half):.1f}% "
      f"({acc(half) - base_acc:+.1f} points vs. the baseline)")

# %% [markdown]
# ## Part 4 — Counting bytes honestly: compressed sparse rows
#
# A pruned weight matrix stored densely is exactly as big as before: zeros take 4 bytes each
# in float32. To profit from sparsity on disk or in memory we need a sparse format. The
# standard one is **CSR (compressed sparse row)**, three arrays for a matrix of shape
# `(rows, cols)` with `nnz` non-zeros:
#
# - `values` (nnz,): the non-zeros, row after row;
# - `col_indices` (nnz,): the column of each value;
# - `row_ptr` (rows + 1,): row `r`'s values are `values[row_ptr[r]:row_ptr[r+1]]`.
#
# Every kept weight now costs its value *plus* an index. With float32 values and int32
# indices that is 8 bytes per non-zero against 4 per entry dense, so CSR only wins above
# **50%** sparsity, and at exactly 50% it is *larger* (the row pointers come on top). The
# indices need not be int32 though: a column index below 256 fits in one byte (`uint8`), below
# 65,536 in two (`uint16`). `index_dtype_for(max_value)` (given) picks the smallest unsigned
# type; use it for the columns (largest value `cols - 1`) and for the row pointers (largest
# value `nnz`) unless the caller forces an `index_dtype`.
#
# Write `CSRMatrix.from_dense(dense, index_dtype=None)`.

# %% nbgrader={"grade": false, "grade_id": "csr_from_dense", "locked": false, "schema_version": 3, "solution": true, "task": false}
#| export
def index_dtype_for(max_value: int) -> np.dtype:
    """The smallest unsigned integer dtype that holds 0 .. max_value."""
    for dt in (np.uint8, np.uint16, np.uint32, np.uint64):
        if int(max_value) <= np.iinfo(dt).max:
            return np.dtype(dt)
    raise ValueError(f"index {max_value} does not fit in 64 bits")


@dataclass
class CSRMatrix:
    """A 2-D matrix in compressed-sparse-row form."""

    values: np.ndarray  # (nnz,) the non-zero entries, row by row
    col_indices: np.ndarray  # (nnz,) column of each value
    row_ptr: np.ndarray  # (rows + 1,) row r's values are values[row_ptr[r]:row_ptr[r + 1]]
    shape: tuple  # (rows, cols) of the dense matrix

    @classmethod
    def from_dense(cls, dense, index_dtype=None) -> "CSRMatrix":
        """CSR of a 2-D array; indices in `index_dtype`, or the smallest type that fits."""
        dense = _as_array(dense)
        if dense.ndim != 2:
            raise ValueError(f"CSR needs a 2-D matrix, got shape {dense.shape}")
        rows, cols = dense.shape
        ### BEGIN SOLUTION
        r, c = np.nonzero(dense)  # row-major order: row by row, columns ascending
        values = dense[r, c]
        counts = np.bincount(r, minlength=rows)
        row_ptr = np.concatenate([[0], np.cumsum(counts)])
        if index_dtype is not None:
            col_dtype = ptr_dtype = np.dtype(index_dtype)
        else:
            col_dtype = index_dtype_for(max(cols - 1, 0))
            ptr_dtype = index_dtype_for(len(values))
        return cls(values, c.astype(col_dtype), row_ptr.astype(ptr_dtype), (rows, cols))
        ### END SOLUTION

    @property
    def nnz(self) -> int:
        return int(self.values.size)

    @property
    def nbytes(self) -> int:
        """Bytes of the three arrays: what storing this matrix really costs."""
        return int(self.values.nbytes + self.col_indices.nbytes + self.row_ptr.nbytes)

    def to_dense(self) -> np.ndarray:
        rows, cols = self.shape
        out = np.zeros((rows, cols), dtype=self.values.dtype)
        row_of = np.repeat(np.arange(rows), np.diff(self.row_ptr.astype(np.int64)))  # (nnz,)
        out[row_of, self.col_indices.astype(np.int64)] = self.values
        return out

    def matmul(self, x) -> np.ndarray:
        """self @ x for x of shape (cols,) or (cols, N), without forming the dense matrix."""
        return csr_matmul(self, x)


# %%
require(7)
w = np.array([[0, 2.5, 0, 0], [0, 0, 0, 0], [1.0, 0, 0, -3.0]], dtype=np.float32)
csr = CSRMatrix.from_dense(w)
print(csr)
print(f"dense {w.nbytes} bytes, CSR {csr.nbytes} bytes")

# %% nbgrader={"grade": true, "grade_id": "csr_format_and_size", "locked": true, "points": 2, "schema_version": 3, "solution": false, "task": false}
def csr_parts(dense, index_dtype=None):
    """The three arrays (and the shape) CSRMatrix.from_dense stores for `dense`."""
    c = CSRMatrix.from_dense(dense, index_dtype)
    return {"values": c.values, "col_indices": c.col_indices, "row_ptr": c.row_ptr,
            "shape": list(c.shape)}


def check_csr_format():
    """CSRMatrix.from_dense stores values, column indices and row pointers compactly."""
    w = np.array([[0, 2.5, 0, 0], [0, 0, 0, 0], [1.0, 0, 0, -3.0], [0, 0, 0, 0]],
                 dtype=np.float32)
    c = CSRMatrix.from_dense(w)
    assert np.array_equal(c.values, [2.5, 1.0, -3.0]), "values: the non-zeros, row by row"
    assert c.values.dtype == np.float32, "values keep the matrix's dtype"
    assert np.array_equal(c.col_indices, [1, 0, 3]), "col_indices: the column of each value"
    assert np.array_equal(c.row_ptr, [0, 1, 1, 3, 3]), (
        f"row_ptr: where each row starts, plus the end: rows + 1 = 5 entries starting at 0, "
        f"empty rows included (also the last one); got {c.row_ptr}"
    )
    assert c.col_indices.dtype == np.uint8, "4 columns: a uint8 column index is enough"
    assert c.row_ptr.dtype == np.uint8, "3 non-zeros: a uint8 row pointer is enough"
    assert np.array_equal(c.to_dense(), w), "the round trip must give the matrix back"
    ones = CSRMatrix.from_dense(np.ones((20, 30), np.float32))
    assert ones.col_indices.dtype == np.uint8, "30 columns: uint8 column indices"
    assert ones.row_ptr.dtype == np.uint16, (
        f"600 non-zeros: row_ptr goes up to nnz = 600, so it needs uint16 "
        f"(index_dtype_for(nnz)), got {ones.row_ptr.dtype}"
    )
    c32 = CSRMatrix.from_dense(w, index_dtype=np.int32)
    assert c32.col_indices.dtype == np.int32 and c32.row_ptr.dtype == np.int32, (
        "a given index_dtype is used for both index arrays"
    )
    assert c32.nbytes == 3 * 4 + 3 * 4 + 5 * 4, "values 4 B + int32 index 4 B per non-zero + row_ptr"


check_csr_format()

### BEGIN HIDDEN TESTS
from tito.probe import probe as _probe

with _probe("18_compression", "csr_format_and_size") as _p:
    _mats = _p.inputs["mats"]
    for _k, _d in enumerate(_mats):
        _p.record(f"csr{_k}", csr_parts, _d)
    _p.record(f"csr{len(_mats)}", csr_parts, _mats[0], _p.inputs["forced"])
### END HIDDEN TESTS


# %% [markdown]
# Next, the product. Write `csr_matmul(a, x)`: `A @ x` for `A` in CSR and `x` of shape
# `(cols,)` or `(cols, N)`, vectorised in numpy and without ever forming the dense matrix:
# multiply every stored value by the row of `x` its column selects, then sum those products
# row by row (`np.add.reduceat` over the row starts; an empty row sums nothing and stays 0).

# %% nbgrader={"grade": false, "grade_id": "csr_matmul", "locked": false, "schema_version": 3, "solution": true, "task": false}
#| export
def csr_matmul(a: CSRMatrix, x) -> np.ndarray:
    """A @ x for A in CSR (rows, cols) and x (cols,) or (cols, N), vectorised in numpy."""
    x = _as_array(x)
    rows, cols = a.shape
    if x.ndim not in (1, 2) or x.shape[0] != cols:
        raise ValueError(f"cannot matmul CSR {a.shape} and {x.shape}")
    x2 = x[:, None] if x.ndim == 1 else x  # (cols, N)
    out = np.zeros((rows, x2.shape[1]), dtype=np.result_type(a.values, x2))
    if a.nnz:
        ### BEGIN SOLUTION
        # one product per stored weight: value * the row of x its column selects
        prod = x2[a.col_indices] * a.values[:, None]  # (nnz, N)
        starts = a.row_ptr[:-1].astype(np.intp)  # (rows,)
        nonempty = starts < a.row_ptr[1:].astype(np.intp)
        # reduceat sums prod[starts[i]:starts[i+1]]; empty rows are skipped (they stay 0)
        out[nonempty] = np.add.reduceat(prod, starts[nonempty], axis=0)
        ### END SOLUTION
    return out[:, 0] if x.ndim == 1 else out


# %% nbgrader={"grade": true, "grade_id": "csr_matmul_matches_dense", "locked": true, "points": 2, "schema_version": 3, "solution": false, "task": false}
def huge_product(n, rows, cols, values, xvals):
    """csr_matmul of an (n, n) CSR matrix with values at (rows[i], cols[i]) (distinct, sorted
    rows) by an x that is xvals[i] at cols[i] and 0 elsewhere: far too large to hold densely
    (n = 1.5 million: 18 TB in float64). Returns the output's shape, its entries at `rows` and
    how many of its entries are non-zero."""
    rows = np.asarray(rows, dtype=np.int64)
    ptr = np.concatenate([[0], np.cumsum(np.bincount(rows, minlength=n))])  # (n + 1,)
    a = CSRMatrix(np.asarray(values, dtype=np.float64), np.asarray(cols, dtype=np.uint32),
                  ptr.astype(index_dtype_for(len(rows))), (n, n))
    x = np.zeros(n)
    x[np.asarray(cols, dtype=np.int64)] = xvals
    out = csr_matmul(a, x)
    return {"shape": list(np.shape(out)), "at_rows": np.asarray(out)[rows].tolist(),
            "nonzero": int(np.count_nonzero(out))}


def check_csr_matmul():
    """csr_matmul gives the same product as the dense matrix, including empty rows."""
    w = np.array([[0, 2.5, 0, 0], [0, 0, 0, 0], [1.0, 0, 0, -3.0], [0, 0, 0, 0]])
    a = CSRMatrix(values=np.array([2.5, 1.0, -3.0]), col_indices=np.array([1, 0, 3], np.uint8),
                  row_ptr=np.array([0, 1, 1, 3, 3], np.uint8), shape=(4, 4))  # CSR of w
    x = np.arange(8, dtype=np.float64).reshape(4, 2)
    got = csr_matmul(a, x)
    assert got.shape == (4, 2), "(4, 4) @ (4, 2) is (4, 2)"
    hint = ("empty rows 1 and 3 must stay 0: np.add.reduceat sums nothing for an empty row "
            "only if you skip it" if got[[1, 3]].any() else
            "row r is the sum over its stored values of value * x[column]")
    assert np.allclose(got, w @ x), f"expected\n{w @ x}\ngot\n{got}\n({hint})"
    v = np.array([1.0, -2.0, 0.5, 4.0])
    assert np.allclose(csr_matmul(a, v), w @ v), "a vector x of shape (cols,) gives (rows,)"
    first_empty = CSRMatrix(np.array([7.0]), np.array([2], np.uint8),
                            np.array([0, 0, 1], np.uint8), (2, 3))
    assert np.allclose(csr_matmul(first_empty, np.ones((3, 2))), [[0, 0], [7, 7]]), (
        "an empty first row stays 0"
    )
    try:
        big = huge_product(1_500_000, rows=[3], cols=[5], values=[2.0], xvals=[1.5])
    except MemoryError:
        raise AssertionError("csr_matmul must not build the dense matrix (a 1.5M x 1.5M "
                             "matrix with one non-zero ran out of memory)") from None
    assert big["at_rows"] == [3.0] and big["nonzero"] == 1, "one non-zero: one non-zero output"

check_csr_matmul()

### BEGIN HIDDEN TESTS
from tito.probe import probe as _probe


def _csr(case):
    return CSRMatrix(case["values"], case["col"], case["ptr"], tuple(case["shape"]))


with _probe("18_compression", "csr_matmul_matches_dense") as _p:
    for _k, _c in enumerate(_p.inputs["cases"]):
        _p.record(f"out{_k}", lambda c=_c: csr_matmul(_csr(c), c["x"]))
    _b = _p.inputs["big"]
    _p.record("big", huge_product, _b["n"], _b["rows"], _b["cols"], _b["values"], _b["xvals"])
### END HIDDEN TESTS


# %% [markdown]
# `model_size` (given) counts a whole model: every parameter dense, versus every weight
# matrix (2-D and up; conv filters flattened to `(out, in*kh*kw)`) in CSR and biases dense.

# %%
#| export
@dataclass
class SizeReport:
    """Bytes of a model's parameters, dense versus weight matrices in CSR."""

    params: int  # number of parameters (scalars)
    nonzero: int  # how many of them are non-zero
    dense_bytes: int  # every parameter stored densely
    sparse_bytes: int  # weight matrices in CSR, 1-D parameters dense
    layers: list  # per parameter: (name, shape, nonzero, dense bytes, CSR-or-dense bytes)

    @property
    def ratio(self) -> float:
        """sparse_bytes / dense_bytes: below 1 means CSR really saves space."""
        return self.sparse_bytes / self.dense_bytes


def model_size(model: Module, index_dtype=None) -> SizeReport:
    """Count the bytes `model` needs dense and with its weight matrices in CSR."""
    rows, params, nonzero, dense, sparse = [], 0, 0, 0, 0
    for name, p in model.named_parameters():
        nz = int(np.count_nonzero(p.data))
        if p.data.ndim >= 2:
            sp = CSRMatrix.from_dense(p.data.reshape(p.shape[0], -1), index_dtype).nbytes
        else:
            sp = p.data.nbytes
        rows.append((name, tuple(p.shape), nz, int(p.data.nbytes), int(sp)))
        params, nonzero = params + p.numel(), nonzero + nz
        dense, sparse = dense + int(p.data.nbytes), sparse + int(sp)
    return SizeReport(params, nonzero, dense, sparse, rows)


# %% tags=["demo"]
require(7)
if "pruned_90" not in globals():
    raise RuntimeError("this cell sizes the global 90% model: run the plotting cell of Part 2 "
                       "first (it needs exercises 1-3)")
print(f"{'model':>22}{'sparsity':>10}{'dense KB':>10}{'CSR (int32) KB':>16}"
      f"{'CSR (smallest) KB':>19}")
for label, m in (("baseline", baseline), ("50% global", None), ("90% global", pruned_90),
                 ("structured 50%", half)):
    if m is None:
        m = fresh_baseline()
        global_unstructured([(x, "weight") for x in prunable_layers(m).values()], 0.5)
    r32, rsmall = model_size(m, np.int32), model_size(m)
    print(f"{label:>22}{model_sparsity(m):10.0%}{r32.dense_bytes / 1024:10.1f}"
          f"{r32.sparse_bytes / 1024:16.1f}{rsmall.sparse_bytes / 1024:19.1f}")

# %% [markdown]
# Read the table: with int32 indices the dense baseline in CSR takes about *twice* its dense
# size (8 bytes per weight instead of 4); at 50% sparsity CSR with int32 indices is still not
# smaller than dense (the row pointers come on top); only at high sparsity does CSR pay.
# Smaller indices move the break-even down (a uint8 column index for 10 or 256 columns costs
# 1 byte instead of 4). The structurally pruned model needs no format at all: its dense
# matrices simply are smaller.
#
# ## Part 5 — Does sparsity make it faster?
#
# Your `csr_matmul` does one multiply per stored weight, so at 90% sparsity it does a tenth
# of the dense arithmetic. Does it take a tenth of the time? Two more tools, given:
#
# - `csr_matmul_blocked`, a better-engineered CSR kernel: it takes the rows in blocks, pads
#   each block to its longest row (the ELLPACK layout) and does one batched `np.matmul` per
#   block, so numpy's summation runs in compiled loops instead of `reduceat`'s slow path.
#   It is what `SparseLinear` (an inference-only `Linear` holding a CSR copy of `W.T`) uses.
# - `compare_latency`, which times several functions **interleaved** (sample 1 of each,
#   then sample 2 of each, ...) after a warm-up and reports medians, so a slow moment of the
#   machine hits all candidates alike.
#
# We time one batch of 64 through a 1024 x 1024 layer (large enough that the arithmetic, not
# the Python overhead, dominates): dense; dense with 90% zeros; the two CSR kernels at several
# sparsities; and a structurally pruned layer with half the inputs and half the outputs.

# %%
#| export
def csr_matmul_blocked(a: CSRMatrix, x, rows_per_block: int = 32) -> np.ndarray:
    """A @ x like `csr_matmul`, computed block by block in ELLPACK form.

    Each block of `rows_per_block` rows is padded to its longest row (padding multiplies a
    zero by row 0 of x), gathered into (R, L, N) and reduced by one batched matmul.
    """
    x = _as_array(x)
    rows, cols = a.shape
    if x.ndim not in (1, 2) or x.shape[0] != cols:
        raise ValueError(f"cannot matmul CSR {a.shape} and {x.shape}")
    x2 = x[:, None] if x.ndim == 1 else x  # (cols, N)
    out = np.zeros((rows, x2.shape[1]), dtype=np.result_type(a.values, x2))
    if a.nnz:
        ptr = a.row_ptr.astype(np.intp)
        lengths = np.diff(ptr)  # (rows,) non-zeros per row
        for r0 in range(0, rows, rows_per_block):
            r1 = min(r0 + rows_per_block, rows)
            width = int(lengths[r0:r1].max())
            if width == 0:
                continue
            k = np.arange(width)
            valid = k < lengths[r0:r1, None]  # (R, L)
            idx = np.minimum(ptr[r0:r1, None] + k, a.nnz - 1)  # (R, L) positions in values
            vals = np.where(valid, a.values[idx], 0).astype(out.dtype)  # (R, L)
            cols_used = np.where(valid, a.col_indices[idx], 0)  # (R, L)
            gathered = x2[cols_used]  # (R, L, N)
            out[r0:r1] = np.matmul(vals[:, None, :], gathered)[:, 0]  # (R, N)
    return out[:, 0] if x.ndim == 1 else out


class SparseLinear(Module):
    """Inference-only Linear whose weight is stored as CSR of W.T (out, in): y = x @ W + b."""

    def __init__(self, linear: Linear, index_dtype=None):
        super().__init__()
        self.in_features, self.out_features = linear.in_features, linear.out_features
        self.csr = CSRMatrix.from_dense(linear.weight.data.T, index_dtype)  # (out, in)
        self.bias_data = None if linear.bias is None else linear.bias.data.copy()

    def forward(self, x) -> Tensor:
        x = _as_array(x)
        if x.shape[-1] != self.in_features:
            raise ValueError(f"SparseLinear expects (..., {self.in_features}), got {x.shape}")
        lead = x.shape[:-1]
        xt = np.ascontiguousarray(x.reshape(-1, self.in_features).T)  # (in, N)
        out = csr_matmul_blocked(self.csr, xt).T  # (N, out)
        if self.bias_data is not None:
            out = out + self.bias_data
        return Tensor(out.reshape(*lead, self.out_features))  # (..., out)

    def extra_repr(self) -> str:
        return f"{self.in_features}, {self.out_features}, nnz={self.csr.nnz}"


def to_sparse(model: Module, index_dtype=None) -> Sequential:
    """A copy of a Sequential with every Linear replaced by a SparseLinear (inference only)."""
    if not isinstance(model, Sequential):
        raise TypeError(f"to_sparse works on a Sequential, got {type(model).__name__}")
    layers = [SparseLinear(m, index_dtype) if isinstance(m, Linear) else copy.deepcopy(m)
              for m in model]
    return Sequential(*layers).eval()


def compare_latency(fns: dict, repeat: int = 5, warmup: int = 1,
                    min_time: float = 0.005) -> dict:
    """Median seconds per call of each function in `fns` (name -> callable), interleaved.

    After `warmup` untimed calls each, every function is calibrated to enough calls to last
    `min_time`; then the functions take turns, one sample each, `repeat` times.
    """
    if repeat < 1:
        raise ValueError(f"repeat must be >= 1, got {repeat}")
    numbers = {}
    for name, fn in fns.items():
        for _ in range(warmup):
            fn()
        start = time.perf_counter()
        fn()
        once = max(time.perf_counter() - start, 1e-9)
        numbers[name] = max(1, min(1 << 16, math.ceil(min_time / once)))
    samples = {name: [] for name in fns}
    for _ in range(repeat):
        for name, fn in fns.items():
            start = time.perf_counter()
            for _ in range(numbers[name]):
                fn()
            samples[name].append((time.perf_counter() - start) / numbers[name])
    return {name: float(np.median(t)) for name, t in samples.items()}


def measure_latency(fn: Callable[[], object], repeat: int = 5, warmup: int = 1,
                    min_time: float = 0.005) -> float:
    """Median seconds per call of one function (see `compare_latency`)."""
    return compare_latency({"fn": fn}, repeat, warmup, min_time)["fn"]


# %% tags=["demo"]
require(1, 6, 7, 8)
rng = np.random.default_rng(0)
big = Linear(1024, 1024)
x64 = rng.standard_normal((64, 1024)).astype(np.float32)
xt = np.ascontiguousarray(x64.T)  # (1024, 64): the kernels compute W.T @ x.T


def pruned_copy(sparsity):
    layer = copy.deepcopy(big)
    l1_unstructured(layer, "weight", sparsity)
    return layer


zeros90 = pruned_copy(0.9)
half_layer = shrink_inputs(shrink_outputs(big, np.arange(512)), np.arange(512))  # 512 x 512
x64_half = np.ascontiguousarray(x64[:, :512])  # the previous layer, cut alike, gives 512
csr = {s: CSRMatrix.from_dense(pruned_copy(s).weight.data.T) for s in (0.5, 0.9, 0.99)}
cases = {
    "dense": lambda: big(x64),
    "dense, 90% zeros": lambda: zeros90(x64),
    "csr_matmul, 90%": lambda: csr_matmul(csr[0.9], xt),
    "csr_matmul, 99%": lambda: csr_matmul(csr[0.99], xt),
    "blocked CSR, 50%": lambda: csr_matmul_blocked(csr[0.5], xt),
    "blocked CSR, 90%": lambda: csr_matmul_blocked(csr[0.9], xt),
    "blocked CSR, 99%": lambda: csr_matmul_blocked(csr[0.99], xt),
    "structured 50% (512x512)": lambda: half_layer(x64_half),
}
with no_grad():
    times = compare_latency(cases, repeat=5)
print("batch 64 through a 1024x1024 Linear, medians of 5 interleaved timings:")
for label, t in times.items():
    print(f"{label:>26}: {t * 1e3:8.3f} ms   speed-up vs dense {times['dense'] / t:6.2f}x")

# %% [markdown]
# Read the table from the top. Where, if anywhere, does a CSR kernel overtake the dense one?
# Why does unstructured sparsity pay so little, or not at all?
#
# - **Dense kernels do not look at values.** BLAS multiplies a zero as fast as any other
#   number, so "dense with 90% zeros" costs what dense costs.
# - **Sparse kernels pay per non-zero, and more per non-zero.** Each stored weight needs an
#   index load and a *gather* of a row of `x` from wherever its column points: irregular
#   memory access instead of the contiguous, vectorised, cache-blocked tiles BLAS streams
#   through. So a sparse kernel needs a high sparsity before it catches up, and how high
#   depends on how well it is engineered: compare your `reduceat` kernel with the blocked one.
# - **Structure is what hardware can use.** Removing whole rows and columns leaves a smaller
#   *dense* matrix — all the speed of BLAS, on less work. Accelerators meet unstructured
#   sparsity halfway with fixed patterns, e.g. NVIDIA's 2:4 sparsity (two zeros in every
#   group of four) that their tensor cores skip in hardware.
#
# ## Part 6 — Knowledge distillation
#
# Pruning shrinks a trained model. Distillation (Hinton, Vinyals & Dean, 2015) *trains* a
# small model from scratch, using a large trained model (the teacher) as a second source of
# labels. The teacher's softmax at a raised **temperature** T, `softmax(z / T)`, shows which
# wrong classes it finds plausible (a 7 that looks a bit like a 1) — "dark knowledge" a
# one-hot label lacks. The student matches those soft targets:
#
# $$ L = \alpha \cdot T^2 \cdot \mathrm{KL}\big(\mathrm{softmax}(t/T)\ \|\
#        \mathrm{softmax}(s/T)\big) + (1 - \alpha)\cdot \mathrm{CE}(s, y) $$
#
# where s and t are the student and teacher logits, and the KL divergence is averaged over
# the batch: $\mathrm{KL}(p\|q) = \sum_c p_c(\log p_c - \log q_c)$. The factor $T^2$ keeps
# the gradient of the soft term on the same scale as the hard term whatever T is (the
# gradient of the KL with respect to s carries a factor 1/T from the division, and the soft
# targets' differences shrink like 1/T as well).
#
# Write `distillation_loss(student_logits, teacher_logits, targets, temperature, alpha)`:
#
# - compute both log-probabilities with a max-shifted **log-softmax** (never `log(softmax)`,
#   which underflows to log 0 for confident logits): the student's with
#   `Tensor.log_softmax` so the loss is differentiable with respect to the student, the
#   teacher's in numpy (the teacher is a constant: no gradient flows into it);
# - return the mixed loss above as a scalar `Tensor` (use `cross_entropy` for the hard part).

# %% nbgrader={"grade": false, "grade_id": "distillation_loss", "locked": false, "schema_version": 3, "solution": true, "task": false}
#| export
def _log_softmax_np(z: np.ndarray) -> np.ndarray:
    shifted = z - z.max(axis=-1, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=-1, keepdims=True))


def distillation_loss(student_logits, teacher_logits, targets, temperature: float = 4.0,
                      alpha: float = 0.9) -> Tensor:
    """alpha * T^2 * KL(softmax(t/T) || softmax(s/T)) + (1 - alpha) * CE(s, targets)."""
    s = student_logits if isinstance(student_logits, Tensor) else Tensor(student_logits)
    t = _as_array(teacher_logits).astype(s.dtype)
    if s.ndim != 2 or t.shape != s.shape:
        raise ValueError(
            f"student logits {s.shape} and teacher logits {t.shape} must be equal (N, C) shapes"
        )
    temperature = float(temperature)
    if not (math.isfinite(temperature) and temperature > 0):
        raise ValueError(f"temperature must be a positive number, got {temperature}")
    alpha = check_amount(alpha, "alpha")
    ### BEGIN SOLUTION
    log_p_student = (s * (1.0 / temperature)).log_softmax(axis=-1)  # (N, C), differentiable
    log_p_teacher = _log_softmax_np(t / temperature)  # (N, C), a constant
    p_teacher = np.exp(log_p_teacher)
    kl = ((Tensor(log_p_teacher) - log_p_student) * p_teacher).sum(axis=-1).mean()
    soft = kl * (temperature * temperature)
    hard = cross_entropy(s, targets)
    return soft * alpha + hard * (1.0 - alpha)
    ### END SOLUTION


# %% nbgrader={"grade": true, "grade_id": "distillation_loss_matches_direct_computation", "locked": true, "points": 3, "schema_version": 3, "solution": false, "task": false}
def distill_outputs(s, t, y, temperature, alpha):
    """The loss (a float) and its gradient with respect to the student logits `s`."""
    st = Tensor(s, requires_grad=True)
    loss = distillation_loss(st, t, y, temperature=temperature, alpha=alpha)
    scalar = isinstance(loss, Tensor) and loss.numel() == 1
    loss.backward()
    return {"scalar": scalar, "loss": float(loss.item()), "grad": st.grad}


def teacher_gets_no_gradient(s, t, y):
    teacher = Tensor(t, requires_grad=True)
    distillation_loss(Tensor(s, requires_grad=True), teacher, y, 2.0, 0.5).backward()
    return teacher.grad is None


def check_distillation_loss():
    """distillation_loss equals the formula, is stable, and its gradient reaches the student."""

    def log_softmax(z):
        z = z - z.max(axis=1, keepdims=True)
        return z - np.log(np.exp(z).sum(axis=1, keepdims=True))

    def formula(s, t, y, temp, a):
        p_t = np.exp(log_softmax(t / temp))
        kl = np.mean(np.sum(p_t * (log_softmax(t / temp) - log_softmax(s / temp)), axis=1))
        ce = -np.mean(log_softmax(s)[np.arange(len(y)), y])
        return a * temp**2 * kl + (1 - a) * ce

    s = np.array([[2.0, 0.5, -1.0]])
    got = distill_outputs(s, np.array([[1.0, 1.0, 1.0]]), np.array([0]), 1.0, 1.0)
    want = formula(s, np.ones((1, 3)), np.array([0]), 1.0, 1.0)
    assert got["scalar"], "return a scalar Tensor"
    assert abs(got["loss"] - want) < 1e-5, (
        f"T = 1, alpha = 1 (the soft term alone): KL(uniform || softmax(s)) is {want:.5f}, got "
        f"{got['loss']}; alpha weighs the soft term, and KL(p||q) = sum p (log p - log q) with "
        "p the teacher's, q the student's probabilities"
    )
    assert got["grad"] is not None, "the loss must be differentiable with respect to the student"
    s = np.array([[2.0, 0.5, -1.0], [0.0, 3.0, 1.0], [-1.0, -1.0, 2.0]])
    t = np.array([[1.0, 2.0, 0.0], [0.5, 2.5, -1.0], [2.0, 0.0, 1.0]])
    y = np.array([0, 1, 2])
    for temp, a, hint in ((1.0, 1.0, "a batch of 3: the KL is the mean over the rows of the "
                                      "batch, not their sum"),
                          (4.0, 1.0, "the soft term is scaled by T^2 (4^2 = 16 here): it keeps "
                                     "its gradient on the scale of the hard term"),
                          (4.0, 0.0, "with alpha = 0 the loss is cross_entropy(s, y) on the "
                                     "student's raw logits (not divided by T)"),
                          (2.0, 0.3, "alpha weighs the soft term, 1 - alpha the hard one; the "
                                     "KL is averaged over the batch")):
        got = distill_outputs(s, t, y, temp, a)
        want = formula(s, t, y, temp, a)
        assert abs(got["loss"] - want) < 1e-4 * max(1.0, abs(want)), (
            f"T = {temp}, alpha = {a}: expected {want:.5f}, got {got['loss']:.5f}; {hint}"
        )
    assert teacher_gets_no_gradient(s, t, y), "no gradient may flow into the teacher"
    huge = distill_outputs(np.array([[1000.0, -1000.0, 0.0]]), np.array([[-1000.0, 1000.0, 0.0]]),
                           np.array([2]), 1.0, 0.5)["loss"]
    assert np.isfinite(huge), "use log-softmax: logits of +-1000 must not give inf or NaN"


check_distillation_loss()

### BEGIN HIDDEN TESTS
from tito.probe import probe as _probe

with _probe("18_compression", "distillation_loss_matches_direct_computation") as _p:
    _in = _p.inputs
    for _k, _c in enumerate(_in["cases"]):
        _p.record(f"d{_k}", distill_outputs, _c["s"], _c["t"], _c["y"], _c["T"], _c["alpha"])
    _p.record("teacher_grad_is_none", teacher_gets_no_gradient, _in["cases"][0]["s"],
              _in["cases"][0]["t"], _in["cases"][0]["y"])
    _p.record("huge", lambda: float(distillation_loss(
        Tensor(_in["huge_s"]), _in["huge_t"], _in["huge_y"], 1.0, 0.5).item()))
### END HIDDEN TESTS


# %% [markdown]
# The training loop (given) runs the teacher in eval mode without a graph and updates only
# the student. With `alpha=0` it is plain cross-entropy training, which makes the
# no-distillation baseline the very same code path.

# %%
#| export
def distill(student: Module, teacher: Module, loader, optimizer, epochs: int,
            temperature: float = 4.0, alpha: float = 0.9) -> list:
    """Train `student` on `loader` against `teacher`'s soft targets; mean loss per epoch."""
    teacher.eval()
    losses = []
    for _ in range(int(epochs)):
        student.train()
        total, count = 0.0, 0
        for x, y in loader:
            with no_grad():
                t_logits = teacher(Tensor(x)).data
            loss = distillation_loss(student(Tensor(x)), t_logits, y, temperature, alpha)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            total += loss.item() * len(y)
            count += len(y)
        losses.append(total / max(count, 1))
    return losses


# %% [markdown]
# The teacher is the baseline (64-256-256-10). The student is 64-32-10: check its parameter
# count below. Both students — with and without distillation — get the same seeds, epochs
# and optimizer; the accuracies are means over three seeds. A high temperature (T = 8)
# spreads the teacher's probability over the wrong classes so the student sees them.

# %% tags=["demo"]
require(9)
teacher = baseline
student_sizes = [64, 32, 10]
T_DISTILL, ALPHA, EPOCHS, LR = 8.0, 0.9, 20, 1e-2
n_student = make_mlp(student_sizes).num_parameters()
print(f"teacher {teacher.num_parameters():,} parameters, student {n_student:,} "
      f"({n_student / teacher.num_parameters():.1%} of the teacher)")
start = time.perf_counter()
accs, students = {"distilled": [], "plain": []}, {}
for seed in (0, 1, 2):
    for kind, alpha in (("distilled", ALPHA), ("plain", 0.0)):
        student = make_mlp(student_sizes, seed=seed)
        distill(student, teacher, train_loader(seed, 64), Adam(student.parameters(), lr=LR),
                EPOCHS, temperature=T_DISTILL, alpha=alpha)
        accs[kind].append(acc(student))
        students[kind, seed] = student
for kind, values in accs.items():
    print(f"{kind:>9} student: {np.mean(values):.1f}% (seeds: "
          + ", ".join(f"{v:.1f}" for v in values) + ")")
print(f"  teacher: {base_acc:.1f}%   ({time.perf_counter() - start:.1f} s for six students)")

# %% [markdown]
# ## Summary
#
# One table, measured now, for the 64-256-256-10 digits model (latency: batch 64, median of
# several timings; sizes: dense float32 versus weight matrices in CSR with the smallest index
# types):

# %% tags=["demo"]
require(5, 6, 7, 9)
for _name, _todo in (("pruned_90", "the plotting cell of Part 2 (exercises 1-3)"),
                     ("half", "the cell of Part 3 that removes half the units (exercises 5-6)"),
                     ("students", "the distillation cell of Part 6 (exercise 9)")):
    if _name not in globals():
        raise RuntimeError(f"this summary needs `{_name}`: run {_todo} first")
distilled = students["distilled", 0]  # the seed-0 distilled student from Part 6
x_batch = X_test[:64]
compared = {"baseline": baseline, "global 90% (dense)": pruned_90,
            "global 90% (CSR)": to_sparse(pruned_90), "structured 50%": half,
            "distilled 64-32-10": distilled}
for m in compared.values():
    m.eval()
with no_grad():
    times = compare_latency({k: (lambda m=m: m(x_batch)) for k, m in compared.items()})
print(f"{'model':>22}{'accuracy':>10}{'non-zero params':>16}{'dense KB':>10}{'CSR KB':>8}"
      f"{'time vs baseline':>18}")
for label, m in compared.items():
    stored = pruned_90 if "CSR" in label else m  # the Module whose parameters are counted
    size = model_size(stored)
    print(f"{label:>22}{acc(m):9.1f}%{size.nonzero:16,}{size.dense_bytes / 1024:10.1f}"
          f"{size.sparse_bytes / 1024:8.1f}{times[label] / times['baseline']:17.2f}x")

# %% [markdown]
# Latency is shown as a ratio to the baseline's. At this width Python overhead is a large part
# of a forward pass, so the speed-ups are smaller than the arithmetic suggests; `bench/
# compression.py` repeats the comparison at width 1024 where compute dominates.
#
# **Take-aways**
#
# - Magnitude pruning with fine-tuning removes most weights of an over-parameterised model at
#   little cost in accuracy; global ranking spends the sparsity where the weights are small.
# - Zeros are not savings by themselves: count bytes in a real format (CSR costs an index
#   per non-zero) and time real kernels (dense BLAS ignores zeros; sparse kernels need very
#   high sparsity to win).
# - Structured pruning and distillation produce models that are smaller and faster with the
#   ordinary dense kernels, which is why production systems reach for them (or for hardware
#   sparsity patterns such as 2:4) first.
