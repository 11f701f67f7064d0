"""Module 19 (autotuning): the AutoTuner against exhaustive and random search, hyperparameter
search against random search, adaptive training against a fixed schedule.

Measures, in one run:
- per model (digits MLP and CNN from tinytorch.core.zoo) and constraint set (loose -> tight ->
  infeasible): evaluations used by the tuner, by random search and by exhaustive search of the
  same space; the objective each reaches (gap to the exhaustive optimum, same measurements via a
  shared cache); whether the tuner's model meets every constraint when measured again from
  scratch (no cache, no latency margin); and the Pareto plot (bench/results/autotuning_pareto.png)
- successive halving (+ median rule) vs random search (with and without the median rule) vs TPE
  at an equal epoch budget, 5 seeds,
  scored by the test accuracy of each method's chosen configuration retrained from 2 seeds
- adaptive training (lr on plateau + early stopping) vs a constant-lr schedule, mean of 3 seeds
- uncertainty sampling vs random labelling at the same label budget, mean of 3 seeds

Targets (full mode): for every feasible constraint set the tuner meets the constraints on
re-measurement, is within 1% of the exhaustive optimum and uses <= 40% of its evaluations;
infeasible sets are reported as infeasible by both; halving >= random in >= 4 of 5 seeds and the
median rule stops trials; adaptive reaches the fixed accuracy in fewer epochs.
"""

from __future__ import annotations

import math
import sys
import tempfile
import time
from pathlib import Path

import _harness as H  # first: pins BLAS to one thread before numpy is imported
import numpy as np

from tinytorch.autotuning import (
    OBJECTIVES,
    AutoTuner,
    Constraints,
    SearchSpace,
    TuningResult,
    measure,
    objective_value,
)
from tinytorch.core import zoo
from tinytorch.core.nn import manual_seed
from tinytorch.core.optim import AdamW
from tinytorch.tuning.active import active_learning
from tinytorch.tuning.adaptive import adaptive_training, fixed_training
from tinytorch.tuning.cache import ResultCache
from tinytorch.tuning.search import config_quality, hyperparameter_search

RESULTS = Path(__file__).resolve().parent / "results"
K = 1024


def best_under(result: TuningResult, constraints: Constraints, objective: str):
    """The best candidate of `result` that meets `constraints` (same measurements)."""
    ok = [c for c in result.candidates
          if not constraints.violations(c.metrics, result.baseline.accuracy)]
    return min(ok, key=lambda c: OBJECTIVES[objective](c.metrics)) if ok else None


def gap_percent(tuned: float, best: float, objective: str) -> float:
    """How much worse than the optimum, in per cent of the optimum (0 = as good)."""
    if objective == "accuracy":
        return max(0.0, (best - tuned) / best * 100)
    return max(0.0, (tuned - best) / best * 100)


def random_baseline(result_ex: TuningResult, constraints, objective, n: int, seeds=5):
    """Median objective of random search with `n` evaluations (sampled from the exhaustive
    measurements), and how often it found nothing feasible."""
    cands = [c for c in result_ex.candidates]
    values, misses = [], 0
    for s in range(seeds):
        rng = np.random.default_rng(s)
        pick = [cands[i] for i in rng.choice(len(cands), size=min(n, len(cands)), replace=False)]
        ok = [c for c in pick
              if not constraints.violations(c.metrics, result_ex.baseline.accuracy)]
        if not ok:
            misses += 1
            continue
        values.append(objective_value(min(ok, key=lambda c: OBJECTIVES[objective](c.metrics))
                                      .metrics, objective))
    return (float(np.median(values)) if values else float("nan")), misses


