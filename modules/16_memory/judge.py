"""Judges of module 16's grade cells: the trusted half of each check (see tito/judging.py).

Instructor-only: never released, never inside a sandbox. Each grade cell's hidden probe drives
the student's code on the inputs drawn here (a fresh seed per grading) and sends back what it
produced: counts, cache contents and positions after every update, logits, generated ids,
tracemalloc numbers. The judges below rebuild every reference here, in the grading worker:
the same small float64 models from their specs (the project's own `tinytorch.core`), an
uncached forward / generate, a reference sliding-window cache, and the byte counts.

The checks of later exercises never go through earlier ones: the probes of exercises 4-5 use
the core's preallocated cache (`LibraryCache` in the notebook) and the library forward, and
the memory checks measure with `tracemalloc` directly (not the student's `MemoryProfiler`).

What stays forgeable (the probe runs in the student's process, so its evidence is an answer):

- behaviour seen only through objects the student's code can reach: `generate_cached`'s
  "one prefill, then one position per step" is read from the update sizes a counting cache
  logs in the student's process; a notebook that patches that cache can fake the log (but the
  ids and the cache's final length must still be right);
- `np.shares_memory` / buffer identity of `StaticKVCache` and `SlidingWindowKVCache` are
  computed in the student's process (the returned values themselves are compared here);
- the `tracemalloc` numbers (profiler, static-cache peak, sliding-window flat memory) are
  measured in the student's process: code that knows the checks can report made-up numbers
  in the right ranges (the sizes are drawn fresh, so it must read them from the probe);
- no judge here uses the cell time measured outside (`seconds`): a cached and an uncached
  generation differ by a few x only at lengths that cost seconds, and on a shared 2-core
  machine a time threshold would fail honest notebooks; the update-size log above is the
  evidence instead.
"""

import numpy as np

from tinytorch.core.tensor import default_dtype, no_grad
from tinytorch.core.transformer import GPTConfig, TinyGPT
from tito.judging import Judges, expect

judges = Judges("16_memory")

_DTYPES = ["float32", "float64", "float16", "int8", "uint8", "int16"]


# ---- shared helpers (the notebook's `model_from_spec` builds the same models) -----------------
def _spec(rng: np.random.Generator, block_size: int | None = None) -> dict:
    h, d = int(rng.integers(1, 4)), int(rng.integers(1, 5))
    return {
        "vocab_size": int(rng.integers(3, 25)),
        "block_size": int(block_size or rng.integers(8, 20)),
        "n_layer": int(rng.integers(1, 4)),
        "n_head": h,
        "d_model": h * d,
        "seed": int(rng.integers(10_000)),
    }


def _model(spec: dict) -> TinyGPT:
    """The model a spec names: float64, weights scaled by 20 (no near-ties in an argmax)."""
    cfg = GPTConfig(**{k: v for k, v in spec.items() if k != "seed"})
    with default_dtype(np.float64):
        model = TinyGPT(cfg, seed=spec["seed"])
    for p in model.parameters():
        p.data *= 20.0
    model.eval()
    return model


def _int(got, what: str) -> int:
    """An exact integer answer ([value, type name] from the probe), else AssertionError."""
    if not (isinstance(got, list) and len(got) == 2):
        raise AssertionError(f"{what}: the check could not read the result")
    value, kind = got
    expect.that(kind == "int", f"{what} should return a Python int, got {kind}")
    value = np.asarray(value)
    expect.that(value.shape == () and value.dtype.kind in "iu", f"{what}: not an integer")
    return int(value)


def _arrays(outputs: dict, name: str, n: int, what: str) -> list:
    got = expect.returned(outputs, name, what)
    expect.that(
        isinstance(got, list) and len(got) == n and all(isinstance(a, np.ndarray) for a in got),
        f"{what}: expected {n} arrays",
    )
    return got


def _same(got: np.ndarray, want: np.ndarray, what: str) -> None:
    expect.that(got.shape == want.shape, f"{what}: shape {got.shape}, expected {want.shape}")
    expect.that(got.dtype == want.dtype, f"{what}: dtype {got.dtype}, expected {want.dtype}")
    expect.that(np.array_equal(got, want), f"{what}: wrong values")


