"""Instructor edges of tito: what to run next, complete help, YAML errors with a line."""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path

import pytest

from tito import cli

REPO = Path(__file__).resolve().parents[1]
TOY = REPO / "tests" / "fixtures" / "modules" / "99_toy"
CONFIG = REPO / "nbgrader_config.py"


@pytest.fixture
def root(tmp_path):
    (tmp_path / "modules").mkdir()
    shutil.copytree(TOY, tmp_path / "modules" / "99_toy")
    return tmp_path


def run(root: Path, capsys, *argv: str):
    code = cli.main(["--root", str(root), "--nbgrader-config", str(CONFIG), *argv])
    out, err = capsys.readouterr()
    return code, out, err


def test_grades_on_an_empty_course_says_what_to_run(root, capsys):
    code, out, _ = run(root, capsys, "grades")
    assert code == 0
    assert "nothing graded yet" in out
    for step in ("tito release MODULE", "tito samples MODULE", "tito autograde MODULE"):
        assert step in out
    _, out, _ = run(root, capsys, "grades", "99_toy")
    assert "tito autograde 99_toy" in out


def _parsers(parser: argparse.ArgumentParser, path=("tito",)):
    """Every (command path, parser) of tito, nested subcommands included."""
    yield path, parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from _parsers(sub, (*path, name))


def test_help_texts_have_no_rest_markup():
    for path, parser in _parsers(cli.build_parser()):
        texts = [parser.description or "", parser.format_help()]
        for text in texts:
            for markup in ("``", ":func:", ":class:", ":meth:"):
                assert markup not in text, f"{' '.join(path)} --help shows {markup!r}"


def test_serve_help_shows_the_default_port(capsys):
    with pytest.raises(SystemExit):
        cli.build_parser().parse_args(["competition", "serve", "--help"])
    assert "default 8020" in capsys.readouterr().out


def test_readme_lists_every_command():
    readme = (REPO / "README.md").read_text()
    parsers = dict(_parsers(cli.build_parser()))
    for path in parsers:
        if len(path) == 2:
            assert f"tito {path[1]}" in readme, f"README does not list `tito {path[1]}`"
    actions = [p[2] for p in parsers if len(p) == 3 and p[1] == "competition"]
    assert actions, "competition has actions"
    line = next(ln for ln in readme.splitlines() if ln.startswith("tito competition"))
    for action in actions:
        assert action in line, f"README's competition line lacks {action!r}"


def test_module_yaml_syntax_error_names_the_line(root, capsys):
    path = root / "modules" / "99_toy" / "module.yaml"
    lines = path.read_text().splitlines()
    lines.insert(3, "title: [unclosed")
    path.write_text("\n".join(lines) + "\n")
    code, _, err = run(root, capsys, "export")
    assert code == 2
    assert "modules/99_toy/module.yaml:" in err and "invalid YAML" in err
    line = int(err.split("module.yaml:")[1].split(":")[0])
    assert 4 <= line <= 6, err


@pytest.mark.parametrize(
    ("old", "new", "key"),
    [("id: 99_toy", "id: 98_toy", "id:"), ("  - core", "  - 99_later", "prerequisites:")],
)
def test_module_yaml_value_errors_name_the_line(root, capsys, old, new, key):
    path = root / "modules" / "99_toy" / "module.yaml"
    text = path.read_text()
    path.write_text(text.replace(old, new))
    want = 1 + next(i for i, ln in enumerate(text.splitlines()) if ln.startswith(key))
    _, _, err = run(root, capsys, "export")
    assert f"module.yaml:{want}:" in err, err


def test_submission_yaml_error_names_the_line(tmp_path):
    from tinytorch.arena.package import read_package

    src = tmp_path / "entry"
    src.mkdir()
    (src / "submission.py").write_text("x = 1\n")
    (src / "submission.yaml").write_text("team: a\ncategory: [latency\ntags: []\n")
    pkg = read_package(src, tmp_path / "work")
    bad = [p for p in pkg.problems if "not valid YAML" in p]
    assert bad and "line 3" in bad[0], pkg.problems
