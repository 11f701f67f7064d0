"""PyTorch idioms: each does what PyTorch does on the same inputs, or raises saying what to write.

Expected values are literals taken from PyTorch's documented semantics (and checked against
torch 2.13.0 CPU when it was at hand); `test_cross_check_with_real_torch` repeats a few of
them against torch itself where torch is installed (it is not a dependency).
"""

from __future__ import annotations

import io
import os
import pickle
import re
import runpy
import zipfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import tinytorch as torch
import tinytorch.nn as nn
import tinytorch.nn.functional as F
from tinytorch.core.data import DataLoader, TensorDataset
from tinytorch.core.gradcheck import gradcheck
from tinytorch.core.tensor import Tensor, default_dtype
from tinytorch.core.train import fit

ROOT = Path(__file__).resolve().parents[1]


def t(x, **kw) -> Tensor:
    return torch.tensor(x, **kw)


# --------------------------------------------------------------------------- namespace
def test_namespace_a_pytorch_user_expects():
    import tinytorch.optim
    import tinytorch.utils.data

    assert torch.optim.Adam is tinytorch.optim.Adam
    assert torch.utils.data.DataLoader is DataLoader
    assert nn.functional is F and nn.Linear is torch.nn.Linear
    assert torch.tensor([1.0]).dtype == torch.float32 and torch.tensor([1]).dtype == torch.int64
    assert torch.argmax(t([[1.0, 3.0], [4.0, 2.0]]), dim=1).tolist() == [1, 0]
    with torch.no_grad():
        assert not (t([1.0], requires_grad=True) * 2).requires_grad
    assert torch.zeros(2, 3).shape == (2, 3) and torch.ones((2,)).dtype == np.float32
    assert torch.arange(4).dtype == np.int64 and torch.arange(0.0, 1.0, 0.5).tolist() == [0, 0.5]
    torch.manual_seed(3)
    a = torch.randn(2, 2)
    torch.manual_seed(3)
    assert (torch.randn(2, 2) == a).all()


# --------------------------------------------------------------------------- transpose
def test_transpose_swaps_two_dims_like_torch():
    x = t([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]])
    assert x.transpose(0, 1).tolist() == [[1, 4], [2, 5], [3, 6]]  # was silently unchanged
    assert x.transpose(1, 0).tolist() == [[1, 4], [2, 5], [3, 6]]
    assert x.transpose(0, 0).tolist() == x.tolist()
    y = torch.zeros(2, 3, 4)
    assert y.transpose(0, 2).shape == (4, 3, 2) and y.transpose(-1, 1).shape == (2, 4, 3)
    assert y.permute(2, 0, 1).shape == (4, 2, 3)
    assert y.T.shape == (4, 3, 2) and y.transpose().shape == (4, 3, 2)
    with pytest.raises(TypeError, match="permute"):
        y.transpose(2, 0, 1)  # a numpy permutation: refused, not reinterpreted
    with pytest.raises(TypeError, match="permute"):
        x.transpose((1, 0))
    with pytest.raises(IndexError, match="out of range"):
        x.transpose(0, 2)


# --------------------------------------------------------------------------- in place
def test_manual_sgd_loop_updates_parameters_in_place():
    torch.manual_seed(0)
    model = nn.Linear(3, 1)
    x, y = torch.randn(16, 3), torch.randn(16, 1)
    before = model.weight.numpy().copy()
    params = model.parameters()
    losses = []
    for _ in range(20):
        loss = F.mse_loss(model(x), y)
        model.zero_grad()
        loss.backward()
        losses.append(float(loss))
        with torch.no_grad():
            for p in model.parameters():
                p -= 0.1 * p.grad
    assert model.parameters()[0] is params[0]  # same objects, updated in place
    assert not np.array_equal(model.weight.numpy(), before)
    assert losses[-1] < losses[0] * 0.8


def test_in_place_ops_on_tensors_share_storage():
    a = t([1.0, 2.0])
    alias, view = a, a.numpy()
    a += 1
    a *= t([2.0, 3.0])
    a -= 1
    a /= 2
    assert alias is a and a.tolist() == [1.5, 4.0] and view.tolist() == [1.5, 4.0]
    a[0] = 7.0
    assert a.tolist() == [7.0, 4.0]
    i = t([1, 2])
    with pytest.raises(TypeError, match="in-place"):
        i += 0.5  # int64 cannot hold a float result (torch: same error)
    with pytest.raises(ValueError, match=r"shape \(2,\)"):
        a += t([1.0, 2.0, 3.0])


def test_in_place_on_a_leaf_that_requires_grad_raises_like_torch():
    w = t([1.0, 2.0], requires_grad=True)
    with pytest.raises(RuntimeError, match="leaf Tensor that requires grad.*no_grad"):
        w -= 0.1
    with pytest.raises(RuntimeError, match="leaf Tensor"):
        w[0] = 3.0
    h = w * 2  # a non-leaf in a graph: refused with the out-of-place spelling
    with pytest.raises(RuntimeError, match="x = x"):
        h += 1
    with torch.no_grad():
        w -= 0.5
    assert w.tolist() == [0.5, 1.5] and w.requires_grad


