"""The parent side of the sandbox: start the runner, enforce limits, classify how it ended.

One call of `run_phase` = one subprocess in its own session (process group), in a directory
the caller prepared, with a minimal environment, a wall-time limit enforced here, CPU, memory,
file-size and open-file limits applied by the runner before it imports anything heavy, and
stdout + stderr read through pipes with a byte cap (a submission that prints megabytes is
killed and flagged; the harness never holds more than a few KiB of it). The process group is
killed at the end whatever happened, and `os.wait4` gives the child's own peak memory.

Behind the OS boundary (the default, `boundary.py`) the runner runs inside bubblewrap: it sees
the interpreter, the dependencies and the package read-only (the bundled test data masked by an
empty file), its own inputs and submission read-only inside a size-capped tmpfs that is its
only writable place, no network, its own PID namespace (it cannot see or signal the harness or
other runs), and it dies with the harness.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path

RUNNER_MODULE = "tinytorch.arena.runner"
_PACKAGE_ROOT = str(Path(__file__).resolve().parents[2])  # the directory holding tinytorch/
RESULT_CAP = 4 * 2**20  # bytes of result JSON the parent accepts


@dataclass(frozen=True)
class SandboxLimits:
    """Limits of one sandboxed run. Every field is a reason a submission can fail."""

    wall_seconds: float = 30.0  # killed after this wall time: kind "timeout" (a hang)
    cpu_seconds: float = 60.0  # RLIMIT_CPU: kind "cpu_limit" (a busy loop under a long wall limit)
    memory_bytes: int = 1 << 30  # RLIMIT_AS (address space): kind "memory"
    file_bytes: int = 16 << 20  # RLIMIT_FSIZE, largest file it may write: kind "file_size"
    output_bytes: int = 1 << 20  # stdout + stderr bytes before it is killed: kind "output"
    open_files: int = 256  # RLIMIT_NOFILE
    processes: int = 32  # RLIMIT_NPROC (behind the boundary: per sandbox user)
    disk_bytes: int = 256 << 20  # size of the run's tmpfs: all it may write (behind the boundary)

    def as_dict(self) -> dict:
        return {
            "wall_seconds": self.wall_seconds,
            "cpu_seconds": self.cpu_seconds,
            "memory_bytes": self.memory_bytes,
            "file_bytes": self.file_bytes,
            "output_bytes": self.output_bytes,
            "open_files": self.open_files,
            "processes": self.processes,
        }


@dataclass
class RunOutcome:
    """How one sandboxed run ended."""

    ok: bool
    result: dict | None  # the runner's JSON result (ok or with an "error")
    kind: str = ""  # failure kind (an ERROR_KINDS key) when not ok
    message: str = ""  # why, in one line
    returncode: int | None = None
    signal_name: str = ""
    wall_seconds: float = 0.0
    cpu_seconds: float = 0.0
    peak_rss_kb: int = 0  # ru_maxrss of this child alone (os.wait4)
    output_bytes: int = 0  # stdout + stderr bytes it printed (counted up to the kill)
    stdout_head: str = ""
    stderr_tail: str = ""
    extra: dict = field(default_factory=dict)


class _CappedReader(threading.Thread):
    """Reads a pipe to EOF keeping a head and a tail; calls `on_exceed` past the shared cap."""

    def __init__(self, stream, counter: dict, cap: int, on_exceed, head: int, tail: int):
        super().__init__(daemon=True)
        self.stream, self.counter, self.cap, self.on_exceed = stream, counter, cap, on_exceed
        self.head_limit, self.tail = head, deque(maxlen=max(1, tail // 4096 + 1))
        self.head = bytearray()
        self.tail_limit = tail

    def run(self) -> None:
        fd = self.stream.fileno()
        while True:
            try:
                chunk = os.read(fd, 65536)
            except OSError:
                break
            if not chunk:
                break
            with self.counter["lock"]:
                self.counter["n"] += len(chunk)
                over = self.counter["n"] > self.cap
            if len(self.head) < self.head_limit:
                self.head += chunk[: self.head_limit - len(self.head)]
            if self.tail_limit:
                self.tail.append(chunk[-self.tail_limit :])
            if over:
                self.on_exceed()
                # keep draining (and discarding) so the child never blocks on a full pipe
        self.stream.close()

    def tail_text(self) -> str:
        data = b"".join(self.tail)[-self.tail_limit :] if self.tail_limit else b""
        return data.decode("utf-8", "replace")


def child_env(sandbox: Path) -> dict:
    """The runner's whole environment: nothing of the harness's leaks in."""
    return {
        "PATH": "/usr/bin:/bin",
        "HOME": str(sandbox),
        "TMPDIR": str(sandbox / "tmp"),
        "LANG": "C.UTF-8",
        "PYTHONPATH": _PACKAGE_ROOT,
        "PYTHONDONTWRITEBYTECODE": "1",
        "PYTHONNOUSERSITE": "1",
        "PYTHONHASHSEED": "0",
        "PYTHONIOENCODING": "utf-8",
        "OPENBLAS_NUM_THREADS": "1",
        "OMP_NUM_THREADS": "1",
        "MKL_NUM_THREADS": "1",
        "MPLBACKEND": "Agg",
        "MPLCONFIGDIR": str(sandbox / "tmp"),
    }


def pick_cpu() -> int | None:
    """The CPU every run is pinned to: the last one this process may use (fixed affinity)."""
    if not hasattr(os, "sched_getaffinity"):
        return None
    return max(os.sched_getaffinity(0))


def _kill_group(pgid: int) -> None:
    try:
        os.killpg(pgid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


SANDBOX_UID = 65534  # who the runner becomes when the host runs the boundary as root
HIDDEN_DATA = ("datasets/digits.npz",)  # package files no run may read (the test labels)


def boundary_argv(sandbox: Path, cmd: list[str], limits: SandboxLimits) -> list[str]:
    """``cmd`` behind the OS boundary: runtime and package read-only (test data masked), the
    sandbox's own files read-only in a size-capped tmpfs at the same path, ``tmp/`` writable."""
    from . import boundary

    box = str(sandbox)
    pkg = os.path.join(_PACKAGE_ROOT, "tinytorch")
    mounts = boundary.runtime_mounts(exclude=[_PACKAGE_ROOT])
    mounts += boundary.package_view(pkg, hidden_files=HIDDEN_DATA)
    for item in sorted(sandbox.iterdir()):
        if item.name != "tmp" and not item.is_symlink():
            mounts.append(boundary.Mount("ro", str(item), str(item)))
    mb = max(1, limits.disk_bytes >> 20)
    view = boundary.View(
        work=box, work_mb=mb, mounts=tuple(mounts), extra=("--perms", "1777", "--dir", f"{box}/tmp")
    )
    keep = ("CAP_SETUID", "CAP_SETGID") if os.geteuid() == 0 else ()
    return boundary.bwrap_argv(view, cmd, keep_caps=keep)


