"""Loss functions: `cross_entropy` (integer class targets) and `mse`."""

from __future__ import annotations

import numpy as np

from tinytorch.core.tensor import Tensor, get_default_dtype

__all__ = ["cross_entropy", "mse"]


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
