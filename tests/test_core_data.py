"""Bundled data (tinytorch.datasets) and the data pipeline (tinytorch.core.data)."""

from __future__ import annotations

import ast
import hashlib
import math
import re
from importlib import resources

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tinytorch.core.data import DataLoader, Dataset, Subset, TensorDataset, random_split
from tinytorch.core.tensor import Tensor
from tinytorch.datasets import (
    DIGITS_SPLIT_SIZES,
    CharTokenizer,
    load_corpus,
    load_corpus_ids,
    load_digits,
    load_digits_images,
    stratified_split,
    unigram_entropy,
)

SPLITS = ("train", "val", "test")


def _package_file(name: str) -> bytes:
    return resources.files("tinytorch.datasets").joinpath(name).read_bytes()


# ----------------------------------------------------------------------------- bundled files


@pytest.mark.parametrize("name", ["digits.npz", "corpus.txt"])
def test_bundled_file_matches_sha256_in_readme(name):
    readme = _package_file("README.md").decode("utf-8")
    m = re.search(rf"`{re.escape(name)}` \| `([0-9a-f]{{64}})` \| (\d+)", readme)
    assert m is not None, f"README.md has no sha256 row for {name}"
    data = _package_file(name)
    assert hashlib.sha256(data).hexdigest() == m[1]
    assert len(data) == int(m[2])


def test_datasets_module_imports_only_numpy_and_the_standard_library():
    source = resources.files("tinytorch.datasets").joinpath("__init__.py").read_text()
    roots = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            roots |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            roots.add((node.module or "").split(".")[0])
    assert roots <= {"__future__", "functools", "importlib", "numpy"}, roots


# ----------------------------------------------------------------------------- digits


@pytest.mark.parametrize(
    "split, n", [("train", 1257), ("val", 180), ("test", 360), ("all", 1797)]
)
def test_digits_shapes_dtypes_and_ranges(split, n):
    x, y = load_digits(split)
    assert x.shape == (n, 64) and x.dtype == np.float32
    assert y.shape == (n,) and y.dtype == np.int64
    assert x.min() == 0.0 and x.max() == 1.0
    # pixels are k/16 for integers k in 0..16
    np.testing.assert_array_equal(x * 16, np.round(x * 16))
    assert set(np.unique(y)) == set(range(10))
    xi, yi = load_digits_images(split)
    assert xi.shape == (n, 1, 8, 8) and xi.dtype == np.float32
    np.testing.assert_array_equal(xi.reshape(n, 64), x)
    np.testing.assert_array_equal(yi, y)


def test_digits_is_the_scikit_learn_copy():
    sk = pytest.importorskip("sklearn.datasets")
    d = sk.load_digits()
    x, y = load_digits("all")
    np.testing.assert_array_equal(x * 16, d.data)
    np.testing.assert_array_equal(y, d.target)


def test_digits_split_is_disjoint_covering_and_stored():
    _, y_all = load_digits("all")
    parts = stratified_split(y_all, DIGITS_SPLIT_SIZES, seed=0)
    sizes = {k: len(v) for k, v in parts.items()}
    assert sizes == {"train": 1257, "val": 180, "test": 360}
    joined = np.concatenate([parts[s] for s in SPLITS])
    assert len(np.unique(joined)) == 1797  # disjoint ...
    np.testing.assert_array_equal(np.sort(joined), np.arange(1797))  # ... and covering
    # the split stored in digits.npz is the one the documented procedure produces
    x_all, _ = load_digits("all")
    for s in SPLITS:
        x, y = load_digits(s)
        np.testing.assert_array_equal(x, x_all[parts[s]])
        np.testing.assert_array_equal(y, y_all[parts[s]])


def test_digits_split_is_stratified():
    _, y_all = load_digits("all")
    overall = np.bincount(y_all, minlength=10) / len(y_all)
    for s in SPLITS:
        _, y = load_digits(s)
        counts = np.bincount(y, minlength=10)
        assert (counts > 0).all(), f"{s} misses a class: {counts}"
        # largest-remainder apportioning: each class is within one image of its exact share
        assert np.abs(counts - overall * len(y)).max() < 1.0
    assert (np.bincount(load_digits("val")[1]) == 18).all()


def test_stratified_split_is_deterministic_and_seed_dependent():
    _, y = load_digits("all")
    a, b = stratified_split(y, seed=0), stratified_split(y, seed=0)
    c = stratified_split(y, seed=1)
    for s in SPLITS:
        np.testing.assert_array_equal(a[s], b[s])
    assert not np.array_equal(a["test"], c["test"])
    assert {k: len(v) for k, v in c.items()} == {k: len(v) for k, v in a.items()}


