"""No boundary, no grading; and a feedback page is withheld only for text that could come from
nowhere but a hidden cell."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest

from tinytorch.arena import boundary
from tito.cli import main
from tito.errors import TitoError
from tito.feedback import boilerplate, leaks_in_feedback
from tito.grade import require_boundary


@pytest.fixture
def no_namespaces(monkeypatch):
    """A bwrap that cannot create namespaces (as in some containers)."""
    monkeypatch.setenv(boundary.ENV_BWRAP, "/bin/false")
    boundary.probe.cache_clear()
    yield
    monkeypatch.delenv(boundary.ENV_BWRAP)
    boundary.probe.cache_clear()


def test_autograde_refuses_without_namespaces_and_says_how(no_namespaces):
    with pytest.raises(TitoError) as info:
        require_boundary(False, "tito autograde")
    text = str(info.value)
    assert "refusing to run tito autograde without an OS boundary" in text
    assert "apt-get install bubblewrap" in text and "unprivileged_userns_clone" in text
    assert "--no-sandbox" in text
    assert require_boundary(True) is False  # the explicit opt-out (trusted code only)


def test_competition_evaluate_refuses_without_namespaces(no_namespaces, tmp_path, capsys):
    code = main(["competition", "evaluate", "--arena", str(tmp_path / "a"), str(tmp_path)])
    err = capsys.readouterr().err
    assert code != 0 and "refusing to run tito competition evaluate" in err
    assert not (tmp_path / "a").exists() or not any((tmp_path / "a").iterdir())


class _Src:
    """A module source with three hidden lines."""

    cell = SimpleNamespace(label="cell 6 'check_dot'")
    lines = (
        "except ValueError:",
        "for i in range(3):",
        "assert close(dot(np.ones(5), np.arange(5)), 10.0), 'hidden: longer vectors'",
    )

    def secret_lines(self, kind):
        assert kind == "hidden"
        return {line: self.cell for line in self.lines}


def test_boilerplate_is_what_anyone_writes():
    assert boilerplate("except ValueError:") and boilerplate("for i in range(3):")
    assert boilerplate("return None") and not boilerplate("assert close(dot(a, b), 11.0)")


def test_a_students_own_line_equal_to_a_hidden_line_is_not_a_leak():
    page = "<pre>try:\n    x = int(s)\nexcept ValueError:\n    pass\nfor i in range(3):</pre>"
    assert leaks_in_feedback(_Src(), page) == []


def test_hidden_text_only_the_hidden_cell_holds_is_a_leak():
    page = "<pre>assert close(dot(np.ones(5), np.arange(5)), 10.0), 'hidden: longer vectors'</pre>"
    (problem,) = leaks_in_feedback(_Src(), page)
    assert problem.startswith("hidden check of cell 6 'check_dot'")
    # ... unless it is also in the released notebook or the student's own submission
    public = {"assert close(dot(np.ones(5), np.arange(5)), 10.0), 'hidden: longer vectors'"}
    assert leaks_in_feedback(_Src(), page, public) == []


def test_the_package_seam_stubs_hidden_modules_and_data(tmp_path):
    """``boundary.package_view`` is the one place that decides what of a package (the
    project's or a student build) a sandboxed process sees."""
    pkg = tmp_path / "tinytorch"
    (pkg / "__pycache__").mkdir(parents=True)
    (pkg / "datasets").mkdir()
    for name in ("__init__.py", "vec.py", "other.py", "datasets/digits.npz"):
        (pkg / name).write_text("x")
    mounts = {(m.kind, m.dest) for m in boundary.package_view(str(pkg), ["vec"], HIDDEN)}
    real = str(pkg.resolve())
    assert ("ro", real) in mounts
    assert ("stub", f"{real}/vec.py") in mounts
    assert ("stub", f"{real}/datasets/digits.npz") in mounts
    assert ("hide", f"{real}/__pycache__") in mounts  # compiled copies of the reference
    assert not any(d.endswith("other.py") for _k, d in mounts)
    mounts = tuple(boundary.package_view(str(pkg), ["vec"]))
    view = boundary.View(work="/box", work_mb=8, mounts=mounts)
    argv = boundary.bwrap_argv(view, ["/bin/true"])
    assert "--unshare-net" in argv and "--unshare-pid" in argv and "--die-with-parent" in argv
    assert argv[argv.index("--tmpfs", argv.index("/tmp")) + 1] == "/box"


HIDDEN = ("datasets/digits.npz",)


def test_package_dirs_skip_paths_that_do_not_exist(tmp_path):
    """A --no-sandbox template in the same process appends the project's package dir to the
    package's path even when it does not exist; bwrap cannot bind a missing path."""
    import tinytorch
    from tito.boundary import package_dirs

    missing = str(tmp_path / "gone" / "tinytorch")
    tinytorch.__path__.append(missing)  # in place, as Template._extend_package does
    try:
        dirs = package_dirs(missing)
    finally:
        tinytorch.__path__.remove(missing)
    assert missing not in dirs and dirs and all(Path(d).is_dir() for d in dirs)
