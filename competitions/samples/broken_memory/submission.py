"""Broken on purpose: allocates 16 GiB while loading (the arena's memory limit stops it)."""

import numpy as np

from tinytorch.competition import CompetitionSubmission


class Hog(CompetitionSubmission):
    team = "broken_memory"
    tags = ("broken", "memory")
    description = "Builds a 16 GiB lookup table in load()."
    hidden, max_epochs = 16, 1

    def load(self, folder):
        super().load(folder)
        self.table = np.ones(2**31, dtype=np.float64)
