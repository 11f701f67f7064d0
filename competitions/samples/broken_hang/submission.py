"""Broken on purpose: predict never returns (the arena kills it at the wall-time limit)."""

from tinytorch.competition import CompetitionSubmission


class Hangs(CompetitionSubmission):
    team = "broken_hang"
    tags = ("broken", "hang")
    description = "Spins forever in predict."
    hidden, max_epochs = 16, 1

    def predict(self, x):
        n = 0
        while True:
            n += 1
