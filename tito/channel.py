"""The framing between a worker and its grading process: length-prefixed JSON over a pipe.

Both sides use it: the worker (tito/workers.py) and the zygote (tito/boundary.py) send requests,
the grading child (tito/sandbox.py) answers. A message is a 4-byte big-endian length and that
many bytes of ASCII JSON; anything else (too long, undecodable) is a ``ProtocolError``, a peer
that goes away is ``EOFError`` and a missed deadline is ``TimeoutError``.

Only the standard library is used here.
"""

from __future__ import annotations

import json
import os
import struct
import time

MAX_MESSAGE = 64 << 20  # bytes; a bigger length prefix is a protocol violation
_HEADER = struct.Struct("!I")


class ProtocolError(Exception):
    """The peer sent something that is not a message (too long, not ASCII JSON)."""


def send_msg(fd: int, obj, _write=os.write, _dumps=json.dumps) -> None:
    data = _dumps(obj, ensure_ascii=True).encode("ascii")
    view = memoryview(_HEADER.pack(len(data)) + data)
    while view:
        n = _write(fd, view)
        view = view[n:]


def recv_msg(fd: int, deadline: float | None = None):
    """One message, or raise TimeoutError (deadline passed), EOFError (peer gone),
    ProtocolError (garbage)."""
    header = _read_exact(fd, _HEADER.size, deadline)
    (size,) = _HEADER.unpack(header)
    if size > MAX_MESSAGE:
        raise ProtocolError(f"message of {size} bytes")
    try:
        return json.loads(_read_exact(fd, size, deadline).decode("ascii"))
    except (UnicodeDecodeError, ValueError) as exc:
        raise ProtocolError(f"undecodable message: {exc}") from None


def _read_exact(fd: int, n: int, deadline: float | None) -> bytes:
    import select

    chunks, got = [], 0
    while got < n:
        if deadline is not None:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError
            ready, _, _ = select.select([fd], [], [], left)
            if not ready:
                raise TimeoutError
        chunk = os.read(fd, min(n - got, 1 << 20))
        if not chunk:
            raise EOFError
        chunks.append(chunk)
        got += len(chunk)
    return b"".join(chunks)
