"""Stateless functions with PyTorch's `torch.nn.functional` signatures and semantics.

`tinytorch.nn.functional` re-exports these together with the functions the layers already
use (`conv2d`, `max_pool2d`, the losses). Where our internal convention differs from
PyTorch's, the function here follows PyTorch:

- `linear(x, weight, bias)` takes `weight` as (out_features, in_features), like
  `torch.nn.functional.linear`. A tinytorch `Linear.weight` is stored (in, out) and carries a
  `layout` tag, which `linear` reads: `F.linear(x, layer.weight, layer.bias) == layer(x)`.
- `softmax(x, dim)` / `log_softmax(x, dim)` need `dim` (torch warns without it; we refuse).
"""

from __future__ import annotations

import numpy as np

from tinytorch.core.nn import LINEAR_LAYOUT, _as_float_tensor, get_rng
from tinytorch.core.nn import linear as _linear_in_out
from tinytorch.core.tensor import Tensor

__all__ = [
    "linear",
    "relu",
    "gelu",
    "sigmoid",
    "tanh",
    "softmax",
    "log_softmax",
    "dropout",
    "layer_norm",
    "embedding",
    "one_hot",
]


def linear(input, weight: Tensor, bias: Tensor | None = None) -> Tensor:
    """y = input @ weight.T + bias with weight (out, in), as torch.nn.functional.linear."""
    x = _as_float_tensor(input, "linear")
    w = weight if isinstance(weight, Tensor) else Tensor(weight)
    if getattr(w, "layout", None) == LINEAR_LAYOUT:
        return _linear_in_out(x, w, bias)  # a tinytorch Linear's own (in, out) weight
    if w.ndim != 2 or x.ndim == 0 or x.shape[-1] != w.shape[1]:
        raise ValueError(
            f"linear: weight (out, in) = {w.shape} needs input (..., {w.shape[-1]}), "
            f"got {x.shape}"
        )
    b = bias if bias is None or isinstance(bias, Tensor) else Tensor(bias)
    return _linear_in_out(x, w.T, b)  # (..., in) @ (in, out)


def relu(input) -> Tensor:
    return _as_float_tensor(input, "relu").relu()


def gelu(input, approximate: str = "none") -> Tensor:
    """GELU as torch: exact x * Phi(x) by default, `approximate="tanh"` for GPT-2's form."""
    return _as_float_tensor(input, "gelu").gelu(approximate=approximate)


def sigmoid(input) -> Tensor:
    return _as_float_tensor(input, "sigmoid").sigmoid()


def tanh(input) -> Tensor:
    return _as_float_tensor(input, "tanh").tanh()


def softmax(input, dim: int) -> Tensor:
    return _as_float_tensor(input, "softmax").softmax(dim=dim)


def log_softmax(input, dim: int) -> Tensor:
    return _as_float_tensor(input, "log_softmax").log_softmax(dim=dim)


def dropout(input, p: float = 0.5, training: bool = True) -> Tensor:
    """Inverted dropout (zero with probability p, scale the rest by 1/(1-p)) when training."""
    if not 0.0 <= p <= 1.0:
        raise ValueError(f"dropout probability must be in [0, 1], got {p}")
    x = _as_float_tensor(input, "dropout")
    if not training or p == 0.0:
        return x
    if p == 1.0:
        return x * np.zeros(x.shape, dtype=x.dtype)
    keep = get_rng().random(x.shape) >= p
    return x * (keep * (1.0 / (1.0 - p))).astype(x.dtype)


def layer_norm(input, normalized_shape, weight=None, bias=None, eps: float = 1e-5) -> Tensor:
    """Normalise over the trailing `normalized_shape` dims, then scale and shift."""
    x = _as_float_tensor(input, "layer_norm")
    shape = (normalized_shape,) if isinstance(normalized_shape, int) else tuple(normalized_shape)
    if x.shape[x.ndim - len(shape):] != shape:
        raise ValueError(f"layer_norm over {shape} needs input (..., {shape}), got {x.shape}")
    axes = tuple(range(x.ndim - len(shape), x.ndim))
    mean = x.mean(axis=axes, keepdims=True)
    centered = x - mean
    var = (centered * centered).mean(axis=axes, keepdims=True)  # biased, as torch
    out = centered * (var + eps) ** -0.5
    if weight is not None:
        out = out * weight
    if bias is not None:
        out = out + bias
    return out


def embedding(input, weight: Tensor) -> Tensor:
    """Rows of `weight` (num_embeddings, dim) at integer ids `input`."""
    idx = input.data if isinstance(input, Tensor) else np.asarray(input)
    if idx.dtype.kind not in "iu":
        raise TypeError(f"embedding expects integer ids, got dtype {idx.dtype}")
    return weight[idx]


def one_hot(tensor, num_classes: int = -1) -> Tensor:
    """int64 one-hot of integer ids (num_classes = max + 1 when -1, as in torch)."""
    t = tensor.data if isinstance(tensor, Tensor) else np.asarray(tensor)
    if t.dtype.kind not in "iu":
        raise TypeError(f"one_hot expects integer ids, got dtype {t.dtype}")
    n = int(t.max()) + 1 if num_classes == -1 else int(num_classes)
    if t.size and (t.min() < 0 or t.max() >= n):
        raise ValueError(f"one_hot: ids must be in [0, {n}), got {t.min()}..{t.max()}")
    return Tensor((t[..., None] == np.arange(n)).astype(np.int64))
