"""nbgrader configuration of the course (loaded by `tito` and by `nbgrader` run from here).

`tito` loads this file for every nbgrader step and overrides CourseDirectory.root when it is
pointed at another course directory (the tests use a temporary one).
"""

import os

from nbconvert.preprocessors import CSSHTMLHeaderPreprocessor
from nbgrader.preprocessors import ClearHiddenTests, GetGrades

from tito.nbgrader_ext import ScrubHiddenTestOutputs

c = get_config()  # noqa: F821 -- injected by traitlets' config loader

HERE = os.path.dirname(os.path.abspath(__file__))

# course/ beside this file, absolute so nbgrader works from any current directory
c.CourseDirectory.root = os.path.join(HERE, "course")
c.CourseDirectory.course_id = "tinytorch-optimization"

# Per-cell execution limit during autograde (seconds). Module cells run small benchmarks;
# a cell stuck longer than this is interrupted and the rest of the notebook still runs.
c.Execute.timeout = 120
c.Execute.interrupt_on_timeout = True
# The kernel's own log (not the notebook's output) would print a warning per kernel about
# unencrypted localhost TCP into the terminal; only its errors are worth seeing.
c.Execute.extra_arguments = ["--IPKernelApp.log_level=ERROR"]

# tito autograde (see docs/grading.md): besides the per-cell limit above, a hard wall-time
# limit per notebook (all its cells, seconds; the grading process is killed) and the memory a
# grading process may add to what it starts with (MB; RLIMIT_AS). `tito autograde` flags
# --cell-timeout / --notebook-timeout / --memory-mb override these.
c.TitoAutograde.notebook_timeout = 900
c.TitoAutograde.memory_mb = 2048

# A student who deletes a grade cell gets it back (and is graded on it) instead of silently
# losing the points that cell was worth.
c.OverwriteCells.add_missing_cells = True

# nbgrader's defaults, spelled out: what replaces a solution region in the student notebook.
c.ClearSolutions.begin_solution_delimeter = "BEGIN SOLUTION"
c.ClearSolutions.end_solution_delimeter = "END SOLUTION"
c.ClearSolutions.code_stub = {"python": "# YOUR CODE HERE\nraise NotImplementedError()"}
c.ClearSolutions.enforce_metadata = True
c.ClearHiddenTests.begin_test_delimeter = "BEGIN HIDDEN TESTS"
c.ClearHiddenTests.end_test_delimeter = "END HIDDEN TESTS"

# Feedback is rendered from the autograded notebook, whose grade cells hold the hidden
# checks again (autograde restores them from the gradebook). First drop traceback/output
# lines quoting hidden checks, then the hidden regions themselves.
c.GenerateFeedback.preprocessors = [
    GetGrades,
    ScrubHiddenTestOutputs,
    ClearHiddenTests,
    CSSHTMLHeaderPreprocessor,
]
