"""``tito autograde`` against hostile and broken submissions (see docs/grading.md).

One course of the fixture module 98_vec (two solution cells, checks using ``np.allclose``,
``np.testing`` and a given helper ``close``) gets one submission per attack and per failure.
Each attack must score zero on the cells it did not earn -- and, where plain nbgrader can be run
on it, the same notebook must fool plain nbgrader (so the attack is real) -- with the reason
shown; honest work gets full marks; each broken submission is reported with its reason.
"""

from __future__ import annotations

import copy
import json
import shutil
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

from tito import cli, nbg
from tito.export import export
from tito.grade import autograde, format_table, load_status, table
from tito.modules import load_module
from tito.project import Project
from tito.release import release_module
from tito.source import parse_source
from tito.workers import Limits

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[1]
VEC = REPO / "tests" / "fixtures" / "modules" / "98_vec"
CONFIG = REPO / "nbgrader_config.py"
LIMITS = Limits(cell_timeout=2.0, notebook_timeout=5.0, memory_mb=300)

SCALE = "def scale(x, k):\n    return np.asarray(x, dtype=float) * k"
DOT = "def dot(a, b):\n    return float(np.sum(np.asarray(a, dtype=float) * np.asarray(b)))"
NORM = "def norm(x):\n    return float(np.sqrt(np.sum(np.asarray(x, dtype=float) ** 2)))"
WRONG_SCALE = "def scale(x, k):\n    return np.asarray(x, dtype=float)"
INT_SCALE = "def scale(x, k):\n    return np.asarray(x, dtype=int) * k"  # wrong for 1.5 only
WRONG_DOT = "def dot(a, b):\n    return 0.0"
WRONG_NORM = "def norm(x):\n    return 0.0"
HONEST = {"scale_impl": SCALE, "dot_impl": DOT, "norm_impl": NORM}
CELLS = [("check_scale", 2.0), ("check_dot", 2.0), ("check_norm", 1.0)]


def honest(**cells) -> dict:
    return {**HONEST, **cells}


