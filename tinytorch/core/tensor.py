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
from typing import NamedTuple

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
    "cat",
    "maximum",
    "minimum",
    "from_numpy",
    "zeros",
    "ones",
    "full",
    "zeros_like",
    "ones_like",
    "arange",
    "argmax",
    "argmin",
    "Size",
    "MinMax",
]

_SQRT_2_OVER_PI = math.sqrt(2 / math.pi)
_grad_enabled: contextvars.ContextVar[bool] = contextvars.ContextVar("grad", default=True)
_default_dtype: contextvars.ContextVar[np.dtype] = contextvars.ContextVar(
    "default_dtype", default=np.dtype(np.float32)
)


class _GradMode(contextlib.ContextDecorator):
    """Grad mode `enabled` inside a `with` block or a decorated function. A class rather than
    a `@contextmanager` generator: entering and leaving cost a third as much, and a batch-1
    forward of a small CNN is a few dozen microseconds."""

    __slots__ = ("enabled", "_tokens")

    def __init__(self, enabled: bool):
        self.enabled = enabled
        self._tokens: list = []  # a stack: the same object may be entered again (recursion)

    def _recreate_cm(self) -> _GradMode:  # each call of a decorated function: its own
        return _GradMode(self.enabled)

    def __enter__(self) -> None:
        self._tokens.append(_grad_enabled.set(self.enabled))

    def __exit__(self, *exc) -> None:
        _grad_enabled.reset(self._tokens.pop())


def no_grad() -> _GradMode:
    """Record no graph inside the block (inference mode); also a decorator, `@no_grad()`."""
    return _GradMode(False)


def enable_grad() -> _GradMode:
    """Record the graph inside the block, even within `no_grad()`."""
    return _GradMode(True)


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


def relu_values(a: np.ndarray) -> np.ndarray:
    """max(a, 0). numpy 2.x runs `maximum` with a scalar operand outside its SIMD loop: on
    large arrays an array of zeros in `a`'s memory order measured 1.7x faster (65k floats:
    16 µs against 26 µs); on small ones the allocation costs more than it saves (1k floats:
    2.6 µs against 1.7 µs)."""
    if a.size >= 16384:
        return np.maximum(a, np.zeros_like(a))
    return np.maximum(a, 0)


def get_default_dtype() -> np.dtype:
    return _default_dtype.get()


def _as_array(data, dtype=None) -> np.ndarray:
    """Convert `data` to an ndarray (the dtype rule of `torch.tensor`).

    An explicit `dtype` is always honoured. A numpy array or numpy scalar keeps its dtype
    (float16/32/64, ints, bool); Python floats and lists of them take the default float
    dtype (float32 unless `default_dtype` says otherwise); Python ints stay integers.
    """
    if isinstance(data, Tensor):
        data = data.data
    if dtype is not None:
        dt = _resolve_dtype(dtype)
        try:
            return np.asarray(data, dtype=dt)
        except (TypeError, ValueError) as exc:
            msg = f"cannot make a {dt} tensor from {type(data).__name__}: {exc}"
            raise TypeError(msg) from None
    from_numpy = isinstance(data, _NUMPY_TYPES)
    arr = np.asarray(data)
    kind = arr.dtype.kind
    if kind in "biu" or (kind == "f" and from_numpy):
        return arr
    if kind == "f":
        return arr if arr.dtype == get_default_dtype() else arr.astype(get_default_dtype())
    raise TypeError(
        f"Tensor data must be numeric (bool, int or float), got dtype {arr.dtype} from "
        f"{type(data).__name__}"
    )


_NUMPY_TYPES = (np.ndarray, np.generic)
_DTYPE_NAMES = {"float": np.float32, "double": np.float64, "half": np.float16,
                "long": np.int64, "int": np.int32, "bool": np.bool_}


