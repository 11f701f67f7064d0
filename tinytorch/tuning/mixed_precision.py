"""Accuracy-aware post-training quantization (module 19, hand-written library code).

What Intel Neural Compressor and OpenVINO's accuracy-aware quantization do: measure each layer's
sensitivity (quantize only that layer: the accuracy it costs, and the loss to break ties on a
small validation set), quantize everything, and while the accuracy drop exceeds the tolerance
return the most sensitive layer still quantized to float32. The sensitivity order keeps the
loop short and as many layers as possible in low precision.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from tinytorch.core.nn import Conv2d, Linear, Module

from .harness import accuracy_on, per_example_loss
from .steps import StepContext, quantize_step

__all__ = ["AccuracyAwareResult", "accuracy_aware_quantize", "layer_sensitivity",
           "quantizable_layers"]


def quantizable_layers(model: Module) -> list[str]:
    """Dotted names of every Linear / Conv2d (what quantize_step converts)."""
    return [n for n, m in model.named_modules() if isinstance(m, Linear | Conv2d)]


def _state_bytes(model: Module) -> int:
    return int(sum(a.nbytes for a in model.state_dict().values()))


def _mean_loss(model: Module, x: np.ndarray, y: np.ndarray) -> float:
    return float(per_example_loss(model, x, y).mean())


def layer_sensitivity(
    model: Module, data, bits: int = 8, per_channel: bool = True, seed: int = 0
) -> list[tuple[str, float, float]]:
    """(layer, accuracy drop, loss increase) with ONLY that layer quantized; most sensitive
    first."""
    layers = quantizable_layers(model)
    ctx = StepContext(data, seed=seed)
    acc0 = accuracy_on(model, data.x_val, data.y_val)
    loss0 = _mean_loss(model, data.x_val, data.y_val)
    rows = []
    for name in layers:
        others = tuple(n for n in layers if n != name)
        q = quantize_step(model, ctx, bits=bits, per_channel=per_channel, keep_fp32=others)
        rows.append((name, acc0 - accuracy_on(q, data.x_val, data.y_val),
                     _mean_loss(q, data.x_val, data.y_val) - loss0))
    return sorted(rows, key=lambda r: (-r[1], -r[2]))


@dataclass
class AccuracyAwareResult:
    model: Module  # the mixed-precision model
    fp32_layers: list  # layers returned to float32, most sensitive first
    sensitivity: list  # layer_sensitivity rows
    steps: list  # (fp32 layers, accuracy, model bytes) of every attempt, in order
    float_accuracy: float
    accuracy: float
    tolerance: float

    @property
    def within_tolerance(self) -> bool:
        return self.float_accuracy - self.accuracy <= self.tolerance + 1e-12


def accuracy_aware_quantize(
    model: Module, data, tolerance: float = 0.01, bits: int = 8, per_channel: bool = True,
    seed: int = 0, size_fn: Callable[[Module], int] | None = None,
) -> AccuracyAwareResult:
    """Quantize everything; while the drop exceeds `tolerance`, return the most sensitive
    remaining layer to float32. `size_fn(model)` gives the bytes each attempt records
    (`tinytorch.autotuning` passes module 19's `model_bytes`; default: the state arrays)."""
    if not 0 <= tolerance <= 1:
        raise ValueError(f"tolerance must be an accuracy difference in [0, 1], got {tolerance}")
    ctx = StepContext(data, seed=seed)
    acc0 = accuracy_on(model, data.x_val, data.y_val)
    sens = layer_sensitivity(model, data, bits, per_channel, seed)
    if size_fn is None:
        size_fn = _state_bytes
    fp32: list[str] = []
    steps = []
    while True:
        q = quantize_step(model, ctx, bits=bits, per_channel=per_channel, keep_fp32=tuple(fp32))
        acc = accuracy_on(q, data.x_val, data.y_val)
        steps.append((list(fp32), acc, size_fn(q)))
        if acc0 - acc <= tolerance + 1e-12 or len(fp32) == len(sens):
            break
        fp32.append(sens[len(fp32)][0])
    return AccuracyAwareResult(q, fp32, sens, steps, acc0, acc, tolerance)