def constraint_sets(kind: str, quick: bool, baseline_ms: float) -> list:
    """(name, Constraints, objective) from loose to tight to infeasible."""
    if kind == "mlp":
        sets = [
            ("loose", Constraints(max_accuracy_drop=0.05), "bytes"),
            ("laptop", Constraints(max_bytes=32 * K, max_accuracy_drop=0.01), "accuracy"),
            ("mobile", Constraints(max_bytes=16 * K, max_accuracy_drop=0.02), "bytes"),
            ("latency", Constraints(max_latency_ms=2.0 * baseline_ms, max_accuracy_drop=0.02),
             "bytes"),
            ("tight", Constraints(max_bytes=2 * K, max_peak_memory=36 * K,
                                  max_accuracy_drop=0.03), "bytes"),
            ("infeasible", Constraints(max_bytes=700, max_accuracy_drop=0.0), "bytes"),
        ]
        if quick:
            sets = [sets[2], sets[-1]]
        return sets
    return [
        ("loose", Constraints(max_accuracy_drop=0.05), "bytes"),
        ("mobile", Constraints(max_bytes=8 * K, max_accuracy_drop=0.02), "bytes"),
        ("accuracy", Constraints(max_bytes=4 * K, max_accuracy_drop=0.02), "accuracy"),
        ("tight", Constraints(max_bytes=2 * K, max_peak_memory=512 * K,
                              max_accuracy_drop=0.03), "bytes"),
        ("infeasible", Constraints(max_bytes=400, max_accuracy_drop=0.0), "bytes"),
    ]


def tune_model(kind: str, args, workdir: Path, results: dict, targets: list, plots: dict):
    t0 = time.perf_counter()
    model, _, data = zoo.train_digits(kind, seed=0)
    print(f"\n== digits {kind.upper()} trained in {time.perf_counter() - t0:.1f}s")
    if args.quick:
        space = SearchSpace(prune=(0.0, 0.75, 0.875), recover=("none", "finetune"),
                            quantize=(None, 8))
    elif kind == "cnn":
        space = SearchSpace(prune=(0.0, 0.25, 0.5, 0.75))
    else:
        space = SearchSpace()
    cache = ResultCache(workdir / f"{kind}.json")
    tuner = AutoTuner(data, space=space, cache=cache, progress=False)
    base_ms = measure(model, data).latency_ms
    sets = constraint_sets(kind, args.quick, base_ms)
    tuned = {}
    for name, cons, objective in sets:
        t = time.perf_counter()
        tuned[name] = (tuner.auto_optimize(model, cons, target="mobile", objective=objective),
                       time.perf_counter() - t)
    t = time.perf_counter()
    ex = tuner.exhaustive(model)
    ex_seconds = time.perf_counter() - t
    rows, out = [], {}
    for name, cons, objective in sets:
        r, secs = tuned[name]
        opt = best_under(ex, cons, objective)
        rnd_value, rnd_miss = random_baseline(ex, cons, objective, r.evaluations)
        entry = {"objective": objective, "constraints": repr(cons), "space": len(ex.candidates),
                 "tuner_evaluations": r.evaluations, "tuner_seconds": secs,
                 "exhaustive_feasible": opt is not None, "tuner_feasible": r.feasible}
        if opt is None:
            ok = not r.feasible and r.model is None and bool(r.closest)
            entry.update(reported_infeasible=ok, failing=r.diagnose())
            rows.append([name, objective, r.evaluations, len(ex.candidates), "-", "infeasible",
                         "infeasible" if not r.feasible else "FOUND ONE?", "-", "-"])
            targets.append(H.Target(f"{kind}/{name}: infeasible reported as such", float(ok),
                                    1.0))
        else:
            opt_v = objective_value(opt.metrics, objective)
            if r.feasible:
                tv = objective_value(r.best.metrics, objective)
                again = measure(r.model, data)
                fresh = r.constraints.violations(again, r.baseline.accuracy, margin=False)
                gap = gap_percent(tv, opt_v, objective)
            else:
                tv, fresh, gap = float("nan"), ["no model"], float("inf")
            entry.update(tuner_value=tv, exhaustive_value=opt_v, gap_percent=gap,
                         random_value=rnd_value, random_found_nothing=rnd_miss,
                         remeasured_ok=not fresh, remeasure_violations=[str(v) for v in fresh],
                         choice=r.best.config.label() if r.feasible else None)
            rows.append([name, objective, r.evaluations, len(ex.candidates), opt_v, tv,
                         rnd_value, f"{gap:.2f}%", "ok" if not fresh else "FAIL"])
            targets += [
                H.Target(f"{kind}/{name}: tuner meets constraints on re-measurement",
                         float(not fresh), 1.0),
                H.Target(f"{kind}/{name}: objective gap to exhaustive optimum", gap, 1.0,
                         unit="%", higher_is_better=False),
                H.Target(f"{kind}/{name}: evaluations vs exhaustive",
                         r.evaluations / len(ex.candidates) * 100, 40.0, unit="%",
                         higher_is_better=False),
            ]
        out[name] = entry
    H.print_table(
        ["set", "objective", "tuner evals", "exhaustive evals", "optimum", "tuner",
         "random (same evals)", "gap", "re-measured"],
        rows,
        title=f"digits {kind.upper()}: space of {len(ex.candidates)} configurations, exhaustive "
              f"search took {ex_seconds:.1f}s (values: bytes, or accuracy)",
    )
    results[kind] = {"sets": out, "exhaustive_seconds": ex_seconds,
                     "baseline": ex.baseline.to_dict()}
    plots[kind] = (ex, {name: tuned[name][0] for name, _, _ in sets})