def _resolve_dtype(dtype) -> np.dtype:
    """A numpy dtype from a numpy dtype/type or a name ('float32', 'long', ...)."""
    if isinstance(dtype, str) and dtype in _DTYPE_NAMES:
        dtype = _DTYPE_NAMES[dtype]
    try:
        dt = np.dtype(dtype)
    except TypeError:
        raise TypeError(
            f"unknown dtype {dtype!r}: use a numpy dtype such as np.float32 or "
            "tinytorch.float64"
        ) from None
    if dt.kind not in "biuf":
        raise TypeError(f"tensors hold bool, int or float data, not dtype {dt}")
    return dt


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
    # NEP 13: numpy ufuncs defer to Tensor, so `ndarray == Tensor`, `ndarray + Tensor`, ...
    # run Tensor's reflected operator (a Tensor result, with gradients) instead of numpy's.
    __array_ufunc__ = None
    __hash__ = object.__hash__  # `__eq__` is elementwise (as in torch); hash stays by identity
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
    def size(self) -> _SizeMethod:
        """`t.size()` -> shape, `t.size(d)` -> length of dim d (torch). Not an int: use numel()."""
        return _SizeMethod(self.data.shape)

    def numel(self) -> int:
        """Number of elements (numpy's `.size`)."""
        return self.data.size

    def dim(self) -> int:
        return self.data.ndim

    @property
    def T(self) -> Tensor:
        return self.permute(*reversed(range(self.ndim)))

    @property
    def device(self) -> str:
        return "cpu"

    @property
    def is_leaf(self) -> bool:
        return not self._parents

    def __len__(self) -> int:
        return len(self.data)

    def __repr__(self) -> str:
        grad = ", requires_grad=True" if self.requires_grad else ""
        body = np.array2string(self.data, precision=4, separator=", ", threshold=20)
        return f"Tensor({body}, dtype={self.dtype}{grad})"

    def __array__(self, dtype=None, copy=None):
        """`np.asarray(tensor)` is the tensor's data (no graph)."""
        return self.data if dtype is None else self.data.astype(dtype)

    # Python scalars and formatting, as in torch: one-element tensors only.
    def _scalar(self, what: str):
        if self.data.size != 1:
            raise TypeError(
                f"{what} of a Tensor needs exactly one element, got shape {self.shape}; "
                "reduce it first (e.g. .mean()) or use .tolist()"
            )
        return self.data.item()

    def __float__(self) -> float:
        return float(self._scalar("float()"))

    def __int__(self) -> int:
        return int(self._scalar("int()"))

    def __index__(self) -> int:
        if self.data.dtype.kind not in "biu":
            raise TypeError(f"only integer tensors can be used as an index, got {self.dtype}")
        return int(self._scalar("an index"))

    def __bool__(self) -> bool:
        if self.data.size != 1:
            raise RuntimeError(
                f"the truth value of a Tensor of shape {self.shape} is ambiguous; "
                "use .any() or .all()"
            )
        return bool(self.data.item())

    def __format__(self, spec: str) -> str:
        if not spec:
            return str(self)
        return format(self._scalar(f"format spec {spec!r}"), spec)

    def numpy(self) -> np.ndarray:
        return self.data

    def tolist(self):
        return self.data.tolist()

    def item(self) -> float:
        return self._scalar("item()")

    def detach(self) -> Tensor:
        return Tensor(self.data)

    def detach_(self) -> Tensor:
        """Cut this tensor from its graph in place (it becomes a leaf without grad)."""
        self._parents, self._backward, self.requires_grad = (), None, False
        return self

    def requires_grad_(self, requires_grad: bool = True) -> Tensor:
        if requires_grad and self.data.dtype.kind != "f":
            raise TypeError(f"only float tensors can require grad, got dtype {self.data.dtype}")
        if not requires_grad and not self.is_leaf:
            raise RuntimeError(
                "requires_grad_(False) only works on leaf tensors; use .detach() for a "
                "result of an operation"
            )
        self.requires_grad = bool(requires_grad)
        return self

    def clone(self) -> Tensor:
        """A copy with its own storage; gradients flow back to the original (as in torch)."""
        return self._make(self.data.copy(), (self,), lambda g: (g,), "clone")

    def astype(self, dtype) -> Tensor:
        """This tensor as `dtype` (honoured exactly: float16/32/64, ints, bool).

        A float -> float cast is differentiable (the gradient is cast back); casting to an
        integer or bool type gives a tensor without gradient.
        """
        dt = _resolve_dtype(dtype)
        if dt == self.data.dtype:
            return self
        out = self.data.astype(dt)
        if dt.kind != "f" or self.data.dtype.kind != "f":
            return Tensor(out)
        return self._make(out, (self,), lambda g: (g,), "astype")

    def to(self, *args, dtype=None, device=None, **kwargs) -> Tensor:
        """`to(dtype)`, `to("cpu")`, `to(device, dtype)`, `to(other_tensor)` as in torch."""
        if kwargs:
            raise TypeError(f"Tensor.to() got unexpected arguments {sorted(kwargs)}")
        for a in args:
            if isinstance(a, Tensor):
                dtype = a.dtype
            elif _is_device(a):
                device = a
            else:
                dtype = a
        if device is not None:
            _check_device(device)
        return self if dtype is None else self.astype(dtype)

    def cpu(self) -> Tensor:
        return self

    def float(self) -> Tensor:
        return self.astype(np.float32)

    def double(self) -> Tensor:
        return self.astype(np.float64)

    def half(self) -> Tensor:
        return self.astype(np.float16)

    def long(self) -> Tensor:
        return self.astype(np.int64)

    def int(self) -> Tensor:
        return self.astype(np.int32)

    def bool(self) -> Tensor:
        return self.astype(np.bool_)

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
            if self.data.size != 1:
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

    # Comparisons give boolean Tensors (no gradient), as in torch.
    def _compare(self, other, op) -> Tensor:
        return Tensor(op(self.data, _data(other)))

    def __eq__(self, other):
        if other is None:
            return False
        return self._compare(other, np.equal)

    def __ne__(self, other):
        if other is None:
            return True
        return self._compare(other, np.not_equal)

    def __gt__(self, other):
        return self._compare(other, np.greater)

    def __lt__(self, other):
        return self._compare(other, np.less)

    def __ge__(self, other):
        return self._compare(other, np.greater_equal)

    def __le__(self, other):
        return self._compare(other, np.less_equal)

    def __invert__(self) -> Tensor:
        if self.data.dtype.kind != "b":
            raise TypeError(f"~ needs a bool tensor, got {self.dtype}")
        return Tensor(~self.data)

    def __and__(self, other) -> Tensor:
        return Tensor(self.data & _data(other))

    def __or__(self, other) -> Tensor:
        return Tensor(self.data | _data(other))

    __rand__, __ror__ = __and__, __or__

    def any(self, dim=None, keepdim: bool = False) -> Tensor:
        return Tensor(self.data.any(axis=dim, keepdims=keepdim))

    def all(self, dim=None, keepdim: bool = False) -> Tensor:
        return Tensor(self.data.all(axis=dim, keepdims=keepdim))

    # ----------------------------------------------------------------- in place
    def _check_inplace(self, other, what: str) -> None:
        """torch's rule: no in-place change of a leaf that requires grad while recording."""
        other_t = other if isinstance(other, Tensor) else None
        if _grad_enabled.get() and (
            self.requires_grad or (other_t is not None and other_t.requires_grad)
        ):
            if self.requires_grad and self.is_leaf:
                raise RuntimeError(
                    f"a leaf Tensor that requires grad is being used in an in-place operation "
                    f"({what}); update parameters inside `with tinytorch.no_grad():`"
                )
            raise RuntimeError(
                f"in-place {what} on a tensor that is part of an autograd graph is not "
                "supported; write an out-of-place version (`x = x + y`)"
            )

    def _inplace(self, other, ufunc, sym: str) -> Tensor:
        """`self op= other` on this tensor's storage, as torch does (aliases see it)."""
        self._check_inplace(other, f"`{sym}=`")
        try:
            ufunc(self.data, _data(other), out=self.data, casting="same_kind")
        except (TypeError, ValueError) as exc:
            raise (TypeError if isinstance(exc, TypeError) else ValueError)(
                f"in-place `{sym}=` on a {self.dtype} tensor of shape {self.shape} with "
                f"{type(other).__name__} of shape {np.shape(_data(other))}: {exc}"
            ) from None
        return self

    def __setitem__(self, index, value) -> None:
        """`t[index] = value` writes into this tensor's storage (torch's rule for leaves)."""
        self._check_inplace(value, "`t[...] = value`")
        if isinstance(index, Tensor):
            index = index.data
        elif isinstance(index, tuple):
            index = tuple(i.data if isinstance(i, Tensor) else i for i in index)
        self.data[index] = _data(value)

    def __iadd__(self, other) -> Tensor:
        return self._inplace(other, np.add, "+")

    def __isub__(self, other) -> Tensor:
        return self._inplace(other, np.subtract, "-")

    def __imul__(self, other) -> Tensor:
        return self._inplace(other, np.multiply, "*")

    def __itruediv__(self, other) -> Tensor:
        return self._inplace(other, np.true_divide, "/")

    def add_(self, other, alpha=1) -> Tensor:
        return self._inplace(other if alpha == 1 else _data(other) * alpha, np.add, "+")

    def sub_(self, other, alpha=1) -> Tensor:
        return self._inplace(other if alpha == 1 else _data(other) * alpha, np.subtract, "-")

    def mul_(self, other) -> Tensor:
        return self._inplace(other, np.multiply, "*")

    def zero_(self) -> Tensor:
        return self._inplace(0, np.multiply, "*")

    def copy_(self, src) -> Tensor:
        """Overwrite this tensor's values with `src` (same shape after broadcasting)."""
        return self._inplace(np.broadcast_to(_data(src), self.shape), _assign, "copy_")

    # -------------------------------------------------------------- reductions
    # Each takes numpy's spelling (axis=, keepdims=) or torch's (dim=, keepdim=), not both.
    def sum(self, axis=None, keepdims: bool = False, *, dim=None, keepdim=None) -> Tensor:
        if dim is not None or keepdim is not None or isinstance(axis, list):  # torch spelling
            axis, keepdims = _axis_args("sum", axis, keepdims, dim, keepdim)
        shape = self.shape

        def backward(g):
            if not keepdims and axis is not None:
                g = np.expand_dims(g, _norm_axes(axis, len(shape)))
            return (np.broadcast_to(g, shape),)

        return self._make(self.data.sum(axis=axis, keepdims=keepdims), (self,), backward, "sum")

    def mean(self, axis=None, keepdims: bool = False, *, dim=None, keepdim=None) -> Tensor:
        if dim is not None or keepdim is not None or isinstance(axis, list):  # torch spelling
            axis, keepdims = _axis_args("mean", axis, keepdims, dim, keepdim)
        axes = _norm_axes(axis, self.ndim) if axis is not None else tuple(range(self.ndim))
        count = math.prod(self.shape[i] for i in axes) if axes else 1
        return self.sum(axis=axis, keepdims=keepdims) * (1.0 / max(count, 1))

    def var(self, dim=None, keepdim: bool = False, *, unbiased: bool = True) -> Tensor:
        """Variance over `dim` (torch default: unbiased, divides by n - 1)."""
        axes = _norm_axes(dim, self.ndim) if dim is not None else tuple(range(self.ndim))
        n = math.prod(self.shape[i] for i in axes) if axes else 1
        centered = self - self.mean(axis=dim, keepdims=True)
        return (centered * centered).sum(axis=dim, keepdims=keepdim) * (
            1.0 / max(n - 1 if unbiased else n, 1)
        )

    def _extreme(self, axis, keepdims: bool, op: str) -> Tensor:
        data = self.data
        reduce = data.max if op == "max" else data.min  # methods: cheaper than np.max
        out_keep = reduce(axis=axis, keepdims=True)

        def backward(g):
            if not keepdims and axis is not None:
                g = np.expand_dims(g, _norm_axes(axis, data.ndim))
            elif not keepdims:
                g = np.reshape(g, (1,) * data.ndim)
            mask = data == out_keep
            # ties share the gradient equally
            return (mask * g / mask.sum(axis=axis, keepdims=True),)

        out = out_keep if keepdims else reduce(axis=axis)
        return self._make(np.asarray(out), (self,), backward, op)

    def _extreme_api(self, op, dim, keepdim, axis, keepdims):
        if isinstance(dim, Tensor):
            raise TypeError(f"elementwise {op} of two tensors: use tinytorch.maximum/minimum")
        if axis is not None or keepdims is not None:
            if dim is not None or keepdim:
                raise TypeError(f"{op}() takes dim=/keepdim= (torch) or axis=/keepdims= "
                                "(numpy), not both")
            return self._extreme(axis, bool(keepdims), op)  # numpy: values only
        if dim is None:
            if keepdim:
                raise TypeError(f"{op}(keepdim=True) needs a dim")
            return self._extreme(None, False, op)
        if not isinstance(dim, int | np.integer):
            raise TypeError(
                f"{op}(dim) takes one int dim (torch), got {dim!r}; use amax/amin for several"
            )
        values = self._extreme(int(dim), keepdim, op)
        arg = np.argmax if op == "max" else np.argmin
        indices = Tensor(arg(self.data, axis=int(dim), keepdims=keepdim))
        return MinMax(values, indices)

    def max(self, dim=None, keepdim: bool = False, *, axis=None, keepdims=None):
        """torch: `max()` -> the maximum; `max(dim)` -> (values, indices) named tuple.

        numpy spelling `max(axis=..., keepdims=...)` -> the values only, like ndarray.max.
        """
        return self._extreme_api("max", dim, keepdim, axis, keepdims)

    def min(self, dim=None, keepdim: bool = False, *, axis=None, keepdims=None):
        """Like `max`: `min(dim)` -> (values, indices); `min(axis=)` -> values."""
        return self._extreme_api("min", dim, keepdim, axis, keepdims)

    def amax(self, dim=None, keepdim: bool = False) -> Tensor:
        return self._extreme(dim if dim is None or isinstance(dim, int) else tuple(dim),
                             keepdim, "max")

    def amin(self, dim=None, keepdim: bool = False) -> Tensor:
        return self._extreme(dim if dim is None or isinstance(dim, int) else tuple(dim),
                             keepdim, "min")

    def argmax(self, dim=None, keepdim: bool = False, *, axis=None) -> Tensor:
        """Index of the maximum (of the flattened tensor when dim is None); int64, no grad."""
        return _argext(self.data, np.argmax, _one_axis("argmax", axis, dim), keepdim)

    def argmin(self, dim=None, keepdim: bool = False, *, axis=None) -> Tensor:
        return _argext(self.data, np.argmin, _one_axis("argmin", axis, dim), keepdim)

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

    def transpose(self, *dims) -> Tensor:
        """torch semantics: `transpose(d0, d1)` swaps two dims; `transpose()` reverses all.

        A numpy-style permutation (`transpose(2, 0, 1)` or a tuple) is refused: use `permute`.
        """
        if not dims:
            return self.T
        if len(dims) != 2 or not all(isinstance(d, int | np.integer) for d in dims):
            raise TypeError(
                f"transpose(dim0, dim1) swaps two dims (as in torch), got {dims!r}; for a "
                "full reordering use permute(*dims)"
            )
        nd = max(self.ndim, 1)
        for d in dims:
            if not -nd <= d < nd:
                raise IndexError(f"transpose dim {d} is out of range for shape {self.shape}")
        perm = list(range(self.ndim))
        i, j = (d % nd for d in dims)
        perm[i], perm[j] = perm[j], perm[i]
        return self.permute(*perm)

    def unsqueeze(self, dim: int) -> Tensor:
        nd = self.ndim + 1
        if not -nd <= dim < nd:
            raise IndexError(f"unsqueeze dim {dim} is out of range for shape {self.shape}")
        d = dim % nd
        return self.reshape(*self.shape[:d], 1, *self.shape[d:])  # new axis of length 1 at d

    def squeeze(self, dim=None) -> Tensor:
        """Drop dims of length 1 (all of them, or `dim` if it has length 1, as in torch)."""
        if dim is None:
            return self.reshape(*(n for n in self.shape if n != 1))
        dims = dim if isinstance(dim, tuple | list) else (dim,)
        nd = max(self.ndim, 1)
        for d in dims:
            if not -nd <= d < nd:
                raise IndexError(f"squeeze dim {d} is out of range for shape {self.shape}")
        drop = {d % nd for d in dims if self.shape[d % nd] == 1} if self.ndim else set()
        return self.reshape(*(n for i, n in enumerate(self.shape) if i not in drop))

    def flatten(self, start_dim: int = 0, end_dim: int = -1) -> Tensor:
        if self.ndim == 0:
            return self.reshape(1)
        s, e = start_dim % self.ndim, end_dim % self.ndim
        return self.reshape(*self.shape[:s], -1, *self.shape[e + 1 :])  # dims s..e merged

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
        return self._make(relu_values(a), (self,), lambda g: (g * (a > 0),), "relu")

    def tanh(self) -> Tensor:
        out = np.tanh(self.data)
        return self._make(out, (self,), lambda g: (g * (1 - out * out),), "tanh")

    def sigmoid(self) -> Tensor:
        a = self.data
        # stable in both tails: exp of a non-positive number only
        e = np.exp(-np.abs(a))
        out = np.where(a >= 0, 1 / (1 + e), e / (1 + e)).astype(a.dtype)
        return self._make(out, (self,), lambda g: (g * out * (1 - out),), "sigmoid")

    def gelu(self, approximate: str = "tanh") -> Tensor:
        """GELU; `approximate="tanh"` (default here, GPT-2's) or `"none"` (exact, x * Phi(x),
        torch's default for nn.GELU / F.gelu)."""
        if approximate == "none":
            return self._gelu_exact()
        if approximate != "tanh":
            raise ValueError(f"approximate must be 'none' or 'tanh', got {approximate!r}")
        a = self.data
        out, t = gelu_kernel(a)
        c = a.dtype.type(_SQRT_2_OVER_PI)

        def backward(g):
            d_inner = c * (1 + 3 * 0.044715 * (a * a))
            return (g * (0.5 * (1 + t) + 0.5 * a * (1 - t * t) * d_inner),)

        return self._make(out, (self,), backward, "gelu")

    def _gelu_exact(self) -> Tensor:
        a = self.data
        cdf = (0.5 * (1.0 + _erf(a * (1 / math.sqrt(2))))).astype(a.dtype)  # Phi(x)
        pdf = (np.exp(-0.5 * a * a) / math.sqrt(2 * math.pi)).astype(a.dtype)  # phi(x)
        return self._make(a * cdf, (self,), lambda g: (g * (cdf + a * pdf),), "gelu")

    def softmax(self, axis: int = -1, *, dim=None) -> Tensor:
        axis = _one_axis("softmax", None if axis == -1 else axis, dim, default=-1)
        shifted = self.data - self.data.max(axis=axis, keepdims=True)
        e = np.exp(shifted)
        out = e / e.sum(axis=axis, keepdims=True)

        def backward(g):
            return (out * (g - (g * out).sum(axis=axis, keepdims=True)),)

        return self._make(out, (self,), backward, "softmax")

    def log_softmax(self, axis: int = -1, *, dim=None) -> Tensor:
        axis = _one_axis("log_softmax", None if axis == -1 else axis, dim, default=-1)
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


