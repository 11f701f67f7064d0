"""Plausible wrong versions of every solution cell of module 15 (acceleration).

Each entry is the reference solution cell with one mistake edited in (``_edit``: the exact text
that changes), so the given parts of the cell (validation, helpers) stay as the student has them.
"""

from wrong_versions.runner import WrongVersion, module_cells

_CELLS = {c.grade_id: c.body for c in module_cells("15_acceleration") if c.is_solution}


def _edit(exercise: str, name: str, *pairs: tuple[str, str]) -> WrongVersion:
    """The reference cell of ``exercise`` with each ``old`` replaced by ``new``."""
    source = _CELLS[exercise]
    for old, new in pairs:
        if old not in source:
            raise ValueError(f"{exercise}: {old!r} is not in the reference cell")
        source = source.replace(old, new)
    return WrongVersion(exercise, name, source)


_NAIVE_LOOPS = """    m, k = a.shape
    n = b.shape[1]
    a_rows, b_rows = a.tolist(), b.tolist()
    out = [[0] * n for _ in range(m)]
    for i in range(m):
        a_row, out_row = a_rows[i], out[i]
        for j in range(n):
            s = 0
            for p in range(k):
                s += a_row[p] * b_rows[p][j]
            out_row[j] = s
"""
_NAIVE_RETURN = "    return np.array(out).reshape(m, n).astype(np.result_type(a, b))"

