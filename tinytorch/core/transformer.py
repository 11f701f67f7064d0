"""A GPT in numpy: `TransformerBlock` (pre-LayerNorm), `GPTConfig` and `TinyGPT`.

    idx (B, T) -> token emb + position emb -> N x [x + attn(ln1(x)); x + mlp(ln2(x))]
               -> ln_f -> lm_head -> logits (B, T, vocab)

`TinyGPT.generate` is the correct-but-slow baseline: at every new token it runs the whole
context (cropped to the last `block_size` tokens) through the model again, so producing n
tokens costs O(n) full forwards. Module 16 adds a KV cache; the per-step work lives in one
method, `next_token_logits`, which is what a cached version replaces.

The cache plumbing follows `tinytorch.core.cache.Cache` (duck-typed): `forward(idx, cache=c)`
accepts any object with `update(key, value, layer_idx) -> (keys, values)` and
`get_seq_length(layer_idx=0)` (the number of positions already processed, i.e. the position
index of the first new token). Every block sends its new keys and values through
`c.update(..., layer_idx=i)` and attends over what comes back. `generate(..., use_cache=True)`
prefills the prompt in one pass, then feeds one token per step, with the core's own
`StaticCache`; module 16 builds its caches on the same protocol.
"""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass

import numpy as np

from tinytorch.core import backends
from tinytorch.core.attention import MultiHeadAttention
from tinytorch.core.cache import StaticCache, check_cache
from tinytorch.core.nn import (
    Dropout,
    Embedding,
    LayerNorm,
    Linear,
    Module,
    ModuleList,
    get_rng,
    layer_norm_kernel,
    linear_kernel,
)
from tinytorch.core.tensor import Tensor, gelu_kernel, is_grad_enabled, no_grad

__all__ = ["MLP", "TransformerBlock", "GPTConfig", "TinyGPT"]


def _inactive(dropout: Dropout) -> bool:
    """True when `dropout` would not change its input (eval mode, or p = 0)."""
    return not dropout.training or dropout.p == 0