_erf_scalar = np.frompyfunc(math.erf, 1, 1)


def _erf(a: np.ndarray) -> np.ndarray:
    """Elementwise erf in float64 (math.erf: exact to double precision; numpy has none)."""
    return np.asarray(_erf_scalar(a.astype(np.float64)), dtype=np.float64)


def _data(x):
    return x.data if isinstance(x, Tensor) else x


class Size(tuple):
    """A tensor's shape, as `t.size()` returns it (like torch.Size)."""

    def numel(self) -> int:
        return math.prod(self)


class _SizeMethod:
    """What `t.size` is: call it (`t.size()`, `t.size(d)`); it refuses to act as an int.

    numpy's `.size` (the element count) and torch's `.size()` (the shape) collide; using the
    attribute as a number raises instead of silently comparing a method to an int.
    """

    __slots__ = ("_shape",)

    def __init__(self, shape: tuple[int, ...]):
        self._shape = shape

    def __call__(self, dim: int | None = None):
        if dim is None:
            return Size(self._shape)
        nd = max(len(self._shape), 1)
        if not -nd <= dim < nd or not self._shape:
            raise IndexError(f"size({dim}): dim out of range for shape {self._shape}")
        return self._shape[dim]

    def _refuse(self, *args):
        raise TypeError(
            "Tensor.size is a method, as in torch: t.size() is the shape, t.size(d) one "
            "dim, t.numel() the number of elements (numpy's .size)"
        )

    __bool__ = __int__ = __index__ = __float__ = _refuse
    __eq__ = __ne__ = __lt__ = __le__ = __gt__ = __ge__ = _refuse
    __add__ = __radd__ = __sub__ = __rsub__ = __mul__ = __rmul__ = _refuse
    __truediv__ = __rtruediv__ = __floordiv__ = __rfloordiv__ = _refuse
    __hash__ = None

    def __repr__(self) -> str:
        return f"<method Tensor.size of shape {self._shape}>"


