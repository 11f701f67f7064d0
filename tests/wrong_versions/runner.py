"""Run a module's cells with one solution replaced by a wrong version; report what caught it.

Cells run in order in a fresh namespace in this process, as grading runs them, up to the end of
the replaced exercise's own checks (the next exercise after a grade cell): markdown and
``demo``-tagged cells are skipped (grading never runs those), solution cells run the reference
except the replaced one, and each grade cell runs in two parts: its visible checks (what the
student sees in their notebook) and its hidden probe, judged locally (``tito.probe`` local mode:
fresh inputs from the module's judge file, the judge raising AssertionError).
"""

from __future__ import annotations

import contextlib
import io
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from tito.modules import load_module
from tito.source import HIDDEN_BEGIN, HIDDEN_END, Cell, parse_source
from tito.trust import DEMO_TAG

REPO = Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class WrongVersion:
    """A plausible mistake: ``source`` replaces the whole solution cell ``exercise``."""

    exercise: str  # grade_id of the solution cell it replaces
    name: str  # the mistake in a few words ("calls BLAS", "no T^2")
    source: str


@dataclass
class Outcome:
    visible: dict[str, str] = field(default_factory=dict)  # cell -> message (visible failures)
    hidden: dict[str, str] = field(default_factory=dict)  # grade cell -> judge's message

    def summary(self) -> str:
        lines = [f"  visible {k}: {v[:160]}" for k, v in self.visible.items()]
        lines += [f"  hidden  {k}: {v[:160]}" for k, v in self.hidden.items()]
        return "\n".join(lines) or "  (nothing failed)"


def split_grade_cell(cell: Cell) -> tuple[str, str]:
    """(visible checks, hidden part) of a grade cell's body."""
    visible, hidden, inside = [], [], False
    for line in cell.body_lines:
        if HIDDEN_BEGIN in line:
            inside = True
            continue
        if HIDDEN_END in line:
            inside = False
            continue
        (hidden if inside else visible).append(line)
    return "\n".join(visible), "\n".join(hidden)


def module_cells(module_id: str) -> list[Cell]:
    spec = load_module(REPO / "modules" / module_id)
    return parse_source(spec).cells


def run(module_id: str, wrong: WrongVersion | None, cells: list[Cell] | None = None) -> Outcome:
    """Run ``module_id``'s cells with ``wrong`` in place of its exercise (None: the reference)."""
    cells = cells if cells is not None else module_cells(module_id)
    if wrong is not None and not any(c.grade_id == wrong.exercise and c.is_solution
                                     for c in cells):
        raise ValueError(f"{module_id} has no solution cell {wrong.exercise!r}")
    out = Outcome()
    ns: dict = {"__name__": "__main__"}
    old_cwd = os.getcwd()
    old_root = os.environ.get("TITO_ROOT")
    os.environ["TITO_ROOT"] = str(REPO)
    sink = io.StringIO()
    with tempfile.TemporaryDirectory(prefix=f"wrong-{module_id}-") as tmp:
        os.chdir(tmp)
        try:
            with contextlib.redirect_stdout(sink), contextlib.redirect_stderr(sink):
                reached, graded_since = wrong is None, False
                for cell in cells:
                    if cell.cell_type != "code" or DEMO_TAG in (cell.metadata.get("tags") or ()):
                        continue
                    label = cell.grade_id or f"cell {cell.index + 1}"
                    if cell.is_solution and reached and graded_since and wrong is not None:
                        break  # past the exercise's own checks: the rest cannot use it sooner
                    if cell.is_solution and wrong is not None and cell.grade_id == wrong.exercise:
                        reached = True
                    if cell.is_grade and reached:
                        graded_since = True
                    if cell.is_solution:
                        src = wrong.source if wrong and cell.grade_id == wrong.exercise else None
                        _exec(src if src is not None else cell.body, label, ns, out.visible)
                    elif cell.is_grade:
                        visible, hidden = split_grade_cell(cell)
                        _exec(visible, label, ns, out.visible)
                        _exec(hidden, label, ns, out.hidden)
                    else:
                        _exec(cell.body, label, ns, out.visible)
        finally:
            os.chdir(old_cwd)
            if old_root is None:
                os.environ.pop("TITO_ROOT", None)
            else:
                os.environ["TITO_ROOT"] = old_root
            try:
                import matplotlib.pyplot as plt

                plt.close("all")
            except ImportError:
                pass
    return out


def _exec(source: str, label: str, ns: dict, failures: dict[str, str]) -> None:
    if not source.strip():
        return
    try:
        exec(compile(source, f"<{label}>", "exec"), ns)
    except Exception as exc:  # noqa: BLE001 -- any failure is what we are looking for
        failures.setdefault(label, f"{type(exc).__name__}: {exc}")