# ---- 1. positions_processed ---------------------------------------------------------------------
@judges.inputs("positions_processed_counts")
def _positions_inputs(rng: np.random.Generator) -> dict:
    pairs = [[int(rng.integers(1, 200)), int(rng.integers(0, 300))] for _ in range(12)]
    pairs += [[int(rng.integers(2, 50)), 0], [int(rng.integers(1, 50)), 1],  # t >= 2: t - 1 > 0
              [int(rng.integers(1, 50)), 2], [1, 0], [1, int(rng.integers(1, 9))]]
    return {"pairs": pairs, "bad": [[-1, 3], [4, -2], [2.5, 3], [0, 3]]}


@judges.judge("positions_processed_counts")
def _positions_judge(inputs: dict, outputs: dict, seconds):
    for k, (t, n) in enumerate(inputs["pairs"]):
        uncached = sum(t + j for j in range(n))
        cached = t + n - 1 if n else 0
        for c, want in ((0, uncached), (1, cached)):
            what = f"positions_processed({t}, {n}, use_cache={bool(c)})"
            got = _int(expect.returned(outputs, f"p{k}_{c}", what), what)
            expect.that(got == want, f"{what} is wrong ({got})")
    for k, (t, n) in enumerate(inputs["bad"]):
        expect.raised(outputs, f"bad{k}", ValueError, what=f"positions_processed({t!r}, {n!r})")


# ---- 2. kv_cache_bytes ---------------------------------------------------------------------------
@judges.inputs("kv_cache_bytes_formula")
def _bytes_inputs(rng: np.random.Generator) -> dict:
    cases = []
    for _ in range(16):
        dims = [int(x) for x in rng.integers(1, 9, size=5)]
        cases.append({"dims": dims, "dtype": _DTYPES[int(rng.integers(len(_DTYPES)))],
                      "as_type": bool(rng.integers(2))})
    cases.append({"dims": [int(rng.integers(1, 4)), 2, 3, 0, 5], "dtype": "float32",
                  "as_type": True})  # an empty cache
    cases.append({"dims": [32, int(rng.integers(1, 64)), 32, 4096, 128], "dtype": "float16",
                  "as_type": True})  # a 7B-class shape: far past 2**31 bytes
    bad = [[0, 1, 1, 1, 1], [1, -1, 1, 1, 1], [1, 1, 1, -1, 1], [1, 1, 1.5, 1, 1]]
    return {"cases": cases, "bad": bad}


@judges.judge("kv_cache_bytes_formula")
def _bytes_judge(inputs: dict, outputs: dict, seconds):
    for k, case in enumerate(inputs["cases"]):
        dims, dt = case["dims"], case["dtype"]
        want = 2 * int(np.prod(dims, dtype=object)) * np.dtype(dt).itemsize
        shown = "np." + dt if case["as_type"] else repr(dt)
        what = f"kv_cache_bytes{tuple(dims)} with dtype={shown}"
        got = _int(expect.returned(outputs, f"b{k}", what), what)
        expect.that(got == want, f"{what} is wrong ({got})")
    for k, dims in enumerate(inputs["bad"]):
        expect.raised(outputs, f"bad{k}", ValueError, what=f"kv_cache_bytes{tuple(dims)}")


# ---- 3. KVCache ----------------------------------------------------------------------------------
@judges.inputs("kv_cache_appends")
def _kv_inputs(rng: np.random.Generator) -> dict:
    out: dict = {"n_trials": 4}
    for i in range(4):
        n_layers = int(rng.integers(1, 4))
        b, h, d = (int(x) for x in rng.integers(1, 4, size=3))
        dt = ["float32", "float64"][i % 2]
        ops = [[int(rng.integers(n_layers)), int(rng.integers(1, 4))]
               for _ in range(int(rng.integers(5, 9)))]  # [layer, new positions] per update
        total = sum(t for _, t in ops)
        out[f"trial{i}"] = {"n_layers": n_layers, "ops": ops}
        # every update's key and value, side by side along T: update j takes the next t
        out[f"k{i}"] = rng.standard_normal((b, h, total, d)).astype(dt)
        out[f"v{i}"] = rng.standard_normal((b, h, total, d)).astype(dt)
    b2 = int(rng.integers(2, 6))
    out["first"] = rng.standard_normal((1, 2, 3, 2))
    out["after_reset"] = rng.standard_normal((b2, 2, 1, 2))
    out["t64"] = rng.standard_normal((1, 2, int(rng.integers(1, 4)), 3))
    return out


