"""Bundled real data, no downloads: the 8x8 handwritten digits and a character corpus.

- `load_digits(split)` / `load_digits_images(split)`: the UCI optical-recognition digits
  (1,797 images, 10 classes; the copy scikit-learn ships) with a fixed stratified split of
  1257 train / 180 val / 360 test images.
- `load_corpus()`, `CharTokenizer`, `load_corpus_ids(split)`, `unigram_entropy(ids)`: the Book
  of Genesis, King James Version (public domain), about 200 KB of English, for a tiny
  character-level GPT.

Attribution, licences, how each file was made and its sha256 are in `README.md` beside this
file; `tools/make_datasets.py` made them. Only numpy and the standard library are imported here.
"""

from __future__ import annotations

import functools
from importlib import resources

import numpy as np

__all__ = [
    "DIGITS_SPLITS",
    "DIGITS_SPLIT_SIZES",
    "CORPUS_SPLITS",
    "CORPUS_TRAIN_FRACTION",
    "load_digits",
    "load_digits_images",
    "stratified_split",
    "load_corpus",
    "CharTokenizer",
    "load_corpus_ids",
    "unigram_entropy",
]

DIGITS_FILE = "digits.npz"
CORPUS_FILE = "corpus.txt"

DIGITS_SPLITS = ("train", "val", "test", "all")
# Images per split; together they are all 1,797 (about 70 / 10 / 20 per cent).
DIGITS_SPLIT_SIZES = {"train": 1257, "val": 180, "test": 360}
# The split is stored in digits.npz as one code per image (0 train, 1 val, 2 test).
_SPLIT_CODES = {"train": 0, "val": 1, "test": 2}
DIGITS_SPLIT_SEED = 0

CORPUS_SPLITS = ("train", "val")
CORPUS_TRAIN_FRACTION = 0.9  # the first 90% of the characters train, the last 10% validate


def _check_split(split: str, valid: tuple[str, ...]) -> None:
    if split not in valid:
        raise ValueError(f"unknown split {split!r}; valid splits are {', '.join(valid)}")


# ----------------------------------------------------------------------------- digits


def _apportion(counts: np.ndarray, total: int) -> np.ndarray:
    """Share `total` among groups proportionally to `counts` (largest-remainder method)."""
    quotas = counts * (total / counts.sum())
    shares = np.floor(quotas).astype(np.int64)
    remainders = quotas - shares
    # ties go to the lower class index (a stable sort keeps the original order)
    order = np.argsort(-remainders, kind="stable")
    shares[order[: total - int(shares.sum())]] += 1
    return shares


def stratified_split(
    labels: np.ndarray, sizes: dict[str, int] | None = None, seed: int = DIGITS_SPLIT_SEED
) -> dict[str, np.ndarray]:
    """Split indices into train/val/test so each class keeps its share in every split.

    Each split's size per class is apportioned by the largest-remainder method, so the split
    sizes are exactly `sizes["val"]`, `sizes["test"]` and the rest for train. One
    `np.random.default_rng(seed)` permutes the indices of class 0, 1, ... in turn; the first
    ones of each class go to test, the next to val, the rest to train. Returns sorted int64
    index arrays. This is the procedure that produced the split stored in digits.npz.
    """
    labels = np.asarray(labels)
    if labels.ndim != 1:
        raise ValueError(f"labels must be 1-D, got shape {labels.shape}")
    sizes = DIGITS_SPLIT_SIZES if sizes is None else sizes
    n_val, n_test = int(sizes["val"]), int(sizes["test"])
    if n_val < 0 or n_test < 0 or n_val + n_test > len(labels):
        raise ValueError(f"cannot take val={n_val} and test={n_test} from {len(labels)} items")
    classes, counts = np.unique(labels, return_counts=True)
    val_per_class = _apportion(counts, n_val)
    test_per_class = _apportion(counts, n_test)
    rng = np.random.default_rng(seed)
    parts: dict[str, list[np.ndarray]] = {"train": [], "val": [], "test": []}
    for c, n_v, n_t in zip(classes, val_per_class, test_per_class):
        idx = rng.permutation(np.flatnonzero(labels == c))
        parts["test"].append(idx[:n_t])
        parts["val"].append(idx[n_t : n_t + n_v])
        parts["train"].append(idx[n_t + n_v :])
    return {name: np.sort(np.concatenate(p)).astype(np.int64) for name, p in parts.items()}


