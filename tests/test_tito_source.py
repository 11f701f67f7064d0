"""tito without notebooks: module.yaml, source validation, export. Fast (no kernels)."""

from __future__ import annotations

import importlib.util
import json
import shutil
import subprocess
from pathlib import Path

import pytest

from tito import cli
from tito.errors import SourceError, TitoError
from tito.modules import discover_modules, load_module, resolve
from tito.project import Project
from tito.source import parse_source

REPO = Path(__file__).resolve().parents[1]
TOY = REPO / "tests" / "fixtures" / "modules" / "99_toy"
CONFIG = REPO / "nbgrader_config.py"
SRC = "modules/99_toy/toy_dev.py"


def make_project(root: Path) -> Project:
    (root / "modules").mkdir(parents=True)
    shutil.copytree(TOY, root / "modules" / "99_toy")
    return Project.at(root, nbgrader_config=CONFIG)


@pytest.fixture
def project(tmp_path, monkeypatch) -> Project:
    proj = make_project(tmp_path / "proj")
    monkeypatch.chdir(proj.root)  # error messages show paths relative to the cwd
    return proj


def tito(project: Project, capsys, *args: str) -> tuple[int, str, str]:
    rc = cli.main(["--root", str(project.root), "--nbgrader-config", str(CONFIG), *args])
    out, err = capsys.readouterr()
    return rc, out, err


def edit(path: Path, old: str, new: str, count: int = 1) -> None:
    text = path.read_text()
    assert text.count(old) >= count, f"{old!r} not in {path}"
    path.write_text(text.replace(old, new, count))


def source_line(project: Project, n: int) -> str:
    return (project.root / SRC).read_text().splitlines()[n - 1]


# ---- module.yaml ---------------------------------------------------------------------------
def test_load_module_reads_every_field():
    spec = load_module(TOY)
    assert (spec.id, spec.number, spec.name) == ("99_toy", 99, "toy")
    assert spec.exports == ("add", "clip")
    assert spec.points == 3
    assert spec.prerequisites == ("core",)
    assert spec.source == TOY.resolve() / "toy_dev.py"


def test_resolve_accepts_number_id_and_name(project):
    mods = discover_modules(project.modules_dir)
    for name in ("99", "99_toy", "toy", "modules/99_toy"):
        assert [m.id for m in resolve([name], mods)] == ["99_toy"]
    assert resolve([], mods) == mods


def test_unknown_module_is_one_line_error_listing_known(project, capsys):
    rc, out, err = tito(project, capsys, "export", "nosuch")
    assert rc == 2
    assert err == "tito: error: unknown module 'nosuch'; known modules: 99_toy\n"
    assert not project.package_dir.exists()


@pytest.mark.parametrize(
    ("old", "new", "needle"),
    [
        ("points: 3\n", "", "missing key 'points'"),
        ("id: 99_toy", "id: 98_toy", "disagrees with number"),
        ("  - core", "  - 99_later", "does not come before"),
        ("estimated_hours: 0.1", "estimated_hours: 0.1\ncolour: red", "unknown key 'colour'"),
        ("exports:\n  - add", "exports:\n  - 2add", "not a Python identifier"),
        # a full match: `$` alone also matches before a trailing newline
        ("  - core", '  - "15_acceleration\\n"', "must be 'core' or a module id"),
    ],
)
def test_bad_module_yaml(project, capsys, old, new, needle):
    edit(project.modules_dir / "99_toy" / "module.yaml", old, new)
    rc, _, err = tito(project, capsys, "export")
    assert rc == 2
    assert err.startswith("tito: error: modules/99_toy/module.yaml") and needle in err
    assert err.count("\n") == 1


