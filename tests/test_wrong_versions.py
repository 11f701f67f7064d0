"""Every plausible wrong version of a graded function loses points (a judge fails), and at least
three in four of a module's wrong versions fail a visible check, so the student learns of the
mistake before submitting (issue #18). The lists: tests/wrong_versions/wrong_NN_name.py.

The judges draw their inputs from a fresh seed, as in grading. Under CI the seeds are fixed per
test instead (as hypothesis is derandomized there, tests/conftest.py), so a landing run is
reproducible; `python tools/judge_seeds.py` runs every wrong version under many fresh seeds
and names the ones some draw lets through."""

from __future__ import annotations

import os
import random
import types

import pytest
from wrong_versions.runner import (
    REPO,
    WrongVersion,
    listed_modules,
    module_cells,
    run,
    wrong_versions,
)

import tito.probe


@pytest.fixture(autouse=True)
def _judge_seeds_fixed_under_ci(request, monkeypatch):
    if os.environ.get("CI"):
        rng = random.Random(request.node.nodeid)  # str seeds do not depend on PYTHONHASHSEED
        monkeypatch.setattr(tito.probe, "secrets", types.SimpleNamespace(randbits=rng.getrandbits))

MODULES = listed_modules()
CASES = [(m, w) for m in MODULES for w in wrong_versions(m)]
_CELLS: dict = {}
_OUTCOMES: dict = {}


def _outcome(module_id: str, wrong: WrongVersion | None):
    key = (module_id, None if wrong is None else (wrong.exercise, wrong.name))
    if key not in _OUTCOMES:
        if module_id not in _CELLS:
            _CELLS[module_id] = module_cells(module_id)
        _OUTCOMES[key] = run(module_id, wrong, _CELLS[module_id])
    return _OUTCOMES[key]


@pytest.mark.parametrize("module_id", MODULES)
def test_reference_passes_every_check(module_id):
    """The reference solution passes every visible check and every judge (fresh inputs)."""
    out = _outcome(module_id, None)
    assert not out.visible and not out.hidden, f"the reference fails:\n{out.summary()}"


@pytest.mark.parametrize(
    "module_id,wrong", CASES, ids=[f"{m}-{w.exercise}-{w.name}" for m, w in CASES]
)
def test_wrong_version_fails_a_hidden_check(module_id, wrong):
    """A wrong version loses points: at least one judge (or the cell's visible part) fails."""
    out = _outcome(module_id, wrong)
    assert out.hidden, f"{wrong.exercise} / {wrong.name!r} passes every judge:\n{out.summary()}"


@pytest.mark.parametrize("module_id", MODULES)
def test_most_wrong_versions_fail_a_visible_check(module_id):
    """At least 3 in 4 of a module's wrong versions fail a check the student can see."""
    wrongs = wrong_versions(module_id)
    assert wrongs, f"no wrong versions listed for {module_id}"
    caught = [w for w in wrongs if _outcome(module_id, w).visible]
    missed = [f"{w.exercise}: {w.name}" for w in wrongs if w not in caught]
    assert len(caught) * 4 >= 3 * len(wrongs), (
        f"{module_id}: only {len(caught)} of {len(wrongs)} wrong versions fail a visible check; "
        f"missed: {missed}"
    )


def test_every_graded_function_haswrong_versions():
    """Each module's list covers every exercise (solution cell) that a grade cell checks."""
    for module_id in MODULES:
        exercises = {c.grade_id for c in module_cells(module_id) if c.is_solution}
        covered = {w.exercise for w in wrong_versions(module_id)}
        assert exercises <= covered, f"{module_id}: no wrong versions for {exercises - covered}"


assert REPO.is_dir()


def test_judge_seeds_tool_runs_the_lists_under_fresh_seeds():
    """tools/judge_seeds.py (the developers' search for judges that a draw can fool) runs."""
    import subprocess
    import sys

    proc = subprocess.run(
        [sys.executable, str(REPO / "tools" / "judge_seeds.py"), "--seeds", "1", "19_autotuning"],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "19_autotuning: done" in proc.stdout
