"""The KV-cache protocol the core speaks, and the preallocated cache `generate` uses by default.

A cache (Hugging Face's `Cache` interface) is any object with

    update(key, value, layer_idx) -> (keys, values)   # (B, H, T_new, D) in, (B, H, T_all, D) out
    get_seq_length(layer_idx=0) -> int                 # positions processed so far
    reset()                                            # forget every position

`MultiHeadAttention.forward(x, cache=c, layer_idx=i)` sends its new keys and values through
`c.update(..., layer_idx=i)` and attends over what comes back; `TinyGPT.forward` reads
`get_seq_length()` to place the new positions; `TinyGPT.generate` calls `reset()` when the
context outgrows `block_size` (it then crops the context as the uncached path does).

`Cache` is that protocol as a base class. `StaticCache` is the core's own implementation, the
one `generate(use_cache=True)` makes: one preallocated buffer per layer, written in place.
Module 16 (`tinytorch.memory`) builds its caches (`KVCache`, `StaticKVCache`,
`SlidingWindowKVCache`) on `Cache`; the core never imports the module.
"""

from __future__ import annotations

import numpy as np

from tinytorch.core.tensor import Tensor

__all__ = ["Cache", "StaticCache", "check_cache"]

_PROTOCOL = ("update", "get_seq_length", "reset")


class Cache:
    """Base class of KV caches: subclasses implement `update`, `get_seq_length` and `reset`."""

    def update(self, key, value, layer_idx: int):
        """Store key, value (B, H, T_new, D) for layer `layer_idx`; return every key and value
        the new queries attend over, (B, H, T_all, D)."""
        raise NotImplementedError(f"{type(self).__name__} must implement update()")

    def get_seq_length(self, layer_idx: int = 0) -> int:
        """Number of positions layer `layer_idx` has processed."""
        raise NotImplementedError(f"{type(self).__name__} must implement get_seq_length()")

    def reset(self) -> None:
        """Forget every stored position."""
        raise NotImplementedError(f"{type(self).__name__} must implement reset()")


def check_cache(cache, need: tuple[str, ...] = _PROTOCOL[:2]) -> None:
    """TypeError naming the missing method unless `cache` has the methods `need` lists."""
    for name in need:
        if not callable(getattr(cache, name, None)):
            raise TypeError(
                f"cache must have {', '.join(n + '()' for n in need)} (the protocol of "
                f"tinytorch.core.cache.Cache); {type(cache).__name__} has no {name}()"
            )


def _positive_int(name: str, value) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"{name} must be an integer >= 1, got {value!r}")
    return int(value)


class StaticCache(Cache):
    """Preallocated keys and values, per layer a buffer (B, H, max_cache_len, D); the keys'
    is a view of a (B, H, D, max_cache_len) buffer, so that `q @ k^T` reads contiguous rows.

    `update` writes the new positions after the filled ones and returns views of the filled
    part: no allocation and no copy of the past per step (a growing cache copies all of it).
    Raises ValueError when full. Accepts and returns numpy arrays (the inference path's type).
    """

    def __init__(
        self,
        n_layers: int,
        batch_size: int,
        n_heads: int,
        max_cache_len: int,
        head_dim: int,
        dtype=np.float32,
    ):
        self.n_layers = _positive_int("n_layers", n_layers)
        self.batch_size = _positive_int("batch_size", batch_size)
        self.n_heads = _positive_int("n_heads", n_heads)
        self.max_cache_len = _positive_int("max_cache_len", max_cache_len)
        self.head_dim = _positive_int("head_dim", head_dim)
        self.dtype = np.dtype(dtype)
        if self.dtype.kind != "f":
            raise TypeError(f"a KV cache stores floats, got dtype {self.dtype}")
        shape = (self.batch_size, self.n_heads, self.max_cache_len, self.head_dim)
        shape_t = (self.batch_size, self.n_heads, self.head_dim, self.max_cache_len)
        # Keys are stored transposed, (B, H, D, max_cache_len), and held as (B, H, max, D)
        # views: q @ k^T then reads each key dimension's row contiguously, which BLAS runs
        # about 1.5-2x faster than over a strided transpose (measured for 128-1024 positions).
        self.keys = [np.zeros(shape_t, self.dtype).swapaxes(2, 3) for _ in range(self.n_layers)]
        self.values = [np.zeros(shape, self.dtype) for _ in range(self.n_layers)]
        self._held = (self.batch_size, self.n_heads, self.head_dim)  # (B, H, D) of every key
        self.reset()

    @classmethod
    def for_model(cls, model, batch_size: int = 1, max_cache_len: int | None = None):
        """A cache shaped for a `TinyGPT` (layers, heads, head dim, parameter dtype) holding up
        to `max_cache_len` positions (default: the model's block_size)."""
        c = model.config
        length = c.block_size if max_cache_len is None else max_cache_len
        dtype = model.tok_emb.weight.dtype
        return cls(c.n_layer, batch_size, c.n_head, length, c.head_dim, dtype)

    def reset(self) -> None:
        """Mark every layer empty; the buffers are kept for reuse."""
        self._lengths = [0] * self.n_layers

    def update(self, key, value, layer_idx: int):
        """Write key, value (B, H, T_new, D) after the filled positions of layer `layer_idx`;
        return views (B, H, T_past + T_new, D) of its filled part."""
        k, v = key, value  # ndarrays from the inference path; else a Tensor's array or array-like
        if type(k) is not np.ndarray:
            # not getattr(key, "data"): an ndarray's .data is a memoryview, which numpy would
            # convert back at every use
            k = k.data if isinstance(k, Tensor) else np.asarray(k)
        if type(v) is not np.ndarray:
            v = v.data if isinstance(v, Tensor) else np.asarray(v)
        shape = k.shape
        # one tuple comparison: a batch of 1 would otherwise broadcast silently into B rows
        if len(shape) != 4 or (shape[0], shape[1], shape[3]) != self._held or v.shape != shape:
            b, h, d = self._held
            raise ValueError(
                f"this StaticCache holds B={b}, H={h} heads of dim D={d}: key and value must "
                f"be ({b}, {h}, T, {d}), got key {shape} and value {v.shape}"
            )
        if not (type(layer_idx) is int and 0 <= layer_idx < self.n_layers):
            raise ValueError(
                f"layer_idx must be an integer in 0..{self.n_layers - 1}, got {layer_idx!r}"
            )
        start = self._lengths[layer_idx]
        end = start + shape[2]
        if end > self.max_cache_len:
            raise ValueError(
                f"StaticCache is full: layer {layer_idx} holds {start} of max_cache_len="
                f"{self.max_cache_len} positions and {shape[2]} more arrive (key {shape})"
            )
        keys, values = self.keys[layer_idx], self.values[layer_idx]
        keys[:, :, start:end] = k  # write in place: no new array
        values[:, :, start:end] = v
        self._lengths[layer_idx] = end
        return keys[:, :, :end], values[:, :, :end]  # views of the filled part

    def get_seq_length(self, layer_idx: int = 0) -> int:
        """Number of filled positions of layer `layer_idx`."""
        return self._lengths[layer_idx]

    def __repr__(self) -> str:
        return (
            f"StaticCache(n_layers={self.n_layers}, batch_size={self.batch_size}, "
            f"n_heads={self.n_heads}, max_cache_len={self.max_cache_len}, "
            f"head_dim={self.head_dim}, seq_length={self.get_seq_length()})"
        )
