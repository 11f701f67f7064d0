"""Optimizers (SGD with momentum, Adam, AdamW) and learning-rate schedulers (StepLR, CosineLR).

An optimizer holds a list of parameters and updates their `.data` in place from their `.grad`;
parameters whose `.grad` is None (unused in this step) are skipped. Per-parameter state
(momentum buffers, Adam moments and step counts) lives in `optimizer.state[i]` for parameter i.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

import numpy as np

from tinytorch.core.tensor import Tensor

__all__ = ["Optimizer", "SGD", "Adam", "AdamW", "LRScheduler", "StepLR", "CosineLR"]


def _check_nonneg(name: str, value: float) -> float:
    value = float(value)
    if not value >= 0.0:  # also rejects NaN
        raise ValueError(f"{name} must be >= 0, got {value}")
    return value


class Optimizer:
    """Base class: a parameter list, a learning rate `lr`, per-parameter `state`."""

    def __init__(self, params: Iterable[Tensor], lr: float):
        params = list(params)
        if not params:
            raise ValueError("optimizer got an empty parameter list")
        unique: list[Tensor] = []
        seen: set[int] = set()
        for i, p in enumerate(params):
            if not isinstance(p, Tensor):
                raise TypeError(f"parameter {i} is a {type(p).__name__}, not a Tensor")
            if not p.requires_grad:
                raise ValueError(f"parameter {i} (shape {p.shape}) does not require grad")
            if id(p) not in seen:  # tied weights are updated once
                seen.add(id(p))
                unique.append(p)
        self.params: list[Tensor] = unique
        self.lr = _check_nonneg("learning rate", lr)
        self.state: dict[int, dict[str, np.ndarray | int]] = {}

    def zero_grad(self, set_to_none: bool = True) -> None:
        """Forget the gradients (`set_to_none=False` zeroes them in place, as in torch)."""
        for p in self.params:
            if set_to_none or p.grad is None:
                p.grad = None
            else:
                p.grad[...] = 0

    def step(self) -> None:
        raise NotImplementedError(f"{type(self).__name__} must implement step()")

    # ------------------------------------------------------------------ saving
    _hyper: tuple[str, ...] = ("lr",)

    def state_dict(self) -> dict:
        """Hyperparameters and a copy of the per-parameter state."""
        return {
            "hyper": {k: getattr(self, k) for k in self._hyper},
            "state": {
                i: {
                    k: np.array(v, copy=True) if isinstance(v, np.ndarray) else v
                    for k, v in s.items()
                }
                for i, s in self.state.items()
            },
        }

    def load_state_dict(self, state_dict: dict) -> None:
        """Restore what `state_dict()` saved (for an optimizer over the same parameters)."""
        state = state_dict["state"]
        for i, s in state.items():
            if not 0 <= int(i) < len(self.params):
                raise ValueError(
                    f"optimizer state has parameter index {i}, but this optimizer has "
                    f"{len(self.params)} parameters"
                )
            shape = self.params[int(i)].shape
            for k, v in s.items():
                if isinstance(v, np.ndarray) and v.shape != shape:
                    raise ValueError(
                        f"optimizer state {k!r} of parameter {i}: expected shape {shape}, "
                        f"got {v.shape}"
                    )
        for k, v in state_dict["hyper"].items():
            setattr(self, k, v)
        self.state = {
            int(i): {
                k: np.array(v, copy=True) if isinstance(v, np.ndarray) else v for k, v in s.items()
            }
            for i, s in state.items()
        }

    def __repr__(self) -> str:
        hyper = ", ".join(f"{k}={getattr(self, k)}" for k in self._hyper)
        return f"{type(self).__name__}({len(self.params)} params, {hyper})"


class SGD(Optimizer):
    """Stochastic gradient descent with optional momentum, Nesterov momentum and L2 decay.

    g = grad + weight_decay * p;  buf = momentum * buf + g  (buf = g on the first step);
    update = g + momentum * buf if nesterov else buf;  p -= lr * update  (as in PyTorch).
    """

    _hyper = ("lr", "momentum", "weight_decay", "nesterov")

    def __init__(
        self,
        params: Iterable[Tensor],
        lr: float,
        momentum: float = 0.0,
        weight_decay: float = 0.0,
        nesterov: bool = False,
    ):
        super().__init__(params, lr)
        self.momentum = _check_nonneg("momentum", momentum)
        self.weight_decay = _check_nonneg("weight_decay", weight_decay)
        self.nesterov = bool(nesterov)
        if self.nesterov and self.momentum == 0.0:
            raise ValueError("Nesterov momentum needs momentum > 0")

    def step(self) -> None:
        for i, p in enumerate(self.params):
            if p.grad is None:
                continue
            g = p.grad
            if self.weight_decay:
                g = g + self.weight_decay * p.data
            if self.momentum:
                s = self.state.setdefault(i, {})
                buf = s.get("momentum_buffer")
                if buf is None:
                    buf = np.array(g, dtype=p.data.dtype, copy=True)
                else:
                    buf *= self.momentum
                    buf += g
                s["momentum_buffer"] = buf
                g = g + self.momentum * buf if self.nesterov else buf
            p.data -= (self.lr * g).astype(p.data.dtype, copy=False)


class Adam(Optimizer):
    """Adam with bias correction; `weight_decay` adds L2 (weight_decay * p) to the gradient.

    m = b1 m + (1 - b1) g;  v = b2 v + (1 - b2) g^2;
    p -= lr * (m / (1 - b1^t)) / (sqrt(v / (1 - b2^t)) + eps).
    """

    _hyper = ("lr", "betas", "eps", "weight_decay")
    _decoupled = False

    def __init__(
        self,
        params: Iterable[Tensor],
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 0.0,
    ):
        super().__init__(params, lr)
        b1, b2 = betas
        if not (0.0 <= b1 < 1.0 and 0.0 <= b2 < 1.0):
            raise ValueError(f"betas must be in [0, 1), got {betas}")
        self.betas = (float(b1), float(b2))
        self.eps = _check_nonneg("eps", eps)
        self.weight_decay = _check_nonneg("weight_decay", weight_decay)

    def step(self) -> None:
        b1, b2 = self.betas
        for i, p in enumerate(self.params):
            if p.grad is None:
                continue
            g = p.grad
            if self.weight_decay and not self._decoupled:
                g = g + self.weight_decay * p.data
            s = self.state.setdefault(i, {})
            if "m" not in s:
                s["step"] = 0
                s["m"] = np.zeros_like(p.data)
                s["v"] = np.zeros_like(p.data)
            s["step"] += 1
            t = s["step"]
            m, v = s["m"], s["v"]
            m *= b1
            m += (1 - b1) * g
            v *= b2
            v += (1 - b2) * (g * g)
            if self.weight_decay and self._decoupled:
                p.data *= 1 - self.lr * self.weight_decay
            m_hat = m / (1 - b1**t)
            v_hat = v / (1 - b2**t)
            p.data -= (self.lr * m_hat / (np.sqrt(v_hat) + self.eps)).astype(
                p.data.dtype, copy=False
            )


class AdamW(Adam):
    """Adam with decoupled weight decay: p *= 1 - lr * weight_decay, then the Adam step."""

    _decoupled = True

    def __init__(
        self,
        params: Iterable[Tensor],
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 0.01,
    ):
        super().__init__(params, lr, betas, eps, weight_decay)


# --------------------------------------------------------------------------- schedulers
class LRScheduler:
    """Sets `optimizer.lr` from the number of `step()` calls made (usually once per epoch)."""

    def __init__(self, optimizer: Optimizer):
        if not isinstance(optimizer, Optimizer):
            raise TypeError(f"scheduler needs an Optimizer, got {type(optimizer).__name__}")
        self.optimizer = optimizer
        self.base_lr = optimizer.lr
        self.last_epoch = 0

    def get_lr(self) -> float:
        """The learning rate for the current `last_epoch`."""
        raise NotImplementedError

    def step(self) -> float:
        self.last_epoch += 1
        self.optimizer.lr = self.get_lr()
        return self.optimizer.lr

    def state_dict(self) -> dict:
        return {"base_lr": self.base_lr, "last_epoch": self.last_epoch}

    def load_state_dict(self, state_dict: dict) -> None:
        self.base_lr = state_dict["base_lr"]
        self.last_epoch = state_dict["last_epoch"]
        self.optimizer.lr = self.get_lr()


class StepLR(LRScheduler):
    """lr = base_lr * gamma ** (epoch // step_size)."""

    def __init__(self, optimizer: Optimizer, step_size: int, gamma: float = 0.1):
        super().__init__(optimizer)
        if step_size <= 0:
            raise ValueError(f"step_size must be positive, got {step_size}")
        self.step_size = int(step_size)
        self.gamma = _check_nonneg("gamma", gamma)

    def get_lr(self) -> float:
        return self.base_lr * self.gamma ** (self.last_epoch // self.step_size)


class CosineLR(LRScheduler):
    """Cosine annealing from base_lr down to eta_min over T_max steps, then held at eta_min."""

    def __init__(self, optimizer: Optimizer, T_max: int, eta_min: float = 0.0):
        super().__init__(optimizer)
        if T_max <= 0:
            raise ValueError(f"T_max must be positive, got {T_max}")
        self.T_max = int(T_max)
        self.eta_min = _check_nonneg("eta_min", eta_min)

    def get_lr(self) -> float:
        t = min(self.last_epoch, self.T_max)
        cos = (1 + math.cos(math.pi * t / self.T_max)) / 2
        return self.eta_min + (self.base_lr - self.eta_min) * cos
