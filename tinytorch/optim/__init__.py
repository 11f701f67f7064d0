"""`tinytorch.optim`: optimizers (`SGD`, `Adam`, `AdamW`) and `lr_scheduler`, from core."""

from tinytorch.core.optim import SGD, Adam, AdamW, Optimizer
from tinytorch.optim import lr_scheduler

__all__ = ["SGD", "Adam", "AdamW", "Optimizer", "lr_scheduler"]
