"""Central finite differences, to check analytic gradients (run in float64)."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from tinytorch.core.tensor import Tensor

__all__ = ["numerical_grad", "gradcheck"]


def numerical_grad(
    fn: Callable[..., Tensor], inputs: Sequence[Tensor], eps: float = 1e-6
) -> list[np.ndarray]:
    """d sum(fn(*inputs) * w) / d input for a fixed random projection w, by central differences."""
    out = fn(*inputs)
    w = np.random.default_rng(0).standard_normal(out.shape)
    grads = []
    for t in inputs:
        g = np.zeros_like(t.data, dtype=np.float64)
        flat = t.data.reshape(-1)  # a view: edits change t.data
        for i in range(flat.size):
            old = flat[i]
            flat[i] = old + eps
            plus = float((fn(*inputs).data * w).sum())
            flat[i] = old - eps
            minus = float((fn(*inputs).data * w).sum())
            flat[i] = old
            g.reshape(-1)[i] = (plus - minus) / (2 * eps)
        grads.append(g)
    return grads


def gradcheck(
    fn: Callable[..., Tensor],
    inputs: Sequence[Tensor],
    eps: float = 1e-6,
    rtol: float = 1e-5,
    atol: float = 1e-8,
) -> float:
    """Compare backward() with finite differences; return the worst relative error.

    Raises AssertionError naming the input and the error when it exceeds `rtol`.
    Inputs must be float64 tensors with requires_grad=True.
    """
    for i, t in enumerate(inputs):
        if t.dtype != np.float64:
            raise TypeError(f"gradcheck input {i} must be float64, got {t.dtype}")
        t.grad = None
    out = fn(*inputs)
    w = np.random.default_rng(0).standard_normal(out.shape)
    out.backward(w.astype(out.dtype))
    analytic = [np.zeros(t.shape) if t.grad is None else t.grad.copy() for t in inputs]
    numeric = numerical_grad(fn, inputs, eps)
    worst = 0.0
    for i, (a, n) in enumerate(zip(analytic, numeric)):
        denom = max(np.abs(a).max(initial=0.0), np.abs(n).max(initial=0.0), 1.0)
        err = float(np.abs(a - n).max(initial=0.0) / denom)
        if not err <= rtol and not np.allclose(a, n, rtol=rtol, atol=atol):
            raise AssertionError(
                f"gradient of input {i} (shape {a.shape}) is off: relative error {err:.3e} > "
                f"{rtol:.0e}\nanalytic:\n{a}\nnumeric:\n{n}"
            )
        worst = max(worst, err)
    return worst