def test_digits_returns_copies_not_the_cache():
    x, y = load_digits("train")
    x[:] = -1.0
    y[:] = -1
    xi, _ = load_digits_images("train")
    xi[:] = -1.0
    x2, y2 = load_digits("train")
    assert x2.min() == 0.0 and y2.min() == 0


@pytest.mark.parametrize("loader", [load_digits, load_digits_images])
def test_digits_bad_split_names_the_valid_ones(loader):
    with pytest.raises(ValueError, match=r"'training'.*train, val, test, all"):
        loader("training")


# ----------------------------------------------------------------------------- corpus


def test_corpus_size_and_characters():
    text = load_corpus()
    assert 100_000 <= len(text) <= 300_000
    assert text.isascii()
    assert text.startswith("In the beginning God created the heaven and the earth.")
    assert text.count("\n\n") == 49  # 50 chapters


def test_tokenizer_vocabulary():
    text = load_corpus()
    tok = CharTokenizer(text)
    assert tok.vocab_size == len(set(text)) == len(tok.stoi) == len(tok.itos)
    assert all(tok.itos[i] == ch for ch, i in tok.stoi.items())
    assert sorted(tok.stoi) == [tok.itos[i] for i in range(tok.vocab_size)]
    ids = tok.encode(text)
    assert ids.dtype == np.int64 and ids.shape == (len(text),)
    assert ids.min() == 0 and ids.max() == tok.vocab_size - 1


@settings(max_examples=60, deadline=None)
@given(start=st.integers(0, 196_000), length=st.integers(0, 500))
def test_tokenizer_round_trip_on_corpus_substrings(start, length):
    text = load_corpus()
    tok = CharTokenizer(text)
    piece = text[start : start + length]
    ids = tok.encode(piece)
    assert ids.shape == (len(piece),)
    assert tok.decode(ids) == piece
    assert tok.decode(ids.tolist()) == piece


@given(st.text(alphabet="abc \n", min_size=1, max_size=40))
def test_tokenizer_round_trip_on_any_text(text):
    tok = CharTokenizer(text)
    assert tok.decode(tok.encode(text)) == text
    assert tok.vocab_size == len(set(text))


def test_tokenizer_errors_name_the_problem():
    tok = CharTokenizer("hello world")
    with pytest.raises(ValueError, match=r"character 'Z' at position 3 is not in the vocab.*2 "):
        tok.encode("helZ woZ")
    with pytest.raises(ValueError, match="'\u20ac' at position 0"):
        tok.encode("\u20ac")  # a code point beyond the lookup table
    with pytest.raises(ValueError, match=r"token id 8 is out of range for vocab_size 8"):
        tok.decode([0, 8])
    with pytest.raises(ValueError, match=r"token id -1"):
        tok.decode(np.array([-1]))
    with pytest.raises(ValueError, match="non-empty"):
        CharTokenizer("")
    assert tok.decode([]) == ""
    assert tok.encode("").shape == (0,)


def test_corpus_ids_split_90_10():
    text = load_corpus()
    train, tok = load_corpus_ids("train")
    val, tok_val = load_corpus_ids("val")
    assert tok_val is tok
    assert train.dtype == np.int64 and val.dtype == np.int64
    assert len(train) == int(0.9 * len(text)) and len(train) + len(val) == len(text)
    assert tok.decode(np.concatenate([train, val])) == text
    train[:] = 0  # a copy: the cache is unharmed
    assert tok.decode(load_corpus_ids("train")[0][:2]) == "In"
    with pytest.raises(ValueError, match=r"'test'.*train, val"):
        load_corpus_ids("test")


def test_unigram_entropy():
    assert unigram_entropy(np.zeros(10, dtype=np.int64)) == 0.0
    assert math.isclose(unigram_entropy(np.arange(8).repeat(3)), math.log(8))
    h_skewed = -(0.75 * math.log(0.75) + 0.25 * math.log(0.25))
    assert math.isclose(unigram_entropy([0, 0, 0, 1]), h_skewed)
    for split in ("train", "val"):
        h = unigram_entropy(load_corpus_ids(split)[0])
        # English characters: about 4.1 bits = 2.9 nats; far below log(vocab) = log(60) = 4.09
        assert 2.0 < h < 5.0
        assert h < math.log(load_corpus_ids(split)[1].vocab_size) - 0.5
    with pytest.raises(ValueError, match="at least one"):
        unigram_entropy(np.array([], dtype=np.int64))


