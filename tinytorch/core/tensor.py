"""Tensor: a numpy array with reverse-mode automatic differentiation.

Each operation returns a new `Tensor` that remembers its parents and a `_backward` closure that
turns the gradient of the output into gradients of the inputs. `backward()` visits the graph in
reverse topological order. Broadcasting in the forward pass is undone in the backward pass by
summing the gradient back to each input's shape (`_unbroadcast`).

Inside `with no_grad():` no graph is recorded, so inference costs what numpy costs.
"""

from __future__ import annotations

import contextlib
import contextvars
import math
from collections.abc import Callable, Iterator, Sequence

import numpy as np

from tinytorch.core import backends

__all__ = [
    "Tensor",
    "no_grad",
    "enable_grad",
    "is_grad_enabled",
    "default_dtype",
    "get_default_dtype",
    "concat",
    "stack",
    "where",
    "tensor",
]

_SQRT_2_OVER_PI = math.sqrt(2 / math.pi)
_grad_enabled: contextvars.ContextVar[bool] = contextvars.ContextVar("grad", default=True)
_default_dtype: contextvars.ContextVar[np.dtype] = contextvars.ContextVar(
    "default_dtype", default=np.dtype(np.float32)
)


@contextlib.contextmanager
def no_grad() -> Iterator[None]:
    """Record no graph inside the block (inference mode)."""
    token = _grad_enabled.set(False)
    try:
        yield
    finally:
        _grad_enabled.reset(token)


@contextlib.contextmanager
def enable_grad() -> Iterator[None]:
    """Record the graph inside the block, even within `no_grad()`."""
    token = _grad_enabled.set(True)
    try:
        yield
    finally:
        _grad_enabled.reset(token)


def is_grad_enabled() -> bool:
    return _grad_enabled.get()


@contextlib.contextmanager
def default_dtype(dtype) -> Iterator[None]:
    """Create float tensors (and parameters) with `dtype` inside the block, e.g. float64."""
    dt = np.dtype(dtype)
    if dt.kind != "f":
        raise TypeError(f"default dtype must be a float type, got {dt}")
    token = _default_dtype.set(dt)
    try:
        yield
    finally:
        _default_dtype.reset(token)


def get_default_dtype() -> np.dtype:
    return _default_dtype.get()


def _as_array(data, dtype=None) -> np.ndarray:
    """Convert `data` to an ndarray: floats take the default dtype, integers stay integers."""
    if isinstance(data, Tensor):
        data = data.data
    if dtype is not None:
        try:
            return np.asarray(data, dtype=dtype)
        except (TypeError, ValueError) as exc:
            msg = f"cannot make a {np.dtype(dtype)} tensor from {type(data).__name__}: {exc}"
            raise TypeError(msg) from None
    arr = np.asarray(data)
    kind = arr.dtype.kind
    if kind in "biu":
        return arr
    if kind == "f":
        return arr if arr.dtype == get_default_dtype() else arr.astype(get_default_dtype())
    raise TypeError(
        f"Tensor data must be numeric (bool, int or float), got dtype {arr.dtype} from "
        f"{type(data).__name__}"
    )


