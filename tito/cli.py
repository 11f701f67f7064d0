"""The ``tito`` command line. Every command is also an importable function (see tito/__init__).

Errors print one line, ``tito: error: <file>:<line>: <cell>: <problem>``; exit code 2 means
bad input (a malformed source, an unknown module), 1 a failed check.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .cli_common import (  # BLAS_THREAD_VARS, pin_blas_env: re-exported for tito.cli users
    BLAS_THREAD_VARS,  # noqa: F401
    _Parser,
    add_global_options,
    pin_blas_env,
)
from .cli_common import project_from_args as _project
from .errors import CHECK_FAILED, TitoError, one_line
from .project import Project

# commands that write under the course directory take its lock
WRITES_COURSE = {"build", "validate", "release", "samples", "autograde", "feedback", "course"}
WRITES_COURSE |= {"publish", "student-build"}


def _modules(project: Project, names):
    """Named modules (all when none): with names, a broken *other* module does not block."""
    from .modules import discover_modules, resolve

    if not names:
        return resolve([], discover_modules(project.modules_dir))
    errors: list = []
    modules = discover_modules(project.modules_dir, errors=errors)
    try:
        return resolve(names, modules)
    except TitoError:
        for err in errors:  # the named module exists but is broken: say why
            number, _, name = err.path.parent.name.partition("_")
            keys = {err.path.parent.name, number, number.lstrip("0"), name}
            if any(Path(n.rstrip("/")).name in keys for n in names):
                raise err from None
        raise


def _one(project: Project, name: str):
    return _modules(project, [name])[0]


def cmd_list(args, project: Project) -> int:
    from .modules import discover_modules

    errors: list = []
    for spec in discover_modules(project.modules_dir, errors=errors):
        print(f"{spec.id:<20} {spec.points:>5g} pts  {spec.title}")
    for err in errors:
        print(f"{err.path.parent.name:<20} broken: {err}")
    return 2 if errors else 0


def cmd_export(args, project: Project) -> int:
    from .export import export

    results = export(
        _modules(project, args.modules), project, check=args.check, find_orphans=not args.modules
    )
    for r in results:
        rel = project.rel(r.target)
        if args.check:
            print(f"{rel}: current")
        else:
            print(f"{rel}: {'written' if r.changed else 'unchanged'}")
    return 0


def cmd_build(args, project: Project) -> int:
    from .build import build

    for path in build(_modules(project, args.modules), project):
        print(f"built {project.rel(path)}")
    return 0


def cmd_validate(args, project: Project) -> int:
    from .validate import validate

    for r in validate(_modules(project, args.modules), project, timeout=args.timeout):
        print(f"{r.spec.id}: {r.cells_run} code cells passed ({r.seconds:.1f}s)")
    return 0


def cmd_release(args, project: Project) -> int:
    from .release import release

    results = release(_modules(project, args.modules), project)
    for r in results:
        print(f"released {project.rel(r.notebook)} (no solution or hidden text left)")
    if results and results[0].student_wheel:
        print(f"student build {project.rel(results[0].student_wheel)} (docs/course-builds.md)")
    return 0


def cmd_publish(args, project: Project) -> int:
    from .student_build import publish, published_modules

    publish(project, _modules(project, args.modules), undo=args.undo)
    for module_id, why in published_modules(project).items():
        print(f"{module_id}: {why}")
    print("the next `tito release` (or `tito student-build`) ships these references")
    return 0


def cmd_student_build(args, project: Project) -> int:
    from .release import release_student_wheel
    from .student_build import published_modules

    for module_id, why in published_modules(project).items():
        print(f"{module_id}: reference ({why})")
    print(f"student build {project.rel(release_student_wheel(project))}")
    return 0


def cmd_samples(args, project: Project) -> int:
    from .samples import samples

    for name, path in samples(_one(project, args.module), project).items():
        print(f"{name}: {project.rel(path)}")
    return 0


def cmd_autograde(args, project: Project) -> int:
    import time

    from .grade import autograde, describe, limits_from_config, summary

    limits = limits_from_config(
        project,
        cell_timeout=args.cell_timeout,
        notebook_timeout=args.notebook_timeout,
        memory_mb=args.memory_mb,
    )
    start = time.perf_counter()
    from .scale import autograde_cluster, open_executor  # --scheduler: tito/scale.py

    cluster = open_executor(args.scheduler, project)
    if cluster is not None:
        with cluster:
            print(f"grading on {cluster.describe()}")
            results = autograde_cluster(
                _one(project, args.module),
                project,
                cluster,
                args.student or None,
                limits=limits,
                progress=None if not args.no_progress else False,
                no_sandbox=args.no_sandbox,
            )
            args.jobs = cluster.workers
    else:
        results = autograde(
            _one(project, args.module),
            project,
            args.student or None,
            jobs=args.jobs,
            limits=limits,
            progress=None if not args.no_progress else False,
            no_sandbox=args.no_sandbox,
        )
    for r in results:
        print(describe(r))
        if args.verbose:
            for w in r.remarks:
                print(f"    note: {w}")
    print(summary(results, time.perf_counter() - start, args.jobs))
    module = _one(project, args.module).id
    print(f"next: tito grades {module} (the gradebook), tito feedback {module} (a page each)")
    failed = [r for r in results if not r.graded]
    if failed:
        print(
            f"tito: error: {len(failed)} of {len(results)} submissions could not be graded",
            file=sys.stderr,
        )
        return CHECK_FAILED
    return 0


def cmd_feedback(args, project: Project) -> int:
    from .feedback import feedback

    res = feedback(_one(project, args.module), project)
    for path in res.files:
        print(f"feedback {project.rel(path)}")
    print(f"{len(res.files)} feedback files, no hidden checks in them")
    return 0


def cmd_grades(args, project: Project) -> int:
    from .grade import format_table, table, write_csv

    specs = _modules(project, [args.module] if args.module else [])
    tables = [table(spec, project) for spec in specs]
    print("\n\n".join(format_table(t) for t in tables))
    if not any(t.rows for t in tables):
        which = args.module or "MODULE"
        print(
            f"\nnothing graded yet: run tito release {which}, put each submission in "
            f"{project.rel(project.course_dir)}/submitted/<student>/<module id>/ (or make samples "
            f"with tito samples {which}), then tito autograde {which}"
        )
    if args.csv:
        write_csv(Path(args.csv), tables)
        print(f"wrote {args.csv}")
    return 0


def cmd_check(args, project: Project | None) -> int:
    from .check import check, format_report

    report = check(args.module, args.notebook, project, timeout=args.timeout)
    print(f"checked {report.notebook}")
    print(format_report(report))
    return 0 if report.ok else CHECK_FAILED


def cmd_course(args, project: Project) -> int:
    from .course import course

    outcomes = course(project, _modules(project, args.modules) or None, timeout=args.timeout)
    ok = all(o.ok for o in outcomes)
    if any(o.spec.name == "competition" and o.ok for o in outcomes):
        from .competition_cli import competition_demo

        print("\nCompetition: every bundled sample submission through the arena")
        ok = competition_demo(project).ok and ok
    return 0 if ok else CHECK_FAILED


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(
        prog="tito",
        description="TinyTorch course tool: modules/*_dev.py -> package, notebooks, grades.",
    )
    add_global_options(p)
    sub = p.add_subparsers(dest="command", metavar="COMMAND", required=True)

    def add(name, fn, help_):
        sp = sub.add_parser(name, help=help_, description=help_)
        sp.set_defaults(fn=fn)
        return sp

    add("list", cmd_list, "list the course modules")
    sp = add("export", cmd_export, "write tinytorch/<name>.py from the '#| export' cells")
    sp.add_argument("modules", nargs="*", metavar="MODULE")
    sp.add_argument("--check", action="store_true", help="only compare; exit 1 if any file differs")
    sp = add("build", cmd_build, "build course/source/<id>/<name>.ipynb (instructor notebook)")
    sp.add_argument("modules", nargs="*", metavar="MODULE")
    for name, fn, help_ in (
        ("validate", cmd_validate, "run the instructor notebook; every check must pass"),
        ("course", cmd_course, "everything, for every module, then the gradebook (make course)"),
    ):
        sp = add(name, fn, help_)
        sp.add_argument("modules", nargs="*", metavar="MODULE")
        sp.add_argument("--timeout", type=int, default=120, help="seconds per cell (default 120)")
    sp = add("release", cmd_release, "nbgrader generate_assignment + leak check")
    sp.add_argument("modules", nargs="*", metavar="MODULE")
    sp = add("publish", cmd_publish, "publish MODULEs' solutions in the next student build")
    sp.add_argument("modules", nargs="+", metavar="MODULE")
    sp.add_argument("--undo", action="store_true", help="withdraw a recorded publication")
    add("student-build", cmd_student_build, "write course/release/tinytorch_student-*.whl")
    sp = add("samples", cmd_samples, "write the reference/untouched/partial sample submissions")
    sp.add_argument("module", metavar="MODULE")
    sp = add(
        "autograde",
        cmd_autograde,
        "grade course/submitted/<student>/<id>/ in guarded worker processes (docs/grading.md)",
    )
    sp.add_argument("module", metavar="MODULE")
    sp.add_argument(
        "--student", action="append", metavar="ID", help="only this student (repeatable)"
    )
    sp.add_argument(
        "-j", "--jobs", type=_positive_int, default=1, help="grading worker processes (default 1)"
    )
    sp.add_argument(
        "--cell-timeout", type=float, metavar="S", help="seconds per cell (nbgrader_config.py)"
    )
    sp.add_argument(
        "--notebook-timeout",
        type=float,
        metavar="S",
        help="seconds per notebook, all cells (default 900; nbgrader_config.py)",
    )
    sp.add_argument(
        "--memory-mb",
        type=int,
        metavar="MB",
        help="memory a grading process may add (default 2048; nbgrader_config.py)",
    )
    sp.add_argument("--no-progress", action="store_true", help="no progress bar")
    sp.add_argument(
        "--no-sandbox",
        action="store_true",
        help="grade without the OS boundary where namespaces are unavailable: trusted code ONLY "
        "(docs/grading.md)",
    )
    sp.add_argument(
        "--scheduler",
        metavar="ADDR",
        help="grade on a Dask cluster (tcp://host:8786; default $TINYTORCH_SCHEDULER or "
        "c.TitoAutograde.scheduler; needs tinytorch[cluster]); see docs/scaling.md",
    )
    sp = add("feedback", cmd_feedback, "nbgrader generate_feedback + hidden-text check")
    sp.add_argument("module", metavar="MODULE")
    sp = add("grades", cmd_grades, "print the gradebook (per-cell scores, totals, ungradable)")
    sp.add_argument("module", nargs="?", metavar="MODULE")
    sp.add_argument("--csv", metavar="PATH", help="also write the table as CSV")
    sp = add(
        "check",
        cmd_check,
        "run the visible checks of your notebook: a table of passing, failing and not-started "
        "exercises (needs only the notebook)",
    )
    sp.add_argument("module", metavar="MODULE", help="module (15, compression, ...) or a notebook")
    sp.add_argument(
        "notebook",
        nargs="?",
        metavar="NOTEBOOK",
        help="the notebook to check (default: NAME.ipynb here, else the course's release copy)",
    )
    sp.add_argument("--timeout", type=float, default=120, help="seconds per cell (default 120)")
    from .competition_cli import add_parser as add_competition_parser

    add_competition_parser(sub)
    return p


def main(argv: list[str] | None = None) -> int:
    pin_blas_env()  # first: before any command imports numpy
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # argparse already printed "tito: error: ..."
        return int(exc.code or 0)
    try:
        try:
            project = _project(args)
        except TitoError:
            if args.command != "check":  # a student's check needs no course checkout
                raise
            project = None
        if args.command in WRITES_COURSE:
            from ._io import exclusive

            with exclusive(project.course_dir):
                return args.fn(args, project)
        return args.fn(args, project)
    except TitoError as exc:
        print(f"tito: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except OSError as exc:
        print(f"tito: error: {one_line(exc)}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
