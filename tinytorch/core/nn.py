"""Layers: `Module` (the container protocol), `Parameter`, and the standard building blocks.

A `Module` registers the `Parameter`s and sub-`Module`s assigned to its attributes, so
`model.parameters()`, `model.state_dict()` and `model.eval()` reach every layer without the
layer listing them by hand. Every matmul-shaped computation (`Linear`, `Conv2d`'s im2col
product, forward and backward) goes through `tinytorch.core.backends.matmul`.

Parameters are created in the default float dtype (float32; float64 inside
`with default_dtype(np.float64):`), initialised from a module-level RNG that
`manual_seed(seed)` resets, so models are reproducible.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Iterable, Iterator
from typing import NamedTuple

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from tinytorch.core import backends
from tinytorch.core.tensor import (
    Tensor,
    _check_device,
    _is_device,
    _resolve_dtype,
    get_default_dtype,
    is_grad_enabled,
    relu_values,
)

__all__ = [
    "manual_seed",
    "get_rng",
    "randn",
    "rand",
    "randint",
    "kaiming_uniform",
    "Parameter",
    "Module",
    "Identity",
    "Linear",
    "Conv2d",
    "MaxPool2d",
    "Flatten",
    "ReLU",
    "GELU",
    "Tanh",
    "Sigmoid",
    "Softmax",
    "Dropout",
    "LayerNorm",
    "Embedding",
    "BatchNorm1d",
    "BatchNorm2d",
    "Conv1d",
    "conv1d",
    "Sequential",
    "ModuleList",
    "im2col",
    "conv2d",
    "max_pool2d",
    "IncompatibleKeys",
]

# --------------------------------------------------------------------------- randomness
_rng = np.random.default_rng(0)


def manual_seed(seed: int) -> None:
    """Reset the RNG used for parameter initialisation and dropout masks."""
    global _rng
    _rng = np.random.default_rng(seed)


def get_rng() -> np.random.Generator:
    """The module-level generator (read at call time, so `manual_seed` takes effect)."""
    return _rng


def randn(*size, dtype=None, requires_grad: bool = False) -> Tensor:
    """Standard normal samples from the module RNG (`manual_seed` makes them repeatable)."""
    shape = tuple(size[0]) if len(size) == 1 and isinstance(size[0], tuple | list) else size
    return Tensor(get_rng().standard_normal(shape), requires_grad=requires_grad,
                  dtype=get_default_dtype() if dtype is None else dtype)


def rand(*size, dtype=None, requires_grad: bool = False) -> Tensor:
    """Uniform [0, 1) samples from the module RNG."""
    shape = tuple(size[0]) if len(size) == 1 and isinstance(size[0], tuple | list) else size
    return Tensor(get_rng().random(shape), requires_grad=requires_grad,
                  dtype=get_default_dtype() if dtype is None else dtype)


def randint(low: int, high: int, size, dtype=np.int64) -> Tensor:
    """Integers in [low, high) from the module RNG (torch.randint(low, high, size))."""
    return Tensor(get_rng().integers(low, high, size=tuple(size)), dtype=dtype)


def kaiming_uniform(shape: tuple[int, ...], fan_in: int) -> np.ndarray:
    """PyTorch's default layer init: U(-1/sqrt(fan_in), 1/sqrt(fan_in)).

    This is Kaiming-uniform with a = sqrt(5): bound = sqrt(6 / ((1 + a^2) * fan_in)).
    Returned in float64; `Parameter` casts it to the default dtype.
    """
    bound = 1.0 / math.sqrt(max(fan_in, 1))
    return get_rng().uniform(-bound, bound, size=shape)


# --------------------------------------------------------------------------- helpers
def _pair(value, name: str) -> tuple[int, int]:
    """An int or a pair of ints -> a pair of ints (kernel sizes, strides, paddings)."""
    if type(value) is tuple and len(value) == 2 and type(value[0]) is type(value[1]) is int:
        return value  # already normalised (a layer's stored setting): the per-call path
    pair = (value, value) if isinstance(value, int | np.integer) else tuple(value)
    if len(pair) != 2 or not all(isinstance(v, int | np.integer) for v in pair):
        raise TypeError(f"{name} must be an int or a pair of ints, got {value!r}")
    return int(pair[0]), int(pair[1])


def _as_float_tensor(x, who: str) -> Tensor:
    """Accept a Tensor or numeric array-like; integers become the default float dtype."""
    if isinstance(x, Tensor):
        if x.dtype.kind == "f":
            return x
        return Tensor(x.data.astype(get_default_dtype()))
    arr = np.asarray(x)
    if arr.dtype.kind not in "biuf":
        raise TypeError(
            f"{who} expects a numeric array or Tensor, got {type(x).__name__} "
            f"with dtype {arr.dtype}"
        )
    return Tensor(arr if arr.dtype.kind == "f" else arr.astype(get_default_dtype()))


def _refuse_foreign(state_dict: dict) -> None:
    """A PyTorch state dict (torch tensors, or torch's `_metadata`) must be converted first."""
    torch_values = [k for k, v in state_dict.items()
                    if type(v).__module__.split(".")[0] == "torch"]
    if torch_values or hasattr(state_dict, "_metadata"):
        raise TypeError(
            "this is a PyTorch state_dict (torch tensors"
            + (f", e.g. {torch_values[0]!r}" if torch_values else "")
            + "): PyTorch's Linear weight is (out, in), tinytorch's (in, out), so it cannot be "
            "loaded as it is; use model.load_state_dict("
            "tinytorch.utils.from_pytorch_state_dict(state_dict, model))"
        )


def _recordable(value, depth: int = 0) -> bool:
    """Plain constructor arguments (numbers, strings, sizes, Modules, configs), not data."""
    if value is None or isinstance(value, bool | int | float | str | np.integer | np.floating):
        return True
    if isinstance(value, Module) or (hasattr(value, "__dataclass_fields__")
                                     and not isinstance(value, type)):
        return True
    if isinstance(value, tuple | list) and depth < 2 and len(value) <= 64:
        return all(_recordable(v, depth + 1) for v in value)
    return False


class _StateDictError(KeyError):
    """KeyError whose message prints without KeyError's extra quoting."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


class IncompatibleKeys(NamedTuple):
    """What `load_state_dict(strict=False)` skipped."""

    missing_keys: list[str]
    unexpected_keys: list[str]


# --------------------------------------------------------------------------- Parameter
class Parameter(Tensor):
    """A Tensor that a Module owns and an optimizer updates: always `requires_grad=True`."""

    def __init__(self, data, dtype=None):
        # Layers build their initial values in float64 numpy: a Parameter made from an array
        # takes the default dtype (float32) unless `dtype=` is given; from a Tensor it keeps
        # the Tensor's dtype.
        if dtype is None and not isinstance(data, Tensor) and np.asarray(data).dtype.kind == "f":
            dtype = get_default_dtype()
        super().__init__(data, requires_grad=True, dtype=dtype)
        self.data = np.array(self.data, copy=True)  # own the storage

    def __repr__(self) -> str:
        return "Parameter containing:\n" + super().__repr__()


# --------------------------------------------------------------------------- Module
class Module:
    """Base class of every layer and model.

    Assigning a `Parameter` or a `Module` to an attribute registers it (in insertion order);
    `register_buffer` registers non-trainable arrays that still belong in the state dict.
    Subclasses implement `forward`; call the module itself (`model(x)`).
    """

    def __init_subclass__(cls, **kwargs) -> None:
        """Record the arguments of the outermost `__init__` call (`tinytorch.save` stores
        them, so a saved model can be rebuilt without pickle)."""
        super().__init_subclass__(**kwargs)
        init = cls.__dict__.get("__init__")
        if init is None:
            return

        @functools.wraps(init)
        def recording_init(self, *args, **kw):
            d = self.__dict__
            if "_init_args" not in d:  # the outermost __init__ of this instance
                bad = next((v for v in (*args, *kw.values()) if not _recordable(v)), None)
                # never keep arrays alive: a model built from arrays is saved by state dict
                d["_init_args"] = (args, kw) if bad is None else type(bad).__name__
            init(self, *args, **kw)

        cls.__init__ = recording_init

    def __init__(self) -> None:
        object.__setattr__(self, "_parameters", {})
        object.__setattr__(self, "_buffers", {})
        object.__setattr__(self, "_non_persistent", set())
        object.__setattr__(self, "_modules", {})
        object.__setattr__(self, "training", True)

    # ---------------------------------------------------------------- registration
    def _registries(self) -> tuple[dict, dict, dict]:
        try:
            d = self.__dict__
            return d["_parameters"], d["_buffers"], d["_modules"]
        except KeyError:
            raise AttributeError(
                f"{type(self).__name__}.__init__ must call super().__init__() before "
                "assigning attributes"
            ) from None

    # The registries are the truth (traversal, state_dict); every registered name is also
    # mirrored into the instance __dict__ so that `self.weight` is a plain attribute lookup,
    # not a __getattr__ fallback (a microsecond per access, ~100 accesses per TinyGPT token).
    def _store(self, registry: dict, name: str, value) -> None:
        """Put `value` in `registry` (keeping its position when `name` is already there)."""
        if name not in registry:
            self._forget(name)
        registry[name] = value
        self.__dict__[name] = value

    def __setattr__(self, name: str, value) -> None:
        params, buffers, modules = self._registries()
        if isinstance(value, Parameter):
            self._store(params, name, value)
        elif isinstance(value, Module):
            self._store(modules, name, value)
        elif name in params:
            if value is not None:
                raise TypeError(
                    f"cannot assign {type(value).__name__} to parameter {name!r} of "
                    f"{type(self).__name__} (expected Parameter or None)"
                )
            self._store(params, name, None)
        elif name in modules:
            if value is not None:
                raise TypeError(
                    f"cannot assign {type(value).__name__} to submodule {name!r} of "
                    f"{type(self).__name__} (expected Module or None)"
                )
            self._store(modules, name, None)
        elif name in buffers:
            self._store(buffers, name, None if value is None else np.asarray(value))
        else:
            object.__setattr__(self, name, value)

    def _forget(self, name: str) -> None:
        params, buffers, modules = self._registries()
        for registry in (params, buffers, modules):
            registry.pop(name, None)
        self.__dict__.pop(name, None)

    def __getattr__(self, name: str):
        # Only called when normal lookup fails: look in the registries.
        d = self.__dict__
        for key in ("_parameters", "_buffers", "_modules"):
            registry = d.get(key)
            if registry is not None and name in registry:
                return registry[name]
        raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")

    def __delattr__(self, name: str) -> None:
        params, buffers, modules = self._registries()
        if name in params or name in buffers or name in modules:
            params.pop(name, None)
            buffers.pop(name, None)
            modules.pop(name, None)
            self.__dict__.pop(name, None)
            self._non_persistent.discard(name)
        else:
            object.__delattr__(self, name)

    def register_parameter(self, name: str, param: Parameter | None) -> None:
        """Register `param` (or a `None` placeholder, e.g. `bias=False`) under `name`."""
        if param is not None and not isinstance(param, Parameter):
            raise TypeError(f"register_parameter expects a Parameter or None, got {type(param)}")
        self._forget(name)
        self._store(self._registries()[0], name, param)

    def register_buffer(self, name: str, value, persistent: bool = True) -> None:
        """Register a non-trainable array (saved in `state_dict` unless `persistent=False`)."""
        if value is not None:
            value = value.data if isinstance(value, Tensor) else np.asarray(value)
        self._forget(name)
        self._store(self._registries()[1], name, value)
        if not persistent:
            self._non_persistent.add(name)

    def register_module(self, name: str, module: Module | None) -> None:
        if module is not None and not isinstance(module, Module):
            raise TypeError(f"register_module expects a Module or None, got {type(module)}")
        self._forget(name)
        self._store(self._registries()[2], name, module)

    # ---------------------------------------------------------------- traversal
    def named_children(self) -> list[tuple[str, Module]]:
        return [(n, m) for n, m in self._modules.items() if m is not None]

    def children(self) -> list[Module]:
        return [m for _, m in self.named_children()]

    def named_modules(self, prefix: str = "") -> list[tuple[str, Module]]:
        """(dotted name, module) for self (name `prefix`) and every descendant, once each."""
        out: list[tuple[str, Module]] = []
        seen: set[int] = set()

        def visit(mod: Module, name: str) -> None:
            if id(mod) in seen:
                return
            seen.add(id(mod))
            out.append((name, mod))
            for child_name, child in mod.named_children():
                visit(child, f"{name}.{child_name}" if name else child_name)

        visit(self, prefix)
        return out

    def modules(self) -> list[Module]:
        return [m for _, m in self.named_modules()]

    def named_parameters(
        self, prefix: str = "", recurse: bool = True
    ) -> list[tuple[str, Parameter]]:
        """(dotted name, Parameter) pairs; a shared (tied) Parameter is listed once."""
        mods = self.named_modules(prefix) if recurse else [(prefix, self)]
        out: list[tuple[str, Parameter]] = []
        seen: set[int] = set()
        for mod_name, mod in mods:
            for name, p in mod._parameters.items():
                if p is None or id(p) in seen:
                    continue
                seen.add(id(p))
                out.append((f"{mod_name}.{name}" if mod_name else name, p))
        return out

    def parameters(self, recurse: bool = True) -> list[Parameter]:
        return [p for _, p in self.named_parameters(recurse=recurse)]

    def named_buffers(self, prefix: str = "") -> list[tuple[str, np.ndarray]]:
        out = []
        for mod_name, mod in self.named_modules(prefix):
            for name, b in mod._buffers.items():
                if b is not None:
                    out.append((f"{mod_name}.{name}" if mod_name else name, b))
        return out

    def buffers(self) -> list[np.ndarray]:
        return [b for _, b in self.named_buffers()]

    def num_parameters(self) -> int:
        """Total number of scalars in the (distinct) parameters."""
        return int(sum(p.numel() for p in self.parameters()))

    def apply(self, fn: Callable[[Module], None]) -> Module:
        """Call `fn` on every submodule (children first) and on self; returns self."""
        for child in self.children():
            child.apply(fn)
        fn(self)
        return self

    # ---------------------------------------------------------------- state
    def _state_items(self) -> Iterator[tuple[str, Module, str, str]]:
        """(full name, owning module, local name, kind) for every saved entry."""
        for mod_name, mod in self.named_modules():
            for name, p in mod._parameters.items():
                if p is not None:
                    yield (f"{mod_name}.{name}" if mod_name else name), mod, name, "param"
            for name, b in mod._buffers.items():
                if b is not None and name not in mod._non_persistent:
                    yield (f"{mod_name}.{name}" if mod_name else name), mod, name, "buffer"

    def state_dict(self) -> dict[str, np.ndarray]:
        """name -> a COPY of every parameter and persistent buffer (dotted names)."""
        sd: dict[str, np.ndarray] = {}
        for full, mod, name, kind in self._state_items():
            value = mod._parameters[name].data if kind == "param" else mod._buffers[name]
            sd[full] = np.array(value, copy=True)
        return sd

    def load_state_dict(self, state_dict: dict, strict: bool = True) -> IncompatibleKeys:
        """Copy values from `state_dict` into this module's parameters and buffers.

        Checks everything before changing anything. With `strict=True`, missing or unexpected
        keys raise KeyError naming them; a shape mismatch always raises ValueError naming the
        entry and both shapes. Returns the (missing, unexpected) keys.
        """
        if not isinstance(state_dict, dict):
            raise TypeError(f"load_state_dict expects a dict, got {type(state_dict).__name__}")
        _refuse_foreign(state_dict)
        items = list(self._state_items())
        expected = [full for full, *_ in items]
        missing = [k for k in expected if k not in state_dict]
        unexpected = [k for k in state_dict if k not in set(expected)]
        staged = []
        mismatches = []
        transposed = False
        for full, mod, name, kind in items:
            if full not in state_dict:
                continue
            value = state_dict[full]
            value = value.data if isinstance(value, Tensor) else np.asarray(value)
            if value.dtype.kind not in "biuf":
                raise TypeError(f"state dict entry {full!r} is not numeric (dtype {value.dtype})")
            current = mod._parameters[name] if kind == "param" else mod._buffers[name]
            current_shape = current.shape
            if value.shape != current_shape:
                mismatches.append(f"{full}: expected shape {current_shape}, got {value.shape}")
                transposed |= value.shape == current_shape[::-1] and len(current_shape) == 2
                continue
            staged.append((mod, name, kind, value))
        hint = (
            " (a transposed Linear weight: PyTorch stores (out, in), tinytorch (in, out); "
            "convert with tinytorch.utils.from_pytorch_state_dict(state_dict, model))"
            if transposed else ""
        )
        if strict and (missing or unexpected):
            shapes = f", mis-shaped keys [{'; '.join(mismatches)}]" if mismatches else ""
            raise _StateDictError(
                f"error loading state dict into {type(self).__name__}: "
                f"missing keys {missing}, unexpected keys {unexpected}{shapes}{hint}"
            )
        if mismatches:
            raise ValueError(
                f"size mismatch loading state dict into {type(self).__name__}: "
                + "; ".join(mismatches) + hint
            )
        for mod, name, kind, value in staged:
            if kind == "param":
                p = mod._parameters[name]
                p.data = np.array(value, dtype=p.data.dtype, copy=True)
                p.grad = None
            else:
                buf = np.array(value, dtype=mod._buffers[name].dtype, copy=True)
                mod._store(mod._buffers, name, buf)
        return IncompatibleKeys(missing, unexpected)

    # ---------------------------------------------------------------- modes and grads
    def train(self, mode: bool = True) -> Module:
        """Set training mode on self and every submodule; returns self."""
        for m in self.modules():
            object.__setattr__(m, "training", bool(mode))
        return self

    def eval(self) -> Module:
        return self.train(False)

    def zero_grad(self, set_to_none: bool = True) -> None:
        for p in self.parameters():
            if set_to_none or p.grad is None:
                p.grad = None
            else:
                p.grad[...] = 0

    def requires_grad_(self, requires_grad: bool = True) -> Module:
        for p in self.parameters():
            p.requires_grad_(requires_grad)
        return self

    def to(self, *args, dtype=None, device=None) -> Module:
        """`to(dtype)` casts float parameters and buffers in place; `to("cpu")` is a no-op.

        Any other device raises (tinytorch runs on numpy). Returns self, as in torch.
        """
        for a in args:
            if _is_device(a):
                device = a
            else:
                dtype = a
        if device is not None:
            _check_device(device)
        if dtype is None:
            return self
        dt = _resolve_dtype(dtype)
        if dt.kind != "f":
            raise TypeError(f"Module.to() casts to a float dtype, got {dt}")
        for mod in self.modules():
            for p in mod._parameters.values():
                if p is not None and p.data.dtype.kind == "f":
                    p.data = p.data.astype(dt)
                    p.grad = None if p.grad is None else p.grad.astype(dt)
            for name, b in list(mod._buffers.items()):
                if b is not None and b.dtype.kind == "f":
                    mod._store(mod._buffers, name, b.astype(dt))
        return self

    def float(self) -> Module:
        return self.to(np.float32)

    def double(self) -> Module:
        return self.to(np.float64)

    def cpu(self) -> Module:
        return self

    # ---------------------------------------------------------------- calling
    def forward(self, *args, **kwargs):
        raise NotImplementedError(f"{type(self).__name__} must implement forward()")

    def __call__(self, *args, **kwargs):
        return self.forward(*args, **kwargs)

    # ---------------------------------------------------------------- printing
    def extra_repr(self) -> str:
        """One-line summary of the layer's settings, shown inside its repr."""
        return ""

    def __repr__(self) -> str:
        lines = [line for line in self.extra_repr().split("\n") if line]
        for name, mod in self._modules.items():
            child = repr(mod).replace("\n", "\n  ")
            lines.append(f"({name}): {child}")
        head = type(self).__name__ + "("
        if not lines:
            return head + ")"
        if len(lines) == 1 and not self._modules:
            return head + lines[0] + ")"
        return head + "\n  " + "\n  ".join(lines) + "\n)"


class Identity(Module):
    """Returns its input unchanged."""

    def forward(self, x):
        return x


# --------------------------------------------------------------------------- Linear
def linear_kernel(a: np.ndarray, w: np.ndarray, b: np.ndarray | None, matmul=None) -> np.ndarray:
    """numpy forward of `linear`: (..., in) @ (in, out) + b as one routed 2-D product.
    `matmul`: the product, when the caller resolved it (`backends.resolved_matmul()`) for a
    whole forward; by default the routing point `backends.matmul`."""
    mm = backends.matmul if matmul is None else matmul
    if a.ndim <= 2:  # rows already, or one vector: no reshape around the product
        out = mm(a, w)  # (N, in) @ (in, out), or (in,) @ (in, out)
        return out if b is None else out + b
    out = mm(a.reshape(-1, a.shape[-1]), w)  # (N, in) @ (in, out)
    if b is not None:
        out = out + b
    return out.reshape(*a.shape[:-1], w.shape[1])  # (..., out)


def layer_norm_kernel(a: np.ndarray, w: np.ndarray, b: np.ndarray, eps: float):
    """numpy forward of LayerNorm over the last axis -> (out, xhat, 1/std). One vector (C,)
    (a decode step's position) gets scalar statistics: nothing to broadcast, which costs
    numpy more than the arithmetic on arrays this small."""
    # add.reduce * (1/n): np.mean's (and .sum's) Python-level wrappers cost µs per call
    n_inv = 1.0 / a.shape[-1]
    rows = a.ndim > 1  # statistics (..., 1) per row; a vector's are numpy scalars
    mu = np.add.reduce(a, axis=-1, keepdims=rows) * n_inv
    xc = a - mu
    var = np.add.reduce(xc * xc, axis=-1, keepdims=rows) * n_inv
    inv = 1.0 / np.sqrt(var + eps)
    xhat = xc * inv
    return xhat * w + b, xhat, inv


def linear(x: Tensor, weight: Tensor, bias: Tensor | None = None) -> Tensor:
    """`x @ weight + bias` for x of shape (..., in) as ONE graph node.

    All leading axes are folded into rows so the routing point sees a single 2-D product
    (N, in) @ (in, out), forward and backward (a vector x (in,) goes as it is: (in,) @ (in,
    out), np.matmul semantics like every product); one node instead of
    reshape/matmul/add/reshape keeps per-token inference cost close to raw numpy.
    """
    a, w = x.data, weight.data
    out = linear_kernel(a, w, None if bias is None else bias.data)  # (..., out)
    parents = (x, weight) if bias is None else (x, weight, bias)

    def backward(g):
        a2 = a.reshape(-1, a.shape[-1])  # (N, in), N = prod of the leading axes
        g2 = g.reshape(-1, g.shape[-1])  # (N, out)
        gx = backends.matmul(g2, w.T).reshape(a.shape)  # (..., in)
        gw = backends.matmul(a2.T, g2)  # (in, out)
        return (gx, gw) if bias is None else (gx, gw, g2.sum(axis=0))

    return x._make(out, parents, backward, "linear")


LINEAR_LAYOUT = "(in_features, out_features)"  # PyTorch's nn.Linear stores (out, in)


def _check_size(layer: str, name: str, value) -> int:
    """A layer size must be a positive int (not a str, float or bool)."""
    if isinstance(value, bool) or not isinstance(value, int | np.integer):
        hint = ""
        if isinstance(value, str) and value.strip().isdigit():
            hint = f" (write {int(value)}, not {value!r})"
        elif isinstance(value, float) and value.is_integer():
            hint = f" (write {int(value)})"
        raise TypeError(
            f"{layer}: {name} must be an int, got {type(value).__name__} {value!r}{hint}"
        )
    if value <= 0:
        raise ValueError(f"{layer}: {name} must be positive, got {value}")
    return int(value)


class Linear(Module):
    """y = x @ W + b with W of shape (in_features, out_features).

    PyTorch's `nn.Linear.weight` is the transpose, (out_features, in_features): load PyTorch
    weights with `tinytorch.utils.from_pytorch_state_dict`, never as they are.
    """

    def __init__(self, in_features: int, out_features: int, bias: bool = True):
        super().__init__()
        in_features = _check_size("Linear", "in_features", in_features)
        out_features = _check_size("Linear", "out_features", out_features)
        self.in_features = in_features
        self.out_features = out_features
        self.weight = Parameter(kaiming_uniform((in_features, out_features), in_features))
        self.weight.layout = LINEAR_LAYOUT  # read by F.linear and the PyTorch converter
        if bias:
            self.bias = Parameter(kaiming_uniform((out_features,), in_features))
        else:
            self.register_parameter("bias", None)

    def forward(self, x) -> Tensor:
        if type(x) is not Tensor or x.data.dtype.kind != "f":  # the hot path skips the call
            x = _as_float_tensor(x, f"Linear({self.in_features}, {self.out_features})")
        self._check_input(x.shape)
        return linear(x, self.weight, self.bias)

    def _forward_array(self, a: np.ndarray) -> np.ndarray:
        self._check_input(a.shape)
        return linear_kernel(a, self.weight.data, None if self.bias is None else self.bias.data)

    def _check_input(self, shape: tuple[int, ...]) -> None:
        if not shape or shape[-1] != self.in_features:
            raise ValueError(
                f"Linear({self.in_features}, {self.out_features}) expects input "
                f"(..., {self.in_features}), got {shape}"
            )

    def extra_repr(self) -> str:
        return (
            f"in_features={self.in_features}, out_features={self.out_features}, "
            f"bias={self.bias is not None}"
        )


# --------------------------------------------------------------------------- conv / pool
def _out_size(size: int, k: int, s: int, p: int) -> int:
    return (size + 2 * p - k) // s + 1


def _scatter_windows(
    gwin: np.ndarray, shape: tuple[int, ...], stride: tuple[int, int]
) -> np.ndarray:
    """Adjoint of taking (kh, kw) windows: add gwin (N, C, kh, kw, Ho, Wo) back into `shape`.

    Loops over the kh * kw kernel offsets only; each step adds a strided slab of all windows.
    """
    _, _, kh, kw, ho, wo = gwin.shape
    sh, sw = stride
    out = np.zeros(shape, dtype=gwin.dtype)
    for i in range(kh):
        for j in range(kw):
            out[:, :, i : i + sh * ho : sh, j : j + sw * wo : sw] += gwin[:, :, i, j]
    return out


def im2col(x: Tensor, kernel_size, stride=1, padding=0) -> Tensor:
    """Differentiable patch extraction: (N, C, H, W) -> (N * Ho * Wo, C * kh * kw).

    Row r = (n, ho, wo) holds the receptive field of output pixel (ho, wo) of image n,
    flattened in (C, kh, kw) order, which matches `weight.reshape(out_c, C * kh * kw)`.
    The backward pass (col2im) adds each column back onto the pixels it came from.
    """
    kh, kw = _pair(kernel_size, "kernel_size")
    sh, sw = _pair(stride, "stride")
    ph, pw = _pair(padding, "padding")
    if x.ndim != 4:
        raise ValueError(f"im2col expects input (N, C, H, W), got {x.shape}")
    n, c, h, w = x.shape
    ho, wo = _out_size(h, kh, sh, ph), _out_size(w, kw, sw, pw)
    if ho <= 0 or wo <= 0:
        raise ValueError(f"kernel {(kh, kw)} does not fit input {x.shape} with padding {(ph, pw)}")
    xp = x.data
    if ph or pw:
        xp = np.pad(xp, ((0, 0), (0, 0), (ph, ph), (pw, pw)))  # (N, C, H + 2ph, W + 2pw)
    win = sliding_window_view(xp, (kh, kw), axis=(2, 3))[:, :, ::sh, ::sw]  # (N,C,Ho,Wo,kh,kw)
    cols = win.transpose(0, 2, 3, 1, 4, 5).reshape(n * ho * wo, c * kh * kw)  # (N*Ho*Wo, C*kh*kw)
    padded_shape = xp.shape

    def backward(g):
        g6 = g.reshape(n, ho, wo, c, kh, kw).transpose(0, 3, 4, 5, 1, 2)  # (N,C,kh,kw,Ho,Wo)
        gp = _scatter_windows(g6, padded_shape, (sh, sw))  # (N, C, H + 2ph, W + 2pw)
        return (gp[:, :, ph : ph + h, pw : pw + w],)

    return x._make(np.ascontiguousarray(cols), (x,), backward, "im2col")


def _strided(base: np.ndarray, shape: tuple[int, ...], strides: tuple[int, ...]) -> np.ndarray:
    """A read-only view of the contiguous array `base` with the given shape and byte strides:
    what `np.lib.stride_tricks.as_strided` does, without its ~10 µs of Python per call (a
    batch-1 forward of a small CNN is a few dozen µs). The caller keeps it inside `base`."""
    view = np.ndarray(shape, base.dtype, base, 0, strides)
    view.flags.writeable = False
    return view


def _pad_nhwc(x: np.ndarray, ph: int, pw: int) -> np.ndarray:
    """(N, C, H, W) -> zero-padded channels-last (N, H + 2ph, W + 2pw, C), one copy."""
    n, c, h, w = x.shape
    xp = np.zeros((n, h + 2 * ph, w + 2 * pw, c), dtype=x.dtype)
    xp[:, ph : ph + h, pw : pw + w, :] = x.transpose(0, 2, 3, 1)  # NCHW -> NHWC
    return xp


def _pad_nchw(x: np.ndarray, ph: int, pw: int) -> np.ndarray:
    """(N, C, H, W) -> zero-padded (N, C, H + 2ph, W + 2pw), one copy (none without padding)."""
    if not (ph or pw) and x.flags.c_contiguous:
        return x
    n, c, h, w = x.shape
    xp = np.zeros((n, c, h + 2 * ph, w + 2 * pw), dtype=x.dtype)
    xp[:, :, ph : ph + h, pw : pw + w] = x
    return xp


def conv_layout(c: int, kw: int, sw: int, wo: int) -> str:
    """Which im2col copy moves the longer contiguous runs of memory, and so is the faster one.

    "channels-last": rows (N*Ho*Wo, kh*kw*C) from a channels-last copy; each window row is a
    run of kw*C floats. "pixels": columns (C*kh*kw, N*Ho*Wo) from the NCHW input; each is a run
    of Wo output pixels (contiguous at stride 1 only). A first layer (C = 1 or 3) on an image
    has runs of 3 or 9 floats channels-last and of Wo pixels the other way (bench/core.py,
    "im2col layouts", times both on each layer and checks this rule picks the faster).
    """
    return "pixels" if sw == 1 and wo > kw * c else "channels-last"


def im2col_patches(x: np.ndarray, kernel_size, stride, padding, layout: str) -> np.ndarray:
    """The patch matrix (N*Ho*Wo, K + 1) of x (N, C, H, W), K = C*kh*kw, in `layout`'s column
    order, with a last column of ones (the bias's input). One copy, through a strided view."""
    (kh, kw), (sh, sw), (ph, pw) = kernel_size, stride, padding
    n, c, h, w = x.shape
    ho, wo = _out_size(h, kh, sh, ph), _out_size(w, kw, sw, pw)
    k, m = c * kh * kw, n * ho * wo
    if layout == "pixels":  # columns (C, kh, kw) | rows (N, Ho, Wo)
        xp = _pad_nchw(x, ph, pw)  # (N, C, Hp, Wp)
        s_n, s_c, s_h, s_w = xp.strides
        win = _strided(xp, (c, kh, kw, n, ho, wo), (s_c, s_h, s_w, s_n, s_h * sh, s_w * sw))
        buf = np.empty((k + 1, m), dtype=x.dtype)  # (K + 1, N*Ho*Wo): one column per pixel
        buf[:k].reshape(c, kh, kw, n, ho, wo)[...] = win  # the copy (the reshape is a view)
        buf[k] = 1
        return buf.T  # (N*Ho*Wo, K + 1), column-major: BLAS reads it transposed
    xp = _pad_nhwc(x, ph, pw)  # (N, Hp, Wp, C); columns (kh, kw, C)
    s_n, s_h, s_w, s_c = xp.strides
    win = _strided(xp, (n, ho, wo, kh, kw, c), (s_n, s_h * sh, s_w * sw, s_h, s_w, s_c))
    cols = np.empty((m, k + 1), dtype=x.dtype)  # (N*Ho*Wo, K + 1): one row per pixel
    cols[:, :k].reshape(n, ho, wo, kh, kw, c)[...] = win  # the copy (the reshape is a view)
    cols[:, k] = 1
    return cols


def pack_conv_weight(w: np.ndarray, b: np.ndarray | None, layout: str, dtype) -> np.ndarray:
    """(O, C, kh, kw) weight and (O,) bias -> (K + 1, O) in the row order of `im2col_patches`
    (`layout`), the bias as the last row. A copy, made at every call: a pack cached once could
    not see an in-place edit of the weight (pruning, gradcheck); it is small next to the
    patches."""
    out_c, c, kh, kw = w.shape
    k = c * kh * kw
    wk = np.empty((k + 1, out_c), dtype=dtype)
    if layout == "pixels":
        wk[:k] = w.reshape(out_c, k).T  # (C*kh*kw, O)
    else:
        wk[:k].reshape(kh, kw, c, out_c)[...] = w.transpose(2, 3, 1, 0)  # (kh*kw*C, O)
    wk[k] = 0 if b is None else b
    return wk


def conv2d_kernel(x, w, b, stride, padding) -> tuple[np.ndarray, np.ndarray, np.ndarray, str]:
    """numpy forward of `conv2d` -> (out (N, O, Ho, Wo), the patches (N*Ho*Wo, K), the packed
    weight (K, O) in the same order, the layout).

    im2col in the layout `conv_layout` picks, then ONE product (N*Ho*Wo, K + 1) @ (K + 1, O)
    through the backend routing point, K = C*kh*kw. The bias is the weight of one more input
    column that is all ones, so the product adds it (a separate `out += b` broadcasts O values
    over N*Ho*Wo rows: measured up to a third of the layer).
    """
    out_c, c, kh, kw = w.shape
    ho, wo = _conv_geometry(x.shape, w.shape, stride, padding)  # or a ValueError
    n = x.shape[0]
    layout = conv_layout(c, kw, stride[1], wo)
    cols = im2col_patches(x, (kh, kw), stride, padding, layout)  # (N*Ho*Wo, K + 1)
    wk = pack_conv_weight(w, b, layout, np.result_type(w, x))  # (K + 1, O)
    out = backends.matmul(cols, wk)  # (N*Ho*Wo, O): channels-last rows
    # (N, Ho, Wo, O) -> (N, O, Ho, Wo) as a view: channels-last in memory, no copy. Elementwise
    # ops keep that layout, pooling slices it, and the next conv's channels-last copy reads it
    # in order: measured faster than making it channels-first here.
    k = c * kh * kw
    return out.reshape(n, ho, wo, out_c).transpose(0, 3, 1, 2), cols[:, :k], wk[:k], layout


def _col2im(g_cols, layout, x_shape, kernel_size, stride, padding) -> np.ndarray:
    """Adjoint of the im2col in `conv2d_kernel`: add each patch entry back onto its pixel."""
    (kh, kw), (sh, sw), (ph, pw) = kernel_size, stride, padding
    n, c, h, w = x_shape
    ho, wo = _out_size(h, kh, sh, ph), _out_size(w, kw, sw, pw)
    g_pad = np.zeros((n, h + 2 * ph, w + 2 * pw, c), dtype=g_cols.dtype)  # NHWC
    if layout == "pixels":
        g_win = g_cols.reshape(n, ho, wo, c, kh, kw).transpose(0, 1, 2, 4, 5, 3)  # kh, kw, C
    else:
        g_win = g_cols.reshape(n, ho, wo, kh, kw, c)
    for i in range(kh):  # each kernel offset adds one strided slab
        for j in range(kw):
            g_pad[:, i : i + sh * ho : sh, j : j + sw * wo : sw, :] += g_win[:, :, :, i, j]
    return g_pad[:, ph : ph + h, pw : pw + w, :].transpose(0, 3, 1, 2)  # (N, C, H, W)


def _conv_geometry(x_shape, w_shape, stride, padding) -> tuple[int, int]:
    """(Ho, Wo) of a conv of an input `x_shape` by a weight `w_shape`, or a ValueError."""
    out_c, in_c, kh, kw = w_shape
    if len(x_shape) != 4 or x_shape[1] != in_c:
        raise ValueError(
            f"conv2d with weight {w_shape} expects input (N, {in_c}, H, W), got {x_shape}"
        )
    ho = _out_size(x_shape[2], kh, stride[0], padding[0])
    wo = _out_size(x_shape[3], kw, stride[1], padding[1])
    if ho <= 0 or wo <= 0:
        raise ValueError(f"kernel {(kh, kw)} does not fit input {x_shape} with padding {padding}")
    return ho, wo


def conv2d(x: Tensor, weight: Tensor, bias: Tensor | None = None, stride=1, padding=0) -> Tensor:
    """2-D cross-correlation as ONE graph node: im2col through a strided view and one matmul
    through the backend routing point (`conv2d_kernel`); the backward has three products:
    dW = cols^T dY, dcols = dY W^T (added back onto the pixels, col2im), db = sum dY."""
    out_c, in_c, kh, kw = weight.shape
    sh, sw = _pair(stride, "stride")
    ph, pw = _pair(padding, "padding")
    b = None if bias is None else bias.data
    out, cols, wpack, layout = conv2d_kernel(x.data, weight.data, b, (sh, sw), (ph, pw))
    n, _, ho, wo = out.shape
    parents = (x, weight) if bias is None else (x, weight, bias)
    x_shape = x.shape

    def backward(g):
        g_rows = g.transpose(0, 2, 3, 1).reshape(n * ho * wo, out_c)  # (N*Ho*Wo, O)
        g_w = backends.matmul(cols.T, g_rows)  # (K, O) in the layout's row order
        if layout == "pixels":  # rows in (C, kh, kw) order
            g_w = g_w.T.reshape(out_c, in_c, kh, kw)  # (O, C, kh, kw)
        else:  # rows in (kh, kw, C) order
            g_w = g_w.reshape(kh, kw, in_c, out_c).transpose(3, 2, 0, 1)  # (O, C, kh, kw)
        g_cols = backends.matmul(g_rows, wpack.T)  # (N*Ho*Wo, K), the forward's weight
        g_x = _col2im(g_cols, layout, x_shape, (kh, kw), (sh, sw), (ph, pw))
        grads = (np.ascontiguousarray(g_x), np.ascontiguousarray(g_w))
        return grads if bias is None else (*grads, g_rows.sum(axis=0))

    return x._make(out, parents, backward, "conv2d")


def max_pool2d(x: Tensor, kernel_size, stride=None) -> Tensor:
    """Max over (kh, kw) windows; the gradient goes to the (first) maximum of each window."""
    kh, kw = _pair(kernel_size, "kernel_size")
    sh, sw = _pair(kernel_size if stride is None else stride, "stride")
    ho, wo = _pool_geometry(x.shape, (kh, kw), (sh, sw))
    n, c = x.shape[:2]
    if not (x.requires_grad and is_grad_enabled()):  # inference: the max, nothing to remember
        return Tensor(_max_pool_values(x.data, kh, kw, sh, sw, ho, wo), dtype=x.dtype)
    win = sliding_window_view(x.data, (kh, kw), axis=(2, 3))[:, :, ::sh, ::sw]  # (N,C,Ho,Wo,kh,kw)
    flat = win.reshape(n, c, ho, wo, kh * kw)  # (N, C, Ho, Wo, kh*kw)
    arg = flat.argmax(axis=-1)  # (N, C, Ho, Wo)
    out = np.take_along_axis(flat, arg[..., None], axis=-1)[..., 0]  # (N, C, Ho, Wo)
    shape = x.shape

    def backward(g):
        onehot = arg[..., None] == np.arange(kh * kw)  # (N, C, Ho, Wo, kh*kw)
        gwin = (onehot * g[..., None]).astype(g.dtype)
        gwin = gwin.reshape(n, c, ho, wo, kh, kw).transpose(0, 1, 4, 5, 2, 3)  # (N,C,kh,kw,Ho,Wo)
        return (_scatter_windows(gwin, shape, (sh, sw)),)

    return x._make(out, (x,), backward, "max_pool2d")


def _pool_geometry(x_shape, kernel_size, stride) -> tuple[int, int]:
    """(Ho, Wo) of max pooling an input `x_shape`, or a ValueError."""
    if len(x_shape) != 4:
        raise ValueError(f"max_pool2d expects input (N, C, H, W), got {x_shape}")
    ho = _out_size(x_shape[2], kernel_size[0], stride[0], 0)
    wo = _out_size(x_shape[3], kernel_size[1], stride[1], 0)
    if ho <= 0 or wo <= 0:
        raise ValueError(f"pooling window {kernel_size} does not fit input {x_shape}")
    return ho, wo


# Up to this many input values, non-overlapping windows take one reduction over a reshaped
# view: at batch-1 sizes numpy's per-call cost dominates (1 call instead of 2 * kh * kw - 1);
# past it the strided maxima win. Measured crossover between 1k and 4k values (8x8 and 4x4
# maps, 16-32 channels); the choice changes the speed only, never a value.
POOL_RESHAPE_MAX_SIZE = 2048


def _max_pool_values(a: np.ndarray, kh: int, kw: int, sh: int, sw: int, ho: int, wo: int):
    """Window maxima (N, C, Ho, Wo) of a (N, C, H, W), without the argmax bookkeeping.

    Separable: the maximum over a kh x kw window is the maximum over kw columns of the maxima
    over kh rows, so kh + kw - 2 elementwise maxima over strided slices instead of
    kh * kw - 1 (3x3: 4 instead of 8, measured 1.5-2.4x faster; 2x2: 2 instead of 3, within
    -8%..+22%). Rows first: their slices keep whole rows, the longest runs in memory. Reducing
    a window axis of 2-3 elements instead runs numpy's inner loop on 2-3 values at a time
    (measured 3-20x slower), except on small inputs, see POOL_RESHAPE_MAX_SIZE.
    """
    if (kh, kw) == (sh, sw) and a.size <= POOL_RESHAPE_MAX_SIZE:
        n, c = a.shape[:2]
        tiles = a[:, :, : kh * ho, : kw * wo].reshape(n, c, ho, kh, wo, kw)  # a view
        return tiles.max(axis=(3, 5))  # (N, C, Ho, Wo)
    h_end, w_end = sh * (ho - 1) + 1, sw * (wo - 1) + 1
    if kh * kw == 1:
        return a[:, :, :h_end:sh, :w_end:sw].copy(order="K")
    # new arrays in a's memory order (`out=` into one buffer measured slower: keyword parsing)
    rows = [a[:, :, i : i + h_end : sh, : w_end + kw - 1] for i in range(kh)]  # (N, C, Ho, W')
    rows = functools.reduce(np.maximum, rows)  # (N, C, Ho, W'): the max over kh rows
    cols = [rows[:, :, :, j : j + w_end : sw] for j in range(kw)]  # (N, C, Ho, Wo)
    return functools.reduce(np.maximum, cols)


class Conv2d(Module):
    """2-D convolution over (N, C, H, W); weight (out_channels, in_channels, kh, kw)."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size,
        stride=1,
        padding=0,
        bias: bool = True,
    ):
        super().__init__()
        self.in_channels = int(in_channels)
        self.out_channels = int(out_channels)
        self.kernel_size = _pair(kernel_size, "kernel_size")
        self.stride = _pair(stride, "stride")
        self.padding = _pair(padding, "padding")
        if min(self.kernel_size) <= 0 or min(self.stride) <= 0 or min(self.padding) < 0:
            raise ValueError(
                f"Conv2d needs kernel_size, stride > 0 and padding >= 0, got "
                f"{self.kernel_size}, {self.stride}, {self.padding}"
            )
        kh, kw = self.kernel_size
        fan_in = in_channels * kh * kw
        # The weight stays a C-contiguous (out, in, kh, kw) array, as PyTorch's: code that
        # edits `weight.data.reshape(-1)` in place (gradcheck, pruning) relies on that. It is
        # packed for the GEMM at every call (a few µs); a pack cached once could not see an
        # in-place edit of the weight.
        self.weight = Parameter(kaiming_uniform((out_channels, in_channels, kh, kw), fan_in))
        if bias:
            self.bias = Parameter(kaiming_uniform((out_channels,), fan_in))
        else:
            self.register_parameter("bias", None)

    def forward(self, x) -> Tensor:
        if type(x) is not Tensor or x.data.dtype.kind != "f":  # the hot path skips the call
            x = _as_float_tensor(x, "Conv2d")
        self._check_input(x.shape)
        return conv2d(x, self.weight, self.bias, self.stride, self.padding)

    def _forward_array(self, a: np.ndarray) -> np.ndarray:
        self._check_input(a.shape)
        b = None if self.bias is None else self.bias.data
        return conv2d_kernel(a, self.weight.data, b, self.stride, self.padding)[0]

    def _check_input(self, shape: tuple[int, ...]) -> None:
        if len(shape) != 4 or shape[1] != self.in_channels:
            raise ValueError(
                f"{self._name()} expects input (N, {self.in_channels}, H, W), got {shape}"
            )

    def _name(self) -> str:
        return f"Conv2d({self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size})"

    def extra_repr(self) -> str:
        s = f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}"
        s += f", stride={self.stride}"
        if any(self.padding):
            s += f", padding={self.padding}"
        if self.bias is None:
            s += ", bias=False"
        return s


class MaxPool2d(Module):
    """Max pooling; `stride` defaults to `kernel_size` (non-overlapping windows)."""

    def __init__(self, kernel_size, stride=None):
        super().__init__()
        self.kernel_size = _pair(kernel_size, "kernel_size")
        self.stride = self.kernel_size if stride is None else _pair(stride, "stride")
        if min(self.kernel_size) <= 0 or min(self.stride) <= 0:
            raise ValueError(f"MaxPool2d needs positive sizes, got {self.kernel_size}")

    def forward(self, x) -> Tensor:
        x = _as_float_tensor(x, "MaxPool2d")
        return max_pool2d(x, self.kernel_size, self.stride)

    def _forward_array(self, a: np.ndarray) -> np.ndarray:
        ho, wo = _pool_geometry(a.shape, self.kernel_size, self.stride)
        return _max_pool_values(a, *self.kernel_size, *self.stride, ho, wo)

    def extra_repr(self) -> str:
        return f"kernel_size={self.kernel_size}, stride={self.stride}"


class Flatten(Module):
    """(N, d1, d2, ...) -> (N, d1 * d2 * ...)."""

    def __init__(self, start_dim: int = 1):
        super().__init__()
        self.start_dim = start_dim

    def forward(self, x) -> Tensor:
        x = x if isinstance(x, Tensor) else _as_float_tensor(x, "Flatten")
        if x.ndim <= self.start_dim:
            return x
        return x.reshape(*x.shape[: self.start_dim], -1)  # (N, d1 * d2 * ...)

    def _forward_array(self, a: np.ndarray) -> np.ndarray:
        return a if a.ndim <= self.start_dim else a.reshape(*a.shape[: self.start_dim], -1)

    def extra_repr(self) -> str:
        return f"start_dim={self.start_dim}" if self.start_dim != 1 else ""


# --------------------------------------------------------------------------- activations
class ReLU(Module):
    def forward(self, x) -> Tensor:
        return _as_float_tensor(x, "ReLU").relu()

    def _forward_array(self, a: np.ndarray) -> np.ndarray:
        return relu_values(a)


class GELU(Module):
    """GELU as torch.nn.GELU: exact (`approximate="none"`, the default) or `"tanh"` (GPT-2)."""

    def __init__(self, approximate: str = "none"):
        super().__init__()
        if approximate not in ("none", "tanh"):
            raise ValueError(f"approximate must be 'none' or 'tanh', got {approximate!r}")
        self.approximate = approximate

    def forward(self, x) -> Tensor:
        return _as_float_tensor(x, "GELU").gelu(approximate=self.approximate)

    def extra_repr(self) -> str:
        return f"approximate={self.approximate!r}"


class Tanh(Module):
    def forward(self, x) -> Tensor:
        return _as_float_tensor(x, "Tanh").tanh()


class Sigmoid(Module):
    def forward(self, x) -> Tensor:
        return _as_float_tensor(x, "Sigmoid").sigmoid()


class Softmax(Module):
    def __init__(self, axis: int = -1, *, dim: int | None = None):
        super().__init__()
        self.axis = axis if dim is None else dim

    def forward(self, x) -> Tensor:
        return _as_float_tensor(x, "Softmax").softmax(axis=self.axis)

    def extra_repr(self) -> str:
        return f"axis={self.axis}"


# --------------------------------------------------------------------------- regularisation
class Dropout(Module):
    """Inverted dropout: zero each element with probability p and scale the rest by 1/(1-p)
    while training; the identity in eval mode. Masks come from the module-level RNG
    (`manual_seed`) unless `seed` gives this layer its own generator."""

    def __init__(self, p: float = 0.5, seed: int | None = None):
        super().__init__()
        if not 0.0 <= p <= 1.0:
            raise ValueError(f"dropout probability must be in [0, 1], got {p}")
        self.p = float(p)
        self._own_rng = None if seed is None else np.random.default_rng(seed)

    def forward(self, x) -> Tensor:
        x = _as_float_tensor(x, "Dropout")
        if not self.training or self.p == 0.0:
            return x
        if self.p == 1.0:
            return x * np.zeros(x.shape, dtype=x.dtype)
        rng = self._own_rng if self._own_rng is not None else get_rng()
        keep = rng.random(x.shape) >= self.p
        return x * (keep * (1.0 / (1.0 - self.p))).astype(x.dtype)

    def extra_repr(self) -> str:
        return f"p={self.p}"


class LayerNorm(Module):
    """Normalise the last axis to zero mean / unit variance, then scale and shift.

    Written as one op with its analytic backward (fewer graph nodes than composing
    mean/var/sqrt, and the same gradients: see the gradient checks).
    """

    def __init__(self, dim: int, eps: float = 1e-5):
        super().__init__()
        self.dim = int(dim)
        self.eps = float(eps)
        self.weight = Parameter(np.ones(self.dim))
        self.bias = Parameter(np.zeros(self.dim))

    def forward(self, x) -> Tensor:
        if type(x) is not Tensor or x.data.dtype.kind != "f":
            x = _as_float_tensor(x, "LayerNorm")
        if x.ndim == 0 or x.shape[-1] != self.dim:
            raise ValueError(
                f"LayerNorm({self.dim}) expects input (..., {self.dim}), got {x.shape}"
            )
        w = self.weight.data
        out, xhat, inv = layer_norm_kernel(x.data, w, self.bias.data, self.eps)

        def backward(g):
            dxhat = g * w
            dx = inv * (
                dxhat
                - dxhat.mean(axis=-1, keepdims=True)
                - xhat * (dxhat * xhat).mean(axis=-1, keepdims=True)
            )
            return dx, g * xhat, g  # weight/bias grads are summed over leading axes by _make

        return x._make(out, (x, self.weight, self.bias), backward, "layer_norm")

    def extra_repr(self) -> str:
        return f"({self.dim},), eps={self.eps}"


class Embedding(Module):
    """A lookup table: integer ids (any shape) -> rows of `weight` (num_embeddings, dim)."""

    def __init__(self, num_embeddings: int, dim: int):
        super().__init__()
        if num_embeddings <= 0 or dim <= 0:
            raise ValueError(f"Embedding needs positive sizes, got ({num_embeddings}, {dim})")
        self.num_embeddings = int(num_embeddings)
        self.dim = int(dim)
        self.weight = Parameter(get_rng().standard_normal((num_embeddings, dim)))

    def forward(self, indices) -> Tensor:
        idx = indices.data if isinstance(indices, Tensor) else np.asarray(indices)
        if idx.dtype.kind not in "iu":
            raise TypeError(
                f"Embedding expects integer indices, got dtype {idx.dtype} (shape {idx.shape})"
            )
        if idx.size and (idx.min() < 0 or idx.max() >= self.num_embeddings):
            raise IndexError(
                f"Embedding({self.num_embeddings}, {self.dim}): index out of range "
                f"[0, {self.num_embeddings}), got values from {idx.min()} to {idx.max()}"
            )
        return self.weight[idx]  # (*idx.shape, dim); backward scatters with np.add.at

    def extra_repr(self) -> str:
        return f"{self.num_embeddings}, {self.dim}"


# --------------------------------------------------------------------------- containers
class Sequential(Module):
    """Apply layers in order. Indexable (int or slice), iterable, `len`, `append`."""

    def __init__(self, *layers: Module):
        super().__init__()
        for layer in layers:
            self.append(layer)

    def append(self, layer: Module) -> Sequential:
        if not isinstance(layer, Module):
            raise TypeError(f"Sequential holds Modules, got {type(layer).__name__}")
        self.register_module(str(len(self._modules)), layer)
        return self

    def __getitem__(self, index):
        layers = list(self._modules.values())
        if isinstance(index, slice):
            return Sequential(*layers[index])
        return layers[index]

    def __len__(self) -> int:
        return len(self._modules)

    def __iter__(self) -> Iterator[Module]:
        return iter(list(self._modules.values()))

    def forward(self, x):
        if not is_grad_enabled():
            return self._forward_no_grad(x)
        for layer in self._modules.values():
            x = layer(x)
        return x

    def _forward_no_grad(self, x):
        """Inference: runs of layers that have an array kernel pass plain ndarrays from one to
        the next, with no Tensor made per layer (a graph executor's job: at batch 1 the Tensor
        and Module calls cost as much as the arithmetic of a small CNN). Any other layer gets a
        Tensor as usual; the values are those of the layers' own forward."""
        a = None  # the current value as a float ndarray, while in a run of kernels
        for layer in self._modules.values():
            kernel = array_forward(layer)
            if kernel is not None and a is None:
                data = x.data if type(x) is Tensor else x
                if type(data) is np.ndarray and data.dtype.kind == "f":
                    a = data
            if kernel is not None and a is not None:
                a = kernel(layer, a)
            else:
                if a is not None:
                    x, a = Tensor(a, dtype=a.dtype), None
                x = layer(x)
        return x if a is None else Tensor(a, dtype=a.dtype)


class ModuleList(Module):
    """A list of Modules whose parameters the parent sees (no forward of its own)."""

    def __init__(self, modules: Iterable[Module] | None = None):
        super().__init__()
        if modules is not None:
            self.extend(modules)

    def append(self, module: Module) -> ModuleList:
        if not isinstance(module, Module):
            raise TypeError(f"ModuleList holds Modules, got {type(module).__name__}")
        self.register_module(str(len(self._modules)), module)
        return self

    def extend(self, modules: Iterable[Module]) -> ModuleList:
        for m in modules:
            self.append(m)
        return self

    def __getitem__(self, index):
        mods = list(self._modules.values())
        if isinstance(index, slice):
            return ModuleList(mods[index])
        return mods[index]

    def __setitem__(self, index: int, module: Module) -> None:
        if not isinstance(module, Module):
            raise TypeError(f"ModuleList holds Modules, got {type(module).__name__}")
        key = list(self._modules)[index]
        self._store(self._modules, key, module)  # same position

    def __len__(self) -> int:
        return len(self._modules)

    def __iter__(self) -> Iterator[Module]:
        return iter(list(self._modules.values()))

    def forward(self, *args, **kwargs):
        raise NotImplementedError("ModuleList has no forward(); iterate over it instead")


# --------------------------------------------------------------------------- batch norm
class _BatchNorm(Module):
    """Normalise each channel (dim 1) over the batch and spatial dims (PyTorch semantics).

    Training: batch statistics (biased variance) normalise; `running_mean` / `running_var`
    move by `momentum` towards the batch mean and the UNBIASED batch variance, and
    `num_batches_tracked` counts the steps. Eval: the running statistics normalise.
    Composed from Tensor ops, so the backward pass is autograd's (see the gradient checks).
    """

    _ndims: tuple[int, ...] = ()

    def __init__(self, num_features: int, eps: float = 1e-5, momentum: float = 0.1,
                 affine: bool = True, track_running_stats: bool = True):
        super().__init__()
        self.num_features = _check_size(type(self).__name__, "num_features", num_features)
        self.eps = float(eps)
        self.momentum = float(momentum)
        if affine:
            self.weight = Parameter(np.ones(self.num_features))
            self.bias = Parameter(np.zeros(self.num_features))
        else:
            self.register_parameter("weight", None)
            self.register_parameter("bias", None)
        self.track_running_stats = bool(track_running_stats)
        if track_running_stats:
            dt = get_default_dtype()
            self.register_buffer("running_mean", np.zeros(self.num_features, dtype=dt))
            self.register_buffer("running_var", np.ones(self.num_features, dtype=dt))
            self.register_buffer("num_batches_tracked", np.zeros((), dtype=np.int64))

    def forward(self, x) -> Tensor:
        x = _as_float_tensor(x, type(self).__name__)
        if x.ndim not in self._ndims or x.shape[1] != self.num_features:
            want = " or ".join(f"{n}-D" for n in self._ndims)
            raise ValueError(
                f"{type(self).__name__}({self.num_features}) expects {want} input with "
                f"{self.num_features} channels in dim 1, got {x.shape}"
            )
        axes = (0, *range(2, x.ndim))  # every dim but the channels
        bshape = (1, self.num_features) + (1,) * (x.ndim - 2)  # (1, C, 1, ...)
        if self.training or not self.track_running_stats:
            n = x.numel() // self.num_features
            if self.training and n <= 1:
                raise ValueError(
                    f"{type(self).__name__} needs more than 1 value per channel when "
                    f"training, got input {x.shape}"
                )
            mean = x.mean(axis=axes, keepdims=True)  # (1, C, 1, ...)
            centered = x - mean
            var = (centered * centered).mean(axis=axes, keepdims=True)  # biased
            if self.training and self.track_running_stats:
                m = self.momentum
                unbiased = var.data.reshape(-1) * (n / max(n - 1, 1))
                self.running_mean = (1 - m) * self.running_mean + m * mean.data.reshape(-1)
                self.running_var = (1 - m) * self.running_var + m * unbiased
                self.num_batches_tracked = self.num_batches_tracked + 1
        else:
            mean = Tensor(self.running_mean.reshape(bshape), dtype=x.dtype)
            centered = x - mean
            var = Tensor(self.running_var.reshape(bshape), dtype=x.dtype)
        out = centered * (var + self.eps) ** -0.5
        if self.weight is not None:
            out = out * self.weight.reshape(*bshape) + self.bias.reshape(*bshape)
        return out

    def extra_repr(self) -> str:
        return f"{self.num_features}, eps={self.eps}, momentum={self.momentum}"


class BatchNorm1d(_BatchNorm):
    """Batch norm over (N, C) or (N, C, L) input."""

    _ndims = (2, 3)


class BatchNorm2d(_BatchNorm):
    """Batch norm over (N, C, H, W) input."""

    _ndims = (4,)


# --------------------------------------------------------------------------- Conv1d
def conv1d(x: Tensor, weight: Tensor, bias: Tensor | None = None, stride: int = 1,
           padding: int = 0) -> Tensor:
    """1-D cross-correlation: (N, C, L) with weight (out, C, k) -> (N, out, Lo).

    Runs as `conv2d` on a height-1 image, so it shares Conv2d's im2col + matmul path.
    """
    out_c, in_c, k = weight.shape
    if x.ndim != 3 or x.shape[1] != in_c:
        raise ValueError(
            f"conv1d with weight {weight.shape} expects input (N, {in_c}, L), got {x.shape}"
        )
    n, _, length = x.shape
    x4 = x.reshape(n, in_c, 1, length)  # (N, C, 1, L)
    w4 = weight.reshape(out_c, in_c, 1, k)  # (out, C, 1, k)
    y = conv2d(x4, w4, bias, (1, int(stride)), (0, int(padding)))  # (N, out, 1, Lo)
    return y.reshape(n, out_c, y.shape[-1])  # (N, out, Lo)


class Conv1d(Module):
    """1-D convolution over (N, C, L); weight (out_channels, in_channels, kernel_size)."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, stride: int = 1,
                 padding: int = 0, bias: bool = True):
        super().__init__()
        self.in_channels = _check_size("Conv1d", "in_channels", in_channels)
        self.out_channels = _check_size("Conv1d", "out_channels", out_channels)
        self.kernel_size = _check_size("Conv1d", "kernel_size", kernel_size)
        self.stride = _check_size("Conv1d", "stride", stride)
        if isinstance(padding, bool) or not isinstance(padding, int | np.integer) or padding < 0:
            raise ValueError(f"Conv1d: padding must be an int >= 0, got {padding!r}")
        self.padding = int(padding)
        fan_in = self.in_channels * self.kernel_size
        self.weight = Parameter(
            kaiming_uniform((self.out_channels, self.in_channels, self.kernel_size), fan_in)
        )
        if bias:
            self.bias = Parameter(kaiming_uniform((self.out_channels,), fan_in))
        else:
            self.register_parameter("bias", None)

    def forward(self, x) -> Tensor:
        x = _as_float_tensor(x, "Conv1d")
        if x.ndim != 3 or x.shape[1] != self.in_channels:
            raise ValueError(
                f"Conv1d({self.in_channels}, {self.out_channels}) expects input "
                f"(N, {self.in_channels}, L), got {x.shape}"
            )
        if x.shape[2] + 2 * self.padding < self.kernel_size:
            raise ValueError(
                f"Conv1d kernel {self.kernel_size} does not fit input {x.shape} with "
                f"padding {self.padding}"
            )
        return conv1d(x, self.weight, self.bias, self.stride, self.padding)

    def extra_repr(self) -> str:
        return (f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, "
                f"stride={self.stride}, padding={self.padding}")


# ------------------------------------------------------------------- inference array kernels
# The layers whose forward has a numpy kernel on plain float arrays (`_forward_array`, the same
# values as `forward` under no_grad), which `Sequential` chains without a Tensor per layer.
# Exact types only: a subclass, or an instance whose `forward` was replaced, may compute
# something else, and takes the ordinary path.
ARRAY_FORWARD: dict[type, Callable] = {
    layer: layer._forward_array for layer in (Linear, Conv2d, MaxPool2d, Flatten, ReLU)
}


def array_forward(layer: Module) -> Callable[[Module, np.ndarray], np.ndarray] | None:
    """`layer`'s array kernel, called as `kernel(layer, a)`; None when it must run as a
    Module."""
    kernel = ARRAY_FORWARD.get(type(layer))
    if kernel is None or "forward" in layer.__dict__:
        return None
    return kernel