# --------------------------------------------------------------------------- comparisons
def test_comparisons_return_boolean_tensors():
    pred, y = t([0, 2, 1, 1]), t([0, 1, 1, 1])
    eq = pred == y
    assert isinstance(eq, Tensor) and eq.dtype == np.bool_
    assert eq.tolist() == [True, False, True, True]
    assert (pred != y).tolist() == [False, True, False, False]
    assert (pred < 2).tolist() == [True, False, True, True]
    assert (pred >= y).tolist() == [True, True, True, True]
    acc = (pred == y).float().mean()
    assert isinstance(acc, Tensor) and float(acc) == 0.75
    # ndarray on the left: numpy defers to the Tensor (a Tensor, not a numpy array of objects)
    left = np.array([0, 1, 1, 1]) == pred
    assert isinstance(left, Tensor) and left.tolist() == [True, False, True, True]
    assert isinstance(np.ones(2) + t([1.0, 2.0]), Tensor)
    assert (t([1.0]) == None) is False  # noqa: E711 - torch returns False
    with pytest.raises(RuntimeError, match="ambiguous"):
        bool(pred == y)
    assert bool(t([3]) == t([3]))
    d = {pred: 1}  # tensors stay hashable (by identity), as in torch
    assert d[pred] == 1


# --------------------------------------------------------------------------- Python scalars
def test_float_int_and_format_specs():
    loss = t([0.25, 0.5]).mean()
    assert float(loss) == 0.375 and int(t(3.7)) == 3
    assert f"{loss:.3f}" == "0.375" and f"{t([2.0]):>6.1f}" == "   2.0"
    assert f"{loss}" == str(loss)
    assert [10, 20, 30][t(1)] == 20  # __index__ for integer tensors
    with pytest.raises(TypeError, match=r"one element.*\(2,\)"):
        float(t([1.0, 2.0]))
    with pytest.raises(TypeError, match="format spec"):
        f"{t([1.0, 2.0]):.2f}"


# --------------------------------------------------------------------------- reductions
def test_max_and_min_with_dim_return_values_and_indices():
    x = t([[1.0, 5.0, 3.0], [4.0, 2.0, 6.0]])
    values, indices = x.max(1)
    assert values.tolist() == [5.0, 6.0] and indices.tolist() == [1, 2]
    assert indices.dtype == np.int64
    _, pred = t([[0.1, 0.9], [0.8, 0.2]]).max(1)  # batch of 2: was the row maxima
    assert pred.tolist() == [1, 0]
    r = x.max(dim=0, keepdim=True)
    assert r.values.tolist() == [[4.0, 5.0, 6.0]] and r.indices.tolist() == [[1, 0, 1]]
    assert x.min(1).indices.tolist() == [0, 1] and x.min(1).values.tolist() == [1.0, 2.0]
    assert float(x.max()) == 6.0 and float(x.min()) == 1.0
    # numpy spelling: axis= gives the values, like ndarray.max(axis=)
    assert x.max(axis=1).tolist() == [5.0, 6.0]
    assert x.max(axis=1, keepdims=True).shape == (2, 1)
    assert x.amax(dim=(0, 1)).item() == 6.0
    with pytest.raises(TypeError, match="not both"):
        x.max(1, axis=1)
    with pytest.raises(TypeError, match="amax"):
        x.max((0, 1))
    # gradient flows through the values
    w = t([[1.0, 3.0], [2.0, 0.0]], requires_grad=True)
    w.max(1).values.sum().backward()
    assert w.grad.tolist() == [[0.0, 1.0], [1.0, 0.0]]


def test_dim_and_keepdim_beside_axis_and_keepdims():
    x = t([[1.0, 2.0], [3.0, 4.0]])
    assert x.sum(dim=0).tolist() == [4.0, 6.0] == x.sum(axis=0).tolist()
    assert x.sum(1, keepdim=True).tolist() == [[3.0], [7.0]]
    assert x.mean(dim=(0, 1)).item() == 2.5 and x.mean(dim=[0, 1]).item() == 2.5
    assert x.mean(dim=1, keepdim=True).shape == (2, 1)
    np.testing.assert_allclose(x.softmax(dim=0).sum(axis=0).numpy(), [1.0, 1.0], rtol=1e-6)
    np.testing.assert_allclose(F.log_softmax(t([[1.0, 2.0, 3.0]]), dim=1).numpy(),
                               [[-2.4076059, -1.4076059, -0.4076059]], rtol=1e-6)
    assert abs(x.var().item() - 1.6666666) < 1e-6  # torch: unbiased by default
    with pytest.raises(TypeError, match="both axis= and dim="):
        x.sum(axis=0, dim=0)
    with pytest.raises(TypeError, match="both keepdims= and keepdim="):
        x.mean(0, keepdims=True, keepdim=True)


