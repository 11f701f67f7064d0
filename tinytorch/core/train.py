"""The training loop: `fit`, `evaluate`, `accuracy` and the per-epoch `History`.

Loaders are iterables of `(x, y)` tuples of Tensors or numpy arrays (e.g.
`tinytorch.core.data.DataLoader`). `x` is wrapped in a Tensor if it is not one; `y` is passed
to the loss as a numpy array.

Progress: with `progress=True` a tqdm bar is drawn only when its stream (stderr) is a
terminal or a Jupyter kernel's output; in logs and CI `fit` prints one summary line per
epoch instead of a bar that would print a line per refresh.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

import numpy as np
from tqdm import tqdm

from tinytorch.core.nn import Module
from tinytorch.core.optim import LRScheduler, Optimizer
from tinytorch.core.tensor import Tensor, no_grad

__all__ = ["History", "accuracy", "evaluate", "fit"]


@dataclass
class History:
    """One entry per epoch. `val_acc` is empty when `fit` got no validation loader."""

    train_loss: list[float] = field(default_factory=list)  # mean loss over the epoch's examples
    train_acc: list[float] = field(default_factory=list)  # accuracy of the training-mode outputs
    val_acc: list[float] = field(default_factory=list)  # `evaluate` after the epoch
    epoch_time: list[float] = field(default_factory=list)  # wall seconds, incl. validation
    lr: list[float] = field(default_factory=list)  # learning rate used during the epoch

    @property
    def epochs(self) -> int:
        return len(self.train_loss)


def _is_terminal(stream) -> bool:
    """A terminal, or a Jupyter kernel's output stream (which renders the bar in place)."""
    if type(stream).__module__.startswith("ipykernel"):
        return True
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):  # no isatty, or a closed stream
        return False


def _data(x) -> np.ndarray:
    return x.data if isinstance(x, Tensor) else np.asarray(x)


def _correct(logits, targets) -> tuple[int, int]:
    """(number of correct argmax predictions, number of predictions)."""
    z, t = _data(logits), _data(targets)
    if z.ndim < 1 or z.shape[:-1] != t.shape:
        raise ValueError(
            f"accuracy: logits {z.shape} need targets of shape {z.shape[:-1]}, got {t.shape}"
        )
    return int((z.argmax(axis=-1) == t).sum()), int(t.size)


def accuracy(logits, targets) -> float:
    """Fraction of rows whose argmax equals the integer target: logits (..., C), targets (...)."""
    correct, total = _correct(logits, targets)
    if total == 0:
        raise ValueError("accuracy of an empty batch is undefined")
    return correct / total


def _split_batch(batch) -> tuple[Tensor, np.ndarray]:
    if not isinstance(batch, Sequence) or len(batch) != 2:
        raise ValueError(
            f"a loader must yield (x, y) pairs, got {type(batch).__name__}"
            + (f" of length {len(batch)}" if isinstance(batch, Sequence) else "")
        )
    x, y = batch
    return (x if isinstance(x, Tensor) else Tensor(x)), _data(y)


def evaluate(model: Module, loader: Iterable) -> float:
    """Accuracy of `model` over `loader`, in eval mode and without recording a graph.

    The model's previous train/eval mode is restored afterwards.
    """
    was_training = model.training
    model.eval()
    correct = total = 0
    try:
        with no_grad():
            for batch in loader:
                x, y = _split_batch(batch)
                c, n = _correct(model(x), y)
                correct += c
                total += n
    finally:
        model.train(was_training)
    if total == 0:
        raise ValueError("evaluate got an empty loader")
    return correct / total


def fit(
    model: Module,
    train_loader: Iterable,
    loss_fn: Callable,
    optimizer: Optimizer,
    epochs: int,
    val_loader: Iterable | None = None,
    scheduler: LRScheduler | None = None,
    progress: bool = True,
    callbacks: Sequence[Callable[[int, History], bool | None]] | None = None,
) -> History:
    """Train for `epochs` epochs; returns the per-epoch History.

    Each batch: forward, `loss_fn(logits, y)`, zero_grad, backward, `optimizer.step()`.
    After each epoch: `scheduler.step()` (if given), `evaluate` on `val_loader` (if given),
    then each callback is called as `callback(epoch, history)`; one returning True stops
    training early. `progress=True` draws a tqdm bar when stderr is a terminal and prints one
    line per epoch either way; `progress=False` prints nothing.
    """
    if epochs < 0:
        raise ValueError(f"epochs must be >= 0, got {epochs}")
    history = History()
    callbacks = list(callbacks or [])
    for epoch in range(epochs):
        start = time.perf_counter()
        model.train()
        lr = optimizer.lr
        loss_sum = 0.0
        seen = correct = counted = 0
        total = len(train_loader) if hasattr(train_loader, "__len__") else None
        bar = tqdm(
            train_loader,
            total=total,
            desc=f"epoch {epoch + 1}/{epochs}",
            disable=not (progress and _is_terminal(sys.stderr)),  # read at call time
            leave=False,
            file=sys.stderr,
        )
        for batch in bar:
            x, y = _split_batch(batch)
            logits = model(x)
            loss = loss_fn(logits, y)
            if loss.numel() != 1:
                raise ValueError(f"loss_fn must return a scalar, got shape {loss.shape}")
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            n = len(y) if np.ndim(y) else 1
            loss_sum += float(loss.item()) * n
            seen += n
            z = logits.data if isinstance(logits, Tensor) else None
            if z is not None and z.ndim >= 2 and y.dtype.kind in "iu" and z.shape[:-1] == y.shape:
                c, m = _correct(z, y)
                correct += c
                counted += m
            if not bar.disable:
                bar.set_postfix(loss=f"{loss.item():.4f}")
        bar.close()
        if seen == 0:
            raise ValueError("fit got an empty training loader")
        if scheduler is not None:
            scheduler.step()
        history.train_loss.append(loss_sum / seen)
        history.train_acc.append(correct / counted if counted else float("nan"))
        if val_loader is not None:
            history.val_acc.append(evaluate(model, val_loader))
        history.epoch_time.append(time.perf_counter() - start)
        history.lr.append(lr)
        if progress:
            msg = (
                f"epoch {epoch + 1}/{epochs}: loss {history.train_loss[-1]:.4f}, "
                f"train acc {history.train_acc[-1]:.4f}"
            )
            if history.val_acc:
                msg += f", val acc {history.val_acc[-1]:.4f}"
            tqdm.write(msg + f" ({history.epoch_time[-1]:.2f}s)")
        stop = [cb(epoch, history) for cb in callbacks]  # every callback runs each epoch
        if any(stop):
            break
    return history