# student -> (cells to fill, an extra edit, tito scores [scale, dot, norm] (None: could not be
# graded), plain-nbgrader scores (None: not compared), substrings of the remarks or reason)
def attacks(pkg_dir: Path, course_dir: Path) -> dict:
    return {
        "honest": (honest(), None, [2, 2, 1], [2, 2, 1], []),
        "patch-allclose": (
            honest(
                scale_impl=WRONG_SCALE
                + "\nnp.allclose = lambda *a, **k: True"
                + "\nnp.testing.assert_allclose = lambda *a, **k: None",
                dot_impl=WRONG_DOT,
            ),
            None,
            [0, 0, 1],
            [2, 2, 1],
            [
                "scale_impl: rebound numpy.allclose (undone before the checks ran)",
                "scale_impl: rebound numpy.testing.assert_allclose (undone before the checks ran)",
                "flagged for review: scale_impl: patches a library: assigns to np.allclose",
            ],
        ),
        "patch-testing": (
            honest(
                scale_impl=INT_SCALE
                + "\nimport numpy.testing as npt"
                + "\nsetattr(npt, 'assert_allclose', lambda *a, **k: None)"
            ),
            None,
            [0, 2, 1],
            [2, 2, 1],
            [
                "scale_impl: rebound numpy.testing.assert_allclose (undone",
                "flagged for review: scale_impl: patches a library: setattr(npt, ...)",
            ],
        ),
        "redefine-helper": (
            honest(dot_impl=WRONG_DOT + "\n\n\ndef close(a, b, tol=1e-9):\n    return True"),
            None,
            [2, 0, 1],
            [2, 2, 1],
            ["dot_impl: rebound close, which the checks use (restored)"],
        ),
        "patch-builtins": (
            honest(norm_impl=WRONG_NORM + "\nimport builtins\nbuiltins.abs = lambda x: 0.0"),
            None,
            [2, 2, 0],
            [2, 2, 1],
            [
                "norm_impl: rebound builtins.abs (undone before the checks ran)",
                "flagged for review: norm_impl: imports builtins",
            ],
        ),
        "swap-code": (
            honest(
                dot_impl=WRONG_DOT + "\nclose.__code__ = (lambda a, b, tol=1e-9: True).__code__"
            ),
            None,
            [2, 0, 1],
            [2, 2, 1],
            [
                "dot_impl: refused changing __code__ of the function close",
                "flagged for review: dot_impl: swaps function code (__code__)",
            ],
        ),
        "patch-during-check": (
            honest(
                dot_impl="def dot(a, b):\n    np.allclose = lambda *x, **k: True\n    return 0.0"
            ),
            None,
            [2, 0, 1],
            [2, 2, 1],
            [
                "check_dot: no points: the code under test rebound numpy.allclose while the "
                "check ran"
            ],
        ),
        "ipython-hook": (
            honest(
                dot_impl=WRONG_DOT
                + "\ntry:\n    get_ipython().input_transformers_cleanup.append("
                + "\n        lambda lines: ['pass\\n'] if any('assert' in ln for ln in lines)"
                + " else lines\n    )\nexcept NameError:\n    pass"
            ),
            None,
            [2, 0, 1],
            [2, 2, 1],
            [],
        ),
        "edit-locked": (
            honest(dot_impl=WRONG_DOT, check_dot="pass"),
            ("points", "check_dot", 30),
            [2, 0, 1],
            [2, 0, 1],
            [
                "Locked cell check_dot was changed: the released version was graded",
                "Points of grade cell check_dot were changed from 2 to 30",
            ],
        ),
        "delete-locked": (
            honest(dot_impl=WRONG_DOT),
            ("drop", "check_dot", None),
            [2, 0, 1],
            [2, 0, 1],
            ["Missing grade cell check_dot: restored from the release and graded"],
        ),
        "retype-locked": (
            honest(dot_impl=WRONG_DOT),
            ("retype", "check_dot", "markdown"),
            [2, 0, 1],
            [2, 0, 1],
            ["Locked cell check_dot was changed from code to markdown"],
        ),
        "fake-grade-cell": (
            honest(dot_impl=WRONG_DOT),
            ("fake", "bonus", 100),
            [2, 0, 1],
            None,
            ["Cell with unknown grade_id 'bonus' was ignored (not in the release)"],
        ),
        "import-reference": (
            {
                "scale_impl": "from tinytorch.vec import scale",
                "dot_impl": "from tinytorch.vec import dot",
                "norm_impl": "import tinytorch.vec\nnorm = tinytorch.vec.norm",
            },
            None,
            [0, 0, 0],
            None,
            [
                "scale_impl: imports from tinytorch.vec (the reference solution of 98_vec)",
                "scale_impl: refused importing tinytorch.vec (the reference solution)",
                "dot_impl: refused importing tinytorch.vec (the reference solution)",
                "norm_impl: refused importing tinytorch.vec (the reference solution)",
            ],
        ),
        "importlib-reference": (
            honest(
                scale_impl="import importlib\n_m = importlib.import_module('tinytorch.' + 'vec')"
                "\nscale = _m.scale",
                dot_impl="_d = __import__('tinytorch.vec', fromlist=['dot']).dot\n\n\n"
                "def dot(a, b):\n    return _d(a, b)",
            ),
            None,
            [0, 0, 1],
            None,
            [
                "scale_impl: refused importing tinytorch.vec (the reference solution)",
                "dot_impl: refused importing tinytorch.vec (the reference solution)",
                "scale_impl: names tinytorch.vec in a string (the reference solution of 98_vec)",
                "flagged for review: dot_impl: imports modules dynamically (__import__)",
            ],
        ),
        "file-reference": (
            honest(
                # the workers import a student build (graded module a stub): aim at the
                # reference file by its path
                scale_impl="import importlib.util, os, tinytorch\n"
                f"_path = {str(pkg_dir / 'vec.py')!r}\n"
                "_spec = importlib.util.spec_from_file_location('notvec', _path)\n"
                "_mod = importlib.util.module_from_spec(_spec)\n"
                "_spec.loader.exec_module(_mod)\n"
                "scale = _mod.scale",
                dot_impl="import os, tinytorch\n"
                f"exec(open({str(pkg_dir / 'vec.py')!r}).read())",
            ),
            None,
            [0, 0, 1],
            None,
            # behind the OS boundary the project's reference file is not in the sandbox's file
            # system at all (nothing to refuse: the open fails); the static scan still flags it
            ["scale_impl: imports modules dynamically (importlib)"],
        ),
        "escape": (
            honest(
                scale_impl="import subprocess, sys\n"
                "_src = subprocess.run([sys.executable, '-c', 'import inspect, tinytorch.vec as v;"
                " print(inspect.getsource(v))'], capture_output=True, text=True).stdout\n"
                "exec(_src)",
                dot_impl=WRONG_DOT + "\nimport gc, os, sys, threading\n"
                "for _attempt in (\n"
                "    lambda: sys.settrace(lambda *a: None),\n"
                "    lambda: gc.get_objects(),\n"
                "    lambda: threading.Thread(target=print).start(),\n"
                "    lambda: __import__('ctypes').CDLL(None),\n"
                "    lambda: os.kill(os.getppid(), 9),\n"
                f"    lambda: open({str(course_dir / 'gradebook.db')!r}, 'rb').read(),\n"
                f"    lambda: open({str(course_dir / 'hacked.txt')!r}, 'w'),\n"
                "):\n"
                "    try:\n"
                "        _attempt()\n"
                "    except Exception:\n"
                "        pass",
            ),
            None,
            [0, 0, 1],
            None,
            [
                "scale_impl: refused starting a process (subprocess)",
                "dot_impl: refused installing a tracer (sys.settrace)",
                "dot_impl: refused walking the heap (gc.get_objects)",
                "dot_impl: refused starting a thread",
                "dot_impl: refused loading or calling native code (ctypes)",
                "dot_impl: refused sending a signal",
                # the course directory does not exist behind the OS boundary (tests/security/
                # asserts nothing of it is read or written)
            ],
        ),
        "abuse-in-given-cell": (
            honest(
                dot_impl="def dot(a, b):\n    import gc\n    try:\n        gc.get_objects()\n"
                "    except PermissionError:\n        pass\n    return 0.0"
            ),
            None,
            [2, 0, 1],
            None,
            [
                "{given}: refused walking the heap (gc.get_objects)",
                "check_dot: refused walking the heap (gc.get_objects)",
            ],
        ),
        "forger": (
            honest(
                scale_impl=SCALE + "\nimport json, os, struct\n"
                "_m = json.dumps({'op': 'result', 'i': 3, 'nonce': 'guess', 'status': 'ok',"
                " 'outputs': []}).encode()\n"
                "os.write(201, struct.pack('!I', len(_m)) + _m)"
            ),
            None,
            None,
            None,
            [
                "the grading process sent unexpected data while running cell scale_impl "
                "(tampering with the grader?)"
            ],
        ),
    }


