"""Judges of module 18's grade cells: the trusted half of each check (see tito/judging.py).

Instructor-only: never released, never inside a sandbox. Each grade cell's hidden probe drives
the student's code on the inputs drawn here (a fresh seed per grading) and sends back what it
produced; the judges below decide in the grading worker, from numpy references (and, for the
masked optimizer, a replay of the same training with the trusted ``tinytorch.core``).

Inputs are drawn so that the plausible mistakes fail: signed instead of absolute magnitudes
(weights of both signs, large negative ones), ties (integer-valued weights), current masks
sparser and denser than the target, a schedule with ``begin_step > 0`` and ``frequency > 1``
(steps between pruning steps and before the ramp), conv filters with ``in != out``, matrices
with empty first/last rows, more than 255 non-zeros with fewer than 256 columns, and
distillation at temperatures far from 1 with batches larger than one.

What stays forgeable (the probe runs in the student's process):

- Every output is what the student's process chose to report: code that recognises the probe
  could compute the answers some other way (e.g. with its own correct copy of the reference).
  The judge verifies the answers, not how they were obtained.
- ``csr_matmul`` "without forming the dense matrix" is only enforced by a shape whose dense
  form cannot be allocated (about 18 TB in float64: refused at once by Linux's default
  overcommit heuristic and by any address-space limit; where memory is overcommitted without
  limit, forming it runs into the cell's timeout instead). A kernel that loops over rows in
  Python is accepted (it is correct, only slow).
- ``MaskedOptimizer``: the judge checks the weights, momentum buffers and pruning calls the
  probe reports after training; a student class that special-cases the probe's stub schedule
  could report other calls than it would make in the notebook.
"""

from __future__ import annotations

import numpy as np

from tito.judging import Judges, expect

judges = Judges("18_compression")
RAISED = "__raised__"


# ---- shared helpers ---------------------------------------------------------------------------
def _weights(rng: np.random.Generator, shape, kind: str) -> np.ndarray:
    """Weights of one kind: continuous, ties (integer-valued, both signs) or float32."""
    if kind == "ties":
        return rng.integers(-3, 4, size=shape).astype(np.float64)
    w = rng.standard_normal(shape) * float(rng.uniform(0.05, 5))
    return w.astype(np.float32) if kind == "f32" else w


def _shape(rng: np.random.Generator) -> tuple:
    return tuple(int(s) for s in rng.integers(1, 9, size=int(rng.integers(1, 4))))


def _mask_of(outputs, name: str, shape, what: str) -> np.ndarray:
    m = expect.returned(outputs, name, what)
    expect.that(isinstance(m, np.ndarray), f"{what}: return a numpy array (the keep-mask)")
    expect.that(m.dtype == bool, f"{what}: the keep-mask must be bool, got {m.dtype}")
    expect.that(m.shape == tuple(shape), f"{what}: mask shape {m.shape}, weight {tuple(shape)}")
    return m


def _check_pruned_set(scores: np.ndarray, old_keep: np.ndarray, keep: np.ndarray, k: int,
                      what: str) -> None:
    """One flat keep-mask against the rules: old-pruned stay pruned, count max(k, old), and
    among the weights not pruned before, no pruned |w| above a kept |w|."""
    expect.that(not (keep & ~old_keep).any(),
                f"{what}: a weight the current mask prunes came back (must stay pruned)")
    want = max(k, int((~old_keep).sum()))
    got = int((~keep).sum())
    expect.that(got == want, f"{what}: pruned {got} weights; the count must be exact "
                             "(round(amount * size), or the current mask's if that is more)")
    new = ~keep & old_keep
    if new.any() and keep.any():
        expect.that(scores[new].max() <= scores[keep].min(),
                    f"{what}: a pruned weight has a larger magnitude |w| than a kept one")


