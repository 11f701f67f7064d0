"""The request/answer channel between the trusted harness and one sandboxed runner.

Two pipes: the harness writes requests on one, the runner writes answers on the other. Every
message is a frame: one kind byte, a 4-byte big-endian payload length, the payload. Arrays
travel as ``.npy`` bytes and are read back with ``np.load(allow_pickle=False)`` after their
header has been checked for the exact dtype and shape the harness expects, so an answer is
plain data: never an object, never a pickle, never a number the runner computed about itself.

    harness -> runner                       runner -> harness
    Q  nonce(16) + npy (1, 64)  one query   R  json {"stage"}        ready (load done)
    T  nonce(16)              train now     A  nonce(16) + npy       answer to Q or P
    P  nonce(16) + npy (n, 64)  predict     D  nonce(16) + json      trained
    X  (empty)                      exit    E  json {kind, message}  failed (its own reason)

An answer must echo the nonce of the request it answers; the harness sends the next request
only after the answer, so nothing can be answered before it is asked. Everything the runner
says is untrusted: the harness times requests with its own clock, scores predictions with its
own labels and treats a frame it did not ask for as a protocol violation.

Only the standard library at import (the runner imports this before its limits apply); numpy
is imported by the array helpers.
"""

from __future__ import annotations

import io
import json
import os
import select
import struct
import time

NONCE_BYTES = 16
HEADER = struct.Struct(">cI")  # kind, payload length
MAX_FRAME = 4 * 2**20  # no frame is larger (the largest: the (n, 10) float64 predictions)
# the dtypes an answer may have: class scores in a floating-point type of this byte order
SCORE_DTYPES = ("<f2", "<f4", "<f8")

QUERY, TRAIN, PREDICT, EXIT = b"Q", b"T", b"P", b"X"
READY, ANSWER, TRAINED, ERROR = b"R", b"A", b"D", b"E"
KINDS = {QUERY, TRAIN, PREDICT, EXIT, READY, ANSWER, TRAINED, ERROR}


class ProtocolError(Exception):
    """A frame that breaks the protocol: unknown kind, oversize, wrong nonce, bad array."""


class ChannelClosed(ProtocolError):
    """The other side closed its end (the runner exited or was killed)."""


class Timeout(ProtocolError):
    """No complete frame before the deadline."""


def frame(kind: bytes, payload: bytes = b"") -> bytes:
    if kind not in KINDS:
        raise ValueError(f"unknown frame kind {kind!r}")
    if len(payload) > MAX_FRAME:
        raise ValueError(f"a frame of {len(payload)} bytes is larger than {MAX_FRAME}")
    return HEADER.pack(kind, len(payload)) + payload


def write_all(fd: int, data: bytes, deadline: float | None = None) -> None:
    """Write every byte of ``data`` to ``fd`` (blocking, or until ``deadline`` if given:
    ``fd`` must then be non-blocking)."""
    view = memoryview(data)
    while view:
        if deadline is not None:
            left = deadline - time.monotonic()
            if left <= 0:
                raise Timeout("the runner did not read its request in time")
            _, ready, _ = select.select([], [fd], [], left)
            if not ready:
                continue
        try:
            n = os.write(fd, view)
        except BlockingIOError:
            continue
        except BrokenPipeError:
            raise ChannelClosed("the runner closed its request channel") from None
        view = view[n:]


def _read_exact(fd: int, n: int, deadline: float | None) -> bytes:
    out = bytearray()
    while len(out) < n:
        if deadline is not None:
            left = deadline - time.monotonic()
            if left <= 0:
                raise Timeout(f"no complete answer within the time limit ({len(out)}/{n} bytes)")
            ready, _, _ = select.select([fd], [], [], left)
            if not ready:
                continue
        try:
            chunk = os.read(fd, n - len(out))
        except BlockingIOError:
            continue
        if not chunk:
            raise ChannelClosed("the channel was closed" + (" mid-frame" if out else ""))
        out += chunk
    return bytes(out)


def read_frame(fd: int, deadline: float | None = None) -> tuple[bytes, bytes]:
    """The next (kind, payload) from ``fd``; raises ProtocolError on anything malformed."""
    head = _read_exact(fd, HEADER.size, deadline)
    kind, size = HEADER.unpack(head)
    if kind not in KINDS:
        raise ProtocolError(f"a frame of unknown kind {kind!r} (not part of the protocol)")
    if size > MAX_FRAME:
        raise ProtocolError(f"a frame of {size} bytes (at most {MAX_FRAME})")
    return kind, _read_exact(fd, size, deadline)


# ------------------------------------------------------------------------------------ arrays
def encode_array(array) -> bytes:
    import numpy as np

    buffer = io.BytesIO()
    np.save(buffer, np.asarray(array), allow_pickle=False)
    return buffer.getvalue()


def decode_array(data: bytes, shape: tuple, dtypes: tuple[str, ...], what: str = "answer"):
    """``data`` as an array of exactly ``shape`` and one of ``dtypes`` (``np.load`` with
    ``allow_pickle=False`` after the header was checked; no trailing bytes)."""
    import numpy as np
    from numpy.lib import format as npy

    stream = io.BytesIO(data)
    try:
        version = npy.read_magic(stream)
        if version == (1, 0):
            got_shape, fortran, dtype = npy.read_array_header_1_0(stream)
        elif version == (2, 0):
            got_shape, fortran, dtype = npy.read_array_header_2_0(stream)
        else:
            raise ValueError(f"npy format version {version}")
    except ValueError as exc:
        raise ProtocolError(f"the {what} is not a .npy array ({exc})") from None
    if dtype.hasobject or dtype.str not in dtypes:
        raise ProtocolError(
            f"the {what} has dtype {dtype.str} ({dtype}); expected one of {', '.join(dtypes)}"
        )
    if tuple(got_shape) != tuple(shape):
        raise ProtocolError(f"the {what} has shape {tuple(got_shape)}; expected {tuple(shape)}")
    if fortran:
        raise ProtocolError(f"the {what} is stored in Fortran order; expected C order")
    expected = stream.tell() + int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    if len(data) != expected:
        raise ProtocolError(f"the {what} holds {len(data)} bytes; its header implies {expected}")
    array = np.load(io.BytesIO(data), allow_pickle=False)
    if type(array) is not np.ndarray or array.dtype.str != dtype.str or array.shape != shape:
        raise ProtocolError(f"the {what} did not read back as a plain {shape} array")
    return array


def split_nonce(payload: bytes, expected: bytes, what: str) -> bytes:
    """The rest of ``payload`` after its nonce, which must be ``expected``."""
    if payload[:NONCE_BYTES] != expected:
        raise ProtocolError(
            f"the {what} carries nonce {payload[:NONCE_BYTES].hex() or '(none)'}, not the "
            f"{expected.hex()} of the request it must answer (a forged or replayed answer)"
        )
    return payload[NONCE_BYTES:]


def decode_json(payload: bytes, what: str) -> dict:
    try:
        value = json.loads(payload.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as exc:
        raise ProtocolError(f"the {what} is not JSON ({exc})") from None
    if not isinstance(value, dict):
        raise ProtocolError(f"the {what} is not a JSON object")
    return value
