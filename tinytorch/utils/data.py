"""`tinytorch.utils.data`: datasets and the DataLoader (from `tinytorch.core.data`)."""

from tinytorch.core.data import DataLoader, Dataset, Subset, TensorDataset, random_split

__all__ = ["DataLoader", "Dataset", "Subset", "TensorDataset", "random_split"]
