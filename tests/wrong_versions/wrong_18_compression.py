"""Plausible wrong versions of module 18's exercises (compression).

Each is the reference solution cell with a student's mistake edited in (``old`` -> ``new``
text edits, checked to apply), so the list reads as a set of small diffs.
"""

from wrong_versions.runner import WrongVersion, module_cells

MODULE = "18_compression"
_REFERENCE = {c.grade_id: c.body for c in module_cells(MODULE) if c.is_solution}


def _wrong(exercise: str, name: str, *edits: tuple[str, str]) -> WrongVersion:
    source = _REFERENCE[exercise]
    for old, new in edits:
        if old not in source:
            raise ValueError(f"{exercise} / {name}: {old!r} is not in the reference cell")
        source = source.replace(old, new)
    return WrongVersion(exercise, name, source)


WRONG = [
    # ---- 1. magnitude_mask
    _wrong("magnitude_mask", "signed instead of absolute magnitude",
           ("np.abs(w).astype(np.float64).ravel()", "w.astype(np.float64).ravel()")),
    _wrong("magnitude_mask", "threshold instead of an exact count (ties)",
           ("order = np.argsort(scores, kind=\"stable\")\n    keep = np.ones(w.size, dtype=bool)\n"
            "    keep[order[:k]] = False",
            "threshold = np.sort(scores)[k - 1] if k else -np.inf\n"
            "    keep = scores > threshold")),
    _wrong("magnitude_mask", "current mask not ranked first",
           ("scores[~mask.ravel()] = -1.0", "pass")),
    _wrong("magnitude_mask", "current mask ignored (revives)",
           ("scores[~mask.ravel()] = -1.0", "pass"),
           ("keep &= mask.ravel()", "pass")),
    # ---- 2. global_magnitude_masks
    _wrong("global_magnitude_masks", "same fraction per layer",
           ("keep = np.ones(total, dtype=bool)\n    keep[order[:k]] = False",
            "keep = np.ones(total, dtype=bool)\n"
            "    start = 0\n"
            "    for a in arrays:\n"
            "        part = np.argsort(scores[start:start + a.size], kind=\"stable\")\n"
            "        keep[start + part[:prune_count(amount, a.size)]] = False\n"
            "        start += a.size")),
    _wrong("global_magnitude_masks", "signed instead of absolute magnitude",
           ("np.abs(a).astype(np.float64).ravel()", "a.astype(np.float64).ravel()")),
    _wrong("global_magnitude_masks", "split at the sizes, not at the offsets",
           ("np.cumsum([a.size for a in arrays])[:-1]", "[a.size for a in arrays][:-1]")),
    _wrong("global_magnitude_masks", "already-pruned weights revive",
           ("scores[~old_keep] = -1.0", "pass"),
           ("keep &= old_keep", "pass")),
    # ---- 3. MaskedOptimizer.step
    _wrong("masked_optimizer", "no gradient masking (momentum leak)",
           ("        mask_gradients(self.model)\n", "")),
    _wrong("masked_optimizer", "masks not re-applied after the step",
           ("        apply_masks(self.model)\n", "")),
    _wrong("masked_optimizer", "schedule ignored",
           ("self.schedule is not None and", "False and")),
    _wrong("masked_optimizer", "schedule read one step late",
           ("self.schedule.is_pruning_step(self.step_count)",
            "self.schedule.is_pruning_step(self.step_count + 1)"),
           ("self.schedule(self.step_count)", "self.schedule(self.step_count + 1)")),
    # ---- 4. cubic_sparsity
    _wrong("cubic_sparsity", "begin_step ignored",
           ("(int(step) - int(begin_step)) // int(frequency)", "int(step) // int(frequency)")),
    _wrong("cubic_sparsity", "frequency ignored",
           ("(int(step) - int(begin_step)) // int(frequency)", "int(step) - int(begin_step)")),
    _wrong("cubic_sparsity", "no hold between pruning steps",
           ("(int(step) - int(begin_step)) // int(frequency)",
            "(int(step) - int(begin_step)) / int(frequency)")),
    _wrong("cubic_sparsity", "cubic of the progress instead of the remaining",
           ("s_f + (s_i - s_f) * (1.0 - progress) ** 3", "s_i + (s_f - s_i) * progress ** 3")),
    # ---- 5. unit_norms
    _wrong("unit_norms", "Linear: norms of the rows (inputs)",
           ("per_unit = w.T  # (out, in)", "per_unit = w")),
    _wrong("unit_norms", "L2 without the square root",
           ("np.sqrt((per_unit * per_unit).sum(axis=1))", "(per_unit * per_unit).sum(axis=1)")),
    _wrong("unit_norms", "L1 of the signed weights",
           ("np.abs(per_unit).sum(axis=1)", "per_unit.sum(axis=1)")),
    _wrong("unit_norms", "Conv2d: one norm per input channel",
           ("w.reshape(w.shape[0], -1)", "w.transpose(1, 0, 2, 3).reshape(w.shape[1], -1)")),
    # ---- 6. shrink_outputs / shrink_inputs
    _wrong("shrink_layers", "shrink_outputs forgets the bias",
           ("        new.bias.data[...] = layer.bias.data[keep]\n", "        pass\n")),
    _wrong("shrink_layers", "shrink_inputs forgets the bias",
           ("        new.bias.data[...] = layer.bias.data\n", "        pass\n")),
    _wrong("shrink_layers", "Conv2d inputs: filters kept instead of channels",
           ("new.weight.data[...] = layer.weight.data[:, keep]  # (out_c, kept, kh, kw)",
            "new.weight.data[...] = layer.weight.data[keep]")),
    _wrong("shrink_layers", "Linear inputs: columns kept instead of rows",
           ("new.weight.data[...] = layer.weight.data[keep, :]  # (kept, out)",
            "new.weight.data[...] = layer.weight.data[:, keep]")),
    # ---- 7. CSRMatrix.from_dense
    _wrong("csr_from_dense", "column-major order",
           ("r, c = np.nonzero(dense)", "c, r = np.nonzero(dense.T)")),
    _wrong("csr_from_dense", "row_ptr without the leading 0",
           ("np.concatenate([[0], np.cumsum(counts)])", "np.cumsum(counts)")),
    _wrong("csr_from_dense", "row_ptr dtype sized by the columns",
           ("ptr_dtype = index_dtype_for(len(values))", "ptr_dtype = col_dtype")),
    _wrong("csr_from_dense", "trailing empty rows dropped",
           ("np.bincount(r, minlength=rows)", "np.bincount(r)")),
    _wrong("csr_from_dense", "index_dtype ignored",
           ("if index_dtype is not None:", "if False:")),
    # ---- 8. csr_matmul
    _wrong("csr_matmul", "empty rows not skipped in reduceat",
           ("out[nonempty] = np.add.reduceat(prod, starts[nonempty], axis=0)",
            "out[:] = np.add.reduceat(prod, np.minimum(starts, a.nnz - 1), axis=0)")),
    _wrong("csr_matmul", "forms the dense matrix",
           ("prod = x2[a.col_indices] * a.values[:, None]  # (nnz, N)",
            "out[...] = a.to_dense() @ x2\n        return out[:, 0] if x.ndim == 1 else out")),
    _wrong("csr_matmul", "values not multiplied",
           ("prod = x2[a.col_indices] * a.values[:, None]", "prod = x2[a.col_indices] + 0")),
    _wrong("csr_matmul", "row of each value off by one (searchsorted side)",
           ("out[nonempty] = np.add.reduceat(prod, starts[nonempty], axis=0)",
            "row_of = np.searchsorted(a.row_ptr.astype(np.intp), np.arange(a.nnz)) - 1\n"
            "        np.add.at(out, row_of, prod)")),
    # ---- 9. distillation_loss
    _wrong("distillation_loss", "KL only, no T^2",
           ("soft = kl * (temperature * temperature)", "soft = kl")),
    _wrong("distillation_loss", "T instead of T^2",
           ("soft = kl * (temperature * temperature)", "soft = kl * temperature")),
    _wrong("distillation_loss", "hard loss on softened logits",
           ("hard = cross_entropy(s, targets)",
            "hard = cross_entropy(s * (1.0 / temperature), targets)")),
    _wrong("distillation_loss", "log of softmax (unstable)",
           ("(s * (1.0 / temperature)).log_softmax(axis=-1)",
            "(s * (1.0 / temperature)).softmax(axis=-1).log()"),
           ("log_p_teacher = _log_softmax_np(t / temperature)",
            "log_p_teacher = np.log(np.exp(_log_softmax_np(t / temperature)))")),
    _wrong("distillation_loss", "alpha on the wrong term",
           ("soft * alpha + hard * (1.0 - alpha)", "soft * (1.0 - alpha) + hard * alpha")),
    _wrong("distillation_loss", "KL summed over the batch",
           (".sum(axis=-1).mean()", ".sum()")),
]
