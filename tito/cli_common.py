"""What every ``tito`` command line shares: the parser class, the global options, the project.

Both ``tito/cli.py`` (every command) and ``tito/competition_cli.py`` (``python -m
tito.competition_cli``) build their parsers from here, so neither imports the other's parser.
"""

from __future__ import annotations

import argparse
import os

from .errors import one_line
from .project import Project

# tinytorch.core.threads.BLAS_THREAD_VARS, copied: importing tinytorch would load numpy before
# the variables are set (tests/test_threads.py checks that the two lists agree)
BLAS_THREAD_VARS = (
    "OPENBLAS_NUM_THREADS",
    "OMP_NUM_THREADS",
    "MKL_NUM_THREADS",
    "BLIS_NUM_THREADS",
    "VECLIB_MAXIMUM_THREADS",
    "NUMEXPR_NUM_THREADS",
)


def pin_blas_env() -> dict[str, str]:
    """One BLAS thread for tito and every process it starts (notebook kernels, grading workers,
    arena runs, samples), set before numpy loads; a count the user set explicitly wins (then
    nothing changes). Returns the variables set. Same rule as tinytorch.core.threads.pin_blas_env.
    """
    if any(os.environ.get(var) for var in BLAS_THREAD_VARS):
        return {}
    for var in BLAS_THREAD_VARS:
        os.environ[var] = "1"
    return dict.fromkeys(BLAS_THREAD_VARS, "1")


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one line like every other tito error."""

    def error(self, message: str):
        self.exit(2, f"tito: error: {one_line(message)} (see {self.prog} --help)\n")


def add_global_options(p: argparse.ArgumentParser) -> None:
    """The options before the command: where the project, its modules and course live."""
    p.add_argument("--root", help="project root (default: found from the current directory)")
    p.add_argument("--modules-dir", help="module sources (default: ROOT/modules)")
    p.add_argument("--course-dir", help="nbgrader course root (default: ROOT/course)")
    p.add_argument("--package-dir", help="where export writes <name>.py (default: ROOT/tinytorch)")
    p.add_argument(
        "--nbgrader-config", help="nbgrader config file (default: ROOT/nbgrader_config.py)"
    )
    p.add_argument(
        "-v", "--verbose", action="store_true", help="print grading warnings and notes too"
    )


def project_from_args(args: argparse.Namespace) -> Project:
    overrides = {
        "modules_dir": args.modules_dir,
        "course_dir": args.course_dir,
        "package_dir": args.package_dir,
        "nbgrader_config": args.nbgrader_config,
    }
    if args.root:
        return Project.at(args.root, **overrides)
    return Project.find(**overrides)