def run_phase(
    sandbox: Path,
    spec: dict,
    limits: SandboxLimits,
    python: str | None = None,
    boundary: bool = True,
) -> RunOutcome:
    """Run the runner in `sandbox` (which must hold spec's input files); classify the end.
    ``boundary``: behind the OS boundary (False: only the audit hook; trusted code only)."""
    sandbox = Path(sandbox)
    (sandbox / "tmp").mkdir(exist_ok=True)
    spec = {**spec, "sandbox": str(sandbox), "limits": limits.as_dict()}
    if boundary and os.geteuid() == 0:
        spec["uid"] = SANDBOX_UID
    spec_path = sandbox / "spec.json"
    spec_path.write_text(json.dumps(spec), encoding="utf-8")
    read_fd, write_fd = os.pipe()
    cmd = [python or sys.executable, "-B", "-s", "-m", RUNNER_MODULE, str(spec_path), str(write_fd)]
    if boundary:
        cmd = boundary_argv(sandbox, cmd, limits)
    start = time.perf_counter()
    try:
        proc = subprocess.Popen(
            cmd,
            cwd=sandbox,
            env=child_env(sandbox),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            pass_fds=(write_fd,),
            start_new_session=True,  # its own process group, killed as a whole at the end
        )
    finally:
        os.close(write_fd)
    pgid = proc.pid
    flags = {"output": False, "timeout": False}

    def exceeded() -> None:
        if not flags["output"]:
            flags["output"] = True
            _kill_group(pgid)

    counter = {"n": 0, "lock": threading.Lock()}
    out_reader = _CappedReader(proc.stdout, counter, limits.output_bytes, exceeded, 2048, 0)
    err_reader = _CappedReader(proc.stderr, counter, limits.output_bytes, exceeded, 0, 4096)
    out_reader.start()
    err_reader.start()
    result_chunks: list[bytes] = []

    def read_result() -> None:
        size = 0
        with os.fdopen(read_fd, "rb", buffering=0) as f:
            while True:
                chunk = f.read(65536)
                if not chunk:
                    break
                size += len(chunk)
                if size <= RESULT_CAP:
                    result_chunks.append(chunk)

    result_reader = threading.Thread(target=read_result, daemon=True)
    result_reader.start()
    waited: dict = {}
    done = threading.Event()

    def wait_child() -> None:
        _, status, usage = os.wait4(proc.pid, 0)
        waited["status"], waited["usage"] = status, usage
        done.set()

    waiter = threading.Thread(target=wait_child, daemon=True)
    waiter.start()
    if not done.wait(limits.wall_seconds):
        flags["timeout"] = True
        _kill_group(pgid)
        done.wait()
    wall = time.perf_counter() - start
    _kill_group(pgid)  # anything it left behind in its group
    status, usage = waited["status"], waited["usage"]
    proc.returncode = os.waitstatus_to_exitcode(status)  # reaped by wait4; keep Popen quiet
    for t in (out_reader, err_reader, result_reader):
        t.join(timeout=5)
    raw = b"".join(result_chunks)
    result = None
    bad_result = ""
    if raw:
        try:
            result = json.loads(raw.decode("utf-8"))
            if not isinstance(result, dict):
                raise ValueError("not an object")
        except (ValueError, UnicodeDecodeError) as exc:
            result, bad_result = None, f"sent an unreadable result ({exc})"
    outcome = RunOutcome(
        ok=False,
        result=result,
        returncode=proc.returncode,
        wall_seconds=wall,
        cpu_seconds=usage.ru_utime + usage.ru_stime,
        peak_rss_kb=int(usage.ru_maxrss),
        output_bytes=counter["n"],
        stdout_head=out_reader.head.decode("utf-8", "replace"),
        stderr_tail=err_reader.tail_text(),
    )
    if boundary and proc.returncode > 128:  # bwrap reports a signal as 128 + its number
        proc.returncode = 128 - proc.returncode
    sig = -proc.returncode if proc.returncode < 0 else 0
    outcome.signal_name = signal.Signals(sig).name if sig else ""
    _classify(outcome, flags, limits, bad_result)
    return outcome