@judges.judge("kv_cache_appends")
def _kv_judge(inputs: dict, outputs: dict, seconds):
    for i in range(inputs["n_trials"]):
        n_layers, ops = inputs[f"trial{i}"]["n_layers"], inputs[f"trial{i}"]["ops"]
        ref_k: list = [[] for _ in range(n_layers)]
        ref_v: list = [[] for _ in range(n_layers)]
        start = 0
        for j, (layer, t) in enumerate(ops):
            ref_k[layer].append(inputs[f"k{i}"][:, :, start : start + t])
            ref_v[layer].append(inputs[f"v{i}"][:, :, start : start + t])
            start += t
            what = f"update {j + 1} (layer {layer} of {n_layers}, {t} new positions)"
            keys, values = _arrays(outputs, f"u{i}_{j}", 2, what)
            _same(keys, np.concatenate(ref_k[layer], axis=2), f"{what}: returned keys")
            _same(values, np.concatenate(ref_v[layer], axis=2), f"{what}: returned values")
            lengths = expect.returned(outputs, f"len{i}_{j}", f"get_seq_length after {what}")
            want = [sum(x.shape[2] for x in ref_k[n]) for n in range(n_layers)]
            expect.that(
                [int(x) for x in lengths] == want,
                f"get_seq_length(layer) after {what}: wrong counts {lengths} (count every "
                "position each layer has seen)",
            )
        stored = expect.returned(outputs, f"stored{i}", "the stored keys and values")
        for layer in range(n_layers):
            for name, ref in (("keys", ref_k), ("values", ref_v)):
                got = stored[name][layer]
                if not ref[layer]:
                    expect.that(got is None, f"self.{name}[{layer}] of an unused layer should "
                                "stay None")
                    continue
                expect.that(isinstance(got, np.ndarray), f"self.{name}[{layer}] is not an array")
                _same(got, np.concatenate(ref[layer], axis=2),
                      f"self.{name}[{layer}] after the caller overwrote its inputs (store "
                      "copies)")
        total = sum(x.nbytes for ref in (ref_k, ref_v) for lay in ref for x in lay)
        what = f"memory_bytes() after {len(ops)} updates"
        expect.that(_int(expect.returned(outputs, f"mem{i}", what), what) == total,
                    f"{what} is not the bytes of the stored arrays")
    reset = expect.returned(outputs, "reset", "reset()")
    expect.that(reset["seq"] == 0 and _int(reset["mem"], "memory_bytes() after reset()") == 0,
                "reset() should forget every position (get_seq_length 0, memory_bytes 0)")
    _same(reset["keys"], inputs["after_reset"], "the first update after reset() with a new "
          "batch size")
    t64 = expect.returned(outputs, "tensor64", "update with float64 Tensors")
    expect.that(t64["is_tensor"], "Tensor keys should come back as Tensors (use _like)")
    _same(t64["keys"], inputs["t64"], "update with float64 Tensors")


# ---- 3b. KVCache bad input -----------------------------------------------------------------------
@judges.inputs("kv_cache_rejects_bad_input")
def _bad_inputs(rng: np.random.Generator) -> dict:
    b, h, d = (int(x) for x in rng.integers(1, 4, size=3))
    return {"bhd": [b, h, d], "held": int(rng.integers(1, 5)), "n_layers": int(rng.integers(2, 5))}


_BAD_CALLS = ["layer_too_big", "layer_negative", "layer_float", "layer_bool", "key_3d",
              "kv_differ", "batch_differs", "heads_differ", "dim_differs", "seq_length_bad"]