class MinMax(NamedTuple):
    """What `max(dim)` / `min(dim)` return: values and their int64 indices (torch)."""

    values: Tensor
    indices: Tensor


def _assign(dst, src, out=None, casting="same_kind"):
    """ufunc-shaped copy used by `copy_`."""
    np.copyto(out, src, casting=casting)
    return out


def _is_device(x) -> bool:
    return isinstance(x, str) and x.split(":")[0] in ("cpu", "cuda", "mps", "xpu", "meta")


def _check_device(device) -> None:
    name = str(getattr(device, "type", device))
    if name.split(":")[0] != "cpu":
        raise ValueError(f"tinytorch runs on the CPU with numpy only; device {device!r} "
                         "is not available (use 'cpu')")


def _axis_args(who: str, axis, keepdims, dim, keepdim):
    """Merge numpy (axis, keepdims) and torch (dim, keepdim) spellings; both is an error."""
    if dim is not None:
        if axis is not None:
            raise TypeError(f"{who}() got both axis= and dim=; pass one")
        axis = dim
    if keepdim is not None:
        if keepdims:
            raise TypeError(f"{who}() got both keepdims= and keepdim=; pass one")
        keepdims = keepdim
    if isinstance(axis, list):
        axis = tuple(axis)
    return axis, bool(keepdims)


