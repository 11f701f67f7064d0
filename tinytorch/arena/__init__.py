"""Local evaluation of competition packages (hand-written, not generated; students use it).

It runs a submission package in sandboxed subprocesses and scores it on the hidden test set
with the rules of `tinytorch.competition` (which students build in module 20), keeping
nothing. The course staff's arena (SQLite leaderboard, HTML/live views, reports, cluster runs)
is `tito.arena`, built on this package; this package never imports `tito`.

- `harness.Evaluator`: evaluate one package -> `competition.Entry` (the entry point)
- `package`: read/check/hash packages (folder or zip); `build_package` trains one from source
- `sandbox` / `runner`: the parent and child sides of one sandboxed run; `protocol`: the
  request/answer frames between them (the harness asks and times, the runner only answers)
"""

import importlib

# name -> submodule; imported on first use, so that `python -m tinytorch.arena.runner` (the
# sandboxed child) does not load the harness or the package reader before its limits apply
_EXPORTS = {
    "ArenaLimits": "harness",
    "Evaluator": "harness",
    "HiddenSet": "harness",
    "describe_machine": "harness",
    "entry_from_evaluation": "harness",
    "Package": "package",
    "build_package": "package",
    "read_package": "package",
    "SandboxLimits": "sandbox",
}


# instructor-side names that lived here before the arena moved to the course tool
_MOVED = {"Arena", "Outcome", "LeaderboardStore", "SubmissionLimitError", "DemoResult",
          "build_samples", "expected_outcomes", "run_competition_demo", "sample_dirs"}


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(importlib.import_module(f"{__name__}.{_EXPORTS[name]}"), name)
    if name in _MOVED:
        raise AttributeError(
            f"tinytorch.arena.{name} is course-staff code and moved to the course tool: "
            f"`from tito.arena import {name}` (tinytorch.arena keeps local evaluation: Evaluator)"
        )
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "ArenaLimits",
    "Evaluator",
    "HiddenSet",
    "Package",
    "SandboxLimits",
    "build_package",
    "describe_machine",
    "entry_from_evaluation",
    "read_package",
]
