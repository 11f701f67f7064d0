"""The grading process: a fresh fork per notebook that runs student and trusted cells under guard.

A ``Template`` (tito/guard.py) is prepared once -- behind the OS boundary by the sandboxed
zygote of tito/boundary.py, or with --no-sandbox in the worker itself (tito/workers.py) -- and
one child is forked per notebook. The child never returns: ``child_main`` installs the limits,
the thread blockers and the audit hook, then runs the cells the worker asks for, one by one,
answering each request (which carries a fresh nonce) with that cell's outputs.

The guard is in three files (the why is in docs/grading.md):

- tito/audit.py: the audit hook (``sys.addaudithook``, irremovable) and the ``Policy`` it
  enforces (the reference solution, writes outside the work directory, processes, ctypes, ...);
- tito/guard.py: after every cell, library state is compared with the template's snapshot and
  restored; a change made while a grade cell ran voids that cell;
- here: names the checks rely on (bound by trusted cells, by no solution cell) are restored in
  the notebook namespace before trusted code runs again.

Messages travel as in tito/channel.py. ``Policy``, ``Template``, ``send_msg``, ``recv_msg`` and
``ProtocolError`` are re-exported here, where the worker and the zygote import them from.

Only the standard library is used here.
"""

from __future__ import annotations

import ast
import builtins
import linecache
import os
import resource
import signal
import sys
import time
import traceback
import types
from collections.abc import Sequence
from dataclasses import dataclass

from .audit import Policy, make_audit_hook
from .channel import MAX_MESSAGE, ProtocolError, recv_msg, send_msg
from .guard import _HEAPTYPE, _MISSING, Guard, ReferenceBlocker, Template, _is_attr_api

__all__ = [
    "MAX_MESSAGE",
    "OUTPUT_LIMIT",
    "CellSpec",
    "CellTimeout",
    "Guard",
    "Policy",
    "ProtocolError",
    "ReferenceBlocker",
    "Template",
    "child_main",
    "make_audit_hook",
    "recv_msg",
    "send_msg",
]

OUTPUT_LIMIT = 256 * 1024  # characters of captured output per cell


class CellTimeout(BaseException):
    """Raised inside a cell that outlived its time limit (BaseException: ``except Exception``
    in student code does not swallow it)."""


@dataclass(frozen=True)
class CellSpec:
    index: int
    label: str  # grade_id or cell id: names the cell in notes and tracebacks
    source: str
    student: bool
    grade: bool
    binds: frozenset[str]


# ---- the child --------------------------------------------------------------------------------
class _Capture:
    """sys.stdout / sys.stderr of a cell: text into the cell's outputs."""

    encoding = "utf-8"
    errors = "strict"

    def __init__(self, name: str, outputs: list, budget: list):
        self.name = name
        self._outputs = outputs
        self._budget = budget

    def write(self, text) -> int:
        if not isinstance(text, str):
            raise TypeError(f"write() argument must be str, not {type(text).__name__}")
        n = len(text)
        if self._budget[0] <= 0:
            return n
        if n > self._budget[0]:
            text = text[: self._budget[0]] + "\n[output truncated by tito]\n"
        self._budget[0] -= n
        outs = self._outputs
        if outs and outs[-1].get("output_type") == "stream" and outs[-1]["name"] == self.name:
            outs[-1]["text"] += text
        else:
            outs.append({"output_type": "stream", "name": self.name, "text": text})
        return n

    def writelines(self, lines) -> None:
        for line in lines:
            self.write(line)

    def flush(self) -> None:
        pass

    def isatty(self) -> bool:
        return False

    def fileno(self) -> int:
        raise OSError("captured stream has no file descriptor")


def _safe_repr(value, limit: int = 20000) -> str:
    try:
        text = repr(value)
    except BaseException as exc:  # a student __repr__ that raises
        text = f"<repr failed: {type(exc).__name__}>"
    if not isinstance(text, str):
        text = "<repr returned a non-string>"
    return text if len(text) <= limit else text[:limit] + "..."


