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
import importlib.util
import io
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from tito.modules import load_module
from tito.source import HIDDEN_BEGIN, HIDDEN_END, Cell, parse_source
from tito.trust import DEMO_TAG

REPO = Path(__file__).resolve().parents[2]
LISTS = Path(__file__).resolve().parent  # wrong_NN_name.py: one list per module


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


def listed_modules() -> list[str]:
    """The modules with a list of wrong versions, in curriculum order."""
    return sorted(p.stem.removeprefix("wrong_") for p in LISTS.glob("wrong_*.py"))


def wrong_versions(module_id: str) -> list[WrongVersion]:
    """The list `WRONG` of tests/wrong_versions/wrong_<module_id>.py."""
    path = LISTS / f"wrong_{module_id}.py"
    spec = importlib.util.spec_from_file_location(f"wrong_{module_id}", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return list(mod.WRONG)


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


class LibraryState:
    """The module-level state of the loaded ``tinytorch`` modules (bindings, the contents of
    their dicts/lists/sets such as the backend registry, context variables): a notebook run
    changes it (``register_backend(...)`` registers into the core), ``restore`` puts it back so
    one run cannot change the next or the tests that follow."""

    def __init__(self) -> None:
        import contextvars
        import sys

        self.saved = []
        for name, mod in list(sys.modules.items()):
            if not (name == "tinytorch" or name.startswith("tinytorch.")) or mod is None:
                continue
            binds = dict(vars(mod))
            contents = {}
            for key, value in binds.items():
                if type(value) in (dict, list, set):
                    contents[key] = type(value)(value)
                elif isinstance(value, contextvars.ContextVar):
                    contents[key] = value.get(_UNSET)
            self.saved.append((mod, binds, contents))

    def restore(self) -> None:
        import contextvars

        for mod, binds, contents in self.saved:
            space = vars(mod)
            for key in [k for k in space if k not in binds]:
                del space[key]
            space.update(binds)
            for key, old in contents.items():
                value = binds[key]
                if isinstance(value, dict):
                    value.clear()
                    value.update(old)
                elif isinstance(value, list):
                    value[:] = old
                elif isinstance(value, set):
                    value.clear()
                    value.update(old)
                elif isinstance(value, contextvars.ContextVar) and old is not _UNSET:
                    value.set(old)


_UNSET = object()


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
    state = LibraryState()
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
            state.restore()
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
