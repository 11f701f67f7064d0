"""Grading workers: long-lived processes that each grade a batch of students at a time.

The parent (tito/grade.py) builds one ``GradingContext`` (plain picklable data: the trusted
notebook, the limits, the sandbox policy) and hands ``BatchGrader(ctx)`` to an *executor*:

    Executor = Callable[[BatchGrader, list[list[str]]], Iterable[list[StudentResult]]]

that maps it over disjoint batches of students and yields each batch's results as it finishes.
``local_pool(jobs)`` (the default) runs ``jobs`` spawned worker processes that live for the whole
run; ``inline`` runs in this process. A Dask executor is ``lambda fn, batches:
(f.result() for f in as_completed(client.map(fn, batches)))``: a batch's results are plain data
that the parent merges into the gradebook, so workers need no access to it.

In a worker, ``Template`` (tito/guard.py) imports what the trusted cells import, once; every
notebook then runs in a fresh ``os.fork()`` of that pristine state (milliseconds, where starting
a Jupyter kernel takes about a second), under the limits and the guard, and is killed after its
last cell. A worker never runs student code itself, so nothing a student does survives into the
next notebook.
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from . import boundary, judging, plaindata, sandbox, trust
from .project import Project
from .results import CellScore, StudentResult

GRACE_SECONDS = 10.0  # a cell past its time limit gets this long to stop before a kill
MAX_FILE_BYTES = 64 << 20  # one data file of a submission given to its grading process
WORKER_FAILED = "grading worker failed"
SANDBOX_FAILED = "grading sandbox"
INTERNAL_ERROR = "internal grading error"
SANDBOX_DIED = "the sandbox around it died"


def infrastructure_failure(r: StudentResult) -> bool:
    """Whether ``r`` failed through no doing of the student (a worker or the sandbox died, a
    bug in tito): such a run never replaces the grades stored before it."""
    reason = r.reason or ""
    return not r.graded and (
        reason.startswith((WORKER_FAILED, SANDBOX_FAILED, INTERNAL_ERROR)) or SANDBOX_DIED in reason
    )


@dataclass(frozen=True)
class Limits:
    """Per-notebook resource limits (nbgrader_config.py sets them; the CLI overrides)."""

    cell_timeout: float = 120.0  # seconds per cell (nbgrader's Execute.timeout)
    notebook_timeout: float = 900.0  # seconds per notebook, all cells: a hard kill
    memory_mb: int = 2048  # address space a grading process may add to its start (RLIMIT_AS)
    work_mb: int = 512  # the sandbox's tmpfs (work dir + /tmp): all a notebook may write


@dataclass(frozen=True)
class GradingContext:
    """Everything a worker needs to grade submissions of one module (picklable)."""

    project: Project
    module_id: str
    notebook_name: str  # "toy.ipynb"
    notebook: trust.TrustedNotebook
    policy: sandbox.Policy
    limits: Limits
    preload: tuple[str, ...]  # modules the trusted cells import (imported once per worker)
    package: str  # "tinytorch"
    package_dir: str | None  # the project's package dir, made importable in the workers
    module_aliases: tuple[str, ...]  # names the trusted cells bind to imported modules
    # a student build (tito/student_build.student_site) the workers import tinytorch from:
    # the graded module there is a stub, so its reference is not in the grading process
    student_site: str | None = None
    # behind the OS boundary (tito/boundary.py); False only with --no-sandbox (trusted code)
    sandboxed: bool = True
    work_mb: int = 512  # size of the sandbox's tmpfs: all a notebook may write
    # package modules stubbed inside besides the graded one (unpublished modules)
    hidden_modules: tuple[str, ...] = ()
    # the module's judges (modules/NN_name/judge.py, read by the parent): the trusted half of
    # its grade cells, run here in the worker, never inside a sandbox (tito/judging.py)
    judge_source: str | None = None
    judge_file: str = "judge.py"

    @property
    def student_build(self) -> bool:
        """package_dir is a student build's (issue 15): the installed full package is not
        mounted in the sandbox."""
        return self.student_site is not None

    @property
    def blocked(self) -> str:
        return self.policy.blocked_modules[0]


class BatchGrader:
    """``BatchGrader(ctx)(students)`` grades those students; picklable for any executor."""

    def __init__(self, ctx: GradingContext):
        self.ctx = ctx

    def __call__(self, students: Sequence[str]) -> list[StudentResult]:
        return grade_batch(self.ctx, students)

    def failed(self, students: Sequence[str], reason: str) -> list[StudentResult]:
        return [StudentResult(self.ctx.module_id, s, False, reason=reason) for s in students]


Executor = Callable[[BatchGrader, list[list[str]]], Iterable[list[StudentResult]]]


def inline(fn: BatchGrader, batches: list[list[str]]) -> Iterator[list[StudentResult]]:
    """Grade in this process, batch after batch (debugging, tests). This process becomes the
    template the grading processes fork from: it imports the trusted cells' modules and gets the
    template's tweaks (a ``sys.meta_path`` blocker, ``plt.show`` and tqdm's monitor off)."""
    for batch in batches:
        yield fn(batch)


def local_pool(jobs: int) -> Executor:
    """``jobs`` long-lived worker processes (spawned: they start from a clean interpreter, not
    a copy of the parent with its gradebook connection). Each batch goes to one worker."""
    from concurrent.futures import ProcessPoolExecutor, as_completed
    from multiprocessing import get_context

    def run(fn: BatchGrader, batches: list[list[str]]) -> Iterator[list[StudentResult]]:
        # a worker that dies breaks its pool: the batches it took down are graded again, one
        # student per batch, in a fresh pool; only a student whose notebook fails that retry
        # too gets the failure (the dead worker is replaced, the rest are graded)
        for attempt in (0, 1):
            workers = max(1, min(jobs, len(batches)))
            lost: list[tuple[list[str], str]] = []
            with ProcessPoolExecutor(workers, mp_context=get_context("spawn")) as pool:
                futures = {pool.submit(fn, batch): batch for batch in batches}
                for fut in as_completed(futures):
                    try:
                        yield fut.result()
                    except Exception as exc:
                        lost.append((futures[fut], f"{type(exc).__name__}: {exc}"))
            if not lost:
                return
            if attempt == 1:
                for batch, why in lost:
                    yield fn.failed(batch, f"{WORKER_FAILED}: {why}")
                return
            batches = [[s] for batch, _ in lost for s in batch]

    return run


def batches_for(students: Sequence[str], jobs: int) -> list[list[str]]:
    """Disjoint batches, small enough to balance the workers and to show progress."""
    size = max(1, min(4, len(students) // max(1, jobs * 4)))
    return [list(students[i : i + size]) for i in range(0, len(students), size)]


# ---- in the worker ----------------------------------------------------------------------------
Launcher = sandbox.Template | boundary.Zygote  # where a grading process comes from
_TEMPLATES: dict[tuple, Launcher] = {}


def template_for(ctx: GradingContext) -> Launcher:
    """This worker's warm template for ``ctx``: a ``boundary.Zygote`` behind the OS boundary
    (restarted if it died), or, with --no-sandbox, this process itself prepared as one."""
    key = (ctx.module_id, ctx.preload, ctx.package_dir, ctx.sandboxed)
    old = _TEMPLATES.get(key)
    if isinstance(old, boundary.Zygote) and not old.alive():
        old.kill()
        del _TEMPLATES[key]
    if key not in _TEMPLATES:
        for other in [k for k, t in _TEMPLATES.items() if isinstance(t, boundary.Zygote)]:
            _TEMPLATES.pop(other).kill()  # one sandbox per worker: the module it grades now
        os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
        os.environ.setdefault("OMP_NUM_THREADS", "1")
        os.environ.setdefault("MPLBACKEND", "Agg")
        if ctx.sandboxed:
            _TEMPLATES[key] = boundary.Zygote(
                project_root=str(ctx.project.root),
                package_dir=ctx.package_dir or "",
                preload=ctx.preload,
                blocked=ctx.policy.blocked_modules,
                package=ctx.package,
                work_mb=ctx.work_mb,
                hidden=ctx.hidden_modules,
                student_build=ctx.student_build,
            )
            return _TEMPLATES[key]
        package_dir: str | None = ctx.package_dir
        if ctx.student_site:  # tinytorch comes from the student build, not the full library
            from .student_build import use_student_site

            use_student_site(ctx.student_site)
            package_dir = None
        _TEMPLATES[key] = sandbox.Template(ctx.preload, ctx.policy.blocked_modules, package_dir)
    return _TEMPLATES[key]


def grade_batch(ctx: GradingContext, students: Sequence[str]) -> list[StudentResult]:
    out = []
    for student in students:
        try:
            template = template_for(ctx)
        except boundary.ZygoteError as exc:  # the sandbox itself failed: this batch, with why
            out.append(
                StudentResult(ctx.module_id, student, False, reason=f"{SANDBOX_FAILED}: {exc}")
            )
            continue
        try:
            out.append(grade_one(ctx, student, template))
        except Exception as exc:  # a bug in tito must not take the rest of the batch with it
            out.append(
                StudentResult(
                    ctx.module_id,
                    student,
                    False,
                    reason=f"{INTERNAL_ERROR}: {type(exc).__name__}: {exc}",
                    worker=f"pid {os.getpid()}",
                )
            )
    return out


def read_submission(ctx: GradingContext, student: str) -> tuple[str | None, dict | None, list[str]]:
    """(why it cannot be graded, the notebook JSON, extra notebooks found beside it)."""
    project = ctx.project
    folder = project.step_dir("submitted", ctx.module_id, student)
    path = folder / ctx.notebook_name
    for p in (folder.parent, folder, path):
        if p.is_symlink():  # to the instructor's source, another student, ...: never followed
            return (
                f"{project.rel(p)} is a symbolic link (refused: submit the notebook itself, "
                "not a link)",
                None,
                [],
            )
    if not folder.is_dir():
        return f"missing notebook: no directory {project.rel(folder)}", None, []
    others = sorted(p.name for p in folder.glob("*.ipynb") if p.name != ctx.notebook_name)
    if not path.exists():
        found = f" (found {', '.join(others)})" if others else ""
        return f"missing notebook {project.rel(path)}{found}", None, []
    try:
        data = json.loads(path.read_bytes().decode("utf-8"))
    except UnicodeDecodeError as exc:
        return f"notebook is not UTF-8 text: {exc.reason}", None, others
    except json.JSONDecodeError as exc:
        return (
            f"notebook is not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}",
            None,
            others,
        )
    except OSError as exc:
        return f"cannot read {project.rel(path)}: {exc.strerror}", None, others
    problem = trust.check_notebook_structure(data)
    return problem, (None if problem else data), others


@dataclass
class Execution:
    results: dict[int, dict]  # notebook cell index -> the child's report
    failure: str | None  # why the notebook could not be graded
    seconds: float
    exchange_seconds: float = 0.0  # handing probes their inputs and collecting their outputs


def grade_one(ctx: GradingContext, student: str, template: sandbox.Template) -> StudentResult:
    start = time.perf_counter()
    worker = f"pid {os.getpid()}"
    log = ctx.project.rel(ctx.project.log_dir / "autograde" / ctx.module_id / f"{student}.log")
    problem, data, others = read_submission(ctx, student)
    notes = [
        f"extra notebook {name} was not graded (only {ctx.notebook_name} is)" for name in others
    ]
    timestamp = _timestamp(ctx, student)
    if problem:
        return StudentResult(
            ctx.module_id,
            student,
            False,
            reason=problem,
            notes=notes,
            log=log,
            worker=worker,
            seconds=time.perf_counter() - start,
            log_text=f"{student}: could not be graded: {problem}\n",
        )
    plan = trust.plan_submission(ctx.notebook, data)
    for label, source in plan.student_sources:
        for f in trust.scan_student_source(
            label,
            source,
            package=ctx.package,
            blocked=ctx.blocked,
            module_id=ctx.module_id,
            module_aliases=ctx.module_aliases,
        ):
            notes.append(str(f) if f.kind == "reference" else f"flagged for review: {f}")
    judges = judges_for(ctx)
    specs = [
        sandbox.CellSpec(
            index=i,
            label=p.cell.label,
            source=p.source,
            student=p.student,
            grade=p.cell.kind == trust.GRADE,
            binds=p.cell.binds,
        )
        for i, p in enumerate(plan.cells)
        if p.cell.cell_type == "code" and p.cell.kind != trust.DEMO
    ]
    t_split = time.perf_counter()
    probes = draw_probes(ctx, judges, plan)
    split = time.perf_counter() - t_split
    if isinstance(template, boundary.Zygote):
        files = _read_inputs(ctx.project.step_dir("submitted", ctx.module_id, student))
        run = execute(ctx, specs, template, files, probes)
    else:
        with tempfile.TemporaryDirectory(prefix=f"tito-grade-{ctx.module_id}-") as tmp:
            work = Path(tmp) / ctx.module_id
            _copy_inputs(ctx.project.step_dir("submitted", ctx.module_id, student), work)
            run = execute(ctx, specs, template, str(work), probes)
    t_split = time.perf_counter()
    scores, cell_notes, course_notes = _score(ctx, plan, run, judges, probes)
    split += time.perf_counter() - t_split + run.exchange_seconds
    notes += cell_notes
    seconds = time.perf_counter() - start
    log_text = _log_text(student, plan, run, scores, notes, seconds, course_notes, probes)
    if run.failure:
        return StudentResult(
            ctx.module_id,
            student,
            False,
            reason=run.failure,
            warnings=plan.warnings,
            notes=notes,
            log=log,
            worker=worker,
            seconds=seconds,
            log_text=log_text,
            course_notes=course_notes,
        )
    return StudentResult(
        ctx.module_id,
        student,
        True,
        judge_seconds=split,
        scores=scores,
        warnings=plan.warnings,
        notes=notes,
        log=log,
        seconds=seconds,
        worker=worker,
        comments={
            p.cell.grade_id: (None if p.answered else "No response.")
            for p in plan.cells
            if p.student
        },
        timestamp=timestamp,
        autograded=_notebook(ctx, plan, run),
        log_text=log_text,
        course_notes=course_notes,
    )


def _timestamp(ctx: GradingContext, student: str) -> str | None:
    path = ctx.project.step_dir("submitted", ctx.module_id, student) / "timestamp.txt"
    try:
        return path.read_text(encoding="utf-8").strip() or None
    except (OSError, UnicodeDecodeError):
        return None


def _copy_inputs(src: Path, dest: Path) -> None:
    """The submission's other files (data a notebook reads), not notebooks: the grading
    process works in a private copy, of the same files ``_read_inputs`` sends into the
    sandbox."""
    dest.mkdir(parents=True)
    for rel, data in _read_inputs(src).items():
        path = dest / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)


def _read_inputs(src: Path) -> dict[str, bytes]:
    """The submission's data files, read here and sent into the sandbox (or copied, by
    ``_copy_inputs``): regular files only, never through a symlink, each at most
    MAX_FILE_BYTES and at most MAX_INPUT_BYTES in all."""
    files: dict[str, bytes] = {}
    total = 0
    if not src.is_dir() or src.is_symlink():
        return files
    for dirpath, dirnames, filenames in os.walk(src):
        dirnames[:] = [d for d in dirnames if not os.path.islink(os.path.join(dirpath, d))]
        for name in sorted(filenames):
            path = Path(dirpath) / name
            rel = path.relative_to(src).as_posix()
            if path.suffix == ".ipynb" and path.parent == src or path.is_symlink():
                continue
            if not path.is_file():
                continue
            size = path.stat().st_size
            if size > MAX_FILE_BYTES or total + size > boundary.MAX_INPUT_BYTES:
                continue
            try:
                fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
            except OSError:
                continue
            with os.fdopen(fd, "rb") as f:
                files[rel] = f.read(MAX_FILE_BYTES)
            total += len(files[rel])
    return files


class _Forked:
    """A grading process forked from this process (--no-sandbox)."""

    def __init__(self, ctx, specs, template, work):
        cmd_r, self.cmd_w = os.pipe()
        self.rep_r, rep_w = os.pipe()
        self.pid = os.fork()
        if self.pid == 0:  # the grading process
            try:
                os.close(self.cmd_w)
                os.close(self.rep_r)
                sandbox.child_main(
                    cmd_r, rep_w, specs, ctx.policy, template, work, ctx.notebook.protected
                )
            finally:
                os._exit(70)
        os.close(cmd_r)
        os.close(rep_w)

    def end(self) -> int | None:
        try:
            os.kill(self.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        return os.waitpid(self.pid, 0)[1]


class _Sandboxed:
    """A grading process forked by the zygote behind the OS boundary."""

    def __init__(self, ctx, specs, zygote: boundary.Zygote, files: dict[str, bytes]):
        self.zygote = zygote
        self.cmd_w, self.rep_r = zygote.launch(specs, ctx.policy, ctx.notebook.protected, files)

    def end(self) -> int | None:
        return self.zygote.reap()


@dataclass
class ProbeInputs:
    """What the worker drew for one judged grade cell: kept here, sent in as copies."""

    check_id: str
    seed: int  # fresh per grading (secrets); in the instructor's log to reproduce a verdict
    inputs: dict  # the pristine inputs the judge compares against
    payload: dict  # tito.plaindata.encode(inputs): what the grading process receives


_JUDGES: dict[tuple[str, int], judging.Judges] = {}


def judges_for(ctx: GradingContext) -> judging.Judges | None:
    """The module's judges, loaded once per worker from the source the parent read."""
    if ctx.judge_source is None:
        return None
    key = (ctx.module_id, hash(ctx.judge_source))
    if key not in _JUDGES:
        _JUDGES[key] = judging.load_source(ctx.judge_source, ctx.judge_file)
    return _JUDGES[key]


