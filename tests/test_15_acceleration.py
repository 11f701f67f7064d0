"""Module 15 (acceleration): every kernel and backend has np.matmul semantics; the registry and
the routing point behave; models give the same output on every backend; the bench runs."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import tinytorch.acceleration as acc
from tinytorch.core import backends

ROOT = Path(__file__).resolve().parents[1]
SOURCE = ROOT / "modules" / "15_acceleration" / "acceleration_dev.py"
MODULE_BACKENDS = ["naive", "blocked", "vectorized", "optimized"]


def _close(got, want, k: int, dtype=np.float32) -> None:
    """Agreement within float32 (or float64) rounding for a sum of k products."""
    eps = np.finfo(dtype).eps
    tol = 8 * eps * max(k, 1)
    np.testing.assert_allclose(np.asarray(got), np.asarray(want), rtol=tol, atol=tol * 4)


# ------------------------------------------------------------------------------ strategies
@st.composite
def matmul_operands(draw):
    """Shapes np.matmul accepts: 2-D, 1-D on either side, batched with broadcasting."""
    m, k, n = (draw(st.integers(0, 6)) for _ in range(3))
    kind = draw(st.sampled_from(["2d", "vec_mat", "mat_vec", "vec_vec", "batched", "batched_2d"]))
    batch = tuple(draw(st.lists(st.integers(0, 3), min_size=1, max_size=3)))

    def squash(shape):  # drop leading dims and/or set some to 1: still broadcasts with `batch`
        cut = draw(st.integers(0, len(shape)))
        return tuple(1 if draw(st.booleans()) else s for s in shape[cut:])

    if kind == "2d":
        sa, sb = (m, k), (k, n)
    elif kind == "vec_mat":
        sa, sb = (k,), squash(batch) + (k, n)
    elif kind == "mat_vec":
        sa, sb = squash(batch) + (m, k), (k,)
    elif kind == "vec_vec":
        sa, sb = (k,), (k,)
    elif kind == "batched":
        sa, sb = squash(batch) + (m, k), squash(batch) + (k, n)
    else:
        sa, sb = batch + (m, k), (k, n)
    seed = draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    a = rng.standard_normal(sa).astype(np.float32)
    b = rng.standard_normal(sb).astype(np.float32)
    return a, b


# ------------------------------------------------------------------------------ registry
def test_import_registers_every_backend():
    names = backends.available_backends()
    for name in ["numpy"] + MODULE_BACKENDS:
        assert name in names
    for name in MODULE_BACKENDS:
        assert isinstance(backends.get_backend(name), backends.Backend)
        assert backends.get_backend(name).name == name
    assert isinstance(backends.get_backend("optimized"), acc.OptimizedBackend)
    # the re-exports are the core's own functions, not copies with their own state
    assert acc.use_backend is backends.use_backend
    assert acc.set_backend is backends.set_backend
    assert acc.get_backend is backends.get_backend
    assert acc.available_backends is backends.available_backends


@settings(max_examples=60, deadline=None)
@given(matmul_operands())
def test_every_backend_agrees_with_np_matmul(operands):
    a, b = operands
    want = np.matmul(a, b)
    k = a.shape[-1]
    for name in backends.available_backends():
        with acc.use_backend(name):
            got = backends.matmul(a, b)  # the routing point, as the library calls it
        assert np.shape(got) == np.shape(want), (name, a.shape, b.shape)
        assert np.asarray(got).dtype == np.asarray(want).dtype, (name, a.shape, b.shape)
        _close(got, want, k)
        direct = backends.get_backend(name).matmul(a, b)
        _close(direct, want, k)


@settings(max_examples=40, deadline=None)
@given(
    m=st.integers(0, 20),
    k=st.integers(0, 20),
    n=st.integers(0, 20),
    block=st.integers(1, 9),
    seed=st.integers(0, 2**32 - 1),
)
def test_blocked_kernel_any_size_any_block(m, k, n, block, seed):
    rng = np.random.default_rng(seed)
    a = rng.standard_normal((m, k)).astype(np.float32)
    b = rng.standard_normal((k, n)).astype(np.float32)
    got = acc.blocked_matmul(a, b, block_size=block)
    assert got.shape == (m, n) and got.dtype == np.float32
    _close(got, a @ b, k)
    _close(acc.BlockedBackend(block).matmul(a[None], b), a[None] @ b, k)


@pytest.mark.parametrize("name", ["numpy"] + MODULE_BACKENDS)
@pytest.mark.parametrize("dtype", [np.float64, np.int64, np.int32, np.int8, bool, np.float16])
def test_result_dtype_and_exact_integers(name, dtype):
    rng = np.random.default_rng(7)
    for sa, sb in [((5, 7), (7, 3)), ((2, 3, 7), (7, 4)), ((7,), (7, 2)), ((24, 24), (24, 24))]:
        if dtype is bool:
            a, b = rng.random(sa) < 0.5, rng.random(sb) < 0.5
        elif np.dtype(dtype).kind == "i":
            a = rng.integers(-9, 9, size=sa).astype(dtype)
            b = rng.integers(-9, 9, size=sb).astype(dtype)
        else:
            a = rng.standard_normal(sa).astype(dtype)
            b = rng.standard_normal(sb).astype(dtype)
        want = np.matmul(a, b)
        with acc.use_backend(name):
            got = backends.matmul(a, b)
        assert got.dtype == want.dtype, (name, dtype, sa, sb)
        if np.dtype(dtype).kind in "biu":
            assert np.array_equal(got, want), (name, dtype, sa, sb)
        else:
            _close(got, want, sa[-1], dtype=dtype)


@pytest.mark.parametrize("name", ["numpy"] + MODULE_BACKENDS)
@pytest.mark.parametrize(
    "sa, sb",
    [((2, 3), (4, 5)), ((3,), (4,)), ((2, 3, 4), (3, 5, 2)), ((5,), (2, 4, 3))],
)
def test_shape_mismatch_names_both_shapes(name, sa, sb):
    with acc.use_backend(name), pytest.raises(ValueError) as info:
        backends.matmul(np.ones(sa), np.ones(sb))
    assert str(sa) in str(info.value) and str(sb) in str(info.value)
    with pytest.raises(ValueError):
        backends.get_backend(name).matmul(np.ones(sa), np.ones(sb))


@pytest.mark.parametrize("kernel", [acc.naive_matmul, acc.blocked_matmul, acc.vectorized_matmul])
def test_2d_kernels_reject_other_ranks(kernel):
    with pytest.raises(ValueError, match=r"\(3,\)"):
        kernel(np.ones(3), np.ones((3, 2)))
    with pytest.raises(ValueError, match=r"\(2, 3\).*\(4, 5\)"):
        kernel(np.ones((2, 3)), np.ones((4, 5)))


@pytest.mark.parametrize("bad", [0, -1, 2.5, "64", True])
def test_block_size_validation(bad):
    with pytest.raises(ValueError, match="block_size"):
        acc.blocked_matmul(np.ones((2, 2)), np.ones((2, 2)), block_size=bad)
    with pytest.raises(ValueError, match="block_size"):
        acc.BlockedBackend(bad)


def test_use_backend_restores_on_exit_and_on_exception():
    assert backends.get_backend().name == "numpy"
    with acc.use_backend("blocked") as active:
        assert active.name == "blocked" and backends.get_backend().name == "blocked"
        with acc.use_backend("naive"):
            assert backends.get_backend().name == "naive"
        assert backends.get_backend().name == "blocked"
    assert backends.get_backend().name == "numpy"
    with pytest.raises(RuntimeError, match="boom"), acc.use_backend("vectorized"):
        raise RuntimeError("boom")
    assert backends.get_backend().name == "numpy"


def test_set_backend_switches_and_unknown_name_lists_registered():
    previous = acc.set_backend("optimized")
    try:
        assert previous == "numpy"
        assert backends.get_backend().name == "optimized"
    finally:
        acc.set_backend(previous)
    assert backends.get_backend().name == "numpy"
    with pytest.raises(ValueError) as info:
        acc.set_backend("cuda")
    msg = str(info.value)
    assert "cuda" in msg and all(name in msg for name in backends.available_backends())
    assert backends.get_backend().name == "numpy"
    with pytest.raises(ValueError, match="naive"), acc.use_backend("nope"):
        pass


# ------------------------------------------------------------------------------ optimized
def test_exact_in_float64_bound():
    one = np.ones((1, 1), np.int64)
    assert acc.exact_in_float64(one * 2**26, one * 2**27)  # K * 2**53 / K: exactly representable
    assert not acc.exact_in_float64(one * 2**26, one * (2**27 + 1))
    assert not acc.exact_in_float64(np.full((2, 64), 2**30), np.full((64, 2), 2**30))
    assert not acc.exact_in_float64(np.array([[np.iinfo(np.int64).min]]), one)
    assert not acc.exact_in_float64(np.ones((2, 2)), np.ones((2, 2)))  # floats: not an int matmul
    assert acc.exact_in_float64(np.ones((2, 3), bool), np.ones((3, 2), np.uint8))
    assert acc.exact_in_float64(np.zeros((0, 3), np.int64), np.ones((3, 2), np.int64))


def test_optimized_integer_paths_are_exact_including_overflow():
    opt = acc.OptimizedBackend()
    rng = np.random.default_rng(3)
    a = rng.integers(-(2**20), 2**20, size=(40, 50))
    b = rng.integers(-(2**20), 2**20, size=(50, 30))
    assert np.array_equal(opt.matmul(a, b), a @ b)  # 50 * 2**40 < 2**53: float64 BLAS path
    big = np.full((40, 40), 2**40, dtype=np.int64)  # wraps around in int64: must keep numpy's loop
    assert np.array_equal(opt.matmul(big, big), big @ big)
    i8 = rng.integers(-128, 128, size=(3, 64, 64)).astype(np.int8)  # int8 wraps too
    assert opt.matmul(i8, i8).dtype == np.int8
    assert np.array_equal(opt.matmul(i8, i8), i8 @ i8)


def test_optimized_rules_follow_the_config(monkeypatch):
    calls = []
    real_dot = np.dot

    def spy(x, y, *args, **kwargs):
        calls.append((np.shape(x), np.shape(y)))
        return real_dot(x, y, *args, **kwargs)

    monkeypatch.setattr(np, "dot", spy)
    x = np.ones((4, 1, 8), np.float32)
    w = np.ones((8, 16), np.float32)
    got = acc.OptimizedBackend().matmul(x, w)
    assert got.shape == (4, 1, 16) and calls == [((4, 8), (8, 16))]  # folded into one call
    calls.clear()
    no_fold = acc.OptimizedBackend(acc.OptimizedConfig(fold_max_rows=0))
    np.testing.assert_array_equal(no_fold.matmul(x, w), got)
    assert calls == []  # per-item np.matmul instead
    x4 = np.ones((4, 4, 8), np.float32)  # T=4 > fold_max_rows=2: numpy's per-item path
    acc.OptimizedBackend().matmul(x4, w)
    assert calls == []


def test_optimized_is_registered_and_config_is_documented():
    cfg = acc.OptimizedConfig()
    assert cfg.min_convert_flops > 0 and cfg.fold_max_rows >= 1
    assert acc.matmul_flops((2, 3, 4), (4, 5)) == 2 * 2 * 3 * 4 * 5
    assert acc.matmul_flops((4,), (4,)) == 8
    assert acc.matmul_flops((2, 1, 3, 4), (5, 4, 6)) == 2 * 10 * 3 * 4 * 6


def test_no_solution_line_is_shown_in_a_markdown_cell():
    """Goal-first and demo cells show what the student builds by using it, never its graded
    code (issue 15: the OptimizedBackend listing in the goal cell, pasted into the exercise,
    scored full marks)."""
    import re

    text = SOURCE.read_text(encoding="utf-8")
    cells = re.split(r"^# %%", text, flags=re.M)
    markdown = {
        ln.lstrip("#").strip()
        for cell in cells
        if cell.startswith(" [markdown]")
        for ln in cell.splitlines()[1:]
    }
    solution = {
        ln.strip()
        for region in re.findall(r"### BEGIN SOLUTION(.*?)### END SOLUTION", text, flags=re.S)
        for ln in region.splitlines()
        if len(ln.strip()) >= 16 and not ln.strip().startswith("#")
    }
    assert len(solution) >= 20, "module 15 should have solution regions to compare against"
    shown = sorted(solution & markdown)
    assert not shown, f"solution lines shown in markdown cells: {shown}"


# ------------------------------------------------------------------------------ measurement
def test_benchmark_helpers():
    calls = []
    t = acc.benchmark(lambda: calls.append(1), repeats=4, warmup=2)
    assert len(calls) == 6 and t >= 0
    assert acc.gflops(1000, 2.0) == pytest.approx(1.0)
    with pytest.raises(ValueError):
        acc.gflops(0, 1.0)
    with pytest.raises(ValueError):
        acc.benchmark(lambda: None, repeats=0)
    assert acc.benchmark_backend("blocked", 8, repeats=1, warmup=0) > 0
    with pytest.raises(ValueError, match="unknown backend"):
        acc.benchmark_backend("nope", 8)


# ------------------------------------------------------------------------------ models
def test_tinygpt_same_logits_and_generation_on_every_backend():
    transformer = pytest.importorskip(
        "tinytorch.core.transformer", reason="tinytorch.core.transformer is not available"
    )
    from tinytorch.core.tensor import no_grad

    config = transformer.GPTConfig(vocab_size=11, block_size=8, n_layer=1, n_head=2, d_model=8)
    model = transformer.TinyGPT(config, seed=0)
    idx = np.random.default_rng(0).integers(0, 11, size=(2, 8))
    with no_grad():
        ref = model(idx).data
    for name in backends.available_backends():
        with acc.use_backend(name), no_grad():
            logits = model(idx).data
        assert logits.shape == (2, 8, 11)
        np.testing.assert_allclose(logits, ref, rtol=1e-4, atol=1e-5, err_msg=name)
    with acc.use_backend("numpy"):
        want = model.generate(idx[0, :3], max_new_tokens=3, greedy=True)
    for name in MODULE_BACKENDS:
        with acc.use_backend(name):
            assert np.array_equal(model.generate(idx[0, :3], max_new_tokens=3, greedy=True), want)


def test_training_gradients_are_backend_independent():
    nn = pytest.importorskip("tinytorch.core.nn", reason="tinytorch.core.nn is not available")
    from tinytorch.core.tensor import Tensor

    rng = np.random.default_rng(1)
    x = rng.standard_normal((4, 1, 6, 6)).astype(np.float32)
    grads = {}
    for name in ["numpy"] + MODULE_BACKENDS:
        nn_seeded = nn.Sequential(
            nn.Conv2d(1, 2, kernel_size=3), nn.ReLU(), nn.Flatten(), nn.Linear(2 * 4 * 4, 3)
        )
        for i, p in enumerate(nn_seeded.parameters()):  # the same weights for every backend
            p.data[...] = np.random.default_rng(i).standard_normal(p.shape) * 0.3
        with acc.use_backend(name):
            out = nn_seeded(Tensor(x))
            (out * out).sum().backward()
        grads[name] = [p.grad.copy() for p in nn_seeded.parameters()]
    for name, gs in grads.items():
        for g, g_ref in zip(gs, grads["numpy"]):
            np.testing.assert_allclose(g, g_ref, rtol=1e-4, atol=1e-5, err_msg=name)


# ------------------------------------------------------------------------------ bench
def test_bench_quick_runs_and_writes_valid_json(tmp_path):
    out = tmp_path / "acceleration.json"
    env = {**os.environ, "OPENBLAS_NUM_THREADS": "1", "MPLBACKEND": "Agg"}
    proc = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "acceleration.py"), "--quick", "--json", str(out)],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
        cwd=ROOT,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "GFLOP/s" in proc.stdout and "Targets" in proc.stdout
    data = json.loads(out.read_text())
    assert data["bench"] == "acceleration" and data["quick"] is True
    assert len(data["targets"]) == 5
    for t in data["targets"]:
        assert isinstance(t["passed"], bool) and math.isfinite(t["value"]), t
    res = data["results"]
    for name in ["naive", "blocked", "vectorized", "optimized", "numpy", "np.matmul"]:
        assert name in res["gflops"]
    assert res["tinygpt_generation"]["same_tokens_on_every_backend"] is True
    assert all(v > 0 for v in res["tinygpt_generation"]["seconds"].values())


# ------------------------------------------------------------------------------ judges
def _judge_file() -> dict:
    """The namespace of module 15's judge file (its judges and helpers)."""
    path = ROOT / "modules" / "15_acceleration" / "judge.py"
    ns: dict = {}
    exec(compile(path.read_text(encoding="utf-8"), str(path), "exec"), ns)
    return ns