def child_main(
    cmd_fd: int,
    reply_fd: int,
    cells: Sequence[CellSpec],
    policy: Policy,
    template: Template,
    work_dir: str,
    protected: frozenset[str],
) -> None:
    """Entry point of the forked child. Never returns (the worker kills it when done)."""
    try:
        _child(cmd_fd, reply_fd, cells, policy, template, work_dir, protected)
    except BaseException as exc:  # setup failed: say so once, then die
        try:
            send_msg(reply_fd, {"op": "fatal", "error": f"{type(exc).__name__}: {exc}"})
        except BaseException:
            pass
    os._exit(70)


def _child(cmd_fd, reply_fd, cells, policy, template, work_dir, protected):
    # --- file descriptors: only our two pipes survive; stdio go to /dev/null
    cmd_fd, reply_fd = os.dup2(cmd_fd, 200), os.dup2(reply_fd, 201)
    devnull = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1, 2):
        os.dup2(devnull, fd)
    os.closerange(3, 200)
    os.closerange(202, 65536)
    # --- limits
    page = os.sysconf("SC_PAGE_SIZE")
    with open("/proc/self/statm") as f:
        vm_now = int(f.read().split()[0]) * page
    limit = vm_now + policy.memory_mb * (1 << 20)
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    fsize = policy.file_size_mb * (1 << 20)
    resource.setrlimit(resource.RLIMIT_FSIZE, (fsize, fsize))
    for kind, value in (
        (resource.RLIMIT_CPU, policy.cpu_seconds),
        (resource.RLIMIT_NPROC, policy.processes),
        (resource.RLIMIT_NOFILE, policy.open_files),
    ):
        if value:
            resource.setrlimit(kind, (int(value), int(value)))
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    # --- work directory and temp files
    os.chdir(work_dir)
    tmp = os.path.join(work_dir, ".tmp")
    os.makedirs(tmp, exist_ok=True)
    os.environ["TMPDIR"] = tmp
    import tempfile

    tempfile.tempdir = tmp
    if work_dir not in sys.path:
        sys.path.insert(0, work_dir)
    sys.dont_write_bytecode = True
    events: list = []  # (audit event, what was refused): drained after every cell
    # --- the notebook namespace, as __main__
    main = types.ModuleType("__main__")
    ns = main.__dict__
    ns["__builtins__"] = builtins
    outputs_box: list = [[]]

    def display(*objs, **_kw):
        for obj in objs:
            outputs_box[0].append(
                {
                    "output_type": "display_data",
                    "data": {"text/plain": _safe_repr(obj)},
                    "metadata": {},
                }
            )

    ns["display"] = display
    sys.modules["__main__"] = main
    # --- threads: refused (no audit event covers them in 3.11)
    import _thread
    import threading

    student_files = frozenset(f"<cell {c.label}>" for c in cells if c.student)

    def no_threads(*_a, **_k):
        frame, who = sys._getframe(1), "course"
        while frame is not None:
            if frame.f_code.co_filename in student_files:
                who = "student"
                break
            frame = frame.f_back
        events.append(("thread", "starting a thread", who))
        raise RuntimeError("tito: starting threads is not allowed while grading")

    for holder, attr in (
        (_thread, "start_new_thread"),
        (_thread, "start_new"),
        (threading, "_start_new_thread"),
    ):
        if hasattr(holder, attr):
            setattr(holder, attr, no_threads)
    guard = template.guard
    guard.accept((_thread, threading))  # the blockers are the state to keep from here on
    guard.path = list(sys.path)
    # --- the audit hook: from here on, the policy holds
    st = os.stat(work_dir)
    write_roots = frozenset({(st.st_dev, st.st_ino)})
    sys.addaudithook(
        make_audit_hook(
            policy,
            events,
            id(ns),
            write_roots,
            guard.lib_module_ids,
            guard.lib_class_ids,
            frozenset(f"<cell {c.label}>" for c in cells if not c.student),
            frozenset(f"<cell {c.label}>" for c in cells if c.student),
        )
    )
    plt = sys.modules.get("matplotlib.pyplot")
    close_figures = getattr(plt, "close", None)
    # captured references: later cells cannot swap what the runner uses
    _recv, _send, _monotonic = recv_msg, send_msg, time.monotonic
    _setitimer, _signal = signal.setitimer, signal.signal
    _format_exception = traceback.format_exception
    _check = guard.check
    trusted_vals: dict = {}
    timeout = float(policy.cell_timeout)

    def on_alarm(_signum, _frame):
        raise CellTimeout(f"the cell did not finish within {timeout:g} s")

    # the probe half of judged grade cells (tito/probe.py): armed with the worker's inputs
    # before the cell, its outputs collected after it (what they are decides nothing here)
    probe_mod = sys.modules.get("tito.probe")
    _arm = getattr(probe_mod, "_arm", None)
    _collect = getattr(probe_mod, "_collect", None)
    _send(reply_fd, {"op": "ready"})
    while True:
        msg = _recv(cmd_fd)
        op = msg.get("op") if isinstance(msg, dict) else None
        if op == "arm":  # before a judged grade cell: its probe's inputs (not timed)
            if _arm is not None:
                _arm(msg["module"], msg["check"], msg["payload"])
            _send(reply_fd, {"op": "armed", "nonce": msg["nonce"]})
            continue
        if op == "collect":  # after it: what its probe recorded (not timed)
            try:
                payload = _collect() if _collect is not None else None
            except BaseException as exc:  # noqa: B036 -- whatever broke, the judge says why
                payload = {"error": f"{type(exc).__name__}: {exc}"[:500]}
            _send(reply_fd, {"op": "probe", "nonce": msg["nonce"], "probe": payload})
            continue
        if op != "run":
            os._exit(0)
        spec = cells[int(msg["i"])]
        result = _run_cell(
            spec,
            ns,
            outputs_box,
            events,
            timeout,
            on_alarm,
            _setitimer,
            _signal,
            _format_exception,
            _check,
            protected,
            trusted_vals,
            close_figures,
            _monotonic,
        )
        result.update(op="result", i=spec.index, nonce=msg["nonce"])
        _send(reply_fd, result)


