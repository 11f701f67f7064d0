"""The probe: the hidden part of a grade cell, the only part of a check that runs with student code.

A grade cell of modules 15-20 is visible checks (the student's notebook keeps them) plus a
hidden probe::

    from tito.probe import probe as _probe

    with _probe("15_acceleration", "naive_matches_numpy") as _p:
        _p.record("out", lambda: naive_matmul(_p.inputs["a"], _p.inputs["b"]))

The probe drives the student's code on inputs it is handed (``_p.inputs``, fresh copies) and
records what came out as plain data. It decides nothing: the *judge*
(``modules/NN_name/judge.py``, see ``tito/judging.py``) holds the reference, draws the inputs
from a fresh seed and compares, in a process that never ran student code.

Two modes, chosen when the ``with`` block starts:

- **grading** (``tito autograde``): the grading process armed this module (``_arm``) with the
  inputs the worker drew; the outputs go back to the worker as bytes (``_collect``), where the
  judge decides. Nothing here can change a grade: a forged output is only an answer.
- **local** (the instructor's notebook: ``tito validate``, ``make course``, Jupyter): inputs are
  drawn from the judge file with a fresh seed and judged at the end of the block, in-process,
  raising ``AssertionError`` with the judge's message.

The codec (``encode``/``decode``) is shared with the worker; ``decode`` is strict (no pickle,
numeric arrays only, size caps) because it reads what student code produced.
"""

from __future__ import annotations

import base64
import io
import json
import secrets
from collections.abc import Callable, Mapping

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


# ---- inside the grade cell ---------------------------------------------------------------------
class Probe:
    """The ``with`` block's handle: ``inputs`` to drive the student's code, ``record``/``put`` to
    keep what it produced."""

    def __init__(self, module_id: str, check_id: str, inputs: dict, seed: int | None):
        self.module_id, self.check_id = module_id, check_id
        self.inputs = inputs
        self.outputs: dict[str, object] = {}
        self.seed = seed

    def record(self, name: str, fn: Callable[..., object], *args, **kwargs):
        """Call ``fn(*args, **kwargs)``; keep its value (plain data) or the exception it raised.
        Returns the value (None if it raised)."""
        try:
            value = fn(*args, **kwargs)
        except Exception as exc:  # the student's error is an answer too
            self.outputs[name] = raised(exc)
            return None
        self.put(name, value)
        return value

    def put(self, name: str, value) -> None:
        """Keep ``value`` as output ``name``; a value that is not plain data is kept as the
        reason it could not be kept (the judge reports it)."""
        try:
            self.outputs[name] = plain(value)
        except ProbeError as exc:
            self.outputs[name] = {RAISED: ["ProbeError"], "message": str(exc)}

    def __enter__(self) -> Probe:
        return self

    def __exit__(self, exc_type, exc, tb) -> bool:
        if exc_type is None and self.seed is not None:  # local mode: judge right here
            from tito import judging

            judges = judging.load_for(self.module_id)
            pristine = judges.draw(self.check_id, self.seed)
            judging.verdict(judges, self.check_id, pristine, self.outputs, None, local=True)
        return False


def raised(exc: BaseException) -> dict:
    """An exception as plain data: the names of its classes and its message."""
    try:
        message = str(exc)[:MAX_MESSAGE_CHARS]
    except Exception:
        message = "(the exception's message could not be read)"
    return {RAISED: [c.__name__ for c in type(exc).__mro__], "message": message}


_ARMED: dict = {}  # grading: {"module", "check", "inputs", "probe"} for the running grade cell


def probe(module_id: str, check_id: str) -> Probe:
    """The probe of grade cell ``check_id`` of ``module_id`` (grading: the worker's inputs;
    locally: inputs drawn from the judge file with a fresh seed)."""
    if _ARMED:
        if (_ARMED["module"], _ARMED["check"]) != (module_id, check_id):
            raise RuntimeError(f"probe {module_id}/{check_id} ran while grading {_ARMED['check']}")
        p = Probe(module_id, check_id, _ARMED["inputs"], None)
        _ARMED["probe"] = p
        return p
    from tito import judging

    judges = judging.load_for(module_id)
    seed = secrets.randbits(63)
    return Probe(module_id, check_id, judges.draw(check_id, seed), seed)


def _arm(module_id: str, check_id: str, payload: dict) -> None:
    """Grading process, before a grade cell: hand its probe the worker's inputs."""
    _ARMED.clear()
    _ARMED.update(module=module_id, check=check_id, inputs=decode(payload), probe=None)


def _collect() -> dict | None:
    """Grading process, after a grade cell: its probe's outputs as a payload (None if the probe
    never ran); disarms."""
    p = _ARMED.get("probe")
    _ARMED.clear()
    if p is None:
        return None
    try:
        return encode(p.outputs)
    except (ProbeError, ValueError, TypeError) as exc:
        return {"error": f"the probe's outputs could not be sent: {exc}"}
