"""Hand-written infrastructure, not generated (no `modules/NN_name/*_dev.py` source).

- `executors`: the one executor seam, `LocalExecutor` (long-lived processes) or `DaskExecutor`
  (extra `cluster`); imports nothing from tinytorch. Used by tito autograde, the arena's
  cluster runs and the parallel tuner.
- `parallel_search`: module 19's successive halving with trials in parallel on an executor
  (it builds on module 19's library, `tinytorch.tuning.search`).

Layering (checked by tests/test_architecture.py): infra sits above the generated module files
and `tinytorch.tuning`; they never import it (module 19 takes any object with `.map`).
"""