# ----------------------------------------------------------------------------- data pipeline


class _Wrapped:
    """Stands in for a Tensor: anything with a `.data` array."""

    def __init__(self, data):
        self.data = np.asarray(data)


class _Squares(Dataset):
    """A map-style dataset that is not a TensorDataset (exercises the stacking path)."""

    def __init__(self, n):
        self.n = n

    def __len__(self):
        return self.n

    def __getitem__(self, i):
        return np.array([i, i * i], dtype=np.float32), np.int64(i % 3)


def _xy(n=10):
    x = np.arange(n * 2, dtype=np.float32).reshape(n, 2)  # (n, 2)
    return x, np.arange(n, dtype=np.int64)


def test_dataset_is_abstract():
    with pytest.raises(TypeError):
        Dataset()


def test_tensor_dataset_items_and_length_check():
    x, y = _xy(5)
    ds = TensorDataset(x, _Wrapped(y))
    assert len(ds) == 5
    xi, yi = ds[2]
    np.testing.assert_array_equal(xi, x[2])
    assert yi == 2
    assert ds[-1][1] == 4
    with pytest.raises(IndexError, match="index 5 is out of range for a dataset of length 5"):
        ds[5]
    with pytest.raises(ValueError, match=r"same first dimension, got lengths \[5, 4\]"):
        TensorDataset(x, y[:4])
    with pytest.raises(ValueError, match="at least one array"):
        TensorDataset()


@pytest.mark.parametrize("n, bs, drop_last, sizes", [
    (10, 3, False, [3, 3, 3, 1]),
    (10, 3, True, [3, 3, 3]),
    (9, 3, True, [3, 3, 3]),
    (10, 32, False, [10]),
    (10, 32, True, []),
    (10, 1, False, [1] * 10),
])
def test_loader_batch_sizes_and_len(n, bs, drop_last, sizes):
    x, y = _xy(n)
    loader = DataLoader(TensorDataset(x, y), batch_size=bs, drop_last=drop_last)
    batches = list(loader)
    assert len(loader) == len(sizes)
    assert [len(b[1]) for b in batches] == sizes
    for xb, yb in batches:
        assert isinstance(xb, Tensor) and xb.dtype == np.float32 and xb.shape[1:] == (2,)
        assert isinstance(yb, Tensor) and yb.dtype == np.int64
    if sizes:  # unshuffled: the dataset order
        order = np.concatenate([b[1].numpy() for b in batches])
        np.testing.assert_array_equal(order, np.arange(sum(sizes)))


def test_loader_batches_are_copies():
    x, y = _xy(6)
    xb, _ = next(iter(DataLoader(TensorDataset(x, y), batch_size=4)))
    xb[:] = -1
    assert x.min() == 0


def test_loader_rejects_bad_batch_size_and_seed():
    ds = TensorDataset(*_xy(4))
    with pytest.raises(ValueError, match="batch_size must be at least 1, got 0"):
        DataLoader(ds, batch_size=0)
    with pytest.raises(TypeError, match="batch_size must be an integer"):
        DataLoader(ds, batch_size=2.5)
    with pytest.raises(ValueError, match="seed must be a non-negative integer"):
        DataLoader(ds, shuffle=True, seed=-3)


def _epoch_labels(loader):
    return np.concatenate([yb for _, yb in loader])


def test_seeded_shuffle_is_reproducible_per_epoch():
    ds = TensorDataset(*_xy(50))
    a = DataLoader(ds, batch_size=7, shuffle=True, seed=123)
    b = DataLoader(ds, batch_size=7, shuffle=True, seed=123)
    a0, a1, a2 = _epoch_labels(a), _epoch_labels(a), _epoch_labels(a)
    b0, b1 = _epoch_labels(b), _epoch_labels(b)
    np.testing.assert_array_equal(a0, b0)  # same seed, same epoch: same order
    np.testing.assert_array_equal(a1, b1)
    assert not np.array_equal(a0, a1) and not np.array_equal(a1, a2)  # epochs differ
    assert not np.array_equal(a0, np.arange(50))  # it does shuffle
    for order in (a0, a1, a2):  # each epoch is a permutation: every example exactly once
        np.testing.assert_array_equal(np.sort(order), np.arange(50))
    c = DataLoader(ds, batch_size=7, shuffle=True, seed=123)
    c.set_epoch(2)
    np.testing.assert_array_equal(_epoch_labels(c), a2)  # epoch k depends only on (seed, k)
    d = DataLoader(ds, batch_size=7, shuffle=True, seed=124)
    assert not np.array_equal(_epoch_labels(d), a0)