def draw_probes(
    ctx: GradingContext, judges: judging.Judges | None, plan: trust.Plan
) -> dict[int, ProbeInputs]:
    """Fresh inputs for every judged grade cell of ``plan`` (cell index -> inputs)."""
    out: dict[int, ProbeInputs] = {}
    if judges is None:
        return out
    for i, p in enumerate(plan.cells):
        gid = p.cell.grade_id
        if p.cell.kind == trust.GRADE and gid in judges.checks:
            seed = secrets.randbits(63)
            inputs = judges.draw(gid, seed)
            out[i] = ProbeInputs(gid, seed, inputs, plaindata.encode(inputs))
    return out


def execute(
    ctx: GradingContext,
    specs: list[sandbox.CellSpec],
    template,
    work,
    probes: Mapping[int, ProbeInputs] | None = None,
) -> Execution:
    """Run ``specs`` in a fresh grading process forked from ``template`` (a ``Zygote`` behind
    the OS boundary, ``work`` = the data files to give it; or this process's ``Template``,
    ``work`` = a directory): one request per cell, each answered with a report carrying the
    request's nonce. A dead, stuck or misbehaving child fails the notebook with the reason;
    nothing it does reaches this process."""
    limits = ctx.limits
    start = time.monotonic()
    if isinstance(template, boundary.Zygote):
        proc = _Sandboxed(ctx, specs, template, work)
    else:
        proc = _Forked(ctx, specs, template, work)
    cmd_w, rep_r = proc.cmd_w, proc.rep_r
    died = False
    exchanged = 0.0
    results: dict[int, dict] = {}
    failure = None
    label = "(start-up)"
    deadline = start + limits.notebook_timeout
    grace = GRACE_SECONDS
    try:
        hello = sandbox.recv_msg(rep_r, min(deadline, time.monotonic() + 60))
        if hello.get("op") == "fatal":
            failure = (
                f"internal grading error: the grading process did not start: {hello.get('error')}"
            )
        elif hello != {"op": "ready"}:
            raise sandbox.ProtocolError("bad greeting")
        for k, spec in enumerate(specs if failure is None else []):
            label = spec.label
            nonce = secrets.token_hex(16)
            armed = (probes or {}).get(spec.index)
            t_x = time.perf_counter()
            if armed is not None:  # hand the probe its inputs first: the transfer is not timed
                _exchange(
                    cmd_w, rep_r, deadline,
                    {"op": "arm", "module": ctx.module_id, "check": armed.check_id,
                     "payload": armed.payload},
                    "armed",
                )
            sent = time.perf_counter()
            exchanged += sent - t_x
            sandbox.send_msg(cmd_w, {"op": "run", "i": k, "nonce": nonce})
            msg = sandbox.recv_msg(
                rep_r, min(deadline, time.monotonic() + limits.cell_timeout + grace)
            )
            outside = time.perf_counter() - sent  # the cell's time, measured out of reach
            if armed is not None and isinstance(msg, dict):
                t_x = time.perf_counter()
                got = _exchange(cmd_w, rep_r, deadline, {"op": "collect"}, "probe")
                msg["probe"] = got.get("probe")
                exchanged += time.perf_counter() - t_x
            if (
                not isinstance(msg, dict)
                or msg.get("op") != "result"
                or msg.get("nonce") != nonce
                or msg.get("i") != spec.index
            ):
                raise sandbox.ProtocolError("unexpected reply")
            msg["outside_seconds"] = outside
            results[spec.index] = msg
        if failure is None and _pending(rep_r):
            label = "(after the last cell)"
            raise sandbox.ProtocolError("unrequested data")
    except TimeoutError:
        if time.monotonic() >= deadline:
            failure = (
                f"took longer than the {limits.notebook_timeout:g} s per-notebook time limit "
                f"(stopped in cell {label})"
            )
        else:
            failure = (
                f"cell {label} did not stop within {limits.cell_timeout + grace:g} s "
                f"(its time limit is {limits.cell_timeout:g} s)"
            )
    except (EOFError, BrokenPipeError):
        died = True
    except sandbox.ProtocolError:
        failure = (
            f"the grading process sent unexpected data while running cell {label} "
            "(tampering with the grader?)"
        )
    finally:
        os.close(cmd_w)
        os.close(rep_r)
        status = proc.end()
    if died:
        failure = f"the grading process died ({_death(status)}) while running cell {label}"
    return Execution(results, failure, time.monotonic() - start, exchanged)


