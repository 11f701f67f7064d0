"""Datasets and a DataLoader: batching and reproducible, seeded shuffling over numpy arrays.

- `Dataset`: anything with `__len__` and `__getitem__(i)` returning one example (an array or
  a tuple of arrays).
- `TensorDataset(*arrays)`: examples are rows of arrays that share their first dimension.
- `Subset(dataset, indices)` and `random_split(dataset, lengths, seed)`.
- `DataLoader(dataset, batch_size=1, shuffle, seed, drop_last, as_numpy=False)`: yields
  tuples of Tensors (numpy arrays with `as_numpy=True`); the default batch size is
  PyTorch's, 1. Tensors keep the arrays' dtypes (float32 pixels, int64 labels). A
  `TensorDataset` (or a `Subset` of one) is batched by fancy indexing, one numpy call per
  array; any other dataset by stacking its examples. With `shuffle=True` and a `seed`, epoch k
  is permuted by `np.random.default_rng([seed, k])`, so two loaders with the same seed agree
  and each epoch has its own order.
"""

from __future__ import annotations

import abc
import math
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np

from tinytorch.core.tensor import Tensor

__all__ = ["Dataset", "TensorDataset", "Subset", "random_split", "DataLoader"]


def _to_numpy(x: Any) -> np.ndarray:
    """A numpy array from an array, a Tensor (its `.data`) or anything np.asarray takes."""
    return np.asarray(getattr(x, "data", x))


def _check_index(i: Any, n: int) -> int:
    if isinstance(i, bool) or not isinstance(i, (int, np.integer)):
        raise TypeError(f"dataset index must be an integer, got {type(i).__name__}")
    i = int(i)
    if not -n <= i < n:
        raise IndexError(f"index {i} is out of range for a dataset of length {n}")
    return i % n


class Dataset(abc.ABC):
    """A sized, indexable collection of examples. Subclasses define both methods."""

    @abc.abstractmethod
    def __len__(self) -> int: ...

    @abc.abstractmethod
    def __getitem__(self, i: int) -> Any: ...


class TensorDataset(Dataset):
    """Examples are `tuple(a[i] for a in arrays)`; all arrays share their first dimension."""

    def __init__(self, *arrays: Any) -> None:
        if not arrays:
            raise ValueError("TensorDataset needs at least one array")
        self.arrays: tuple[np.ndarray, ...] = tuple(_to_numpy(a) for a in arrays)
        if any(a.ndim == 0 for a in self.arrays):
            raise ValueError("TensorDataset arrays need a first dimension; got a 0-d array")
        lengths = [len(a) for a in self.arrays]
        if len(set(lengths)) != 1:
            raise ValueError(
                f"TensorDataset arrays must have the same first dimension, got lengths {lengths}"
            )

    def __len__(self) -> int:
        return len(self.arrays[0])

    def __getitem__(self, i: int) -> tuple[np.ndarray, ...]:
        i = _check_index(i, len(self))
        return tuple(a[i] for a in self.arrays)


class Subset(Dataset):
    """The examples of `dataset` at `indices`, in that order."""

    def __init__(self, dataset: Any, indices: Sequence[int] | np.ndarray) -> None:
        idx = np.asarray(indices)
        if idx.size == 0:
            idx = idx.reshape(0).astype(np.int64)
        if idx.ndim != 1 or not np.issubdtype(idx.dtype, np.integer):
            raise ValueError(
                f"Subset indices must be a 1-D integer sequence, got shape {idx.shape} "
                f"dtype {idx.dtype}"
            )
        n = len(dataset)
        if idx.size and (idx.min() < 0 or idx.max() >= n):
            bad = int(idx[(idx < 0) | (idx >= n)][0])
            raise IndexError(f"Subset index {bad} is out of range for a dataset of length {n}")
        self.dataset = dataset
        self.indices = idx.astype(np.int64)

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, i: int) -> Any:
        return self.dataset[int(self.indices[_check_index(i, len(self))])]


