"""Small pretrained models shipped inside the package (bytes, not downloads).

A module that needs a trained model to compress, quantize or distil from loads it here instead
of training it in the notebook, so the notebook's time goes to the lesson:

    from tinytorch.core.pretrained import load_pretrained
    teacher = load_pretrained("digits_mlp_256")       # 64-256-256-10, eval mode

Each entry is a *recipe*: the architecture (built from core layers, so the model is an ordinary
`Sequential`), the training run that made the weights, and the test accuracy the shipped weights
reach on the bundled digits. `tools/make_pretrained.py` runs the recipes and writes the `.npz`
files beside the datasets (tinytorch/datasets/pretrained_*.npz); `tests/test_core_pretrained.py`
checks that the shipped weights load into the architecture and reach the stated accuracy.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from importlib import resources

import numpy as np

from .nn import (
    Conv2d,
    Flatten,
    Linear,
    MaxPool2d,
    Module,
    ReLU,
    Sequential,
    manual_seed,
)

__all__ = [
    "PRETRAINED",
    "Recipe",
    "digits_test_accuracy",
    "load_pretrained",
    "train_recipe",
    "weights_file",
]


def _mlp(sizes: tuple[int, ...]) -> Sequential:
    """Linear, ReLU, ..., Linear: the same layers (and state_dict names) as module 18's
    ``make_mlp``."""
    layers: list[Module] = []
    for i, (n_in, n_out) in enumerate(zip(sizes[:-1], sizes[1:])):
        layers.append(Linear(n_in, n_out))
        if i < len(sizes) - 2:
            layers.append(ReLU())
    return Sequential(*layers)


def _digits_cnn() -> Sequential:
    """Module 17's small digits CNN: (N, 1, 8, 8) -> 10 logits."""
    return Sequential(
        Conv2d(1, 16, 3, padding=1), ReLU(), MaxPool2d(2),  # (N, 16, 4, 4)
        Conv2d(16, 32, 3, padding=1), ReLU(), MaxPool2d(2),  # (N, 32, 2, 2)
        Flatten(), Linear(128, 10),
    )  # fmt: skip


@dataclass(frozen=True)
class Recipe:
    """How one shipped model was made, and what it must reach."""

    name: str  # load_pretrained(name); the file is pretrained_<name>.npz
    build: Callable[[], Sequential]  # the architecture, initialised after manual_seed(seed)
    images: bool  # trained on load_digits_images (N, 1, 8, 8) rather than load_digits (N, 64)
    epochs: int  # Adam epochs over the 1257 training digits
    lr: float  # Adam learning rate
    batch_size: int  # DataLoader batch size (shuffled, loader seed = `seed`)
    seed: int  # manual_seed before building and the loader's shuffle seed
    min_test_accuracy: float  # the shipped weights reach at least this on the test split
    description: str  # what it is and which module uses it


PRETRAINED: dict[str, Recipe] = {
    r.name: r
    for r in (
        Recipe(
            "digits_mlp_256",
            lambda: _mlp((64, 256, 256, 10)),
            images=False,
            epochs=40,
            lr=2e-3,
            batch_size=32,
            seed=0,
            min_test_accuracy=0.96,
            description="64-256-256-10 MLP on the digits: module 18's baseline and teacher",
        ),
        Recipe(
            "digits_cnn",
            _digits_cnn,
            images=True,
            epochs=15,
            lr=3e-3,
            batch_size=64,
            seed=0,
            min_test_accuracy=0.95,
            description="two-conv CNN on the 8x8 digit images: module 17's CNN",
        ),
    )
}


def _recipe(name: str) -> Recipe:
    if name not in PRETRAINED:
        raise KeyError(f"no pretrained model {name!r}; shipped: {', '.join(sorted(PRETRAINED))}")
    return PRETRAINED[name]


def weights_file(name: str) -> str:
    """File name of the shipped weights of ``name`` (inside tinytorch/datasets/)."""
    return f"pretrained_{_recipe(name).name}.npz"


def load_pretrained(name: str) -> Sequential:
    """A fresh model of recipe ``name`` holding the shipped weights, in eval mode."""
    recipe = _recipe(name)
    ref = resources.files("tinytorch.datasets").joinpath(weights_file(name))
    try:
        with ref.open("rb") as fh, np.load(fh) as data:
            state = {k: np.array(data[k]) for k in data.files}
    except FileNotFoundError:
        raise FileNotFoundError(
            f"the weights of {name!r} ({weights_file(name)}) are not in tinytorch/datasets/; "
            "run tools/make_pretrained.py"
        ) from None
    manual_seed(recipe.seed)
    model = recipe.build()
    model.load_state_dict(state)
    return model.eval()


def train_recipe(name: str, progress: bool = False) -> Sequential:
    """Train recipe ``name`` from scratch, as tools/make_pretrained.py does (eval mode)."""
    from ..datasets import load_digits, load_digits_images
    from .data import DataLoader, TensorDataset
    from .losses import cross_entropy
    from .optim import Adam
    from .train import fit

    recipe = _recipe(name)
    x, y = (load_digits_images if recipe.images else load_digits)("train")
    manual_seed(recipe.seed)
    model = recipe.build()
    loader = DataLoader(
        TensorDataset(x, y), batch_size=recipe.batch_size, shuffle=True, seed=recipe.seed
    )
    fit(model, loader, cross_entropy, Adam(model.parameters(), lr=recipe.lr), recipe.epochs,
        progress=progress)  # fmt: skip
    return model.eval()


def digits_test_accuracy(model: Module, name: str) -> float:
    """Accuracy of ``model`` on the test digits, in the input layout of recipe ``name``."""
    from ..datasets import load_digits, load_digits_images
    from .data import DataLoader, TensorDataset
    from .train import evaluate

    x, y = (load_digits_images if _recipe(name).images else load_digits)("test")
    return evaluate(model, DataLoader(TensorDataset(x, y), batch_size=512))
