"""Shared helpers for the scripts in bench/: timing, tables, targets, command line, JSON.

A bench script measures *ratios in one run* (candidate vs reference on the same machine, same
inputs, interleaved), never absolute numbers from another day. Typical use:

    import _harness as H                      # first: pins BLAS to one thread
    args = H.parse_args("What this bench measures")
    secs = H.compare({"ref": f, "new": g}, repeats=H.pick(args, 3, 7))
    H.print_table(["case", "ref (ms)", "new (ms)"], rows)
    targets = [H.Target("new >= 2x faster", secs["ref"] / secs["new"], 2.0, unit="x")]
    sys.exit(H.finish(args, "name", results, targets))

Import this module before numpy: it sets OPENBLAS_NUM_THREADS / OMP_NUM_THREADS to 1 unless
they are already set, which only takes effect if numpy has not been imported yet.
"""

from __future__ import annotations

import os

for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import argparse  # noqa: E402  (the environment must be set before numpy loads)
import contextlib  # noqa: E402
import json  # noqa: E402
import math  # noqa: E402
import platform  # noqa: E402
import statistics  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from collections.abc import Callable, Iterable, Sequence  # noqa: E402
from dataclasses import asdict, dataclass  # noqa: E402
from pathlib import Path  # noqa: E402

__all__ = [
    "parse_args",
    "pick",
    "measure",
    "compare",
    "Target",
    "format_table",
    "print_table",
    "environment",
    "write_json",
    "report",
    "finish",
]