@functools.lru_cache(maxsize=1)
def _load_digits_raw() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(images uint8 (1797, 8, 8) in 0..16, labels uint8 (1797,), split codes uint8 (1797,))."""
    with resources.files(__name__).joinpath(DIGITS_FILE).open("rb") as f:
        with np.load(f, allow_pickle=False) as npz:
            images, labels, split = npz["images"], npz["labels"], npz["split"]
    for a in (images, labels, split):
        a.setflags(write=False)  # the cache is shared: callers get copies
    return images, labels, split


def _digits_subset(split: str) -> tuple[np.ndarray, np.ndarray]:
    _check_split(split, DIGITS_SPLITS)
    images, labels, codes = _load_digits_raw()
    if split == "all":
        return images, labels
    keep = codes == _SPLIT_CODES[split]
    return images[keep], labels[keep]


def load_digits(split: str = "train") -> tuple[np.ndarray, np.ndarray]:
    """Digits as flat vectors: X float32 (N, 64) in [0, 1] (pixel / 16), y int64 (N,).

    `split` is "train" (1257), "val" (180), "test" (360) or "all" (1797, file order).
    """
    images, labels = _digits_subset(split)
    x = images.reshape(len(images), 64).astype(np.float32) / np.float32(16.0)  # (N, 64)
    return x, labels.astype(np.int64)


def load_digits_images(split: str = "train") -> tuple[np.ndarray, np.ndarray]:
    """Digits as images: X float32 (N, 1, 8, 8) in [0, 1], y int64 (N,)."""
    images, labels = _digits_subset(split)
    x = images.reshape(len(images), 1, 8, 8).astype(np.float32) / np.float32(16.0)  # (N,1,8,8)
    return x, labels.astype(np.int64)


# ----------------------------------------------------------------------------- corpus


@functools.lru_cache(maxsize=1)
def load_corpus() -> str:
    """The bundled character corpus (Genesis, King James Version) as one string."""
    return resources.files(__name__).joinpath(CORPUS_FILE).read_text(encoding="utf-8")


def _as_int_array(ids: object) -> np.ndarray:
    arr = np.asarray(getattr(ids, "data", ids))  # accepts a Tensor (its .data)
    if arr.size == 0:
        return arr.reshape(0).astype(np.int64)
    if not np.issubdtype(arr.dtype, np.integer):
        raise TypeError(f"token ids must be integers, got dtype {arr.dtype}")
    return arr


class CharTokenizer:
    """Character-level tokenizer: one id per distinct character, ids in sorted-character order.

    `stoi` maps character -> id, `itos` maps id -> character (both dicts).
    """

    def __init__(self, text: str) -> None:
        if not isinstance(text, str) or not text:
            raise ValueError("CharTokenizer needs a non-empty string to build its vocabulary")
        chars = sorted(set(text))
        self.stoi: dict[str, int] = {ch: i for i, ch in enumerate(chars)}
        self.itos: dict[int, str] = dict(enumerate(chars))
        self.vocab_size: int = len(chars)
        # code point -> id lookup table (-1 = not in the vocabulary) for vectorised encoding
        self._table = np.full(max(map(ord, chars)) + 1, -1, dtype=np.int64)
        self._table[[ord(ch) for ch in chars]] = np.arange(len(chars))
        self._chars = np.array(chars)

    def __repr__(self) -> str:
        return f"CharTokenizer(vocab_size={self.vocab_size})"

    def encode(self, text: str) -> np.ndarray:
        """String -> int64 ids of shape (len(text),). Unknown characters raise ValueError."""
        if not isinstance(text, str):
            raise TypeError(f"encode expects a str, got {type(text).__name__}")
        codes = np.frombuffer(text.encode("utf-32-le"), dtype=np.uint32).astype(np.int64)
        ids = np.full(len(codes), -1, dtype=np.int64)
        known = codes < len(self._table)
        ids[known] = self._table[codes[known]]
        bad = np.flatnonzero(ids < 0)
        if len(bad):
            pos = int(bad[0])
            raise ValueError(
                f"character {text[pos]!r} at position {pos} is not in the vocabulary "
                f"({len(bad)} unknown character(s) in total)"
            )
        return ids

    def decode(self, ids: object) -> str:
        """1-D integer ids (list, array or Tensor) -> string. Ids out of range raise ValueError."""
        arr = _as_int_array(ids)
        if arr.ndim != 1:
            raise ValueError(f"decode expects 1-D ids, got shape {arr.shape}")
        bad = (arr < 0) | (arr >= self.vocab_size)
        if bad.any():
            raise ValueError(
                f"token id {int(arr[bad][0])} is out of range for vocab_size {self.vocab_size}"
            )
        return "".join(self._chars[arr].tolist())


@functools.lru_cache(maxsize=1)
def _corpus_ids() -> tuple[np.ndarray, CharTokenizer]:
    text = load_corpus()
    tok = CharTokenizer(text)
    ids = tok.encode(text)
    ids.setflags(write=False)
    return ids, tok


def load_corpus_ids(split: str = "train") -> tuple[np.ndarray, CharTokenizer]:
    """(int64 ids, tokenizer) for the first 90% ("train") or the last 10% ("val") of the corpus.

    The tokenizer is built from the whole corpus, so both splits share one vocabulary.
    """
    _check_split(split, CORPUS_SPLITS)
    ids, tok = _corpus_ids()
    n_train = int(len(ids) * CORPUS_TRAIN_FRACTION)
    part = ids[:n_train] if split == "train" else ids[n_train:]
    return part.copy(), tok


def unigram_entropy(ids: object) -> float:
    """Entropy in nats per token of the empirical unigram distribution of `ids`.

    A model that ignores context can do no better than this cross-entropy on the same data, so
    a language model should beat it.
    """
    arr = _as_int_array(ids).reshape(-1)
    if arr.size == 0:
        raise ValueError("unigram_entropy needs at least one token id")
    if arr.min() < 0:
        raise ValueError(f"token ids must be non-negative, got {int(arr.min())}")
    counts = np.bincount(arr)
    p = counts[counts > 0] / arr.size
    return float(-(p * np.log(p)).sum())
