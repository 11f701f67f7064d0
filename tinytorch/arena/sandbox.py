"""The parent side of the sandbox: start the runner, talk to it, enforce limits, classify.

One `RunnerProcess` = one subprocess in its own session (process group), in a directory the
caller prepared, with a minimal environment, a wall-time limit enforced here (every send and
receive gives up at its deadline), CPU, memory, file-size and open-file limits applied by the
runner before it imports anything heavy, and stdout + stderr read through pipes with a byte
cap (a submission that prints megabytes is killed and flagged; the harness never holds more
than a few KiB of it). Requests and answers travel on two more pipes (`protocol.py`); the
harness (`harness.py`) decides what to ask and times every answer itself. The process group is
killed at the end whatever happened, and `os.wait4` gives the child's own peak memory.

Behind the OS boundary (the default, `boundary.py`) the runner runs inside bubblewrap: it sees
the interpreter, the dependencies and the package read-only (the bundled test data masked by an
empty file), its own submission (and, for training, the training split) read-only inside a
size-capped tmpfs that is its only writable place, no network, its own PID namespace (it
cannot see or signal the harness or other runs), and it dies with the harness.
"""

from __future__ import annotations

import json
import os
import signal
import struct
import subprocess
import sys
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path

RUNNER_MODULE = "tinytorch.arena.runner"
_PACKAGE_ROOT = str(Path(__file__).resolve().parents[2])  # the directory holding tinytorch/


@dataclass(frozen=True)
class SandboxLimits:
    """Limits of one sandboxed run. Every field is a reason a submission can fail."""

    wall_seconds: float = 30.0  # no answer this long after a request (or the start): "timeout"
    run_seconds: float = 300.0  # the whole conversation (every request) must end within this
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
            "run_seconds": self.run_seconds,
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
        self.sealed = False  # once set, nothing more is kept (bytes are still counted)

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
            if not self.sealed and len(self.head) < self.head_limit:
                self.head += chunk[: self.head_limit - len(self.head)]
            if self.tail_limit and not self.sealed:
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


SEALED_MESSAGE = 120  # characters of a runner's own error text kept once it saw hidden inputs
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


