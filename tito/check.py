"""``tito check MODULE [NOTEBOOK]``: the student's own check, before submitting (okpy's habit).

Runs the student's notebook top to bottom in a fresh kernel (a temporary copy: the file is not
touched), lets every cell run even after an error, and prints one row per check cell of the
notebook: passing, failing with its message, or not started. Only what the notebook holds is
needed — its nbgrader metadata names the exercises (solution cells) and the checks (grade
cells) — so it works on a released notebook without the course's instructor files.

Exercises are numbered from 1 in notebook order, as the notebooks' messages name them
("complete exercise 3, `profile_memory`, first").
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass, field
from pathlib import Path

from .errors import TitoError, one_line

PASSING, FAILING, NOT_STARTED, NOT_RUN = "passing", "failing", "not started", "not run"
STUB = "raise NotImplementedError"  # nbgrader's code stub (nbgrader_config.py)
MESSAGE_WIDTH = 200


@dataclass
class Exercise:
    number: int  # 1-based, notebook order
    grade_id: str  # the solution cell's grade_id (usually the function to write)
    index: int  # cell index in the notebook
    stub_left: bool  # the released stub is still in the cell


@dataclass
class CheckRow:
    grade_id: str  # the check cell's grade_id
    points: float
    exercises: list[Exercise]  # the exercises written since the previous check
    status: str = NOT_RUN
    message: str = ""


@dataclass
class CheckReport:
    notebook: Path
    rows: list[CheckRow]
    exercises: list[Exercise]
    other_errors: list[tuple[int, str]] = field(default_factory=list)  # (cell number, error)
    first_lines: dict[int, str] = field(default_factory=dict)  # cell number -> its first line
    seconds: float = 0.0

    @property
    def points(self) -> tuple[float, float]:
        got = sum(r.points for r in self.rows if r.status == PASSING)
        return got, sum(r.points for r in self.rows)

    @property
    def ok(self) -> bool:
        return all(r.status == PASSING for r in self.rows)


def _meta(cell) -> dict:
    return (cell.get("metadata") or {}).get("nbgrader") or {}


def plan(nb) -> tuple[list[Exercise], list[CheckRow]]:
    """Exercises (solution cells) and checks (grade cells) of a notebook, each check with the
    exercises written since the previous check (the ones it tests)."""
    exercises: list[Exercise] = []
    rows: list[CheckRow] = []
    pending: list[Exercise] = []
    for index, cell in enumerate(nb.cells):
        meta = _meta(cell)
        if cell.cell_type != "code":
            continue
        if meta.get("solution") and not meta.get("grade"):
            ex = Exercise(
                len(exercises) + 1,
                meta.get("grade_id", f"cell {index + 1}"),
                index,
                STUB in cell.source,
            )
            exercises.append(ex)
            pending.append(ex)
        elif meta.get("grade"):
            owners = pending or exercises[-1:]
            rows.append(
                CheckRow(
                    meta.get("grade_id", f"cell {index + 1}"),
                    float(meta.get("points", 0) or 0),
                    list(owners),
                )
            )
            pending = []
    return exercises, rows


def _error_of(cell) -> tuple[str, str] | None:
    for out in cell.get("outputs", []):
        if out.get("output_type") == "error":
            return out.get("ename", ""), out.get("evalue", "")
    return None


_ANSI = re.compile(r"\x1b\[[0-9;]*m")
_CELL_IN = re.compile(r"Cell In\[(\d+)\]")


def _raised_in(cell, by_count: dict[int, int]) -> int | None:
    """Index of the notebook cell whose code raised (the innermost ``Cell In[n]`` frame of
    the traceback IPython printed), if it is one of this run's cells."""
    for out in cell.get("outputs", []):
        if out.get("output_type") == "error":
            text = _ANSI.sub("", "\n".join(out.get("traceback", [])))
            counts = _CELL_IN.findall(text)
            if counts:
                return by_count.get(int(counts[-1]))
    return None


