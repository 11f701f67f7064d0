"""The routing point: every matmul-shaped computation in tinytorch goes through `matmul` here.

A backend is anything with a `name` and a `matmul(a, b)` that follows `np.matmul` semantics.
The core registers only the numpy reference; module 15 (`tinytorch.acceleration`) adds the
naive, blocked and vectorized kernels and the size-aware `OptimizedBackend`.

The active backend is read at call time from a context variable, so

    with use_backend("blocked"):
        logits = model(x)

reroutes a whole model without touching its code.
"""

from __future__ import annotations

import contextlib
import contextvars
from collections.abc import Callable, Iterator

import numpy as np

__all__ = [
    "Backend",
    "NumpyBackend",
    "BACKENDS",
    "register_backend",
    "unregister_backend",
    "get_backend",
    "set_backend",
    "use_backend",
    "available_backends",
    "check_matmul_shapes",
    "matmul",
    "resolved_matmul",
]


class Backend:
    """Interface of a compute backend. Subclasses set `name` and implement `matmul`."""

    name: str = "abstract"

    def matmul(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        """Return `a @ b` with `np.matmul` semantics (batched, broadcast leading dims)."""
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r})"


class NumpyBackend(Backend):
    """Reference backend: numpy's matmul, which calls the BLAS numpy was built with."""

    name = "numpy"
    matmul = staticmethod(np.matmul)  # the ufunc itself: no Python frame per call


# The one registry. `grep -n BACKENDS` finds every place a backend is added or chosen.
BACKENDS: dict[str, Backend] = {}
_DEFAULT = "numpy"
_active: contextvars.ContextVar[str] = contextvars.ContextVar("tinytorch_backend", default=_DEFAULT)


def register_backend(backend: Backend, *, overwrite: bool = True) -> Backend:
    """Add `backend` to the registry under `backend.name` and return it."""
    name = getattr(backend, "name", None)
    if not isinstance(name, str) or not name:
        raise TypeError(f"a backend needs a non-empty string `name`, got {name!r}")
    if not callable(getattr(backend, "matmul", None)):
        raise TypeError(f"backend {name!r} has no callable matmul(a, b)")
    if name in BACKENDS and not overwrite:
        raise ValueError(f"a backend named {name!r} is already registered")
    BACKENDS[name] = backend
    return backend


def unregister_backend(name: str) -> None:
    """Remove a backend (the numpy reference cannot be removed)."""
    if name == _DEFAULT:
        raise ValueError("the numpy reference backend cannot be unregistered")
    BACKENDS.pop(name, None)


def available_backends() -> list[str]:
    """Names of the registered backends, in registration order."""
    return list(BACKENDS)


def get_backend(name: str | None = None) -> Backend:
    """The backend called `name`, or the active one when `name` is None."""
    key = _active.get() if name is None else name
    try:
        return BACKENDS[key]
    except KeyError:
        raise ValueError(
            f"unknown backend {key!r}; registered backends: {available_backends()}"
        ) from None


def set_backend(name: str) -> str:
    """Make `name` the active backend for this context; returns the previous name."""
    get_backend(name)  # validate before switching
    previous = _active.get()
    _active.set(name)
    return previous


@contextlib.contextmanager
def use_backend(name: str) -> Iterator[Backend]:
    """Run the body with backend `name` active, restoring the previous one afterwards."""
    backend = get_backend(name)
    token = _active.set(name)
    try:
        yield backend
    finally:
        _active.reset(token)


def check_matmul_shapes(a: np.ndarray, b: np.ndarray) -> None:
    """Raise ValueError naming both shapes unless `a @ b` is defined."""
    if a.ndim == 0 or b.ndim == 0:
        raise ValueError(f"cannot matmul {a.shape} and {b.shape}: matmul needs at least 1-D")
    k_a = a.shape[-1]
    k_b = b.shape[-2] if b.ndim >= 2 else b.shape[0]
    if k_a != k_b:
        raise ValueError(
            f"cannot matmul {a.shape} and {b.shape}: inner dimensions {k_a} and {k_b} differ"
        )
    if a.ndim > 2 and b.ndim > 2:
        try:
            np.broadcast_shapes(a.shape[:-2], b.shape[:-2])
        except ValueError:
            raise ValueError(
                f"cannot matmul {a.shape} and {b.shape}: batch dimensions "
                f"{a.shape[:-2]} and {b.shape[:-2]} do not broadcast"
            ) from None


def matmul(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """The routing point: check shapes, then run `a @ b` on the active backend."""
    # Fast path for the common case (2-D weight on the right); everything else gets the
    # full check. Any backend, even a naive one, so only sees well-formed products.
    sa, sb = a.shape, b.shape
    if not (
        len(sb) >= 2
        and len(sa) >= 1
        and sa[-1] == sb[-2]
        and (len(sb) == 2 or sa[:-2] == sb[:-2])  # a weight, or equal batch dims
    ):
        check_matmul_shapes(a, b)
    return BACKENDS[_active.get()].matmul(a, b)


def resolved_matmul() -> Callable[[np.ndarray, np.ndarray], np.ndarray]:
    """The product for a whole forward pass, resolved once instead of per product (what the
    inference fast path does, where a per-call lookup costs as much as a small product):
    numpy's ufunc itself when the active backend is the numpy reference (it checks shapes
    itself, and costs no Python frame), else `matmul`, the routing point."""
    return np.matmul if BACKENDS[_active.get()].matmul is np.matmul else matmul


register_backend(NumpyBackend())