class RunnerProcess:
    """One sandboxed runner and the harness's side of its channel (`protocol.py`).

        proc = RunnerProcess(box, spec, limits).start()
        kind, payload = proc.receive()          # READY
        proc.send(protocol.QUERY, nonce + x)    # the next request only after the answer
        outcome = proc.finish()                 # RunOutcome: how it ended

    Two wall-time limits: an answer must come within `wall_seconds` of its request (the
    first frame within `wall_seconds` of the start), and the whole conversation within
    `run_seconds`; `send` and `receive` give up at the nearer deadline, and `finish` kills the
    process group whatever happened."""

    def __init__(self, sandbox: Path, spec: dict, limits: SandboxLimits,
                 python: str | None = None, boundary: bool = True):
        self.sandbox = Path(sandbox)
        self.spec, self.limits, self.python, self.boundary = spec, limits, python, boundary
        self.proc: subprocess.Popen | None = None
        self.flags = {"output": False, "timeout": False}
        self.violation = ""  # a protocol violation the harness saw ("" if none)
        self.sealed = False  # the hidden inputs were sent: the runner's own text is cut short

    # -- start ------------------------------------------------------------------------------
    def start(self) -> RunnerProcess:
        sandbox = self.sandbox
        (sandbox / "tmp").mkdir(exist_ok=True)
        spec = {**self.spec, "sandbox": str(sandbox), "limits": self.limits.as_dict()}
        if self.boundary and os.geteuid() == 0:
            spec["uid"] = SANDBOX_UID
        spec_path = sandbox / "spec.json"
        spec_path.write_text(json.dumps(spec), encoding="utf-8")
        req_r, self.req_w = os.pipe()
        self.ans_r, ans_w = os.pipe()
        cmd = [self.python or sys.executable, "-B", "-s", "-m", RUNNER_MODULE, str(spec_path),
               str(req_r), str(ans_w)]
        if self.boundary:
            cmd = boundary_argv(sandbox, cmd, self.limits)
        self.started = time.perf_counter()
        now = time.monotonic()
        self.deadline = now + max(self.limits.run_seconds, self.limits.wall_seconds)
        self.request_deadline = now + self.limits.wall_seconds
        try:
            self.proc = subprocess.Popen(
                cmd,
                cwd=sandbox,
                env=child_env(sandbox),
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                pass_fds=(req_r, ans_w),
                start_new_session=True,  # its own process group, killed as a whole at the end
            )
        except BaseException:
            for fd in (self.req_w, self.ans_r):
                os.close(fd)
            raise
        finally:
            os.close(req_r)
            os.close(ans_w)
        os.set_blocking(self.req_w, False)
        self.counter = {"n": 0, "lock": threading.Lock()}
        cap = self.limits.output_bytes
        self.out_reader = _CappedReader(self.proc.stdout, self.counter, cap, self._exceeded,
                                        2048, 0)
        self.err_reader = _CappedReader(self.proc.stderr, self.counter, cap, self._exceeded,
                                        0, 4096)
        self.out_reader.start()
        self.err_reader.start()
        self.waited: dict = {}
        self.done = threading.Event()
        self.waiter = threading.Thread(target=self._wait_child, daemon=True)
        self.waiter.start()
        return self

    def _exceeded(self) -> None:
        if not self.flags["output"]:
            self.flags["output"] = True
            _kill_group(self.proc.pid)

    def _wait_child(self) -> None:
        _, status, usage = os.wait4(self.proc.pid, 0)
        self.waited["status"], self.waited["usage"] = status, usage
        self.done.set()

    # -- the channel ------------------------------------------------------------------------
    def send(self, kind: bytes, payload: bytes = b"") -> None:
        from . import protocol

        self.request_deadline = time.monotonic() + self.limits.wall_seconds
        try:
            protocol.write_all(self.req_w, protocol.frame(kind, payload), self._deadline())
        except protocol.Timeout:
            raise self._timed_out() from None

    def receive(self) -> tuple[bytes, bytes]:
        """The runner's next frame (before the nearer of the two deadlines)."""
        from . import protocol

        try:
            return protocol.read_frame(self.ans_r, self._deadline())
        except protocol.Timeout:
            raise self._timed_out() from None

    def _deadline(self) -> float:
        return min(self.deadline, self.request_deadline)

    def _timed_out(self):
        from . import protocol

        self.flags["timeout"] = "run" if self.deadline <= self.request_deadline else "request"
        return protocol.Timeout(self.flags["timeout"])

    def seconds_left(self) -> float:
        return self._deadline() - time.monotonic()

    def seal_output(self, settle: float = 0.5) -> None:
        """Keep nothing more of what the runner prints (still counted against the cap): called
        just before the first hidden input is sent, so that the output shown back to the team
        (its report, its reason) holds nothing it printed after seeing the hidden inputs. What
        it printed before (flushed by the runner before 'ready') is drained first."""
        import fcntl
        import termios

        end = time.monotonic() + settle
        for reader in (self.out_reader, self.err_reader):
            fd = reader.stream.fileno()
            while time.monotonic() < end:
                try:
                    left = struct.unpack("i", fcntl.ioctl(fd, termios.FIONREAD, b"\0" * 4))[0]
                except OSError:
                    break
                if left == 0:
                    break
                time.sleep(0.002)
        time.sleep(0.01)  # the reader thread keeps the chunk it has just read
        self.out_reader.sealed = self.err_reader.sealed = True
        self.sealed = True

    # -- the end ----------------------------------------------------------------------------
    def abort(self) -> None:
        """Kill the runner's process group now (the harness is giving up on this run)."""
        if self.proc is not None:
            _kill_group(self.proc.pid)

    def finish(self, *, complete: bool = False, error: dict | None = None,
               violation: str = "", closed: bool = False, checked: bool = False) -> RunOutcome:
        """Stop the runner and classify how it ended. ``complete``: every request was answered
        (the runner is told to exit); ``error``: the runner's own error frame; ``violation``:
        a protocol violation the harness saw; ``closed``: its answer channel closed early;
        ``checked``: ``error`` is the harness's own finding (its text is kept whole)."""
        from . import protocol

        proc = self.proc
        if complete and proc.poll() is None:
            timeout = self.flags["timeout"]
            try:
                self.send(protocol.EXIT)
            except protocol.ProtocolError:
                pass
            self.flags["timeout"] = timeout  # every answer is in: a slow exit changes nothing
        if complete or closed or error is not None:  # let it end by itself, briefly
            self.done.wait(max(0.0, min(2.0, self.deadline - time.monotonic())))
        killed_by_harness = not self.done.is_set()
        _kill_group(proc.pid)
        self.done.wait()
        wall = time.perf_counter() - self.started
        _kill_group(proc.pid)  # anything it left behind in its group
        for fd in (self.req_w, self.ans_r):
            try:
                os.close(fd)
            except OSError:
                pass
        status, usage = self.waited["status"], self.waited["usage"]
        proc.returncode = os.waitstatus_to_exitcode(status)  # reaped by wait4; keep Popen quiet
        for t in (self.out_reader, self.err_reader):
            t.join(timeout=5)
        outcome = RunOutcome(
            ok=False,
            result=None,
            returncode=proc.returncode,
            wall_seconds=wall,
            cpu_seconds=usage.ru_utime + usage.ru_stime,
            peak_rss_kb=int(usage.ru_maxrss),
            output_bytes=self.counter["n"],
            stdout_head=self.out_reader.head.decode("utf-8", "replace"),
            stderr_tail=self.err_reader.tail_text(),
        )
        if self.boundary and proc.returncode > 128:  # bwrap reports a signal as 128 + its number
            proc.returncode = 128 - proc.returncode
        sig = -proc.returncode if proc.returncode < 0 else 0
        if killed_by_harness and (complete or error is not None or violation):
            sig = 0  # the harness ended it: not the runner's signal
        if closed and killed_by_harness and not violation:
            violation = "it closed its answer channel and kept running"
        outcome.signal_name = signal.Signals(sig).name if sig else ""
        if error is not None and self.sealed and not checked:  # its text, after the inputs
            message = str(error.get("message") or "")
            if len(message) > SEALED_MESSAGE:
                error = {**error, "message": message[:SEALED_MESSAGE] + " [cut: after the "
                         "hidden inputs were sent a run's own text is kept short]"}
        _classify(outcome, self.flags, self.limits, error, violation, complete)
        return outcome


