"""Tensor autograd: every op against central finite differences (float64), with broadcasting."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from tinytorch.core import backends
from tinytorch.core.gradcheck import gradcheck
from tinytorch.core.tensor import (
    Tensor,
    concat,
    default_dtype,
    is_grad_enabled,
    no_grad,
    stack,
    where,
)

FAST = settings(max_examples=15, deadline=None)


def rand(rng, shape, positive=False):
    with default_dtype(np.float64):
        x = rng.standard_normal(shape)
        if positive:
            x = np.abs(x) + 0.5
        return Tensor(x, requires_grad=True)


@st.composite
def broadcast_pair(draw):
    """Two shapes that broadcast together (dims of 1 and missing leading dims included)."""
    shape = draw(hnp.array_shapes(min_dims=1, max_dims=3, min_side=1, max_side=4))
    other = list(shape)
    for i in range(len(other)):
        if draw(st.booleans()):
            other[i] = 1
    drop = draw(st.integers(0, len(other) - 1))
    return tuple(shape), tuple(other[drop:])


BINARY = {
    "add": lambda a, b: a + b,
    "sub": lambda a, b: a - b,
    "mul": lambda a, b: a * b,
    "div": lambda a, b: a / b,
    "radd": lambda a, b: 2.0 + a * b,
    "rdiv": lambda a, b: 1.0 / b + a,
}


@pytest.mark.parametrize("name", sorted(BINARY))
@FAST
@given(shapes=broadcast_pair(), seed=st.integers(0, 2**16))
def test_binary_ops_broadcast(name, shapes, seed):
    rng = np.random.default_rng(seed)
    a = rand(rng, shapes[0])
    b = rand(rng, shapes[1], positive=(name in ("div", "rdiv")))
    out = BINARY[name](a, b)
    assert out.shape == np.broadcast_shapes(shapes[0], shapes[1])
    assert gradcheck(BINARY[name], [a, b]) <= 1e-5
    assert a.grad.shape == a.shape and b.grad.shape == b.shape


UNARY = {
    "neg": lambda x: -x,
    "pow2": lambda x: x**2,
    "pow_half": lambda x: (x * x + 1.0) ** 0.5,
    "exp": lambda x: x.exp(),
    "log": lambda x: (x * x + 0.5).log(),
    "sqrt": lambda x: (x * x + 0.5).sqrt(),
    "relu": lambda x: x.relu(),
    "gelu": lambda x: x.gelu(),
    "tanh": lambda x: x.tanh(),
    "sigmoid": lambda x: x.sigmoid(),
    "abs": lambda x: (x + 0.1).abs(),
    "softmax": lambda x: x.softmax(-1),
    "softmax0": lambda x: x.softmax(0),
    "log_softmax": lambda x: x.log_softmax(-1),
}


@pytest.mark.parametrize("name", sorted(UNARY))
@FAST
@given(
    shape=hnp.array_shapes(min_dims=1, max_dims=3, min_side=1, max_side=4),
    seed=st.integers(0, 2**16),
)
def test_unary_ops(name, shape, seed):
    x = rand(np.random.default_rng(seed), shape)
    if name == "relu":  # keep away from the kink where the derivative is undefined
        x.data[np.abs(x.data) < 1e-3] = 0.5
    assert gradcheck(UNARY[name], [x]) <= 1e-5


@FAST
@given(
    shape=hnp.array_shapes(min_dims=1, max_dims=3, min_side=1, max_side=4),
    keepdims=st.booleans(),
    data=st.data(),
)
def test_reductions(shape, keepdims, data):
    axis = data.draw(st.sampled_from([None, *range(len(shape)), -1]))
    x = rand(np.random.default_rng(0), shape)
    for fn in (
        lambda t: t.sum(axis=axis, keepdims=keepdims),
        lambda t: t.mean(axis=axis, keepdims=keepdims),
        lambda t: t.max(axis=axis, keepdims=keepdims),
    ):
        assert gradcheck(fn, [x]) <= 1e-5


def test_max_splits_gradient_between_ties():
    x = Tensor([1.0, 3.0, 3.0], requires_grad=True)
    x.max().backward()
    np.testing.assert_allclose(x.grad, [0.0, 0.5, 0.5])


@FAST
@given(
    m=st.integers(1, 4), k=st.integers(1, 4), n=st.integers(1, 4),
    batch_a=st.sampled_from([(), (2,), (1,), (3, 1)]),
    batch_b=st.sampled_from([(), (2,), (1,)]),
)
def test_matmul_batched_and_broadcast(m, k, n, batch_a, batch_b):
    rng = np.random.default_rng(m * 100 + k * 10 + n)
    a = rand(rng, batch_a + (m, k))
    b = rand(rng, batch_b + (k, n))
    out = a @ b
    np.testing.assert_allclose(out.data, np.matmul(a.data, b.data))
    assert gradcheck(lambda x, y: x @ y, [a, b]) <= 1e-5


@pytest.mark.parametrize("sa,sb", [((3,), (3, 4)), ((2, 3), (3,)), ((3,), (3,)), ((2, 1, 3), (3,))])
def test_matmul_vector_operands(sa, sb):
    rng = np.random.default_rng(1)
    assert gradcheck(lambda x, y: x @ y, [rand(rng, sa), rand(rng, sb)]) <= 1e-5


def test_matmul_shape_error_names_both_shapes():
    with pytest.raises(ValueError, match=r"cannot matmul \(2, 3\) and \(4, 5\)"):
        Tensor(np.ones((2, 3))) @ Tensor(np.ones((4, 5)))
    with pytest.raises(ValueError, match=r"batch dimensions"):
        Tensor(np.ones((2, 2, 3))) @ Tensor(np.ones((3, 3, 4)))


def test_shape_ops():
    rng = np.random.default_rng(2)
    x = rand(rng, (2, 3, 4))
    assert gradcheck(lambda t: t.reshape(4, 6), [x]) <= 1e-5
    assert gradcheck(lambda t: t.reshape(-1), [x]) <= 1e-5
    assert gradcheck(lambda t: t.transpose(), [x]) <= 1e-5
    assert gradcheck(lambda t: t.transpose(1, 2), [x]) <= 1e-5
    assert gradcheck(lambda t: t.permute(2, 0, 1), [x]) <= 1e-5
    assert gradcheck(lambda t: t.T, [rand(rng, (3, 5))]) <= 1e-5
    assert x.transpose(1, 2).shape == (2, 4, 3)
    assert x.permute(2, 0, 1).shape == (4, 2, 3)
    with pytest.raises(ValueError, match=r"cannot reshape tensor of shape \(2, 3, 4\)"):
        x.reshape(5, 5)
    with pytest.raises(ValueError, match="not a permutation"):
        x.permute(0, 0, 1)


def test_indexing_and_slicing_accumulate():
    rng = np.random.default_rng(3)
    x = rand(rng, (4, 5))
    assert gradcheck(lambda t: t[1:3, ::2], [x]) <= 1e-5
    assert gradcheck(lambda t: t[[0, 0, 3]], [x]) <= 1e-5  # repeated rows accumulate
    assert gradcheck(lambda t: t[np.array([0, 2]), np.array([1, 1])], [x]) <= 1e-5
    assert gradcheck(lambda t: t[..., -1], [x]) <= 1e-5


def test_concat_stack_where():
    rng = np.random.default_rng(4)
    a, b = rand(rng, (2, 3)), rand(rng, (4, 3))
    assert gradcheck(lambda p, q: concat([p, q], axis=0), [a, b]) <= 1e-5
    c = rand(rng, (2, 3))
    assert gradcheck(lambda p, q: stack([p, q], axis=1), [a, c]) <= 1e-5
    assert gradcheck(lambda p, q: where(p.data > 0, p, q), [a, c]) <= 1e-5
    with pytest.raises(ValueError, match=r"cannot concat shapes \[\(2, 3\), \(4, 2\)\]"):
        concat([a, Tensor(np.ones((4, 2)))], axis=0)
    with pytest.raises(ValueError, match="stack needs equal shapes"):
        stack([a, b])


def test_gradients_accumulate_over_reuse_and_backward_calls():
    x = Tensor([2.0], requires_grad=True)
    y = x * x + x  # x used three times
    y.backward()
    np.testing.assert_allclose(x.grad, [5.0])
    (x * 3).backward()
    np.testing.assert_allclose(x.grad, [8.0])
    x.zero_grad()
    assert x.grad is None


def test_softmax_is_stable_for_large_inputs():
    x = Tensor([[1000.0, 1001.0, 1002.0], [-1000.0, 0.0, 1000.0]])
    p = x.softmax(-1).data
    assert np.all(np.isfinite(p)) and np.allclose(p.sum(-1), 1.0)
    ls = x.log_softmax(-1).data
    assert np.all(np.isfinite(ls))
    np.testing.assert_allclose(np.exp(ls), p, rtol=1e-5)


def test_sigmoid_is_stable_in_both_tails():
    x = Tensor([-1000.0, 0.0, 1000.0])
    np.testing.assert_allclose(x.sigmoid().data, [0.0, 0.5, 1.0])


def test_no_grad_records_no_graph():
    x = Tensor(np.ones(3), requires_grad=True)
    with no_grad():
        assert not is_grad_enabled()
        y = (x * 2).sum()
    assert is_grad_enabled()
    assert not y.requires_grad and y._parents == ()
    with pytest.raises(RuntimeError, match="does not require grad"):
        y.backward()


def test_dtypes_and_bad_input():
    assert Tensor([1.0, 2.0]).dtype == np.float32
    # numpy arrays keep their dtype (torch.tensor's rule); Python floats take the default
    assert Tensor(np.zeros(3)).dtype == np.float64
    assert Tensor(np.zeros(3, np.float16)).dtype == np.float16
    assert Tensor(np.arange(3)).dtype.kind == "i"  # ids and labels stay integer
    with default_dtype(np.float64):
        assert Tensor([1.0]).dtype == np.float64
    assert (Tensor([1.0]) + 1).dtype == np.float32
    with pytest.raises(TypeError, match="numeric"):
        Tensor(["a", "b"])
    with pytest.raises(TypeError, match="only float tensors can require grad"):
        Tensor(np.arange(3), requires_grad=True)
    with pytest.raises(TypeError, match="scalar exponents"):
        Tensor([1.0]) ** Tensor([2.0])
    with pytest.raises(ValueError, match="needs a scalar"):
        Tensor(np.ones(3), requires_grad=True).backward()
    with pytest.raises(TypeError):
        Tensor([1.0]) + "x"


def test_every_matmul_goes_through_the_routing_point():
    calls = []

    class Spy(backends.NumpyBackend):
        name = "spy"

        def matmul(self, a, b):
            calls.append((a.shape, b.shape))
            return np.matmul(a, b)

    backends.register_backend(Spy())
    try:
        a = Tensor(np.ones((2, 3)), requires_grad=True)
        b = Tensor(np.ones((3, 4)), requires_grad=True)
        with backends.use_backend("spy"):
            (a @ b).sum().backward()
        assert calls == [((2, 3), (3, 4)), ((2, 4), (4, 3)), ((3, 2), (2, 4))]
        assert backends.get_backend().name == "numpy"
    finally:
        backends.unregister_backend("spy")


def test_backend_registry_errors():
    with pytest.raises(ValueError, match=r"unknown backend 'nope'; registered backends: \["):
        backends.set_backend("nope")
    with pytest.raises(ValueError, match="cannot be unregistered"):
        backends.unregister_backend("numpy")
    with pytest.raises(TypeError, match="non-empty string"):
        backends.register_backend(object())
