"""Speed: a narrower MLP with larger steps on smaller batches, stopping at 97% hold-out accuracy."""

from tinytorch.competition import CompetitionSubmission


class SpeedRun(CompetitionSubmission):
    team = "speedrun"
    category = "speed"
    tags = ("early-stopping", "small-mlp", "large-lr")
    description = (
        "32 hidden units, Adam with lr 0.02 and batches of 32; train() stops at 97% hold-out "
        "accuracy instead of training a fixed 20 epochs."
    )
    hidden = 32
    learning_rate = 0.02
    batch_size = 32
    stop_accuracy = 0.97  # the default; the baseline instead trains a fixed 20 epochs