def _one_axis(who: str, axis, dim, default=None):
    if axis is not None and dim is not None:
        raise TypeError(f"{who}() got both axis= and dim=; pass one")
    out = dim if dim is not None else axis
    return default if out is None else out


def _argext(data: np.ndarray, fn, dim, keepdim: bool) -> Tensor:
    if dim is None:
        out = fn(data)
        if keepdim:
            out = np.reshape(out, (1,) * data.ndim)
    else:
        if not -max(data.ndim, 1) <= dim < max(data.ndim, 1):
            raise IndexError(f"dim {dim} is out of range for shape {data.shape}")
        out = fn(data, axis=dim, keepdims=keepdim)
    return Tensor(np.asarray(out, dtype=np.int64))


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


def concat(tensors: Sequence[Tensor], axis: int = 0, *, dim=None) -> Tensor:
    """Join tensors along an existing axis (`dim=` is the torch spelling; `cat` = concat)."""
    axis = _one_axis("concat", None if axis == 0 else axis, dim, default=0)
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


def stack(tensors: Sequence[Tensor], axis: int = 0, *, dim=None) -> Tensor:
    """Join same-shaped tensors along a new axis."""
    axis = _one_axis("stack", None if axis == 0 else axis, dim, default=0)
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


cat = concat


def maximum(a, b) -> Tensor:
    """Elementwise maximum of two tensors (gradient to the larger; ties go to `a`)."""
    a = a if isinstance(a, Tensor) else Tensor(a)
    return where(a.data >= _data(b), a, b)


