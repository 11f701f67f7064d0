"""Shared pytest set-up.

Hypothesis explores new random examples on every local run (and keeps failures in
.hypothesis/). Under CI (the `CI` environment variable, which .ci/run's caller sets) it is
derandomized, so a landing run is reproducible: a new counterexample is found by developers
running the suite, not by chance in CI.
"""

import os
import sys

import pytest
from hypothesis import settings

settings.register_profile("ci", derandomize=True, print_blob=True)
if os.environ.get("CI"):
    settings.load_profile("ci")


@pytest.fixture(autouse=True)
def _tinytorch_import_paths_restored():
    """Grading inline with a student build (tito.student_build.use_student_site, e.g. an
    InlineExecutor with --no-sandbox) points this process's `tinytorch` at that build. Undo it
    after each test: later tests, and the Dask workers they spawn (which inherit sys.path),
    must import the real package."""
    import tinytorch

    path, pkg_path = list(sys.path), list(tinytorch.__path__)
    yield
    sys.path[:] = path
    tinytorch.__path__[:] = pkg_path
    real = os.path.realpath(os.path.dirname(tinytorch.__file__)) + os.sep
    for name, mod in list(sys.modules.items()):
        file = getattr(mod, "__file__", None)
        if name.startswith("tinytorch.") and file and not os.path.realpath(file).startswith(real):
            del sys.modules[name]
