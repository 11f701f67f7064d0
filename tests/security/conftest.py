"""The OS boundary's tests need bubblewrap: they fail (never skip) where it is missing, so CI
cannot pass without running them (.ci/run installs it)."""

from __future__ import annotations

import pytest

from tinytorch.arena import boundary


@pytest.fixture(scope="session", autouse=True)
def os_boundary():
    problem = boundary.probe()
    if problem is not None:
        pytest.fail(f"the OS boundary is unavailable, so its tests cannot run: {problem}")
