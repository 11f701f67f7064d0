"""TinyTorch: a numpy-first deep-learning library for learning ML systems.

`tinytorch.core` is the foundation (tensor with autograd, layers, attention, TinyGPT, losses,
optimizers, data). The optimization modules 15-20 are generated from the course sources in
`modules/` and imported on demand: `import tinytorch.acceleration`, `tinytorch.memory`, ...
"""

from tinytorch.core import backends, nn
from tinytorch.core.nn import manual_seed
from tinytorch.core.tensor import Tensor, default_dtype, no_grad, tensor

__version__ = "0.1.0"

__all__ = [
    "Tensor",
    "tensor",
    "no_grad",
    "default_dtype",
    "manual_seed",
    "backends",
    "nn",
    "__version__",
]