# ---- 1. magnitude_mask -------------------------------------------------------------------------
@judges.inputs("magnitude_mask_prunes_the_smallest")
def _mask_inputs(rng: np.random.Generator) -> dict:
    out: dict = {}
    kinds = ["cont", "ties", "f32", "cont", "ties", "cont", "f32", "cont"]
    for k, kind in enumerate(kinds):
        out[f"w{k}"] = _weights(rng, _shape(rng), kind)
        out[f"amount{k}"] = float(rng.random())
    out["amount0"], out["amount1"] = 0.0, 1.0  # the edges
    # all magnitudes equal (both signs), the cut inside the tie: only an exact count passes
    k = len(kinds)
    out[f"w{k}"] = rng.choice([-1.0, 1.0], size=(int(rng.integers(2, 5)), 5)) * rng.uniform(0.1, 3)
    out[f"amount{k}"] = float(rng.uniform(0.25, 0.75))
    out["n_cases"] = k + 1
    n_masked = 5
    for j in range(n_masked):
        w = _weights(rng, _shape(rng) + (3,), "ties" if j % 2 else "cont")
        out[f"mw{j}"] = w
        out[f"mold{j}"] = rng.random(w.shape) >= rng.uniform(0.1, 0.7)
        out[f"mamount{j}"] = float(rng.random())
    out["n_masked"] = n_masked
    return out


@judges.judge("magnitude_mask_prunes_the_smallest")
def _mask_judge(inputs: dict, outputs: dict, seconds):
    for k in range(inputs["n_cases"]):
        w, amount = inputs[f"w{k}"], inputs[f"amount{k}"]
        what = f"magnitude_mask of a {w.dtype} weight of shape {w.shape} at amount {amount:.3f}"
        m = _mask_of(outputs, f"m{k}", w.shape, what)
        k_prune = int(round(amount * w.size))
        _check_pruned_set(np.abs(w.astype(np.float64)).ravel(), np.ones(w.size, bool), m.ravel(),
                          k_prune, what)
    for j in range(inputs["n_masked"]):
        w, old, amount = inputs[f"mw{j}"], inputs[f"mold{j}"], inputs[f"mamount{j}"]
        what = (f"magnitude_mask with a current mask ({int((~old).sum())} of {w.size} pruned) "
                f"at amount {amount:.3f}")
        m = _mask_of(outputs, f"mm{j}", w.shape, what)
        _check_pruned_set(np.abs(w).ravel(), old.ravel(), m.ravel(), int(round(amount * w.size)),
                          what)


# ---- 2. global_magnitude_masks -----------------------------------------------------------------
def _layer_set(rng: np.random.Generator) -> dict:
    n = int(rng.integers(2, 5))
    return {f"l{i}": _weights(rng, tuple(int(s) for s in rng.integers(1, 9, 2)),
                              "ties" if rng.random() < 0.3 else "cont")
            for i in range(n)}


@judges.inputs("global_pruning_ranks_across_layers")
def _global_inputs(rng: np.random.Generator) -> dict:
    cases = []
    for k in range(7):
        ws = _layer_set(rng)
        case = {"weights": ws, "amount": float(rng.random()), "masks": None}
        if k >= 4:  # current masks on some layers
            case["masks"] = {n: rng.random(w.shape) >= rng.uniform(0.1, 0.8)
                             for i, (n, w) in enumerate(ws.items()) if i % 2 == 0}
        cases.append(case)
    return {"cases": cases}


@judges.judge("global_pruning_ranks_across_layers")
def _global_judge(inputs: dict, outputs: dict, seconds):
    for k, case in enumerate(inputs["cases"]):
        ws, amount, old = case["weights"], case["amount"], case["masks"] or {}
        shapes = ", ".join(str(w.shape) for w in ws.values())
        what = (f"global_magnitude_masks of {len(ws)} layers ({shapes}) at amount {amount:.3f}"
                + (" with current masks" if old else ""))
        got = expect.returned(outputs, f"g{k}", what)
        expect.that(isinstance(got, dict) and list(got) == list(ws),
                    f"{what}: return a dict with one keep-mask per name, in the same order")
        keep = np.concatenate([_mask_of(got, n, w.shape, f"{what}, layer {n}").ravel()
                               for n, w in ws.items()])
        old_keep = np.concatenate([np.ones(w.size, bool) if n not in old else old[n].ravel()
                                   for n, w in ws.items()])
        scores = np.concatenate([np.abs(w).ravel() for w in ws.values()])
        total = sum(w.size for w in ws.values())
        _check_pruned_set(scores, old_keep, keep, int(round(amount * total)), what)