def _check_positive_int(name: str, value, minimum: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return int(value)


def _check_dropout(value) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not 0 <= value < 1:
        raise ValueError(f"dropout must be a probability in [0, 1), got {value!r}")
    return float(value)


class MLP(Module):
    """Position-wise feed-forward: Linear(C, rC) -> GELU -> Linear(rC, C) -> Dropout."""

    def __init__(self, d_model: int, mlp_ratio: int = 4, dropout: float = 0.0):
        super().__init__()
        hidden = _check_positive_int("mlp_ratio", mlp_ratio) * d_model
        self.fc = Linear(d_model, hidden)  # widen: each position gets rC features
        self.proj = Linear(hidden, d_model)  # back to the residual width
        self.dropout = Dropout(dropout)

    def forward(self, x: Tensor) -> Tensor:
        h = self.fc(x).gelu()  # (B, T, C) -> (B, T, rC)
        h = self.proj(h)  # (B, T, rC) -> (B, T, C)
        return self.dropout(h) if self.dropout.training and self.dropout.p > 0 else h


class TransformerBlock(Module):
    """Pre-LN transformer block: x + attn(ln1(x)), then x + mlp(ln2(x)). (B, T, C) -> same."""

    def __init__(self, d_model: int, n_heads: int, mlp_ratio: int = 4, dropout: float = 0.0):
        super().__init__()
        d_model = _check_positive_int("d_model", d_model)
        dropout = _check_dropout(dropout)
        self.ln1 = LayerNorm(d_model)
        self.attn = MultiHeadAttention(d_model, n_heads, dropout=dropout)
        self.ln2 = LayerNorm(d_model)
        self.mlp = MLP(d_model, mlp_ratio, dropout=dropout)

    def inference_ok(self) -> bool:
        """True when `inference` computes what `forward` would: the layers are the core classes
        (none swapped, e.g. for a quantized one) and no dropout would change a value."""
        attn, mlp = self.attn, self.mlp
        return (
            type(attn) is MultiHeadAttention
            and type(mlp) is MLP
            and type(self.ln1) is LayerNorm
            and type(self.ln2) is LayerNorm
            and type(attn.qkv) is Linear
            and type(attn.proj) is Linear
            and type(mlp.fc) is Linear
            and type(mlp.proj) is Linear
            and _inactive(attn.attn_dropout)
            and _inactive(attn.resid_dropout)
            and _inactive(mlp.dropout)
        )

    def _fast_path_ok(self, x) -> bool:
        """Inference fast path: no graph to record, no dropout to apply, a well-formed input."""
        return (
            not is_grad_enabled()
            and type(x) is Tensor
            and x.ndim == 3
            and x.shape[-1] == self.attn.d_model
            and x.dtype.kind == "f"
            and self.inference_ok()
        )

    def inference(self, a: np.ndarray, cache=None, layer_idx: int = 0) -> np.ndarray:
        """The block on plain arrays (B, T, C) -> (B, T, C): the same kernels as the Tensor ops
        (so the same values) without building Tensors. In eval mode under no_grad this is what
        `forward` runs, like PyTorch's fast path for inference in its transformer layers."""
        b, t_len, c = a.shape
        rows = self.inference_rows(a.reshape(b * t_len, c), b, t_len, cache, layer_idx)
        return rows.reshape(b, t_len, c)  # (B*T, C) -> (B, T, C)

    def inference_rows(
        self, x: np.ndarray, b: int, t_len: int, cache=None, layer_idx: int = 0, matmul=None
    ) -> np.ndarray:
        """`inference` on the positions as rows: x (B*T, C) -> (B*T, C), every projection one
        2-D product (what a generation step runs, once per layer); one position may come as a
        vector (C,) -> (C,). `matmul`: the product for the whole forward (default:
        `backends.resolved_matmul()`)."""
        mm = backends.resolved_matmul() if matmul is None else matmul
        ln1, ln2, fc, proj = self.ln1, self.ln2, self.mlp.fc, self.mlp.proj
        h = layer_norm_kernel(x, ln1.weight.data, ln1.bias.data, ln1.eps)[0]
        x = x + self.attn.inference_rows(h, b, t_len, cache, layer_idx, mm)  # (B*T, C)
        h = layer_norm_kernel(x, ln2.weight.data, ln2.bias.data, ln2.eps)[0]
        h = gelu_kernel(linear_kernel(h, fc.weight.data, fc.bias.data, mm))[0]  # (B*T, rC)
        return x + linear_kernel(h, proj.weight.data, proj.bias.data, mm)  # (B*T, C)

    def forward(self, x: Tensor, cache=None, layer_idx: int = 0) -> Tensor:
        """(B, T, C) -> (B, T, C); with `cache`, x holds only the new positions."""
        if self._fast_path_ok(x):
            return Tensor(self.inference(x.data, cache, layer_idx), dtype=x.dtype)
        a = self.attn(self.ln1(x), cache=cache, layer_idx=layer_idx)  # (B, T, C)
        x = x + a  # (B, T, C): attention mixes positions
        return x + self.mlp(self.ln2(x))  # (B, T, C): the MLP works per position


@dataclass
class GPTConfig:
    """Hyper-parameters of a `TinyGPT`. Invalid values raise ValueError naming them."""

    vocab_size: int  # rows of the token embedding and columns of the logits (tokenizer size)
    block_size: int  # longest context: rows of the position embedding, the causal mask's size
    n_layer: int  # transformer blocks stacked: depth, i.e. rounds of attention + MLP
    n_head: int  # attention heads per block; must divide d_model (head_dim = d_model / n_head)
    d_model: int  # width of the residual stream (embedding size)
    dropout: float = 0.0  # regularisation for training; 0 keeps the forward deterministic

    def __post_init__(self) -> None:
        for name in ("vocab_size", "block_size", "n_layer", "n_head", "d_model"):
            _check_positive_int(name, getattr(self, name))
        if self.d_model % self.n_head != 0:
            raise ValueError(f"d_model={self.d_model} is not divisible by n_head={self.n_head}")
        _check_dropout(self.dropout)

    @property
    def head_dim(self) -> int:
        return self.d_model // self.n_head


class TinyGPT(Module):
    """A decoder-only transformer language model (GPT-2 layout, pre-LN, learned positions).

    `TinyGPT(config, seed=None)`: weights get the GPT-2 initialisation (normal with std 0.02,
    residual output projections scaled by 1/sqrt(2 n_layer), zero biases, LayerNorms 1 / 0)
    from `np.random.default_rng(seed)`, or from the nn module RNG (`nn.manual_seed`) when
    `seed` is None, so the same seed gives the same model every time.
    """

    def __init__(self, config: GPTConfig, seed: int | None = None):
        super().__init__()
        if not isinstance(config, GPTConfig):
            raise TypeError(f"TinyGPT needs a GPTConfig, got {type(config).__name__}")
        self.config = config
        c = config
        self.tok_emb = Embedding(c.vocab_size, c.d_model)  # token id -> vector
        self.pos_emb = Embedding(c.block_size, c.d_model)  # position 0..block_size-1 -> vector
        self.drop = Dropout(c.dropout)
        self.blocks = ModuleList(
            [TransformerBlock(c.d_model, c.n_head, dropout=c.dropout) for _ in range(c.n_layer)]
        )
        self.ln_f = LayerNorm(c.d_model)
        self.lm_head = Linear(c.d_model, c.vocab_size)  # residual stream -> next-token logits
        self.reset_parameters(seed)

    def extra_repr(self) -> str:
        return f"{self.config}, parameters={self.num_parameters():,}"

    def reset_parameters(self, seed: int | None = None) -> None:
        """GPT-2 initialisation, in place, from `np.random.default_rng(seed)` (or, when `seed` is
        None, from the nn module RNG that `manual_seed` resets)."""
        rng = get_rng() if seed is None else np.random.default_rng(seed)
        resid_std = 0.02 / math.sqrt(2 * self.config.n_layer)
        for name, m in self.named_modules():
            if isinstance(m, Linear):
                # projections that add into the residual stream get a smaller std, so the
                # stream's variance does not grow with depth
                std = resid_std if name.endswith(("attn.proj", "mlp.proj")) else 0.02
                m.weight.data[...] = rng.normal(0.0, std, size=m.weight.shape)
                if m.bias is not None:
                    m.bias.data[...] = 0.0
            elif isinstance(m, Embedding):
                for p in m.parameters():
                    p.data[...] = rng.normal(0.0, 0.02, size=p.shape)
            elif isinstance(m, LayerNorm):  # identity at the start: scale 1, shift 0
                for pname, p in m.named_parameters():
                    p.data[...] = 0.0 if pname.endswith(("bias", "beta", "shift")) else 1.0

    # ------------------------------------------------------------------ forward
    def _check_idx(self, idx) -> np.ndarray:
        arr = np.asarray(idx.data if isinstance(idx, Tensor) else idx)
        if arr.dtype.kind not in "iu":
            raise TypeError(f"token ids must be integers, got dtype {arr.dtype}")
        if arr.ndim != 2:
            raise ValueError(f"TinyGPT expects token ids of shape (B, T), got {arr.shape}")
        t_len = arr.shape[1]
        if t_len > self.config.block_size:
            raise ValueError(
                f"sequence length T={t_len} exceeds block_size="
                f"{self.config.block_size} (ids of shape {arr.shape})"
            )
        if arr.size and (arr.min() < 0 or arr.max() >= self.config.vocab_size):
            bad = int(arr.min()) if arr.min() < 0 else int(arr.max())
            raise ValueError(
                f"token id {bad} is out of range for vocab_size {self.config.vocab_size}"
            )
        return arr

    def forward(self, idx, cache=None, start_pos: int | None = None) -> Tensor:
        """Token ids (B, T) (integer array or Tensor, T <= block_size) -> logits (B, T, vocab).

        With `cache`, idx holds only the NEW tokens, at positions start_pos .. start_pos + T - 1
        (start_pos defaults to `cache.get_seq_length()`, the number of positions already
        cached); block i reads and extends the cache through `update(k, v, layer_idx=i)`.
        Under `no_grad` with no dropout active, the forward runs on plain arrays
        (`inference`): the same kernels, so the same values, without a graph.
        """
        idx = self._check_idx(idx)
        t_len = idx.shape[1]
        if start_pos is None:
            start_pos = 0 if cache is None else int(cache.get_seq_length())
        self._check_positions(start_pos, t_len)
        if self._fast_path_ok():
            return Tensor(self.inference(idx, cache, start_pos), dtype=self.tok_emb.weight.dtype)
        tok = self.tok_emb(idx)  # (B, T) -> (B, T, C)
        pos = self.pos_emb(np.arange(start_pos, start_pos + t_len))  # (T,) -> (T, C)
        x = self.drop(tok + pos)  # (B, T, C), positions broadcast over B
        for i, block in enumerate(self.blocks):
            x = block(x, cache=cache, layer_idx=i)  # (B, T, C)
        return self.lm_head(self.ln_f(x))  # (B, T, C) -> (B, T, vocab)

    def _check_positions(self, start_pos: int, t_len: int) -> None:
        """ValueError unless positions start_pos .. start_pos + t_len - 1 have embeddings."""
        if start_pos < 0 or start_pos + t_len > self.config.block_size:
            raise ValueError(
                f"positions {start_pos}..{start_pos + t_len - 1} do not fit block_size="
                f"{self.config.block_size} (start_pos={start_pos}, T={t_len}): the position "
                "embedding has one row per position"
            )

    def _fast_path_ok(self) -> bool:
        """No graph to record, no dropout that would change a value, no layer swapped."""
        if is_grad_enabled() or not _inactive(self.drop):
            return False
        if not (
            type(self.tok_emb) is Embedding
            and type(self.pos_emb) is Embedding
            and type(self.ln_f) is LayerNorm
            and type(self.lm_head) is Linear
        ):
            return False
        for block in self.blocks:
            if type(block) is not TransformerBlock or not block.inference_ok():
                return False
        return True

    def inference(self, idx: np.ndarray, cache=None, start_pos: int = 0) -> np.ndarray:
        """Logits (B, T, vocab) for checked token ids (B, T) at positions start_pos.., on plain
        arrays: what `forward` runs under no_grad in eval mode (the ids are not re-checked)."""
        b, t_len = idx.shape
        x = self.tok_emb.weight.data[idx] + self.pos_emb.weight.data[start_pos : start_pos + t_len]
        c = x.shape[-1]
        # positions as rows (B*T, C); a single one (a cached step) as a vector (C,), whose
        # elementwise ops then broadcast nothing (numpy's broadcasting costs more than the
        # arithmetic on arrays this small)
        x = x.reshape(b * t_len, c) if b * t_len > 1 else x.reshape(c)
        mm = backends.resolved_matmul()  # the active backend's product, looked up once
        for i, block in enumerate(self.blocks):
            x = block.inference_rows(x, b, t_len, cache, i, mm)  # (B*T, C) or (C,)
        ln, head = self.ln_f, self.lm_head
        x = layer_norm_kernel(x, ln.weight.data, ln.bias.data, ln.eps)[0]  # (B*T, C) or (C,)
        logits = linear_kernel(x, head.weight.data, head.bias.data, mm)  # (B*T, vocab) or (vocab,)
        return logits.reshape(b, t_len, -1)  # (B, T, vocab)

    # --------------------------------------------------------------- generation
    def next_token_logits(self, ids: np.ndarray, cache=None) -> np.ndarray:
        """Logits (B, vocab) for the token after `ids` (B, T).

        Without a cache the whole context, cropped to the last `block_size` tokens, goes
        through the model again. With a cache only the tokens it has not seen yet,
        `ids[:, cache.get_seq_length():]`, go through (the whole prompt at the first step,
        then one token per step); `generate` resets the cache first when the context has
        outgrown block_size, so the cropped context is prefilled again, as without a cache.
        """
        context = self._unseen(ids, cache)[0]  # (B, T')
        logits = self.forward(context, cache=cache)  # (B, T', vocab)
        return logits.data[:, -1, :]  # (B, T', vocab) -> (B, vocab): the last position only

    def _unseen(self, ids: np.ndarray, cache) -> tuple[np.ndarray, int]:
        """The ids (B, T') a step runs and the position of the first: with no cache or an empty
        one the context cropped to block_size, from 0; else the ids the cache has not seen."""
        start = 0 if cache is None else int(cache.get_seq_length())
        if not start:
            return ids[:, -self.config.block_size :], 0  # (B, T) -> (B, min(T, block_size))
        if not 0 < start < ids.shape[1]:
            raise ValueError(
                f"the cache holds {start} positions but the context has {ids.shape[1]} tokens: "
                "a step needs at least one token the cache has not seen"
            )
        return ids[:, start:], start  # (B, T) -> (B, T_new)

    def _cached_logits(self, ids: np.ndarray, cache) -> np.ndarray:
        """`next_token_logits(ids, cache=cache)` for `generate`'s cached steps, once generate
        has checked what `forward` checks at every call: the ids are valid (the prompt was
        checked; every later id was picked from the logits) and the forward takes its fast
        path (`_fast_generation_ok`). The new positions go straight to `inference`: no
        re-checks and no Tensor around the logits at every token."""
        context, start = self._unseen(ids, cache)  # (B, T')
        self._check_positions(start, context.shape[1])  # a cache must not misplace them
        return self.inference(context, cache, start)[:, -1]  # (B, T', vocab) -> (B, vocab)

    def _fast_generation_ok(self) -> bool:
        """True when `_cached_logits` computes what `next_token_logits` would: neither it nor
        `forward` is overridden, and the forward takes its fast path (under no_grad, eval)."""
        cls = type(self)
        return (
            cls.next_token_logits is TinyGPT.next_token_logits
            and cls.forward is TinyGPT.forward
            and self._fast_path_ok()
        )

    @staticmethod
    def sample_next(
        logits: np.ndarray,
        rng: np.random.Generator,
        temperature: float = 1.0,
        top_k: int | None = None,
        top_p: float | None = None,
        do_sample: bool = True,
    ) -> np.ndarray:
        """Pick one id per row of `logits` (B, vocab) -> (B,) int64.

        `do_sample=False`: the argmax (greedy). Otherwise, in Hugging Face's order: divide by
        `temperature`, keep the `top_k` largest logits (ties with the k-th kept; None or 0:
        all), keep the smallest set of most likely tokens whose probability reaches `top_p`
        (None or 1.0: all), renormalise, and sample by inverse CDF with `rng`.
        """
        if not do_sample:
            return logits.argmax(axis=-1).astype(np.int64)
        z = logits.astype(np.float64) / temperature  # (B, V)
        if top_k and top_k < z.shape[-1]:
            kth = np.partition(z, -top_k, axis=-1)[:, -top_k][:, None]  # (B, 1)
            z = np.where(z < kth, -np.inf, z)  # ties with the k-th value are kept
        z = z - z.max(axis=-1, keepdims=True)  # stable softmax
        p = np.exp(z)  # (B, V); exp(-inf) = 0
        p /= p.sum(axis=-1, keepdims=True)
        if top_p is not None and top_p < 1.0:
            order = np.argsort(-p, axis=-1, kind="stable")  # (B, V), most likely first
            sorted_p = np.take_along_axis(p, order, axis=-1)
            before = np.cumsum(sorted_p, axis=-1) - sorted_p  # mass of the tokens ranked above
            keep = np.zeros_like(p, dtype=bool)
            # a token stays while the mass above it is below top_p: the first always stays
            np.put_along_axis(keep, order, before < top_p, axis=-1)
            p = np.where(keep, p, 0.0)
        cdf = np.cumsum(p, axis=-1)  # (B, V), unnormalised after filtering
        u = rng.random(len(cdf)) * cdf[:, -1]  # (B,), uniform in [0, total)
        return (cdf <= u[:, None]).sum(axis=-1).astype(np.int64)  # first index with cdf > u

    def generate(
        self,
        prompt_ids,
        max_new_tokens: int,
        temperature: float = 1.0,
        top_k: int | None = None,
        seed: int | None = None,
        greedy: bool | None = None,
        use_cache: bool = False,
        cache=None,
        *,
        do_sample: bool | None = None,
        top_p: float | None = None,
    ) -> np.ndarray:
        """Append `max_new_tokens` ids to `prompt_ids`, token ids shaped (B, T) or (T,).

        Hugging Face's meanings: `do_sample=False` (the default) is greedy decoding (argmax);
        `do_sample=True` samples from softmax(logits / temperature), restricted by `top_k`
        and `top_p` (see `sample_next`), from `np.random.default_rng(seed)`, so a fixed seed
        gives the same output. `greedy=True` is the same as `do_sample=False` and
        `greedy=False` as `do_sample=True`. Sampling options without `do_sample=True`, and
        `temperature=0` with it, raise ValueError saying what to write instead.

        Returns int64 ids (B, T + max_new_tokens), or 1-D if the prompt was 1-D. Runs under
        `no_grad()` and in eval mode (dropout off; the previous mode is restored).

        `use_cache=False` (default) recomputes the whole context at each step, cropped to the
        last `block_size` tokens. With `use_cache=True` or an (empty) `cache`, the prompt is
        prefilled in one pass and each step runs only the newest token over the cached keys
        and values; without a `cache`, a preallocated `tinytorch.core.cache.StaticCache` is
        made (generate knows the final length: one buffer beats growing by copies). Once the
        context outgrows block_size, the cache is reset and the cropped context prefilled
        again at every step, which is exactly what the uncached path computes: the same
        tokens, at the uncached cost per step from there on.
        """
        ids = self._check_prompt(prompt_ids)
        one_d = ids.ndim == 1
        ids = ids[None, :] if one_d else ids  # (T,) -> (1, T)
        max_new_tokens = _check_positive_int("max_new_tokens", max_new_tokens, minimum=0)
        explicit = do_sample is not None or greedy is not None
        do_sample = _resolve_do_sample(do_sample, greedy)
        temperature, top_k, top_p = _check_sampling(
            do_sample, explicit, temperature, top_k, top_p, seed
        )

        b, t0 = ids.shape
        block = self.config.block_size
        if cache is None and use_cache:
            cache = StaticCache.for_model(self, b, min(t0 + max_new_tokens, block))
        if cache is not None:
            self._check_cache(cache, t0, max_new_tokens)

        rng = np.random.default_rng(seed)
        out = np.empty((b, t0 + max_new_tokens), dtype=np.int64)  # (B, T + n)
        out[:, :t0] = ids
        was_training = self.training
        self.eval()
        try:
            with no_grad():
                # checked once per call, not per token: a cached step can skip forward's checks
                cached_step = self.next_token_logits
                if cache is not None and self._fast_generation_ok():
                    cached_step = self._cached_logits
                for t in range(t0, out.shape[1]):
                    context = out[:, :t]  # (B, t): the prompt and the tokens so far
                    if cache is None:
                        logits = self.next_token_logits(context)  # (B, vocab)
                    else:
                        if t > block:  # the context is cropped: its positions all shift
                            cache.reset()
                        logits = cached_step(context, cache=cache)  # (B, vocab)
                    out[:, t] = self.sample_next(logits, rng, temperature, top_k, top_p, do_sample)
        finally:
            if was_training:
                self.train()
        return out[0] if one_d else out

    def _check_prompt(self, prompt_ids) -> np.ndarray:
        """The prompt as an integer array (T,) or (B, T), or an error naming the mistake."""
        if isinstance(prompt_ids, (str, bytes)):
            raise TypeError(
                f"generate expects token ids (a Tensor or integer array shaped (B, T) or (T,)), "
                f"got the {type(prompt_ids).__name__} {prompt_ids!r}: encode the text with a "
                "tokenizer first, e.g. ids = tokenizer.encode(text)"
            )
        ids = np.asarray(prompt_ids.data if isinstance(prompt_ids, Tensor) else prompt_ids)
        if ids.dtype.kind not in "iu" and ids.size:
            raise TypeError(
                f"generate expects integer token ids shaped (B, T) or (T,), got dtype "
                f"{ids.dtype} with shape {ids.shape}"
            )
        if ids.ndim not in (1, 2) or ids.size == 0:
            raise ValueError(
                f"generate expects non-empty token ids shaped (B, T) or (T,), got shape "
                f"{ids.shape}"
            )
        if ids.min() < 0 or ids.max() >= self.config.vocab_size:
            bad = int(ids.min()) if ids.min() < 0 else int(ids.max())
            raise ValueError(
                f"prompt token id {bad} is out of range for vocab_size {self.config.vocab_size}"
            )
        return ids

    def _check_cache(self, cache, prompt_len: int, max_new_tokens: int) -> None:
        """A cache for `generate` must be empty; one that must crop must be resettable."""
        check_cache(cache)
        held = int(cache.get_seq_length())
        if held:
            raise ValueError(
                f"generate needs an empty cache, but it already holds {held} positions; "
                "call cache.reset() before generating from a new prompt"
            )
        if prompt_len + max_new_tokens - 1 > self.config.block_size and max_new_tokens:
            check_cache(cache, ("update", "get_seq_length", "reset"))


def _resolve_do_sample(do_sample, greedy) -> bool:
    """`do_sample` from the two spellings; False (greedy, as Hugging Face) when neither."""
    for name, value in (("do_sample", do_sample), ("greedy", greedy)):
        if value is not None and not isinstance(value, (bool, np.bool_)):
            raise TypeError(f"{name} must be True or False, got {value!r}")
    if greedy is None:
        return bool(do_sample)
    if do_sample is not None and bool(do_sample) == bool(greedy):
        raise ValueError(
            f"do_sample={do_sample} contradicts greedy={greedy}: greedy=True means "
            "do_sample=False; pass only do_sample"
        )
    return not greedy


def _check_sampling(do_sample: bool, explicit: bool, temperature, top_k, top_p, seed):
    """Validated (temperature, top_k, top_p); errors say what to write instead.

    `explicit`: the caller chose greedy or sampling (do_sample= or greedy=), not the default.
    """
    if (
        isinstance(temperature, bool)
        or not isinstance(temperature, numbers.Real)
        or not (math.isfinite(temperature) and temperature >= 0)
    ):
        raise ValueError(f"temperature must be a finite number > 0, got {temperature!r}")
    if top_k is not None:
        top_k = _check_positive_int("top_k", top_k, minimum=0)  # 0: no top-k filter (HF)
    if top_p is not None and (
        isinstance(top_p, bool) or not isinstance(top_p, numbers.Real) or not 0 < top_p <= 1
    ):
        raise ValueError(f"top_p must be a probability in (0, 1], got {top_p!r}")
    if do_sample:
        if temperature == 0:
            raise ValueError(
                "temperature=0 with do_sample=True: sampling divides the logits by the "
                "temperature. For greedy decoding write do_sample=False (the default); to "
                "sample, use a temperature > 0 such as 0.7"
            )
        return float(temperature), top_k, top_p
    # greedy: sampling options would silently do nothing, so name them (temperature=0 and
    # top_k=1 mean greedy anyway; a seed is harmless once greedy was asked for explicitly)
    given = [f"temperature={temperature!r}"] if temperature not in (0, 1) else []
    given += [f"top_k={top_k!r}"] if top_k not in (None, 0, 1) else []
    given += [f"top_p={top_p!r}"] if top_p not in (None, 1) else []
    given += [f"seed={seed!r}"] if seed is not None and not explicit else []
    if given:
        raise ValueError(
            f"{', '.join(given)} only apply when sampling, but do_sample is False (greedy "
            "decoding, the default as in Hugging Face): write do_sample=True to sample, or "
            "drop them for greedy decoding"
        )
    return float(temperature), top_k, top_p
