"""Reference models and training recipes on the bundled data.

The optimization modules (15-20), the tests and the benchmarks all start from these, so "the
digits MLP" means the same model everywhere. Accuracies are asserted in
`tests/test_core_training.py`; wall times are measured in `bench/core.py`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from tinytorch.core import nn
from tinytorch.core.data import DataLoader, TensorDataset
from tinytorch.core.losses import cross_entropy
from tinytorch.core.optim import AdamW, CosineLR
from tinytorch.core.train import History, fit
from tinytorch.datasets import load_digits, load_digits_images

__all__ = ["DigitsData", "standardize", "digits_data", "digits_mlp", "digits_cnn", "train_digits"]


def standardize(train: np.ndarray, *others: np.ndarray) -> list[np.ndarray]:
    """Per-pixel standardisation with train statistics (+0.1 keeps blank border pixels finite)."""
    mu = train.mean(axis=0, keepdims=True)
    sd = train.std(axis=0, keepdims=True) + 0.1
    return [((a - mu) / sd).astype(np.float32) for a in (train, *others)]


@dataclass
class DigitsData:
    """Standardised digits splits as arrays; `loader(split)` wraps one in a DataLoader."""

    x_train: np.ndarray
    y_train: np.ndarray
    x_val: np.ndarray
    y_val: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray

    def loader(self, split: str, batch_size: int = 256, shuffle: bool = False, seed=None):
        x, y = getattr(self, f"x_{split}"), getattr(self, f"y_{split}")
        return DataLoader(TensorDataset(x, y), batch_size=batch_size, shuffle=shuffle, seed=seed)


def digits_data(images: bool = False) -> DigitsData:
    """The digits splits, standardised; `images=True` gives (N, 1, 8, 8) for CNNs."""
    load = load_digits_images if images else load_digits
    (xtr, ytr), (xva, yva), (xte, yte) = load("train"), load("val"), load("test")
    xtr, xva, xte = standardize(xtr, xva, xte)
    return DigitsData(xtr, ytr, xva, yva, xte, yte)


def digits_mlp(hidden: int = 256) -> nn.Sequential:
    """64 -> hidden -> 10 MLP for flattened 8x8 digits."""
    return nn.Sequential(nn.Linear(64, hidden), nn.ReLU(), nn.Linear(hidden, 10))


def digits_cnn() -> nn.Sequential:
    """Two conv/pool stages and a linear head for (N, 1, 8, 8) digits."""
    return nn.Sequential(
        nn.Conv2d(1, 16, 3, padding=1),  # (N, 16, 8, 8)
        nn.ReLU(),
        nn.MaxPool2d(2),  # (N, 16, 4, 4)
        nn.Conv2d(16, 32, 3, padding=1),  # (N, 32, 4, 4)
        nn.ReLU(),
        nn.MaxPool2d(2),  # (N, 32, 2, 2)
        nn.Flatten(),  # (N, 128)
        nn.Linear(128, 10),
    )


def train_digits(
    kind: str = "mlp",
    seed: int = 0,
    epochs: int | None = None,
    model: nn.Module | None = None,
    data: DigitsData | None = None,
) -> tuple[nn.Module, History, DigitsData]:
    """Train the MLP (`kind="mlp"`) or CNN (`"cnn"`) recipe; returns (model, history, data).

    AdamW, cosine schedule, batch 32, 30 epochs by default; deterministic for a given seed.
    """
    if kind not in ("mlp", "cnn"):
        raise ValueError(f"kind must be 'mlp' or 'cnn', got {kind!r}")
    nn.manual_seed(seed)
    if model is None:
        model = digits_mlp() if kind == "mlp" else digits_cnn()
    data = data or digits_data(images=(kind == "cnn"))
    epochs = epochs or 30
    lr = 1e-3 if kind == "mlp" else 2e-3
    opt = AdamW(model.parameters(), lr=lr, weight_decay=0.01)
    history = fit(
        model,
        data.loader("train", batch_size=32, shuffle=True, seed=seed),
        cross_entropy,
        opt,
        epochs,
        val_loader=data.loader("val"),
        scheduler=CosineLR(opt, T_max=epochs),
        progress=False,
    )
    return model, history, data
