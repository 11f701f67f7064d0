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

The codec (``encode``/``decode``, ``tito/plaindata.py``) is shared with the worker.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable

from tito.plaindata import RAISED, ProbeError, decode, encode, plain, raised

__all__ = ["Probe", "ProbeError", "RAISED", "decode", "encode", "plain", "probe", "raised"]


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
            # through the same codec as in grading: the judge sees exactly what it would see
            # there (numpy scalars as 0-d arrays, tuples as lists, ...)
            outputs = decode(encode(self.outputs))
            judging.verdict(judges, self.check_id, pristine, outputs, None, local=True)
        return False


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
