"""The arena's request/answer channel and latency record, without a sandbox (fast).

What crosses from a runner to the harness must be plain data of the exact dtype and shape the
harness asked for; frames it did not ask for are refused; the latency record subtracts the null
model per pass and counts only the passes it should; text embedded in the page's script stays
text whatever it holds.
"""

from __future__ import annotations

import io
import json
import os
import time

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tinytorch.arena import protocol
from tinytorch.arena.harness import RESOLUTION_MS, latency_record
from tito.arena.html import script_json

SCORES = protocol.SCORE_DTYPES


def npy(array, **kw) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, array, **kw)
    return buffer.getvalue()


def _fortran() -> bytes:
    """A (1, 10) float32 .npy whose header says Fortran order (np.save never writes one)."""
    header = {"descr": "<f4", "fortran_order": True, "shape": (1, 10)}
    buffer = io.BytesIO()
    np.lib.format.write_array_header_1_0(buffer, header)
    return buffer.getvalue() + bytes(40)


@pytest.mark.parametrize("dtype", ["<f2", "<f4", "<f8"])
def test_plain_scores_of_each_float_dtype_read_back_exactly(dtype):
    a = np.arange(10, dtype=dtype).reshape(1, 10)
    got = protocol.decode_array(protocol.encode_array(a), (1, 10), SCORES)
    assert type(got) is np.ndarray and got.dtype == a.dtype and np.array_equal(got, a)


@pytest.mark.parametrize(
    "data, message",
    [
        (npy(np.zeros((1, 10), dtype=">f4")), "dtype >f4"),
        (npy(np.zeros((1, 10), dtype=np.int64)), "dtype <i8"),
        (npy(np.array([{"a": 1}] * 10, dtype=object).reshape(1, 10), allow_pickle=True),
         "dtype |O"),
        (npy(np.zeros((1, 9), dtype=np.float32)), "shape (1, 9); expected (1, 10)"),
        (_fortran(), "Fortran order"),
        (npy(np.zeros((1, 10), dtype=np.float32)) + b"extra", "its header implies"),
        (npy(np.zeros((1, 10), dtype=np.float32))[:-4], "its header implies"),
        (b'{"ok": true, "accuracy": 1.0}', "is not a .npy array"),
        (b"", "is not a .npy array"),
    ],
    ids=["big-endian", "int", "object", "shape", "fortran", "trailing", "short", "json", "empty"],
)
def test_anything_but_the_exact_array_is_refused(data, message):
    with pytest.raises(protocol.ProtocolError) as info:
        protocol.decode_array(data, (1, 10), SCORES)
    assert message in str(info.value)


@pytest.mark.parametrize(
    "data, error, message",
    [
        (b'{"ok": true}', protocol.ProtocolError, "unknown kind b'{'"),  # a JSON record
        (protocol.HEADER.pack(b"A", protocol.MAX_FRAME + 1), protocol.ProtocolError, "at most"),
        (b"", protocol.Timeout, "no complete answer"),
        (protocol.frame(protocol.ANSWER, b"x" * 10)[:8], protocol.Timeout, "3/10 bytes"),
    ],
    ids=["json-record", "oversize", "nothing", "half-a-frame"],
)
def test_frames_it_did_not_ask_for_are_refused(data, error, message):
    r, w = os.pipe()
    try:
        os.write(w, protocol.frame(protocol.ANSWER, b"x" * 100) + data)
        assert protocol.read_frame(r) == (protocol.ANSWER, b"x" * 100)
        with pytest.raises(error, match=message):
            protocol.read_frame(r, deadline=time.monotonic() + 0.2)
    finally:
        os.close(w)
        os.close(r)


def test_a_closed_channel_is_named():
    r, w = os.pipe()
    os.write(w, protocol.frame(protocol.READY, b"{}")[:3])
    os.close(w)
    with pytest.raises(protocol.ChannelClosed, match="mid-frame"):
        protocol.read_frame(r)
    os.close(r)


def test_an_answer_must_carry_the_nonce_of_its_request():
    nonce, other = b"a" * 16, b"b" * 16
    assert protocol.split_nonce(nonce + b"rest", nonce, "answer") == b"rest"
    with pytest.raises(protocol.ProtocolError, match="forged or replayed"):
        protocol.split_nonce(other + b"rest", nonce, "answer")


def test_latency_record_subtracts_the_null_model_per_pass_and_counts_passes():
    team = [[1.0, 1.2, 1.1], [0.1, 0.1, 0.1], [1.3, 1.4, 1.2]]  # pass 2 answered for free
    null = [[0.2, 0.2, 0.2], [0.3, 0.3, 0.3], [0.2, 0.2, 0.2]]
    rec = latency_record(team, null, [True, False, True])
    assert rec["all_passes_p50_ms"] == pytest.approx([0.9, RESOLUTION_MS, 1.1])
    assert rec["repeats_p50_ms"] == pytest.approx([0.9, 1.1])  # the uncounted pass left out
    assert rec["p50_ms"] == pytest.approx(1.0) and rec["first_pass_p50_ms"] == pytest.approx(0.9)
    assert rec["raw"]["passes_p50_ms"] == [1.1, 0.1, 1.3] and rec["null"]["p50_ms"] == 0.2
    assert latency_record(team, null, [False, False, False])["repeats_p50_ms"] == [
        pytest.approx(0.9)]  # pass 1 always counts


@settings(max_examples=60, deadline=None)
@given(st.lists(st.lists(st.floats(0.001, 50), min_size=1, max_size=20), min_size=1,
                max_size=5),
       st.lists(st.lists(st.floats(0.001, 50), min_size=1, max_size=20), min_size=1,
                max_size=5))
def test_calibrated_latency_is_positive_and_p90_never_below_p50(team, null):
    null = (null * len(team))[: len(team)]
    rec = latency_record(team, null)
    assert rec["p50_ms"] >= RESOLUTION_MS and rec["p90_ms"] >= rec["p50_ms"]
    assert min(rec["repeats_p50_ms"]) <= rec["p50_ms"] <= max(rec["repeats_p50_ms"])


@settings(max_examples=200, deadline=None)
@given(st.recursive(st.text() | st.integers() | st.none(),
                    lambda inner: st.lists(inner, max_size=4)
                    | st.dictionaries(st.text(), inner, max_size=4), max_leaves=10))
def test_script_json_holds_no_markup_and_reads_back_unchanged(value):
    text = script_json(value)
    assert not any(c in text for c in "<>&\u2028\u2029")
    assert json.loads(text) == value