# broken submissions: (how to make it, tito scores or None, substrings of reason / remarks)
BROKEN = {
    "badjson": ("text", None, ["notebook is not valid JSON: Expecting value at line 1 column 12"]),
    "nonotebook": (
        "empty",
        None,
        ["missing notebook course/submitted/nonotebook/98_vec/vec.ipynb"],
    ),
    "renamed": (
        "renamed",
        None,
        ["missing notebook course/submitted/renamed/98_vec/vec.ipynb (found vec (1).ipynb)"],
    ),
    "extra": (
        "extra",
        [2, 2, 1],
        ["extra notebook scratch.ipynb was not graded (only vec.ipynb is)"],
    ),
    "crasher": (
        honest(scale_impl="import os\nos._exit(3)"),
        None,
        ["the grading process died (exit code 3) while running cell scale_impl"],
    ),
    "looper": (
        honest(
            scale_impl="while True:\n    try:\n        while True:\n            pass\n"
            "    except BaseException:\n        pass"
        ),
        None,
        ["took longer than the 5 s per-notebook time limit (stopped in cell scale_impl)"],
    ),
    "slowpoke": (
        honest(dot_impl="def dot(a, b):\n    while True:\n        pass"),
        [2, 0, 1],
        ["check_dot: stopped at the 2 s cell time limit"],
    ),
    "hog": (
        honest(
            scale_impl="def _grow():\n    hoard = []\n    while True:\n"
            "        hoard.append(bytearray(50 * 2**20))\n\n\n_grow()\n" + SCALE
        ),
        [0, 2, 1],
        ["scale_impl: ran out of memory (limit: 300 MB above the start)"],
    ),
}


def released_notebook(project: Project) -> dict:
    return json.loads((project.course_dir / "release" / "98_vec" / "vec.ipynb").read_text())


def submit(project: Project, student: str, fill: dict, edit=None, name: str = "vec.ipynb") -> Path:
    nb = released_notebook(project)
    for cell in nb["cells"]:
        gid = cell["metadata"].get("nbgrader", {}).get("grade_id")
        if gid in fill:
            cell["source"] = fill[gid]
    if edit:
        how, gid, value = edit
        target = next(
            (c for c in nb["cells"] if c["metadata"].get("nbgrader", {}).get("grade_id") == gid),
            None,
        )
        if how == "points":
            target["metadata"]["nbgrader"]["points"] = value
        elif how == "drop":
            nb["cells"].remove(target)
        elif how == "retype":
            target["cell_type"] = value
            target.pop("outputs", None)
            target.pop("execution_count", None)
        elif how == "fake":
            fake = copy.deepcopy(next(c for c in nb["cells"] if c.get("id") == "check_dot"))
            fake["id"] = gid
            fake["source"] = "pass"
            fake["metadata"]["nbgrader"].update(grade_id=gid, points=value)
            nb["cells"].append(fake)
    dest = project.course_dir / "submitted" / student / "98_vec"
    dest.mkdir(parents=True, exist_ok=True)
    (dest / name).write_text(json.dumps(nb, indent=1))
    return dest / name