def test_size_numel_and_dim():
    x = torch.zeros(2, 3, 4)
    assert x.size() == (2, 3, 4) and isinstance(x.size(), torch.Size)
    assert x.size(1) == 3 and x.size(-1) == 4 and x.size().numel() == 24
    assert x.numel() == 24 and x.dim() == 3 and x.ndim == 3
    with pytest.raises(TypeError, match=r"size\(\).*numel"):
        x.size == 24  # noqa: B015 - numpy's int attribute: refused, never silently False
    with pytest.raises(TypeError, match="numel"):
        sum(p.size for p in [x])
    with pytest.raises(IndexError, match="out of range"):
        x.size(3)


def test_tensor_methods_argmax_unsqueeze_squeeze_clone_to():
    x = t([[1.0, 9.0, 3.0], [7.0, 2.0, 8.0]])
    assert x.argmax().item() == 1 and x.argmax(dim=1).tolist() == [1, 2]
    assert x.argmin(dim=0).tolist() == [0, 1, 0] and x.argmax(1, keepdim=True).shape == (2, 1)
    assert x.unsqueeze(0).shape == (1, 2, 3) and x.unsqueeze(-1).shape == (2, 3, 1)
    assert torch.zeros(1, 2, 1).squeeze().shape == (2,)
    assert torch.zeros(1, 2, 1).squeeze(0).shape == (2, 1)
    assert torch.zeros(1, 2, 1).squeeze(1).shape == (1, 2, 1)  # dim 1 is not 1: unchanged
    w = t([1.0, 2.0], requires_grad=True)
    c = w.clone()
    assert c.data is not w.data and c.requires_grad
    (c * 3).sum().backward()
    assert w.grad.tolist() == [3.0, 3.0]
    assert t([1, 2]).float().dtype == np.float32 and x.double().dtype == np.float64
    assert x.to(torch.float64).dtype == np.float64 and x.to("cpu") is x
    assert x.to("cpu", torch.float16).dtype == np.float16 and x.long().dtype == np.int64
    with pytest.raises(ValueError, match="CPU"):
        x.to("cuda")
    v = t([1.0]).requires_grad_()
    assert v.requires_grad and v.is_leaf
    h = v * 2
    assert h.detach_() is h and not h.requires_grad and h.is_leaf


# --------------------------------------------------------------------------- dtypes (issue 14)
def test_dtype_rule_is_honoured_not_silently_float32():
    a64 = np.arange(3, dtype=np.float64)
    assert Tensor(a64).dtype == np.float64  # torch.tensor(float64 array) is float64
    assert Tensor(a64.astype(np.float16)).dtype == np.float16
    assert Tensor([0.5, 1.5]).dtype == np.float32  # Python floats: the default dtype
    x = Tensor([1.0, 2.0])
    assert x.astype(np.float64).dtype == np.float64  # was float32
    assert x.astype(np.float16).dtype == np.float16  # was float32
    assert x.astype("float64").dtype == np.float64 and x.astype(np.int32).dtype == np.int32
    w = Tensor([1.0, 2.0], requires_grad=True)
    (w.astype(np.float64) * 2).sum().backward()
    assert w.grad.dtype == np.float32 and w.grad.tolist() == [2.0, 2.0]
    with pytest.raises(TypeError, match="unknown dtype"):
        x.astype("float31")
    with pytest.raises(TypeError, match="bool, int or float"):
        x.astype(np.complex64)
    # parameters follow the default dtype; a module casts with .to()
    lin = nn.Linear(2, 2)
    assert lin.weight.dtype == np.float32
    assert lin.to(torch.float64) is lin and lin.weight.dtype == np.float64
    with pytest.raises(ValueError, match="CPU"):
        lin.to("cuda:0")


# --------------------------------------------------------------------------- layer arguments
def test_linear_rejects_sizes_that_are_not_ints_naming_the_mistake():
    with pytest.raises(TypeError, match=r"in_features must be an int, got str '64' \(write 64"):
        nn.Linear("64", 10)
    with pytest.raises(TypeError, match=r"in_features must be an int, got float 64.5"):
        nn.Linear(64.5, 10)
    with pytest.raises(TypeError, match=r"out_features.*float 10.0 \(write 10\)"):
        nn.Linear(64, 10.0)
    with pytest.raises(TypeError, match="bool"):
        nn.Linear(True, 2)
    with pytest.raises(ValueError, match="out_features must be positive, got 0"):
        nn.Linear(3, 0)
    assert nn.Linear(np.int64(3), 2).in_features == 3


