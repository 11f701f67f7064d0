"""Training that adapts to its own progress (module 19, hand-written library code).

`EarlyStopping` (stop after `patience` epochs without improvement, restore the best weights),
`ReduceLROnPlateau` (multiply the lr by `factor` when the signal stalls), `curriculum_subset`
(easy examples first, a self-paced curriculum), and the two training loops they are measured
with: `fixed_training` (the baseline: constant lr, fixed epochs) and `adaptive_training`.
Signals are scores (higher is better): pass minus the validation loss.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass, field

import numpy as np

from tinytorch.core.losses import cross_entropy
from tinytorch.core.nn import Module, manual_seed
from tinytorch.core.optim import AdamW
from tinytorch.core.tensor import Tensor

from .harness import accuracy_on, per_example_loss

__all__ = ["EarlyStopping", "ReduceLROnPlateau", "TrainingReport", "adaptive_training",
           "curriculum_subset", "fixed_training"]


class EarlyStopping:
    """Stop when the score has not improved by more than min_delta for `patience` epochs."""

    def __init__(self, patience: int = 5, min_delta: float = 0.0):
        if patience < 1:
            raise ValueError(f"patience must be >= 1 epoch, got {patience}")
        self.patience, self.min_delta = patience, min_delta
        self.best, self.best_epoch, self.bad = -math.inf, -1, 0

    def step(self, score: float, epoch: int) -> bool:
        """Record `score` of `epoch`; True means stop now."""
        if score > self.best + self.min_delta:
            self.best, self.best_epoch, self.bad = score, epoch, 0
        else:
            self.bad += 1
        return self.bad >= self.patience


class ReduceLROnPlateau:
    """Multiply the optimizer's lr by `factor` when the score stalls for `patience` epochs."""

    def __init__(self, optimizer, factor: float = 0.3, patience: int = 2, min_lr: float = 1e-5):
        if not 0 < factor < 1:
            raise ValueError(f"factor must be in (0, 1), got {factor}")
        self.opt, self.factor, self.patience, self.min_lr = optimizer, factor, patience, min_lr
        self.best, self.bad = -math.inf, 0

    def step(self, score: float) -> bool:
        """Record `score`; True if the learning rate was just reduced."""
        if score > self.best:
            self.best, self.bad = score, 0
            return False
        self.bad += 1
        if self.bad >= self.patience and self.opt.lr > self.min_lr:
            self.opt.lr = max(self.opt.lr * self.factor, self.min_lr)
            self.bad = 0
            return True
        return False


def curriculum_subset(
    losses: np.ndarray, epoch: int, epochs: int, start: float = 0.4, ramp: float = 0.5
) -> np.ndarray:
    """Indices of the easiest examples (lowest loss) for `epoch`: a fraction growing linearly
    from `start` to 1 over the first `ramp` of training (a self-paced curriculum)."""
    frac = min(1.0, start + (1 - start) * epoch / max(1.0, ramp * epochs))
    k = max(1, int(round(frac * len(losses))))
    return np.sort(np.argsort(losses, kind="stable")[:k])


@dataclass
class TrainingReport:
    name: str
    val_acc: list = field(default_factory=list)
    val_loss: list = field(default_factory=list)
    lr: list = field(default_factory=list)
    examples: list = field(default_factory=list)  # examples trained on in each epoch
    events: list = field(default_factory=list)
    best_epoch: int = -1  # 1-based epoch whose weights the model ends with
    test_acc: float = float("nan")

    @property
    def epochs(self) -> int:
        return len(self.val_acc)

    def epochs_to_reach(self, acc: float) -> int | None:
        """First epoch (1-based) whose validation accuracy is >= acc; None if never."""
        for i, a in enumerate(self.val_acc):
            if a >= acc - 1e-12:
                return i + 1
        return None


def _train_loop(model, data, epochs, lr, seed, batch_size, report, early=None, plateau=False,
                curriculum=False, factor=0.3, plateau_patience=2):
    manual_seed(seed)
    opt = AdamW(model.parameters(), lr=lr, weight_decay=0.01)
    sched = ReduceLROnPlateau(opt, factor, plateau_patience) if plateau else None
    rng = np.random.default_rng(seed)
    best_state = None
    for epoch in range(epochs):
        idx = np.arange(len(data.y_train))
        if curriculum:
            idx = curriculum_subset(per_example_loss(model, data.x_train, data.y_train), epoch,
                                    epochs)
        idx = rng.permutation(idx)
        model.train()
        report.lr.append(opt.lr)
        for b in range(0, len(idx), batch_size):
            sel = idx[b : b + batch_size]
            loss = cross_entropy(model(Tensor(data.x_train[sel])), data.y_train[sel])
            opt.zero_grad()
            loss.backward()
            opt.step()
        report.examples.append(len(idx))
        report.val_acc.append(accuracy_on(model, data.x_val, data.y_val))
        report.val_loss.append(float(per_example_loss(model, data.x_val, data.y_val).mean()))
        score = -report.val_loss[-1]
        warming = curriculum and len(idx) < len(data.y_train)  # judge only once all data is in
        if early is not None and not warming:
            stop = early.step(score, epoch)
            if early.best_epoch == epoch:
                best_state = model.state_dict()
            if stop:
                report.events.append(f"epoch {epoch + 1}: early stop (best epoch "
                                     f"{early.best_epoch + 1})")
                break
        if sched is not None and not warming and sched.step(score):
            report.events.append(f"epoch {epoch + 1}: plateau, lr -> {opt.lr:.2e}")
    if best_state is not None:
        model.load_state_dict(best_state)
        report.best_epoch = early.best_epoch + 1
    else:
        report.best_epoch = report.epochs
    report.test_acc = accuracy_on(model, data.x_test, data.y_test)
    return model, report


def fixed_training(model: Module, data, epochs: int = 30, lr: float = 1e-2, seed: int = 0,
                   batch_size: int = 32, curriculum: bool = False):
    """The baseline: constant learning rate and a fixed number of epochs. Returns a trained
    copy of `model` and its TrainingReport."""
    name = "fixed + curriculum" if curriculum else "fixed"
    return _train_loop(copy.deepcopy(model), data, epochs, lr, seed, batch_size,
                       TrainingReport(name), curriculum=curriculum)


def adaptive_training(
    model: Module, data, epochs: int = 30, lr: float = 1e-2, seed: int = 0, batch_size: int = 32,
    patience: int = 5, plateau_patience: int = 2, factor: float = 0.3, curriculum: bool = False,
):
    """Training that adapts to progress: lr cut on plateaus, early stopping with the best
    weights restored, optionally an easy-first curriculum. Returns (trained copy, report)."""
    name = "adaptive + curriculum" if curriculum else "adaptive"
    return _train_loop(copy.deepcopy(model), data, epochs, lr, seed, batch_size,
                       TrainingReport(name), early=EarlyStopping(patience), plateau=True,
                       curriculum=curriculum, factor=factor, plateau_patience=plateau_patience)