# ---- 3. MaskedOptimizer ------------------------------------------------------------------------
@judges.inputs("masked_weights_stay_zero_while_fine_tuning")
def _masked_inputs(rng: np.random.Generator) -> dict:
    sizes = [int(rng.integers(4, 9)), int(rng.integers(8, 17)), 3]
    state = {
        "0.weight": (rng.standard_normal(sizes[:2]) * 0.5).astype(np.float32),
        "0.bias": (rng.standard_normal(sizes[1]) * 0.1).astype(np.float32),
        "2.weight": (rng.standard_normal(sizes[1:]) * 0.5).astype(np.float32),
        "2.bias": (rng.standard_normal(sizes[2]) * 0.1).astype(np.float32),
    }
    masks = {n: rng.random(state[n].shape) >= rng.uniform(0.3, 0.8)
             for n in ("0.weight", "2.weight")}
    n_steps = int(rng.integers(8, 14))
    every = int(rng.integers(2, 4))
    start = int(rng.integers(1, 4))
    return {
        "sizes": sizes,
        "state": state,
        "masks": masks,
        "x": rng.standard_normal((24, sizes[0])).astype(np.float32),
        "y": rng.integers(0, 3, 24),
        "lr": float(rng.uniform(0.02, 0.1)),
        "momentum": float(rng.uniform(0.5, 0.95)),
        "pre_steps": int(rng.integers(2, 5)),  # Adam steps before pruning: moments not zero
        "steps": int(rng.integers(3, 7)),
        "sched_steps": n_steps,
        "sched_prune_at": [s for s in range(n_steps) if s >= start and (s - start) % every == 0],
        "sched_values": [round(float(v), 6) for v in np.sort(rng.random(n_steps))],
    }


def _replay(inputs: dict, kind: str) -> tuple[dict, list]:
    """The reference run of the probe's training, with the trusted tinytorch.core."""
    from tinytorch.core.losses import cross_entropy
    from tinytorch.core.nn import Linear, ReLU, Sequential
    from tinytorch.core.optim import SGD, Adam
    from tinytorch.core.tensor import Tensor

    s = inputs["sizes"]
    model = Sequential(Linear(s[0], s[1]), ReLU(), Linear(s[1], s[2]))
    model.load_state_dict({k: v.copy() for k, v in inputs["state"].items()})
    params = [model[0].weight, model[0].bias, model[2].weight, model[2].bias]
    masks = [inputs["masks"]["0.weight"], None, inputs["masks"]["2.weight"], None]
    x, y = Tensor(inputs["x"]), inputs["y"]

    def loss_grad():
        for p in params:
            p.grad = None
        cross_entropy(model(x), y).backward()

    if kind == "sgd":
        inner = SGD(params, lr=inputs["lr"], momentum=inputs["momentum"])
    else:
        inner = Adam(params, lr=inputs["lr"] / 5)
        for _ in range(inputs["pre_steps"]):
            loss_grad()
            inner.step()
    for p, m in zip(params, masks):
        if m is not None:
            p.data[~m] = 0
    for _ in range(inputs["steps"]):
        loss_grad()
        for p, m in zip(params, masks):
            if m is not None:
                p.grad = np.where(m, p.grad, 0).astype(p.grad.dtype)
        inner.step()
        for p, m in zip(params, masks):
            if m is not None:
                p.data[~m] = 0
    state = {n: p.data for n, p in zip(("0.weight", "0.bias", "2.weight", "2.bias"), params)}
    bufs = [inner.state.get(i, {}).get("momentum_buffer") for i in range(4)]
    return state, bufs


