"""`save(obj, path)` / `load(path)` without pickle, and PyTorch state-dict conversion.

File format: a numpy `.npz` archive (a zip of `.npy` arrays, read with `allow_pickle=False`)
with one extra entry, `__tinytorch__`, a JSON header as uint8 bytes:
`{"format": "tinytorch", "version": 1, "kind": "state_dict" | "tensor" | "module",
"layout": "tinytorch", "keys": [...], "recipe": ...}`. A file without that header (a PyTorch
`.pt`/`.pth` zip of pickles, a plain `.npz`, safetensors, anything else) is refused with an
error that says what it looks like.

A saved model stores its state dict and a *recipe*: the class and the arguments its
`__init__` got (recorded by `Module`), nested for submodules and dataclass configs. `load`
rebuilds only `Module` subclasses (and dataclasses) that are already imported, by name; it
never imports a module and never unpickles, so loading a file cannot run code that the
program did not already contain.

PyTorch's `nn.Linear.weight` is (out, in); ours is (in, out). `from_pytorch_state_dict(sd,
model)` converts explicitly (transposes every Linear weight, checks every shape against the
model); `Module.load_state_dict` refuses dicts of torch tensors, so a foreign load is never
silent.
"""

from __future__ import annotations

import dataclasses
import io
import json
import os
import sys
import zipfile
from typing import Any

import numpy as np

from tinytorch.core.nn import Linear, Module, Parameter
from tinytorch.core.tensor import Tensor, _check_device

__all__ = ["save", "load", "from_pytorch_state_dict", "FORMAT_VERSION"]

FORMAT_VERSION = 1
_HEADER = "__tinytorch__"


# --------------------------------------------------------------------------- recipes
def _encode(value: Any, where: str) -> Any:
    """JSON-able description of a constructor argument, or TypeError naming it."""
    if value is None or isinstance(value, bool | str):
        return value
    if isinstance(value, int | float | np.integer | np.floating):
        return value.item() if isinstance(value, np.generic) else value
    if isinstance(value, tuple | list):
        return {"seq": type(value).__name__, "items": [_encode(v, where) for v in value]}
    if isinstance(value, Module):
        return {"module": _recipe(value, where)}
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        cls = type(value)
        fields = {f.name: _encode(getattr(value, f.name), f"{where}.{f.name}")
                  for f in dataclasses.fields(value) if f.init}
        return {"dataclass": f"{cls.__module__}:{cls.__qualname__}", "fields": fields}
    raise TypeError(
        f"cannot save this model: constructor argument {where} is a {type(value).__name__}; "
        "save model.state_dict() instead and rebuild the model in code"
    )


def _recipe(module: Module, where: str = "model") -> dict:
    cls = type(module)
    recorded = module.__dict__.get("_init_args", ((), {}))
    if isinstance(recorded, str):  # the constructor got data (an array, a Tensor, ...)
        raise TypeError(
            f"cannot save this model: {where} ({cls.__name__}) was built from a {recorded}; "
            "save model.state_dict() instead and rebuild the model in code"
        )
    args, kwargs = recorded
    return {
        "class": f"{cls.__module__}:{cls.__qualname__}",
        "args": [_encode(a, f"{where}.args[{i}]") for i, a in enumerate(args)],
        "kwargs": {k: _encode(v, f"{where}.{k}") for k, v in kwargs.items()},
    }


def _find_class(path: str, kind: str) -> type:
    """An already-imported class by 'module:qualname'; nothing is imported."""
    mod_name, _, qual = path.partition(":")
    mod = sys.modules.get(mod_name)
    obj: Any = mod
    for part in qual.split("."):
        obj = getattr(obj, part, None) if obj is not None else None
    ok = isinstance(obj, type) and (
        issubclass(obj, Module) if kind == "module" else dataclasses.is_dataclass(obj)
    )
    if not ok:
        raise ValueError(
            f"the saved model needs {kind} class {path!r}, which is not an imported "
            f"{'Module subclass' if kind == 'module' else 'dataclass'}; import it (or define "
            "it) before loading, or build the model yourself and call "
            "model.load_state_dict(tinytorch.load(path))"
        )
    return obj


