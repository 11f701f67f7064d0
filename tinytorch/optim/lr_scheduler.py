"""`tinytorch.optim.lr_scheduler`: `StepLR` (as torch) and `CosineLR`.

`CosineLR` holds `eta_min` after `T_max` steps; torch's `CosineAnnealingLR` keeps following
the cosine back up, so it is deliberately not offered under torch's name.
"""

from tinytorch.core.optim import CosineLR, LRScheduler, StepLR

__all__ = ["CosineLR", "LRScheduler", "StepLR"]