@judges.judge("masked_weights_stay_zero_while_fine_tuning")
def _masked_judge(inputs: dict, outputs: dict, seconds):
    for kind, label in (("sgd", "momentum SGD"), ("adam", "Adam after a few unpruned steps")):
        what = f"MaskedOptimizer wrapping {label}"
        got = expect.returned(outputs, kind, what)
        expect.that(isinstance(got, dict) and {"state", "step_count", "buffers"} <= set(got)
                    and isinstance(got["state"], dict)
                    and set(inputs["state"]) <= set(got["state"]),
                    f"{what}: the check could not collect the trained weights")
        expect.that(got["step_count"] == inputs["steps"],
                    f"{what}: step_count is {got['step_count']} after {inputs['steps']} steps")
        want_state, want_bufs = _replay(inputs, kind)
        for name, m in inputs["masks"].items():
            w = np.asarray(got["state"][name])
            expect.that(w.shape == m.shape and np.all(w[~m] == 0),
                        f"{what}: pruned weights of {name} are not zero after training "
                        "(re-apply the masks after the step)")
        for name, want in want_state.items():
            expect.array(got["state"], name, want, rtol=1e-4, atol=1e-5,
                         what=f"{what}: the trained {name}")
        if kind == "sgd":
            bufs = got.get("buffers")
            expect.that(isinstance(bufs, list) and len(bufs) == 4,
                        f"{what}: the check could not collect the momentum buffers")
            for i, name in ((0, "0.weight"), (2, "2.weight")):
                b = bufs[i]
                m = inputs["masks"][name]
                expect.that(isinstance(b, np.ndarray) and b.shape == m.shape,
                            f"{what}: no momentum buffer for {name}")
                expect.that(np.all(b[~m] == 0),
                            f"{what}: momentum builds up behind pruned weights of {name} "
                            "(zero their gradients before the step)")
                expect.array({"buf": b}, "buf", want_bufs[i], rtol=1e-4, atol=1e-5,
                             what=f"{what}: the momentum buffer of {name}")
    what = "MaskedOptimizer following a schedule"
    calls = expect.returned(outputs, "sched_calls", what)
    want = [[s, inputs["sched_values"][s]] for s in inputs["sched_prune_at"]]
    expect.that(isinstance(calls, list), f"{what}: the check could not collect the prune calls")
    expect.that(all(isinstance(c, list) and len(c) == 2 for c in calls),
                f"{what}: the check could not collect the prune calls")
    got_steps = [c[0] for c in calls]
    expect.that(got_steps == [c[0] for c in want],
                f"{what}: pruned at steps {got_steps}; prune exactly when "
                "schedule.is_pruning_step(step_count) is true, before the step")
    expect.that(all(isinstance(c[1], (int, float)) and abs(c[1] - w[1]) < 1e-9
                    for c, w in zip(calls, want)),
                f"{what}: pruned to the wrong sparsity; use schedule(step_count)")


