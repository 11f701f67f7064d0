"""``tito validate``: run the instructor notebook; every visible and hidden check must pass.

(``nbgrader validate`` exits 0 even when checks fail, so it is not used.)
"""

from __future__ import annotations

import shutil
import tempfile
import time
from collections.abc import Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from .build import ensure_built
from .errors import CheckFailed, one_line, where
from .modules import ModuleSpec
from .nbg import prepare_environment
from .project import Project
from .source import ModuleSource, parse_source

DEFAULT_TIMEOUT = 120  # seconds per cell, as nbgrader's Execute.timeout in nbgrader_config.py


@dataclass
class ValidateResult:
    spec: ModuleSpec
    notebook: Path
    cells_run: int
    seconds: float


def validate(
    modules: Sequence[ModuleSpec], project: Project, *, timeout: int = DEFAULT_TIMEOUT
) -> list[ValidateResult]:
    sources = [parse_source(spec) for spec in modules]
    return [validate_module(src, project, timeout=timeout) for src in sources]


def validate_module(
    src: ModuleSource, project: Project, *, timeout: int = DEFAULT_TIMEOUT
) -> ValidateResult:
    """Execute the instructor notebook in a temp copy of its directory, stopping at the
    first failing cell (CheckFailed naming the source line, cell and exception)."""
    from nbclient.exceptions import CellExecutionError, CellTimeoutError, DeadKernelError

    path = ensure_built(src, project)
    start = time.perf_counter()
    with notebook_client(path, timeout, prefix=f"tito-validate-{src.spec.id}-") as (client, nb):
        run = 0
        with client.setup_kernel():
            for index, cell in enumerate(nb.cells):
                if cell.cell_type != "code":
                    continue
                try:
                    client.execute_cell(cell, index)
                except CellExecutionError as exc:
                    problem = f"{exc.ename}: {exc.evalue}" if exc.ename else str(exc)
                    raise _failure(src, project, cell, problem) from None
                except CellTimeoutError:
                    raise _failure(src, project, cell, f"no result within {timeout}s") from None
                except DeadKernelError as exc:
                    raise _failure(src, project, cell, f"kernel died: {exc}") from None
                run += 1
    return ValidateResult(src.spec, path, run, time.perf_counter() - start)


@contextmanager
def notebook_client(
    path: Path, timeout: float, prefix: str = "tito-nb-", *, allow_errors: bool = False, nb=None
):
    """(client, nb) for running ``path`` as a student would: its folder copied to a temp dir
    (deleted afterwards), one kernel. ``nb``: the notebook already read (default: read from the
    copy). ``allow_errors``: go on after a failing cell (a timeout interrupts the cell). Start
    the kernel with ``client.setup_kernel()`` and run cells with ``client.execute_cell``."""
    import nbformat
    from nbclient import NotebookClient

    prepare_environment()
    with tempfile.TemporaryDirectory(prefix=prefix) as tmp:
        work = Path(tmp) / path.parent.name
        shutil.copytree(path.parent, work, ignore=shutil.ignore_patterns(".ipynb_checkpoints"))
        if nb is None:
            nb = nbformat.read(work / path.name, as_version=4)
        client = NotebookClient(
            nb,
            timeout=timeout,
            interrupt_on_timeout=allow_errors,
            kernel_name="python3",
            allow_errors=allow_errors,
            extra_arguments=["--IPKernelApp.log_level=ERROR"],
            resources={"metadata": {"path": str(work)}},
        )
        yield client, nb


def _failure(src: ModuleSource, project: Project, nb_cell, problem: str) -> CheckFailed:
    cell = src.cell_by_id(nb_cell.get("id", ""))
    loc = where(src.path) if cell is None else where(src.path, cell.line, cell.label)
    return CheckFailed(f"{loc}: validate failed: {one_line(problem)[:300]}")
