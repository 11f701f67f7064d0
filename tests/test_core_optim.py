"""Optimizers against hand-computed updates, schedulers, and convergence on a quadratic."""

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tinytorch.core import nn
from tinytorch.core.optim import SGD, Adam, AdamW, CosineLR, StepLR
from tinytorch.core.tensor import Tensor, default_dtype


def param(values):
    with default_dtype(np.float64):
        return nn.Parameter(np.array(values, dtype=np.float64))


def test_sgd_plain_step():
    p = param([1.0, -2.0])
    p.grad = np.array([0.5, 1.0])
    SGD([p], lr=0.1).step()
    np.testing.assert_allclose(p.data, [1.0 - 0.05, -2.0 - 0.1])


def test_sgd_momentum_and_weight_decay_by_hand():
    p = param([1.0])
    opt = SGD([p], lr=0.1, momentum=0.9, weight_decay=0.01)
    # step 1: g = 2 + 0.01*1 = 2.01; buf = 2.01; p = 1 - 0.201 = 0.799
    p.grad = np.array([2.0])
    opt.step()
    np.testing.assert_allclose(p.data, [0.799])
    # step 2: g = 2 + 0.01*0.799 = 2.00799; buf = 0.9*2.01 + 2.00799 = 3.81699
    p.grad = np.array([2.0])
    opt.step()
    np.testing.assert_allclose(p.data, [0.799 - 0.1 * 3.81699])


def test_sgd_nesterov_by_hand():
    p = param([0.0])
    opt = SGD([p], lr=1.0, momentum=0.5, nesterov=True)
    p.grad = np.array([1.0])
    opt.step()  # buf = 1; update = 1 + 0.5*1 = 1.5
    np.testing.assert_allclose(p.data, [-1.5])
    p.grad = np.array([1.0])
    opt.step()  # buf = 0.5 + 1 = 1.5; update = 1 + 0.75 = 1.75
    np.testing.assert_allclose(p.data, [-3.25])


def adam_reference(p0, grads, lr, b1, b2, eps, wd, decoupled):
    p, m, v = float(p0), 0.0, 0.0
    for t, g in enumerate(grads, start=1):
        if wd and not decoupled:
            g = g + wd * p
        m = b1 * m + (1 - b1) * g
        v = b2 * v + (1 - b2) * g * g
        if decoupled:
            p = p * (1 - lr * wd)
        p = p - lr * (m / (1 - b1**t)) / (math.sqrt(v / (1 - b2**t)) + eps)
    return p


@pytest.mark.parametrize(("cls", "wd"), [(Adam, 0.0), (Adam, 0.1), (AdamW, 0.1)])
def test_adam_matches_scalar_reference(cls, wd):
    grads = [0.3, -1.0, 2.0, 0.0, 0.5]
    p = param([1.5])
    opt = cls([p], lr=0.01, betas=(0.8, 0.99), eps=1e-8, weight_decay=wd)
    for g in grads:
        p.grad = np.array([g])
        opt.step()
    expected = adam_reference(1.5, grads, 0.01, 0.8, 0.99, 1e-8, wd, cls is AdamW)
    assert p.data[0] == pytest.approx(expected, rel=1e-12)


def test_adam_first_step_is_lr_times_sign():
    p = param([1.0, 1.0])
    p.grad = np.array([1e-3, -50.0])
    Adam([p], lr=0.1).step()
    np.testing.assert_allclose(p.data, [0.9, 1.1], rtol=1e-5)  # eps=1e-8 aside


def test_adamw_and_adam_weight_decay_differ():
    a, b = param([2.0]), param([2.0])
    oa, ob = Adam([a], lr=0.1, weight_decay=0.5), AdamW([b], lr=0.1, weight_decay=0.5)
    for _ in range(3):
        a.grad, b.grad = np.array([1.0]), np.array([1.0])
        oa.step()
        ob.step()
    assert a.data[0] != pytest.approx(b.data[0])


def test_params_without_grad_are_skipped_and_zero_grad():
    p, q = param([1.0]), param([2.0])
    p.grad = np.array([1.0])
    for opt in (SGD([p, q], lr=0.1, momentum=0.9), Adam([p, q], lr=0.1)):
        before_q = q.data.copy()
        opt.step()
        np.testing.assert_array_equal(q.data, before_q)
        assert 1 not in opt.state
    opt.zero_grad()
    assert p.grad is None and q.grad is None


def test_float32_parameters_stay_float32():
    p = nn.Parameter(np.ones(3, dtype=np.float32))
    opt = Adam([p], lr=0.1, weight_decay=0.1)
    p.grad = np.ones(3, dtype=np.float32)
    opt.step()
    assert p.dtype == np.float32


