"""Plain data across the grading boundary: what a probe sends back and how the worker reads it.

``encode`` runs in the grading process (student code); ``decode`` runs in the worker and is
strict because it reads what student code produced: no pickle (``np.load(allow_pickle=False)``),
numeric and bool arrays only, size caps, JSON for numbers and strings. An ndarray subclass
becomes a base-class copy of its data when recorded, so no student object crosses.
"""

from __future__ import annotations

import base64
import io
import json
from collections.abc import Mapping

import numpy as np

MAX_PAYLOAD = 48 << 20  # bytes of arrays + JSON one probe may send back
MAX_MESSAGE_CHARS = 2000  # characters of an exception message kept
_KINDS = "biufc"  # bool, int, uint, float, complex: the dtypes a probe may return
RAISED = "__raised__"
_ARRAY = "__array__"


class ProbeError(Exception):
    """What a probe produced is not plain data (or the payload is malformed)."""


# ---- the codec ---------------------------------------------------------------------------------
def plain(value, arrays: dict[str, np.ndarray] | None = None):
    """``value`` as plain data: arrays (moved into ``arrays`` behind a marker when given),
    numbers, strings, None, lists and str-keyed dicts of those. Raises ProbeError otherwise."""
    if isinstance(value, np.ndarray):
        arr = np.array(value, copy=True, subok=False)  # a base-class copy: no subclass survives
        if arr.dtype.kind not in _KINDS or arr.dtype.fields is not None:
            raise ProbeError(f"arrays of dtype {arr.dtype} cannot be returned (numeric only)")
        if arrays is None:
            return arr
        key = f"a{len(arrays)}"
        arrays[key] = arr
        return {_ARRAY: key}
    if isinstance(value, np.generic):
        if value.dtype.kind not in _KINDS:
            raise ProbeError(f"numpy scalars of dtype {value.dtype} cannot be returned")
        return plain(np.asarray(value), arrays) if arrays is not None else value.item()
    if value is None or type(value) in (bool, int, float, str):
        if type(value) is float and not np.isfinite(value):
            return {"__float__": repr(value)}
        return value
    if type(value) in (list, tuple):
        return [plain(v, arrays) for v in value]
    if type(value) is dict:
        out = {}
        for k, v in value.items():
            if type(k) is not str:
                raise ProbeError(f"dict keys must be str, got {type(k).__name__}")
            out[k] = plain(v, arrays)
        return out
    raise ProbeError(
        f"a probe records plain data (numpy arrays, numbers, strings, lists, dicts), "
        f"got {type(value).__module__}.{type(value).__qualname__}"
    )


def encode(values: Mapping[str, object]) -> dict:
    """``values`` (name -> plain data) as a JSON-safe payload: arrays in one base64 npz."""
    arrays: dict[str, np.ndarray] = {}
    tree = plain(dict(values), arrays)
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    return {
        "json": json.dumps(tree, allow_nan=False),
        "npz": base64.b64encode(buf.getvalue()).decode("ascii"),
    }


def decode(payload) -> dict:
    """The values of an ``encode`` payload, strictly: anything else raises ProbeError."""
    if type(payload) is not dict or set(payload) != {"json", "npz"}:
        raise ProbeError("the payload is not a probe payload")
    text, blob = payload["json"], payload["npz"]
    if type(text) is not str or type(blob) is not str:
        raise ProbeError("the payload's fields are not strings")
    if len(text) + len(blob) > MAX_PAYLOAD * 4 // 3 + 1024:
        raise ProbeError(f"the payload is larger than {MAX_PAYLOAD >> 20} MB")
    try:
        raw = base64.b64decode(blob.encode("ascii"), validate=True)
        tree = json.loads(text)
    except ValueError as exc:
        raise ProbeError(f"the payload does not decode: {exc}") from None
    arrays: dict[str, np.ndarray] = {}
    try:
        with np.load(io.BytesIO(raw), allow_pickle=False) as npz:
            for key in npz.files:
                arr = npz[key]
                if arr.dtype.kind not in _KINDS or arr.dtype.fields is not None:
                    raise ProbeError(f"array {key} has dtype {arr.dtype} (numeric only)")
                arrays[key] = arr
    except ProbeError:
        raise
    except Exception as exc:  # a malformed npz: whatever numpy raises, the answer is the same
        raise ProbeError(f"the arrays do not load: {type(exc).__name__}: {exc}") from None

    def build(node):
        if type(node) is dict:
            if set(node) == {_ARRAY}:
                key = node[_ARRAY]
                if key not in arrays:
                    raise ProbeError(f"the payload names a missing array {key!r}")
                return arrays[key]
            if set(node) == {"__float__"}:
                return float(node["__float__"])
            return {k: build(v) for k, v in node.items()}
        if type(node) is list:
            return [build(v) for v in node]
        return node

    out = build(tree)
    if type(out) is not dict:
        raise ProbeError("the payload is not a mapping of names to values")
    return out


def raised(exc: BaseException) -> dict:
    """An exception as plain data: the names of its classes and its message."""
    try:
        message = str(exc)[:MAX_MESSAGE_CHARS]
    except Exception:
        message = "(the exception's message could not be read)"
    return {RAISED: [c.__name__ for c in type(exc).__mro__], "message": message}