@judges.judge("kv_cache_rejects_bad_input")
def _bad_judge(inputs: dict, outputs: dict, seconds):
    b, h, d = inputs["bhd"]
    n = inputs["n_layers"]
    expect.returned(outputs, "setup", f"KVCache({n}).update of a ({b}, {h}, T, {d}) key")
    for name in _BAD_CALLS:
        msg = expect.raised(outputs, name, ValueError, what=f"KVCache: {name.replace('_', ' ')}")
        expect.that(msg.strip() != "", f"{name}: the ValueError message is empty")
    expect.raised(outputs, "layer_too_big", ValueError, contains=(f"0..{n - 1}",),
                  what=f"update(..., layer_idx={n}) on a {n}-layer cache")
    expect.raised(outputs, "batch_differs", ValueError, contains=(f"B={b}",),
                  what="a key of another batch size")
    seq = expect.returned(outputs, "after", "get_seq_length after the rejected updates")
    expect.that(int(seq) == inputs["held"], "a rejected update must not change the cache")
    expect.raised(outputs, "zero_layers", ValueError, what="KVCache(0)")


# ---- 4. incremental_forward / cached_attention ---------------------------------------------------
@judges.inputs("incremental_forward_matches_full")
def _inc_inputs(rng: np.random.Generator) -> dict:
    out: dict = {"n_trials": 5}
    for i in range(5):
        spec = _spec(rng)
        b = int(rng.integers(1, 3))
        t = int(rng.integers(2, spec["block_size"] + 1))
        chunks, left = [], t
        while left:
            chunks.append(min(left, int(rng.integers(1, 4))))
            left -= chunks[-1]
        out[f"spec{i}"], out[f"chunks{i}"] = spec, chunks
        out[f"ids{i}"] = rng.integers(0, spec["vocab_size"], size=(b, t))
    spec = out["spec0"]
    t = int(rng.integers(2, spec["block_size"] + 1))
    out["x"] = rng.standard_normal((int(rng.integers(1, 3)), t, spec["d_model"]))
    out["split"] = int(rng.integers(1, t))
    return out


@judges.judge("incremental_forward_matches_full")
def _inc_judge(inputs: dict, outputs: dict, seconds):
    for i in range(inputs["n_trials"]):
        spec, ids, chunks = inputs[f"spec{i}"], inputs[f"ids{i}"], inputs[f"chunks{i}"]
        model = _model(spec)
        with no_grad():
            full = model(ids).data  # (B, T, vocab)
        cfg = {k: v for k, v in spec.items() if k != "seed"}
        what = f"incremental_forward in chunks {chunks} ({cfg}, batch {ids.shape[0]})"
        got = expect.returned(outputs, f"inc{i}", what)
        expect.array(got, "logits", full, rtol=1e-9, atol=1e-10, what=f"{what}: logits")
        expect.that(int(got["seq"]) == ids.shape[1],
                    f"{what}: the cache should hold every position fed")
    model, x, s = _model(inputs["spec0"]), inputs["x"], inputs["split"]
    attn = model.blocks[0].attn
    from tinytorch.core.tensor import Tensor

    with no_grad():
        want = attn(Tensor(x, dtype=np.float64)).data  # (B, T, C)
    what = f"cached_attention over positions [0, {s}) then [{s}, {x.shape[1]})"
    parts = _arrays(outputs, "attn", 2, what)
    expect.array({"a": parts[0]}, "a", want[:, :s], rtol=1e-9, atol=1e-10,
                 what=f"{what}: the first chunk")
    expect.array({"a": parts[1]}, "a", want[:, s:], rtol=1e-9, atol=1e-10,
                 what=f"{what}: the second chunk")
    bs = str(inputs["spec0"]["block_size"])
    expect.raised(outputs, "overflow", ValueError, contains=(bs,),
                  what="incremental_forward past block_size")