def _exchange(cmd_w: int, rep_r: int, deadline: float, request: dict, answer: str) -> dict:
    """One request and its one answer (op ``answer``, the request's nonce) within 60 s."""
    nonce = secrets.token_hex(16)
    sandbox.send_msg(cmd_w, {**request, "nonce": nonce})
    msg = sandbox.recv_msg(rep_r, min(deadline, time.monotonic() + 60))
    if not isinstance(msg, dict) or msg.get("op") != answer or msg.get("nonce") != nonce:
        raise sandbox.ProtocolError("unexpected reply")
    return msg


def _pending(fd: int) -> bool:
    import select

    return bool(select.select([fd], [], [], 0)[0])


def _death(status: int | None) -> str:
    if status is None:
        return SANDBOX_DIED
    if os.WIFSIGNALED(status):
        sig = os.WTERMSIG(status)
        name = signal.Signals(sig).name if sig in signal.valid_signals() else str(sig)
        hint = "; out of memory?" if sig == signal.SIGKILL else ""
        return f"killed by {name}{hint}"
    if os.WIFEXITED(status):
        return f"exit code {os.WEXITSTATUS(status)}"
    return f"status {status}"


def _stderr_line(outputs: list[dict]) -> str | None:
    for out in outputs:
        if out.get("output_type") == "stream" and out.get("name") == "stderr":
            text = out.get("text", "").strip()
            return text.splitlines()[0][:200] if text else "(blank)"
    return None


