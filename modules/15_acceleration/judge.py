"""Judges of module 15's grade cells: the trusted half of each check (see tito/judging.py).

Instructor-only: never released, never inside a sandbox. Each grade cell's hidden probe drives
the student's code on the inputs drawn here (a fresh seed per grading) and sends back what it
produced; the judge below compares it with numpy, in the grading worker.
"""

import numpy as np

from tito.judging import Judges, expect

judges = Judges("15_acceleration")


@judges.inputs("naive_matches_numpy")
def _naive_inputs(rng: np.random.Generator) -> dict:
    shapes = [tuple(int(x) for x in rng.integers(1, 6, size=3)) for _ in range(5)]
    shapes += [(0, 3, 2), (2, 0, 3), (3, 2, 0)]  # empty dimensions
    out: dict = {"n_cases": len(shapes)}
    for k, (m, n_inner, n) in enumerate(shapes):
        out[f"a{k}"] = rng.standard_normal((m, n_inner))
        out[f"b{k}"] = rng.standard_normal((n_inner, n))
    out["ai"] = rng.integers(-50, 50, size=(4, 6))
    out["bi"] = rng.integers(-50, 50, size=(6, 3))
    out["a32"] = rng.standard_normal((3, 4)).astype(np.float32)
    out["b32"] = rng.standard_normal((4, 2)).astype(np.float32)
    out["v"] = rng.standard_normal(3)
    out["t3"] = rng.standard_normal((2, 3, 4))
    return out


@judges.judge("naive_matches_numpy")
def _naive_judge(inputs: dict, outputs: dict, seconds: float | None):
    for k in range(inputs["n_cases"]):
        a, b = inputs[f"a{k}"], inputs[f"b{k}"]
        expect.array(
            outputs,
            f"out{k}",
            a @ b,
            dtype=np.float64,
            rtol=1e-12,
            atol=1e-12,
            what=f"naive_matmul of {a.shape} @ {b.shape} (float64)",
        )
    ai, bi = inputs["ai"], inputs["bi"]
    expect.array(
        outputs,
        "int",
        ai @ bi,
        dtype=(ai @ bi).dtype,
        rtol=0,
        atol=0,
        what="naive_matmul of integer inputs (exact, numpy's dtype)",
    )
    a32, b32 = inputs["a32"], inputs["b32"]
    expect.array(
        outputs,
        "f32",
        a32 @ b32,
        dtype=np.float32,
        rtol=1e-5,
        atol=1e-5,
        what="naive_matmul of float32 inputs",
    )
    expect.raised(outputs, "bad_1d", ValueError, what="naive_matmul of a 1-D and a 2-D input")
    expect.raised(outputs, "bad_3d", ValueError, what="naive_matmul of a 3-D and a 2-D input")
    expect.raised(
        outputs,
        "bad_inner",
        ValueError,
        contains=("(3, 4)",),
        what="naive_matmul of (3, 4) and (3, 4)",
    )