WRONG = [
    # ---- gflops
    _edit("gflops", "counts n^3 FLOPs (no factor 2)",
          ("return 2.0 * n**3 / seconds / 1e9", "return n**3 / seconds / 1e9")),
    _edit("gflops", "n^2 instead of n^3",
          ("return 2.0 * n**3 / seconds", "return 2.0 * n**2 / seconds")),
    _edit("gflops", "MFLOP/s (1e6)", ("/ seconds / 1e9", "/ seconds / 1e6")),
    # ---- benchmark
    _edit("benchmark", "mean instead of median",
          ("return statistics.median(times)", "return statistics.fmean(times)")),
    _edit("benchmark", "minimum instead of median",
          ("return statistics.median(times)", "return min(times)")),
    _edit("benchmark", "times the warm-up calls too",
          ("""    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):""", """    times = []
    for _ in range(warmup + repeats):""")),
    _edit("benchmark", "no warm-up calls",
          ("""    for _ in range(warmup):
        fn()
""", "")),
    _edit("benchmark", "upper middle value for an even count",
          ("return statistics.median(times)", "return sorted(times)[len(times) // 2]")),
    _edit("benchmark", "returns the total time",
          ("return statistics.median(times)", "return float(sum(times))")),
    # ---- naive_matmul
    _edit("naive_matmul", "calls BLAS (known miss)",
          (_NAIVE_LOOPS, "    return a @ b\n")),
    _edit("naive_matmul", "np.dot per output element (two loops + numpy)",
          (_NAIVE_LOOPS, """    m, n = a.shape[0], b.shape[1]
    out = np.zeros((m, n), dtype=np.result_type(a, b))
    for i in range(m):
        for j in range(n):
            out[i, j] = np.dot(a[i, :], b[:, j])
    return out
""")),
    _edit("naive_matmul", "no cast to numpy's dtype",
          (_NAIVE_RETURN, "    return np.array(out, dtype=float).reshape(m, n)")),
    _edit("naive_matmul", "off-by-one inner loop",
          ("for p in range(k):", "for p in range(k - 1):")),
    _edit("naive_matmul", "no reshape (empty dimensions)",
          (_NAIVE_RETURN, "    return np.array(out).astype(np.result_type(a, b))")),
    # ---- blocked_matmul
    _edit("blocked_matmul", "drops the edge tiles",
          ("for i0 in range(0, m, block_size):",
           "for i0 in range(0, m - block_size + 1, block_size):"),
          ("for k0 in range(0, k, block_size):",
           "for k0 in range(0, k - block_size + 1, block_size):")),
    _edit("blocked_matmul", "overwrites instead of accumulating over k",
          ("c_tile += a[i0:i1, k0:k1] @ b[k0:k1, j0:j1]",
           "c_tile[...] = a[i0:i1, k0:k1] @ b[k0:k1, j0:j1]")),
    _edit("blocked_matmul", "ignores block_size (fixed 64)",
          ("    m, k = a.shape\n", "    m, k = a.shape\n    block_size = 64\n")),
    _edit("blocked_matmul", "float64 accumulator",
          ("out = np.zeros((m, n), dtype=np.result_type(a, b))", "out = np.zeros((m, n))")),
    _edit("blocked_matmul", "one product of the whole matrices",
          ("    m, k = a.shape\n", "    return a @ b\n    m, k = a.shape\n")),
    # ---- vectorized_matmul
    _edit("vectorized_matmul", "sums over the wrong axis",
          ("(a[i, :, None] * b).sum(axis=0)", "(a[i, :, None] * b).sum(axis=1)")),
    _edit("vectorized_matmul", "float64 output for every dtype",
          ("out = np.empty((a.shape[0], b.shape[1]), dtype=np.result_type(a, b))",
           "out = np.empty((a.shape[0], b.shape[1]))")),
    _edit("vectorized_matmul", "float32 output for every dtype",
          ("out = np.empty((a.shape[0], b.shape[1]), dtype=np.result_type(a, b))",
           "out = np.empty((a.shape[0], b.shape[1]), dtype=np.float32)")),
    # ---- broadcast_matmul
    _edit("broadcast_matmul", "ignores the kernel (calls np.matmul)",
          ("    if a.ndim == 2 and b.ndim == 2:",
           "    return np.matmul(a, b)\n    if a.ndim == 2 and b.ndim == 2:")),
    _edit("broadcast_matmul", "keeps the 1 of a 1-D operand",
          ("""    if a.ndim == 1:
        out = out[..., 0, :]  # (*batch, 1, N) -> (*batch, N)
    if b.ndim == 1:
        out = out[..., 0]  # (*batch, M, 1) -> (*batch, M)
""", "")),
    _edit("broadcast_matmul", "batch shape of a only (no broadcasting)",
          ("batch = np.broadcast_shapes(a2.shape[:-2], b2.shape[:-2])", "batch = a2.shape[:-2]")),
    _edit("broadcast_matmul", "float64 output for every dtype",
          ("dtype=np.result_type(a, b))", "dtype=np.float64)")),
    _edit("broadcast_matmul", "a 1-D second operand as a row",
          ("b2 = b[:, None] if b.ndim == 1 else b", "b2 = b[None, :] if b.ndim == 1 else b")),
    # ---- backend classes
    _edit("backend_classes", "NaiveBackend runs the vectorized kernel (copy-paste)",
          ("return broadcast_matmul(naive_matmul, a, b)",
           "return broadcast_matmul(vectorized_matmul, a, b)")),
    _edit("backend_classes", "BlockedBackend ignores its block_size",
          ("lambda x, y: blocked_matmul(x, y, self.block_size)", "blocked_matmul")),
    _edit("backend_classes", "kernels called without broadcast_matmul",
          ("return broadcast_matmul(naive_matmul, a, b)", "return naive_matmul(a, b)"),
          ("return broadcast_matmul(vectorized_matmul, a, b)", "return vectorized_matmul(a, b)")),
    _edit("backend_classes", "VectorizedBackend calls np.matmul",
          ("return broadcast_matmul(vectorized_matmul, a, b)", "return np.matmul(a, b)")),
    # ---- exact_in_float64
    _edit("exact_in_float64", "ignores negative entries",
          ("a_max = max(abs(int(a.max())), abs(int(a.min())))", "a_max = int(a.max())"),
          ("b_max = max(abs(int(b.max())), abs(int(b.min())))", "b_max = int(b.max())")),
    _edit("exact_in_float64", "< instead of <=",
          ("a_max * b_max <= 2**53", "a_max * b_max < 2**53")),
    _edit("exact_in_float64", "K = number of rows",
          ("return a.shape[-1] * a_max", "return a.shape[0] * a_max")),
    _edit("exact_in_float64", "bound in numpy integers (overflows)",
          ("a_max = max(abs(int(a.max())), abs(int(a.min())))", "a_max = np.abs(a).max()"),
          ("b_max = max(abs(int(b.max())), abs(int(b.min())))", "b_max = np.abs(b).max()"),
          ("return a.shape[-1] * a_max * b_max <= 2**53",
           "return bool(a.shape[-1] * a_max * b_max <= 2**53)")),
    _edit("exact_in_float64", "accepts floats",
          ("""    if a.dtype.kind not in "biu" or b.dtype.kind not in "biu":
        return False
""", "")),
    # ---- OptimizedBackend
    _edit("optimized_backend", "integer route not cast back",
          ("return np.matmul(a.astype(np.float64), b.astype(np.float64)).astype(out_dtype)",
           "return np.matmul(a.astype(np.float64), b.astype(np.float64))")),
    _edit("optimized_backend", "integer route without the exactness check",
          ("if exact_in_float64(a, b):", "if out_dtype.kind in 'biu':")),
    _edit("optimized_backend", "no rules: np.matmul for everything",
          ("        cfg = self.config\n",
           "        return np.matmul(a, b)\n        cfg = self.config\n")),
    _edit("optimized_backend", "fold drops the row dimension",
          ("return np.dot(rows, b).reshape(a.shape[:-1] + b.shape[1:])",
           "return np.dot(rows, b).reshape(a.shape[:-2] + b.shape[1:])")),
    _edit("optimized_backend", "float16 route returns float32",
          ("return np.matmul(a.astype(np.float32), b.astype(np.float32)).astype(out_dtype)",
           "return np.matmul(a.astype(np.float32), b.astype(np.float32))")),
]
