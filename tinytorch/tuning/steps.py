"""One interface for every technique of modules 15-18 (module 19, hand-written library code).

    step(model, ctx, **params) -> a NEW model      # the input model is never modified

`StepContext` carries what steps need besides the model (data, the teacher, a seed). Each step
belongs to a stage; a pipeline runs the stages in the order of `STAGES`:

    prune     shrink    module 18 structured_prune (whole neurons / filters)
    finetune  recover   core training; distill=True uses module 18 distillation_loss
    quantize  quantize  module 17 Quantizer(QConfig(weight_bits=bits)), keep_fp32 layers float
    backend   runtime   module 15 use_backend, frozen into a BackendModel

`register_step(name, stage)` adds a technique to `STEPS`; `Step` names one technique with its
parameters. The `Pipeline` that orders steps is module 19's exercise (`tinytorch.autotuning`).
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass

import tinytorch.acceleration  # noqa: F401  (registers module 15's "optimized" backend)
from tinytorch.compression import distillation_loss, structured_prune
from tinytorch.core.backends import available_backends, use_backend
from tinytorch.core.data import DataLoader, TensorDataset
from tinytorch.core.losses import cross_entropy
from tinytorch.core.nn import Module, manual_seed
from tinytorch.core.optim import AdamW
from tinytorch.core.tensor import Tensor
from tinytorch.quantization import QConfig, Quantizer

from .harness import predict

__all__ = [
    "STAGES",
    "STEPS",
    "BackendModel",
    "Step",
    "StepContext",
    "StepSpec",
    "backend_step",
    "finetune_step",
    "get_submodule",
    "prune_step",
    "quantize_step",
    "register_step",
    "set_submodule",
]


@dataclass
class StepContext:
    """What steps may use besides the model."""

    data: object  # x_train, y_train (fine-tuning, calibration) and x_val, y_val
    teacher: Module | None = None  # the model before optimization: distillation's teacher
    seed: int = 0  # fine-tuning order and initialisation


@dataclass(frozen=True)
class StepSpec:
    name: str
    fn: Callable  # fn(model, ctx, **params) -> a NEW model; the input is never modified
    stage: int  # index into STAGES: pipelines run steps in stage order
    doc: str


STEPS: dict[str, StepSpec] = {}
STAGES = ("shrink", "recover", "quantize", "runtime")


def register_step(name: str, stage: str):
    """Decorator: add `fn(model, ctx, **params) -> Module` to STEPS under `name`."""
    if stage not in STAGES:
        raise ValueError(f"unknown stage {stage!r}; stages are {STAGES}")

    def deco(fn):
        STEPS[name] = StepSpec(name, fn, STAGES.index(stage), (fn.__doc__ or "").strip())
        return fn

    return deco


def get_submodule(root: Module, name: str) -> Module:
    mod = root
    for part in name.split(".") if name else []:
        mod = mod._modules[part]
    return mod


def set_submodule(root: Module, name: str, new: Module) -> None:
    parent, _, last = name.rpartition(".")
    setattr(get_submodule(root, parent), last, new)  # same slot: order is kept


class BackendModel(Module):
    """Runs the wrapped model with one matmul backend active (read at call time)."""

    def __init__(self, model: Module, backend: str):
        super().__init__()
        if backend not in available_backends():
            raise ValueError(f"unknown backend {backend!r}; registered: {available_backends()}")
        self.model = model
        self.backend = backend

    def forward(self, x):
        with use_backend(self.backend):
            return self.model(x)

    def extra_repr(self) -> str:
        return f"backend={self.backend!r}"


@register_step("prune", "shrink")
def prune_step(model: Module, ctx: StepContext, amount: float = 0.5, norm: str = "l1") -> Module:
    """Structured pruning (module 18): remove `amount` of each hidden layer's units/filters."""
    if amount == 0:
        return copy.deepcopy(model)
    return structured_prune(model, amount, norm=norm)


@register_step("finetune", "recover")
def finetune_step(
    model: Module,
    ctx: StepContext,
    epochs: int = 3,
    lr: float = 1e-3,
    distill: bool = False,
    temperature: float = 4.0,
    alpha: float = 0.9,
    batch_size: int = 32,
) -> Module:
    """Train a copy for `epochs` (cross-entropy, or distillation from ctx.teacher)."""
    out = copy.deepcopy(model)
    if epochs == 0:
        return out
    d = ctx.data
    arrays = [d.x_train, d.y_train]
    if distill:
        if ctx.teacher is None:
            raise ValueError("finetune(distill=True) needs ctx.teacher, the model to imitate")
        arrays.append(predict(ctx.teacher, d.x_train))  # (N, classes) soft targets, once
    manual_seed(ctx.seed)
    loader = DataLoader(TensorDataset(*arrays), batch_size=batch_size, shuffle=True, seed=ctx.seed)
    opt = AdamW(out.parameters(), lr=lr, weight_decay=0.01)
    out.train()
    for _ in range(epochs):
        for batch in loader:
            logits = out(Tensor(batch[0]))
            if distill:
                loss = distillation_loss(logits, batch[2], batch[1], temperature, alpha)
            else:
                loss = cross_entropy(logits, batch[1])
            opt.zero_grad()
            loss.backward()
            opt.step()
    return out.eval()


@register_step("quantize", "quantize")
def quantize_step(
    model: Module,
    ctx: StepContext,
    bits: int = 8,
    per_channel: bool = True,
    keep_fp32: tuple = (),
    calibration_batches: int = 4,
) -> Module:
    """Post-training static quantization (module 17); layers named in `keep_fp32` stay float."""
    d = ctx.data
    loader = DataLoader(TensorDataset(d.x_train, d.y_train), batch_size=64)
    out = Quantizer(QConfig(weight_bits=bits, per_channel=per_channel)).quantize(
        model, loader, calibration_batches
    )
    for name in keep_fp32:
        set_submodule(out, name, copy.deepcopy(get_submodule(model, name)))
    return out


@register_step("backend", "runtime")
def backend_step(model: Module, ctx: StepContext, backend: str = "optimized") -> Module:
    """Run the model on matmul `backend` (module 15): the same numbers, another speed."""
    return BackendModel(copy.deepcopy(model), backend)


@dataclass(frozen=True)
class Step:
    """One technique with its parameters: Step.make("prune", amount=0.5)."""

    name: str
    params: tuple = ()  # sorted (key, value) pairs: hashable and JSON-able

    @classmethod
    def make(cls, name: str, **params) -> Step:
        return cls(name, tuple(sorted(params.items())))

    @property
    def kwargs(self) -> dict:
        return dict(self.params)

    def __str__(self) -> str:
        return f"{self.name}(" + ", ".join(f"{k}={v!r}" for k, v in self.params) + ")"
