"""Attention: `scaled_dot_product_attention` and `MultiHeadAttention` (nanoGPT-style).

    softmax(q @ k^T / sqrt(D) + mask) @ v        on (B, H, T, D) tensors

Both products, in the forward and in the backward pass, go through
`tinytorch.core.backends.matmul`, the routing point that module 15 swaps: as `Tensor @` when
attention is composed from Tensor operations (with dropout), and as direct calls when it is one
fused graph node with an analytic backward (without dropout, the common and the inference case).

Keys and values may be longer than the queries (Tk >= Tq): that is what a KV cache (module 16)
produces when it attends the newest Tq positions to all Tk positions seen so far. The causal
mask then lines the queries up with the LAST Tq keys: query i may attend to key j iff
j <= i + (Tk - Tq).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable

import numpy as np

from tinytorch.core import backends
from tinytorch.core.nn import Dropout, Linear, Module, linear_kernel
from tinytorch.core.tensor import Tensor

__all__ = ["causal_mask", "scaled_dot_product_attention", "MultiHeadAttention"]


@functools.lru_cache(maxsize=8)
def causal_mask(tq: int, tk: int) -> np.ndarray:
    """Boolean (tq, tk) array, True where query i may attend to key j: j <= i + (tk - tq).

    Cached and read-only: every layer of a forward pass asks for the same shape. The cache is
    small on purpose: uncached generation asks for a new (T, T) shape at every step, and 64
    entries of up to block_size^2 bytes each stayed alive after generating (65 MB at T = 1024).
    A cached generation step (tq = 1) needs no mask at all.
    """
    if tk < tq:
        raise ValueError(
            f"a causal mask needs at least as many keys as queries, got tq={tq}, tk={tk}"
        )
    i = np.arange(tq)[:, None]  # (Tq, 1)
    j = np.arange(tk)[None, :]  # (1, Tk)
    allowed = j <= i + (tk - tq)  # (Tq, Tk)
    allowed.setflags(write=False)
    return allowed


def _mask_value(dtype: np.dtype) -> float:
    """A large negative score for masked positions: exp() of it is exactly 0, yet it is finite,
    so `score + value` and `value - max` never overflow or give NaN (unlike -inf - -inf)."""
    return float(np.finfo(dtype).min) / 4


def _mask_bias(allowed: np.ndarray, dtype: np.dtype) -> np.ndarray:
    """Additive bias in `dtype`: 0 where allowed, `_mask_value` where masked. Made directly in
    `dtype` (not float64 and then cast): at T = 1024 that is 4 MB written per layer, not 12."""
    return np.where(allowed, dtype.type(0), dtype.type(_mask_value(dtype)))


def _as_tensor(x, name: str) -> Tensor:
    if isinstance(x, Tensor):
        return x
    try:
        return Tensor(x)
    except TypeError as exc:
        raise TypeError(f"{name} must be a Tensor or a float array: {exc}") from None


def _like(x, ref: Tensor) -> Tensor:
    """`x` as a Tensor; a numpy array keeps the dtype of `ref` (not the default dtype)."""
    return x if isinstance(x, Tensor) else Tensor(x, dtype=ref.dtype)


class _Shapes:
    """Formats as "q (..), k (..), v (..)" for error messages, lazily."""

    __slots__ = ("q", "k", "v")

    def __init__(self, q: Tensor, k: Tensor, v: Tensor):
        self.q, self.k, self.v = q, k, v

    def __format__(self, spec: str) -> str:
        return f"q {self.q.shape}, k {self.k.shape}, v {self.v.shape}"


def _active(dropout: Dropout) -> Dropout | None:
    """`dropout` if it would change its input (training mode and p > 0), else None."""
    return dropout if dropout.training and dropout.p > 0 else None


def scaled_dot_product_attention(
    q: Tensor,
    k: Tensor,
    v: Tensor,
    causal: bool = True,
    mask=None,
    *,
    dropout: Callable[[Tensor], Tensor] | None = None,
) -> Tensor:
    """Attention of q (B, H, Tq, D) over k (B, H, Tk, D) and v (B, H, Tk, Dv) -> (B, H, Tq, Dv).

    - `causal=True`: query i sees key j only if j <= i + (Tk - Tq) (needs Tk >= Tq).
    - `mask`: optional boolean array (or integer Tensor of 0/1) broadcastable to
      (B, H, Tq, Tk); True means "may attend". It is combined with the causal mask by AND.
    - `dropout`: optional callable applied to the attention weights (e.g. a `Dropout` module).

    Masked scores get a large finite negative value before a max-shifted (stable) softmax, so
    their weight is exactly 0 and no NaN appears. A query row that may attend to no key at all
    (possible only with a user mask) gets weight 0 everywhere, i.e. a zero output.

    Without dropout the whole computation is ONE graph node with an analytic backward
    (`_attention_fused`, like LayerNorm in nn.py): fewer Tensor operations per call, which is
    what a cached generation step (one query per call) pays for. With dropout it is composed
    from Tensor operations (`_attention_composed`). Both give the same values.
    """
    q, k, v = _as_tensor(q, "q"), _as_tensor(k, "k"), _as_tensor(v, "v")
    # the description is built only when an error is raised: f-strings cost every call
    shapes = _Shapes(q, k, v)
    if q.ndim != 4 or k.ndim != 4 or v.ndim != 4:
        raise ValueError(f"attention needs (B, H, T, D) tensors (4-D), got {shapes}")
    if q.shape[:2] != k.shape[:2] or q.shape[:2] != v.shape[:2]:
        raise ValueError(
            f"attention needs the same batch and heads (B, H) in q, k, v, got {shapes}"
        )
    if q.shape[-1] != k.shape[-1]:
        raise ValueError(f"attention needs the same head dim D in q and k, got {shapes}")
    if k.shape[2] != v.shape[2]:
        raise ValueError(f"attention needs as many keys as values (Tk), got {shapes}")
    tq, tk = q.shape[2], k.shape[2]
    if causal and tk < tq:
        raise ValueError(
            f"causal attention needs Tk >= Tq (queries are the last Tq positions), got {shapes}"
        )

    # one query (a cached generation step) may attend to every key: no mask to build
    allowed = causal_mask(tq, tk) if causal and tq > 1 else None  # (Tq, Tk)
    if mask is not None:
        m = np.asarray(getattr(mask, "data", mask))
        if m.dtype != bool:
            if m.dtype.kind not in "iu" or not np.isin(m, (0, 1)).all():
                raise TypeError(f"mask must be boolean (True = may attend), got dtype {m.dtype}")
            m = m.astype(bool)
        try:
            np.broadcast_shapes(m.shape, (q.shape[0], q.shape[1], tq, tk))
        except ValueError:
            raise ValueError(
                f"mask of shape {m.shape} does not broadcast to the scores "
                f"(B, H, Tq, Tk) = {(q.shape[0], q.shape[1], tq, tk)}; "
                f"{shapes}"
            ) from None
        allowed = m if allowed is None else (allowed & m)

    any_key = None  # (..., Tq, 1): False for query rows that may attend to no key
    if mask is not None:  # causal alone always leaves a row at least one key (Tk >= Tq)
        any_key = allowed.any(axis=-1, keepdims=True)
        if any_key.all():
            any_key = None
    same_float = q.dtype.kind == "f" and q.dtype == k.dtype == v.dtype
    if dropout is None and same_float:
        return _attention_fused(q, k, v, allowed, any_key)
    return _attention_composed(q, k, v, allowed, any_key, dropout)


def _attention_composed(q, k, v, allowed, any_key, dropout) -> Tensor:
    """Attention built from Tensor operations (autograd composes the backward)."""
    # Constants are made as Tensors in the scores' own dtype (float64 in gradient checks).
    dt = np.result_type(q.dtype, k.dtype)
    q = q * Tensor(1.0 / math.sqrt(q.shape[-1]), dtype=dt)  # scaled first, as the fused kernel
    scores = q @ k.transpose(-2, -1)  # (B, H, Tq, D) @ (B, H, D, Tk) -> (B, H, Tq, Tk)
    if allowed is not None:
        # additive bias: 0 where allowed, a huge negative where masked (a constant: no grad)
        bias = Tensor(_mask_bias(allowed, dt), dtype=dt)  # (.., Tq, Tk)
        scores = scores + bias  # (B, H, Tq, Tk)
    weights = scores.softmax(axis=-1)  # (B, H, Tq, Tk), rows sum to 1
    if any_key is not None:  # rows with no key would be uniform over masked keys: zero them
        weights = weights * Tensor(any_key, dtype=dt)
    if dropout is not None:
        weights = dropout(weights)
    return weights @ v  # (B, H, Tq, Tk) @ (B, H, Tk, Dv) -> (B, H, Tq, Dv)


def attention_kernel(qd, kd, vd, allowed, any_key, matmul=None):
    """numpy forward of attention -> (out, probs, weights, keep, scale); see _attention_fused.
    `matmul`: the product, when the caller resolved it for a whole forward
    (`backends.resolved_matmul()`); by default the routing point `backends.matmul`."""
    mm = backends.matmul if matmul is None else matmul
    dt = qd.dtype
    scale = np.asarray(1.0 / math.sqrt(qd.shape[-1]), dtype=dt)
    # the scale on q (Tq x D numbers) rather than on the scores (Tq x Tk: more past a cache)
    scores = mm(qd * scale, kd.swapaxes(-1, -2))  # (B, H, Tq, Tk)
    if allowed is not None:  # additive bias: 0 where allowed, a huge negative where masked
        scores += _mask_bias(allowed, dt)  # (.., Tq, Tk)
    # max-shifted softmax, in place (ufunc reduces skip ndarray.max/.sum's Python wrappers)
    scores -= np.maximum.reduce(scores, axis=-1, keepdims=True)
    np.exp(scores, out=scores)
    scores /= np.add.reduce(scores, axis=-1, keepdims=True)
    probs = scores  # (B, H, Tq, Tk), rows sum to 1
    keep = None if any_key is None else any_key.astype(dt)  # (..., Tq, 1)
    weights = probs if keep is None else probs * keep  # (B, H, Tq, Tk)
    out = mm(weights, vd)  # (B, H, Tq, Tk) @ (B, H, Tk, Dv) -> (B, H, Tq, Dv)
    return out, probs, weights, keep, scale


def _attention_fused(q: Tensor, k: Tensor, v: Tensor, allowed, any_key) -> Tensor:
    """The same numpy operations as `_attention_composed` (so the same values), recorded as one
    graph node. Both products, and the four of the backward pass, go through backends.matmul.

    Backward, with P = softmax(S), S = q k^T / sqrt(D) + bias, W = P (rows without keys
    zeroed) and O = W v:  dv = W^T dO;  dW = dO v^T;  dS = P * (dW - sum(dW * P));
    dq = dS k / sqrt(D);  dk = dS^T q / sqrt(D).
    """
    qd, kd, vd = q.data, k.data, v.data
    out, probs, weights, keep, scale = attention_kernel(qd, kd, vd, allowed, any_key)

    def backward(g):
        g_v = backends.matmul(np.swapaxes(weights, -1, -2), g)  # (B, H, Tk, Dv)
        g_w = backends.matmul(g, np.swapaxes(vd, -1, -2))  # (B, H, Tq, Tk)
        if keep is not None:
            g_w = g_w * keep
        g_s = probs * (g_w - (g_w * probs).sum(axis=-1, keepdims=True)) * scale  # (.., Tq, Tk)
        g_q = backends.matmul(g_s, kd)  # (B, H, Tq, D)
        g_k = backends.matmul(np.swapaxes(g_s, -1, -2), qd)  # (B, H, Tk, D)
        return g_q, g_k, g_v

    return q._make(out, (q, k, v), backward, "attention")


class MultiHeadAttention(Module):
    """Causal multi-head self-attention with one fused qkv projection and an output projection.

    Design (so module 16 can add a KV cache without rewriting this class):
    - `qkv` is ONE `Linear(d_model, 3 * d_model)`: one matmul instead of three, as in nanoGPT.
      Its weight columns are [q | k | v], each d_model wide, heads contiguous inside each.
    - `project_qkv(x)` turns new positions x (B, T, C) into q, k, v of shape (B, H, T, D).
      A cache would append k, v to the past ones here.
    - `attend(q, k, v)` runs attention of q over (possibly longer) k, v, merges the heads and
      applies the output projection -> (B, Tq, C).
    - `forward(x) = attend(*project_qkv(x))`; `forward(x, cache=c, layer_idx=i)` sends the new
      k, v through `c.update(k, v, i)`, which returns all keys and values so far, and attends
      the new queries over them (incremental attention, module 16).
    """

    def __init__(self, d_model: int, n_heads: int, dropout: float = 0.0):
        super().__init__()
        for name, val in (("d_model", d_model), ("n_heads", n_heads)):
            if isinstance(val, bool) or not isinstance(val, (int, np.integer)) or val < 1:
                raise ValueError(f"{name} must be a positive integer, got {val!r}")
        if d_model % n_heads != 0:
            raise ValueError(
                f"d_model={d_model} is not divisible by n_heads={n_heads}; "
                f"each head needs d_model / n_heads features"
            )
        self.d_model = int(d_model)
        self.n_heads = int(n_heads)
        self.head_dim = self.d_model // self.n_heads
        self.qkv = Linear(self.d_model, 3 * self.d_model)  # x @ [Wq | Wk | Wv]
        self.proj = Linear(self.d_model, self.d_model)  # merges the heads' outputs
        self.attn_dropout = Dropout(dropout)  # on the attention weights
        self.resid_dropout = Dropout(dropout)  # on the output, before the residual add

    def extra_repr(self) -> str:
        return f"d_model={self.d_model}, n_heads={self.n_heads}, head_dim={self.head_dim}"

    def _check_input(self, x: Tensor) -> Tensor:
        x = _as_tensor(x, "x")
        if x.ndim != 3 or x.shape[-1] != self.d_model:
            raise ValueError(
                f"MultiHeadAttention expects x of shape (B, T, {self.d_model}), got {x.shape}"
            )
        return x

    def split_heads(self, t: Tensor) -> Tensor:
        """(B, T, C) -> (B, H, T, D)."""
        b, t_len, _ = t.shape
        t = t.reshape(b, t_len, self.n_heads, self.head_dim)  # (B, T, C) -> (B, T, H, D)
        return t.permute(0, 2, 1, 3)  # (B, T, H, D) -> (B, H, T, D)

    def merge_heads(self, t: Tensor) -> Tensor:
        """(B, H, T, D) -> (B, T, C)."""
        b, _, t_len, _ = t.shape
        if t_len == 1:  # one position (a cached step): the permute would move no data
            return t.reshape(b, 1, self.d_model)  # (B, H, 1, D) -> (B, 1, C)
        t = t.permute(0, 2, 1, 3)  # (B, H, T, D) -> (B, T, H, D)
        return t.reshape(b, t_len, self.d_model)  # (B, T, H, D) -> (B, T, C)

    def project_qkv(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """q, k, v for the positions in x (B, T, C), each (B, H, T, D)."""
        x = self._check_input(x)
        b, t_len, _ = x.shape
        qkv = self.qkv(x)  # (B, T, C) -> (B, T, 3C)
        if t_len == 1:  # one position (a cached step): split without a permute
            qkv = qkv.reshape(b, 3, self.n_heads, 1, self.head_dim)  # (B, 1, 3C) -> (B, 3, H, 1, D)
            return qkv[:, 0], qkv[:, 1], qkv[:, 2]  # 3 x (B, H, 1, D)
        qkv = qkv.reshape(b, t_len, 3, self.n_heads, self.head_dim)  # -> (B, T, 3, H, D)
        qkv = qkv.permute(2, 0, 3, 1, 4)  # (B, T, 3, H, D) -> (3, B, H, T, D)
        return qkv[0], qkv[1], qkv[2]  # 3 x (B, H, T, D)

    def attend(self, q: Tensor, k: Tensor, v: Tensor, causal: bool = True, mask=None) -> Tensor:
        """Attention of q (B, H, Tq, D) over k, v (B, H, Tk, D), heads merged and projected:
        -> (B, Tq, C)."""
        y = scaled_dot_product_attention(
            q, k, v, causal=causal, mask=mask, dropout=_active(self.attn_dropout)
        )  # (B, H, Tq, D)
        y = self.proj(self.merge_heads(y))  # (B, H, Tq, D) -> (B, Tq, C)
        drop = _active(self.resid_dropout)  # identity in eval mode: skip the call
        return y if drop is None else drop(y)  # (B, Tq, C)

    def inference(self, h: np.ndarray, cache=None, layer_idx: int = 0) -> np.ndarray:
        """Causal self-attention on plain arrays (B, T, C) -> (B, T, C), for no_grad inference.

        The same kernels as `forward` (so the same values), without building Tensors; the
        caller checks that no dropout is active.
        """
        b, t_len, c = h.shape
        rows = self.inference_rows(h.reshape(b * t_len, c), b, t_len, cache, layer_idx)
        return rows.reshape(b, t_len, c)  # (B*T, C) -> (B, T, C)

    def inference_rows(
        self, h: np.ndarray, b: int, t_len: int, cache=None, layer_idx: int = 0, matmul=None
    ) -> np.ndarray:
        """`inference` on the positions as rows: h (B*T, C) -> (B*T, C), or one position as a
        vector (C,) -> (C,). Rows keep every projection one 2-D product with no reshape around
        it (the per-token path). `matmul`:
        the product for the whole forward (default: `backends.resolved_matmul()`)."""
        mm = backends.resolved_matmul() if matmul is None else matmul
        qkv = linear_kernel(h, self.qkv.weight.data, self.qkv.bias.data, mm)  # (B*T, 3C)
        qkv = qkv.reshape(b, t_len, 3, self.n_heads, self.head_dim)  # (B, T, 3, H, D)
        qkv = qkv.transpose(2, 0, 3, 1, 4)  # (3, B, H, T, D)
        q, k, v = qkv[0], qkv[1], qkv[2]  # 3 x (B, H, T, D)
        if cache is not None:
            k, v = cache.update(k, v, layer_idx)  # 2 x (B, H, Tk, D): the past and the new
            if type(k) is not np.ndarray or type(v) is not np.ndarray:
                # a Tensor's array, or any array-like as an ndarray (NOT getattr(k, "data"): an
                # ndarray's .data is a memoryview, which numpy converts back at every use)
                k = k.data if isinstance(k, Tensor) else np.asarray(k)
                v = v.data if isinstance(v, Tensor) else np.asarray(v)
        tk = k.shape[2]
        if tk < t_len:
            raise ValueError(f"causal attention needs Tk >= Tq, got Tq={t_len}, Tk={tk}")
        allowed = causal_mask(t_len, tk) if t_len > 1 else None  # (Tq, Tk)
        y = attention_kernel(q, k, v, allowed, None, mm)[0]  # (B, H, T, D)
        if t_len > 1:  # one position: (B, H, 1, D) is already laid out as (B, 1, H*D)
            y = y.transpose(0, 2, 1, 3)  # (B, H, T, D) -> (B, T, H, D)
        y = y.reshape(h.shape)  # (B*T, C), or (C,) like h
        return linear_kernel(y, self.proj.weight.data, self.proj.bias.data, mm)  # as h

    def forward(
        self, x: Tensor, causal: bool = True, mask=None, cache=None, layer_idx: int = 0
    ) -> Tensor:
        """Self-attention over x (B, T, C) -> (B, T, C).

        With `cache` (any object with `update(key, value, layer_idx) -> (keys, values)`), x holds
        only the NEW positions: their k, v go into the cache, and their queries attend over every
        key and value the cache returns (B, H, Tk, D), Tk >= T, the causal mask lining the
        queries up with the last T keys.
        """
        q, k, v = self.project_qkv(x)  # 3 x (B, H, T, D)
        if cache is not None:
            k, v = cache.update(k, v, layer_idx)  # 2 x (B, H, Tk, D): the past and the new
            k, v = _like(k, q), _like(v, q)  # a cache may return Tensors or numpy arrays
        return self.attend(q, k, v, causal=causal, mask=mask)
