"""TinyTorch: a numpy-first deep-learning library for learning ML systems.

`tinytorch.core` is the foundation (tensor with autograd, layers, attention, TinyGPT, losses,
optimizers, data). The optimization modules 15-20 are generated from the course sources in
`modules/` and imported on demand: `import tinytorch.acceleration`, `tinytorch.memory`, ...

A PyTorch user can write `import tinytorch as torch`: `torch.tensor`, `torch.nn`,
`torch.nn.functional`, `torch.optim`, `torch.utils.data`, `torch.no_grad`, `torch.save` /
`torch.load` (npz, never pickle) and the factories below are re-exports of the core.
"""

import numpy as _np

from tinytorch import nn, optim, utils
from tinytorch.core import backends
from tinytorch.core.nn import manual_seed, rand, randint, randn
from tinytorch.core.serialization import load, save
from tinytorch.core.tensor import (
    Size,
    Tensor,
    arange,
    argmax,
    argmin,
    cat,
    concat,
    default_dtype,
    enable_grad,
    from_numpy,
    full,
    get_default_dtype,
    is_grad_enabled,
    maximum,
    minimum,
    no_grad,
    ones,
    ones_like,
    stack,
    tensor,
    where,
    zeros,
    zeros_like,
)

float16 = half = _np.float16
float32 = float = _np.float32  # noqa: A001 - torch.float is float32
float64 = double = _np.float64
int32 = _np.int32
int64 = long = _np.int64
uint8 = _np.uint8
bool = _np.bool_  # noqa: A001 - torch.bool

__version__ = "0.1.0"

__all__ = [
    "Size",
    "Tensor",
    "arange",
    "argmax",
    "argmin",
    "backends",
    "bool",
    "cat",
    "concat",
    "default_dtype",
    "double",
    "enable_grad",
    "float",
    "float16",
    "float32",
    "float64",
    "from_numpy",
    "full",
    "get_default_dtype",
    "half",
    "int32",
    "int64",
    "is_grad_enabled",
    "load",
    "long",
    "manual_seed",
    "maximum",
    "minimum",
    "nn",
    "no_grad",
    "ones",
    "ones_like",
    "optim",
    "rand",
    "randint",
    "randn",
    "save",
    "stack",
    "tensor",
    "uint8",
    "utils",
    "where",
    "zeros",
    "zeros_like",
    "__version__",
]
