"""What this CPU can do, read at run time: model name and SIMD feature flags.

    >>> cpu = cpu_features()
    >>> cpu.has("avx2"), cpu.int8_dot_instruction

Linux: the first `flags` (x86) or `Features` (ARM) line of /proc/cpuinfo. macOS: `sysctl`.
Anywhere else, or when neither can be read, `known` is False and every `has()` is False: code
that depends on a feature must then assume the worst case, never the best.
"""

from __future__ import annotations

import platform
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["CPUFeatures", "cpu_features", "parse_cpuinfo"]

# macOS sysctl spells some flags differently from Linux; normalize to the Linux names.
_ALIASES = {"avx512vnni": "avx512_vnni", "avxvnni": "avx_vnni", "avx2_0": "avx2"}


@dataclass(frozen=True)
class CPUFeatures:
    """The CPU's model name and feature flags (lower-case, Linux /proc/cpuinfo spelling)."""

    model: str  # e.g. "AMD EPYC 7B13"; platform.machine() when unknown
    machine: str  # platform.machine(): "x86_64", "aarch64", "arm64", ...
    flags: frozenset[str] = field(default_factory=frozenset)  # e.g. {"avx2", "avx512_vnni"}
    source: str = "unavailable"  # where the flags came from: "/proc/cpuinfo", "sysctl", ...

    @property
    def known(self) -> bool:
        """True if the flags were read; False means "no information", not "no features"."""
        return self.source != "unavailable"

    def has(self, flag: str) -> bool:
        return flag.lower() in self.flags

    @property
    def x86(self) -> bool:
        return self.machine.lower() in ("x86_64", "amd64", "i386", "i686", "x86")

    @property
    def int8_dot_instruction(self) -> str:
        """The instruction an INT8 engine's uint8 x int8 kernel uses on this CPU (best first)."""
        if not self.known:
            return "unknown (CPU flags could not be read)"
        if self.has("avx512_vnni"):
            return "vpdpbusd (AVX-512 VNNI): uint8*int8 products summed in int32"
        if self.has("avx_vnni"):
            return "vpdpbusd (AVX-VNNI): uint8*int8 products summed in int32"
        if self.has("avx512bw"):
            return "vpmaddubsw (AVX-512BW): pairs of uint8*int8 products saturated to int16"
        if self.has("avx2"):
            return "vpmaddubsw (AVX2): pairs of uint8*int8 products saturated to int16"
        if self.has("asimddp"):
            return "sdot/udot (ARM dot product): products summed in int32"
        return "no known INT8 dot-product instruction"

    @property
    def saturating_int8_pairs(self) -> bool | None:
        """True if uint8*int8 pair sums saturate to int16 here (AVX2 / AVX-512BW without VNNI).

        None when unknown (flags unreadable, or not x86): assume they may.
        """
        if not self.known or not self.x86:
            return None
        if self.has("avx512_vnni") or self.has("avx_vnni"):
            return False
        return self.has("avx2") or self.has("avx512bw")


def parse_cpuinfo(text: str) -> tuple[str, frozenset[str]]:
    """(model name, flags) from the text of /proc/cpuinfo (x86 `flags` or ARM `Features`)."""
    model, flags = "", None
    for line in text.splitlines():
        key, sep, value = line.partition(":")
        if not sep:
            continue
        key = key.strip()
        if key in ("model name", "Model", "cpu model") and not model:
            model = value.strip()
        elif key in ("flags", "Features") and flags is None:  # every core lists the same
            flags = frozenset(f.lower() for f in value.split())
    return model, flags if flags is not None else frozenset()


def _sysctl(name: str) -> str:
    out = subprocess.run(
        ["sysctl", "-n", name], capture_output=True, text=True, timeout=5, check=False
    )
    return out.stdout.strip() if out.returncode == 0 else ""


def cpu_features(cpuinfo: str | Path = "/proc/cpuinfo") -> CPUFeatures:
    """The CPU this process runs on. `cpuinfo`: a path to read (default /proc/cpuinfo)."""
    machine = platform.machine() or "unknown"
    try:
        text = Path(cpuinfo).read_text(encoding="utf-8", errors="replace")
    except OSError:
        text = None
    if text is not None:
        model, flags = parse_cpuinfo(text)
        if flags:
            return CPUFeatures(model or machine, machine, flags, str(cpuinfo))
    if platform.system() == "Darwin":
        try:
            raw = " ".join(
                _sysctl(k) for k in ("machdep.cpu.features", "machdep.cpu.leaf7_features")
            )
            model = _sysctl("machdep.cpu.brand_string")
        except (OSError, subprocess.SubprocessError):
            raw, model = "", ""
        flags = frozenset(_ALIASES.get(f.lower(), f.lower()) for f in raw.split())
        if flags:
            return CPUFeatures(model or machine, machine, flags, "sysctl")
    return CPUFeatures(platform.processor() or machine, machine)
