"""`tinytorch.utils`: `data` (Dataset, DataLoader, ...) and PyTorch state-dict conversion."""

from tinytorch.core.serialization import from_pytorch_state_dict
from tinytorch.utils import data

__all__ = ["data", "from_pytorch_state_dict"]