# ---- 5. generate_cached --------------------------------------------------------------------------
@judges.inputs("generate_cached_matches_uncached")
def _gen_inputs(rng: np.random.Generator) -> dict:
    out: dict = {"n_trials": 5}
    for i in range(5):
        spec = _spec(rng)
        b = int(rng.integers(1, 3))
        t = int(rng.integers(1, spec["block_size"] // 2 + 1))
        n = 0 if i == 4 else int(rng.integers(1, spec["block_size"] - t + 2))
        out[f"spec{i}"], out[f"n{i}"] = spec, n
        out[f"prompt{i}"] = rng.integers(0, spec["vocab_size"], size=(b, t))
    # one trial whose first new token differs when read from the prompt's first position
    # instead of its last (a small random model often ranks the same token first everywhere)
    for _ in range(100):
        spec = _spec(rng)
        prompt = rng.integers(0, spec["vocab_size"], size=(1, int(rng.integers(3, 6))))
        with no_grad():
            logits = _model(spec)(prompt).data  # (1, T, vocab)
        if logits[0, 0].argmax() != logits[0, -1].argmax():
            out["spec0"], out["prompt0"] = spec, prompt
            out["n0"] = int(rng.integers(2, spec["block_size"] - prompt.shape[1] + 1))
            break
    return out


@judges.judge("generate_cached_matches_uncached")
def _gen_judge(inputs: dict, outputs: dict, seconds):
    for i in range(inputs["n_trials"]):
        spec, prompt, n = inputs[f"spec{i}"], inputs[f"prompt{i}"], inputs[f"n{i}"]
        b, t = prompt.shape
        want = _model(spec).generate(prompt, n, greedy=True)
        what = f"generate_cached of {n} tokens after a ({b}, {t}) prompt"
        got = expect.returned(outputs, f"gen{i}", what)
        ids = got["ids"]
        expect.that(isinstance(ids, np.ndarray) and ids.shape == want.shape,
                    f"{what}: ids of the wrong shape")
        expect.that(ids.dtype == np.int64, f"{what}: ids should be int64, got {ids.dtype}")
        expect.that(np.array_equal(ids, want), f"{what}: the tokens differ from uncached greedy "
                    "generation")
        sizes = [int(s) for s in got["sizes"]]
        want_sizes = [t] + [1] * (n - 1) if n else []
        expect.that(
            sizes == want_sizes,
            f"{what}: layer 0 received updates of {sizes} new positions; a cached generation "
            "prefills the prompt once, then feeds one new token per step, never the last one",
        )
        expect.that(int(got["seq"]) == (t + n - 1 if n else 0),
                    f"{what}: wrong number of positions in the cache afterwards")
        expect.that(got["training"] is True, f"{what}: training mode should be restored")
        one_d = got["one_d"]
        expect.that(isinstance(one_d, np.ndarray) and np.array_equal(one_d, want[0]),
                    f"{what}: a 1-D prompt should give the same tokens, 1-D")


# ---- 6. StaticKVCache ----------------------------------------------------------------------------
@judges.inputs("static_cache_writes_in_place")
def _static_inputs(rng: np.random.Generator) -> dict:
    n_layers = int(rng.integers(1, 4))
    b, h, d = (int(x) for x in rng.integers(1, 4, size=3))
    cap = int(rng.integers(6, 16))
    dt = ["float32", "float64"][int(rng.integers(2))]
    chunks, layers, used = [], [], [0] * n_layers
    for _ in range(12):
        layer = int(rng.integers(n_layers))
        t = int(rng.integers(1, 4))
        if used[layer] + t > cap:
            continue
        used[layer] += t
        chunks.append(t)
        layers.append(layer)
    full = int(np.argmax(used))
    if used[full] < cap:  # fill one layer exactly to capacity: that must still fit
        chunks.append(cap - used[full])
        layers.append(full)
        used[full] = cap
    out: dict = {"dims": [n_layers, b, h, cap, d], "dtype": dt, "chunks": chunks,
                 "layers": layers, "full": full}
    for j, t in enumerate(chunks):
        out[f"k{j}"] = rng.standard_normal((b, h, t, d)).astype(dt)
        out[f"v{j}"] = rng.standard_normal((b, h, t, d)).astype(dt)
    spec = _spec(rng)
    t = int(rng.integers(1, spec["block_size"] // 2 + 1))
    out["spec"], out["n"] = spec, int(rng.integers(1, spec["block_size"] - t + 1))
    out["prompt"] = rng.integers(0, spec["vocab_size"], size=(int(rng.integers(1, 3)), t))
    return out


@judges.judge("static_cache_writes_in_place")
def _static_judge(inputs: dict, outputs: dict, seconds):
    n_layers, b, h, cap, d = inputs["dims"]
    dt = np.dtype(inputs["dtype"])
    what = f"StaticKVCache{tuple(inputs['dims'])} with dtype {dt}"
    init = expect.returned(outputs, "init", what)
    for name in ("keys", "values"):
        expect.that(
            init[name] == [[[b, h, cap, d], str(dt)]] * n_layers,
            f"{what}: self.{name} should hold one zeroed ({b}, {h}, {cap}, {d}) {dt} buffer "
            f"per layer, got {init[name]}",
        )
    expect.that(init["zero"] is True, f"{what}: the buffers should start as zeros")
    ref_k: list = [[] for _ in range(n_layers)]
    ref_v: list = [[] for _ in range(n_layers)]
    for j, (t, layer) in enumerate(zip(inputs["chunks"], inputs["layers"])):
        ref_k[layer].append(inputs[f"k{j}"])
        ref_v[layer].append(inputs[f"v{j}"])
        step = f"{what}: update {j + 1} ({t} positions into layer {layer})"
        got = expect.returned(outputs, f"u{j}", step)
        _same(got["keys"], np.concatenate(ref_k[layer], axis=2), f"{step}: returned keys")
        _same(got["values"], np.concatenate(ref_v[layer], axis=2), f"{step}: returned values")
        expect.that(got["view"] is True, f"{step}: update must write into the preallocated "
                    "buffers and return views of them (no new arrays)")
        want = [sum(x.shape[2] for x in ref_k[n]) for n in range(n_layers)]
        expect.that([int(x) for x in got["seq"]] == want,
                    f"{step}: get_seq_length per layer is {got['seq']} (count the filled "
                    "positions)")
    over = expect.raised(outputs, "overflow", ValueError, contains=(str(cap),),
                         what=f"{what}: one more position into a full layer")
    expect.that(str(cap) in over, "the 'full' error should name max_seq_len")
    reset = expect.returned(outputs, "reset", f"{what}: reset()")
    expect.that(reset["seq"] == [0] * n_layers, f"{what}: reset() should empty every layer")
    expect.that(reset["same"] is True, f"{what}: reset() should keep and reuse the buffers")
    _same(reset["again"], inputs["k0"], f"{what}: the first update after reset()")
    spec, prompt, n = inputs["spec"], inputs["prompt"], inputs["n"]
    want = _model(spec).generate(prompt, n, greedy=True)
    gen = expect.returned(outputs, "gen", "generate with StaticKVCache.for_model")
    expect.that(isinstance(gen, np.ndarray) and gen.shape == want.shape
                and np.array_equal(gen, want),
                f"model.generate({n} tokens, cache=StaticKVCache.for_model(...)) differs from "
                "the uncached tokens")
    expect.raised(outputs, "bad_ctor", ValueError, what="StaticKVCache with max_seq_len=0")


# ---- 7. MemoryProfiler ---------------------------------------------------------------------------
@judges.inputs("memory_profiler_measures")
def _prof_inputs(rng: np.random.Generator) -> dict:
    return {
        "kept": int(rng.integers(500_000, 1_500_000)),
        "temp": int(rng.integers(1_000_000, 2_500_000)),
        "dtype": ["float64", "float32"][int(rng.integers(2))],
        "py": int(rng.integers(1000, 3000)),
        "raise_n": int(rng.integers(50_000, 100_000)),
        "shape": [int(x) for x in rng.integers(100, 400, size=2)],
    }


@judges.judge("memory_profiler_measures")
def _prof_judge(inputs: dict, outputs: dict, seconds):
    item = np.dtype(inputs["dtype"]).itemsize
    kept, temp = inputs["kept"] * item, inputs["temp"] * item
    m = expect.returned(outputs, "main", "MemoryProfiler around a kept and a freed array")
    what = f"MemoryProfiler: {kept} bytes kept and {temp} freed inside the block"
    expect.that(m["tracing"] is False, "__exit__ must stop tracemalloc")
    nb, cur, peak = int(m["numpy_bytes"]), int(m["current_bytes"]), int(m["peak_bytes"])
    expect.that(kept <= nb < kept + 100_000,
                f"{what}: numpy_bytes should count the numpy array still alive ({nb})")
    expect.that(int(m["numpy_blocks"]) >= 1, f"{what}: numpy_blocks should count it")
    expect.that(kept <= cur < kept + 500_000,
                f"{what}: current_bytes should be about what is still allocated ({cur})")
    expect.that(kept + temp <= peak < kept + temp + 500_000,
                f"{what}: peak_bytes should include the freed temporary ({peak})")
    py = expect.returned(outputs, "python", "MemoryProfiler around Python objects only")
    expect.that(int(py["numpy_bytes"]) < 10_000,
                "numpy_bytes counted Python objects: filter the snapshot to numpy's domain")
    expect.that(int(py["peak_bytes"]) >= int(py["current_bytes"]) > 0,
                "Python allocations count in peak_bytes and current_bytes")
    expect.raised(outputs, "nested", RuntimeError, what="nested MemoryProfilers")
    r = expect.returned(outputs, "raising", "a block that raises")
    expect.that(r["propagated"] is True, "exceptions inside the block must propagate "
                "(__exit__ returns False)")
    expect.that(r["tracing"] is False, "tracing must stop when the block raises")
    expect.that(int(r["peak_bytes"]) >= inputs["raise_n"] * 8,
                "measurements must be recorded even when the block raises")
    shape = inputs["shape"]
    want = shape[0] * shape[1] * 4
    got = int(expect.returned(outputs, "f32", "numpy_bytes of a float32 array"))
    expect.that(want <= got < want + 10_000,
                f"numpy_bytes of one float32 {tuple(shape)} array is wrong ({got})")


# ---- 6b. static cache memory vs the analytic model -----------------------------------------------
@judges.inputs("static_cache_memory_matches_model")
def _mem_inputs(rng: np.random.Generator) -> dict:
    h = int(rng.choice([2, 4]))
    spec = {"vocab_size": 50, "block_size": int(rng.integers(700, 1000)),
            "n_layer": int(rng.integers(2, 4)), "n_head": h,
            "d_model": h * int(rng.choice([24, 32])), "seed": int(rng.integers(10_000))}
    batch = int(rng.integers(1, 3))
    return {"spec": spec, "batch": batch, "n": int(rng.integers(8, 20)),
            "prompt": rng.integers(0, 50, size=(batch, int(rng.integers(2, 8))))}


@judges.judge("static_cache_memory_matches_model")
def _mem_judge(inputs: dict, outputs: dict, seconds):
    spec, batch = inputs["spec"], inputs["batch"]
    cfg = GPTConfig(**{k: v for k, v in spec.items() if k != "seed"})
    weights = sum(p.data.nbytes for p in TinyGPT(cfg, seed=spec["seed"]).parameters())
    kv = 2 * cfg.n_layer * batch * cfg.n_head * cfg.block_size * cfg.head_dim * 4
    what = (f"static-cache generation ({cfg.n_layer} layers, d_model {cfg.d_model}, block_size "
            f"{cfg.block_size}, batch {batch})")
    got = expect.returned(outputs, "mem", what)
    expect.that(int(got["buffers"]) == kv, f"{what}: the cache's buffers do not hold exactly "
                "max_seq_len positions per layer")
    ratio = int(got["peak"]) / (weights + kv)
    expect.that(1.0 <= ratio <= 1.10, f"{what}: measured peak / (weights + KV cache) = "
                f"{ratio:.3f}, outside [1.0, 1.1]: allocate the buffers once, nothing per step")


# ---- 8. SlidingWindowKVCache ---------------------------------------------------------------------
class _RefWindow:
    """The reference sliding window: returns kept + new, keeps the last `window`, counts all."""

    def __init__(self, n_layers: int, window: int):
        self.window, self.keys, self.values = window, [None] * n_layers, [None] * n_layers
        self.seen = [0] * n_layers

    def update(self, k, v, layer_idx):
        self.seen[layer_idx] += k.shape[2]
        if self.keys[layer_idx] is not None:
            k = np.concatenate([self.keys[layer_idx], k], axis=2)  # (B, H, kept + new, D)
            v = np.concatenate([self.values[layer_idx], v], axis=2)
        self.keys[layer_idx] = k[:, :, -self.window :]
        self.values[layer_idx] = v[:, :, -self.window :]
        return k, v

    def get_seq_length(self, layer_idx: int = 0) -> int:
        return self.seen[layer_idx]

    def reset(self):
        self.__init__(len(self.keys), self.window)


@judges.inputs("sliding_window_bounded")
def _slide_inputs(rng: np.random.Generator) -> dict:
    out: dict = {"n_trials": 3}
    for i in range(3):
        w = int(rng.integers(1, 6))
        ts = [int(rng.integers(1, 4)) for _ in range(6)]
        out[f"trial{i}"] = {"window": w, "ts": ts}
        out[f"k{i}"] = rng.standard_normal((2, 1, sum(ts), 2))  # update j takes the next ts[j]
    spec = _spec(rng, block_size=24)
    t = int(rng.integers(1, 6))
    out["short"] = {"spec": spec, "n": int(rng.integers(1, 24 - t + 1))}
    out["prompt"] = rng.integers(0, spec["vocab_size"], size=(1, t))
    spec2 = _spec(rng, block_size=24)
    out["long"] = {"spec": spec2, "window": int(rng.integers(1, 5))}
    out["ids"] = rng.integers(0, spec2["vocab_size"], size=(int(rng.integers(1, 3)), 24))
    out["flat"] = {"n": [50, 200], "window": 16, "n_layer": 2, "d_model": 64}
    return out


@judges.judge("sliding_window_bounded")
def _slide_judge(inputs: dict, outputs: dict, seconds):
    for i in range(inputs["n_trials"]):
        w, ts = inputs[f"trial{i}"]["window"], inputs[f"trial{i}"]["ts"]
        joined = None
        for j, t in enumerate(ts):
            k = inputs[f"k{i}"][:, :, sum(ts[:j]) : sum(ts[: j + 1])]
            kept = 0 if joined is None else min(joined.shape[2], w)
            joined = k if joined is None else np.concatenate([joined, k], axis=2)
            step = f"SlidingWindowKVCache(window={w}): update {j + 1} ({t} new positions)"
            got = expect.returned(outputs, f"u{i}_{j}", step)
            _same(got["keys"], joined[:, :, joined.shape[2] - kept - t:],
                  f"{step}: returned keys (the kept positions, then the new ones)")
            _same(got["values"], -got["keys"], f"{step}: returned values")
            _same(got["stored"], joined[:, :, -w:], f"{step}: self.keys (the last {w})")
            expect.that(got["copy"] is True, f"{step}: store a copy, not a view of the joined "
                        "array")
            expect.that([int(x) for x in got["seq"]] == [0, joined.shape[2]],
                        f"{step}: get_seq_length should count every position seen, got "
                        f"{got['seq']}")
    short = inputs["short"]
    want = _model(short["spec"]).generate(inputs["prompt"], short["n"], greedy=True)
    got = expect.returned(outputs, "short", "generation with a window >= the sequence")
    expect.that(isinstance(got, np.ndarray) and np.array_equal(got, want),
                "while the sequence is shorter than the window, the sliding window must give "
                "the full cache's tokens")
    long, ids = inputs["long"], inputs["ids"]
    model = _model(long["spec"])
    ref = _RefWindow(model.config.n_layer, long["window"])
    with no_grad():
        want = np.stack([model(ids[:, i : i + 1], cache=ref).data[:, -1]
                         for i in range(ids.shape[1])], axis=1)  # (B, T, vocab)
    expect.array(outputs, "long", want, rtol=1e-9, atol=1e-10,
                 what=f"logits fed one position at a time through a window of "
                 f"{long['window']} over {ids.shape[1]} positions")
    peaks = expect.returned(outputs, "flat", "sliding-window peak memory")
    flat = inputs["flat"]
    n1, n2 = flat["n"]
    # what a cache that keeps every position adds from n1 to n2 tokens (float32 keys + values)
    growing = (n2 - n1) * flat["n_layer"] * 2 * flat["d_model"] * 4
    grew = int(peaks[1]) - int(peaks[0])
    expect.that(grew < growing / 2,
                f"sliding-window peak memory should stay flat: generating {n2} instead of {n1} "
                f"tokens raised the peak by {grew} bytes, about as much as keeping every "
                "position would")
    reset = expect.returned(outputs, "reset", "reset()")
    expect.that(reset["seq"] == 0 and reset["none"] is True,
                "reset() should forget every position and count from 0")