def _judges():
    return _judge_file()["judges"]


def _naive_outputs(inputs: dict, kernel) -> dict:
    """What the naive_matches_numpy probe records, with `kernel` as the student's function."""
    from tito.probe import Probe

    p = Probe("15_acceleration", "naive_matches_numpy", inputs, None)
    for k in range(inputs["n_cases"]):
        p.record(f"out{k}", kernel, inputs[f"a{k}"], inputs[f"b{k}"])
    for key, (a, b) in {"int": ("ai", "bi"), "int32": ("ai32", "bi32"),
                        "f32": ("a32", "b32"), "bad_1d": ("v", "b0"), "bad_3d": ("t3", "b0"),
                        "bad_inner": ("a32", "a32")}.items():
        p.record(key, kernel, inputs[a], inputs[b])
    at, bt = _judge_file()["timed_operands"](inputs["timed_seed"], inputs["timed_shape"],
                                             "float64")
    p.record("timed", kernel, at, bt)
    return p.outputs


def test_every_grade_cell_has_a_judge_and_fresh_inputs():
    """Each grade cell of the module is judged outside; its inputs change with the seed."""
    from tito.modules import load_module
    from tito.source import parse_source

    judges = _judges()
    cells = parse_source(load_module(ROOT / "modules" / "15_acceleration")).cells
    grade_ids = {c.grade_id for c in cells if c.is_grade}
    assert grade_ids == set(judges.checks)
    for check in judges.checks:
        one, two = judges.draw(check, 1), judges.draw(check, 2)
        arrays = [k for k, v in one.items() if isinstance(v, np.ndarray) and v.size > 1]
        assert any(not np.array_equal(one[k], two.get(k)) for k in arrays) or one != two, check


