"""Student builds (tito/student_build.py, tinytorch/student/): answers out of students' reach.

The slow tests build a real course (nbgrader release of modules 16 and 17, module 15
published), install the student wheel with pip into a fresh virtual environment in which the
full library is not importable, and check: no solution line of 16-20 anywhere a student can
read; the released notebook 16 runs to its first exercise; the solved notebook 16 runs to the
end and exports into the student's own package; later code then runs on the student's module 16.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

from tinytorch import student
from tito.errors import SourceError
from tito.modules import discover_modules, load_module
from tito.project import Project
from tito.source import parse_source
from tito.student_build import (
    build_student_package,
    publish,
    published_modules,
    released_export_cells,
    student_site,
)

REPO = Path(__file__).resolve().parents[1]
UNPUBLISHED = ("16_memory", "17_quantization", "18_compression", "19_autotuning", "20_competition")
SECRET_SUBSTRING_MIN = 40  # secrets this long are also searched for inside longer lines


def norm(line: str) -> str:
    return " ".join(line.split())


# ---- fast: the stub generator and the exporter on their own -----------------------------------
INFO = student.ModuleInfo(
    id="99_toy",
    name="toy",
    notebook="toy.ipynb",
    release_path="course/release/99_toy/toy.ipynb",
    export_cells=("a", "b"),
    exercises=("add_impl",),
    exports=("add", "Box"),
    shipped="stub",
)


def test_fill_stubs_names_function_exercise_and_notebook():
    code = (
        "class Box:\n"
        "    def area(self):\n"
        "        # YOUR CODE HERE\n"
        "        raise NotImplementedError()\n"
        "\n"
        "def add(a, b):\n"
        '    """Add."""\n'
        "    # YOUR CODE HERE\n"
        "    raise NotImplementedError()\n"
        "\n"
        "def given():\n"
        "    raise NotImplementedError()  # abstract: not a cleared solution\n"
    )
    text, unfinished = student.fill_stubs(code, INFO, "add_impl")
    assert unfinished == ["Box.area", "add"]
    ns: dict = {}
    exec(compile(text, "toy", "exec"), ns)
    with pytest.raises(NotImplementedError) as err:
        ns["add"](1, 2)
    assert str(err.value).startswith("add is exercise 1 ('add_impl') of 99_toy")
    assert "course/release/99_toy/toy.ipynb" in str(err.value)
    assert "python -m tinytorch.student export toy.ipynb" in str(err.value)
    with pytest.raises(NotImplementedError, match=r"^Box\.area is exercise 1"):
        ns["Box"]().area()
    with pytest.raises(NotImplementedError, match=r"^$"):
        ns["given"]()  # given code keeps its own behaviour


def test_released_export_cells_are_what_nbgrader_releases():
    """Every solution region becomes nbgrader's stub; nothing of a region survives."""
    for spec in discover_modules(REPO / "modules"):
        src = parse_source(spec)
        cells = dict(released_export_cells(src))
        secrets = src.secret_lines("solution")
        for cid, code in cells.items():
            stripped = {ln.strip() for ln in code.split("\n")}
            assert not stripped & set(secrets), (spec.id, cid)
            assert "BEGIN SOLUTION" not in code and "#| export" not in code
        assert set(cells) == {c.cell_id(spec.id) for c in src.export_cells}


def test_publish_after_in_module_yaml(tmp_path):
    root = tmp_path / "modules" / "15_acceleration"
    shutil.copytree(REPO / "modules" / "15_acceleration", root)
    text = (root / "module.yaml").read_text()
    (root / "module.yaml").write_text(text + "publish_after: 2026-01-10\n")
    spec = load_module(root)
    assert spec.publish_after == dt.date(2026, 1, 10)
    project = Project.at(tmp_path, course_dir=tmp_path / "course")
    assert published_modules(project, [spec], today=dt.date(2026, 1, 9)) == {}
    assert "15_acceleration" in published_modules(project, [spec], today=dt.date(2026, 1, 10))
    (root / "module.yaml").write_text(text + "publish_after: soon\n")
    with pytest.raises(SourceError, match="publish_after must be a date"):
        load_module(root)


