"""Broken on purpose: predict raises an exception (the arena reports a crash, with the line)."""

from tinytorch.competition import CompetitionSubmission


class Crashes(CompetitionSubmission):
    team = "broken_crash"
    tags = ("broken", "crash")
    description = "Divides by zero in predict."
    hidden, max_epochs = 16, 1

    def predict(self, x):
        scale = len(x) - len(x)
        return super().predict(x) / (1 // scale)