# ---- malformed sources: one line naming file, line and cell; nothing written ---------------
MALFORMED = {
    "missing_schema_version": (
        ('"points": 1, "schema_version": 3, ', '"points": 1, '),
        "cell 6 'check_add'",
        "lacks schema_version",
        "check_add",
    ),
    "duplicate_grade_id": (
        ('"grade_id": "clip_impl"', '"grade_id": "add_impl"'),
        "cell 8 'add_impl'",
        "duplicate grade_id 'add_impl'",
        "add_impl",
    ),
    "delimiter_in_comment": (
        ("import math\n", "import math  # the solution goes between ### BEGIN SOLUTION lines\n"),
        "cell 3",
        "'BEGIN SOLUTION' outside a solution cell",
        "BEGIN SOLUTION",
    ),
    "delimiter_in_docstring_of_solution_cell": (
        ('"""Return a + b."""', '"""Return a + b (the part after BEGIN SOLUTION)."""'),
        "cell 5 'add_impl'",
        "inside other text",
        "BEGIN SOLUTION",
    ),
    "delimiter_in_markdown": (
        (
            "# Write `add(a, b)` returning the sum of its arguments.",
            "# Write `add(a, b)` below ### BEGIN SOLUTION.",
        ),
        "cell 4",
        "in a markdown cell",
        "BEGIN SOLUTION",
    ),
    "hidden_tests_outside_grade_cell": (
        (
            "    total = a + b\n",
            "    ### BEGIN HIDDEN TESTS\n    total = a + b\n    ### END HIDDEN TESTS\n",
        ),
        "cell 5 'add_impl'",
        "outside a grade cell",
        "BEGIN HIDDEN TESTS",
    ),
    "grade_cell_without_points": (
        ('"points": 2, ', ""),
        "cell 9 'check_clip'",
        "lacks points",
        "check_clip",
    ),
    "two_default_exp": (
        ("#| export\nimport math\n", "#| export\nimport math\n\n# %%\n#| default_exp toy\n"),
        "cell 4",
        "second '#| default_exp'",
        "default_exp",
    ),
    "unclosed_solution": (
        ("    return total\n    ### END SOLUTION\n", "    return total\n"),
        "cell 5 'add_impl'",
        "never closed",
        "BEGIN SOLUTION",
    ),
    "export_not_first_line": (
        ("#| export\ndef add(a, b):", "def add(a, b):\n#| export"),
        "cell 5 'add_impl'",
        "must be the first line",
        "#| export",
    ),
    "metadata_not_json": (
        ('"task": false}\n#| export\ndef add', '"task": false\n#| export\ndef add'),
        "cell 5",
        "not valid JSON",
        "add_impl",
    ),
}


@pytest.mark.parametrize("case", sorted(MALFORMED))
@pytest.mark.parametrize("command", ["export", "build", "release"])
def test_malformed_source_is_one_line_error_and_writes_nothing(project, capsys, case, command):
    (old, new), cell, problem, line_needle = MALFORMED[case]
    edit(project.root / SRC, old, new)
    rc, out, err = tito(project, capsys, command)
    assert rc == 2, err
    assert err.count("\n") == 1 and err.startswith(f"tito: error: {SRC}:"), err
    line = int(err[len(f"tito: error: {SRC}:") :].split(":")[0])
    assert f": {cell}" in err and problem in err, err
    assert line_needle in source_line(project, line), (line, err)
    assert not project.package_dir.exists()
    assert not project.course_dir.exists()


def test_grade_id_with_a_trailing_newline_is_refused(project):
    edit(project.root / SRC, '"grade_id": "check_add"', '"grade_id": "check_add\\n"')
    with pytest.raises(SourceError, match=r"grade_id 'check_add\\n' must match"):
        parse_source(load_module(project.modules_dir / "99_toy"))


def test_source_error_carries_file_line_and_cell(project):
    edit(project.root / SRC, '"points": 2, ', "")
    with pytest.raises(SourceError) as info:
        parse_source(load_module(project.modules_dir / "99_toy"))
    err = info.value
    assert err.path.name == "toy_dev.py" and err.cell == "cell 9 'check_clip'"
    assert "check_clip" in source_line(project, err.line)


def test_points_must_match_module_yaml(project, capsys):
    edit(project.modules_dir / "99_toy" / "module.yaml", "points: 3", "points: 4")
    rc, _, err = tito(project, capsys, "build")
    assert rc == 2
    assert err.startswith("tito: error: modules/99_toy/module.yaml:") and "sum to 3" in err


def test_default_exp_must_name_the_module(project, capsys):
    edit(project.root / SRC, "#| default_exp toy", "#| default_exp toys")
    rc, _, err = tito(project, capsys, "export")
    assert rc == 2 and "module.yaml name is 'toy'" in err and ": cell 2:" in err


