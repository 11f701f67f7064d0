"""Broken on purpose: a numerically unstable softmax that overflows to NaN."""

import numpy as np

from tinytorch.competition import CompetitionSubmission


class Overflows(CompetitionSubmission):
    team = "broken_nan"
    tags = ("broken", "nan")
    description = "Softmax without subtracting the max, at temperature 1e-3."
    hidden, max_epochs = 16, 1

    def predict(self, x):
        with np.errstate(over="ignore", invalid="ignore"):
            e = np.exp(super().predict(x).astype(np.float32) * 1000.0)
            return e / e.sum(axis=1, keepdims=True)
