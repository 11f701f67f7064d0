"""Re-running a tuning session costs nothing: fingerprints and the results cache (module 19,
hand-written library code).

A measurement depends on the model (architecture and weights: `fingerprint`), the data
(`data_fingerprint`), the configuration, the hardware and the measurement settings; the cache key
hashes all of them. `ResultCache` keeps `Metrics` in a JSON file (the user cache directory by
default), written atomically; an unreadable file is only a cache and starts again empty.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import numpy as np

from tinytorch.core.nn import Module

from .harness import Metrics

__all__ = ["ResultCache", "data_fingerprint", "default_cache_path", "fingerprint"]


def fingerprint(model: Module) -> str:
    """Hash of a model's architecture and every weight: equal models, equal fingerprints."""
    h = hashlib.sha256(repr(model).encode())
    for name, arr in sorted(model.state_dict().items()):
        a = np.ascontiguousarray(arr)
        h.update(f"{name}:{a.dtype}:{a.shape}".encode())
        h.update(a.tobytes())
    return h.hexdigest()[:24]


def data_fingerprint(data) -> str:
    """Hash of the training and validation arrays a measurement used."""
    h = hashlib.sha256()
    for name in ("x_train", "y_train", "x_val", "y_val"):
        h.update(np.ascontiguousarray(getattr(data, name)).tobytes())
    return h.hexdigest()[:24]


def default_cache_path() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "tinytorch" / "autotuning.json"


class ResultCache:
    """Measured Metrics keyed by (model, data, config, hardware, settings) in a JSON file."""

    def __init__(self, path: str | Path | None = None):
        self.path = Path(path) if path is not None else default_cache_path()
        self.hits = self.misses = 0
        self._entries: dict[str, dict] = {}
        if self.path.exists():
            try:
                self._entries = json.loads(self.path.read_text())
            except (OSError, ValueError):
                self._entries = {}  # an unreadable cache is only a cache: start again

    @staticmethod
    def key(*parts) -> str:
        return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()

    def get(self, key: str) -> Metrics | None:
        entry = self._entries.get(key)
        if entry is None:
            self.misses += 1
            return None
        self.hits += 1
        return Metrics(**entry)

    def put(self, key: str, metrics: Metrics) -> None:
        self._entries[key] = metrics.to_dict()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps(self._entries, sort_keys=True))
        tmp.replace(self.path)  # atomic: a crash never leaves half a file

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, key: str) -> bool:
        return key in self._entries