# ------------------------------------------------------------------------------ command line
def parse_args(description: str, argv: Sequence[str] | None = None) -> argparse.Namespace:
    """The common flags: --quick (tiny sizes, a few seconds, targets not enforced), --json PATH."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument(
        "--quick",
        action="store_true",
        help="tiny sizes, a few seconds (what the test suite runs); targets are reported but "
        "do not fail the run",
    )
    parser.add_argument("--json", metavar="PATH", help="also write the results as JSON to PATH")
    return parser.parse_args(argv)


def pick(args: argparse.Namespace, quick, full):
    """`quick` in --quick mode, else `full` (sizes, repeats, ...)."""
    return quick if args.quick else full


# ---------------------------------------------------------------------------------- timing
def _calibrate(
    fn: Callable[[], object], min_time: float, timer: Callable[[], float] = time.perf_counter
) -> int:
    """Calls per sample so that one sample lasts at least `min_time` seconds."""
    start = timer()
    fn()
    once = timer() - start
    if once >= min_time:
        return 1
    return max(1, math.ceil(min_time / max(once, 1e-9)))


def _sample(
    fn: Callable[[], object], number: int, context, timer: Callable[[], float] = time.perf_counter
) -> float:
    with context() if context is not None else contextlib.nullcontext():
        start = timer()
        for _ in range(number):
            fn()
        return (timer() - start) / number


def compare(
    fns: dict[str, Callable[[], object]],
    *,
    repeats: int = 5,
    warmup: int = 1,
    min_time: float = 0.002,
    contexts: dict[str, Callable[[], contextlib.AbstractContextManager]] | None = None,
    timer: Callable[[], float] = time.perf_counter,
) -> dict[str, float]:
    """Median seconds per call of each function, measured **interleaved**.

    After `warmup` untimed calls each (at least one: the last one calibrates how many calls
    make a sample), the functions take turns: sample 1 of every function,
    then sample 2 of every function, ... so slow drift (frequency scaling, a neighbour process)
    hits all candidates alike and cancels in their ratios. A sample repeats a fast function
    until it lasts `min_time` seconds. `contexts[name]()` (optional) is entered around each
    sample of `name`, e.g. `lambda: use_backend("blocked")`. `timer=time.process_time`
    measures this process's CPU time instead of wall time: for single-threaded code on a
    shared machine it leaves out the turns other processes take on the core.
    """
    if repeats < 1:
        raise ValueError(f"repeats must be >= 1, got {repeats}")
    contexts = contexts or {}
    numbers = {}
    for name, fn in fns.items():
        ctx = contexts.get(name)
        with ctx() if ctx is not None else contextlib.nullcontext():
            for _ in range(warmup - 1):
                fn()
            numbers[name] = _calibrate(fn, min_time, timer)  # the last warm-up call, timed
    samples: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            samples[name].append(_sample(fn, numbers[name], contexts.get(name), timer))
    return {name: statistics.median(s) for name, s in samples.items()}


def measure(
    fn: Callable[[], object], *, repeats: int = 5, warmup: int = 1, min_time: float = 0.002
) -> float:
    """Median seconds per call of one function (see `compare`)."""
    return compare({"fn": fn}, repeats=repeats, warmup=warmup, min_time=min_time)["fn"]


# ---------------------------------------------------------------------------------- targets
@dataclass
class Target:
    """A claim with a threshold: `value >= threshold` (or <= when `higher_is_better=False`)."""

    name: str
    value: float
    threshold: float
    unit: str = ""
    higher_is_better: bool = True
    note: str = ""  # e.g. which size was measured in --quick mode

    @property
    def passed(self) -> bool:
        if self.value is None or (isinstance(self.value, float) and math.isnan(self.value)):
            return False
        if self.higher_is_better:
            return self.value >= self.threshold
        return self.value <= self.threshold

    def line(self) -> str:
        op = ">=" if self.higher_is_better else "<="
        status = "PASS" if self.passed else "FAIL"
        note = f"  [{self.note}]" if self.note else ""
        return (
            f"{status}  {self.name}: {_fmt(self.value)}{self.unit} "
            f"(target {op} {_fmt(self.threshold)}{self.unit}){note}"
        )


def report(targets: Iterable[Target], quick: bool) -> int:
    """Print PASS/FAIL per target; exit code 1 if any failed in full mode, else 0."""
    targets = list(targets)
    print("\nTargets" + (" (--quick: tiny sizes, reported but not enforced)" if quick else ""))
    for t in targets:
        print("  " + t.line())
    failed = [t for t in targets if not t.passed]
    if failed and not quick:
        print(f"{len(failed)} of {len(targets)} targets FAILED")
        return 1
    return 0


# ---------------------------------------------------------------------------------- output
def _fmt(value) -> str:
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        if value == 0 or 0.01 <= abs(value) < 1e5:
            return f"{value:.3g}" if abs(value) < 10 else f"{value:,.1f}"
        return f"{value:.3g}"
    return str(value)


def format_table(headers: Sequence[str], rows: Iterable[Sequence], title: str | None = None) -> str:
    """A right-aligned plain-text table; floats get 3 significant digits, None prints '-'."""
    cells = [[str(h) for h in headers]]
    cells += [["-" if v is None else _fmt(v) for v in row] for row in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    lines = [title] if title else []
    for k, row in enumerate(cells):
        lines.append("  ".join(v.rjust(w) for v, w in zip(row, widths)))
        if k == 0:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines)


def print_table(headers: Sequence[str], rows: Iterable[Sequence], title: str | None = None) -> None:
    print("\n" + format_table(headers, rows, title))


def environment() -> dict:
    """What the numbers depend on: versions, CPU count, BLAS threads."""
    env = {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "machine": platform.machine(),
        "cpu_count": os.cpu_count(),
        "OPENBLAS_NUM_THREADS": os.environ.get("OPENBLAS_NUM_THREADS"),
        "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS"),
    }
    np = sys.modules.get("numpy")
    if np is not None:
        env["numpy"] = np.__version__
    return env


def write_json(path: str | Path, payload: dict) -> None:
    """Write `payload` as indented JSON (creating the parent directory)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(payload, indent=2, sort_keys=True, default=float) + "\n")


def finish(
    args: argparse.Namespace, bench: str, results: dict, targets: Sequence[Target]
) -> int:
    """Report the targets, write --json if asked, and return the process exit code."""
    code = report(targets, args.quick)
    if args.json:
        write_json(
            args.json,
            {
                "bench": bench,
                "quick": bool(args.quick),
                "environment": environment(),
                "results": results,
                "targets": [{**asdict(t), "passed": t.passed} for t in targets],
                "exit_code": code,
            },
        )
        print(f"wrote {args.json}")
    return code
