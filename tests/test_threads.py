"""BLAS thread pinning: tito's processes and children, notebook setup cells, the helper."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import tito.cli
from tinytorch.core import threads

ROOT = Path(__file__).resolve().parents[1]
MODULES = ("15_acceleration", "16_memory", "17_quantization", "18_compression", "19_autotuning",
           "20_competition")

# a child process reports the threads of the BLAS numpy loads and the variables it inherited
CHILD = (
    "import json, os, numpy; from threadpoolctl import threadpool_info; "
    "print(json.dumps({'blas': [p['num_threads'] for p in threadpool_info() "
    "if p['user_api'] == 'blas'], 'env': os.environ.get('OPENBLAS_NUM_THREADS')}))"
)


def clean_env(**extra) -> dict:
    """The environment of a plain shell: no BLAS thread variable set."""
    env = {k: v for k, v in os.environ.items() if k not in threads.BLAS_THREAD_VARS}
    return {**env, "MPLBACKEND": "Agg", **extra}


def run_after_tito_main(env: dict) -> dict:
    """Run tito's main (`tito list`) in a fresh process, then start a child from it: what does
    the child's BLAS use?"""
    code = textwrap.dedent(f"""
        import contextlib, io, subprocess, sys
        import tito.cli
        with contextlib.redirect_stdout(io.StringIO()):
            tito.cli.main(["--root", {str(ROOT)!r}, "list"])
        child = subprocess.run([sys.executable, "-c", {CHILD!r}], capture_output=True,
                               text=True, check=True)
        print(child.stdout)
    """)
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_children_of_tito_run_one_blas_thread_from_a_plain_shell():
    seen = run_after_tito_main(clean_env())
    assert seen["env"] == "1", "tito did not set OPENBLAS_NUM_THREADS for its children"
    assert seen["blas"] and all(n == 1 for n in seen["blas"]), seen


def test_an_explicit_user_setting_wins_over_tito_s_pin():
    seen = run_after_tito_main(clean_env(OPENBLAS_NUM_THREADS="2"))
    assert seen["env"] == "2"
    assert seen["blas"] == [2], seen