def judge_cell(
    judges: judging.Judges, armed: ProbeInputs, r: Mapping
) -> tuple[float, str | None]:
    """The judge's verdict on what the grade cell's probe sent back: (fraction, why not all).
    Runs here, in the worker, on the worker's own inputs; the reply is only data."""
    payload = r.get("probe")
    if payload is None:
        return 0.0, "the hidden check did not run (the cell ended before its probe)"
    if isinstance(payload, dict) and set(payload) == {"error"}:
        return 0.0, f"the hidden check could not collect the results: {payload['error']}"[:500]
    try:
        outputs = plaindata.decode(payload)
    except plaindata.ProbeError as exc:
        return 0.0, f"the hidden check's results were not plain data: {exc}"
    try:
        return judging.verdict(judges, armed.check_id, armed.inputs, outputs,
                               r.get("outside_seconds"))
    except Exception as exc:  # an output of a shape the judge did not foresee
        return 0.0, f"the hidden check could not judge the results: {type(exc).__name__}: {exc}"


def _score(
    ctx: GradingContext,
    plan: trust.Plan,
    run: Execution,
    judges: judging.Judges | None = None,
    probes: Mapping[int, ProbeInputs] | None = None,
) -> tuple[list[CellScore], list[str], list[str]]:
    """Per grade cell: a judged cell scores what its judge decides (an error, stderr output or
    tampering in the cell still scores 0); an unjudged one by nbgrader's rule (an error or any
    stderr output scores 0; a numeric final value is partial credit; otherwise full marks);
    plus the guard's verdicts."""
    scores, notes, course = [], [], []
    probes = probes or {}
    mb = ctx.limits.memory_mb
    for i, p in enumerate(plan.cells):
        r = run.results.get(i)
        label = p.cell.label
        if r is not None:
            for what in dict.fromkeys(r.get("blocked", [])):
                notes.append(f"{label}: refused {what}")
            for what in dict.fromkeys(r.get("course", [])):
                course.append(f"given cell {label}: refused {what}")
            if r.get("timed_out"):
                notes.append(
                    f"{label}: stopped at the {ctx.limits.cell_timeout:g} s cell time limit"
                )
            elif (r.get("error") or "").startswith("MemoryError"):
                notes.append(f"{label}: ran out of memory (limit: {mb} MB above the start)")
            for n in r.get("names", []):
                notes.append(f"{label}: {n} (restored)")
            if p.cell.kind != trust.GRADE:
                for change in r.get("tamper", []):
                    notes.append(f"{label}: {change} (undone before the checks ran)")
        if p.cell.kind != trust.GRADE:
            continue
        points = float(p.cell.points or 0.0)
        if r is None:
            reason = run.failure or "not run"
            scores.append(CellScore(label, 0.0, points, reason))
            continue
        tamper = r.get("tamper", [])
        stderr = _stderr_line(r.get("outputs", []))
        if r["status"] == "error":
            scores.append(CellScore(label, 0.0, points, r.get("error")))
        elif tamper:
            reason = f"the code under test {tamper[0]} while the check ran"
            notes.append(f"{label}: no points: {reason}")
            scores.append(CellScore(label, 0.0, points, reason))
        elif stderr is not None:
            scores.append(CellScore(label, 0.0, points, f"wrote to stderr: {stderr}"))
        elif i in probes and judges is not None:
            frac, why = judge_cell(judges, probes[i], r)
            r["judged"] = why  # shown in the autograded notebook (feedback)
            scores.append(CellScore(label, round(points * frac, 6), points, why))
        else:
            partial = next((o["partial"] for o in r.get("outputs", []) if "partial" in o), None)
            if partial is not None and 0 <= partial <= points:
                why = None if partial == points else f"partial credit {partial:g}"
                scores.append(CellScore(label, float(partial), points, why))
            else:
                scores.append(CellScore(label, points, points))
    return scores, list(dict.fromkeys(notes)), course


