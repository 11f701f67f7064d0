"""What machine is this? Hardware detection for the tuner (module 19, hand-written library code).

`cpu_flags` reads the SIMD feature flags from /proc/cpuinfo text (x86 `flags`, ARM `Features`);
`memory_bytes`, `blas_info` and `gpu_present` read the rest; `HardwareProfile.detect()` puts it
together, and its `fingerprint()` is part of every cache key (a timing is only valid on the
machine that made it). Everything is read at run time, nothing is assumed.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import platform
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np

__all__ = ["SIMD_FLAGS", "HardwareProfile", "blas_info", "cpu_flags", "gpu_present",
           "memory_bytes"]


SIMD_FLAGS = (
    "sse2", "sse4_2", "avx", "avx2", "fma", "avx512f", "avx512_vnni", "avx_vnni", "amx_int8",
    "neon", "asimd", "asimddp", "sve",
)


def cpu_flags(cpuinfo: str | None = None) -> tuple[str, ...]:
    """The SIMD_FLAGS this CPU has, from /proc/cpuinfo text (in SIMD_FLAGS order)."""
    if cpuinfo is None:
        try:
            cpuinfo = Path("/proc/cpuinfo").read_text()
        except OSError:
            return ()
    found: set[str] = set()
    for line in cpuinfo.splitlines():
        key, _, value = line.partition(":")
        if key.strip() in ("flags", "Features"):
            found.update(value.split())
    return tuple(f for f in SIMD_FLAGS if f in found)


def memory_bytes() -> int | None:
    """Total RAM in bytes (/proc/meminfo, else sysconf); None if unknown."""
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        return int(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"))
    except (ValueError, OSError, AttributeError):
        return None


def blas_info() -> dict:
    """The BLAS numpy calls: threadpoolctl if installed (what is loaded), else numpy's build."""
    if importlib.util.find_spec("threadpoolctl") is not None:
        from threadpoolctl import threadpool_info

        for pool in threadpool_info():
            if pool.get("user_api") == "blas":
                return {
                    "name": pool.get("internal_api", "?"),
                    "version": pool.get("version"),
                    "architecture": pool.get("architecture"),
                    "threads": pool.get("num_threads"),
                    "source": "threadpoolctl",
                }
    try:
        deps = np.show_config(mode="dicts")["Build Dependencies"]["blas"]
        return {
            "name": deps.get("name", "?"),
            "version": deps.get("version"),
            "architecture": None,
            "threads": None,
            "source": "numpy.show_config",
        }
    except Exception:  # numpy < 1.26 has no mode="dicts"
        return {"name": "unknown", "version": None, "architecture": None, "threads": None,
                "source": "none"}


def gpu_present() -> bool:
    """True if an NVIDIA or AMD GPU driver is visible (the tuner reports it; tinytorch is CPU)."""
    paths = ("/dev/nvidia0", "/proc/driver/nvidia", "/dev/kfd")
    return any(Path(p).exists() for p in paths) or shutil.which("nvidia-smi") is not None


@dataclass(frozen=True)
class HardwareProfile:
    """What the tuner knows about the machine a model runs on."""

    name: str  # "detected" for this machine
    cores: int  # CPU cores this process may use
    simd: tuple  # vector instruction sets (see SIMD_FLAGS)
    memory_bytes: int | None  # RAM
    blas: str  # the BLAS numpy calls, e.g. "openblas 0.3.27 (Haswell)"
    gpu: bool  # a GPU driver is visible
    onnxruntime: bool  # onnxruntime is importable (module 17 exports INT8 models to it)
    machine: str = ""  # CPU architecture, e.g. "x86_64"

    @classmethod
    def detect(cls) -> HardwareProfile:
        try:
            cores = len(os.sched_getaffinity(0))
        except AttributeError:  # not on Linux
            cores = os.cpu_count() or 1
        b = blas_info()
        blas = " ".join(str(v) for v in (b["name"], b["version"]) if v)
        if b.get("architecture"):
            blas += f" ({b['architecture']})"
        return cls("detected", cores, cpu_flags(), memory_bytes(), blas, gpu_present(),
                   importlib.util.find_spec("onnxruntime") is not None, platform.machine())

    def fingerprint(self) -> str:
        """Short hash of what timings depend on (part of every cache key)."""
        key = json.dumps([self.machine, self.cores, list(self.simd), self.blas, np.__version__,
                          os.environ.get("OPENBLAS_NUM_THREADS")])
        return hashlib.sha256(key.encode()).hexdigest()[:16]

    def describe(self) -> str:
        mem = f"{self.memory_bytes / 2**30:.1f} GiB" if self.memory_bytes else "RAM unknown"
        return (
            f"{self.name}: {self.machine} {self.cores} cores, SIMD {', '.join(self.simd) or '-'}, "
            f"{mem}, BLAS {self.blas}, GPU {'yes' if self.gpu else 'no'}, "
            f"onnxruntime {'yes' if self.onnxruntime else 'no'}"
        )