def minimum(a, b) -> Tensor:
    a = a if isinstance(a, Tensor) else Tensor(a)
    return where(a.data <= _data(b), a, b)


def from_numpy(array: np.ndarray) -> Tensor:
    """A tensor sharing `array`'s memory and dtype (as torch.from_numpy)."""
    if not isinstance(array, np.ndarray):
        raise TypeError(f"from_numpy expects an np.ndarray, got {type(array).__name__}")
    return Tensor(array)


def _shape_args(size) -> tuple[int, ...]:
    if len(size) == 1 and isinstance(size[0], tuple | list):
        size = tuple(size[0])
    if not all(isinstance(n, int | np.integer) and n >= 0 for n in size):
        raise TypeError(f"sizes must be non-negative ints, got {size!r}")
    return tuple(int(n) for n in size)


def zeros(*size, dtype=None, requires_grad: bool = False) -> Tensor:
    dt = get_default_dtype() if dtype is None else dtype
    return Tensor(np.zeros(_shape_args(size)), dtype=dt, requires_grad=requires_grad)


def ones(*size, dtype=None, requires_grad: bool = False) -> Tensor:
    dt = get_default_dtype() if dtype is None else dtype
    return Tensor(np.ones(_shape_args(size)), dtype=dt, requires_grad=requires_grad)