# --------------------------------------------------------------------------- functional
def test_functional_activations_match_torch_values():
    x = t([-2.0, -0.5, 0.0, 1.0, 3.0])
    np.testing.assert_allclose(  # torch F.gelu default: exact erf form
        F.gelu(x).numpy(), [-0.0455003, -0.1542688, 0.0, 0.8413447, 2.9959497], atol=1e-6)
    np.testing.assert_allclose(
        F.gelu(x, approximate="tanh").numpy(),
        [-0.0454023, -0.154286, 0.0, 0.841192, 2.9963627], atol=1e-6)
    np.testing.assert_allclose(nn.GELU()(x).numpy(), F.gelu(x).numpy())
    assert F.relu(x).tolist() == [0.0, 0.0, 0.0, 1.0, 3.0]
    np.testing.assert_allclose(F.layer_norm(t([[1.0, 2.0, 4.0]]), (3,)).numpy(),
                               [[-1.0690414, -0.2672603, 1.3363018]], rtol=1e-5)
    assert F.dropout(x, 0.5, training=False) is not None
    np.testing.assert_array_equal(F.dropout(x, 0.5, training=False).numpy(), x.numpy())
    assert F.one_hot(t([0, 2])).tolist() == [[1, 0, 0], [0, 0, 1]]
    with default_dtype(np.float64):
        z = Tensor(np.linspace(-3, 3, 7), requires_grad=True)
        assert gradcheck(lambda a: F.gelu(a), [z]) <= 1e-6


def test_functional_linear_takes_pytorch_weight_layout():
    x = t([[1.0, 2.0]])
    w = t([[1.0, 0.0], [3.0, 1.0]])  # torch (out, in): y = x @ w.T
    assert F.linear(x, w, t([0.5, 0.5])).tolist() == [[1.5, 5.5]]
    layer = nn.Linear(2, 2)  # ours stores (in, out); its tag makes F.linear agree with layer(x)
    np.testing.assert_array_equal(F.linear(x, layer.weight, layer.bias).numpy(),
                                  layer(x).numpy())
    with pytest.raises(ValueError, match=r"\(out, in\) = \(2, 3\)"):
        F.linear(x, torch.zeros(2, 3))


def test_cross_entropy_and_mse_match_torch():
    logits, y = t([[2.0, 0.5, -1.0], [0.1, 0.2, 0.3]]), t([0, 2])
    assert abs(F.cross_entropy(logits, y).item() - 0.6216271) < 1e-6
    np.testing.assert_allclose(F.cross_entropy(logits, y, reduction="none").numpy(),
                               [0.2413113, 1.0019429], rtol=1e-6)
    assert abs(F.cross_entropy(logits, y, reduction="sum").item() - 1.2432542) < 1e-6
    assert abs(F.cross_entropy(logits, y, label_smoothing=0.1).item() - 0.7016271) < 1e-6
    assert abs(nn.CrossEntropyLoss()(logits, y).item() - 0.6216271) < 1e-6
    # (N, C, d1): torch reads classes on dim 1
    lo3, t3 = torch.arange(12.0).reshape(2, 3, 2) / 5, t([[0, 2], [1, 1]])
    assert abs(F.cross_entropy(lo3, t3).item() - 1.1512505) < 1e-6
    a, b = t([1.0, 2.0, 3.0]), t([1.0, 0.0, 0.0])
    assert abs(F.mse_loss(a, b).item() - 4.3333335) < 1e-6
    assert nn.MSELoss(reduction="sum")(a, b).item() == 13.0
    assert nn.MSELoss(reduction="none")(a, b).tolist() == [0.0, 4.0, 9.0]
    with pytest.raises(ValueError, match="reduction"):
        nn.MSELoss(reduction="avg")
    w = t([[2.0, 0.5, -1.0]], requires_grad=True)
    F.cross_entropy(w, t([0]), reduction="sum").backward()
    np.testing.assert_allclose(w.grad.sum(), 0.0, atol=1e-6)


# --------------------------------------------------------------------------- BatchNorm, Conv1d
def test_batchnorm1d_train_and_eval_match_torch():
    bn = nn.BatchNorm1d(2)
    x = t([[1.0, 2.0], [3.0, 6.0], [5.0, 10.0]])
    np.testing.assert_allclose(bn(x).numpy(), [[-1.2247427, -1.2247443], [0.0, 0.0],
                                               [1.2247427, 1.2247443]], atol=1e-6)
    np.testing.assert_allclose(bn.running_mean, [0.3, 0.6], rtol=1e-6)
    np.testing.assert_allclose(bn.running_var, [1.3, 2.5], rtol=1e-6)  # unbiased batch var
    assert int(bn.num_batches_tracked) == 1
    assert set(bn.state_dict()) == {"weight", "bias", "running_mean", "running_var",
                                    "num_batches_tracked"}
    bn.eval()
    np.testing.assert_allclose(bn(t([[2.0, 4.0]])).numpy(), [[1.490993, 2.1503446]], rtol=1e-5)
    with pytest.raises(ValueError, match="more than 1 value per channel"):
        nn.BatchNorm1d(2).train()(t([[1.0, 2.0]]))
    with pytest.raises(ValueError, match="2 channels in dim 1"):
        bn(torch.zeros(3, 4))