def _run_cell(
    spec,
    ns,
    outputs_box,
    events,
    timeout,
    on_alarm,
    _setitimer,
    _signal,
    _format_exception,
    _check,
    protected,
    trusted_vals,
    close_figures,
    _monotonic,
):
    outputs: list = []
    outputs_box[0] = outputs
    budget = [OUTPUT_LIMIT]
    out, err = _Capture("stdout", outputs, budget), _Capture("stderr", outputs, budget)
    filename = f"<cell {spec.label}>"
    linecache.cache[filename] = (len(spec.source), None, spec.source.splitlines(True), filename)
    notes: list[str] = []
    _restore_names(spec, ns, protected, trusted_vals, notes, before=True)
    del events[:]
    status, error, timed_out = "ok", None, False
    start = _monotonic()
    exc_info = None
    try:
        sys.stdout, sys.stderr = out, err
        _signal(signal.SIGALRM, on_alarm)
        _setitimer(signal.ITIMER_REAL, timeout, 1.0)
        try:
            value = _execute(spec.source, filename, ns)
        finally:
            _setitimer(signal.ITIMER_REAL, 0)
        if value is not None:
            outputs.append(
                {
                    "output_type": "execute_result",
                    "execution_count": spec.index + 1,
                    "data": {"text/plain": _safe_repr(value)},
                    "metadata": {},
                }
            )
            # partial credit (nbgrader's rule) only from a plain number, never a student object
            if type(value) in (int, float) or type(value).__module__ == "numpy":
                try:
                    outputs[-1]["partial"] = float(value)
                except BaseException:
                    pass
    except BaseException as exc:  # noqa: B036 -- the cell failed, whatever it raised
        _setitimer(signal.ITIMER_REAL, 0)
        status = "error"
        timed_out = isinstance(exc, CellTimeout)
        exc_info = exc
    finally:
        sys.stdout, sys.stderr = sys.__stdout__, sys.__stderr__
    seconds = _monotonic() - start
    # library state first (so formatting below runs on pristine libraries), then the names
    tamper = _check()
    if exc_info is not None:  # formatting may run student code (__str__): check again after
        error = _describe_error(exc_info, _format_exception, outputs)
        exc_info = None
        tamper += _check()
    _restore_names(spec, ns, protected, trusted_vals, notes, before=False)
    if close_figures is not None:
        try:
            close_figures("all")
        except BaseException:
            pass
    # refusals while a trusted cell ran count against the student only if student code was on
    # the stack; the others are the course's own cells doing something grading forbids
    blocked = [what for _e, what, who in events if spec.student or who == "student"]
    course = [what for _e, what, who in events if not spec.student and who != "student"]
    del events[:]
    return {
        "status": status,
        "error": error,
        "timed_out": timed_out,
        "seconds": round(seconds, 4),
        "outputs": outputs,
        "tamper": tamper,
        "names": notes,
        "blocked": blocked,
        "course": course,
    }