def _notebook(ctx: GradingContext, plan: trust.Plan, run: Execution) -> dict:
    """The executed notebook as nbgrader's autograde would leave it (feedback reads it)."""
    cells = []
    for i, p in enumerate(plan.cells):
        tc = p.cell
        cell = {
            "cell_type": tc.cell_type,
            "metadata": json.loads(json.dumps(tc.metadata)),
            "source": p.source,
        }
        if tc.cell_id:
            cell["id"] = tc.cell_id
        if tc.cell_type == "code":
            r = run.results.get(i)
            outs = []
            for o in (r or {}).get("outputs", []):
                o = dict(o)
                o.pop("partial", None)
                outs.append(o)
            if (r or {}).get("judged"):
                why = r["judged"]
                outs.append(
                    {
                        "output_type": "error",
                        "ename": "HiddenCheckFailed",
                        "evalue": why,
                        "traceback": [f"HiddenCheckFailed: {why}"],
                    }
                )
            cell["outputs"] = outs
            cell["execution_count"] = (i + 1) if r is not None else None
        cells.append(cell)
    return {
        "cells": cells,
        "metadata": ctx.notebook.metadata,
        "nbformat": 4,
        "nbformat_minor": ctx.notebook.nbformat_minor,
    }


def _log_text(student, plan, run, scores, notes, seconds, course_notes=(), probes=None) -> str:
    lines = [f"autograde of {student}: {seconds:.2f} s"]
    lines += [f"[WARNING] {w}" for w in plan.warnings]
    lines += [f"[NOTE] {n}" for n in notes]
    lines += [f"[COURSE] {n}" for n in course_notes]
    for i, p in enumerate(plan.cells):
        r = run.results.get(i)
        if r is None:
            continue
        who = "student" if p.student else "trusted"
        what = "ok" if r["status"] == "ok" else r.get("error")
        lines.append(f"cell {p.cell.label} ({who}): {what} ({r.get('seconds', 0):.3f} s)")
        if probes and i in probes:
            lines.append(
                f"    judged outside the sandbox: inputs seed {probes[i].seed}, "
                f"{r.get('outside_seconds', 0):.3f} s measured by the worker"
            )
        for o in r.get("outputs", []):
            if o.get("output_type") == "error":
                lines += ["    " + ln for ln in o.get("traceback", [])]
    for s in scores:
        lines.append(
            f"score {s.grade_id}: {s.score:g}/{s.max_score:g}"
            + (f" ({s.reason})" if s.reason else "")
        )
    if run.failure:
        lines.append(f"[ERROR] could not be graded: {run.failure}")
    return "\n".join(lines) + "\n"