def _unbroadcast(grad: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """Sum `grad` over the axes that broadcasting added or stretched, giving `shape`."""
    if grad.shape == shape:
        return grad
    extra = grad.ndim - len(shape)
    if extra > 0:
        grad = grad.sum(axis=tuple(range(extra)))
    stretched = tuple(i for i, n in enumerate(shape) if n == 1 and grad.shape[i] != 1)
    if stretched:
        grad = grad.sum(axis=stretched, keepdims=True)
    return grad.reshape(shape)


class Tensor:
    """An n-dimensional array that can record the operations applied to it."""

    __array_priority__ = 1000  # make `ndarray + Tensor` call Tensor.__radd__
    # Slots make creating a result (what every op does) cheaper; __dict__ keeps tensors open
    # to extra attributes, __weakref__ to weak references.
    __slots__ = ("data", "requires_grad", "grad", "_parents", "_backward", "_op", "__dict__",
                 "__weakref__")

    def __init__(self, data, requires_grad: bool = False, dtype=None):
        self.data: np.ndarray = _as_array(data, dtype)
        if requires_grad and self.data.dtype.kind != "f":
            raise TypeError(f"only float tensors can require grad, got dtype {self.data.dtype}")
        self.requires_grad = bool(requires_grad)
        self.grad: np.ndarray | None = None
        self._parents: tuple[Tensor, ...] = ()
        self._backward: Callable[[np.ndarray], None] | None = None
        self._op = ""

    # ----------------------------------------------------------------- basics
    @property
    def shape(self) -> tuple[int, ...]:
        return self.data.shape

    @property
    def ndim(self) -> int:
        return self.data.ndim

    @property
    def dtype(self) -> np.dtype:
        return self.data.dtype

    @property
    def size(self) -> int:
        return self.data.size

    @property
    def T(self) -> Tensor:
        return self.transpose()

    def __len__(self) -> int:
        return len(self.data)

    def __repr__(self) -> str:
        grad = ", requires_grad=True" if self.requires_grad else ""
        body = np.array2string(self.data, precision=4, separator=", ", threshold=20)
        return f"Tensor({body}, dtype={self.dtype}{grad})"

    def numpy(self) -> np.ndarray:
        return self.data

    def item(self) -> float:
        return self.data.item()

    def detach(self) -> Tensor:
        return Tensor(self.data)

    def astype(self, dtype) -> Tensor:
        return Tensor(self.data.astype(dtype))

    def zero_grad(self) -> None:
        self.grad = None

    # ------------------------------------------------------------ graph making
    def _make(
        self,
        data: np.ndarray,
        parents: tuple[Tensor, ...],
        backward: Callable[[np.ndarray], tuple],
        op: str,
    ) -> Tensor:
        """Wrap `data` as the result of an op; `backward(g)` returns one grad per parent."""
        out = Tensor.__new__(Tensor)
        out.data = data
        out.grad = None
        out._op = op
        # Under no_grad (inference) this is the whole cost of an op on top of numpy.
        needs = _grad_enabled.get() and any(p.requires_grad for p in parents)
        out.requires_grad = needs
        if needs:
            out._parents = parents

            def _run(g: np.ndarray) -> None:
                for parent, pg in zip(parents, backward(g)):
                    if pg is None or not parent.requires_grad:
                        continue
                    pg = _unbroadcast(np.asarray(pg, dtype=parent.data.dtype), parent.shape)
                    parent.grad = pg.copy() if parent.grad is None else parent.grad + pg

            out._backward = _run
        else:
            out._parents = ()
            out._backward = None
        return out

    def backward(self, grad=None) -> None:
        """Accumulate d(self)/d(leaf) into every leaf's `.grad` (self must be a scalar or
        `grad` given)."""
        if not self.requires_grad:
            raise RuntimeError("backward() on a tensor that does not require grad")
        if grad is None:
            if self.size != 1:
                raise ValueError(
                    f"backward() without a gradient needs a scalar, got shape {self.shape}"
                )
            grad = np.ones_like(self.data)
        grad = np.asarray(grad, dtype=self.data.dtype)
        if grad.shape != self.shape:
            raise ValueError(f"gradient shape {grad.shape} does not match tensor {self.shape}")

        order: list[Tensor] = []
        seen: set[int] = set()
        stack: list[tuple[Tensor, bool]] = [(self, False)]
        while stack:  # iterative DFS: deep graphs (long sequences) do not hit recursion limits
            node, done = stack.pop()
            if done:
                order.append(node)
                continue
            if id(node) in seen:
                continue
            seen.add(id(node))
            stack.append((node, True))
            stack.extend((p, False) for p in node._parents if id(p) not in seen)

        self.grad = grad if self.grad is None else self.grad + grad
        for node in reversed(order):
            if node._backward is not None and node.grad is not None:
                node._backward(node.grad)
                if node._parents:  # free intermediate grads: only leaves keep theirs
                    node.grad = None if node is not self else node.grad

    # -------------------------------------------------------------- arithmetic
    def __add__(self, other) -> Tensor:
        other = _lift(other, self)
        return self._make(self.data + other.data, (self, other), lambda g: (g, g), "add")

    __radd__ = __add__

    def __sub__(self, other) -> Tensor:
        other = _lift(other, self)
        return self._make(self.data - other.data, (self, other), lambda g: (g, -g), "sub")

    def __rsub__(self, other) -> Tensor:
        return _lift(other, self) - self

    def __mul__(self, other) -> Tensor:
        other = _lift(other, self)
        a, b = self.data, other.data
        return self._make(a * b, (self, other), lambda g: (g * b, g * a), "mul")

    __rmul__ = __mul__

    def __truediv__(self, other) -> Tensor:
        other = _lift(other, self)
        a, b = self.data, other.data
        return self._make(a / b, (self, other), lambda g: (g / b, -g * a / (b * b)), "div")

    def __rtruediv__(self, other) -> Tensor:
        return _lift(other, self) / self

    def __neg__(self) -> Tensor:
        return self._make(-self.data, (self,), lambda g: (-g,), "neg")

    def __pow__(self, exponent) -> Tensor:
        if isinstance(exponent, Tensor) or not np.isscalar(exponent):
            raise TypeError(f"only scalar exponents are supported, got {type(exponent).__name__}")
        a = self.data
        out = a**exponent
        return self._make(out, (self,), lambda g: (g * exponent * a ** (exponent - 1),), "pow")

    def __matmul__(self, other) -> Tensor:
        other = _lift(other, self)
        a, b = self.data, other.data
        out = backends.matmul(a, b)

        def backward(g):
            # 1-D operands are promoted to matrices the way np.matmul does, then squeezed back.
            a2 = a[None, :] if a.ndim == 1 else a  # (..., M, K)
            b2 = b[:, None] if b.ndim == 1 else b  # (..., K, N)
            g2 = np.expand_dims(g, -1) if b.ndim == 1 else g
            g2 = np.expand_dims(g2, -2) if a.ndim == 1 else g2  # (..., M, N)
            ga = backends.matmul(g2, np.swapaxes(b2, -1, -2))  # (..., M, K)
            gb = backends.matmul(np.swapaxes(a2, -1, -2), g2)  # (..., K, N)
            return (
                _unbroadcast(ga, a2.shape).reshape(a.shape),
                _unbroadcast(gb, b2.shape).reshape(b.shape),
            )

        return self._make(out, (self, other), backward, "matmul")

    def __rmatmul__(self, other) -> Tensor:
        return _lift(other, self) @ self

    # Comparisons give plain boolean arrays: they have no gradient.
    def __gt__(self, other):
        return self.data > _data(other)

    def __lt__(self, other):
        return self.data < _data(other)

    def __ge__(self, other):
        return self.data >= _data(other)

    def __le__(self, other):
        return self.data <= _data(other)

    # -------------------------------------------------------------- reductions
    def sum(self, axis=None, keepdims: bool = False) -> Tensor:
        shape = self.shape

        def backward(g):
            if not keepdims and axis is not None:
                g = np.expand_dims(g, _norm_axes(axis, len(shape)))
            return (np.broadcast_to(g, shape),)

        return self._make(self.data.sum(axis=axis, keepdims=keepdims), (self,), backward, "sum")

    def mean(self, axis=None, keepdims: bool = False) -> Tensor:
        axes = _norm_axes(axis, self.ndim) if axis is not None else tuple(range(self.ndim))
        count = math.prod(self.shape[i] for i in axes) if axes else 1
        return self.sum(axis=axis, keepdims=keepdims) * (1.0 / max(count, 1))

    def max(self, axis=None, keepdims: bool = False) -> Tensor:
        data = self.data
        out_keep = data.max(axis=axis, keepdims=True)

        def backward(g):
            if not keepdims and axis is not None:
                g = np.expand_dims(g, _norm_axes(axis, data.ndim))
            elif not keepdims:
                g = np.reshape(g, (1,) * data.ndim)
            mask = data == out_keep
            # ties share the gradient equally
            return (mask * g / mask.sum(axis=axis, keepdims=True),)

        out = out_keep if keepdims else data.max(axis=axis)
        return self._make(np.asarray(out), (self,), backward, "max")

    # ------------------------------------------------------------ shape moves
    def reshape(self, *shape) -> Tensor:
        if len(shape) == 1 and isinstance(shape[0], tuple | list):
            shape = tuple(shape[0])
        old = self.shape
        try:
            out = self.data.reshape(shape)
        except ValueError:
            raise ValueError(f"cannot reshape tensor of shape {old} into {shape}") from None
        return self._make(out, (self,), lambda g: (g.reshape(old),), "reshape")

    def view(self, *shape) -> Tensor:
        return self.reshape(*shape)

    def transpose(self, *axes) -> Tensor:
        if len(axes) == 1 and isinstance(axes[0], tuple | list):
            axes = tuple(axes[0])
        if len(axes) == 2 and self.ndim != 2:
            # torch-style transpose(dim0, dim1): swap two axes
            perm = list(range(self.ndim))
            i, j = (ax % self.ndim for ax in axes)
            perm[i], perm[j] = perm[j], perm[i]
            axes = tuple(perm)
        elif not axes:
            axes = tuple(reversed(range(self.ndim)))
        return self.permute(*axes)

    def permute(self, *axes) -> Tensor:
        if len(axes) == 1 and isinstance(axes[0], tuple | list):
            axes = tuple(axes[0])
        if sorted(a % max(self.ndim, 1) for a in axes) != list(range(self.ndim)):
            raise ValueError(f"permute axes {axes} are not a permutation of {self.ndim} dims")
        inverse = np.argsort(axes)
        return self._make(
            np.transpose(self.data, axes), (self,), lambda g: (np.transpose(g, inverse),), "permute"
        )

    def __getitem__(self, index) -> Tensor:
        if isinstance(index, Tensor):
            index = index.data
        elif isinstance(index, tuple):
            index = tuple(i.data if isinstance(i, Tensor) else i for i in index)
        shape, dtype = self.shape, self.data.dtype

        def backward(g):
            full = np.zeros(shape, dtype=dtype)
            np.add.at(full, index, g)  # add.at: repeated indices accumulate
            return (full,)

        return self._make(np.asarray(self.data[index]), (self,), backward, "getitem")

    # ------------------------------------------------------------- elementwise
    def exp(self) -> Tensor:
        out = np.exp(self.data)
        return self._make(out, (self,), lambda g: (g * out,), "exp")

    def log(self) -> Tensor:
        a = self.data
        return self._make(np.log(a), (self,), lambda g: (g / a,), "log")

    def sqrt(self) -> Tensor:
        out = np.sqrt(self.data)
        return self._make(out, (self,), lambda g: (g * 0.5 / out,), "sqrt")

    def abs(self) -> Tensor:
        a = self.data
        return self._make(np.abs(a), (self,), lambda g: (g * np.sign(a),), "abs")

    def relu(self) -> Tensor:
        a = self.data
        return self._make(np.maximum(a, 0), (self,), lambda g: (g * (a > 0),), "relu")

    def tanh(self) -> Tensor:
        out = np.tanh(self.data)
        return self._make(out, (self,), lambda g: (g * (1 - out * out),), "tanh")

    def sigmoid(self) -> Tensor:
        a = self.data
        # stable in both tails: exp of a non-positive number only
        e = np.exp(-np.abs(a))
        out = np.where(a >= 0, 1 / (1 + e), e / (1 + e)).astype(a.dtype)
        return self._make(out, (self,), lambda g: (g * out * (1 - out),), "sigmoid")

    def gelu(self) -> Tensor:
        """GELU, tanh approximation (as in GPT-2)."""
        a = self.data
        out, t = gelu_kernel(a)
        c = a.dtype.type(_SQRT_2_OVER_PI)

        def backward(g):
            d_inner = c * (1 + 3 * 0.044715 * (a * a))
            return (g * (0.5 * (1 + t) + 0.5 * a * (1 - t * t) * d_inner),)

        return self._make(out, (self,), backward, "gelu")

    def softmax(self, axis: int = -1) -> Tensor:
        shifted = self.data - self.data.max(axis=axis, keepdims=True)
        e = np.exp(shifted)
        out = e / e.sum(axis=axis, keepdims=True)

        def backward(g):
            return (out * (g - (g * out).sum(axis=axis, keepdims=True)),)

        return self._make(out, (self,), backward, "softmax")

    def log_softmax(self, axis: int = -1) -> Tensor:
        shifted = self.data - self.data.max(axis=axis, keepdims=True)
        lse = np.log(np.exp(shifted).sum(axis=axis, keepdims=True))
        out = shifted - lse

        def backward(g):
            return (g - np.exp(out) * g.sum(axis=axis, keepdims=True),)

        return self._make(out, (self,), backward, "log_softmax")


# ------------------------------------------------------------------ helpers
def gelu_kernel(a: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """numpy forward of GELU (tanh approximation) -> (out, tanh(inner))."""
    c = a.dtype.type(_SQRT_2_OVER_PI)
    inner = a * a  # a * a * a: float32 a**3 is ~200x slower
    inner *= a
    inner *= 0.044715
    inner += a
    inner *= c  # c * (a + 0.044715 a^3), built in place: no temporaries on the hot path
    t = np.tanh(inner, out=inner)
    out = t + 1
    out *= a
    out *= 0.5  # 0.5 * a * (1 + t)
    return out, t


def _data(x):
    return x.data if isinstance(x, Tensor) else x


def _lift(x, like: Tensor) -> Tensor:
    """Turn a Python number or array into a constant Tensor in `like`'s float dtype."""
    if isinstance(x, Tensor):
        return x
    arr = np.asarray(x)
    if arr.dtype.kind not in "biuf":
        raise TypeError(f"cannot combine a Tensor with {type(x).__name__}")
    if like.data.dtype.kind == "f":
        return Tensor(arr, dtype=like.data.dtype)
    return Tensor(arr)


def _norm_axes(axis, ndim: int) -> tuple[int, ...]:
    axes = axis if isinstance(axis, tuple | list) else (axis,)
    return tuple(sorted(a % ndim for a in axes))


def tensor(data, requires_grad: bool = False, dtype=None) -> Tensor:
    """Functional constructor, like `torch.tensor`."""
    return Tensor(data, requires_grad=requires_grad, dtype=dtype)


def concat(tensors: Sequence[Tensor], axis: int = 0) -> Tensor:
    """Join tensors along an existing axis."""
    tensors = [t if isinstance(t, Tensor) else Tensor(t) for t in tensors]
    if not tensors:
        raise ValueError("concat needs at least one tensor")
    try:
        out = np.concatenate([t.data for t in tensors], axis=axis)
    except ValueError as exc:
        shapes = [t.shape for t in tensors]
        raise ValueError(f"cannot concat shapes {shapes} along axis {axis}: {exc}") from None
    sizes = np.cumsum([t.shape[axis] for t in tensors])[:-1]

    def backward(g):
        return tuple(np.split(g, sizes, axis=axis))

    return tensors[0]._make(out, tuple(tensors), backward, "concat")


def stack(tensors: Sequence[Tensor], axis: int = 0) -> Tensor:
    """Join same-shaped tensors along a new axis."""
    tensors = [t if isinstance(t, Tensor) else Tensor(t) for t in tensors]
    if not tensors:
        raise ValueError("stack needs at least one tensor")
    shapes = {t.shape for t in tensors}
    if len(shapes) != 1:
        raise ValueError(f"stack needs equal shapes, got {[t.shape for t in tensors]}")
    out = np.stack([t.data for t in tensors], axis=axis)

    def backward(g):
        return tuple(np.take(g, i, axis=axis) for i in range(len(tensors)))

    return tensors[0]._make(out, tuple(tensors), backward, "stack")


def where(cond, a, b) -> Tensor:
    """Elementwise `a if cond else b`; gradients flow to the chosen side only."""
    cond = np.asarray(_data(cond), dtype=bool)
    a = a if isinstance(a, Tensor) else Tensor(a)
    b = _lift(b, a)
    out = np.where(cond, a.data, b.data)
    return a._make(out, (a, b), lambda g: (g * cond, g * ~cond), "where")
