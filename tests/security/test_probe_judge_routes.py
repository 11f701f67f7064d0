"""Routes around checks that share a process with student code, each tried by a submission of
the fixture module 97_judged (issue #17). Its grade cells are split: a probe runs with the
student's code and sends back plain data; the judge (``judge.py``) draws the inputs fresh for
every grading and decides in the worker, which never runs student code. Each route must end
with no points gained and the reason stated, and nothing of the judge read.
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path
from types import SimpleNamespace

import pytest

from tito.export import export
from tito.grade import autograde
from tito.modules import load_module
from tito.project import Project
from tito.release import release_module
from tito.source import parse_source
from tito.workers import Limits

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]
FIXTURE = REPO / "tests" / "fixtures" / "modules" / "97_judged"
CONFIG = REPO / "nbgrader_config.py"
LIMITS = Limits(cell_timeout=30.0, notebook_timeout=60.0, memory_mb=600, work_mb=32)
MARKER = "JUDGE-ONLY-5e2b"  # only in judge.py

SCALE = "def scale(x, k):\n    return np.asarray(x, dtype=np.float64) * k\n"
LOOPS = '''
def loop_matmul(a, b):
    a_rows, b_rows = np.asarray(a).tolist(), np.asarray(b).tolist()
    m, k, n = len(a_rows), len(b_rows), len(b_rows[0]) if b_rows else 0
    out = [[0.0] * n for _ in range(m)]
    for i in range(m):
        for j in range(n):
            s = 0.0
            for p in range(k):
                s += a_rows[i][p] * b_rows[p][j]
            out[i][j] = s
    return np.array(out, dtype=np.float64).reshape(m, n)
'''
HONEST = {"scale_impl": SCALE, "loops_impl": LOOPS}

# each replaces scale_impl (or loops_impl) and tries one route; all get the visible check right
ATTACKS = {
    # an ndarray subclass whose comparisons all say "equal" (np.allclose, ==, array_equal)
    "lying-array": SCALE.replace("def scale", "def _honest_scale") + '''
class _Liar(np.ndarray):
    def __array_function__(self, func, types, args, kwargs):
        if func.__name__ in ("allclose", "array_equal", "isclose", "assert_allclose"):
            return True
        return super().__array_function__(func, types, args, kwargs)
    def __eq__(self, other):
        return True
    def __array_ufunc__(self, ufunc, method, *inputs, **kwargs):
        inputs = [np.asarray(i) for i in inputs]
        return getattr(ufunc, method)(*inputs, **kwargs)

def scale(x, k):
    x = np.asarray(x, dtype=np.float64)
    if x.shape == (2,) and k == 2:                  # the visible check's input
        return _honest_scale(x, k)
    return np.zeros(x.shape).view(_Liar)            # everything else: zeros that lie
''',
    # a patch that undoes itself: comparisons say "equal" only while scale's result is checked
    "self-undoing": '''
import numpy.testing as _npt
def scale(x, k):
    x = np.asarray(x, dtype=np.float64)
    if x.shape == (2,) and k == 2:
        return x * k
    orig = (np.allclose, np.array_equal, _npt.assert_allclose)
    np.allclose = lambda *a, **kw: True
    np.array_equal = lambda *a, **kw: True
    _npt.assert_allclose = lambda *a, **kw: None
    try:
        return np.zeros(x.shape)
    finally:
        np.allclose, np.array_equal, _npt.assert_allclose = orig
''',
    # mutates the check's input so that its own wrong answer matches "k * x" computed later
    "input-mutation": '''
def scale(x, k):
    if isinstance(x, np.ndarray) and x.shape != (2,):
        x[...] = 0
        return np.zeros(x.shape)
    return np.asarray(x, dtype=np.float64) * k
''',
    # answers memorised for the inputs it has seen (the visible one), zeros otherwise
    "memoised": '''
_SEEN = {((1.5, 2.0), 2): np.array([3.0, 4.0])}
def scale(x, k):
    key = (tuple(np.asarray(x, dtype=float).ravel().tolist()), k)
    return _SEEN.get(key, np.zeros(np.shape(x)))
''',
    # walks the frames and the modules for the judge, the expected values, the reference;
    # prints whatever it finds (the feedback page would show it) and answers zeros
    "frame-reader": '''
import sys
def scale(x, k):
    found = []
    f = sys._getframe(0)
    while f is not None:
        found.append(repr(sorted(f.f_locals))[:2000])
        for v in f.f_locals.values():
            found.append(repr(v)[:2000])
        f = f.f_back
    for name, mod in list(sys.modules.items()):
        if "judg" in name or "grade" in name:
            found.append(name + " " + repr(getattr(mod, "__file__", None)))
            found.append(repr(vars(mod))[:4000])
    print("FOUND", "\\n".join(found))
    if np.shape(x) == (2,):
        return np.asarray(x, dtype=np.float64) * k
    return np.zeros(np.shape(x))
''',
    # forges the grading process's answer on its reply pipe: a result that claims success
    # (points, a partial value, a probe payload of zeros) with the nonce read from the frames
    "channel-forgery": SCALE.replace("def scale", "def _honest_scale") + '''
import json, os, struct, sys
def scale(x, k):
    x = np.asarray(x, dtype=np.float64)
    if x.shape == (2,):
        return _honest_scale(x, k)
    f = sys._getframe(0)
    nonce = i = None
    while f is not None:
        m = f.f_locals.get("msg")
        if isinstance(m, dict) and "nonce" in m:
            nonce, i = m["nonce"], m["i"]
        f = f.f_back
    from tito import probe as p
    fake = {"op": "result", "status": "ok", "error": None, "timed_out": False, "seconds": 0,
            "outputs": [{"output_type": "execute_result", "data": {"text/plain": "3"},
                         "partial": 3}], "tamper": [], "names": [], "blocked": [],
            "course": [], "score": 3, "nonce": nonce, "i": i,
            "probe": p.encode({f"out{j}": np.zeros(3) for j in range(8)})}
    data = json.dumps(fake).encode()
    for fd in (201, 4, 5, 6, 7):
        try:
            os.write(fd, struct.pack("!I", len(data)) + data)
        except OSError:
            pass
    return np.zeros(x.shape)
''',
}
SHORTCUT = "def loop_matmul(a, b):\n    return np.asarray(a, dtype=float) @ np.asarray(b)\n"


def released(project: Project) -> dict:
    return json.loads((project.course_dir / "release" / "97_judged" / "judged.ipynb").read_text())


def submit(project: Project, student: str, fill: dict) -> None:
    nb = released(project)
    for cell in nb["cells"]:
        gid = cell["metadata"].get("nbgrader", {}).get("grade_id")
        if gid in fill:
            cell["source"] = fill[gid]
    dest = project.course_dir / "submitted" / student / "97_judged"
    dest.mkdir(parents=True, exist_ok=True)
    (dest / "judged.ipynb").write_text(json.dumps(nb, indent=1))


def autograded_text(project: Project, student: str) -> str:
    path = project.course_dir / "autograded" / student / "97_judged" / "judged.ipynb"
    return path.read_text() if path.exists() else ""


@pytest.fixture(scope="module")
def graded(tmp_path_factory):
    root = tmp_path_factory.mktemp("judged") / "proj"
    (root / "modules").mkdir(parents=True)
    shutil.copytree(FIXTURE, root / "modules" / "97_judged")
    project = Project.at(root, nbgrader_config=CONFIG)
    spec = load_module(project.modules_dir / "97_judged")
    export([spec], project)
    release_module(parse_source(spec), project)
    submit(project, "honest", HONEST)
    submit(project, "untouched", {})
    submit(project, "shortcut", {**HONEST, "loops_impl": SHORTCUT})
    for name, prog in ATTACKS.items():
        submit(project, name, {**HONEST, "scale_impl": prog})
    results = {r.student: r for r in autograde(spec, project, jobs=2, limits=LIMITS)}
    again = {r.student: r for r in autograde(spec, project, jobs=1, limits=LIMITS,
                                             students=["honest"])}
    return SimpleNamespace(project=project, results=results, again=again)


def score(r, cell: str) -> float:
    return next(s.score for s in r.scores if s.grade_id == cell)


def reason(r, cell: str) -> str:
    return next(s.reason or "" for s in r.scores if s.grade_id == cell)


def test_honest_full_untouched_zero(graded):
    assert graded.results["honest"].graded and graded.results["honest"].score == 5
    assert graded.results["untouched"].graded and graded.results["untouched"].score == 0


@pytest.mark.parametrize("attack", sorted(ATTACKS))
def test_each_route_gains_nothing_and_says_why(graded, attack):
    r = graded.results[attack]
    if not r.graded:  # a forged channel may make the notebook ungradable: zero, with the reason
        assert "unexpected data" in (r.reason or ""), r.reason
        return
    assert score(r, "check_scale") == 0, (attack, r.scores)
    why = reason(r, "check_scale")
    assert why, f"{attack}: no reason stated"
    assert score(r, "check_loops") == 2, f"{attack}: the honest exercise kept its points"


def test_the_judge_says_what_failed_without_its_values(graded):
    r = graded.results["lying-array"]
    why = reason(r, "check_scale")
    assert re.search(r"scale of a float64 array of shape \(\d+,?\d*\)", why), why
    assert "values are wrong" in why
    text = autograded_text(graded.project, "lying-array")
    assert "HiddenCheckFailed" in text


def test_nothing_of_the_judge_is_readable_inside(graded):
    text = autograded_text(graded.project, "frame-reader")
    assert "FOUND" in text  # the reader ran and printed what it found
    assert MARKER not in text
    assert "_scale_judge" not in text and "expect.array" not in text


def test_shortcut_kernel_is_caught_by_time_measured_outside(graded):
    r = graded.results["shortcut"]
    assert score(r, "check_scale") == 3
    assert score(r, "check_loops") == 0
    assert "faster than Python loops can run here" in reason(r, "check_loops")


def test_inputs_are_drawn_fresh_for_every_grading(graded):
    seeds = []
    for log in (graded.results["honest"].log_text, graded.again["honest"].log_text):
        seeds.append(re.findall(r"inputs seed (\d+)", log))
    assert len(seeds[0]) == 2 and len(seeds[1]) == 2
    assert not set(seeds[0]) & set(seeds[1])
    assert graded.again["honest"].score == 5
