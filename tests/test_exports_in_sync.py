"""The generated package files (tinytorch/<name>.py) match their module sources."""

from __future__ import annotations

from pathlib import Path

import pytest

from tito.errors import TitoError
from tito.export import export
from tito.modules import discover_modules
from tito.project import Project

REPO = Path(__file__).resolve().parents[1]


def test_generated_files_match_sources():
    project = Project.at(REPO)
    if not list(project.modules_dir.glob("*/module.yaml")):
        pytest.skip("no modules/*/module.yaml yet")
    try:
        export(discover_modules(project.modules_dir), project, check=True, find_orphans=True)
    except TitoError as exc:
        pytest.fail(f"{exc} -- edit the _dev.py source and run `tito export`")