def test_shuffle_drop_last_drops_a_different_tail_each_epoch():
    loader = DataLoader(TensorDataset(*_xy(10)), batch_size=4, shuffle=True, seed=0,
                        drop_last=True)
    e0, e1 = _epoch_labels(loader), _epoch_labels(loader)
    assert len(e0) == len(e1) == 8 and len(loader) == 2
    assert len(np.unique(e0)) == 8


def test_stacking_path_matches_fast_path():
    n = 11
    sq = _Squares(n)
    x = np.stack([sq[i][0] for i in range(n)])  # (n, 2)
    y = np.array([sq[i][1] for i in range(n)])
    slow = list(DataLoader(sq, batch_size=4, shuffle=True, seed=5))
    fast = list(DataLoader(TensorDataset(x, y), batch_size=4, shuffle=True, seed=5))
    assert len(slow) == len(fast) == 3
    for (xs, ys), (xf, yf) in zip(slow, fast):
        np.testing.assert_array_equal(xs, xf)
        np.testing.assert_array_equal(ys, yf)
        assert xs.dtype == np.float32 and ys.dtype == np.int64


def test_tensor_inputs_become_numpy_batches():
    from tinytorch.core.tensor import Tensor

    ds = TensorDataset(Tensor(np.ones((5, 3), np.float32)), Tensor(np.arange(5)))
    xb, yb = next(iter(DataLoader(ds, batch_size=4, as_numpy=True)))
    assert isinstance(xb, np.ndarray) and xb.shape == (4, 3) and xb.dtype == np.float32
    np.testing.assert_array_equal(yb, np.arange(4))
    assert CharTokenizer("abc").decode(Tensor(np.array([2, 0, 1]))) == "cab"


def test_single_array_dataset_yields_one_tuples():
    batches = list(DataLoader(TensorDataset(np.arange(5)), batch_size=2))
    assert all(isinstance(b, tuple) and len(b) == 1 for b in batches)


def test_random_split_and_subset():
    ds = TensorDataset(*_xy(20))
    parts = random_split(ds, [14, 6], seed=3)
    assert [len(p) for p in parts] == [14, 6]
    assert all(isinstance(p, Subset) for p in parts)
    labels = [_epoch_labels(DataLoader(p, batch_size=5)) for p in parts]
    np.testing.assert_array_equal(np.sort(np.concatenate(labels)), np.arange(20))
    np.testing.assert_array_equal(labels[0], parts[0].indices)  # y[i] == i
    assert parts[1][0][1] == parts[1].indices[0]
    again = random_split(ds, [14, 6], seed=3)
    np.testing.assert_array_equal(again[0].indices, parts[0].indices)
    other = random_split(ds, [14, 6], seed=4)
    assert not np.array_equal(other[0].indices, parts[0].indices)
    assert [len(p) for p in random_split(ds, [0.7, 0.2, 0.1], seed=0)] == [14, 4, 2]
    # floors 5, 2, 2; the one leftover item goes to the first subset
    ten = TensorDataset(np.arange(10))
    assert [len(p) for p in random_split(ten, [0.5, 0.25, 0.25])] == [6, 2, 2]


def test_random_split_and_subset_errors():
    ds = TensorDataset(*_xy(10))
    with pytest.raises(ValueError, match=r"sum to 9, but the dataset has 10 items"):
        random_split(ds, [5, 4])
    with pytest.raises(ValueError, match="sum to 0.9"):
        random_split(ds, [0.5, 0.4])
    with pytest.raises(ValueError, match="non-negative"):
        random_split(ds, [12, -2])
    with pytest.raises(IndexError, match="Subset index 10 is out of range"):
        Subset(ds, [0, 10])


def test_digits_through_the_loader():
    x, y = load_digits("val")
    loader = DataLoader(TensorDataset(x, y), batch_size=64, shuffle=True, seed=0)
    batches = list(loader)
    assert len(loader) == len(batches) == 3
    assert [b[0].shape for b in batches] == [(64, 64), (64, 64), (52, 64)]
    np.testing.assert_array_equal(np.sort(np.concatenate([b[1] for b in batches])), np.sort(y))
