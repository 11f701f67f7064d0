"""``tito competition ...``: module 20's arena from the command line.

    tito competition package DIR [--out ZIP] [--no-train] [--no-check]
    tito competition evaluate PACKAGE...            folders or zips; same package -> same row
    tito competition leaderboard [--final] [--json]
    tito competition award TEAM POINTS --reason TEXT
    tito competition html [--out PATH] [--final]
    tito competition serve [--host H] [--port N] [--final]
    tito competition report SUBMISSION_ID
    tito competition check                          integrity, invariants, row digests
    tito competition demo                           build + evaluate every bundled sample

The arena lives in ``--arena DIR`` (default ``course/competition/arena``; the demo uses
``course/competition-demo/``). Hooked into ``tito/cli.py`` with ``add_parser(sub)``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from .cli_common import _Parser, add_global_options, pin_blas_env, project_from_args
from .errors import CHECK_FAILED, TitoError
from .project import Project


def default_arena(project: Project) -> Path:
    return project.course_dir / "competition" / "arena"


def demo_root(project: Project) -> Path:
    return project.course_dir / "competition-demo"


def _evaluate_on_cluster(args, project: Project, arena) -> int:
    """``evaluate --scheduler``: latency on benchmark workers only (docs/scaling.md)."""
    from tinytorch.infra.executors import ExecutorError, get_executor

    from .arena.cluster import evaluate_many

    try:
        executor = get_executor(args.scheduler, require=("tinytorch",))
    except ExecutorError as exc:
        raise TitoError(str(exc)) from None
    code = 0
    with executor:
        print(f"evaluating on {executor.describe()}")
        for done in evaluate_many(arena, args.packages, executor):
            if done.error:
                print(f"{done.source}: rejected: {done.error}", file=sys.stderr)
                code = CHECK_FAILED
                continue
            print(done.outcome.summary() + f"  [latency on {done.workers.get('infer', '-')}]")
            if done.outcome.report_path:
                print(f"  report: {project.rel(done.outcome.report_path)}")
    return code


def _arena(args, project: Project, **kw):
    from .arena import Arena, ArenaLimits
    from .arena.store import StoreError

    path = Path(args.arena) if args.arena else default_arena(project)
    wall = getattr(args, "wall_seconds", None)
    limits = ArenaLimits(wall_seconds=wall) if wall else None
    try:
        return Arena(path, limits=limits, **kw)
    except (StoreError, ValueError) as exc:
        raise TitoError(str(exc)) from None


def cmd_package(args, project: Project) -> int:
    from tinytorch.arena import build_package, read_package

    src = Path(args.dir)
    out_dir = Path(args.build) if args.build else src.parent / f"{src.name}-package"
    try:
        built = build_package(
            src, out_dir, train=not args.no_train, check=not args.no_check, say=print
        )
    except (ValueError, FileNotFoundError) as exc:
        raise TitoError(f"{src}: {exc}") from None
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        pkg = read_package(built, tmp)
    print(
        f"package {built}: team {pkg.team}, {pkg.model_bytes} bytes of weights, "
        f"hash {pkg.hash[:16]}"
    )
    for p in pkg.problems:
        print(f"  problem: {p}")
    if args.out:
        import shutil

        archive = shutil.make_archive(str(Path(args.out).with_suffix("")), "zip", built)
        print(f"wrote {archive}")
    return CHECK_FAILED if pkg.problems else 0


def cmd_evaluate(args, project: Project) -> int:
    from tinytorch.arena.harness import ArenaFailure

    from .arena import SubmissionLimitError
    from .grade import require_boundary

    sandboxed = require_boundary(args.no_sandbox, "tito competition evaluate")
    arena = _arena(args, project, sandboxed=sandboxed)
    code = 0
    if getattr(args, "scheduler", None) or os.environ.get("TINYTORCH_SCHEDULER"):
        code = _evaluate_on_cluster(args, project, arena)  # tito/arena/cluster.py
        return _check_leaderboard(arena, code)
    for source in args.packages:
        try:
            outcome = arena.evaluate(source)
        except SubmissionLimitError as exc:
            print(f"{source}: rejected: {exc}", file=sys.stderr)
            code = CHECK_FAILED
            continue
        except (FileNotFoundError, ValueError) as exc:  # this package's problem: go on
            print(f"{source}: rejected: {exc}", file=sys.stderr)
            code = CHECK_FAILED
            continue
        except ArenaFailure as exc:  # the arena's own failure: nothing recorded, say so
            print(f"{source}: not evaluated, nothing recorded: {exc}", file=sys.stderr)
            code = CHECK_FAILED
            continue
        print(outcome.summary())
        if outcome.report_path:
            print(f"  report: {project.rel(outcome.report_path)}")
    return _check_leaderboard(arena, code)


def _check_leaderboard(arena, code: int) -> int:
    """The leaderboard's integrity after every run (SQLite checks and row invariants)."""
    problems = arena.problems()
    for p in problems:
        print(f"leaderboard integrity: {p}", file=sys.stderr)
    return CHECK_FAILED if problems else code


def cmd_leaderboard(args, project: Project) -> int:
    arena = _arena(args, project)
    if args.json:
        from .arena.html import payload

        data = payload(arena, final=args.final)
        data.pop("html")
        print(json.dumps(data, indent=2))
    else:
        print(arena.leaderboard_text(final=args.final))
    return 0


def cmd_award(args, project: Project) -> int:
    arena = _arena(args, project)
    try:
        award_id = arena.award(args.team, args.points, args.reason)
    except ValueError as exc:
        raise TitoError(str(exc)) from None
    total = arena.store.innovation_points().get(args.team, 0.0)
    print(
        f"award #{award_id}: {args.points:+g} innovation points to {args.team} "
        f"(total {total:g}): {args.reason}"
    )
    return 0


