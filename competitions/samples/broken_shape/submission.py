"""Broken on purpose: returns 9 class scores instead of 10."""

from tinytorch.competition import CompetitionSubmission


class WrongShape(CompetitionSubmission):
    team = "broken_shape"
    tags = ("broken", "shape")
    description = "Drops the last class column."
    hidden, max_epochs = 16, 1

    def predict(self, x):
        return super().predict(x)[:, :9]
