"""The baseline: the default CompetitionSubmission (MLP 64-64-10, Adam, float32 weights)."""

from tinytorch.competition import CompetitionSubmission


class Baseline(CompetitionSubmission):
    team = "baseline"
    category = "efficiency"
    tags = ("mlp", "float32")
    description = (
        "The reference entry: a 64-hidden-unit MLP trained with Adam for 20 epochs, float32 "
        "weights."
    )
    stop_accuracy = None  # train all max_epochs (no early stop): the reference, not a speedrun
    max_epochs = 20
