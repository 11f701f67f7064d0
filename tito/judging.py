"""The judge: the trusted half of a grade cell (the probe, ``tito/probe.py``, is the other half).

Each module keeps its judges in ``modules/NN_name/judge.py`` (instructor-only: never released,
never mounted into a sandbox)::

    judges = Judges("15_acceleration")

    @judges.inputs("naive_matches_numpy")
    def _(rng):                       # drawn by the worker from a fresh seed per grading
        return {"a": rng.standard_normal((3, 4)), "b": rng.standard_normal((4, 5))}

    @judges.judge("naive_matches_numpy")
    def _(inputs, outputs, seconds):  # runs where no student code ever ran
        expect.array(outputs, "out", inputs["a"] @ inputs["b"], what="naive_matmul")

A judge returns None (full points) or a fraction in [0, 1], or fails with ``AssertionError``
(``expect`` raises it) whose message the student sees: say what failed and on what kind of
input, never the expected values. ``seconds`` is the grade cell's wall time measured by the
worker, outside the sandbox (None when judging locally).
"""

from __future__ import annotations

import math
import types
from collections.abc import Callable, Mapping
from pathlib import Path

import numpy as np

from tito.plaindata import RAISED

InputsFn = Callable[[np.random.Generator], dict]
JudgeFn = Callable[[dict, dict, "float | None"], "float | None"]


class JudgeError(Exception):
    """A judge file is missing, malformed, or lacks a check it is asked for."""


class Judges:
    """The registry of one module's judges: inputs and a judge per grade cell id."""

    def __init__(self, module_id: str):
        self.module_id = module_id
        self._inputs: dict[str, InputsFn] = {}
        self._judges: dict[str, JudgeFn] = {}

    def inputs(self, check_id: str):
        def deco(fn: InputsFn) -> InputsFn:
            self._inputs[check_id] = fn
            return fn

        return deco

    def judge(self, check_id: str):
        def deco(fn: JudgeFn) -> JudgeFn:
            self._judges[check_id] = fn
            return fn

        return deco

    @property
    def checks(self) -> frozenset[str]:
        """The grade cell ids this module judges."""
        return frozenset(self._judges)

    def draw(self, check_id: str, seed: int) -> dict:
        """The inputs of ``check_id`` for ``seed`` (deterministic: the judge draws them again)."""
        fn = self._inputs.get(check_id)
        if check_id not in self._judges:
            raise JudgeError(f"{self.module_id} has no judge for grade cell {check_id!r}")
        if fn is None:
            return {}
        values = fn(np.random.default_rng(seed))
        if not isinstance(values, dict):
            raise JudgeError(f"inputs of {check_id!r} must be a dict, got {type(values)}")
        return values


def load_source(source: str, filename: str) -> Judges:
    """The ``Judges`` a judge file defines (its ``judges`` variable)."""
    mod = types.ModuleType("tito_judge")
    mod.__file__ = filename
    exec(compile(source, filename, "exec"), mod.__dict__)
    found = mod.__dict__.get("judges")
    if not isinstance(found, Judges):
        raise JudgeError(f"{filename} defines no `judges = Judges(...)`")
    return found


_LOADED: dict[str, Judges] = {}


def judge_file(module_dir: Path) -> Path:
    return Path(module_dir) / "judge.py"


def load_for(module_id: str) -> Judges:
    """Locally (the instructor's notebook): the judges of ``module_id`` from the project's
    ``modules/<module_id>/judge.py``."""
    if module_id not in _LOADED:
        from tito.project import Project

        path = judge_file(Project.find().modules_dir / module_id)
        if not path.is_file():
            raise JudgeError(f"no judge file {path} (needed to run the hidden checks locally)")
        _LOADED[module_id] = load_source(path.read_text(encoding="utf-8"), str(path))
    return _LOADED[module_id]


def verdict(
    judges: Judges,
    check_id: str,
    inputs: dict,
    outputs: dict,
    seconds: float | None,
    *,
    local: bool = False,
) -> tuple[float, str | None]:
    """(fraction of the points, why not all) for ``outputs``; ``local``: raise AssertionError
    instead of returning less than full points."""
    fn = judges._judges.get(check_id)
    if fn is None:
        raise JudgeError(f"{judges.module_id} has no judge for grade cell {check_id!r}")
    try:
        got = fn(inputs, outputs, seconds)
    except AssertionError as exc:
        frac, why = 0.0, str(exc) or "a hidden check failed"
    else:
        if got is None:
            frac, why = 1.0, None
        elif isinstance(got, (int, float)) and 0.0 <= float(got) <= 1.0:
            frac = float(got)
            why = None if frac == 1.0 else f"partial credit: {frac:.0%} of the hidden checks"
        else:
            raise JudgeError(f"judge {check_id!r} returned {got!r} (None or a fraction)")
    if local and frac < 1.0:
        raise AssertionError(f"hidden check {check_id}: {why}")
    return frac, why