def test_publish_is_recorded_in_the_course_dir(tmp_path):
    project = Project.at(REPO, course_dir=tmp_path / "course")
    specs = discover_modules(REPO / "modules")
    spec = next(s for s in specs if s.id == "17_quantization")
    publish(project, [spec])
    assert json.loads((tmp_path / "course" / "published.json").read_text()).keys() == {spec.id}
    assert "17_quantization" in published_modules(project, specs, today=dt.date(2000, 1, 1))
    publish(project, [spec], undo=True)
    assert published_modules(project, specs, today=dt.date(2000, 1, 1)) == {}


def test_student_site_stubs_the_graded_module_and_keeps_prerequisites(tmp_path):
    project = Project.at(REPO, course_dir=tmp_path / "course")
    site = student_site(project, "19_autotuning", dest=tmp_path / "site")
    man = json.loads((site / "tinytorch" / "_course.json").read_text())["modules"]
    shipped = {k: v["shipped"] for k, v in man.items()}
    assert shipped["19_autotuning"] == "stub"
    assert shipped["20_competition"] == "stub"  # later modules: never their reference
    for pre in ("15_acceleration", "17_quantization", "18_compression"):
        assert shipped[pre] == "reference"  # the checks of 19 use them
    src = parse_source(load_module(REPO / "modules" / "19_autotuning"))
    text = (site / "tinytorch" / "autotuning.py").read_text()
    lines = {ln.strip() for ln in text.split("\n")}
    assert not lines & set(src.secret_lines("solution"))
    out = subprocess.run(
        [sys.executable, "-c", "import tinytorch.autotuning as m, tinytorch; print(m.__file__)"],
        cwd=tmp_path,
        env=dict(os.environ, PYTHONPATH=str(site)),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == str(site / "tinytorch" / "autotuning.py")


def test_exporter_refuses_a_learner_install():
    with pytest.raises(student.StudentError, match="not a course student build"):
        student.export(REPO / "README.md")


# ---- slow: a real course, a real wheel, a fresh environment ---------------------------------
def _run(cmd, **kw):
    kw.setdefault("capture_output", True)
    kw.setdefault("text", True)
    kw.setdefault("timeout", 600)
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "TITO_ROOT")}
    env.update(OPENBLAS_NUM_THREADS="1", OMP_NUM_THREADS="1", MPLBACKEND="Agg")
    return subprocess.run(cmd, env=env, **kw)


def _dependency_dir(tmp: Path) -> Path:
    """This environment's third-party packages without tinytorch, tito or their editable
    finders: symlinks, so the fresh venv gets numpy, matplotlib, nbclient... in no time."""
    site = Path(sysconfig.get_paths()["purelib"])
    deps = tmp / "deps"
    deps.mkdir()
    skip = ("tinytorch", "tito", "__editable__", "_distutils_hack", "pip", "setuptools")
    for entry in site.iterdir():
        if entry.name.startswith(skip) or entry.suffix == ".pth" or entry.name == "__pycache__":
            continue
        (deps / entry.name).symlink_to(entry)
    return deps


RUNNER = r"""
import json, sys
import nbformat
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError
src, dest, workdir = sys.argv[1:4]
nb = nbformat.read(src, as_version=4)
client = NotebookClient(nb, timeout=600, kernel_name="python3", allow_errors=False,
                        resources={"metadata": {"path": workdir}})
report = {"ran": 0, "error": None}
with client.setup_kernel():
    for i, cell in enumerate(nb.cells):
        if cell.cell_type != "code":
            continue
        try:
            client.execute_cell(cell, i)
        except CellExecutionError as exc:
            report["error"] = {"cell": cell.get("id"), "ename": exc.ename, "evalue": exc.evalue}
            break
        report["ran"] += 1
nbformat.write(nb, dest)
print(json.dumps(report))
"""