def find_notebook(module: str, notebook: str | None, project=None) -> Path:
    """The notebook to check: NOTEBOOK if given; else <name>.ipynb in the current directory,
    else the course's released copy (course/release/<id>/<name>.ipynb)."""
    if notebook:
        path = Path(notebook)
        if path.is_dir():
            found = sorted(path.glob("*.ipynb"))
            if len(found) != 1:
                raise TitoError(f"{path}: expected one .ipynb in it, found {len(found)}")
            path = found[0]
        if not path.exists():
            raise TitoError(f"{path}: no such notebook")
        return path
    if module.endswith(".ipynb"):
        return find_notebook(module, module)
    candidates: list[Path] = []
    spec = None
    if project is not None:
        from .modules import discover_modules, resolve

        try:
            spec = resolve([module], discover_modules(project.modules_dir))[0]
        except TitoError:
            spec = None
    if spec is not None:
        candidates += [Path.cwd() / spec.notebook_name, Path.cwd() / spec.id / spec.notebook_name]
        candidates.append(project.step_dir("release", spec.id) / spec.notebook_name)
    else:  # a student without the course sources: MODULE is the notebook's name
        name = module.split("_", 1)[-1] if module[:2].isdigit() else module
        candidates += [Path.cwd() / f"{name}.ipynb", Path.cwd() / module / f"{name}.ipynb"]
    for path in candidates:
        if path.exists():
            return path
    raise TitoError(
        f"no notebook for module {module!r} (looked at "
        + ", ".join(str(p) for p in candidates)
        + "); give its path: tito check MODULE path/to/notebook.ipynb"
    )


def check_notebook(path: Path | str, *, timeout: float = 120) -> CheckReport:
    """Run a copy of the notebook at ``path`` with errors allowed; a row per check."""
    import nbformat
    from nbclient.exceptions import CellTimeoutError, DeadKernelError

    from .validate import notebook_client

    path = Path(path)
    try:
        nb = nbformat.read(path, as_version=4)
    except Exception as exc:  # not JSON, not a notebook
        raise TitoError(f"{path}: not a readable notebook: {one_line(exc)}") from None
    exercises, rows = plan(nb)
    if not rows:
        raise TitoError(f"{path}: no check cells (nbgrader grade cells) in this notebook")
    start = time.perf_counter()
    errors: dict[int, tuple[str, str]] = {}
    died: str | None = None
    with notebook_client(path, timeout, "tito-check-", allow_errors=True, nb=nb) as (client, _):
        with client.setup_kernel():
            for index, cell in enumerate(nb.cells):
                if cell.cell_type != "code":
                    continue
                if died:
                    errors[index] = ("NotRun", died)
                    continue
                try:
                    client.execute_cell(cell, index)
                except CellTimeoutError:
                    errors[index] = ("Timeout", f"no result within {timeout:g} s")
                    continue
                except DeadKernelError as exc:
                    died = f"the kernel died in cell {index + 1}: {one_line(exc)}"
                    errors[index] = ("DeadKernel", died)
                    continue
                err = _error_of(cell)
                if err:
                    errors[index] = err
    by_id = {_meta(c).get("grade_id"): i for i, c in enumerate(nb.cells) if _meta(c)}
    for row in rows:
        err = errors.get(by_id.get(row.grade_id, -1))
        owners_failed = [
            ex
            for ex in row.exercises
            if errors.get(ex.index, ("",))[0] not in ("", "NotImplementedError")
        ]
        if err is None and not owners_failed:
            row.status = PASSING
        elif err is not None and err[0] == "NotRun":
            row.status, row.message = NOT_RUN, err[1]
        elif (err is not None and err[0] == "NotImplementedError") or (
            err is not None and any(ex.stub_left for ex in row.exercises)
        ):
            todo = ", ".join(f"exercise {ex.number}, `{ex.grade_id}`" for ex in row.exercises)
            row.status, row.message = NOT_STARTED, f"write {todo}" if todo else ""
        else:
            if err is None:  # the check passed but the exercise's own cell raised
                ex = owners_failed[0]
                err = errors[ex.index]
                prefix = f"exercise {ex.number}'s cell: "
            else:
                prefix = ""
            row.status = FAILING
            row.message = prefix + one_line(f"{err[0]}: {err[1]}" if err[0] else err[1])
    graded = {by_id.get(r.grade_id) for r in rows} | {ex.index for ex in exercises}
    by_count = {
        c.get("execution_count"): i
        for i, c in enumerate(nb.cells)
        if c.cell_type == "code" and c.get("execution_count")
    }
    by_index = {ex.index: ex for ex in exercises}
    other = []
    for i, e in sorted(errors.items()):
        if i in graded or e[0] == "NotRun":
            continue
        text = one_line(f"{e[0]}: {e[1]}")
        ex = by_index.get(_raised_in(nb.cells[i], by_count))
        if e[0] == "NotImplementedError" and ex is not None:
            text = f"NotImplementedError: calls exercise {ex.number}, `{ex.grade_id}` (not written)"
        other.append((i + 1, text))
    first = {n: _first_line(nb.cells[n - 1].source) for n, _ in other}
    return CheckReport(path, rows, exercises, other, first, time.perf_counter() - start)