def run_phase(
    sandbox: Path,
    spec: dict,
    limits: SandboxLimits,
    python: str | None = None,
    boundary: bool = True,
) -> RunOutcome:
    """Start the runner in `sandbox` and wait for it to say it is ready or fail: a smoke test
    of the set-up (the arena's phases drive a `RunnerProcess` through `harness.py`)."""
    from . import protocol

    proc = RunnerProcess(sandbox, spec, limits, python, boundary).start()
    try:
        kind, payload = proc.receive()
    except protocol.ChannelClosed:
        return proc.finish(closed=True)
    except protocol.ProtocolError as exc:
        return proc.finish(violation=str(exc))
    if kind == protocol.ERROR:
        return proc.finish(error=protocol.decode_json(payload, "error report"))
    if kind != protocol.READY:
        return proc.finish(violation=f"it sent {kind!r} before saying it was ready")
    return proc.finish(complete=True)


def _last_line(text: str) -> str:
    lines = [ln.strip() for ln in text.strip().splitlines() if ln.strip()]
    return lines[-1][:300] if lines else ""


def _classify(o: RunOutcome, flags: dict, limits: SandboxLimits, error: dict | None,
              violation: str, complete: bool) -> None:
    """Set ok/kind/message from how the run ended. First match wins."""
    from tinytorch.competition import ERROR_KINDS

    if flags["output"]:
        o.kind = "output"
        o.message = (
            f"printed more than {limits.output_bytes} bytes to stdout/stderr; stopped after "
            f"{o.output_bytes} bytes"
        )
    elif flags["timeout"]:
        o.kind = "timeout"
        if flags["timeout"] == "run":
            o.message = (
                f"did not answer every request within the {limits.run_seconds:g} s limit of "
                "the whole run (too slow for the number of queries?)"
            )
        else:
            o.message = f"no result within the {limits.wall_seconds:g} s wall-time limit (a hang?)"
    elif error is not None:  # the runner's own report: only ever about its own failure
        kind = error.get("kind")
        message = str(error.get("message") or "failed without a message")[:1000]
        if isinstance(kind, str) and kind in ERROR_KINDS:
            o.kind, o.message = kind, message
        else:  # a kind the arena does not know is not a status: the run crashed
            o.kind = "crash"
            o.message = f"reported an unknown failure kind {str(kind)[:60]!r}: {message}"
    elif violation:
        o.kind = "crash"
        o.message = f"broke the arena's request/answer protocol: {violation}"[:1000]
    elif complete:
        o.ok = True
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
    else:
        o.kind = "crash"
        tail = _last_line(o.stderr_tail)
        o.message = f"exited with code {o.returncode} before answering every request" + (
            f": {tail}" if tail else ""
        )
