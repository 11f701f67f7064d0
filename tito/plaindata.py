"""Plain data across the grading boundary: what a probe sends back and how the worker reads it.

``encode`` runs in the grading process (student code); ``decode`` runs in the worker and is
strict because it reads what student code produced: arrays are raw bytes plus a dtype that
must be plain numeric or bool (``<f8``, ``|b1``, ...: no object or structured dtype can even be
named, so nothing is unpickled or constructed), with an exact size; JSON for numbers and
strings; size caps. An ndarray subclass becomes a base-class copy of its data when recorded, so
no student object crosses.
"""

from __future__ import annotations

import base64
import json
import re
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
def plain(value, arrays: list[np.ndarray] | None = None):
    """``value`` as plain data: arrays (moved into ``arrays`` behind an index marker when given),
    numbers, strings, None, lists and str-keyed dicts of those. Raises ProbeError otherwise."""
    if isinstance(value, np.ndarray):
        arr = np.array(value, copy=True, subok=False)  # a base-class copy: no subclass survives
        if arr.dtype.kind not in _KINDS or arr.dtype.fields is not None:
            raise ProbeError(f"arrays of dtype {arr.dtype} cannot be returned (numeric only)")
        if arrays is None:
            return arr
        arrays.append(arr)
        return {_ARRAY: len(arrays) - 1}
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
    """``values`` (name -> plain data) as a JSON-safe payload: the tree as JSON, each array as
    (dtype, shape, offset, nbytes) into one base64 buffer of their raw bytes."""
    arrays: list[np.ndarray] = []
    tree = plain(dict(values), arrays)
    table, chunks, offset = [], [], 0
    for arr in arrays:
        arr = arr if arr.flags.c_contiguous else arr.copy(order="C")  # (keeps 0-d arrays 0-d)
        if arr.dtype.byteorder == ">":
            arr = arr.astype(arr.dtype.newbyteorder("<"))
        table.append([arr.dtype.str, list(arr.shape), offset, arr.nbytes])
        chunks.append(arr.tobytes())
        offset += arr.nbytes
    return {
        "json": json.dumps(tree, allow_nan=False),
        "arrays": table,
        "data": base64.b64encode(b"".join(chunks)).decode("ascii"),
    }


_DTYPE = re.compile(r"[<|][biufc][0-9]{1,2}")  # little-endian (or byte-sized) numeric only


def decode(payload) -> dict:
    """The values of an ``encode`` payload, strictly: anything else raises ProbeError. Arrays
    are rebuilt from raw bytes with a dtype that must be a plain numeric one (no object, no
    structured, no pickle: nothing but numbers can be expressed) and an exact size."""
    if type(payload) is not dict or set(payload) != {"json", "arrays", "data"}:
        raise ProbeError("the payload is not a probe payload")
    text, table, blob = payload["json"], payload["arrays"], payload["data"]
    if type(text) is not str or type(blob) is not str or type(table) is not list:
        raise ProbeError("the payload's fields have the wrong types")
    if len(text) + len(blob) > MAX_PAYLOAD * 4 // 3 + 1024:
        raise ProbeError(f"the payload is larger than {MAX_PAYLOAD >> 20} MB")
    try:
        raw = base64.b64decode(blob.encode("ascii"), validate=True)
        tree = json.loads(text)
    except ValueError as exc:
        raise ProbeError(f"the payload does not decode: {exc}") from None
    arrays: list[np.ndarray] = []
    for i, entry in enumerate(table):
        if type(entry) is not list or len(entry) != 4:
            raise ProbeError(f"array {i}: malformed entry")
        dtype_str, shape, offset, nbytes = entry
        if type(dtype_str) is not str or not _DTYPE.fullmatch(dtype_str):
            raise ProbeError(f"array {i}: dtype {dtype_str!r} is not a plain numeric dtype")
        dtype = np.dtype(dtype_str)
        if dtype.kind not in _KINDS or dtype.fields is not None:
            raise ProbeError(f"array {i}: dtype {dtype} (numeric only)")
        if type(shape) is not list or any(type(d) is not int or d < 0 for d in shape):
            raise ProbeError(f"array {i}: shape {shape!r} is not a list of sizes")
        if type(offset) is not int or type(nbytes) is not int or offset < 0:
            raise ProbeError(f"array {i}: bad offset or size")
        count = int(np.prod(shape, dtype=np.int64)) if shape else 1
        if count * dtype.itemsize != nbytes or offset + nbytes > len(raw):
            raise ProbeError(f"array {i}: {nbytes} bytes do not hold {shape} of {dtype}")
        arr = np.frombuffer(raw, dtype=dtype, count=count, offset=offset).reshape(tuple(shape))
        arrays.append(arr.copy())

    def build(node):
        if type(node) is dict:
            if set(node) == {_ARRAY}:
                key = node[_ARRAY]
                if type(key) is not int or not 0 <= key < len(arrays):
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
