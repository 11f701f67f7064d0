"""Small pretrained models shipped inside the package (bytes, not downloads).

A module that needs a trained model to compress, quantize or distil from loads it here instead
of training it in the notebook, so the notebook's time goes to the lesson:

    from tinytorch.core.pretrained import load_pretrained
    teacher = load_pretrained("digits_mlp_256")       # 64-256-256-10, eval mode
    lm = load_pretrained("corpus_gpt_tiny")           # character TinyGPT (module 16)

Each entry is a *recipe*: the architecture (built from core layers, so the model is an ordinary
`Sequential`), the training run that made the weights, and the test accuracy the shipped weights
reach on the bundled digits (for the character model: its validation loss, below the unigram
entropy of the corpus). `tools/make_pretrained.py` runs the recipes and writes the `.npz`
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
    "GPT_RECIPES",
    "GPTRecipe",
    "ZOO_RECIPES",
    "ZooRecipe",
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


@dataclass(frozen=True)
class GPTRecipe:
    """A character-level TinyGPT trained on the bundled corpus (random windows, AdamW)."""

    name: str
    block_size: int  # context length of the model and of the training windows
    n_layer: int  # transformer blocks
    n_head: int  # attention heads
    d_model: int  # residual width
    steps: int  # AdamW steps
    batch_size: int  # windows per step
    lr: float  # AdamW learning rate
    weight_decay: float  # AdamW weight decay
    seed: int  # TinyGPT init seed and the window sampler's seed
    max_val_loss: float  # nats/char on 1024 validation characters the shipped weights stay under
    description: str

    def config(self):
        from ..datasets import load_corpus_ids
        from .transformer import GPTConfig

        _, tok = load_corpus_ids("train")
        return GPTConfig(
            vocab_size=tok.vocab_size,
            block_size=self.block_size,
            n_layer=self.n_layer,
            n_head=self.n_head,
            d_model=self.d_model,
        )

    def build(self):
        from .transformer import TinyGPT

        return TinyGPT(self.config(), seed=self.seed)


GPT_RECIPES: dict[str, GPTRecipe] = {
    "corpus_gpt_tiny": GPTRecipe(
        "corpus_gpt_tiny",
        block_size=64,
        n_layer=2,
        n_head=4,
        d_model=64,
        steps=150,
        batch_size=16,
        lr=3e-3,
        weight_decay=0.01,
        seed=0,
        max_val_loss=2.6,
        description="2-layer character TinyGPT on Genesis: module 16's sliding-window quality test",
    ),
}


@dataclass(frozen=True)
class ZooRecipe:
    """A model of `tinytorch.core.zoo` trained by `zoo.train_digits(kind, seed)` (AdamW,
    cosine schedule, batch 32, 30 epochs, standardised digits): the same weights that call
    gives, without spending its time."""

    name: str
    kind: str  # "mlp" or "cnn"
    seed: int  # zoo.train_digits seed
    min_test_accuracy: float  # on zoo.digits_data(...) test split
    description: str

    def build(self):
        from . import zoo

        return zoo.digits_cnn() if self.kind == "cnn" else zoo.digits_mlp()


ZOO_RECIPES: dict[str, ZooRecipe] = {
    "zoo_digits_cnn": ZooRecipe(
        "zoo_digits_cnn",
        kind="cnn",
        seed=0,
        min_test_accuracy=0.95,
        description="zoo.train_digits('cnn', seed=0): module 19's CNN for accuracy-aware INT4",
    ),
}


def _recipe(name: str) -> Recipe | GPTRecipe | ZooRecipe:
    if name in GPT_RECIPES:
        return GPT_RECIPES[name]
    if name in ZOO_RECIPES:
        return ZOO_RECIPES[name]
    if name not in PRETRAINED:
        shipped = sorted([*PRETRAINED, *GPT_RECIPES, *ZOO_RECIPES])
        raise KeyError(f"no pretrained model {name!r}; shipped: {', '.join(shipped)}")
    return PRETRAINED[name]


def weights_file(name: str) -> str:
    """File name of the shipped weights of ``name`` (inside tinytorch/datasets/)."""
    return f"pretrained_{_recipe(name).name}.npz"


def load_pretrained(name: str) -> Module:
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


def _train_gpt(recipe: GPTRecipe) -> Module:
    from ..datasets import load_corpus_ids
    from .losses import cross_entropy
    from .optim import AdamW

    ids, _ = load_corpus_ids("train")
    model = recipe.build()
    opt = AdamW(model.parameters(), lr=recipe.lr, weight_decay=recipe.weight_decay)
    rng = np.random.default_rng(recipe.seed)
    t = recipe.block_size
    for _ in range(recipe.steps):
        starts = rng.integers(0, len(ids) - t - 1, size=recipe.batch_size)
        x = np.stack([ids[i : i + t] for i in starts])  # (B, T)
        y = np.stack([ids[i + 1 : i + t + 1] for i in starts])  # (B, T), shifted by one
        loss = cross_entropy(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    return model.eval()


def gpt_val_loss(model: Module, name: str, n_chars: int = 1024) -> float:
    """Mean next-character cross-entropy (nats) of ``model`` on the first ``n_chars`` + 1
    validation characters, in windows of the recipe's block size."""
    from ..datasets import load_corpus_ids
    from .losses import cross_entropy
    from .tensor import no_grad

    t = _recipe(name).block_size
    ids, _ = load_corpus_ids("val")
    n = (min(n_chars, len(ids) - 1) // t) * t
    x = ids[:n].reshape(-1, t)  # (n / T, T)
    y = ids[1 : n + 1].reshape(-1, t)  # (n / T, T), shifted by one
    with no_grad():
        return float(cross_entropy(model(x), y).item())


def train_recipe(name: str, progress: bool = False) -> Sequential:
    """Train recipe ``name`` from scratch, as tools/make_pretrained.py does (eval mode)."""
    from ..datasets import load_digits, load_digits_images
    from .data import DataLoader, TensorDataset
    from .losses import cross_entropy
    from .optim import Adam
    from .train import fit

    recipe = _recipe(name)
    if isinstance(recipe, GPTRecipe):
        return _train_gpt(recipe)
    if isinstance(recipe, ZooRecipe):
        from . import zoo

        return zoo.train_digits(recipe.kind, seed=recipe.seed)[0].eval()
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

    recipe = _recipe(name)
    if isinstance(recipe, ZooRecipe):
        from . import zoo

        return evaluate(model, zoo.digits_data(images=recipe.kind == "cnn").loader("test"))
    x, y = (load_digits_images if recipe.images else load_digits)("test")
    return evaluate(model, DataLoader(TensorDataset(x, y), batch_size=512))