# ---- 4. cubic_sparsity -------------------------------------------------------------------------
def _cubic(t, s_f, s_i, t0, n, dt) -> float:
    if t < t0:
        return 0.0
    last = min((t - t0) // dt, n)
    return s_f + (s_i - s_f) * (1 - last / n) ** 3


@judges.inputs("cubic_schedule_follows_zhu_gupta")
def _cubic_inputs(rng: np.random.Generator) -> dict:
    cases = []
    for k in range(12):
        s_f = round(float(rng.uniform(0.1, 0.99)), 6)
        s_i = round(float(rng.uniform(0, s_f)), 6) if k % 3 else 0.0
        t0 = int(rng.integers(1, 40)) if k % 4 else 0
        n = int(rng.integers(1, 12))
        dt = int(rng.integers(2, 7)) if k % 5 else 1
        end = t0 + n * dt
        steps = sorted({int(s) for s in rng.integers(0, end + 20, size=12)}
                       | {t0, t0 + dt, t0 + dt + 1, end, end + 1, max(t0 - 1, 0)})
        cases.append({"s_f": s_f, "s_i": s_i, "t0": t0, "n": n, "dt": dt, "steps": steps})
    return {"cases": cases}


@judges.judge("cubic_schedule_follows_zhu_gupta")
def _cubic_judge(inputs: dict, outputs: dict, seconds):
    for k, c in enumerate(inputs["cases"]):
        got = expect.returned(outputs, f"c{k}", "cubic_sparsity")
        expect.that(isinstance(got, list) and len(got) == len(c["steps"]),
                    "cubic_sparsity: the check could not collect the values")
        for t, v in zip(c["steps"], got):
            what = (f"cubic_sparsity at step {t} (begin_step={c['t0']}, n_prunes={c['n']}, "
                    f"frequency={c['dt']}, initial_sparsity {'> 0' if c['s_i'] else '0'})")
            expect.that(isinstance(v, (int, float)) and not isinstance(v, bool),
                        f"{what}: return a float")
            want = _cubic(t, c["s_f"], c["s_i"], c["t0"], c["n"], c["dt"])
            expect.that(abs(v - want) < 1e-9, f"{what}: wrong value {v!r}")


# ---- 5. unit_norms -----------------------------------------------------------------------------
@judges.inputs("unit_norms_score_neurons_and_filters")
def _norms_inputs(rng: np.random.Generator) -> dict:
    n_in, n_out = (int(v) for v in rng.choice(np.arange(2, 12), 2, replace=False))
    c_in, c_out = (int(v) for v in rng.choice(np.arange(1, 7), 2, replace=False))
    k = int(rng.integers(1, 4))
    return {
        "lin": rng.standard_normal((n_in, n_out)).astype(np.float32),
        "conv": rng.standard_normal((c_out, c_in, k, k)).astype(np.float32),
    }


@judges.judge("unit_norms_score_neurons_and_filters")
def _norms_judge(inputs: dict, outputs: dict, seconds):
    lin = inputs["lin"].astype(np.float64)
    conv = inputs["conv"].astype(np.float64).reshape(inputs["conv"].shape[0], -1)
    refs = {"lin": lin.T, "conv": conv}
    for name, per_unit in refs.items():
        kind = ("Linear(in, out) with in != out" if name == "lin"
                else "Conv2d with in_channels != out_channels")
        expect.array(outputs, f"{name}_l1", np.abs(per_unit).sum(axis=1), rtol=1e-5, atol=1e-6,
                     what=f"unit_norms(l1) of a {kind}")
        expect.array(outputs, f"{name}_l2", np.sqrt((per_unit**2).sum(axis=1)), rtol=1e-5,
                     atol=1e-6, what=f"unit_norms(l2) of a {kind}")


# ---- 6. shrink_outputs / shrink_inputs ---------------------------------------------------------
def _keep(rng: np.random.Generator, n: int) -> list:
    size = int(rng.integers(1, n)) if n > 1 else 1
    return sorted(int(i) for i in rng.choice(n, size, replace=False))


@judges.inputs("structured_pruning_shrinks_the_next_layer")
def _shrink_inputs(rng: np.random.Generator) -> dict:
    n_in, n_out = int(rng.integers(3, 9)), int(rng.integers(3, 9))
    c_in, c_out, k = int(rng.integers(2, 6)), int(rng.integers(2, 6)), int(rng.integers(1, 4))
    return {
        "lin_w": rng.standard_normal((n_in, n_out)).astype(np.float32),
        "lin_b": rng.standard_normal(n_out).astype(np.float32),
        "lin_keep_out": _keep(rng, n_out),
        "lin_keep_in": _keep(rng, n_in),
        "conv_w": rng.standard_normal((c_out, c_in, k, k)).astype(np.float32),
        "conv_b": rng.standard_normal(c_out).astype(np.float32),
        "conv_stride": int(rng.integers(1, 3)),
        "conv_padding": int(rng.integers(0, 2)),
        "conv_keep_out": _keep(rng, c_out),
        "conv_keep_in": _keep(rng, c_in),
    }


@judges.judge("structured_pruning_shrinks_the_next_layer")
def _shrink_judge(inputs: dict, outputs: dict, seconds):
    for kind in ("lin", "conv"):
        w, b = inputs[f"{kind}_w"], inputs[f"{kind}_b"]
        layer = "Linear" if kind == "lin" else "Conv2d"
        for side in ("out", "in"):
            keep = np.asarray(inputs[f"{kind}_keep_{side}"])
            fn = "shrink_outputs" if side == "out" else "shrink_inputs"
            what = f"{fn} of a {layer} {w.shape} keeping {len(keep)} {side}puts"
            got = expect.returned(outputs, f"{kind}_{side}", what)
            expect.that(isinstance(got, dict) and {"weight", "bias", "settings", "same_object",
                                                   "orig_weight"} <= set(got),
                        f"{what}: return a new Linear/Conv2d (the check found no weight)")
            expect.that(got["same_object"] is False,
                        f"{what}: return a NEW layer, not the one passed in")
            if kind == "lin":
                want_w = w[:, keep] if side == "out" else w[keep, :]
            else:
                want_w = w[keep] if side == "out" else w[:, keep]
            want_b = b[keep] if side == "out" else b
            expect.array(got, "weight", want_w, rtol=0, atol=0, what=f"{what}: its weight")
            expect.array(got, "bias", want_b, rtol=0, atol=0, what=f"{what}: its bias")
            if kind == "conv":
                expect.that(got["settings"] == [[inputs["conv_stride"]] * 2,
                                                [inputs["conv_padding"]] * 2],
                            f"{what}: keep the stride and padding of the original Conv2d")
            expect.array(got, "orig_weight", w, rtol=0, atol=0,
                         what=f"{what}: the original layer must be left untouched")
        expect.that(outputs.get(f"{kind}_nobias") is None,
                    f"a {layer} without bias must shrink into one without bias")


# ---- 7. CSRMatrix.from_dense -------------------------------------------------------------------
def _sparse_dense(rng: np.random.Generator, rows: int, cols: int, dtype) -> np.ndarray:
    d = rng.standard_normal((rows, cols)).astype(dtype)
    d[rng.random((rows, cols)) < rng.uniform(0.2, 0.95)] = 0
    d[0] = 0  # first and last rows empty
    d[-1] = 0
    return d


def _csr_ref(dense: np.ndarray):
    r, c = np.nonzero(dense)
    ptr = np.concatenate([[0], np.cumsum(np.bincount(r, minlength=dense.shape[0]))])
    return dense[r, c], c, ptr


def _smallest_uint(v: int) -> np.dtype:
    for dt in (np.uint8, np.uint16, np.uint32, np.uint64):
        if v <= np.iinfo(dt).max:
            return np.dtype(dt)
    raise ValueError(v)


@judges.inputs("csr_format_and_size")
def _csr_inputs(rng: np.random.Generator) -> dict:
    mats = [
        _sparse_dense(rng, int(rng.integers(3, 12)), int(rng.integers(2, 12)), np.float32),
        _sparse_dense(rng, int(rng.integers(3, 40)), int(rng.integers(257, 400)), np.float64),
        np.ones((int(rng.integers(20, 40)), int(rng.integers(20, 60))), np.float32),  # nnz > 255
        _sparse_dense(rng, int(rng.integers(3, 9)), int(rng.integers(2, 9)), np.float64),
        np.zeros((int(rng.integers(1, 5)), int(rng.integers(1, 5))), np.float32),
    ]
    mats[2][1, :] = 0
    return {"mats": mats, "forced": ["int32", "uint16", "int64"][int(rng.integers(0, 3))]}


@judges.judge("csr_format_and_size")
def _csr_judge(inputs: dict, outputs: dict, seconds):
    cases = [(k, d, None) for k, d in enumerate(inputs["mats"])]
    cases.append((len(cases), inputs["mats"][0], inputs["forced"]))
    for k, dense, forced in cases:
        rows, cols = dense.shape
        nnz = int(np.count_nonzero(dense))
        what = (f"CSRMatrix.from_dense of a {dense.dtype} {dense.shape} matrix with {nnz} "
                "non-zeros" + (f", index_dtype={forced}" if forced else ""))
        got = expect.returned(outputs, f"csr{k}", what)
        expect.that(isinstance(got, dict) and {"values", "col_indices", "row_ptr", "shape"}
                    <= set(got), f"{what}: the check could not collect the three arrays")
        vals, col, ptr = _csr_ref(dense)
        col_dt = np.dtype(forced) if forced else _smallest_uint(max(cols - 1, 0))
        ptr_dt = np.dtype(forced) if forced else _smallest_uint(nnz)
        expect.that(got["shape"] == [rows, cols], f"{what}: shape must be (rows, cols)")
        expect.array(got, "values", vals, dtype=dense.dtype, rtol=0, atol=0,
                     what=f"{what}: values (row by row, in the matrix's dtype)")
        expect.array(got, "col_indices", col, dtype=col_dt, rtol=0, atol=0,
                     what=f"{what}: col_indices (and their dtype)")
        expect.array(got, "row_ptr", ptr, dtype=ptr_dt, rtol=0, atol=0,
                     what=f"{what}: row_ptr (rows + 1 entries; and its dtype)")


# ---- 8. csr_matmul -----------------------------------------------------------------------------
@judges.inputs("csr_matmul_matches_dense")
def _matmul_inputs(rng: np.random.Generator) -> dict:
    cases = []
    for k in range(6):
        rows, cols, n = int(rng.integers(2, 40)), int(rng.integers(1, 40)), int(rng.integers(1, 6))
        dense = _sparse_dense(rng, rows, cols, np.float32 if k % 2 else np.float64)
        dense[rng.integers(0, rows)] = 0
        vals, col, ptr = _csr_ref(dense)
        x = rng.standard_normal((cols, n) if k != 3 else (cols,))
        cases.append({"values": vals, "col": col.astype(_smallest_uint(max(cols - 1, 0))),
                      "ptr": ptr.astype(_smallest_uint(len(vals))), "shape": [rows, cols],
                      "x": x.astype(np.float32) if k == 1 else x})
    empty = np.zeros((int(rng.integers(1, 6)), 3))
    cases.append({"values": np.zeros(0), "col": np.zeros(0, np.uint8),
                  "ptr": np.zeros(empty.shape[0] + 1, np.uint8), "shape": list(empty.shape),
                  "x": rng.standard_normal((3, 2))})
    # too large to hold densely (~18 TB in float64): only a kernel that never forms the dense
    # matrix can answer
    big = int(rng.integers(1_400_000, 1_600_000))
    return {
        "cases": cases,
        "big": {"n": big, "rows": np.sort(rng.choice(big, 6, replace=False)).tolist(),
                "cols": rng.choice(big, 6, replace=False).tolist(),
                "values": rng.standard_normal(6).tolist(),
                "xvals": rng.standard_normal(6).tolist()},
    }


def _dense_of(c: dict) -> np.ndarray:
    rows, cols = c["shape"]
    out = np.zeros((rows, cols), dtype=c["values"].dtype)
    row_of = np.repeat(np.arange(rows), np.diff(c["ptr"].astype(np.int64)))
    out[row_of, c["col"].astype(np.int64)] = c["values"]
    return out


@judges.judge("csr_matmul_matches_dense")
def _matmul_judge(inputs: dict, outputs: dict, seconds):
    for k, c in enumerate(inputs["cases"]):
        dense, x = _dense_of(c), c["x"]
        what = (f"csr_matmul of a {tuple(c['shape'])} CSR matrix with empty rows "
                f"({len(c['values'])} non-zeros) and x of shape {x.shape}")
        dtype = np.result_type(c["values"], x)
        want = dense.astype(np.float64) @ x.astype(np.float64)
        tol = 1e-4 if dtype == np.float32 else 1e-9  # float32 sums in any order
        expect.array(outputs, f"out{k}", want, dtype=dtype, rtol=tol, atol=tol, what=what)
    b = inputs["big"]
    what = (f"csr_matmul of a ({b['n']}, {b['n']}) CSR matrix with 6 non-zeros (too large to "
            "form densely: never build the dense matrix)")
    got = expect.returned(outputs, "big", what)
    expect.that(isinstance(got, dict) and {"shape", "at_rows", "nonzero"} <= set(got),
                f"{what}: the check could not collect the product")
    expect.that(got["shape"] == [b["n"]], f"{what}: a vector x must give a vector of n rows")
    want = np.asarray(b["values"]) * np.asarray(b["xvals"])
    expect.array(got, "at_rows", want, rtol=1e-12, atol=1e-12, what=f"{what}: the rows it fills")
    expect.that(got["nonzero"] == 6, f"{what}: other rows than the 6 filled ones are not 0")


# ---- 9. distillation_loss ----------------------------------------------------------------------
def _lsm(z: np.ndarray) -> np.ndarray:
    z = z - z.max(axis=1, keepdims=True)
    return z - np.log(np.exp(z).sum(axis=1, keepdims=True))


@judges.inputs("distillation_loss_matches_direct_computation")
def _distill_inputs(rng: np.random.Generator) -> dict:
    cases = []
    temps = [float(rng.uniform(2, 8)), float(rng.uniform(0.3, 0.8)), float(rng.uniform(2, 8)),
             float(rng.uniform(1.5, 5)), float(rng.uniform(3, 9))]
    for k, temp in enumerate(temps):
        n, c = int(rng.integers(2, 9)), int(rng.integers(2, 12))
        cases.append({
            "s": (rng.standard_normal((n, c)) * 3).astype(np.float32),
            "t": rng.standard_normal((n, c)) * 3,
            "y": rng.integers(0, c, n),
            "T": round(temp, 4),
            "alpha": [1.0, 0.0, round(float(rng.uniform(0.1, 0.9)), 4)][k % 3],
        })
    # both signs in every row: a spread over 1000 underflows exp even in float64 (log(softmax)
    # gives -inf), whatever the draw
    signs = np.array([rng.permutation([1, -1, 1, -1]) for _ in range(2)])
    huge = signs * rng.uniform(500, 1000, size=(2, 4))
    return {"cases": cases, "huge_s": huge, "huge_t": -huge, "huge_y": rng.integers(0, 4, 2)}


@judges.judge("distillation_loss_matches_direct_computation")
def _distill_judge(inputs: dict, outputs: dict, seconds):
    for k, c in enumerate(inputs["cases"]):
        sl, tl, y, temp, a = (c["s"].astype(np.float64), c["t"], c["y"], c["T"], c["alpha"])
        n, ncls = sl.shape
        what = (f"distillation_loss of a ({n}, {ncls}) batch at temperature {temp:g}, "
                f"alpha {a:g}")
        got = expect.returned(outputs, f"d{k}", what)
        expect.that(isinstance(got, dict) and got.get("scalar") is True,
                    f"{what}: return a scalar Tensor (one element)")
        pt = np.exp(_lsm(tl / temp))
        kl = np.mean(np.sum(pt * (_lsm(tl / temp) - _lsm(sl / temp)), axis=1))
        ce = -np.mean(_lsm(sl)[np.arange(n), y])
        want = a * temp**2 * kl + (1 - a) * ce
        expect.value(got, "loss", want, rel=1e-4, abs=1e-5, what=f"{what}: the loss")
        ps = np.exp(_lsm(sl / temp))
        grad = a * temp * (ps - pt) / n + (1 - a) * (np.exp(_lsm(sl)) - np.eye(ncls)[y]) / n
        expect.array(got, "grad", grad, rtol=1e-3, atol=1e-5,
                     what=f"{what}: the gradient with respect to the student's logits")
    expect.that(outputs.get("teacher_grad_is_none") is True,
                "distillation_loss: a gradient flowed into the teacher's logits "
                "(the teacher is a constant)")
    huge = expect.returned(outputs, "huge", "distillation_loss of logits around +-1000")
    expect.that(isinstance(huge, float) and np.isfinite(huge),
                "distillation_loss of logits around +-1000 is not finite: use log-softmax, "
                "never log(softmax)")