def test_batchnorm_gradients_match_finite_differences():
    rng = np.random.default_rng(0)
    with default_dtype(np.float64):
        for layer, shape in ((nn.BatchNorm1d(3), (5, 3)), (nn.BatchNorm1d(2), (4, 2, 3)),
                             (nn.BatchNorm2d(2), (3, 2, 2, 2))):
            layer.weight.data = rng.uniform(0.5, 1.5, layer.weight.shape)
            x = Tensor(rng.standard_normal(shape), requires_grad=True)
            assert gradcheck(lambda a, w, b, m=layer: m(a), [x, layer.weight, layer.bias]) < 1e-5
            layer.eval()
            assert gradcheck(lambda a, m=layer: m(a), [x]) < 1e-5


def test_conv1d_matches_torch_and_gradcheck():
    conv = nn.Conv1d(1, 1, 2, bias=False)
    conv.weight.data = np.array([[[1.0, -1.0]]], dtype=np.float32)
    assert conv(t([[[1.0, 4.0, 9.0, 16.0]]])).tolist() == [[[-3.0, -5.0, -7.0]]]
    c2 = nn.Conv1d(2, 3, 3, stride=2, padding=1)
    assert c2(torch.zeros(4, 2, 7)).shape == (4, 3, 4)  # (7 + 2 - 3) // 2 + 1
    assert c2.weight.shape == (3, 2, 3)  # torch layout (out, in, k)
    with default_dtype(np.float64):
        c = nn.Conv1d(2, 3, 3, stride=2, padding=1)
        x = Tensor(np.random.default_rng(1).standard_normal((2, 2, 6)), requires_grad=True)
        assert gradcheck(lambda a, w, b: c(a), [x, c.weight, c.bias]) < 1e-5
    with pytest.raises(ValueError, match=r"expects input \(N, 2, L\)"):
        c2(torch.zeros(4, 3, 7))
    with pytest.raises(TypeError, match="kernel_size must be an int"):
        nn.Conv1d(1, 1, 2.5)


# --------------------------------------------------------------------------- save / load
def test_save_load_state_dict_tensor_and_model(tmp_path):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 8), nn.BatchNorm1d(8), nn.ReLU(), nn.Linear(8, 2))
    model(torch.randn(5, 4))  # move the running stats
    path = tmp_path / "m.pt"
    torch.save(model.state_dict(), path)
    assert path.exists() and not (tmp_path / "m.pt.npz").exists()
    sd = torch.load(path)
    assert sd.keys() == model.state_dict().keys()
    for k, v in model.state_dict().items():
        np.testing.assert_array_equal(sd[k], v)
        assert sd[k].dtype == v.dtype
    assert torch.load(path, map_location="cpu", weights_only=True).keys() == sd.keys()
    with pytest.raises(ValueError, match="CPU"):
        torch.load(path, map_location="cuda:0")
    torch.save(t([[1.0, 2.0]]), tmp_path / "t.pt")
    assert torch.load(tmp_path / "t.pt").tolist() == [[1.0, 2.0]]
    torch.save(model, tmp_path / "full.pt")  # a model: its recipe + state, no pickle
    back = torch.load(tmp_path / "full.pt")
    assert type(back) is nn.Sequential and repr(back) == repr(model)
    model.eval()
    back.eval()
    x = torch.randn(3, 4)
    np.testing.assert_array_equal(back(x).numpy(), model(x).numpy())
    with zipfile.ZipFile(path) as z:  # nothing in the file is a pickle
        assert not any(n.endswith(".pkl") for n in z.namelist())


def test_save_load_rebuilds_a_gpt_and_a_user_model(tmp_path):
    from tinytorch.core.transformer import GPTConfig, TinyGPT

    gpt = TinyGPT(GPTConfig(vocab_size=11, block_size=8, n_layer=1, n_head=2, d_model=8), seed=1)
    torch.save(gpt, tmp_path / "gpt.pt")
    back = torch.load(tmp_path / "gpt.pt")
    assert back.config == gpt.config
    idx = np.array([[1, 2, 3]])
    np.testing.assert_array_equal(back(idx).numpy(), gpt(idx).numpy())

    torch.save(_UserNet(5), tmp_path / "user.pt")
    assert torch.load(tmp_path / "user.pt").fc.out_features == 5
    with pytest.raises(TypeError, match="save model.state_dict"):
        torch.save(_OpaqueArg(object()), tmp_path / "x.pt")


class _UserNet(nn.Module):
    def __init__(self, width):
        super().__init__()
        self.fc = nn.Linear(2, width)


class _OpaqueArg(nn.Module):
    def __init__(self, thing):
        super().__init__()