def full(size, fill_value, dtype=None, requires_grad: bool = False) -> Tensor:
    """`size` filled with `fill_value` (a Python float gives the default float dtype)."""
    shape = _shape_args((size,) if isinstance(size, int | np.integer) else (tuple(size),))
    if dtype is None and isinstance(fill_value, float):
        dtype = get_default_dtype()
    return Tensor(np.full(shape, fill_value), dtype=dtype, requires_grad=requires_grad)


def zeros_like(t, dtype=None) -> Tensor:
    return Tensor(np.zeros_like(_data(t)), dtype=dtype)


def ones_like(t, dtype=None) -> Tensor:
    return Tensor(np.ones_like(_data(t)), dtype=dtype)


def arange(start, end=None, step=1, dtype=None) -> Tensor:
    """Like torch.arange: int64 for integer arguments, the default float dtype otherwise."""
    out = np.arange(start, end, step) if end is not None else np.arange(start)
    if dtype is None:
        dtype = np.int64 if out.dtype.kind in "iu" else get_default_dtype()
    return Tensor(out, dtype=dtype)


def argmax(t, dim=None, keepdim: bool = False) -> Tensor:
    return (t if isinstance(t, Tensor) else Tensor(t)).argmax(dim, keepdim)


def argmin(t, dim=None, keepdim: bool = False) -> Tensor:
    return (t if isinstance(t, Tensor) else Tensor(t)).argmin(dim, keepdim)