def _last_line(text: str) -> str:
    lines = [ln.strip() for ln in text.strip().splitlines() if ln.strip()]
    return lines[-1][:300] if lines else ""


def _classify(o: RunOutcome, flags: dict, limits: SandboxLimits, bad_result: str) -> None:
    """Set ok/kind/message from how the run ended. First match wins."""
    if flags["output"]:
        o.kind = "output"
        o.message = (
            f"printed more than {limits.output_bytes} bytes to stdout/stderr; stopped after "
            f"{o.output_bytes} bytes"
        )
    elif flags["timeout"]:
        o.kind = "timeout"
        o.message = f"no result within the {limits.wall_seconds:g} s wall-time limit (a hang?)"
    elif o.result is not None and not o.result.get("ok", False):
        err = o.result.get("error") or {}
        o.kind = str(err.get("kind") or "crash")
        o.message = str(err.get("message") or "failed without a message")[:1000]
    elif o.signal_name in ("SIGXCPU",) or (
        o.signal_name == "SIGKILL" and o.cpu_seconds >= limits.cpu_seconds - 0.05
    ):
        o.kind = "cpu_limit"
        o.message = f"used more than {limits.cpu_seconds:g} s of CPU time ({o.cpu_seconds:.1f} s)"
    elif o.signal_name == "SIGXFSZ":
        o.kind = "file_size"
        o.message = f"wrote a file larger than the {limits.file_bytes} byte limit"
    elif o.signal_name:
        o.kind = "crash"
        o.message = f"killed by {o.signal_name}" + (
            f": {_last_line(o.stderr_tail)}" if o.stderr_tail.strip() else ""
        )
    elif bad_result:
        o.kind, o.message = "crash", bad_result
    elif o.result is None:
        o.kind = "crash"
        tail = _last_line(o.stderr_tail)
        o.message = f"exited with code {o.returncode} without a result" + (
            f": {tail}" if tail else ""
        )
    else:
        o.ok = True
