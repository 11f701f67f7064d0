"""Loss functions: `cross_entropy` (integer class targets) and `mse`, plus the PyTorch-shaped
`nn.functional` spellings (`cross_entropy_loss`, `mse_loss`) and loss modules
(`CrossEntropyLoss`, `MSELoss`).

`cross_entropy` takes the class scores on the LAST axis ((..., C), what a language model
produces); the PyTorch spelling puts them on dim 1 ((N, C) or (N, C, d1, ...)) as torch does.
"""

from __future__ import annotations

import numpy as np

from tinytorch.core.nn import Module
from tinytorch.core.tensor import Tensor, get_default_dtype

__all__ = ["cross_entropy", "mse", "cross_entropy_loss", "mse_loss", "CrossEntropyLoss",
           "MSELoss"]

_REDUCTIONS = ("mean", "sum", "none")


def _as_float_tensor(x, who: str) -> Tensor:
    if isinstance(x, Tensor):
        return x if x.dtype.kind == "f" else Tensor(x.data.astype(get_default_dtype()))
    arr = np.asarray(x)
    if arr.dtype.kind not in "biuf":
        raise TypeError(f"{who} expects numeric input, got dtype {arr.dtype}")
    return Tensor(arr if arr.dtype.kind == "f" else arr.astype(get_default_dtype()))


def cross_entropy(logits, targets, label_smoothing: float = 0.0) -> Tensor:
    """Mean negative log-likelihood of integer `targets` under softmax(`logits`).

    logits: (N, C) with targets (N,), or any (..., C) with targets (...) -- e.g. (B, T, C)
    with (B, T) for a language model. Computed from log-softmax (max-shifted), so large logits
    do not overflow. With `label_smoothing` = e the target distribution is
    (1 - e) * one_hot + e / C. Returns a scalar Tensor.
    """
    logits = _as_float_tensor(logits, "cross_entropy")
    t = targets.data if isinstance(targets, Tensor) else np.asarray(targets)
    if logits.ndim < 2:
        raise ValueError(f"cross_entropy expects logits (N, C) or (..., C), got {logits.shape}")
    if t.dtype.kind not in "iu":
        raise TypeError(
            f"cross_entropy expects integer class targets, got dtype {t.dtype} (shape {t.shape})"
        )
    if t.shape != logits.shape[:-1]:
        raise ValueError(
            f"cross_entropy: logits {logits.shape} need targets of shape {logits.shape[:-1]}, "
            f"got {t.shape}"
        )
    if not 0.0 <= label_smoothing <= 1.0:
        raise ValueError(f"label_smoothing must be in [0, 1], got {label_smoothing}")
    c = logits.shape[-1]
    if t.size and (t.min() < 0 or t.max() >= c):
        raise ValueError(
            f"cross_entropy: targets must be class ids in [0, {c}) for logits {logits.shape}, "
            f"got values from {t.min()} to {t.max()}"
        )
    z = logits.data.reshape(-1, c)  # (M, C), M = number of predictions
    flat_t = t.reshape(-1)  # (M,)
    m = max(z.shape[0], 1)
    shifted = z - z.max(axis=1, keepdims=True)
    logp = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))  # (M, C) log-softmax
    rows = np.arange(z.shape[0])
    nll = -logp[rows, flat_t]  # (M,)
    loss = nll.mean() if z.shape[0] else np.zeros((), logits.dtype)
    if label_smoothing:
        loss = (1 - label_smoothing) * loss - label_smoothing * logp.mean(axis=1).mean()
    shape = logits.shape

    def backward(g):
        # d loss / d z = (softmax(z) - target distribution) / M
        grad = np.exp(logp)
        grad[rows, flat_t] -= 1.0 - label_smoothing
        if label_smoothing:
            grad -= label_smoothing / c
        return ((grad * (g / m)).reshape(shape),)  # (..., C)

    out = np.asarray(loss, dtype=logits.dtype)
    return logits._make(out, (logits,), backward, "cross_entropy")


def mse(pred, target) -> Tensor:
    """Mean squared error; `pred` and `target` must have the same shape (no broadcasting)."""
    pred = _as_float_tensor(pred, "mse")
    target = _as_float_tensor(target, "mse")
    if pred.shape != target.shape:
        raise ValueError(
            f"mse needs pred and target of the same shape, got {pred.shape} and {target.shape}"
        )
    diff = pred - target
    return (diff * diff).mean()


def _check_reduction(reduction: str) -> str:
    if reduction not in _REDUCTIONS:
        raise ValueError(f"reduction must be one of {_REDUCTIONS}, got {reduction!r}")
    return reduction


def cross_entropy_loss(input, target, reduction: str = "mean",
                       label_smoothing: float = 0.0) -> Tensor:
    """torch.nn.functional.cross_entropy: logits (N, C) or (N, C, d1, ...) with class ids
    (N,) or (N, d1, ...); `reduction` 'mean' | 'sum' | 'none'."""
    _check_reduction(reduction)
    logits = _as_float_tensor(input, "cross_entropy")
    if logits.ndim == 1:  # unbatched (C,) with a scalar target
        logits = logits.reshape(1, -1)  # (1, C)
        target = np.reshape(target.data if isinstance(target, Tensor) else target, (1,))
    elif logits.ndim > 2:
        perm = (0, *range(2, logits.ndim), 1)
        logits = logits.permute(*perm)  # (N, d1, ..., C): classes last, as cross_entropy reads
    if reduction == "mean":
        return cross_entropy(logits, target, label_smoothing)
    t = target.data if isinstance(target, Tensor) else np.asarray(target)
    cross_entropy(logits, t, label_smoothing)  # validates shapes, dtypes and class ids
    logp = logits.log_softmax(axis=-1)  # (..., C)
    c = logits.shape[-1]
    onehot = (t[..., None] == np.arange(c)).astype(logp.dtype)  # (..., C)
    dist = (1 - label_smoothing) * onehot + label_smoothing / c
    per_item = -(logp * dist).sum(axis=-1)  # (...)
    return per_item.sum() if reduction == "sum" else per_item


def mse_loss(input, target, reduction: str = "mean") -> Tensor:
    """torch.nn.functional.mse_loss (same shapes; no broadcasting)."""
    _check_reduction(reduction)
    if reduction == "mean":
        return mse(input, target)
    pred = _as_float_tensor(input, "mse_loss")
    tgt = _as_float_tensor(target, "mse_loss")
    if pred.shape != tgt.shape:
        raise ValueError(
            f"mse_loss needs input and target of the same shape, got {pred.shape} and "
            f"{tgt.shape}"
        )
    sq = (pred - tgt) * (pred - tgt)
    return sq.sum() if reduction == "sum" else sq


class CrossEntropyLoss(Module):
    """`nn.CrossEntropyLoss(reduction='mean', label_smoothing=0.0)`: see cross_entropy_loss."""

    def __init__(self, reduction: str = "mean", label_smoothing: float = 0.0):
        super().__init__()
        self.reduction = _check_reduction(reduction)
        self.label_smoothing = float(label_smoothing)

    def forward(self, input, target) -> Tensor:
        return cross_entropy_loss(input, target, self.reduction, self.label_smoothing)


class MSELoss(Module):
    """`nn.MSELoss(reduction='mean')`."""

    def __init__(self, reduction: str = "mean"):
        super().__init__()
        self.reduction = _check_reduction(reduction)

    def forward(self, input, target) -> Tensor:
        return mse_loss(input, target, self.reduction)
