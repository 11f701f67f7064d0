"""`import tinytorch.nn.functional as F`: PyTorch's functional API, re-exported from core.

`linear` takes PyTorch's (out, in) weight (a tinytorch `Linear.weight`, stored (in, out), is
recognised by its layout tag); `cross_entropy` reads classes on dim 1 as torch does. See
`tinytorch.core.functional` for the rules.
"""

from tinytorch.core.functional import (
    dropout,
    embedding,
    gelu,
    layer_norm,
    linear,
    log_softmax,
    one_hot,
    relu,
    sigmoid,
    softmax,
    tanh,
)
from tinytorch.core.losses import cross_entropy_loss as cross_entropy
from tinytorch.core.losses import mse_loss
from tinytorch.core.nn import conv1d, conv2d, max_pool2d

__all__ = [
    "conv1d",
    "conv2d",
    "cross_entropy",
    "dropout",
    "embedding",
    "gelu",
    "layer_norm",
    "linear",
    "log_softmax",
    "max_pool2d",
    "mse_loss",
    "one_hot",
    "relu",
    "sigmoid",
    "softmax",
    "tanh",
]