def cmd_html(args, project: Project) -> int:
    arena = _arena(args, project)
    path = arena.write_html(args.out, final=args.final)
    print(f"wrote {path}")
    return 0


def cmd_serve(args, project: Project) -> int:
    from .arena.server import serve

    arena = _arena(args, project)
    serve(arena.root, host=args.host, port=args.port, final=args.final)
    return 0


def cmd_report(args, project: Project) -> int:
    from .arena.report import report_markdown

    arena = _arena(args, project)
    if arena.store.row(args.submission) is None:
        raise TitoError(f"no submission #{args.submission} in {arena.root}")
    print(report_markdown(arena, args.submission, final=args.final)[0])
    return 0


def cmd_check(args, project: Project) -> int:
    """SQLite's checks, the row invariants, and every row's digest recomputed with the arena's
    key: a row that no evaluation produced, or that was altered, is named (exit 1)."""
    arena = _arena(args, project)
    problems = arena.problems()
    for p in problems:
        print(f"problem: {p}")
    n = len(arena.store.rows())
    print(f"{arena.store.path}: {n} submissions, {len(problems)} problems "
          f"(digests checked with {arena.store.key_path.name})")
    return CHECK_FAILED if problems else 0


def competition_demo(project: Project, say=print):
    """Build and evaluate every bundled sample in course/competition-demo (for `tito course`)."""
    from .arena import run_competition_demo

    return run_competition_demo(demo_root(project), say=say)


def cmd_demo(args, project: Project) -> int:
    result = competition_demo(project)
    return 0 if result.ok else CHECK_FAILED


def add_parser(sub) -> argparse.ArgumentParser:
    """Add ``competition`` and its actions to tito's subparsers."""
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--arena", metavar="DIR", help="the arena directory (default: course/competition/arena)"
    )
    p = sub.add_parser(
        "competition",
        help="module 20's arena: package, evaluate, rank, award, serve",
        description=__doc__.split("\n\n")[0].replace("``", ""),  # plain text, not reST
    )
    actions = p.add_subparsers(dest="competition_command", metavar="ACTION", required=True)

    def add(name, fn, help_):
        sp = actions.add_parser(name, help=help_, description=help_, parents=[common])
        sp.set_defaults(fn=fn)
        return sp

    sp = add("package", cmd_package, "train, check and package a submission folder")
    sp.add_argument("dir", metavar="DIR", help="a folder with submission.py (+ submission.yaml)")
    sp.add_argument("--build", metavar="DIR", help="package folder (default: DIR-package)")
    sp.add_argument("--out", metavar="ZIP", help="also write the package as a zip")
    sp.add_argument("--no-train", action="store_true", help="keep DIR/weights/ as is")
    sp.add_argument("--no-check", action="store_true", help="skip the package checks")
    sp = add("evaluate", cmd_evaluate, "evaluate packages (folders or zips) in the sandbox")
    sp.add_argument("packages", nargs="+", metavar="PACKAGE")
    sp.add_argument("--wall-seconds", type=float, help="inference wall-time limit (default 30)")
    sp.add_argument(
        "--no-sandbox",
        action="store_true",
        help="run without the OS boundary where namespaces are unavailable: trusted code ONLY "
        "(docs/grading.md)",
    )
    sp.add_argument(
        "--scheduler",
        metavar="ADDR",
        help="evaluate on a Dask cluster (tcp://host:8786 or $TINYTORCH_SCHEDULER); latency "
        "only on workers with --resources benchmark=1",
    )
    sp = add("leaderboard", cmd_leaderboard, "print the leaderboard")
    sp.add_argument("--final", action="store_true", help="rank on the private split")
    sp.add_argument("--json", action="store_true", help="machine-readable standings")
    sp = add("award", cmd_award, "award innovation points to a team (shown publicly)")
    sp.add_argument("team")
    sp.add_argument("points", type=float)
    sp.add_argument("--reason", required=True)
    sp = add("html", cmd_html, "write the static HTML leaderboard")
    sp.add_argument("--out", metavar="PATH")
    sp.add_argument("--final", action="store_true")
    sp = add("serve", cmd_serve, "serve the live leaderboard on localhost")
    sp.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    sp.add_argument("--port", type=int, default=8020, help="port to listen on (default 8020)")
    sp.add_argument("--final", action="store_true")
    sp = add("report", cmd_report, "print the performance report of one submission")
    sp.add_argument("submission", type=int, metavar="SUBMISSION_ID")
    sp.add_argument("--final", action="store_true")
    add("check", cmd_check, "check the database (integrity_check, invariants, row digests)")
    add("demo", cmd_demo, "build and evaluate every bundled sample; print the leaderboard")
    return p


def main(argv: list[str] | None = None) -> int:
    """``python -m tito.competition_cli ACTION ...``: the same as ``tito competition ACTION ...``
    (same global options and errors; tito/cli.py hooks ``add_parser`` into ``tito``)."""
    pin_blas_env()  # as tito's main: one BLAS thread here and in every child, before numpy
    parser = _Parser(prog="tito")
    add_global_options(parser)
    add_parser(parser.add_subparsers(dest="command", metavar="COMMAND", required=True))
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        args = parser.parse_args(["competition", *argv])
    except SystemExit as exc:
        return int(exc.code or 0)
    try:
        return args.fn(args, project_from_args(args))
    except TitoError as exc:
        print(f"tito: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except OSError as exc:
        print(f"tito: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
