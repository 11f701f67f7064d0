"""Plausible wrong versions of module 16's exercises (issue #18).

Each one is the reference solution cell with one mistake edited in (``_edit``: the edit must
apply, so a changed reference fails loudly here instead of silently testing nothing).
"""

from wrong_versions.runner import WrongVersion, module_cells

_CELLS = {c.grade_id: c.body for c in module_cells("16_memory") if c.is_solution}


def _edit(exercise: str, name: str, *pairs: tuple[str, str]) -> WrongVersion:
    source = _CELLS[exercise]
    for old, new in pairs:
        if source.count(old) != 1:
            raise ValueError(f"{exercise} / {name}: {old!r} is not once in the reference cell")
        source = source.replace(old, new)
    return WrongVersion(exercise, name, source)


WRONG = [
    # 1. positions_processed
    _edit("positions_processed", "feeds the last new token back (t + n)",
          ("return int(prompt_len) + n - 1", "return int(prompt_len) + n")),
    _edit("positions_processed", "uncached sum off by one (j = 1..n)",
          ("n * (n - 1) // 2", "n * (n + 1) // 2")),
    _edit("positions_processed", "true division: returns a float",
          ("n * (n - 1) // 2", "n * (n - 1) / 2")),
    _edit("positions_processed", "zero new tokens not special-cased",
          ("    if n == 0:\n        return 0\n", "")),
    # 2. kv_cache_bytes
    _edit("kv_cache_bytes", "keys only (no factor 2)",
          ("return int(2 * n_layers", "return int(n_layers")),
    _edit("kv_cache_bytes", "ignores dtype (always 4 bytes)",
          ("itemsize = np.dtype(dtype).itemsize", "itemsize = 4")),
    _edit("kv_cache_bytes", "bits / 8 as a float",
          ("itemsize = np.dtype(dtype).itemsize", "itemsize = np.dtype(dtype).itemsize * 8 / 8"),
          ("return int(2 * n_layers * batch * n_heads * seq_len * head_dim * itemsize)",
           "return 2 * n_layers * batch * n_heads * seq_len * head_dim * itemsize")),
    # 3. KVCache
    _edit("kv_cache", "first update stores the caller's array (no copy)",
          ("self.keys[layer_idx] = k.copy()", "self.keys[layer_idx] = k"),
          ("self.values[layer_idx] = v.copy()", "self.values[layer_idx] = v")),
    _edit("kv_cache", "concatenates along the head dim (axis 3)",
          ("np.concatenate([self.keys[layer_idx], k], axis=2)",
           "np.concatenate([self.keys[layer_idx], k], axis=-1)")),
    _edit("kv_cache", "get_seq_length reads the heads axis",
          ("return 0 if k is None else int(k.shape[2])",
           "return 0 if k is None else int(k.shape[1])")),
    _edit("kv_cache", "get_seq_length never advances (always 0)",
          ("return 0 if k is None else int(k.shape[2])", "return 0")),
    _edit("kv_cache", "memory_bytes counts keys only",
          ("a.nbytes for a in self.keys + self.values", "a.nbytes for a in self.keys")),
    _edit("kv_cache", "returns only the new positions",
          ("return _like(self.keys[layer_idx], key), _like(self.values[layer_idx], value)",
           "return _like(k, key), _like(v, value)")),
    # 4. cached_attention / incremental_forward
    _edit("incremental_forward", "positions restart at 0 (cache position not used)",
          ("positions = np.arange(start, start + t_new)", "positions = np.arange(t_new)")),
    _edit("incremental_forward", "attends over the new keys only",
          ("return attn.attend(q, keys, values)", "return attn.attend(q, k, v)")),
    _edit("incremental_forward", "skips the final layer norm",
          ("return model.lm_head(model.ln_f(x))", "return model.lm_head(x)")),
    # 5. generate_cached
    _edit("generate_cached", "feeds the last new token back too",
          ("if pos + 1 < t + max_new_tokens:  # the last token is never fed back",
           "if True:")),
    _edit("generate_cached", "re-runs the whole context every step (no reuse)",
          ("logits = incremental_forward(model, out[:, pos : pos + 1], cache)",
           "cache.reset()\n                        "
           "logits = incremental_forward(model, out[:, : pos + 1], cache)")),
    _edit("generate_cached", "argmax over the first position's logits",
          ("out[:, pos] = logits.data[:, -1].argmax(axis=-1)",
           "out[:, pos] = logits.data[:, 0].argmax(axis=-1)")),
    # 6. StaticKVCache
    _edit("static_kv_cache", "does not advance its position",
          ("        self._lengths[layer_idx] = end\n", "")),
    _edit("static_kv_cache", "full check off by one (refuses to fill exactly)",
          ("if end > self.max_seq_len:", "if end >= self.max_seq_len:")),
    _edit("static_kv_cache", "update allocates new arrays (concatenates)",
          ("self.keys[layer_idx][:, :, start:end] = k  # write in place: no new array",
           "self.keys[layer_idx] = np.concatenate([self.keys[layer_idx][:, :, :start], k, "
           "self.keys[layer_idx][:, :, end:]], axis=2)")),
    _edit("static_kv_cache", "reset reallocates the buffers",
          ("self._lengths = [0] * self.n_layers",
           "self._lengths = [0] * self.n_layers\n"
           "        self.keys = [np.zeros_like(a) for a in self.keys]")),
    # 7. MemoryProfiler
    _edit("memory_profiler", "peak and current swapped",
          ("self.current_bytes, self.peak_bytes = tracemalloc.get_traced_memory()",
           "self.peak_bytes, self.current_bytes = tracemalloc.get_traced_memory()")),
    _edit("memory_profiler", "numpy_bytes without the domain filter",
          ("filter_traces([numpy_only])", "filter_traces([])")),
    _edit("memory_profiler", "on an error, returns before stopping tracemalloc",
          ("        try:\n            self.current_bytes",
           "        if exc_type is not None:\n            return False\n"
           "        try:\n            self.current_bytes")),
    _edit("memory_profiler", "swallows the block's exceptions",
          ("        return False\n        ### END SOLUTION",
           "        return True\n        ### END SOLUTION")),
    # 8. SlidingWindowKVCache
    _edit("sliding_window_kv_cache", "get_seq_length counts stored positions, not seen",
          ("return self._seen[layer_idx]",
           "k = self.keys[layer_idx]\n        return 0 if k is None else k.shape[2]")),
    _edit("sliding_window_kv_cache", "window off by one (keeps window - 1)",
          ("all_k[:, :, -self.window :].copy()", "all_k[:, :, -(self.window - 1) :].copy()"),
          ("all_v[:, :, -self.window :].copy()", "all_v[:, :, -(self.window - 1) :].copy()")),
    _edit("sliding_window_kv_cache", "returns the trimmed window, not kept + new",
          ("return _like(all_k, key), _like(all_v, value)",
           "return _like(self.keys[layer_idx], key), _like(self.values[layer_idx], value)")),
    _edit("sliding_window_kv_cache", "stores a view of the joined array",
          ("all_k[:, :, -self.window :].copy()", "all_k[:, :, -self.window :]"),
          ("all_v[:, :, -self.window :].copy()", "all_v[:, :, -self.window :]")),
]
