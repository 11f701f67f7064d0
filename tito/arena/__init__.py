"""The competition arena: the course staff's side of module 20 (hand-written).

It evaluates untrusted submission packages with the student-side `tinytorch.arena` (sandboxed
runs, scoring on the hidden set) and keeps the leaderboard in SQLite, with terminal, HTML and
live views, Gradescope results and reports, and batch runs on a Dask cluster.

- `service.Arena`: evaluate packages, record, rank, award, render (the entry point)
- `store`: the SQLite leaderboard (WAL, transactions, integrity checks)
- `leaderboard` / `html` / `server`: the terminal table, the static page, `tito competition
  serve`
- `report`: Gradescope results.json and the per-submission performance report
- `cluster`: many packages at once on an executor (latency on benchmark workers only)
- `demo`: the bundled samples and `run_competition_demo` (what `tito course` runs)
"""

import importlib

# name -> module; imported on first use, so `import tito.arena` loads neither SQLite nor
# matplotlib. The student-side names are re-exported for one-stop imports.
_EXPORTS = {
    "Arena": "tito.arena.service",
    "Outcome": "tito.arena.service",
    "DemoResult": "tito.arena.demo",
    "build_samples": "tito.arena.demo",
    "expected_outcomes": "tito.arena.demo",
    "run_competition_demo": "tito.arena.demo",
    "sample_dirs": "tito.arena.demo",
    "LeaderboardStore": "tito.arena.store",
    "SubmissionLimitError": "tito.arena.store",
    "ArenaLimits": "tinytorch.arena.harness",
    "Evaluator": "tinytorch.arena.harness",
    "HiddenSet": "tinytorch.arena.harness",
    "describe_machine": "tinytorch.arena.harness",
    "Package": "tinytorch.arena.package",
    "build_package": "tinytorch.arena.package",
    "read_package": "tinytorch.arena.package",
    "SandboxLimits": "tinytorch.arena.sandbox",
}


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = sorted(_EXPORTS)