def test_load_refuses_files_that_are_not_ours(tmp_path):
    np.savez(tmp_path / "plain.npz", w=np.ones(2))
    with pytest.raises(ValueError, match="not a file written by tinytorch.save.*without"):
        torch.load(tmp_path / "plain.npz")
    (tmp_path / "p.pkl").write_bytes(pickle.dumps({"w": [1.0]}))
    with pytest.raises(ValueError, match="never unpickles"):
        torch.load(tmp_path / "p.pkl")
    buf = io.BytesIO()  # the shape of a torch.save checkpoint: a zip with data.pkl
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("archive/data.pkl", pickle.dumps({}))
    (tmp_path / "torch.pt").write_bytes(buf.getvalue())
    with pytest.raises(ValueError, match="PyTorch checkpoint"):
        torch.load(tmp_path / "torch.pt")
    (tmp_path / "junk.bin").write_bytes(b"hello world, not a tensor file")
    with pytest.raises(ValueError, match="not a tinytorch file"):
        torch.load(tmp_path / "junk.bin")
    with pytest.raises(FileNotFoundError):
        torch.load(tmp_path / "missing.pt")
    with pytest.raises(TypeError, match="never pickles"):
        torch.save([1, 2], tmp_path / "list.pt")


def test_load_state_dict_names_missing_unexpected_and_misshaped_keys():
    model = nn.Sequential(nn.Linear(3, 4), nn.Linear(4, 2))
    sd = model.state_dict()
    sd["1.weight"] = np.zeros((2, 4))  # transposed
    del sd["0.bias"]
    sd["extra"] = np.zeros(1)
    with pytest.raises(KeyError, match=r"missing keys \['0.bias'\].*unexpected keys "
                                       r"\['extra'\].*1.weight.*\(4, 2\).*\(2, 4\)"):
        model.load_state_dict(sd)
    with pytest.raises(ValueError, match=r"1.weight.*PyTorch stores \(out, in\)"):
        model.load_state_dict(sd, strict=False)
    sd["1.weight"] = np.zeros((4, 2))
    result = model.load_state_dict(sd, strict=False)
    assert result.missing_keys == ["0.bias"] and result.unexpected_keys == ["extra"]


class _FakeTorchTensor:
    """Stands in for torch.Tensor where torch is not installed (same module name)."""

    __module__ = "torch"

    def __init__(self, a):
        self.a = np.asarray(a, dtype=np.float32)

    def detach(self):
        return self

    def cpu(self):
        return self

    def numpy(self):
        return self.a


def test_a_square_pytorch_linear_weight_can_never_load_transposed():
    w = np.array([[1.0, 2.0], [3.0, 4.0]], dtype=np.float32)  # torch (out, in)
    b = np.array([0.5, -0.5], dtype=np.float32)
    layer = nn.Linear(2, 2)
    with pytest.raises(TypeError, match="PyTorch state_dict.*from_pytorch_state_dict"):
        layer.load_state_dict({"weight": _FakeTorchTensor(w), "bias": _FakeTorchTensor(b)})
    layer.load_state_dict(torch.utils.from_pytorch_state_dict(
        {"weight": _FakeTorchTensor(w), "bias": _FakeTorchTensor(b)}, layer))
    x = t([[1.0, 1.0]])
    np.testing.assert_allclose(layer(x).numpy(), [[3.5, 6.5]])  # torch: x @ w.T + b
    layer.load_state_dict(torch.utils.from_pytorch_state_dict({"weight": w, "bias": b}, layer))
    np.testing.assert_allclose(layer(x).numpy(), [[3.5, 6.5]])
    with pytest.raises(ValueError, match=r"weight: PyTorch layout \(out, in\) = \(2, 2\)"):
        torch.utils.from_pytorch_state_dict({"weight": np.zeros((2, 3))}, layer)


def test_pytorch_state_dicts_of_conv_and_gpt_convert():
    from tinytorch.core.transformer import GPTConfig, TinyGPT

    torch.manual_seed(0)
    cnn = nn.Sequential(nn.Conv2d(1, 2, 3), nn.Flatten(), nn.Linear(2 * 2 * 2, 3))
    w_conv = np.arange(18, dtype=np.float32).reshape(2, 1, 3, 3) / 10  # same layout as torch
    w_lin = np.arange(24, dtype=np.float32).reshape(3, 8) / 100  # torch (out, in)
    pt = {"0.weight": w_conv, "0.bias": np.zeros(2, np.float32), "2.weight": w_lin,
          "2.bias": np.zeros(3, np.float32)}
    cnn.load_state_dict(torch.utils.from_pytorch_state_dict(pt, cnn))
    x = np.arange(16, dtype=np.float32).reshape(1, 1, 4, 4)
    conv = np.array([[(x[0, 0, i:i + 3, j:j + 3] * w_conv[o, 0]).sum() for i in range(2)
                      for j in range(2)] for o in range(2)]).reshape(1, 8)  # torch's order
    np.testing.assert_allclose(cnn(x).numpy(), conv @ w_lin.T, rtol=1e-5)

    cfg = GPTConfig(vocab_size=13, block_size=8, n_layer=2, n_head=2, d_model=8)
    src, dst = TinyGPT(cfg, seed=1), TinyGPT(cfg, seed=2)
    linears = {f"{n}.weight" for n, m in src.named_modules() if isinstance(m, nn.Linear)}
    pt_gpt = {k: (v.T if k in linears else v) for k, v in src.state_dict().items()}
    dst.load_state_dict(torch.utils.from_pytorch_state_dict(pt_gpt, dst))
    idx = np.array([[1, 5, 7, 2]])
    np.testing.assert_array_equal(dst(idx).numpy(), src(idx).numpy())