# ---- export --------------------------------------------------------------------------------
def test_export_writes_header_markers_and_solutions(project, capsys):
    rc, out, _ = tito(project, capsys, "export")
    assert rc == 0 and "tinytorch/toy.py: written" in out
    text = (project.package_dir / "toy.py").read_text()
    assert text.startswith(
        f"# AUTOGENERATED! DO NOT EDIT! File to edit: {SRC}\n\n\n# %% cell 3: export\n"
    )
    assert "# %% cell 5: add_impl\ndef add(a, b):" in text
    assert "\n\n\n# %% cell 8: clip_impl\n" in text
    for noise in ("BEGIN SOLUTION", "END SOLUTION", "#|", "check_add", "HIDDEN"):
        assert noise not in text
    assert text.endswith("return bounded\n") and not text.endswith("\n\n")
    assert all(line == line.rstrip() for line in text.splitlines())
    # the solutions are in: the generated module works
    spec = importlib.util.spec_from_file_location("toy_generated", project.package_dir / "toy.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    assert mod.add(2, 3) == 5 and mod.clip(7, 0, 4) == 4
    with pytest.raises(ValueError, match="cannot clip"):
        mod.clip(1, 3, 2)
    # idempotent, and no temp files left behind
    assert tito(project, capsys, "export")[1].strip().endswith("unchanged")
    assert sorted(p.name for p in project.package_dir.iterdir()) == ["toy.py"]


def test_exported_file_passes_ruff(project, capsys):
    ruff = shutil.which("ruff") or str(REPO / ".venv" / "bin" / "ruff")
    if not Path(ruff).exists():
        pytest.skip("ruff not installed")
    assert tito(project, capsys, "export")[0] == 0
    res = subprocess.run(
        [ruff, "check", "--no-cache", "--config", str(REPO / "pyproject.toml"), "tinytorch/toy.py"],
        cwd=project.root,
        capture_output=True,
        text=True,
    )
    assert res.returncode == 0, res.stdout + res.stderr


def test_export_check_clean_then_drift_then_missing(project, capsys):
    assert tito(project, capsys, "export")[0] == 0
    rc, out, _ = tito(project, capsys, "export", "--check")
    assert rc == 0 and "tinytorch/toy.py: current" in out
    before = (project.package_dir / "toy.py").read_text()
    edit(project.root / SRC, "total = a + b", "total = b + a")
    rc, _, err = tito(project, capsys, "export", "--check")
    assert rc == 1
    assert err == (
        "tito: error: generated files out of date (run tito export): "
        f"tinytorch/toy.py differs from {SRC}\n"
    )
    assert (project.package_dir / "toy.py").read_text() == before  # --check writes nothing
    (project.package_dir / "toy.py").unlink()
    rc, _, err = tito(project, capsys, "export", "--check")
    assert rc == 1 and "tinytorch/toy.py is missing" in err


def test_export_check_reports_orphans(project, capsys):
    assert tito(project, capsys, "export")[0] == 0
    orphan = project.package_dir / "gone.py"
    orphan.write_text("# AUTOGENERATED! DO NOT EDIT! File to edit: modules/98_gone/gone_dev.py\n")
    rc, _, err = tito(project, capsys, "export", "--check")
    assert rc == 1 and "tinytorch/gone.py has no source" in err


def test_missing_export_is_an_error(project, capsys):
    edit(project.modules_dir / "99_toy" / "module.yaml", "  - clip\n", "  - clip\n  - mul\n")
    rc, _, err = tito(project, capsys, "export")
    assert rc == 2
    assert err.startswith("tito: error: modules/99_toy/module.yaml:") and "exports lists mul" in err
    assert not project.package_dir.exists()


def test_export_of_several_modules_is_all_or_nothing(project, capsys):
    other = project.modules_dir / "98_toy2"
    shutil.copytree(project.modules_dir / "99_toy", other)
    (other / "toy_dev.py").rename(other / "toy2_dev.py")
    edit(
        other / "module.yaml",
        "id: 99_toy\nnumber: 99\nname: toy",
        "id: 98_toy2\nnumber: 98\nname: toy2",
    )
    edit(other / "toy2_dev.py", "#| default_exp toy", "#| default_exp toy2")
    edit(project.root / SRC, '"points": 2, ', "")  # 99_toy broken, 98_toy2 fine
    rc, _, err = tito(project, capsys, "export")
    assert rc == 2 and "check_clip" in err
    assert not project.package_dir.exists()  # 98_toy2 was not written either


# ---- pieces of the later steps that need no kernel -----------------------------------------
def test_build_drops_directives_and_keeps_nbgrader_metadata(project, capsys):
    assert tito(project, capsys, "build")[0] == 0
    nb = json.loads((project.course_dir / "source" / "99_toy" / "toy.ipynb").read_text())
    sources = ["".join(c["source"]) for c in nb["cells"]]
    assert not any("#|" in s for s in sources)
    assert len(nb["cells"]) == 8  # the default_exp-only cell is gone
    ids = [c["id"] for c in nb["cells"]]
    assert {"add_impl", "check_add", "clip_impl", "check_clip"} <= set(ids)
    assert len(set(ids)) == len(ids)
    meta = {c["id"]: c["metadata"].get("nbgrader") for c in nb["cells"]}
    assert meta["check_add"]["points"] == 1 and meta["check_add"]["schema_version"] == 3
    assert "jupytext" not in nb["metadata"] and nb["metadata"]["kernelspec"]["name"] == "python3"


def test_release_leak_check_can_fail(project, capsys):
    """The checker flags the instructor notebook itself (so a pass means something)."""
    from tito.release import leaks_in_release

    assert tito(project, capsys, "build")[0] == 0
    src = parse_source(load_module(project.modules_dir / "99_toy"))
    problems = leaks_in_release(src, project.course_dir / "source" / "99_toy" / "toy.ipynb")
    text = " | ".join(problems)
    assert "delimiter 'BEGIN SOLUTION' left in" in text
    assert "solution text of cell 5 'add_impl' left in: 'total = a + b'" in text
    assert "hidden text of cell 6 'check_add'" in text


def test_secret_lines_exclude_text_students_see(project):
    src = parse_source(load_module(project.modules_dir / "99_toy"))
    assert set(src.secret_lines("solution")) == {
        "total = a + b",
        "return total",
        "bounded = min(max(x, lo), hi)",
        "return bounded",
    }
    assert set(src.secret_lines("hidden")) == {
        'assert add(-7, 7) == 0, "hidden: add must handle negatives"',
        'assert clip(math.pi, 0, 10) == math.pi, "hidden: values inside stay put"',
    }


def test_feedback_leak_check_reads_visible_html_text(project):
    from tito.feedback import leaks_in_feedback

    src = parse_source(load_module(project.modules_dir / "99_toy"))
    clean = "<style>.x{}</style><pre>assert add(1, 2) == 3</pre>"
    # pygments-style markup around the tokens and HTML escaping must not hide a leak
    leaky = (
        '<pre><span class="k">assert</span> <span>clip</span>(math.pi, 0, 10) =='
        " math.pi, &quot;hidden: values inside stay put&quot;</pre>"
    )
    assert leaks_in_feedback(src, clean) == []
    (problem,) = leaks_in_feedback(src, leaky)
    assert problem.startswith("hidden check of cell 9 'check_clip': 'assert clip(math.pi, 0, 10)")


def test_real_error_digs_the_cause_out_of_nbgrader_log():
    from tito.nbg import real_error

    log = "\n".join(
        [
            "[INFO] Autograding x",
            "[ERROR] There was an error processing assignment: /c/submitted/s/99_toy",
            "[ERROR] Traceback (most recent call last):",
            '  File "a.py", line 1, in f',
            "    raise DeadKernelError('Kernel died')",
            "nbclient.exceptions.DeadKernelError: Kernel died",
            "",
            "[ERROR] Please see the the above traceback for details",
        ]
    )
    assert real_error(log) == "nbclient.exceptions.DeadKernelError: Kernel died"
    generic_then_specific = "[ERROR] There was an error processing assignment: x\n[ERROR] No nb"
    assert real_error(generic_then_specific) == "No nb"
    assert real_error("", "Traceback...\nValueError: boom\n") == "ValueError: boom"


def test_a_broken_module_blocks_only_itself(project, capsys):
    other = project.modules_dir / "98_half"
    other.mkdir()
    (other / "module.yaml").write_text(
        (project.modules_dir / "99_toy" / "module.yaml")
        .read_text()
        .replace("id: 99_toy\nnumber: 99\nname: toy", "id: 98_half\nnumber: 98\nname: half")
    )
    assert tito(project, capsys, "export", "toy")[0] == 0  # 98_half has no source yet
    rc, _, err = tito(project, capsys, "export")  # all modules: the broken one counts
    assert rc == 2 and "modules/98_half/half_dev.py: missing module source" in err
    rc, _, err = tito(project, capsys, "build", "98")
    assert rc == 2 and "missing module source" in err


def test_project_errors_are_tito_errors(tmp_path, monkeypatch):
    monkeypatch.delenv("TITO_ROOT", raising=False)
    with pytest.raises(TitoError, match="unknown module"):
        resolve(["x"], [])


def test_scrubber_drops_only_traceback_lines_quoting_hidden_checks():
    from nbformat import v4

    from tito.nbgrader_ext import ScrubHiddenTestOutputs

    source = "\n".join(
        [
            "def check():",
            "    assert f(1) == 1",
            "    ### BEGIN HIDDEN TESTS",
            "    assert f(-1) == secret_value(",
            "    )",
            "    ### END HIDDEN TESTS",
            "check()",
        ]
    )
    frame = "\n".join(
        [
            "Cell \x1b[0;32mIn[3], line 4\x1b[0m, in \x1b[0;36mcheck\x1b[0;34m()\x1b[0m",
            "\x1b[1;32m      2\x1b[0m     \x1b[38;5;28;01massert\x1b[39;00m"
            " f(\x1b[38;5;241m1\x1b[39m) == 1",
            "\x1b[1;32m      3\x1b[0m     \x1b[38;5;66;03m### BEGIN HIDDEN TESTS\x1b[39;00m",
            "\x1b[0;32m----> 4\x1b[0m     \x1b[38;5;28;01massert\x1b[39;00m f(-1) == secret_value(",
            "\x1b[1;32m      5\x1b[0m     )",
            "\x1b[1;32m      7\x1b[0m check()",
        ]
    )
    cell = v4.new_code_cell(
        source,
        metadata={"nbgrader": {"grade": True, "grade_id": "c", "points": 1, "solution": False}},
        outputs=[
            v4.new_output("error", ename="AssertionError", evalue="", traceback=[frame]),
            v4.new_output("stream", name="stdout", text="assert f(-1) == secret_value(\nok\n"),
        ],
    )
    out, _ = ScrubHiddenTestOutputs().preprocess_cell(cell, {}, 0)
    tb = out.outputs[0].traceback[0]
    assert "secret_value" not in tb and "HIDDEN" not in tb
    assert "assert\x1b[39;00m f(\x1b[38;5;241m1" in tb and "check()" in tb  # visible lines stay
    assert tb.count("(line of a hidden check removed)") == 1  # 3 adjacent lines -> one marker
    assert out.outputs[1].text == "(line of a hidden check removed)\nok\n"


def test_grades_table_turns_when_cells_are_many():
    from tito.grade import CellScore, Row, Table, format_table

    spec = load_module(TOY)
    ids = [f"a_rather_long_grade_cell_name_{i}" for i in range(4)]
    rows = [
        Row("ann", True, {g: CellScore(g, 1.0, 1.0) for g in ids}),
        Row("bob", True, {g: CellScore(g, 0.0, 1.0) for g in ids}),
        Row("cy", False, {}, "notebook is not valid JSON: Expecting value at line 1 column 1"),
    ]
    lines = format_table(Table(spec, ids, dict.fromkeys(ids, 1.0), rows)).splitlines()
    assert lines[1].split() == ["cell", "points", "ann", "bob"]
    assert lines[2].split() == [ids[0], "1", "1", "0"]
    assert lines[-2].split() == ["total", "4", "4", "0"]
    assert lines[-1] == f"cy       could not be graded: {rows[2].reason}"
    assert max(map(len, lines[:-1])) <= 100


def test_usage_errors_are_one_line_too(project, capsys):
    rc, _, err = tito(project, capsys, "autograde")
    assert rc == 2
    assert (
        err
        == "tito: error: the following arguments are required: MODULE (see tito autograde --help)\n"
    )


def test_two_runs_on_one_course_directory_are_refused(project, capsys):
    from tito._io import exclusive

    with exclusive(project.course_dir):
        rc, _, err = tito(project, capsys, "build")
    assert rc == 2 and "another tito run (pid " in err and "is using" in err
    assert tito(project, capsys, "build")[0] == 0  # released again