def _execute(source: str, filename: str, ns: dict):
    """Run a cell like IPython: the value of a final expression statement is returned."""
    tree = ast.parse(source, filename)
    last = None
    if tree.body and isinstance(tree.body[-1], ast.Expr) and not source.rstrip().endswith(";"):
        last = ast.Expression(tree.body.pop().value)
    exec(compile(tree, filename, "exec"), ns)
    if last is not None:
        return eval(compile(last, filename, "eval"), ns)
    return None


def _describe_error(exc, _format_exception, outputs) -> str:
    """Append an nbformat error output for ``exc``; return 'Type: message' (one line)."""
    ename = type(exc).__name__
    try:
        evalue = str(exc)
    except BaseException:
        evalue = "<str() of the exception failed>"
    if not isinstance(evalue, str):
        evalue = "<str() returned a non-string>"
    try:
        tb = exc.__traceback__
        # drop the runner's own frames (_execute): start at the cell's code
        while tb is not None and not tb.tb_frame.f_code.co_filename.startswith("<cell "):
            tb = tb.tb_next
        lines = _format_exception(type(exc), exc, tb)
        text = "".join(lines)
        if len(text) > 20000:
            text = text[:10000] + "\n...\n" + text[-10000:]
        trace = text.rstrip("\n").split("\n")
    except BaseException:
        trace = [f"{ename}: {evalue}"]
    outputs.append({"output_type": "error", "ename": ename, "evalue": evalue, "traceback": trace})
    first = evalue.strip().splitlines()[0] if evalue.strip() else ""
    return f"{ename}: {first}"[:300] if first else ename


def _restore_names(spec, ns, protected, trusted_vals, notes, *, before: bool) -> None:
    """Names the checks use keep the value trusted code gave them, and those values keep their
    insides (a function's closure cells, a class's methods)."""
    if ns.get("__builtins__") is not builtins:
        notes.append("replaced __builtins__")
        ns["__builtins__"] = builtins
    if not before and not spec.student:
        # this trusted cell's own bindings become the trusted values
        for name in spec.binds & protected:
            value = ns.get(name, _MISSING)
            if value is _MISSING:
                trusted_vals.pop(name, None)
            else:
                trusted_vals[name] = (value, _deep_snapshot(value))
    for name, (value, snap) in trusted_vals.items():
        if not before and not spec.student and name in spec.binds:
            continue
        if ns.get(name, _MISSING) is not value:
            if callable(value) or isinstance(value, types.ModuleType):
                notes.append(f"rebound {name}, which the checks use")
            ns[name] = value
        changed = _deep_restore(value, snap)
        if changed:
            notes.append(f"changed {changed} of {name}, which the checks use")


def _deep_snapshot(value):
    if isinstance(value, types.FunctionType):
        cells = value.__closure__ or ()
        return ("f", [(c, c.cell_contents if _filled(c) else _MISSING) for c in cells])
    if isinstance(value, type) and value.__flags__ & _HEAPTYPE:
        return ("c", {k: a for k, a in list(vars(value).items()) if _is_attr_api(a)})
    return None


def _filled(cell) -> bool:
    try:
        cell.cell_contents  # noqa: B018 -- raises ValueError when the cell is empty
    except ValueError:
        return False
    return True


def _deep_restore(value, snap) -> str | None:
    """Undo changes inside a protected function or class; name what changed (or None)."""
    if snap is None:
        return None
    kind, saved = snap
    changed = None
    if kind == "f":
        for cell, contents in saved:
            now = cell.cell_contents if _filled(cell) else _MISSING
            if now is not contents:
                changed = "a closure variable"
                if contents is not _MISSING:
                    cell.cell_contents = contents
        return changed
    attrs = vars(value)
    for k, a in saved.items():
        if attrs.get(k, _MISSING) is not a:
            changed = f"the attribute {k}"
            type.__setattr__(value, k, a)
    for k, a in list(attrs.items()):
        if k not in saved and _is_attr_api(a):
            changed = f"the attribute {k}"
            type.__delattr__(value, k)
    return changed
