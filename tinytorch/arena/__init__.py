"""The competition arena (course-staff code, not written by students).

It runs untrusted submission packages in sandboxed subprocesses, scores them on the hidden
test set with the rules of `tinytorch.competition` (which students build in module 20), and
keeps the leaderboard in SQLite, with terminal, HTML and live views.

- `harness.Arena`: evaluate packages, rank, award, render (the entry point)
- `package`: read/check/hash packages (folder or zip); `build_package` trains one from source
- `sandbox` / `runner`: the parent and child sides of one sandboxed run
- `store`: the SQLite leaderboard (WAL, transactions, integrity checks)
- `html` / `server`: the static page and `tito competition serve`
- `report`: Gradescope results.json and the per-submission performance report
- `demo`: the bundled samples and `run_competition_demo` (what `tito course` runs)
"""

import importlib

# name -> submodule; imported on first use, so that `python -m tinytorch.arena.runner` (the
# sandboxed child) does not load the harness, SQLite or matplotlib before its limits apply
_EXPORTS = {
    "Arena": "harness",
    "ArenaLimits": "harness",
    "HiddenSet": "harness",
    "Outcome": "harness",
    "describe_machine": "harness",
    "DemoResult": "demo",
    "build_samples": "demo",
    "expected_outcomes": "demo",
    "run_competition_demo": "demo",
    "sample_dirs": "demo",
    "Package": "package",
    "build_package": "package",
    "read_package": "package",
    "SandboxLimits": "sandbox",
    "LeaderboardStore": "store",
    "SubmissionLimitError": "store",
}


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(importlib.import_module(f"{__name__}.{_EXPORTS[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "Arena",
    "ArenaLimits",
    "DemoResult",
    "HiddenSet",
    "LeaderboardStore",
    "Outcome",
    "Package",
    "SandboxLimits",
    "SubmissionLimitError",
    "build_package",
    "build_samples",
    "describe_machine",
    "expected_outcomes",
    "read_package",
    "run_competition_demo",
    "sample_dirs",
]