def test_validation_errors():
    p = param([1.0])
    with pytest.raises(ValueError, match="-0.1"):
        SGD([p], lr=-0.1)
    with pytest.raises(ValueError, match="-1"):
        Adam([p], lr=-1)
    with pytest.raises(ValueError, match="betas"):
        Adam([p], betas=(1.0, 0.9))
    with pytest.raises(ValueError, match="momentum"):
        SGD([p], lr=0.1, nesterov=True)
    with pytest.raises(ValueError, match="empty"):
        SGD([], lr=0.1)
    with pytest.raises(ValueError, match="grad"):
        SGD([Tensor([1.0])], lr=0.1)


def test_tied_parameter_updated_once():
    p = param([1.0])
    opt = SGD([p, p], lr=1.0)
    p.grad = np.array([1.0])
    opt.step()
    np.testing.assert_allclose(p.data, [0.0])


def test_optimizer_state_dict_round_trip():
    def grads(i):
        return np.array([np.sin(i) + 0.5, np.cos(i)])

    p = param([1.0, -1.0])
    opt = Adam([p], lr=0.05)
    for i in range(3):
        p.grad = grads(i)
        opt.step()
    saved_p, saved = p.data.copy(), opt.state_dict()
    for i in range(3, 5):
        p.grad = grads(i)
        opt.step()

    q = param(saved_p)
    resumed = Adam([q], lr=999.0)
    resumed.load_state_dict(saved)
    assert resumed.lr == 0.05 and resumed.state[0]["step"] == 3
    for i in range(3, 5):
        q.grad = grads(i)
        resumed.step()
    np.testing.assert_array_equal(q.data, p.data)  # resuming is exact
    saved["state"][0]["m"][...] = 123.0
    assert resumed.state[0]["m"][0] != 123.0  # state_dict copies
    with pytest.raises(ValueError, match=r"\(2,\).*\(5,\)"):
        resumed.load_state_dict({"hyper": {}, "state": {0: {"m": np.zeros(5)}}})


# ============================================================================ schedulers
def test_step_lr():
    opt = SGD([param([0.0])], lr=1.0)
    sched = StepLR(opt, step_size=2, gamma=0.5)
    lrs = [sched.step() for _ in range(6)]
    assert lrs == [1.0, 0.5, 0.5, 0.25, 0.25, 0.125]
    assert opt.lr == 0.125 == sched.get_lr()


def test_cosine_lr():
    opt = SGD([param([0.0])], lr=1.0)
    sched = CosineLR(opt, T_max=4, eta_min=0.1)
    lrs = [sched.step() for _ in range(6)]
    expected = [0.1 + 0.9 * (1 + math.cos(math.pi * t / 4)) / 2 for t in (1, 2, 3, 4)]
    np.testing.assert_allclose(lrs[:4], expected)
    assert lrs[1] == pytest.approx(0.55)
    assert lrs[4] == lrs[5] == pytest.approx(0.1)  # held at eta_min after T_max
    with pytest.raises(ValueError, match="T_max"):
        CosineLR(opt, T_max=0)


def test_scheduler_state_dict():
    opt = SGD([param([0.0])], lr=1.0)
    sched = StepLR(opt, step_size=1, gamma=0.5)
    sched.step()
    sched.step()
    opt2 = SGD([param([0.0])], lr=1.0)
    sched2 = StepLR(opt2, step_size=1, gamma=0.5)
    sched2.load_state_dict(sched.state_dict())
    assert opt2.lr == 0.25 and sched2.step() == sched.step()


# ============================================================================ convergence
@pytest.mark.parametrize(
    "make",
    [
        lambda ps: SGD(ps, lr=0.1),
        lambda ps: SGD(ps, lr=0.05, momentum=0.9),
        lambda ps: SGD(ps, lr=0.05, momentum=0.9, nesterov=True),
        lambda ps: Adam(ps, lr=0.1),
        lambda ps: AdamW(ps, lr=0.1, weight_decay=0.0),
    ],
)
def test_minimizes_a_quadratic(make):
    """f(x) = 1/2 (x - c)^T A (x - c) with A positive definite; minimum at c."""
    rng = np.random.default_rng(0)
    m = rng.standard_normal((4, 4))
    a = m @ m.T / 4 + np.eye(4)
    c = rng.standard_normal(4)
    x = param(np.zeros(4))
    opt = make([x])
    for _ in range(500):
        d = x - c
        loss = (d @ Tensor(a) @ d) * 0.5
        opt.zero_grad()
        loss.backward()
        opt.step()
    np.testing.assert_allclose(x.data, c, atol=1e-3)


@settings(max_examples=20, deadline=None)
@given(lr=st.floats(0.01, 0.5), g=st.floats(-5, 5), w=st.floats(-3, 3))
def test_sgd_step_is_p_minus_lr_g(lr, g, w):
    p = param([w])
    p.grad = np.array([g])
    SGD([p], lr=lr).step()
    assert p.data[0] == pytest.approx(w - lr * g, abs=1e-12)