def save_plot(plots: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(plots), figsize=(6.5 * len(plots), 4.5), squeeze=False)
    for ax, (kind, (ex, tuned)) in zip(axes[0], plots.items()):
        ex.plot(ax, title=f"digits {kind.upper()}: {len(ex.candidates)} configurations")
        for name, r in tuned.items():
            if r.feasible:
                m = r.best.metrics
                ax.annotate(name, (m.model_bytes / 1024, m.accuracy), fontsize=7,
                            xytext=(4, -10), textcoords="offset points", color="r")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    print(f"\nPareto plot: {path}")


def hp_search(args, results: dict, targets: list) -> None:
    data = zoo.digits_data()
    space = {"lr": [1e-4, 3e-4, 1e-3, 3e-3, 1e-2, 3e-2, 1e-1], "hidden": [8, 16, 32, 64, 128],
             "weight_decay": [0.0, 0.01]}
    if args.quick:
        space = {"lr": [1e-4, 1e-3, 1e-2, 1e-1], "hidden": [8, 32]}

    def build(cfg):
        m = zoo.digits_mlp(hidden=cfg["hidden"])
        return m, AdamW(m.parameters(), lr=cfg["lr"], weight_decay=cfg.get("weight_decay", 0.0))

    seeds = range(H.pick(args, 2, 5))
    budget = H.pick(args, 18, 54)
    max_epochs = H.pick(args, 3, 9)
    methods = {"halving": dict(method="halving", max_epochs=max_epochs),
               "random": dict(method="random", max_epochs=max_epochs),
               "random+median": dict(method="random", max_epochs=max_epochs, median_rule=True),
               "tpe": dict(method="tpe", max_epochs=max_epochs)}
    quality = {k: [] for k in methods}
    stops = saved = random_stops = random_saved = 0
    t = time.perf_counter()
    for s in seeds:
        for k, kw in methods.items():
            r = hyperparameter_search(build, data, space, budget, seed=s, progress=False, **kw)
            quality[k].append(config_quality(build, data, r.best_config, epochs=max_epochs))
            if k == "halving":
                stops += r.median_stops
                saved += r.epochs_saved
            elif k == "random+median":
                random_stops += r.median_stops
                random_saved += r.epochs_saved
    wins = sum(h >= r for h, r in zip(quality["halving"], quality["random"]))
    tpe_wins = sum(h >= r for h, r in zip(quality["tpe"], quality["random"]))
    H.print_table(["method"] + [f"seed {s}" for s in seeds] + ["mean"],
                  [[k] + q + [float(np.mean(q))] for k, q in quality.items()],
                  title=f"hyperparameter search, {budget} epochs each, test accuracy of the "
                        f"chosen config ({time.perf_counter() - t:.1f}s)")
    print(f"halving >= random in {wins}/{len(quality['random'])} seeds; TPE >= random in "
          f"{tpe_wins}; median rule stopped {stops} trials, saving {saved} epochs (in random "
          f"search: {random_stops} trials, {random_saved} epochs, spent on more trials)")
    results["hyperparameter_search"] = {"quality": quality, "halving_wins": wins,
                                        "tpe_wins": tpe_wins, "median_stops": stops,
                                        "epochs_saved": saved, "budget": budget,
                                        "random_median_stops": random_stops,
                                        "random_epochs_saved": random_saved}
    targets += [
        H.Target("halving >= random search (seeds won)", float(wins),
                 float(math.ceil(0.8 * len(quality["random"]))),
                 note=f"of {len(quality['random'])}"),
        H.Target("median rule stops trials early (count)", float(stops), 1.0),
    ]


