"""Broken on purpose: debug printing left in (2 MB on stdout before the first prediction)."""

from tinytorch.competition import CompetitionSubmission


class Chatty(CompetitionSubmission):
    team = "broken_output"
    tags = ("broken", "output")
    description = "Prints its weights, a thousand times."
    hidden, max_epochs = 16, 1

    def load(self, folder):
        super().load(folder)
        for _ in range(1000):
            print("weights:", "0.123456789 " * 170)