def make_broken(project: Project, student: str, how) -> None:
    dest = project.course_dir / "submitted" / student / "98_vec"
    if isinstance(how, dict):
        submit(project, student, how)
    elif how == "text":
        dest.mkdir(parents=True)
        (dest / "vec.ipynb").write_text('{"cells": [')
    elif how == "empty":
        dest.mkdir(parents=True)
    elif how == "renamed":
        submit(project, student, HONEST, name="vec (1).ipynb")
    elif how == "extra":
        submit(project, student, HONEST)
        submit(project, student, {}, name="scratch.ipynb")


def plain_nbgrader_scores(project: Project, students: list[str], tmp: Path) -> dict:
    """Grade ``students`` with plain nbgrader (its Autograde converter, one process, as an
    instructor would) in a copy of the course; per-cell scores from its gradebook."""
    root = tmp / "plain"
    shutil.copytree(project.root, root)
    copy_ = Project.at(root, nbgrader_config=CONFIG)
    for d in (copy_.course_dir / "submitted").iterdir():
        if d.name not in students:
            shutil.rmtree(d)
    res = nbg.run(
        "Autograde",
        copy_,
        assignment_id="98_vec",
        student_id="*",
        notebook_id="vec",
        log_name="plain-autograde.log",
        create_student=True,
    )
    assert res.success, res.error
    out = {}
    with nbg.gradebook(copy_) as gb:
        for s in students:
            nb = gb.find_submission_notebook("vec", "98_vec", s)
            grades = {g.name: g.score for g in nb.grades}
            out[s] = [grades[name] for name, _ in CELLS]
    return out