# ---- what judges use to compare --------------------------------------------------------------
class expect:  # noqa: N801 -- a namespace, used as ``expect.array(...)``
    """Comparisons that fail with a message for the student (no expected values in it)."""

    @staticmethod
    def that(cond, message: str) -> None:
        if not cond:
            raise AssertionError(message)

    @staticmethod
    def returned(outputs: Mapping, name: str, what: str | None = None):
        """Output ``name``: present, not an exception. Returns it."""
        what = what or name
        if name not in outputs:
            raise AssertionError(f"{what}: the check could not collect a result")
        value = outputs[name]
        if isinstance(value, dict) and RAISED in value:
            kinds = value.get(RAISED) or ["Exception"]
            raise AssertionError(f"{what} raised {kinds[0]}: {value.get('message', '')}")
        return value

    @staticmethod
    def raised(
        outputs: Mapping,
        name: str,
        kind: type[BaseException] | str,
        *,
        contains: tuple[str, ...] = (),
        what: str | None = None,
    ) -> str:
        """Output ``name`` is an exception of ``kind`` (or a subclass) whose message contains
        every string of ``contains``. Returns the message."""
        what = what or name
        kind_name = kind if isinstance(kind, str) else kind.__name__
        value = outputs.get(name)
        if not (isinstance(value, dict) and RAISED in value):
            raise AssertionError(f"{what} should raise {kind_name}, but it returned")
        names = value.get(RAISED) or []
        message = str(value.get("message", ""))
        if kind_name not in names:
            raise AssertionError(f"{what} should raise {kind_name}, got {names[:1]}: {message}")
        missing = [s for s in contains if s not in message]
        if missing:
            raise AssertionError(
                f"{what}: the {kind_name} message should name {', '.join(missing)}; got: {message}"
            )
        return message

    @staticmethod
    def array(
        outputs: Mapping,
        name: str,
        want,
        *,
        dtype=None,
        rtol: float = 1e-7,
        atol: float = 0.0,
        what: str | None = None,
    ) -> np.ndarray:
        """Output ``name`` is an array of ``want``'s shape (and ``dtype`` when given) whose
        values are within ``rtol``/``atol`` of ``want``."""
        what = what or name
        got = expect.returned(outputs, name, what)
        if not isinstance(got, np.ndarray):
            try:
                got = np.asarray(got)
            except (TypeError, ValueError):
                raise AssertionError(f"{what}: not an array") from None
            if got.dtype.kind not in "biufc":
                raise AssertionError(f"{what}: not a numeric array")
        want = np.asarray(want)
        if got.shape != want.shape:
            raise AssertionError(f"{what}: shape {got.shape}, expected {want.shape}")
        if dtype is not None and got.dtype != np.dtype(dtype):
            raise AssertionError(f"{what}: dtype {got.dtype}, expected {np.dtype(dtype)}")
        if want.size == 0:
            return got
        if want.dtype.kind in "biu" and got.dtype.kind in "biu" and rtol == 0 and atol == 0:
            ok = np.array_equal(got, want)
        else:
            ok = np.allclose(got, want, rtol=rtol, atol=atol, equal_nan=True)
        if not ok:
            with np.errstate(all="ignore"):
                err = np.abs(got.astype(np.float64) - want.astype(np.float64))
            bad = int(
                np.count_nonzero(~np.isclose(got, want, rtol=rtol, atol=atol, equal_nan=True))
            )
            worst = np.unravel_index(int(np.nanargmax(err)), err.shape) if err.size else ()
            raise AssertionError(
                f"{what}: {bad} of {want.size} values are wrong "
                f"(largest error {float(np.nanmax(err)):.3g} at index {tuple(map(int, worst))})"
            )
        return got

    @staticmethod
    def value(
        outputs: Mapping,
        name: str,
        want: float,
        *,
        rel: float = 1e-9,
        abs: float = 0.0,  # noqa: A002 -- math.isclose's name
        what: str | None = None,
    ) -> float:
        """Output ``name`` is a number close to ``want``."""
        what = what or name
        got = expect.returned(outputs, name, what)
        if isinstance(got, np.ndarray) and got.shape == ():
            got = got.item()
        if isinstance(got, bool) or not isinstance(got, (int, float)):
            raise AssertionError(f"{what}: expected a number, got {type(got).__name__}")
        if not math.isclose(float(got), float(want), rel_tol=rel, abs_tol=abs):
            raise AssertionError(f"{what}: wrong value {got!r}")
        return float(got)

    @staticmethod
    def equal(outputs: Mapping, name: str, want, *, what: str | None = None):
        """Output ``name`` equals ``want`` exactly (plain data; arrays element-wise)."""
        what = what or name
        got = expect.returned(outputs, name, what)
        if not _same(got, want):
            raise AssertionError(f"{what}: wrong result {_short(got)}")
        return got


def _same(a, b) -> bool:
    if isinstance(a, np.ndarray) or isinstance(b, np.ndarray):
        a, b = np.asarray(a), np.asarray(b)
        return a.shape == b.shape and bool(np.array_equal(a, b))
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    return (
        type(a) is type(b)
        and a == b
        or (
            isinstance(a, (int, float))
            and isinstance(b, (int, float))
            and not isinstance(a, bool)
            and not isinstance(b, bool)
            and a == b
        )
    )


def _short(value) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."
