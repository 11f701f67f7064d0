"""Hyperparameter search at an equal epoch budget (module 19, hand-written library code).

- `random_search`: random grid points, each trained to the end (optionally with the median
  stopping rule, whose saved epochs pay for more trials);
- `successive_halving` (the inner loop of Hyperband): many trials for `min_epochs`, the best
  1/eta promoted at each rung; `halving_plan` sizes the first rung to the budget; the median
  stopping rule (Google Vizier) stops below-median trials inside a rung;
- `tpe_search`: the Tree-structured Parzen Estimator of Hyperopt/Optuna over the grid's value
  indices ("Bayesian optimization basics").

`hyperparameter_search(build_fn, data, space, budget, method=...)` is the one entry point;
`config_quality` scores a choice on the test split, independently of any search.
`tinytorch.infra.parallel_search` runs successive halving with trials in parallel.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
from tqdm import tqdm

from tinytorch.core.data import DataLoader, TensorDataset
from tinytorch.core.losses import cross_entropy
from tinytorch.core.nn import manual_seed
from tinytorch.core.tensor import Tensor

from .harness import accuracy_on

__all__ = [
    "SEARCH_METHODS",
    "MedianStoppingRule",
    "SearchResult",
    "Trial",
    "config_quality",
    "grid",
    "halving_plan",
    "hyperparameter_search",
    "random_search",
    "successive_halving",
    "tpe_scores",
    "tpe_search",
]


def grid(space: dict) -> list[dict]:
    """Every combination of a {name: [values]} space, in a fixed order."""
    if not space or any(len(v) == 0 for v in space.values()):
        raise ValueError(f"every dimension of the space needs at least one value: {space}")
    out = [{}]
    for k, values in space.items():
        out = [{**c, k: v} for c in out for v in values]
    return out


@dataclass
class Trial:
    config: dict
    scores: list = field(default_factory=list)  # validation accuracy after each epoch
    stopped: str = ""  # "" (running), "halving" (not promoted), "median rule", "done"

    @property
    def epochs(self) -> int:
        return len(self.scores)

    @property
    def score(self) -> float:
        return self.scores[-1] if self.scores else -math.inf


class _Runner:
    """Trains trials epoch by epoch; keeps each live trial's model and optimizer."""

    def __init__(self, build_fn: Callable, data, seed: int, batch_size: int = 32):
        self.build_fn, self.data, self.seed, self.batch_size = build_fn, data, seed, batch_size
        self.state: dict[int, tuple] = {}
        self.epochs_used = 0

    def train_epoch(self, trial: Trial) -> float:
        key = id(trial)
        if key not in self.state:
            manual_seed(self.seed)
            model, opt = self.build_fn(trial.config)
            loader = DataLoader(
                TensorDataset(self.data.x_train, self.data.y_train),
                batch_size=int(trial.config.get("batch_size", self.batch_size)),
                shuffle=True,
                seed=self.seed,
            )
            self.state[key] = (model, opt, loader)
        model, opt, loader = self.state[key]
        model.train()
        for xb, yb in loader:
            loss = cross_entropy(model(Tensor(xb)), yb)
            opt.zero_grad()
            loss.backward()
            opt.step()
        self.epochs_used += 1
        diverged = not math.isfinite(float(loss.item()))
        trial.scores.append(0.0 if diverged else accuracy_on(model, self.data.x_val,
                                                             self.data.y_val))
        return trial.score

    def release(self, trial: Trial) -> None:
        self.state.pop(id(trial), None)


@dataclass
class SearchResult:
    method: str
    best: Trial | None
    trials: list
    epochs_used: int
    budget: int
    median_stops: int = 0  # trials the median rule stopped
    epochs_saved: int = 0  # epochs those trials did not spend

    @property
    def best_config(self) -> dict | None:
        return self.best.config if self.best else None

    def table(self, top: int = 8) -> str:
        keys = list(self.trials[0].config) if self.trials else []
        lines = [
            f"{self.method}: {len(self.trials)} trials, {self.epochs_used}/{self.budget} epochs, "
            f"median rule stopped {self.median_stops} (saved {self.epochs_saved} epochs)",
            "".join(f"{k:>14}" for k in keys) + f"{'epochs':>8}{'val acc':>9}  stopped",
        ]
        for t in sorted(self.trials, key=lambda t: (-t.epochs, -t.score))[:top]:
            lines.append("".join(f"{t.config[k]!s:>14}" for k in keys)
                         + f"{t.epochs:>8}{t.score:>9.4f}  {t.stopped}")
        return "\n".join(lines)