def test_naive_judge_uses_the_outside_time():
    """A BLAS-backed naive_matmul has every value right; only the outside clock catches it."""
    from tito import judging

    judges = _judges()
    inputs = judges.draw("naive_matches_numpy", 7)
    outputs = _naive_outputs(inputs, acc.naive_matmul)
    frac, why = judging.verdict(judges, "naive_matches_numpy", inputs, outputs, 30.0)
    assert (frac, why) == (1.0, None)

    def blas(a, b):
        a, b = np.asarray(a), np.asarray(b)
        if a.ndim != 2 or b.ndim != 2:
            raise ValueError(f"takes 2-D arrays, got {a.shape} and {b.shape}")
        backends.check_matmul_shapes(a, b)
        return a @ b

    outputs = _naive_outputs(inputs, blas)
    frac, why = judging.verdict(judges, "naive_matches_numpy", inputs, outputs, 0.002)
    assert frac == 0.0 and "far faster than three Python loops" in why
    assert str(inputs["a0"][0, 0]) not in why  # no values leak


def test_benchmark_judge_names_the_statistic():
    """benchmark's judge says which statistic was returned instead of the median."""
    from tito import judging

    judges = _judges()
    inputs = judges.draw("measure_helpers_correct", 3)
    outputs = {f"g{k}": 2.0 * n**3 / s / 1e9
               for k, (n, s) in enumerate(zip(inputs["g_n"], inputs["g_s"], strict=True))}
    for k, sch in enumerate(inputs["schedules"]):
        timed = sch["durations"][sch["warmup"]:]
        outputs[f"b{k}"] = float(np.mean(timed))  # the mean, not the median
        outputs[f"calls{k}"] = sch["warmup"] + sch["repeats"]
    n, dtype = inputs["bm_n"], inputs["bm_dtype"]
    outputs["bm_seen"] = [[n, n, dtype], [n, n, dtype]]
    frac, why = judging.verdict(judges, "measure_helpers_correct", inputs, outputs, 1.0)
    assert frac == 0.0 and "the mean of the timed calls" in why
    for k, sch in enumerate(inputs["schedules"]):
        outputs[f"b{k}"] = float(np.median(sch["durations"][sch["warmup"]:]))
    assert judging.verdict(judges, "measure_helpers_correct", inputs, outputs, 1.0) == (1.0, None)


def test_exact_judge_agrees_with_the_reference_solution():
    """The judge's own exact_in_float64 gives the reference's answer on every drawn case."""
    ns = _judge_file()
    judges = ns["judges"]
    for seed in range(5):
        inputs = judges.draw("exact_in_float64_correct", seed)
        for j in range(inputs["n_cases"]):
            a, b = inputs[f"a{j}"], inputs[f"b{j}"]
            assert acc.exact_in_float64(a, b) is ns["_exact"](a, b), (a, b)
