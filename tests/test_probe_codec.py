"""The plain-data codec between a probe (student process) and its judge (tito/plaindata.py):
exact round trips of what probes may return, and refusals of everything else, by name."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from tito.plaindata import RAISED, ProbeError, decode, encode, plain, raised

DTYPES = st.sampled_from(["<f8", "<f4", "<f2", "<i8", "<i4", "|i1", "|u1", "<u2", "|b1", "<c16"])


@settings(max_examples=60, deadline=None)
@given(dtype=DTYPES, shape=hnp.array_shapes(min_dims=0, max_dims=3, min_side=0, max_side=4),
       data=st.data())
def test_arrays_round_trip_with_exact_dtype_and_shape(dtype, shape, data):
    arr = data.draw(hnp.arrays(np.dtype(dtype), shape))
    back = decode(encode({"x": arr, "nested": [arr, {"y": arr}]}))
    for got in (back["x"], back["nested"][0], back["nested"][1]["y"]):
        assert got.dtype == arr.dtype and got.shape == arr.shape
        assert np.array_equal(got, arr, equal_nan=arr.dtype.kind in "fc")


def test_scalars_strings_and_non_finite_floats_round_trip():
    values = {"i": 3, "f": 2.5, "s": "text", "n": None, "b": True, "inf": float("inf"),
              "l": [1, 2.0, "x"], "t": (1, 2), "np": np.float32(1.5)}
    back = decode(encode(values))
    assert back["i"] == 3 and back["f"] == 2.5 and back["s"] == "text" and back["n"] is None
    assert back["b"] is True and back["inf"] == float("inf") and back["t"] == [1, 2]
    assert back["np"].dtype == np.float32 and back["np"].shape == ()


def test_a_lying_subclass_crosses_as_its_plain_data():
    class Liar(np.ndarray):
        def __eq__(self, other):
            return True

    back = decode(encode({"x": np.zeros(3).view(Liar)}))
    assert type(back["x"]) is np.ndarray and not np.array_equal(back["x"], np.ones(3))


@pytest.mark.parametrize("value", [object(), np.array([object()]), np.zeros(2, "U3"),
                                   {1: 2}, np.zeros(2, [("a", "<f8")])])
def test_what_is_not_plain_data_is_refused_with_its_type(value):
    with pytest.raises(ProbeError):
        plain(value)


@pytest.mark.parametrize(
    "tamper, message",
    [
        (lambda p: p["arrays"][0].__setitem__(0, "|O8"), "not a plain numeric dtype"),
        (lambda p: p["arrays"][0].__setitem__(0, "V8"), "not a plain numeric dtype"),
        (lambda p: p["arrays"][0].__setitem__(3, 10**9), "do not hold"),
        (lambda p: p["arrays"][0].__setitem__(1, [-1]), "not a list of sizes"),
        (lambda p: p.__setitem__("data", "***"), "does not decode"),
        (lambda p: p.__setitem__("extra", 1), "not a probe payload"),
        (lambda p: p.__setitem__("json", '{"x": {"__array__": 7}}'), "missing array"),
        (lambda p: p.__setitem__("json", "[1, 2]"), "not a mapping"),
    ],
)
def test_malformed_payloads_are_refused_with_the_reason(tamper, message):
    payload = encode({"x": np.arange(4.0)})
    tamper(payload)
    with pytest.raises(ProbeError, match=message):
        decode(payload)


def test_an_exception_is_recorded_as_its_class_names_and_message():
    rec = raised(KeyError("boom"))
    assert rec[RAISED][:2] == ["KeyError", "LookupError"] and "boom" in rec["message"]