def _first_line(source: str, width: int = 40) -> str:
    """The cell's first line of code (what a student can find it by)."""
    for line in source.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            return line if len(line) <= width else line[: width - 3] + "..."
    return ""


def format_report(report: CheckReport) -> str:
    rows = [["#", "check", "exercise", "points", "status"]]
    for r in report.rows:
        ex = ", ".join(f"{e.number} {e.grade_id}" for e in r.exercises) or "-"
        rows.append(["", r.grade_id, ex, f"{r.points:g}", r.status])
    for k, row in enumerate(rows[1:], 1):
        row[0] = str(k)
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = []
    for k, row in enumerate(rows):
        lines.append("  ".join(v.ljust(w) for v, w in zip(row, widths)).rstrip())
        if k == 0:
            lines.append("  ".join("-" * w for w in widths))
        elif report.rows[k - 1].message:
            lines.append(" " * (widths[0] + 2) + "-> " + report.rows[k - 1].message[:MESSAGE_WIDTH])
    got, total = report.points
    counts = {s: sum(r.status == s for r in report.rows) for s in (PASSING, FAILING, NOT_STARTED)}
    lines.append("")
    lines.append(
        f"{counts[PASSING]} passing, {counts[FAILING]} failing, {counts[NOT_STARTED]} not "
        f"started: {got:g}/{total:g} points from the visible checks ({report.seconds:.1f} s)"
    )

    def cell(n: int) -> str:
        first = report.first_lines.get(n)
        return f"cell {n} ({first})" if first else f"cell {n}"

    waiting: dict[str, list[int]] = {}  # exercise -> cells that call it unwritten
    for n, text in report.other_errors:
        m = re.search(r"calls (exercise \d+, `[^`]+`)", text)
        if text.startswith("NotImplementedError"):
            waiting.setdefault(m.group(1) if m else "an exercise", []).append(n)
    for what, cells in waiting.items():
        lines.append(f"{what} is not written yet; these cells call it:")
        lines.extend(f"  {cell(n)}" for n in cells)
    stubs = {n for cells in waiting.values() for n in cells}
    other = [(n, t) for n, t in report.other_errors if n not in stubs]
    if other:
        lines.append("other cells that raised:")
        for number, text in other:
            lines.append(f"  {cell(number)}: {text[:MESSAGE_WIDTH]}")
    lines.append("Hidden checks run at grading time and may find more.")
    return "\n".join(lines)


def check(
    module: str, notebook: str | None = None, project=None, *, timeout: float = 120
) -> CheckReport:
    """Find the student's notebook and run its visible checks."""
    return check_notebook(find_notebook(module, notebook, project), timeout=timeout)