def test_tito_main_sets_the_variables_before_numpy_loads():
    code = ("import sys, tito.cli; assert 'numpy' not in sys.modules, 'tito.cli loads numpy'; "
            "print(sorted(tito.cli.pin_blas_env()))")
    out = subprocess.run([sys.executable, "-c", code], env=clean_env(), capture_output=True,
                         text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == str(sorted(threads.BLAS_THREAD_VARS))


def test_tito_and_tinytorch_name_the_same_thread_variables():
    assert tito.cli.BLAS_THREAD_VARS == threads.BLAS_THREAD_VARS


def test_pin_blas_env_sets_all_or_nothing():
    env: dict = {}
    assert threads.pin_blas_env(1, env) == dict.fromkeys(threads.BLAS_THREAD_VARS, "1")
    assert env == dict.fromkeys(threads.BLAS_THREAD_VARS, "1")
    user = {"OMP_NUM_THREADS": "4"}
    assert threads.pin_blas_env(1, user) == {} and user == {"OMP_NUM_THREADS": "4"}


def test_threadpoolctl_is_a_declared_runtime_dependency():
    tomllib = pytest.importorskip("tomllib")  # Python 3.11+
    deps = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    assert any(re.match(r"threadpoolctl\b", d) for d in deps), deps
    import threadpoolctl  # noqa: F401  (installed by the project's own files)


@pytest.mark.parametrize("module", MODULES)
def test_every_module_setup_cell_pins_and_says_so(module):
    """The first code cell that runs (not exported) after the imports pins and prints."""
    name = module.split("_", 1)[1]
    source = (ROOT / "modules" / module / f"{name}_dev.py").read_text()
    cells = source.split("\n# %%")
    setup = [c for c in cells if "pin_blas_threads" in c]
    assert setup, f"{module}: no cell calls pin_blas_threads"
    first = setup[0]
    assert "#| export" not in first and "solution" not in first.splitlines()[0]
    assert re.search(r"print\(pin_blas_threads\(1\)\)", first), first
    index = cells.index(first)
    graded = [i for i, c in enumerate(cells) if '"grade": true' in c.splitlines()[0]]
    assert graded and index < graded[0], f"{module}: the pin comes after a graded cell"


def test_pin_in_a_fresh_kernel_limits_the_loaded_blas():
    code = ("import numpy; from tinytorch.core.threads import pin_blas_threads, "
            "blas_thread_counts; r = pin_blas_threads(1); print(r.ok, blas_thread_counts(), r)")
    out = subprocess.run([sys.executable, "-c", code], env=clean_env(), capture_output=True,
                         text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    ok, rest = out.stdout.split(" ", 1)
    assert ok == "True" and re.search(r"\{'\w+': 1(, '\w+': 1)*\}", rest), out.stdout
    assert "BLAS limited to 1 thread" in out.stdout


def test_blas_threads_restores_the_previous_count():
    before = threads.blas_thread_counts()
    with threads.blas_threads(2) as pin:
        assert pin.ok and set(threads.blas_thread_counts().values()) == {2}
        assert all(after == 2 for _, _, after in pin.libraries)
    assert threads.blas_thread_counts() == before


GUARD = """
import sys, numpy
from tinytorch.core.threads import blas_threads, pin_blas_threads
{before}
def hook(event, args):
    if event.startswith("ctypes."):
        raise PermissionError("tito: ctypes is not allowed while grading")
sys.addaudithook(hook)
again = pin_blas_threads(1)
print(again.ok, "|", again)
with blas_threads(2) as pin:
    print(pin.ok, "|", pin)
"""


def run_guarded(before: str) -> list[str]:
    out = subprocess.run([sys.executable, "-c", GUARD.format(before=before)], env=clean_env(),
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    return out.stdout.strip().splitlines()


def test_a_pin_made_before_the_grading_guard_holds_in_the_setup_cell():
    """The autograder's worker pins before its guard (tito/workers.py); the setup cell's pin
    then needs no native call."""
    first, _ = run_guarded("assert pin_blas_threads(1).ok  # the worker, before its guard")
    assert first == "True | BLAS limited to 1 thread (already pinned in this process)"


def test_where_native_code_is_refused_the_pin_reports_instead_of_raising():
    first, second = run_guarded("")
    for line in (first, second):
        assert line.startswith("False | BLAS threads not changed ("), line


@pytest.mark.parametrize("bad", [0, -1, 1.5, "1", True, None])
def test_a_bad_thread_count_is_named(bad):
    with pytest.raises(ValueError, match=re.escape(repr(bad))):
        threads.pin_blas_threads(bad)
    with pytest.raises(ValueError, match="whole number of threads"):
        with threads.blas_threads(bad):
            pass


@pytest.mark.slow
def test_a_notebook_kernel_started_by_tito_validate_runs_one_blas_thread(tmp_path):
    """The real path: `tito validate` from a plain shell starts a Jupyter kernel; a cell in it
    checks the BLAS numpy loaded (before any pin of its own) and the inherited variable."""
    pytest.importorskip("nbclient")
    root = tmp_path / "proj"
    shutil.copytree(ROOT / "tests" / "fixtures" / "modules" / "99_toy", root / "modules" / "99_toy")
    source = root / "modules" / "99_toy" / "toy_dev.py"
    source.write_text(source.read_text() + textwrap.dedent("""

        # %%
        import os

        import numpy
        from threadpoolctl import threadpool_info

        _blas = [p["num_threads"] for p in threadpool_info() if p["user_api"] == "blas"]
        assert os.environ.get("OPENBLAS_NUM_THREADS") == "1", os.environ.get("OPENBLAS_NUM_THREADS")
        assert _blas and set(_blas) == {1}, _blas
    """))
    out = subprocess.run(
        [sys.executable, "-m", "tito", "--root", str(root), "--nbgrader-config",
         str(ROOT / "nbgrader_config.py"), "validate", "99_toy"],
        env=clean_env(), capture_output=True, text=True, timeout=300,
    )
    assert out.returncode == 0, out.stderr + out.stdout
    assert "99_toy: 6 code cells passed" in out.stdout, out.stdout