def random_split(dataset: Any, lengths: Sequence[int | float], seed: int = 0) -> list[Subset]:
    """Split `dataset` into non-overlapping random `Subset`s of the given lengths.

    `lengths` are counts summing to `len(dataset)`, or fractions summing to 1 (the counts are
    floored and the leftover items go one each to the first subsets). The permutation comes
    from `np.random.default_rng(seed)`, so the same seed always gives the same split.
    """
    n = len(dataset)
    lengths = list(lengths)
    if not lengths:
        raise ValueError("random_split needs at least one length")
    if any(x < 0 for x in lengths):
        raise ValueError(f"random_split lengths must be non-negative, got {lengths}")
    if all(isinstance(x, (int, np.integer)) for x in lengths):
        counts = [int(x) for x in lengths]
        if sum(counts) != n:
            raise ValueError(
                f"random_split lengths {counts} sum to {sum(counts)}, "
                f"but the dataset has {n} items"
            )
    else:
        if not math.isclose(sum(lengths), 1.0, abs_tol=1e-6):
            raise ValueError(
                f"random_split fractions {lengths} sum to {sum(lengths)}, not 1 "
                f"(or pass integer counts summing to {n})"
            )
        counts = [int(math.floor(f * n)) for f in lengths]
        for k in range(n - sum(counts)):
            counts[k % len(counts)] += 1
    perm = np.random.default_rng(seed).permutation(n)
    bounds = np.cumsum([0, *counts])
    return [Subset(dataset, perm[a:b]) for a, b in zip(bounds[:-1], bounds[1:])]


def _collate(items: list[Any]) -> tuple[np.ndarray, ...]:
    """Stack a list of examples (each an array or a tuple of arrays) into a tuple of batches."""
    first = items[0]
    if isinstance(first, (tuple, list)):
        return tuple(np.stack([_to_numpy(it[k]) for it in items]) for k in range(len(first)))
    return (np.stack([_to_numpy(it) for it in items]),)


def _fetch(dataset: Any, idx: np.ndarray) -> tuple[np.ndarray, ...]:
    """The examples at `idx` as a tuple of batched arrays."""
    if isinstance(dataset, TensorDataset):
        return tuple(a[idx] for a in dataset.arrays)  # fast path: one fancy index per array
    if isinstance(dataset, Subset):
        return _fetch(dataset.dataset, dataset.indices[idx])
    return _collate([dataset[int(i)] for i in idx])


class DataLoader:
    """Iterate over `dataset` in batches: each batch is a tuple of Tensors (like PyTorch), or
    of numpy arrays with `as_numpy=True`.

    `len(loader)` is the number of batches per epoch. With `shuffle=True`, epoch k (counted
    by the iterations started so far, or set with `set_epoch`) uses the permutation from
    `np.random.default_rng([seed, k])`; with `seed=None` each epoch draws fresh OS entropy.
    """

    def __init__(
        self,
        dataset: Any,
        batch_size: int = 1,
        shuffle: bool = False,
        seed: int | None = None,
        drop_last: bool = False,
        as_numpy: bool = False,
    ) -> None:
        if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)):
            raise TypeError(f"batch_size must be an integer, got {type(batch_size).__name__}")
        if batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {batch_size}")
        if seed is not None and (not isinstance(seed, (int, np.integer)) or seed < 0):
            raise ValueError(f"seed must be a non-negative integer or None, got {seed!r}")
        self.dataset = dataset
        self.batch_size = int(batch_size)
        self.shuffle = bool(shuffle)
        self.seed = None if seed is None else int(seed)
        self.drop_last = bool(drop_last)
        self.as_numpy = bool(as_numpy)
        self.epoch = 0  # the epoch the next iteration will run

    def __len__(self) -> int:
        n = len(self.dataset)
        return n // self.batch_size if self.drop_last else math.ceil(n / self.batch_size)

    def set_epoch(self, epoch: int) -> None:
        """Make the next iteration run epoch `epoch` (its shuffle order)."""
        if epoch < 0:
            raise ValueError(f"epoch must be non-negative, got {epoch}")
        self.epoch = int(epoch)

    def order(self, epoch: int) -> np.ndarray:
        """The example order of epoch `epoch`: arange(n), or its seeded permutation."""
        n = len(self.dataset)
        if not self.shuffle:
            return np.arange(n)
        rng = np.random.default_rng(None if self.seed is None else [self.seed, epoch])
        return rng.permutation(n)

    def __iter__(self) -> Iterator[tuple[Any, ...]]:
        order = self.order(self.epoch)
        self.epoch += 1
        return self._batches(order)

    def _batches(self, order: np.ndarray) -> Iterator[tuple[Any, ...]]:
        for b in range(len(self)):
            idx = order[b * self.batch_size : (b + 1) * self.batch_size]
            arrays = _fetch(self.dataset, idx)
            yield arrays if self.as_numpy else tuple(Tensor(a) for a in arrays)
