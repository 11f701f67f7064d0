"""Active learning: which labels to pay for (module 19, hand-written library code).

Uncertainty sampling: train on what is labelled, then label the pool examples the model is
least sure about. The margin uncertainty of a prediction is 1 - (p_top1 - p_top2): near 1 when
the two most likely classes are tied, near 0 when one class takes all the probability.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from tinytorch.core.data import DataLoader, TensorDataset
from tinytorch.core.losses import cross_entropy
from tinytorch.core.nn import manual_seed
from tinytorch.core.optim import AdamW
from tinytorch.core.tensor import Tensor

from .harness import accuracy_on, predict

__all__ = ["ActiveLearningResult", "active_learning", "uncertainty"]


def uncertainty(probs: np.ndarray) -> np.ndarray:
    """Margin uncertainty 1 - (top probability - second probability) of each row."""
    probs = np.asarray(probs)
    if probs.ndim != 2 or probs.shape[1] < 2:
        raise ValueError(f"uncertainty needs (N, C >= 2) probabilities, got shape {probs.shape}")
    top2 = np.sort(probs, axis=1)[:, -2:]  # (N, 2): second, first
    return 1.0 - (top2[:, 1] - top2[:, 0])


@dataclass
class ActiveLearningResult:
    strategy: str
    labels: list  # labelled examples after each round
    test_acc: list  # test accuracy of the model trained on them


def active_learning(
    build_fn: Callable, data, strategy: str = "uncertainty", initial: int = 20, query: int = 20,
    rounds: int = 6, epochs: int = 30, lr: float = 3e-3, seed: int = 0,
) -> ActiveLearningResult:
    """Pool-based active learning on data.x_train: train a fresh model on the labelled set,
    label the `query` pool examples it is least sure of (or random ones), repeat."""
    if strategy not in ("uncertainty", "random"):
        raise ValueError(f"strategy must be 'uncertainty' or 'random', got {strategy!r}")
    rng = np.random.default_rng(seed)
    n = len(data.y_train)
    labelled = [int(i) for i in rng.choice(n, size=initial, replace=False)]
    res = ActiveLearningResult(strategy, [], [])
    for r in range(rounds + 1):
        manual_seed(seed)
        model = build_fn()
        opt = AdamW(model.parameters(), lr=lr, weight_decay=0.01)
        loader = DataLoader(TensorDataset(data.x_train[labelled], data.y_train[labelled]),
                            batch_size=16, shuffle=True, seed=seed)
        model.train()
        for _ in range(epochs):
            for xb, yb in loader:
                loss = cross_entropy(model(Tensor(xb)), yb)
                opt.zero_grad()
                loss.backward()
                opt.step()
        res.labels.append(len(labelled))
        res.test_acc.append(accuracy_on(model, data.x_test, data.y_test))
        if r == rounds:
            break
        pool = np.setdiff1d(np.arange(n), labelled)
        if strategy == "random":
            pick = rng.choice(pool, size=query, replace=False)
        else:
            z = predict(model, data.x_train[pool]).astype(np.float64)
            p = np.exp(z - z.max(axis=1, keepdims=True))
            p /= p.sum(axis=1, keepdims=True)  # (pool, C) softmax
            pick = pool[np.argsort(-uncertainty(p), kind="stable")[:query]]
        labelled.extend(int(i) for i in pick)
    return res
