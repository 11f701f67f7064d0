"""Broken on purpose: returns integer scores (a one-hot of the argmax) instead of floats."""

import numpy as np

from tinytorch.competition import CompetitionSubmission


class WrongDtype(CompetitionSubmission):
    team = "broken_dtype"
    tags = ("broken", "dtype")
    description = "Returns int64 one-hot vectors."
    hidden, max_epochs = 16, 1

    def predict(self, x):
        scores = super().predict(x)
        return (scores == scores.max(axis=1, keepdims=True)).astype(np.int64)