# --------------------------------------------------------------------------- data and fit
def test_dataloader_yields_tensors_with_pytorch_default_batch_size():
    x, y = np.arange(6, dtype=np.float32).reshape(3, 2), np.arange(3)
    loader = DataLoader(TensorDataset(x, y))
    assert loader.batch_size == 1 and len(loader) == 3
    xb, yb = next(iter(loader))
    assert isinstance(xb, Tensor) and xb.shape == (1, 2) and xb.dtype == np.float32
    assert isinstance(yb, Tensor) and yb.dtype == np.int64
    xn, _ = next(iter(DataLoader(TensorDataset(x, y), batch_size=2, as_numpy=True)))
    assert isinstance(xn, np.ndarray) and xn.shape == (2, 2)


class _Stream(io.StringIO):
    def __init__(self, tty: bool):
        super().__init__()
        self._tty = tty

    def isatty(self) -> bool:
        return self._tty


class _KernelStream(_Stream):
    """Looks like ipykernel's OutStream (not a tty, but Jupyter renders the bar)."""


_KernelStream.__module__ = "ipykernel.iostream"


@pytest.mark.parametrize("tty", [False, True, "jupyter"])
def test_fit_draws_a_progress_bar_only_on_a_terminal(monkeypatch, capsys, tty):
    rng = np.random.default_rng(0)
    x, y = rng.standard_normal((64, 2)).astype(np.float32), rng.integers(0, 2, 64)
    stream = _KernelStream(False) if tty == "jupyter" else _Stream(tty)
    monkeypatch.setattr("sys.stderr", stream)
    model = nn.Linear(2, 2)
    fit(model, DataLoader(TensorDataset(x, y), batch_size=4), F.cross_entropy,
        torch.optim.SGD(model.parameters(), lr=0.1), epochs=2, progress=True)
    bar = stream.getvalue()
    if tty:
        assert "\r" in bar and "epoch 1/2" in bar  # the live bar
    else:
        assert bar == ""  # no bar refresh lines in a log
    assert "epoch 2/2: loss" in capsys.readouterr().out  # one summary line per epoch


# --------------------------------------------------------------------------- the first script
def test_a_pytorch_users_first_script_runs(tmp_path, capsys):
    ns = runpy.run_path(str(ROOT / "docs" / "examples" / "pytorch_first_script.py"))
    # "PyTorch" weights for the script's Net, in PyTorch's layout ((out, in) Linear weights)
    rng = np.random.default_rng(7)
    pt = {
        "fc1.weight": rng.standard_normal((32, 2)).astype(np.float32),
        "fc1.bias": rng.standard_normal(32).astype(np.float32),
        "bn.weight": rng.uniform(0.5, 1.5, 32).astype(np.float32),
        "bn.bias": rng.standard_normal(32).astype(np.float32),
        "bn.running_mean": rng.standard_normal(32).astype(np.float32),
        "bn.running_var": rng.uniform(0.5, 2.0, 32).astype(np.float32),
        "bn.num_batches_tracked": np.array(10, dtype=np.int64),
        "fc2.weight": rng.standard_normal((3, 32)).astype(np.float32),
        "fc2.bias": rng.standard_normal(3).astype(np.float32),
    }
    path = tmp_path / "pytorch_weights.npz"
    np.savez(path, **pt)
    out = ns["main"](os.fspath(path), epochs=3)
    assert out["accuracy"] > 0.9 and out["roundtrip"]
    # what PyTorch computes for these weights (eval mode): fc2(relu(bn(fc1(x))))
    x = ns["make_data"]()[0].numpy()[:4]
    h = x @ pt["fc1.weight"].T + pt["fc1.bias"]
    h = (h - pt["bn.running_mean"]) / np.sqrt(pt["bn.running_var"] + 1e-5) * pt["bn.weight"]
    h = np.maximum(h + pt["bn.bias"], 0)
    np.testing.assert_allclose(out["pytorch_logits"], h @ pt["fc2.weight"].T + pt["fc2.bias"],
                               rtol=1e-4, atol=1e-5)
    assert "accuracy" in capsys.readouterr().out


