"""bench/notebooks.py (the course's time budget) runs in --quick mode on the toy module."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_bench_quick_runs_and_writes_valid_json(tmp_path):
    out = tmp_path / "notebooks.json"
    proc = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "notebooks.py"), "--quick", "--json", str(out)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    data = json.loads(out.read_text())
    assert data["bench"] == "notebooks" and data["quick"] is True
    toy = data["results"]["modules"]["99_toy"]
    assert toy["code_cells"] == len(toy["cells"]) > 0
    assert 0 < toy["kernel_startup_s"] < toy["notebook_s"]
    assert toy["grading"]["graded"] and toy["grading"]["score"] == toy["grading"]["max_score"]
    names = {t["name"] for t in data["targets"]}
    assert "99_toy solved notebook, cold" in names
    assert any(n.startswith("99_toy grading a notebook at class scale") for n in names)
    assert toy["grading"]["class_scores_full"]
    assert "Solved notebooks, cold" in proc.stdout
