"""Run every listed wrong version (and each reference) under many fresh judge seeds.

A judge draws its inputs from a fresh seed at every grading, so a judge whose draw can miss a
mistake (ties that hide a rounding rule, a row that never underflows, two accuracies that happen
to be equal) passes a wrong version now and then: `tests/test_wrong_versions.py` would catch it
only by chance. This finds such judges on purpose, as hypothesis finds counterexamples.

    python tools/judge_seeds.py [--seeds 20] [--seed 0] [MODULE ...]

Prints each wrong version that passed every judge for some seed (with how often) and each
reference that failed; exits 1 if there was any.
"""

from __future__ import annotations

import argparse
import random
import sys
import time
import types
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))

from wrong_versions.runner import listed_modules, module_cells, run, wrong_versions  # noqa: E402

import tinytorch.acceleration  # noqa: E402, F401 -- registered backends, as in a test session
import tinytorch.compression  # noqa: E402, F401
import tinytorch.memory  # noqa: E402, F401
import tinytorch.quantization  # noqa: E402, F401
import tito.probe  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("modules", nargs="*", help="e.g. 16_memory (default: every module)")
    parser.add_argument("--seeds", type=int, default=20, help="judge seeds per wrong version")
    parser.add_argument("--seed", type=int, default=0, help="seed of the seed stream")
    args = parser.parse_args(argv)
    modules = args.modules or listed_modules()
    rng = random.Random(args.seed)
    tito.probe.secrets = types.SimpleNamespace(randbits=rng.getrandbits)
    bad = 0
    for module_id in modules:
        start, cells = time.perf_counter(), module_cells(module_id)
        failed = sum(bool(run(module_id, None, cells).hidden) for _ in range(args.seeds))
        if failed:
            bad += 1
            print(f"REFERENCE FAILS {module_id}: {failed}/{args.seeds} seeds")
        for wrong in wrong_versions(module_id):
            missed = sum(not run(module_id, wrong, cells).hidden for _ in range(args.seeds))
            if missed:
                bad += 1
                print(f"MISSED {module_id} {wrong.exercise} / {wrong.name}: {missed}/{args.seeds}")
        print(f"{module_id}: done in {time.perf_counter() - start:.0f} s", flush=True)
    return 1 if bad else 0


if __name__ == "__main__":
    raise SystemExit(main())
