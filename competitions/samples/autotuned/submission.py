"""Hyperparameters chosen by successive halving (module 19, tinytorch.autotuning) inside train().

`build_autotuner()` returns module 19's `hyperparameter_search`; the base class's `train` calls
`autotune()` with the training split minus its hold-out, before it builds the model. Successive
halving with the median stopping rule spends 21 training epochs on a grid of 9 (hidden size,
learning rate) pairs, promotes the best third of the trials at 1 and 3 epochs, and keeps the
best on the hold-out; the final model is then trained with that configuration. The search runs
inside train(), so its time counts in the speed category: tuning has to pay for itself.
"""

from types import SimpleNamespace

from tinytorch.autotuning import hyperparameter_search
from tinytorch.competition import CompetitionSubmission
from tinytorch.core.nn import Linear, ReLU, Sequential
from tinytorch.core.optim import Adam


class AutoTuned(CompetitionSubmission):
    team = "autotuned"
    category = "efficiency"
    tags = ("autotuning", "successive-halving", "median-stopping")
    description = (
        "Successive halving (tinytorch.autotuning) picks the hidden size and learning rate from "
        "a 3x3 grid on the hold-out split, then the chosen MLP trains to 97% hold-out accuracy."
    )
    search_space = {"hidden": [16, 32, 64], "lr": [0.003, 0.01, 0.03]}
    search_epochs = 21  # all 9 configurations for 1 epoch, the best 3 to 3, the best to 9

    def build_autotuner(self):
        return hyperparameter_search

    def autotune(self, tuner, x_train, y_train, x_val, y_val, budget_seconds):
        data = SimpleNamespace(x_train=x_train, y_train=y_train, x_val=x_val, y_val=y_val)

        def build(config):
            model = Sequential(Linear(64, config["hidden"]), ReLU(), Linear(config["hidden"], 10))
            return model, Adam(model.parameters(), lr=config["lr"])

        result = tuner(
            build, data, self.search_space, self.search_epochs, method="halving",
            seed=self.seed, progress=False,
        )
        best = result.best_config
        self.hidden, self.learning_rate = int(best["hidden"]), float(best["lr"])
        return best
