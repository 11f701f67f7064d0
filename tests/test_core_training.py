"""fit / evaluate / accuracy, and end-to-end training on the bundled 8x8 digits.

Accuracy thresholds are asserted here; wall times are measured in `bench/core.py`.
"""

import numpy as np
import pytest

from tinytorch.core import nn, zoo
from tinytorch.core.data import DataLoader, TensorDataset
from tinytorch.core.losses import cross_entropy, mse
from tinytorch.core.optim import SGD, StepLR
from tinytorch.core.tensor import Tensor, is_grad_enabled
from tinytorch.core.train import History, accuracy, evaluate, fit


def train_digits(kind: str, seed: int = 0, epochs: int | None = None):
    """The shared recipe (tinytorch.core.zoo); returns (model, history, test loader)."""
    model, history, data = zoo.train_digits(kind, seed=seed, epochs=epochs)
    return model, history, data.loader("test")


@pytest.mark.slow
def test_mlp_reaches_95_percent_on_digits():
    model, history, test = train_digits("mlp")
    acc = evaluate(model, test)
    assert acc >= 0.95, f"MLP test accuracy {acc:.4f}"
    assert history.train_loss[-1] < history.train_loss[0] / 5
    assert history.val_acc[-1] >= 0.95


@pytest.mark.slow
def test_cnn_reaches_97_percent_on_digits():
    model, history, test = train_digits("cnn")
    acc = evaluate(model, test)
    assert acc >= 0.97, f"CNN test accuracy {acc:.4f}"
    assert history.val_acc[-1] >= 0.97


@pytest.mark.slow
def test_training_is_deterministic_with_seeds():
    _, h1, _ = train_digits("mlp", seed=3, epochs=3)
    _, h2, _ = train_digits("mlp", seed=3, epochs=3)
    _, h3, _ = train_digits("mlp", seed=4, epochs=3)
    assert h1.train_loss == h2.train_loss and h1.val_acc == h2.val_acc
    assert h1.train_loss != h3.train_loss


# ============================================================================ the loop itself
def blobs(n=120, seed=0):
    """Three well-separated Gaussian blobs in 2-D."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 3, size=n)
    centers = np.array([[0.0, 3.0], [3.0, -2.0], [-3.0, -2.0]])
    x = (centers[y] + rng.standard_normal((n, 2)) * 0.5).astype(np.float32)
    return x, y


def test_fit_history_scheduler_and_callbacks():
    x, y = blobs()
    nn.manual_seed(0)
    model = nn.Sequential(nn.Linear(2, 16), nn.Tanh(), nn.Linear(16, 3))
    opt = SGD(model.parameters(), lr=0.2, momentum=0.9)
    loader = DataLoader(TensorDataset(x, y), batch_size=16, shuffle=True, seed=0)
    seen = []
    history = fit(
        model, loader, cross_entropy, opt, epochs=6, val_loader=loader,
        scheduler=StepLR(opt, step_size=2, gamma=0.5), progress=False,
        callbacks=[lambda epoch, h: seen.append((epoch, h.epochs))],
    )  # fmt: skip
    assert isinstance(history, History) and history.epochs == 6
    assert len(history.train_acc) == len(history.val_acc) == len(history.epoch_time) == 6
    assert history.lr == [0.2, 0.2, 0.1, 0.1, 0.05, 0.05]
    assert seen == [(e, e + 1) for e in range(6)]
    assert history.train_loss[-1] < history.train_loss[0]
    assert history.val_acc[-1] == 1.0
    assert all(t > 0 for t in history.epoch_time)


def test_fit_callback_stops_early_and_regression_has_nan_accuracy():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((32, 3)).astype(np.float32)
    y = (x @ np.array([1.0, -2.0, 0.5])).astype(np.float32)[:, None]
    model = nn.Linear(3, 1)
    loader = DataLoader(TensorDataset(x, y), batch_size=8)
    history = fit(
        model, loader, mse, SGD(model.parameters(), lr=0.1), epochs=50, progress=False,
        callbacks=[lambda epoch, h: h.train_loss[-1] < 1e-3],
    )  # fmt: skip
    assert history.epochs < 50 and history.train_loss[-1] < 1e-3
    assert np.isnan(history.train_acc[0]) and history.val_acc == []


def test_fit_with_progress_bar(capsys):
    x, y = blobs(32)
    model = nn.Linear(2, 3)
    loader = DataLoader(TensorDataset(x, y), batch_size=8)
    fit(model, loader, cross_entropy, SGD(model.parameters(), lr=0.1), epochs=2, progress=True)
    err = capsys.readouterr()
    assert "epoch 2/2" in err.out + err.err


def test_evaluate_restores_mode_and_records_no_graph():
    calls = []

    class Probe(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(2, 3)

        def forward(self, x):
            calls.append((self.training, is_grad_enabled()))
            return self.fc(x)

    x, y = blobs(20)
    loader = DataLoader(TensorDataset(x, y), batch_size=8)
    model = Probe()
    acc = evaluate(model, loader)
    assert calls == [(False, False)] * 3
    assert model.training
    model.eval()
    evaluate(model, loader)
    assert not model.training
    expected = (model(Tensor(x)).data.argmax(1) == y).mean()
    assert acc == pytest.approx(expected)


def test_accuracy_and_errors():
    logits = np.array([[0.1, 0.9], [0.8, 0.2], [0.3, 0.7], [0.6, 0.4]])
    assert accuracy(logits, np.array([1, 0, 0, 0])) == 0.75
    assert accuracy(Tensor(logits), Tensor(np.array([1, 0, 1, 0]))) == 1.0
    assert accuracy(np.zeros((2, 3, 4)), np.zeros((2, 3), dtype=np.int64)) == 1.0  # (B, T, C)
    with pytest.raises(ValueError, match=r"\(4, 2\).*\(4,\).*\(3,\)"):
        accuracy(logits, np.array([1, 0, 0]))
    with pytest.raises(ValueError, match="empty"):
        evaluate(nn.Linear(2, 2), [])
    with pytest.raises(ValueError, match=r"\(x, y\)"):
        fit(nn.Linear(2, 2), [(np.ones((1, 2)),)], cross_entropy,
            SGD(nn.Linear(2, 2).parameters(), lr=0.1), epochs=1, progress=False)  # fmt: skip
