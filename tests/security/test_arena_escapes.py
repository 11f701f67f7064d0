"""Routes out of the arena runner, each tried by a package (tinytorch/arena, module 20).

Each package escapes the runner's audit hook for real (``_posixsubprocess.fork_exec``) and then
looks for the hidden test labels (the bundled digits file, through directory descriptors and a
walk of the file system), the leaderboard, other teams' code and ``.git``; tries to rewrite the
leaderboard; kills everything it can see. Malformed packages lie in their zip header or hold a
file and a folder of one name. All are evaluated in one batch through ``tito competition
evaluate``: each must end with its own reason, the batch completed, every other team intact.
"""

from __future__ import annotations

import shutil
import struct
import zipfile
from pathlib import Path

import pytest
import yaml
from _escape import ESCAPE, ESCAPE_PY

from tinytorch.arena import build_package
from tinytorch.arena.harness import DIGITS_FILE
from tinytorch.competition import CompetitionRules
from tito.arena import Arena
from tito.cli import main

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]
SMALL = """
from tinytorch.competition import CompetitionSubmission
{escape}

class Small(CompetitionSubmission):
    team = {team!r}
    tags = ("test",)
    description = "a security test package"
    hidden, max_epochs = 8, 1
{body}
"""
SPY = '''
    def load(self, folder):
        import os
        found = []
        fd = os.open("/", os.O_RDONLY | os.O_DIRECTORY)
        found.append("ROOT " + " ".join(sorted(os.listdir(fd))))
        os.close(fd)
        print("\\n".join(found))
        print(_sh("echo ESCAPED-RAN; wc -c < {digits}; ls {arena} 2>&1 | head -n 2; "
                  "ls {arena}/packages 2>&1 | head -n 1; ls {repo}/.git 2>&1 | head -n 1; "
                  "find / -xdev -name 'leaderboard.sqlite' 2>/dev/null | head -n 1; "
                  "find / -xdev -name '*.npz' -size +1k 2>/dev/null | head -n 3"))
        print(_py("import sqlite3\\ntry:\\n c = sqlite3.connect('file:{arena}/leaderboard.sqlite"
                  "?mode=rw', uri=True)\\n c.execute('update evaluations set acc_public = 0')"
                  "\\n c.commit(); print('ZEROED')\\nexcept Exception as e:\\n print('SQL', e)"))
        super().load(folder)
'''
KILLER = '''
    def load(self, folder):
        print(_py("import os, signal\\nfd = os.pidfd_open(1)\\nsignal.pidfd_send_signal(fd, 9)"))
        _sh("kill -9 -1")
        super().load(folder)
'''


def package(work: Path, team: str, body: str = "") -> Path:
    src = work / f"{team}-src"
    src.mkdir(parents=True)
    (src / "submission.py").write_text(
        SMALL.format(team=team, body=body, escape=ESCAPE + ESCAPE_PY)
    )
    return build_package(src, work / team, check=False)


def lying_zip(good: Path, dest: Path) -> Path:
    """A zip of ``good`` whose central directory declares 5 bytes for submission.py."""
    shutil.make_archive(str(dest.with_suffix("")), "zip", good)
    data = bytearray(dest.read_bytes())
    name = b"submission.py"
    at = data.find(b"PK\x01\x02")
    while at >= 0:
        n = struct.unpack_from("<H", data, at + 28)[0]
        if data[at + 46 : at + 46 + n] == name:
            struct.pack_into("<I", data, at + 24, 5)  # uncompressed size
        at = data.find(b"PK\x01\x02", at + 4)
    dest.write_bytes(bytes(data))
    return dest


def clash_zip(dest: Path) -> Path:
    meta = {"team": "clash", "category": "size", "tags": ["test"], "description": "clash"}
    with zipfile.ZipFile(dest, "w") as zf:
        zf.writestr("submission.yaml", yaml.safe_dump(meta))
        zf.writestr("submission.py", "x = 1\n")
        zf.writestr("weights", "a file\n")
        zf.writestr("weights/model.npz", "and a folder of the same name\n")
    return dest


@pytest.fixture(scope="module")
def arena_run(tmp_path_factory):
    work = tmp_path_factory.mktemp("arena-sec")
    root = work / "arena"
    arena = Arena(root, rules=CompetitionRules(daily_limit=20))
    first = package(work, "first")
    assert arena.evaluate(first).status == "ok"
    before = {r["team"]: dict(r) for r in arena.store.rows()}
    spy_src = SPY.format(digits=DIGITS_FILE, arena=root, repo=REPO)
    pkgs = [
        package(work, "spy", spy_src),
        package(work, "killer", KILLER),
        lying_zip(package(work, "liar"), work / "liar.zip"),
        clash_zip(work / "clash.zip"),
        package(work, "last"),
    ]
    code = main(["competition", "evaluate", "--arena", str(root), *map(str, pkgs)])
    rows = {r["team"]: dict(r) for r in Arena(root).store.rows()}
    return arena, before, rows, code


def test_the_batch_completes_and_other_teams_stay_intact(arena_run):
    arena, before, rows, _code = arena_run
    assert rows["first"] == before["first"]
    assert rows["last"]["status"] == "ok"
    assert set(rows) == {"first", "spy", "killer", "liar", "clash", "last"}
    assert arena.problems() == []


def test_labels_leaderboard_other_teams_and_git_are_out_of_sight(arena_run):
    _arena, _before, rows, _code = arena_run
    spy = rows["spy"]
    out = spy["output_head"]
    assert spy["status"] == "ok", spy["error"]
    assert "ESCAPED-RAN" in out  # the route was really taken
    assert "\n0\n" in out  # the digits file (test labels) reads as empty
    assert "leaderboard.sqlite" not in out and "first" not in out
    assert "No such file or directory" in out
    assert ".npz" not in out.split("ESCAPED-RAN", 1)[1].split("SQL", 1)[0]
    assert "ZEROED" not in out and "SQL unable to open database file" in out


def test_a_package_that_kills_everything_only_fails_itself(arena_run):
    _arena, _before, rows, _code = arena_run
    assert rows["killer"]["status"] == "crash" and "SIGKILL" in rows["killer"]["error"]


def test_malformed_zips_are_their_own_error(arena_run):
    _arena, _before, rows, _code = arena_run
    assert rows["liar"]["status"] == "malformed" and "submission.py" in rows["liar"]["error"]
    assert rows["clash"]["status"] == "malformed" and "weights" in rows["clash"]["error"]
