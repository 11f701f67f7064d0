"""Shared pytest set-up.

Hypothesis explores new random examples on every local run (and keeps failures in
.hypothesis/). Under CI (the `CI` environment variable, which .ci/run's caller sets) it is
derandomized, so a landing run is reproducible: a new counterexample is found by developers
running the suite, not by chance in CI.
"""

import os

from hypothesis import settings

settings.register_profile("ci", derandomize=True, print_blob=True)
if os.environ.get("CI"):
    settings.load_profile("ci")