@pytest.fixture(scope="module")
def course(tmp_path_factory):
    """Modules 16 and 17 released with nbgrader, 15 published, the wheel installed with pip
    into a fresh venv whose only tinytorch is the student build."""
    from tito.release import release

    tmp = tmp_path_factory.mktemp("student_course")
    project = Project.at(REPO, course_dir=tmp / "course")
    specs = discover_modules(REPO / "modules")
    publish(project, [s for s in specs if s.id == "15_acceleration"])
    results = release([s for s in specs if s.id in ("16_memory", "17_quantization")], project)
    wheel = results[0].student_wheel
    assert wheel.parent == project.course_dir / "release"
    venv = tmp / "venv"
    assert _run([sys.executable, "-m", "venv", "--without-pip", str(venv)]).returncode == 0
    py = venv / "bin" / "python"
    purelib = _run([py, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"])
    site = Path(purelib.stdout.strip())
    baseline = _env_lines(venv)  # the environment's own files, before the student build
    (site / "deps.pth").write_text(str(_dependency_dir(tmp)) + "\n")
    pip = _run(
        [
            sys.executable,
            "-m",
            "pip",
            "--python",
            str(py),
            "install",
            "-q",
            "--no-deps",
            "--no-index",
            str(wheel),
        ]
    )
    assert pip.returncode == 0, pip.stderr
    work = tmp / "work"
    work.mkdir()
    (work / "run_notebook.py").write_text(RUNNER)
    return {
        "project": project,
        "tmp": tmp,
        "venv": venv,
        "py": py,
        "site": site,
        "work": work,
        "wheel": wheel,
        "baseline": baseline,
    }


def _env_lines(root: Path) -> set[str]:
    out = set()
    for path in root.rglob("*"):
        if path.is_file() and not path.is_symlink():
            try:
                out |= {norm(ln) for ln in path.read_text(encoding="utf-8").splitlines()}
            except (UnicodeDecodeError, OSError):
                pass
    return out


def _solution_lines(project: Project, module_id: str) -> set[str]:
    """Every line of every solution region of the instructor notebook that is not also in
    the released notebook (normalised whitespace)."""
    spec = load_module(REPO / "modules" / module_id)
    src = parse_source(spec)
    from tito.build import notebook

    released = set()
    rel = project.step_dir("release", spec.id) / spec.notebook_name
    if rel.exists():
        for cell in json.loads(rel.read_text())["cells"]:
            released |= {norm(ln) for ln in "".join(cell["source"]).split("\n")}
    else:  # not released in this course: its public text is what a release would show
        released = {norm(ln) for ln in src.public_text_lines}
    out = set()
    for cell in notebook(src).cells:
        inside = False
        for ln in cell.source.split("\n"):
            if "BEGIN SOLUTION" in ln:
                inside = True
            elif "END SOLUTION" in ln:
                inside = False
            elif inside and norm(ln) and norm(ln) not in released:
                out.add(norm(ln))
    return out


def _public_lines() -> set[str]:
    """Lines every student may read anyway: the foundation library (core, datasets, arena...),
    the published reference of 15, and every module's released text. A solution line that is
    also one of these (``break``, ``return out``, ``tracemalloc.start()`` in 19's given code)
    reveals nothing."""
    specs = discover_modules(REPO / "modules")
    gen = {s.name for s in specs}
    out = set()
    for path in (REPO / "tinytorch").rglob("*"):
        if path.suffix in (".py", ".md", ".txt") and (
            not (path.parent.name == "tinytorch" and path.stem in gen)
            or path.stem == "acceleration"  # 15 is published in this course
        ):
            out |= {norm(ln) for ln in path.read_text(encoding="utf-8").splitlines()}
    for spec in specs:
        out |= {norm(ln) for ln in parse_source(spec).public_text_lines}
    return out


def _texts_of(path: Path):
    """(label, text) of everything readable in ``path``: notebooks' sources and outputs, the
    wheel's members, any text file."""
    if path.suffix == ".ipynb":
        nb = json.loads(path.read_text(encoding="utf-8"))
        for i, cell in enumerate(nb["cells"]):
            yield f"{path}#cell{i}", "".join(cell.get("source", ""))
            for out in cell.get("outputs", []):
                yield f"{path}#cell{i}-output", json.dumps(out)  # escaped; decoded below
                parts = [out.get("text", ""), out.get("evalue", ""), *out.get("traceback", [])]
                parts += [v for v in out.get("data", {}).values() if isinstance(v, str)]
                yield (
                    f"{path}#cell{i}-output",
                    "\n".join("".join(p) if isinstance(p, list) else str(p) for p in parts),
                )
    elif path.suffix in (".whl", ".zip"):
        with zipfile.ZipFile(path) as zf:
            for name in zf.namelist():
                try:
                    yield f"{path}!{name}", zf.read(name).decode("utf-8")
                except UnicodeDecodeError:
                    pass
    else:
        try:
            yield str(path), path.read_text(encoding="utf-8")
        except (UnicodeDecodeError, OSError):
            pass


def _leaks(roots, secrets: dict[str, set[str]], skip: set[str]) -> list[str]:
    found = []
    for root in roots:
        paths = [root] if root.is_file() else sorted(p for p in root.rglob("*") if p.is_file())
        for path in paths:
            if path.is_symlink():
                continue
            for label, text in _texts_of(path):
                lines = {norm(ln) for ln in text.splitlines()}
                flat = norm(text)
                for module_id, lines_of in secrets.items():
                    for secret in lines_of - skip:
                        if secret in lines or (
                            len(secret) >= SECRET_SUBSTRING_MIN and secret in flat
                        ):
                            found.append(f"{module_id}: {secret[:70]!r} in {label}")
    return found


def _run_notebook(course, src: Path, name: str) -> tuple[dict, Path]:
    dest = course["work"] / name
    out = _run(
        [course["py"], course["work"] / "run_notebook.py", src, dest, course["work"]],
        cwd=course["work"],
    )
    assert out.returncode == 0, out.stderr[-3000:]
    return json.loads(out.stdout.strip().splitlines()[-1]), dest


def _secrets(course, modules=UNPUBLISHED) -> dict[str, set[str]]:
    return {m: _solution_lines(course["project"], m) for m in modules}


@pytest.mark.slow
def test_no_solution_line_in_the_environment_or_the_release(course):
    py = course["py"]
    where = _run([py, "-c", "import tinytorch; print(tinytorch.__file__)"], cwd=course["work"])
    assert where.stdout.strip().startswith(str(course["site"])), where
    assert _run([py, "-c", "import tito"], cwd=course["work"]).returncode != 0
    kinds = _run([py, "-m", "tinytorch.student", "status"], cwd=course["work"]).stdout
    assert "15_acceleration      reference" in kinds
    for m in UNPUBLISHED:
        assert f"{m:<20} stub" in kinds
    secrets = _secrets(course)
    assert all(len(s) > 20 for s in secrets.values()), {m: len(s) for m, s in secrets.items()}
    # lines the student has anyway: the foundation, the published 15, released text, the
    # bare environment; few, and generic (the assertion message lists them)
    skip = (_public_lines() | course["baseline"]) & set().union(*secrets.values())
    assert len(skip) < 0.1 * sum(len(s) for s in secrets.values()), sorted(skip)
    roots = [course["venv"], course["project"].course_dir / "release"]
    assert _leaks(roots, secrets, skip) == []
    # the check can fail: the reference module file is full of them
    assert _leaks([REPO / "tinytorch" / "memory.py"], secrets, skip)


@pytest.mark.slow
def test_released_16_runs_to_its_first_exercise_and_says_what_to_do(course):
    project = course["project"]
    released = project.step_dir("release", "16_memory") / "memory.ipynb"
    report, executed = _run_notebook(course, released, "released16.ipynb")
    assert report["error"] is not None and report["ran"] > 3, report
    assert report["error"]["cell"] == "positions_processed_counts", report  # 1st exercise's check
    assert report["error"]["ename"] == "NotImplementedError"
    secrets = _secrets(course)
    skip = _public_lines() | course["baseline"]
    assert _leaks([executed], secrets, skip) == []


@pytest.mark.slow
def test_solved_16_exports_and_later_code_runs_on_the_students_module(course):
    """The student solves 16 (the reference answers typed into the released notebook's
    solution cells), runs it to the end, exports it; then the core's cached generation runs on
    the student's own StaticKVCache, and the released notebook 17 runs in the same
    environment up to its first exercise. No notebook of 17-20 uses module 16 (17 builds on
    15), so the flow-forward consumer of module 16 is generate() running on the student's own
    StaticKVCache (cache=StaticKVCache.for_model(model))."""
    project, py, work = course["project"], course["py"], course["work"]
    probe = (
        "import numpy as np\n"
        "from tinytorch.core.transformer import GPTConfig, TinyGPT\n"
        "m = TinyGPT(GPTConfig(vocab_size=16, block_size=32, n_layer=2, n_head=2, d_model=16),"
        " seed=0)\n"
        "p = np.array([[1, 2, 3]])\n"
        "from tinytorch.memory import StaticKVCache\n"
        "a = m.generate(p, 8, greedy=True, cache=StaticKVCache.for_model(m))\n"
        "b = m.generate(p, 8, greedy=True)\n"
        "assert (a == b).all(), (a, b)\n"
        "import tinytorch.memory as mem; print(mem.__file__)\n"
    )
    before = _run([py, "-c", probe], cwd=work)
    assert before.returncode != 0
    assert "NotImplementedError: StaticKVCache." in before.stderr
    assert "16_memory (course/release/16_memory/memory.ipynb)" in before.stderr

    released = project.step_dir("release", "16_memory") / "memory.ipynb"
    instructor = json.loads((project.step_dir("source", "16_memory") / "memory.ipynb").read_text())
    answers = {
        c["id"]: c["source"]
        for c in instructor["cells"]
        if c.get("metadata", {}).get("nbgrader", {}).get("solution")
    }
    nb = json.loads(released.read_text())
    for cell in nb["cells"]:
        if cell.get("id") in answers:
            src = "".join(answers[cell["id"]])
            cell["source"] = "\n".join(ln for ln in src.split("\n") if "SOLUTION" not in ln)
    solved = work / "memory.ipynb"
    solved.write_text(json.dumps(nb))
    report, executed = _run_notebook(course, solved, "solved16.ipynb")
    assert report["error"] is None, report
    out = _run([py, "-m", "tinytorch.student", "export", "memory.ipynb"], cwd=work)
    assert out.returncode == 0, out.stderr
    assert "exported memory.ipynb" in out.stdout and "unfinished" not in out.stdout
    status = _run([py, "-m", "tinytorch.student", "status"], cwd=work).stdout
    assert "16_memory            yours" in status, status

    after = _run([py, "-c", probe], cwd=work)
    assert after.returncode == 0, after.stderr
    installed = Path(after.stdout.strip())
    assert installed.parent == course["site"] / "tinytorch"
    text = installed.read_text()
    assert text.startswith("# tinytorch.memory: yours, exported from memory.ipynb")
    # what the student exported is the student's notebook, nothing else
    for cid, src in answers.items():
        body = [ln for ln in "".join(src).split("\n") if ln.strip() and "SOLUTION" not in ln]
        assert all(ln.rstrip() in text for ln in body), cid

    later = project.step_dir("release", "17_quantization") / "quantization.ipynb"
    report17, executed17 = _run_notebook(course, later, "released17.ipynb")
    assert report17["error"] is not None and report17["error"]["ename"] == "NotImplementedError"
    assert report17["ran"] > 2, report17
    secrets = _secrets(course, UNPUBLISHED[1:])
    skip = _public_lines() | course["baseline"]
    roots = [course["venv"], executed, executed17]
    assert _leaks(roots, secrets, skip) == []


@pytest.mark.slow
def test_broken_export_is_refused_and_names_the_module(course):
    py, work = course["py"], course["work"]
    released = course["project"].step_dir("release", "17_quantization") / "quantization.ipynb"
    nb = json.loads(released.read_text())
    for cell in nb["cells"]:
        if cell.get("id") == "compute_qparams":
            cell["source"] = "def compute_qparams(:\n    pass\n"
    bad = work / "quantization.ipynb"
    bad.write_text(json.dumps(nb))
    before = (course["site"] / "tinytorch" / "quantization.py").read_text()
    out = _run([py, "-m", "tinytorch.student", "export", str(bad)], cwd=work)
    assert out.returncode == 1
    assert "quantization.ipynb" in out.stderr and "'compute_qparams'" in out.stderr
    assert "not valid Python" in out.stderr
    assert (course["site"] / "tinytorch" / "quantization.py").read_text() == before


def test_build_student_package_refuses_unknown_modules(tmp_path):
    project = Project.at(REPO, course_dir=tmp_path / "course")
    with pytest.raises(Exception, match="unknown module"):
        build_student_package(project, {"99_nothing"}, tmp_path / "out")


def test_use_student_site_wins_over_the_installed_library(tmp_path):
    """What a grading worker does at start-up (tito/workers.py: template_for): the graded
    module then comes from the student build, where it is a stub."""
    project = Project.at(REPO, course_dir=tmp_path / "course")
    site = student_site(project, "18_compression", dest=tmp_path / "site")
    code = (
        "from tito.student_build import use_student_site\n"
        f"use_student_site({str(site)!r})\n"
        "import tinytorch.compression as c, tinytorch.quantization as q\n"
        "print(c.__file__); print(q.__file__)\n"
        "c.magnitude_mask(__import__('numpy').ones((2, 2)), 0.5)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=120
    )
    files = out.stdout.split()
    assert files == [
        str(site / "tinytorch" / "compression.py"),
        str(site / "tinytorch" / "quantization.py"),
    ], out.stderr
    assert "NotImplementedError: magnitude_mask is exercise 1 ('magnitude_mask') of 18" in (
        out.stderr
    )


def test_export_of_a_half_finished_notebook_and_of_a_broken_one(tmp_path):
    """The exporter on a build directory (no venv): unfinished exercises export with their
    messages; a syntax error names the cell and replaces nothing."""
    project = Project.at(REPO, course_dir=tmp_path / "course")
    site = build_student_package(project, set(), tmp_path / "site")
    pkg = site / "tinytorch"
    src = parse_source(load_module(REPO / "modules" / "17_quantization"))
    cells = [
        {"id": cid, "cell_type": "code", "metadata": {}, "outputs": [], "source": code}
        for cid, code in released_export_cells(src)
    ]
    nb = tmp_path / "quantization.ipynb"
    nb.write_text(json.dumps({"cells": cells, "metadata": {}, "nbformat": 4}))
    result = student.export(nb, pkg=pkg)
    assert "compute_qparams" in result.unfinished
    assert student.installed_kind(student.find_module("17", pkg), pkg) == "yours"
    shipped = (pkg / "quantization.py").read_text()
    next(c for c in cells if c["id"] == "compute_qparams")["source"] = "def compute_qparams(:\n"
    nb.write_text(json.dumps({"cells": cells, "metadata": {}, "nbformat": 4}))
    with pytest.raises(student.StudentError, match=r"'compute_qparams'.*not valid Python"):
        student.export(nb, pkg=pkg)
    assert (pkg / "quantization.py").read_text() == shipped
    cells[:] = [c for c in cells if c["id"] != "compute_qparams"]
    nb.write_text(json.dumps({"cells": cells, "metadata": {}, "nbformat": 4}))
    with pytest.raises(student.StudentError, match=r"lacks 1 of the cells.*compute_qparams"):
        student.export(nb, pkg=pkg)
    student.reset("17_quantization", pkg=pkg)
    assert student.installed_kind(student.find_module("quantization.ipynb", pkg), pkg) == "stub"


def test_tito_publish_command(tmp_path, capsys):
    from tito import cli

    course = tmp_path / "course"
    assert cli.main(["--root", str(REPO), "--course-dir", str(course), "publish", "18"]) == 0
    assert "18_compression: published with tito publish" in capsys.readouterr().out
    assert json.loads((course / "published.json").read_text()).keys() == {"18_compression"}
    assert cli.main(["--root", str(REPO), "--course-dir", str(course), "publish", "99"]) == 2
    args = ["--root", str(REPO), "--course-dir", str(course), "publish", "18", "--undo"]
    assert cli.main(args) == 0
    assert json.loads((course / "published.json").read_text()) == {}


def test_release_refuses_a_wheel_with_solution_text(tmp_path, monkeypatch):
    """The leak check of `tito release` on the wheel can fail: a stub generator that let the
    reference through removes the wheel and names the module and the line."""
    import tito.student_build as sb
    from tito.errors import CheckFailed
    from tito.release import release_student_wheel

    project = Project.at(REPO, course_dir=tmp_path / "course")
    monkeypatch.setattr(sb, "stub_text", sb.reference_text)
    with pytest.raises(CheckFailed, match=r"15_acceleration: solution text of cell 7 'gflops'"):
        release_student_wheel(project)
    assert not list((tmp_path / "course" / "release").glob("*.whl"))