def _decode(value: Any) -> Any:
    if isinstance(value, dict):
        if "seq" in value:
            items = [_decode(v) for v in value["items"]]
            return tuple(items) if value["seq"] == "tuple" else items
        if "module" in value:
            return _build(value["module"])
        if "dataclass" in value:
            cls = _find_class(value["dataclass"], "dataclass")
            return cls(**{k: _decode(v) for k, v in value["fields"].items()})
        raise ValueError(f"unknown entry in a saved model recipe: {sorted(value)}")
    return value


def _build(recipe: dict) -> Module:
    cls = _find_class(recipe["class"], "module")
    return cls(*[_decode(a) for a in recipe["args"]],
               **{k: _decode(v) for k, v in recipe["kwargs"].items()})


# --------------------------------------------------------------------------- save / load
def _arrays(state: dict, what: str) -> dict[str, np.ndarray]:
    out = {}
    for k, v in state.items():
        if not isinstance(k, str) or not k or k == _HEADER:
            raise TypeError(f"{what} keys must be non-empty strings (not {_HEADER!r}), got {k!r}")
        arr = v.data if isinstance(v, Tensor) else v
        if type(arr).__module__.split(".")[0] == "torch":
            raise TypeError(
                f"{what} entry {k!r} is a torch tensor: convert the dict with "
                "tinytorch.utils.from_pytorch_state_dict(state_dict, model) first"
            )
        arr = np.asarray(arr)
        if arr.dtype.kind not in "biuf":
            raise TypeError(f"{what} entry {k!r} must be a numeric array, got dtype {arr.dtype}")
        out[k] = arr
    return out


def save(obj: Any, path: str | os.PathLike) -> None:
    """Write a state dict (str -> array/Tensor), a Tensor or a Module to `path` (npz, no pickle).

    The file is written exactly at `path` (numpy would add `.npz`; we do not).
    """
    if isinstance(obj, Module):
        arrays = _arrays(obj.state_dict(), "state dict")
        header = {"kind": "module", "recipe": _recipe(obj)}
    elif isinstance(obj, Tensor):
        arrays = {"tensor": obj.data}
        header = {"kind": "tensor"}
    elif isinstance(obj, dict):
        arrays = _arrays(obj, "state dict")
        header = {"kind": "state_dict"}
    else:
        raise TypeError(
            f"tinytorch.save stores a state dict, a Tensor or a Module, got "
            f"{type(obj).__name__} (tinytorch never pickles arbitrary objects)"
        )
    header.update(format="tinytorch", version=FORMAT_VERSION, layout="tinytorch",
                  keys=list(arrays))
    meta = np.frombuffer(json.dumps(header).encode(), dtype=np.uint8)
    buf = io.BytesIO()
    # positional names avoid clashes between state-dict keys and savez's own arguments
    np.savez(buf, **{f"a{i}": a for i, a in enumerate(arrays.values())}, **{_HEADER: meta})
    with open(path, "wb") as f:
        f.write(buf.getvalue())


def _describe(path) -> str:
    with open(path, "rb") as f:
        head = f.read(16)
    if head[:2] == b"PK":
        with zipfile.ZipFile(path) as z:
            names = z.namelist()
        if any(n.endswith("data.pkl") for n in names):
            return ("a PyTorch checkpoint (torch.save: a zip of pickles). tinytorch never "
                    "unpickles; in PyTorch, export with "
                    "np.savez(p, **{k: v.numpy() for k, v in sd.items()}), then convert "
                    "with tinytorch.utils.from_pytorch_state_dict")
        return f"a zip/npz archive without a tinytorch header (entries {names[:5]})"
    if head[:2] == b"\x80\x02" or head[:1] == b"\x80":
        return "a Python pickle; tinytorch never unpickles files"
    if len(head) >= 9 and head[8:9] == b"{":
        return "a safetensors-like file; tinytorch files are npz archives"
    return "not a tinytorch file"