# --------------------------------------------------------------------------- real torch
def test_cross_check_with_real_torch():
    real = pytest.importorskip("torch")  # optional: the literals above are the CI check
    rf = real.nn.functional
    x = np.array([[1.0, 5.0, 3.0], [4.0, 2.0, 6.0]], dtype=np.float32)
    a, b = real.tensor(x), t(x)
    assert a.transpose(0, 1).tolist() == b.transpose(0, 1).tolist()
    assert a.max(1).indices.tolist() == b.max(1).indices.tolist()
    assert a.argmax().item() == b.argmax().item()
    np.testing.assert_allclose(rf.gelu(a).numpy(), F.gelu(b).numpy(), atol=1e-6)
    y = real.tensor([0, 2])
    np.testing.assert_allclose(rf.cross_entropy(a, y, label_smoothing=0.2).item(),
                               F.cross_entropy(b, t([0, 2]), label_smoothing=0.2).item(),
                               rtol=1e-6)
    lin = real.nn.Linear(3, 3)
    ours = nn.Linear(3, 3)
    ours.load_state_dict(torch.utils.from_pytorch_state_dict(lin.state_dict(), ours))
    with real.no_grad():
        np.testing.assert_allclose(lin(a).numpy(), ours(b).numpy(), rtol=1e-5, atol=1e-6)
    with pytest.raises(TypeError, match="PyTorch state_dict"):
        ours.load_state_dict(lin.state_dict())
    bn_t, bn_o = real.nn.BatchNorm2d(2), nn.BatchNorm2d(2)
    z = np.random.default_rng(0).standard_normal((3, 2, 4, 4)).astype(np.float32)
    np.testing.assert_allclose(bn_t(real.tensor(z)).detach().numpy(), bn_o(t(z)).numpy(),
                               atol=1e-5)
    np.testing.assert_allclose(bn_t.running_var.numpy(), bn_o.running_var, rtol=1e-5)


def test_first_script_runs_under_real_torch_with_only_the_imports_changed(tmp_path):
    pytest.importorskip("torch")  # optional: shows the script is PyTorch code
    src = (ROOT / "docs" / "examples" / "pytorch_first_script.py").read_text()
    swapped = (src.replace("import tinytorch as torch", "import torch")
               .replace("import tinytorch.nn as nn", "import torch.nn as nn")
               .replace("import tinytorch.nn.functional as F", "import torch.nn.functional as F")
               .replace("from tinytorch.utils.data import", "from torch.utils.data import"))
    code = re.sub(r"#.*", "", swapped.split('"""', 2)[2])  # the code, without comments
    assert "tinytorch" not in code
    (tmp_path / "script.py").write_text(swapped)
    out = runpy.run_path(str(tmp_path / "script.py"))["main"](None, epochs=2)
    assert out["accuracy"] > 0.9 and out["roundtrip"]


# --------------------------------------------------------------------------- invariants
_shapes = st.lists(st.integers(1, 4), min_size=1, max_size=4)


@settings(max_examples=60, deadline=None)
@given(shape=_shapes, data=st.data())
def test_transpose_max_and_argmax_agree_with_numpy_definitions(shape, data):
    arr = np.random.default_rng(len(shape)).standard_normal(shape).astype(np.float32)
    x = Tensor(arr)
    d0 = data.draw(st.integers(-len(shape), len(shape) - 1))
    d1 = data.draw(st.integers(-len(shape), len(shape) - 1))
    np.testing.assert_array_equal(x.transpose(d0, d1).numpy(), np.swapaxes(arr, d0, d1))
    values, indices = x.max(d0)
    np.testing.assert_array_equal(values.numpy(), arr.max(axis=d0))
    np.testing.assert_array_equal(indices.numpy(), arr.argmax(axis=d0))
    np.testing.assert_array_equal(x.argmin(d1, keepdim=True).numpy(),
                                  arr.argmin(axis=d1, keepdims=True))
    np.testing.assert_allclose(x.sum(dim=d0, keepdim=True).numpy(),
                               arr.sum(axis=d0, keepdims=True), rtol=1e-5, atol=1e-5)
    assert x.unsqueeze(d0).squeeze(d0 if d0 < 0 else d0).shape == x.shape
    assert x.size() == tuple(shape) and x.numel() == arr.size


@settings(max_examples=40, deadline=None)
@given(shape=_shapes)
def test_state_dict_save_load_round_trip_is_exact(tmp_path_factory, shape):
    arr = np.random.default_rng(0).standard_normal(shape)
    sd = {"a.weight": arr.astype(np.float32), "b": arr.astype(np.float64),
          "n": np.arange(len(shape), dtype=np.int64)}
    path = tmp_path_factory.mktemp("sd") / "sd.pt"
    torch.save(sd, path)
    back = torch.load(path)
    assert list(back) == list(sd)
    for k in sd:
        assert back[k].dtype == sd[k].dtype
        np.testing.assert_array_equal(back[k], sd[k])


def test_zero_grad_set_to_none_false_zeroes_in_place():
    layer = nn.Linear(2, 1)
    opt = torch.optim.SGD(layer.parameters(), lr=0.1)
    layer(t([[1.0, 2.0]])).sum().backward()
    g = layer.weight.grad
    opt.zero_grad(set_to_none=False)
    assert layer.weight.grad is g and not g.any()
    layer.zero_grad()
    assert layer.weight.grad is None
    layer(t([[1.0, 2.0]])).sum().backward()
    layer.zero_grad(set_to_none=False)
    assert layer.weight.grad is not None and not layer.weight.grad.any()


def test_no_grad_works_as_a_decorator():
    @torch.no_grad()
    def infer(x):
        return x * 2

    assert not infer(t([1.0], requires_grad=True)).requires_grad