def halving_plan(
    n_configs: int, budget: int, min_epochs: int = 1, max_epochs: int = 9, eta: int = 3
) -> tuple[int, list[int]]:
    """(n0, rungs): the largest first rung whose successive halving fits in `budget` epochs."""
    if min_epochs < 1 or max_epochs < min_epochs or eta < 2:
        raise ValueError(f"need 1 <= min_epochs <= max_epochs and eta >= 2, got "
                         f"{min_epochs}, {max_epochs}, {eta}")
    rungs = [min_epochs]
    while rungs[-1] * eta <= max_epochs:
        rungs.append(rungs[-1] * eta)
    if rungs[-1] < max_epochs:
        rungs.append(max_epochs)

    def cost(n0: int) -> int:
        total, prev = 0, 0
        for k, r in enumerate(rungs):
            total += max(1, n0 // eta**k) * (r - prev)
            prev = r
        return total

    n0 = 0
    while n0 < n_configs and cost(n0 + 1) <= budget:
        n0 += 1
    if n0 == 0:
        raise ValueError(f"a budget of {budget} epochs is too small for one trial of {rungs}")
    return n0, rungs


class MedianStoppingRule:
    """Stop a trial whose score at epoch e is below the median of earlier trials at epoch e."""

    def __init__(self, grace: int = 1, min_trials: int = 3):
        self.grace, self.min_trials = grace, min_trials
        self.history: dict[int, list[float]] = {}  # epoch -> scores of trials that reached it
        self.stops = 0

    def should_stop(self, trial: Trial) -> bool:
        epoch = trial.epochs
        prev = self.history.setdefault(epoch, [])
        stop = (epoch >= self.grace and len(prev) >= self.min_trials
                and trial.score < statistics.median(prev))
        prev.append(trial.score)
        self.stops += stop
        return stop


def successive_halving(
    build_fn: Callable, data, space: dict, budget: int, eta: int = 3, min_epochs: int = 1,
    max_epochs: int = 9, seed: int = 0, median_rule: bool = True, progress: bool = True,
) -> SearchResult:
    """Successive halving over the grid, with the median stopping rule inside each rung."""
    configs = grid(space)
    n0, rungs = halving_plan(len(configs), budget, min_epochs, max_epochs, eta)
    rng = np.random.default_rng(seed)
    trials = [Trial(configs[i]) for i in rng.choice(len(configs), size=n0, replace=False)]
    runner = _Runner(build_fn, data, seed)
    rule = MedianStoppingRule() if median_rule else None
    saved = 0
    alive = list(trials)
    bar = tqdm(total=budget, desc="successive halving", disable=not progress, leave=False)
    for k, r in enumerate(rungs):
        for t in alive:
            while t.epochs < r:
                runner.train_epoch(t)
                bar.update(1)
                if t.epochs < r and rule is not None and rule.should_stop(t):
                    t.stopped = "median rule"
                    saved += r - t.epochs
                    runner.release(t)
                    break
        survivors = sorted((t for t in alive if not t.stopped), key=lambda t: -t.score)
        keep = max(1, n0 // eta ** (k + 1)) if k + 1 < len(rungs) else len(survivors)
        for t in survivors[keep:]:
            t.stopped = "halving"
            runner.release(t)
        alive = survivors[:keep]
    bar.close()
    for t in alive:
        t.stopped = "done"
    best = max(alive, key=lambda t: t.score) if alive else None
    return SearchResult("successive halving", best, trials, runner.epochs_used, budget,
                        rule.stops if rule else 0, saved)


def random_search(
    build_fn: Callable, data, space: dict, budget: int, max_epochs: int = 9, seed: int = 0,
    median_rule: bool = False, progress: bool = True,
) -> SearchResult:
    """Random grid points, each trained max_epochs, until the budget is spent. With
    `median_rule`, bad trials stop early and the epochs they save pay for more trials."""
    configs = grid(space)
    if budget < max_epochs:
        raise ValueError(
            f"a budget of {budget} epochs is too small for one {max_epochs}-epoch trial"
        )
    order = np.random.default_rng(seed).permutation(len(configs))
    runner = _Runner(build_fn, data, seed)
    rule = MedianStoppingRule() if median_rule else None
    trials, saved = [], 0
    bar = tqdm(total=budget, desc="random search", disable=not progress, leave=False)
    for i in order:
        if runner.epochs_used + max_epochs > budget:
            break
        t = Trial(configs[i])
        trials.append(t)
        while t.epochs < max_epochs:
            runner.train_epoch(t)
            bar.update(1)
            if t.epochs < max_epochs and rule is not None and rule.should_stop(t):
                t.stopped = "median rule"
                saved += max_epochs - t.epochs
                break
        t.stopped = t.stopped or "done"
        runner.release(t)
    bar.close()
    done = [t for t in trials if t.stopped == "done"]
    best = max(done, key=lambda t: t.score) if done else None
    name = "random search" + (" + median rule" if median_rule else "")
    return SearchResult(name, best, trials, runner.epochs_used, budget,
                        rule.stops if rule else 0, saved)


def tpe_scores(
    space: dict, observed: list[tuple[dict, float]], candidates: list[dict], gamma: float = 0.3,
    bandwidth: float = 1.0, prior: float = 1.0,
) -> np.ndarray:
    """log l(x) - log g(x) per candidate: Parzen densities over each dimension's value index,
    fitted to the top-gamma ("good") and the remaining ("bad") observations."""
    ranked = sorted(observed, key=lambda o: -o[1])
    n_good = max(1, math.ceil(gamma * len(ranked)))
    good, bad = [c for c, _ in ranked[:n_good]], [c for c, _ in ranked[n_good:]]
    score = np.zeros(len(candidates))
    for k, values in space.items():
        n = len(values)
        idx = np.arange(n)
        index_of = {repr(v): i for i, v in enumerate(values)}

        def density(group, k=k, idx=idx, index_of=index_of, n=n):
            d = np.full(n, prior / n)  # a uniform prior keeps unseen values possible
            for c in group:
                d += np.exp(-0.5 * ((idx - index_of[repr(c[k])]) / bandwidth) ** 2)
            return d / d.sum()

        ratio = np.log(density(good)) - np.log(density(bad))
        score += np.array([ratio[index_of[repr(c[k])]] for c in candidates])
    return score


def tpe_search(
    build_fn: Callable, data, space: dict, budget: int, max_epochs: int = 9, seed: int = 0,
    n_init: int = 3, gamma: float = 0.3, progress: bool = True,
) -> SearchResult:
    """Model-based search: `n_init` random trials, then always the grid point TPE ranks best."""
    configs = grid(space)
    n = min(len(configs), budget // max_epochs)
    if n == 0:
        raise ValueError(
            f"a budget of {budget} epochs is too small for one {max_epochs}-epoch trial"
        )
    rng = np.random.default_rng(seed)
    order = list(rng.permutation(len(configs)))
    runner = _Runner(build_fn, data, seed)
    trials: list[Trial] = []
    untried = set(range(len(configs)))
    for i in tqdm(range(n), desc="TPE search", disable=not progress, leave=False):
        if i < n_init:
            pick = int(order[i])
        else:
            cand = sorted(untried)
            s = tpe_scores(space, [(t.config, t.score) for t in trials],
                           [configs[j] for j in cand], gamma)
            pick = cand[int(np.argmax(s + 1e-9 * rng.random(len(s))))]  # random tie-break
        untried.discard(pick)
        t = Trial(configs[pick])
        for _ in range(max_epochs):
            runner.train_epoch(t)
        t.stopped = "done"
        runner.release(t)
        trials.append(t)
    return SearchResult("TPE (model-based)", max(trials, key=lambda t: t.score), trials,
                        runner.epochs_used, budget)


SEARCH_METHODS = {"halving": successive_halving, "random": random_search, "tpe": tpe_search}


def hyperparameter_search(
    build_fn: Callable, data, space: dict, budget: int, method: str = "halving", **kwargs
) -> SearchResult:
    """Search `space` ({name: [values]}) with `budget` training epochs in total.

    build_fn(config) -> (model, optimizer); seeded and reproducible (`seed=`), with a progress
    bar (`progress=`) and a results table (`.table()`)."""
    if method not in SEARCH_METHODS:
        raise ValueError(f"unknown method {method!r}; choose from {sorted(SEARCH_METHODS)}")
    if budget < 1:
        raise ValueError(f"budget must be a positive number of epochs, got {budget}")
    return SEARCH_METHODS[method](build_fn, data, space, budget, **kwargs)


def config_quality(
    build_fn: Callable, data, config: dict, epochs: int = 9, seeds: Sequence[int] = (0, 1)
) -> float:
    """Mean TEST accuracy of `config` trained `epochs` from each seed: how good a choice is."""
    accs = []
    for s in seeds:
        runner = _Runner(build_fn, data, s)
        t = Trial(dict(config))
        for _ in range(epochs):
            runner.train_epoch(t)
        accs.append(accuracy_on(runner.state[id(t)][0], data.x_test, data.y_test))
    return float(np.mean(accs))