def load(path: str | os.PathLike, map_location=None, weights_only: bool = True) -> Any:
    """Read what `save` wrote: a state dict (dict of arrays), a Tensor or a rebuilt Module.

    `map_location` may only name the CPU; `weights_only` is accepted for torch's spelling
    (a tinytorch file never holds code, so it is always weights only).
    """
    if map_location is not None:
        _check_device(map_location)
    if not os.path.exists(path):
        raise FileNotFoundError(f"no such file: {path}")
    try:
        with np.load(path, allow_pickle=False) as z:
            if _HEADER not in z.files:
                raise ValueError
            header = json.loads(bytes(z[_HEADER]).decode())
            if header.get("format") != "tinytorch":
                raise ValueError
            stored = [z[f"a{i}"] for i in range(len(header["keys"]))]
    except (ValueError, OSError, zipfile.BadZipFile, KeyError, json.JSONDecodeError):
        raise ValueError(f"{path} is not a file written by tinytorch.save: "
                         f"{_describe(path)}") from None
    if header.get("version") != FORMAT_VERSION:
        raise ValueError(f"{path}: tinytorch file version {header.get('version')} is not "
                         f"supported (this tinytorch reads version {FORMAT_VERSION})")
    state = dict(zip(header["keys"], stored))
    kind = header.get("kind")
    if kind == "tensor":
        return Tensor(state["tensor"])
    if kind == "state_dict":
        return state
    if kind == "module":
        model = _build(header["recipe"])
        model.load_state_dict(state)
        return model
    raise ValueError(f"{path}: unknown tinytorch file kind {kind!r}")


# --------------------------------------------------------------------------- PyTorch
def _to_numpy(value: Any, key: str) -> np.ndarray:
    if type(value).__module__.split(".")[0] == "torch":
        value = value.detach().cpu().numpy()  # a torch.Tensor
    elif isinstance(value, Tensor):
        value = value.data
    arr = np.asarray(value)
    if arr.dtype.kind not in "biuf":
        raise TypeError(f"PyTorch state dict entry {key!r} is not numeric (dtype {arr.dtype})")
    return arr


def from_pytorch_state_dict(state_dict: dict, model: Module) -> dict[str, np.ndarray]:
    """Convert a PyTorch `state_dict` of the same architecture into `model`'s layout.

    Values may be torch tensors or numpy arrays in PyTorch's layout. Every `Linear` weight
    is transposed from PyTorch's (out, in) to our (in, out); Conv1d/Conv2d, Embedding,
    LayerNorm and BatchNorm entries have the same layout in both and are copied. Each
    converted entry must have exactly the shape the model expects (ValueError naming the
    key and both shapes otherwise); the result feeds `model.load_state_dict`, which reports
    missing and unexpected keys.
    """
    if not isinstance(state_dict, dict):
        raise TypeError(f"expected a state dict, got {type(state_dict).__name__}")
    if not isinstance(model, Module):
        raise TypeError(f"expected the target Module, got {type(model).__name__}")
    linear_weights = {
        (f"{name}.weight" if name else "weight")
        for name, mod in model.named_modules()
        if isinstance(mod, Linear) and isinstance(mod._parameters.get("weight"), Parameter)
    }
    expected = {k: v.shape for k, v in model.state_dict().items()}
    out: dict[str, np.ndarray] = {}
    bad = []
    for key, value in state_dict.items():
        arr = _to_numpy(value, key)
        if key in linear_weights:
            if arr.ndim != 2:
                bad.append(f"{key}: a Linear weight must be 2-D, got {arr.shape}")
                continue
            want = expected[key]
            if arr.shape != (want[1], want[0]):
                bad.append(f"{key}: PyTorch layout (out, in) = {(want[1], want[0])} expected, "
                           f"got {arr.shape}")
                continue
            arr = arr.T  # (out, in) -> (in, out)
        elif key in expected and arr.shape != expected[key]:
            bad.append(f"{key}: expected shape {expected[key]}, got {arr.shape}")
            continue
        out[key] = np.array(arr, order="C")  # own C-ordered copy; keeps 0-d shapes
    if bad:
        raise ValueError("cannot convert the PyTorch state dict for "
                         f"{type(model).__name__}: " + "; ".join(bad))
    return out
