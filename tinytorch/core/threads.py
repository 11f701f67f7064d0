"""BLAS threads: the course's "one BLAS thread" rule, in one place.

numpy's matmul calls a BLAS (OpenBLAS in the numpy wheels) that starts one thread per core. On a
busy or small machine those threads wait for cores and for each other: a 256x256 matmul can be
40x slower with every thread than with one. The course times kernels, not scheduling, so every
process it runs uses one BLAS thread:

- ``pin_blas_env()`` sets the thread variables for processes started afterwards (and for this
  one if numpy is not loaded yet); ``tito`` calls its numpy-free twin first thing (tito/cli.py);
- ``pin_blas_threads(n)`` limits the BLAS already loaded in this process (threadpoolctl): each
  module's setup cell calls it and prints what it did;
- ``with blas_threads(n):`` limits them for a block and restores them after (the lesson of
  module 15 measures both).

Only the standard library is imported at module level; threadpoolctl is imported on first use.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, MutableMapping
from contextlib import contextmanager
from dataclasses import dataclass

__all__ = [
    "BLAS_THREAD_VARS",
    "BlasPin",
    "blas_thread_counts",
    "blas_threads",
    "pin_blas_env",
    "pin_blas_threads",
]

# read by the BLAS / OpenMP libraries numpy, onnxruntime, ... may load; tito/cli.py keeps a copy
# (it must not import numpy first) and tests/test_threads.py checks the two agree
BLAS_THREAD_VARS = (
    "OPENBLAS_NUM_THREADS",
    "OMP_NUM_THREADS",
    "MKL_NUM_THREADS",
    "BLIS_NUM_THREADS",
    "VECLIB_MAXIMUM_THREADS",
    "NUMEXPR_NUM_THREADS",
)

# the limit this process last applied through this module (a forked child inherits both the
# limit and this record, which is how a grading child knows without calling native code)
_applied: int | None = None


def _check_threads(n, what: str = "n") -> int:
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"{what} must be a whole number of threads >= 1, got {n!r}")
    return n


def pin_blas_env(n: int = 1, environ: MutableMapping[str, str] | None = None) -> dict[str, str]:
    """Set every BLAS thread variable to ``n`` unless one is set already (an explicit setting
    by the user wins: then nothing changes). Returns the variables it set.

    It acts on BLAS libraries loaded later: every child process, and this one if numpy has not
    been imported yet.
    """
    _check_threads(n)
    env = os.environ if environ is None else environ
    if any(env.get(var) for var in BLAS_THREAD_VARS):
        return {}
    for var in BLAS_THREAD_VARS:
        env[var] = str(n)
    return {var: str(n) for var in BLAS_THREAD_VARS}


@dataclass(frozen=True)
class BlasPin:
    """What a pin did: the limit now in force and each BLAS library's threads before/after."""

    threads: int | None  # the limit in force after the call (None: unknown, nothing changed)
    libraries: tuple[tuple[str, int, int], ...]  # (library, threads before, threads after)
    how: str  # "threadpoolctl", "already pinned in this process", or why nothing changed

    @property
    def ok(self) -> bool:
        return self.threads is not None

    def __str__(self) -> str:
        if not self.ok:
            env = ", ".join(f"{v}={os.environ[v]}" for v in BLAS_THREAD_VARS[:2] if v in os.environ)
            return f"BLAS threads not changed ({self.how}); environment: {env or 'no limit set'}"
        libs = ", ".join(f"{name} {a} -> {b}" for name, a, b in self.libraries)
        plural = "" if self.threads == 1 else "s"
        detail = f"{self.how}: {libs}" if libs else self.how
        return f"BLAS limited to {self.threads} thread{plural} ({detail})"


def blas_thread_counts() -> dict[str, int]:
    """Threads of every BLAS library loaded in this process, e.g. ``{"openblas": 1}``."""
    from threadpoolctl import threadpool_info

    return {p["internal_api"]: int(p["num_threads"]) for p in threadpool_info()
            if p.get("user_api") == "blas"}


def _limit(n: int) -> tuple[tuple[tuple[str, int, int], ...], dict[str, int]]:
    """Set every loaded BLAS library to ``n`` threads: (library, before, after) for each, and
    the previous count per library file (to restore)."""
    from threadpoolctl import ThreadpoolController

    libs = ThreadpoolController().select(user_api="blas").lib_controllers
    before = {lib.filepath: int(lib.num_threads) for lib in libs}
    for lib in libs:
        lib.set_num_threads(n)
    after = ThreadpoolController().select(user_api="blas").lib_controllers
    done = tuple((lib.internal_api, before.get(lib.filepath, 0), int(lib.num_threads))
                 for lib in after)
    return done, before


def _restore(counts: dict[str, int]) -> None:
    from threadpoolctl import ThreadpoolController

    for lib in ThreadpoolController().select(user_api="blas").lib_controllers:
        if lib.filepath in counts:
            lib.set_num_threads(counts[lib.filepath])


def _try_limit(n: int) -> tuple[BlasPin, dict[str, int]]:
    """Limit to ``n`` threads; the result and the per-library counts to restore."""
    try:
        libraries, old = _limit(n)
    except ImportError as exc:
        return BlasPin(None, (), f"threadpoolctl is not installed: {exc}"), {}
    except OSError as exc:  # PermissionError: native calls refused (the autograder's guard)
        return BlasPin(None, (), f"{type(exc).__name__}: {exc}"), {}
    if not libraries:
        why = "threadpoolctl found no BLAS library it may control: numpy not imported yet, or "
        return BlasPin(None, (), why + "native calls refused here"), {}
    return BlasPin(n, libraries, "threadpoolctl"), old


def pin_blas_threads(n: int = 1) -> BlasPin:
    """Limit the BLAS libraries loaded in this process to ``n`` threads, now (threadpoolctl).

    Call it after numpy is imported. Returns what it did; ``str()`` of the result is one line
    for the student. Where native calls are refused (the autograder's guard, whose worker pins
    before it forks) or threadpoolctl is missing, nothing changes and the result says why.
    """
    global _applied
    _check_threads(n)
    if _applied == n:
        return BlasPin(n, (), "already pinned in this process")
    pin, _ = _try_limit(n)
    if pin.ok:
        _applied = n
    return pin


@contextmanager
def blas_threads(n: int) -> Iterator[BlasPin]:
    """``with blas_threads(2) as pin:`` -- ``n`` BLAS threads inside the block, the previous
    counts restored after. ``pin.ok`` is False (and nothing changed) where threads cannot be set.
    """
    global _applied
    _check_threads(n)
    previous = _applied
    pin, old = (BlasPin(n, (), "already pinned in this process"), {}) if previous == n else (
        _try_limit(n))
    if pin.ok:
        _applied = n
    try:
        yield pin
    finally:
        if old:
            _restore(old)
        _applied = previous
