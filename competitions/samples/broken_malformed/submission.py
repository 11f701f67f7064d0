"""Broken on purpose: a fine model with an invalid submission.yaml (see that file)."""

from tinytorch.competition import CompetitionSubmission


class Malformed(CompetitionSubmission):
    hidden, max_epochs = 16, 1
