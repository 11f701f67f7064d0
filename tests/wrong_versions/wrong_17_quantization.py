"""Plausible wrong versions of module 17's exercises (issue #18).

Each is the reference solution cell with one mistake a student makes (the replaced line is shown
in ``old`` -> ``new``), so a change to the given part of a cell keeps this list in step: a
``old`` that no longer appears in the cell fails loudly here.
"""

from wrong_versions.runner import WrongVersion, module_cells

MODULE = "17_quantization"
_CELLS = {c.grade_id: c.body for c in module_cells(MODULE) if c.is_solution}


def _variant(exercise: str, name: str, *edits: tuple[str, str]) -> WrongVersion:
    source = _CELLS[exercise]
    for old, new in edits:
        if old not in source:
            raise ValueError(f"{exercise} / {name}: {old!r} is not in the reference cell")
        source = source.replace(old, new)
    return WrongVersion(exercise, name, source)


_ZP = "zero_point = np.clip(qmin - np.rint(lo / scale), qmin, qmax).astype(np.int32)"
_SCALE = "scale = np.where(step > 0, np.maximum(step, SCALE_FLOOR), 1.0).astype(np.float32)"
_Q = "q = np.rint(x / scale) + zero_point  # round half to even, then shift by the zero point"
_MA_LO = "self.min_val = self.min_val + c * (lo - self.min_val)"
_MA_HI = "self.max_val = self.max_val + c * (hi - self.max_val)"
_ACC = "acc = matmul(x_q.astype(np.int32), w_q.astype(np.int32))"
_CORR = "acc -= np.int32(x_zero_point) * w_q.sum(axis=0, dtype=np.int32)"
_REQ = "return acc.astype(np.float32) * np.asarray(multiplier, dtype=np.float32)"
_WIN = "win = sliding_window_view(x_q, (kh, kw), axis=(2, 3))[:, :, ::sh, ::sw]"
_COLS = "cols = win.transpose(0, 2, 3, 1, 4, 5)"

