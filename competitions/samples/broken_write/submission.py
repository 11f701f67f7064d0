"""Broken on purpose: writes a cache file outside its own folder."""

from tinytorch.competition import CompetitionSubmission


class Escapes(CompetitionSubmission):
    team = "broken_write"
    tags = ("broken", "write")
    description = "Caches predictions in ../escape-cache.txt."
    hidden, max_epochs = 16, 1

    def load(self, folder):
        super().load(folder)
        with open("../escape-cache.txt", "w") as f:
            f.write("cached\n")
