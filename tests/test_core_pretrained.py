"""The pretrained models shipped in tinytorch/datasets/ (tinytorch.core.pretrained)."""

from __future__ import annotations

import numpy as np
import pytest

from tinytorch.core.pretrained import (
    PRETRAINED,
    ZOO_RECIPES,
    digits_test_accuracy,
    load_pretrained,
    train_recipe,
)


@pytest.mark.parametrize("name", sorted([*PRETRAINED, *ZOO_RECIPES]))
def test_shipped_weights_reach_the_stated_accuracy(name):
    model = load_pretrained(name)
    assert not model.training, "load_pretrained returns the model in eval mode"
    acc = digits_test_accuracy(model, name)
    need = {**PRETRAINED, **ZOO_RECIPES}[name].min_test_accuracy
    assert acc >= need, f"{name}: test accuracy {acc:.4f}"


def test_each_load_is_a_fresh_copy():
    a, b = load_pretrained("digits_mlp_256"), load_pretrained("digits_mlp_256")
    a[0].weight.data[...] = 0.0
    assert np.any(b[0].weight.data != 0.0)


def test_mlp_fits_module_18_make_mlp_and_cnn_fits_module_17_layers():
    from tinytorch.compression import make_mlp

    model = make_mlp([64, 256, 256, 10])
    model.load_state_dict(load_pretrained("digits_mlp_256").state_dict())  # strict: same names
    cnn = load_pretrained("digits_cnn")
    assert [type(m).__name__ for m in cnn] == [
        "Conv2d", "ReLU", "MaxPool2d", "Conv2d", "ReLU", "MaxPool2d", "Flatten", "Linear"
    ]  # fmt: skip


def test_unknown_name_lists_the_shipped_ones():
    with pytest.raises(KeyError, match="digits_cnn"):
        load_pretrained("resnet50")


@pytest.mark.slow
def test_recipe_retrains_to_the_stated_accuracy():
    """tools/make_pretrained.py's recipe (the small CNN: a few seconds) is reproducible."""
    name = "digits_cnn"
    model = train_recipe(name)
    assert digits_test_accuracy(model, name) >= PRETRAINED[name].min_test_accuracy


def test_character_gpt_beats_a_context_free_model():
    from tinytorch.core.pretrained import GPT_RECIPES, gpt_val_loss
    from tinytorch.datasets import load_corpus_ids, unigram_entropy

    lm = load_pretrained("corpus_gpt_tiny")
    loss = gpt_val_loss(lm, "corpus_gpt_tiny")
    assert loss <= GPT_RECIPES["corpus_gpt_tiny"].max_val_loss, loss
    val, _ = load_corpus_ids("val")
    assert loss < unigram_entropy(val) - 0.3, f"{loss:.3f} vs unigram {unigram_entropy(val):.3f}"


@pytest.mark.slow
def test_zoo_cnn_weights_are_what_zoo_training_gives():
    """module 19 loads these instead of calling zoo.train_digits("cnn", seed=0): if the zoo's
    recipe changes, tools/make_pretrained.py zoo_digits_cnn must be run again."""
    from tinytorch.core import zoo

    shipped = load_pretrained("zoo_digits_cnn")
    trained = zoo.train_digits("cnn", seed=0)[0].eval()
    x = zoo.digits_data(images=True).x_test
    a, b = shipped(x).data, trained(x).data
    assert (a.argmax(1) == b.argmax(1)).mean() >= 0.99
    np.testing.assert_allclose(a, b, rtol=1e-3, atol=1e-3)