WRONG = [
    # ---- compute_qparams: the zero point rounded the wrong way, and the scale ----
    _variant("compute_qparams", "zero point rounded down (floor)",
             (_ZP, _ZP.replace("np.rint", "np.floor"))),
    _variant("compute_qparams", "zero point truncated towards zero",
             (_ZP, _ZP.replace("np.rint", "np.trunc"))),
    _variant("compute_qparams", "zero point rounded half away from zero",
             (_ZP, _ZP.replace("np.rint(lo / scale)",
                               "np.sign(lo / scale) * np.floor(np.abs(lo / scale) + 0.5)"))),
    _variant("compute_qparams", "zero point sign flipped",
             (_ZP, _ZP.replace("qmin - np.rint", "qmin + np.rint"))),
    _variant("compute_qparams", "zero point from the float64 step, no clip",
             (_ZP, "zero_point = (qmin - np.rint(lo / step)).astype(np.int32)")),
    _variant("compute_qparams", "affine grid divided into 256 steps",
             ("step = (hi - lo) / (qmax - qmin)", "step = (hi - lo) / (qmax - qmin + 1)")),
    _variant("compute_qparams", "symmetric scale from the width, not the largest magnitude",
             ("step = np.maximum(-lo, hi) / qmax", "step = (hi - lo) / (2 * qmax)")),
    _variant("compute_qparams", "zero width divides by zero",
             (_SCALE, "scale = np.maximum(step, SCALE_FLOOR * (step > 0)).astype(np.float32)")),
    # ---- quantize / dequantize ----
    _variant("quantize_dequantize", "round half away from zero",
             (_Q, "q = np.sign(x / scale) * np.floor(np.abs(x / scale) + 0.5) + zero_point")),
    _variant("quantize_dequantize", "zero point added before rounding",
             (_Q, "q = np.rint(x / scale + zero_point)")),
    _variant("quantize_dequantize", "no saturation: int8 wraps around",
             ("q = np.clip(q, qparams.qmin, qparams.qmax)",
              "q = np.where(np.isfinite(q), q, np.sign(q) * 127)  # wraps")),
    _variant("quantize_dequantize", "clamps to the 8-bit grid whatever the bits",
             ("q = np.clip(q, qparams.qmin, qparams.qmax)", "q = np.clip(q, -128, 127)")),
    _variant("quantize_dequantize", "dequantize ignores the zero point",
             ("return (q.astype(np.float32) - zero_point.astype(np.float32)) * scale",
              "return q.astype(np.float32) * scale")),
    _variant("quantize_dequantize", "dequantize returns float64",
             ("return (q.astype(np.float32) - zero_point.astype(np.float32)) * scale",
              "return (q - zero_point) * scale.astype(np.float64)")),
    # ---- min/max observers ----
    _variant("minmax_observers", "MinMaxObserver keeps only the last batch",
             ("self.min_val = np.minimum(self.min_val, lo)", "self.min_val = lo"),
             ("self.max_val = np.maximum(self.max_val, hi)", "self.max_val = hi")),
    _variant("minmax_observers", "moving average starts from zero",
             ("""            self.min_val, self.max_val = lo, hi
        else:
            c = self.averaging_constant""",
              """            self.min_val, self.max_val = np.zeros_like(lo), np.zeros_like(hi)
        if True:
            c = self.averaging_constant""")),
    _variant("minmax_observers", "moving average weights old and new the wrong way",
             (_MA_LO, "self.min_val = lo + c * (self.min_val - lo)"),
             (_MA_HI, "self.max_val = hi + c * (self.max_val - hi)")),
    _variant("minmax_observers", "moving average never advances",
             (_MA_LO, "self.min_val = self.min_val"), (_MA_HI, "self.max_val = self.max_val")),
    _variant("minmax_observers", "one range for all channels",
             ("lo, hi = rows.min(axis=1), rows.max(axis=1)  # (C,) extremes of this batch",
              "lo = np.full(rows.shape[0], rows.min())\n        hi = np.full(rows.shape[0], "
              "rows.max())")),
    # ---- percentile / MSE observers ----
    _variant("distribution_observers", "symmetric percentile from the affine ends",
             ("amax = np.percentile(np.abs(s), self.percentile, axis=1)  # (C,)",
              "amax = np.maximum(-np.percentile(s, 100.0 - self.percentile, axis=1), "
              "np.percentile(s, self.percentile, axis=1))")),
    _variant("distribution_observers", "lower end is the minimum",
             ("lo = np.percentile(s, 100.0 - self.percentile, axis=1)  # (C,)",
              "lo = s.min(axis=1)")),
    _variant("distribution_observers", "percentile over the whole tensor",
             ("hi = np.percentile(s, self.percentile, axis=1)",
              "hi = np.full(s.shape[0], np.percentile(s, self.percentile))")),
    _variant("distribution_observers", "MSE measured over all channels together",
             ("err = ((dequantize(quantize(s, qp), qp) - s) ** 2).mean(axis=1)  # (C,)",
              "err = np.full(lo.shape, ((dequantize(quantize(s, qp), qp) - s) ** 2).mean())")),
    _variant("distribution_observers", "MSE candidates leave out the full range",
             ("for frac in np.arange(n, 0, -1) / n:", "for frac in np.arange(n - 1, 0, -1) / n:")),
    # ---- integer kernels ----
    _variant("integer_kernels", "zero-point correction with the wrong sign",
             (_CORR, _CORR.replace("acc -=", "acc +="))),
    _variant("integer_kernels", "no zero-point correction",
             (_CORR, "pass  # the zero point cancels out")),
    _variant("integer_kernels", "accumulates in int16",
             (_ACC, "acc = matmul(x_q.astype(np.int16), w_q.astype(np.int16)).astype(np.int16)"),
             (_CORR, "acc -= np.int16(x_zero_point) * w_q.sum(axis=0, dtype=np.int16)\n"
                     "    acc = acc.astype(np.int32)")),
    _variant("integer_kernels", "requantize returns float64",
             (_REQ, "return acc * np.asarray(multiplier, dtype=np.float64)")),
    _variant("integer_kernels", "requantize scales rows instead of columns",
             (_REQ, "m = np.asarray(multiplier, dtype=np.float32)\n"
                    "    return acc.astype(np.float32) * (m.mean() if m.ndim else m)")),
    # ---- im2col_int8 ----
    _variant("im2col_int8", "pads with 0 instead of the zero point",
             ("constant_values=pad_value)", "constant_values=0)")),
    _variant("im2col_int8", "columns ordered (kh, kw, c)",
             (_COLS, "cols = win.transpose(0, 2, 3, 4, 5, 1)")),
    _variant("im2col_int8", "ignores the stride",
             (_WIN, "win = sliding_window_view(x_q, (kh, kw), axis=(2, 3))[:, :, :ho, :wo]")),
    # ---- int4 packing ----
    _variant("int4_packing", "high nibble first",
             ("return nibbles[0::2] | (nibbles[1::2] << 4)",
              "return (nibbles[0::2] << 4) | nibbles[1::2]")),
    _variant("int4_packing", "no sign extension",
             ("nib = np.where(nib >= 8, nib - 16, nib)  # sign-extend", "pass")),
    _variant("int4_packing", "unpack returns the padding code too",
             ("return nib[:count].astype(np.int8)", "return nib.astype(np.int8)")),
    # ---- size accounting ----
    _variant("size_accounting", "counts parameters only, not buffers",
             ("return int(sum(a.nbytes for a in model.state_dict().values()))",
              "return int(sum(p.data.nbytes for p in model.parameters()))")),
    _variant("size_accounting", "counts elements, not bytes",
             ("return int(sum(a.nbytes for a in model.state_dict().values()))",
              "return int(sum(a.size for a in model.state_dict().values()))")),
    _variant("size_accounting", "file size is the in-memory size (no headers)",
             ("data = buf.getvalue()", "data = bytes(state_nbytes(model))")),
    _variant("size_accounting", "compressed file",
             ("np.savez(buf, **model.state_dict())",
              "np.savez_compressed(buf, **model.state_dict())")),
]