@pytest.fixture(scope="module")
def course(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("vec")
    root = tmp / "proj"
    (root / "modules").mkdir(parents=True)
    shutil.copytree(VEC, root / "modules" / "98_vec")
    project = Project.at(root, nbgrader_config=CONFIG)
    spec = load_module(project.modules_dir / "98_vec")
    export([spec], project)  # root/tinytorch/vec.py: the reference solution, importable
    release_module(parse_source(spec), project)
    expected = attacks(project.package_dir, project.course_dir)
    for student, (fill, edit, *_rest) in expected.items():
        submit(project, student, fill, edit)
    for student, (how, *_rest) in BROKEN.items():
        make_broken(project, student, how)
    results = {r.student: r for r in autograde(spec, project, jobs=2, limits=LIMITS)}
    given = [
        c for c in released_notebook(project)["cells"] if 'print("dot(' in "".join(c["source"])
    ]
    threads = [
        c for c in released_notebook(project)["cells"] if "threading.Thread" in "".join(c["source"])
    ]
    compared = [s for s, e in expected.items() if e[3] is not None]
    plain = plain_nbgrader_scores(project, compared, tmp)
    return SimpleNamespace(
        project=project,
        spec=spec,
        expected=expected,
        results=results,
        plain=plain,
        calls_dot=given[0]["id"],
        threads_cell=threads[0]["id"],
    )


def text_of(result) -> str:
    return "\n".join([result.reason or "", *result.remarks])


def test_honest_submission_gets_full_marks_and_no_remarks(course):
    honest = course.results["honest"]
    assert honest.graded and (honest.score, honest.max_score) == (5, 5)
    # the course's own cell starting a thread was refused: a course note, not the student's
    assert honest.course_notes == [f"given cell {course.threads_cell}: refused starting a thread"]
    assert course.plain["honest"] == [2, 2, 1]
    assert honest.remarks == []


@pytest.mark.parametrize(
    "student",
    [
        "patch-allclose",
        "patch-testing",
        "redefine-helper",
        "patch-builtins",
        "swap-code",
        "patch-during-check",
        "ipython-hook",
        "edit-locked",
        "delete-locked",
        "retype-locked",
        "fake-grade-cell",
        "import-reference",
        "importlib-reference",
        "file-reference",
        "escape",
        "abuse-in-given-cell",
        "forger",
    ],
)
def test_attack_scores_zero_on_the_cells_it_did_not_earn(course, student):
    _fill, _edit, scores, plain, remarks = course.expected[student]
    r = course.results[student]
    if scores is None:
        assert not r.graded
    else:
        assert r.graded, r.reason
        assert [(s.grade_id, s.score, s.max_score) for s in r.scores] == [
            (name, score, points) for (name, points), score in zip(CELLS, scores)
        ]
    text = text_of(r)
    for fragment in remarks:
        fragment = fragment.format(given=course.calls_dot)
        assert fragment in text, f"{fragment!r} not in:\n{text}"
    if plain is not None:  # the same notebook under plain nbgrader
        assert course.plain[student] == plain


def test_attacks_are_real_under_plain_nbgrader(course):
    """Each hostile notebook compared above gets points from plain nbgrader it does not get
    from tito: the zero comes from the guard, not from a broken notebook."""
    fooled = [
        s
        for s, (_f, _e, scores, plain, _r) in course.expected.items()
        if plain is not None and scores is not None and sum(plain) > sum(scores)
    ]
    assert sorted(fooled) == [
        "ipython-hook",
        "patch-allclose",
        "patch-builtins",
        "patch-during-check",
        "patch-testing",
        "redefine-helper",
        "swap-code",
    ]


def test_reference_is_importable_outside_the_grader(course):
    """What the grader refuses works in a plain interpreter (so the refusal is what stops it)."""
    pkg = str(course.project.package_dir)
    code = (
        f"import tinytorch; tinytorch.__path__.append({pkg!r}); "
        "from tinytorch.vec import dot; print(dot([1, 2], [3, 4]))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "11.0"


def test_escape_left_no_trace(course):
    assert not (course.project.course_dir / "hacked.txt").exists()


@pytest.mark.parametrize("student", sorted(BROKEN))
def test_broken_submission_is_reported_with_its_reason(course, student):
    _how, scores, fragments = BROKEN[student]
    r = course.results[student]
    if scores is None:
        assert not r.graded
        assert not (course.project.course_dir / "autograded" / student).exists()
    else:
        assert r.graded, r.reason
        assert [s.score for s in r.scores] == scores
    for fragment in fragments:
        assert fragment in text_of(r), text_of(r)


def test_per_cell_reasons(course):
    slow = {s.grade_id: s for s in course.results["slowpoke"].scores}
    assert slow["check_dot"].reason == "CellTimeout: the cell did not finish within 2 s"
    hog = {s.grade_id: s for s in course.results["hog"].scores}
    assert hog["check_dot"].reason is None
    assert hog["check_scale"].reason == "NameError: name 'scale' is not defined"
    during = {s.grade_id: s for s in course.results["patch-during-check"].scores}
    assert during["check_dot"].reason == (
        "the code under test rebound numpy.allclose while the check ran"
    )


def test_tito_grades_shows_every_reason(course, capsys):
    rc = cli.main(
        ["--root", str(course.project.root), "--nbgrader-config", str(CONFIG), "grades", "vec"]
    )
    out = capsys.readouterr().out
    assert rc == 0
    lines = out.splitlines()
    ungradable = {line.split()[0]: line for line in lines if "could not be graded:" in line}
    assert sorted(ungradable) == ["badjson", "crasher", "forger", "looper", "nonotebook", "renamed"]
    assert "took longer than the 5 s per-notebook time limit" in ungradable["looper"]
    assert "the grading process died (exit code 3)" in ungradable["crasher"]
    notes = out[out.index("\nnotes:\n") :]
    assert "  hog: scale_impl: ran out of memory (limit: 300 MB above the start)" in notes
    assert "  import-reference: scale_impl: refused importing tinytorch.vec" in notes
    assert "  extra: extra notebook scratch.ipynb was not graded" in notes
    status = load_status(course.project)["98_vec"]
    assert "notes" not in status["honest"]
    assert status["patch-during-check"]["notes"]


def test_regrading_after_a_fix_works(course):
    project, spec = course.project, course.spec
    fixed = ["badjson", "crasher", "looper", "nonotebook"]
    for student in fixed:
        shutil.rmtree(project.course_dir / "submitted" / student)
        submit(project, student, HONEST)
    results = autograde(spec, project, fixed, jobs=2, limits=LIMITS)
    assert [(r.student, r.graded, r.score) for r in results] == [(s, True, 5.0) for s in fixed]
    rows = {r.student: r for r in table(spec, project).rows}
    for student in fixed:
        assert rows[student].graded and rows[student].score == 5 and rows[student].notes == []
        assert load_status(project)["98_vec"][student]["status"] == "graded"
    assert "could not be graded: notebook is not valid JSON" not in format_table(
        table(spec, project)
    )
