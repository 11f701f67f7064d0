"""Module 19's library: the parts of the autotuner learners use and read, not write.

Hand-written (not generated from a notebook); the notebook of module 19 imports, uses and
explains them, and `tinytorch.autotuning` (generated) re-exports the names learners know. One
concept per file:

    harness.py          Metrics, predict/accuracy_on, peak memory, timers, calls per sample
    hardware.py         cpu_flags, HardwareProfile.detect(): what machine this is
    steps.py            one interface for modules 15-18: step(model, ctx, **params) -> new model
    cache.py            fingerprints and the JSON ResultCache
    executor.py         evaluate_many: the executor seam (anything with .map)
    report.py           the tuner's report, table, infeasibility diagnosis and Pareto plot
    mixed_precision.py  accuracy-aware quantization (sensitive layers back to float32)
    search.py           hyperparameter search: successive halving, median rule, random, TPE
    adaptive.py         early stopping, lr on plateau, curriculum; fixed vs adaptive training
    active.py           uncertainty sampling (active learning)

Layer: imports only tinytorch.core, tinytorch.datasets and the generated modules 15-18 (never
module 19 or later, never tinytorch.infra); module 19 and tinytorch.infra build on it.
"""