def adaptive(args, results: dict, targets: list) -> None:
    data = zoo.digits_data()
    epochs = H.pick(args, 8, 30)
    rows, fixed_acc, adapt_acc, fixed_ep, adapt_ep = [], [], [], [], []
    for s in range(H.pick(args, 1, 3)):
        manual_seed(s)
        init = zoo.digits_mlp()
        _, f = fixed_training(init, data, epochs=epochs, seed=s)
        _, a = adaptive_training(init, data, epochs=epochs, seed=s)
        fixed_acc.append(f.test_acc)
        adapt_acc.append(a.test_acc)
        fixed_ep.append(f.epochs)
        adapt_ep.append(a.epochs)
        rows.append([s, f.test_acc, f.epochs, a.test_acc, a.epochs, a.best_epoch])
    H.print_table(["seed", "fixed test acc", "fixed epochs", "adaptive test acc",
                   "adaptive epochs", "best epoch"], rows,
                  title=f"adaptive training vs constant lr 0.01 for {epochs} epochs")
    d_acc = float(np.mean(adapt_acc) - np.mean(fixed_acc))
    ratio = float(np.mean(adapt_ep) / np.mean(fixed_ep))
    print(f"mean: adaptive {np.mean(adapt_acc):.4f} in {np.mean(adapt_ep):.1f} epochs, fixed "
          f"{np.mean(fixed_acc):.4f} in {np.mean(fixed_ep):.1f}")
    results["adaptive_training"] = {"fixed_test": fixed_acc, "adaptive_test": adapt_acc,
                                    "fixed_epochs": fixed_ep, "adaptive_epochs": adapt_ep}
    targets += [
        H.Target("adaptive - fixed test accuracy (mean, points)", d_acc * 100, 0.0, unit="pt"),
        H.Target("adaptive epochs / fixed epochs", ratio, 0.99, higher_is_better=False),
    ]
    if args.quick:
        return
    curves = {s: [] for s in ("uncertainty", "random")}
    for seed in range(3):
        for strat in curves:
            r = active_learning(lambda: zoo.digits_mlp(hidden=64), data, strategy=strat,
                                seed=seed)
            curves[strat].append(r.test_acc)
    means = {k: np.mean(v, axis=0) for k, v in curves.items()}
    H.print_table(["labels"] + list(means), [[n] + [float(means[k][i]) for k in means]
                                             for i, n in enumerate(r.labels)],
                  title="active learning: test accuracy, mean of 3 seeds")
    results["active_learning"] = {"labels": r.labels,
                                  **{k: v.tolist() for k, v in means.items()}}
    targets.append(H.Target("uncertainty - random sampling at the last round (points)",
                            float(means["uncertainty"][-1] - means["random"][-1]) * 100, 0.0,
                            unit="pt"))


def main() -> int:
    args = H.parse_args(__doc__.splitlines()[0])
    results: dict = {}
    targets: list = []
    plots: dict = {}
    with tempfile.TemporaryDirectory(prefix="bench-autotuning-") as tmp:
        for kind in H.pick(args, ["mlp"], ["mlp", "cnn"]):
            tune_model(kind, args, Path(tmp), results, targets, plots)
    save_plot(plots, RESULTS / ("autotuning_pareto_quick.png" if args.quick
                                else "autotuning_pareto.png"))
    hp_search(args, results, targets)
    adaptive(args, results, targets)
    return H.finish(args, "autotuning", results, targets)


if __name__ == "__main__":
    sys.exit(main())
