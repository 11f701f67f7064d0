"""The child side of the arena: runs ONE phase of ONE submission inside its sandbox.

    python -B -s -m tinytorch.arena.runner SPEC_JSON REQUEST_FD ANSWER_FD

Started by `tinytorch.arena.sandbox.RunnerProcess` in a fresh temporary directory, in a new
session, with a minimal environment. In order, it:

1. applies the resource limits (RLIMIT_AS, RLIMIT_CPU, RLIMIT_FSIZE, RLIMIT_NOFILE, no core
   dumps) and pins itself to one CPU,
2. imports numpy and the competition module (the training phase also loads the training
   split; no phase has the hidden test inputs or labels on disk),
3. installs an audit hook (`sys.addaudithook`, which cannot be removed) that ends the process
   on a read of the bundled test data or the arena's files, a write outside the sandbox, a new
   process, a socket, a limit change or native-code loading, after reporting what was tried,
4. imports the submission and serves the harness's requests (`protocol.py`): "infer" loads the
   weights, then answers one query at a time; "train" trains when told, then predicts the
   inputs it is sent; "null" is the harness's null model (no submission at all),
5. answers on ANSWER_FD with plain data only (.npy scores echoing each request's nonce).

Nothing this process says about itself is trusted: the harness times every request with its
own clock, scores the raw predictions with labels only it holds, and refuses any frame it did
not ask for. The audit hook is a second layer that gives clear messages; the boundary is the
OS one around this process (bubblewrap, see tinytorch/arena/boundary.py and docs/grading.md):
no arena files, no test data, no network, its own PID namespace, a size-capped tmpfs as its
only writable place.
"""

from __future__ import annotations

import errno
import io
import json
import os
import resource
import sys
import traceback

from tinytorch.arena import protocol

EXIT_VIOLATION = 86  # the audit hook ended the process after reporting a violation
_WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_APPEND
_ALWAYS_WRITABLE = ("/dev/null", "/dev/stdout", "/dev/stderr")

# audit events that are refused outright (kind "forbidden_call")
_FORBIDDEN_EVENTS = {
    "subprocess.Popen": "start a process",
    "os.system": "start a process",
    "os.exec": "replace the process (exec)",
    "os.posix_spawn": "start a process",
    "os.spawn": "start a process",
    "os.fork": "fork the process",
    "os.forkpty": "fork the process",
    "os.startfile": "start a program",
    "socket.connect": "open a network connection",
    "socket.bind": "listen on the network",
    "socket.sendto": "send network packets",
    "socket.sendmsg": "send network packets",
    "socket.getaddrinfo": "look up a network address",
    "socket.gethostbyname": "look up a network address",
    "ctypes.dlopen": "load native code (ctypes)",
    "ctypes.dlsym": "look up native code (ctypes)",
    "ctypes.call_function": "call native code (ctypes)",
    "resource.setrlimit": "change its resource limits",
    "resource.prlimit": "change resource limits",
    "os.killpg": "signal a process group",
}
# audit events whose path arguments must stay inside the sandbox: event -> argument positions
_PATH_EVENTS = {
    "os.rename": (0, 1),
    "os.replace": (0, 1),
    "os.remove": (0,),
    "os.unlink": (0,),
    "os.rmdir": (0,),
    "os.mkdir": (0,),
    "os.chmod": (0,),
    "os.chown": (0,),
    "os.link": (0, 1),
    "os.symlink": (1,),
    "os.truncate": (0,),
    "os.utime": (0,),
    "os.chflags": (0,),
    "os.lchflags": (0,),
    "os.mkfifo": (0,),
    "os.mknod": (0,),
    "shutil.rmtree": (0,),
    "shutil.copyfile": (1,),
    "shutil.copymode": (1,),
    "shutil.copystat": (1,),
    "shutil.copytree": (1,),
    "shutil.move": (0, 1),
    "sqlite3.connect": (0,),  # SQLite opens its files in C, without an "open" event
}


class _Reporter:
    """Writes frames to the harness's answer pipe (raw fd: works inside the audit hook). After
    an error frame nothing more is sent: the process is about to end."""

    def __init__(self, fd: int):
        self.fd = fd
        self.failed = False

    def send(self, kind: bytes, payload: bytes = b"") -> None:
        if self.failed:
            return
        protocol.write_all(self.fd, protocol.frame(kind, payload))

    def fail(self, kind: str, message: str, stage: str = "") -> None:
        if self.failed:
            return
        body = {"kind": kind, "message": message, "stage": stage}
        try:
            self.send(protocol.ERROR, json.dumps(body).encode("utf-8")[: protocol.MAX_FRAME])
        except OSError:
            pass
        self.failed = True


class _Guard:
    """The audit hook: refuses what a submission must not do, naming what was tried."""

    def __init__(self, sandbox: str, forbidden_paths: list[str], reporter: _Reporter):
        self.sandbox = os.path.realpath(sandbox)
        self.forbidden = [os.path.realpath(p) for p in forbidden_paths]
        self.reporter = reporter
        self.pid = os.getpid()
        self.busy = False
        self.stage = "setup"

    # -- helpers --------------------------------------------------------------------------
    def _real(self, path) -> str | None:
        if path is None or isinstance(path, int):
            return None
        try:
            return os.path.realpath(os.fsdecode(path))
        except (TypeError, ValueError):
            return None

    def _inside(self, real: str, root: str) -> bool:
        return real == root or real.startswith(root.rstrip("/") + "/")

    def _violation(self, kind: str, message: str) -> None:
        try:
            self.reporter.fail(kind, message, self.stage)
        finally:
            os._exit(EXIT_VIOLATION)

    def _check_read(self, raw, real: str) -> None:
        for bad in self.forbidden:
            if self._inside(real, bad):
                self._violation(
                    "forbidden_read",
                    f"tried to read {os.fsdecode(raw)!r} during {self.stage}: the hidden test "
                    "data and the arena's files are off limits (the inputs arrive one query at "
                    "a time)",
                )
        parts = real.split("/")
        other_process = len(parts) > 2 and parts[1] == "proc" and parts[2].isdigit()
        if other_process and int(parts[2]) != self.pid:
            self._violation(
                "forbidden_read",
                f"tried to read {os.fsdecode(raw)!r} (another process) during {self.stage}",
            )

    def _check_write(self, raw, real: str) -> None:
        text = os.fsdecode(raw)
        if text in _ALWAYS_WRITABLE or self._inside(real, self.sandbox):
            return
        self._violation(
            "forbidden_write",
            f"tried to write {text!r} during {self.stage}: a submission may only write inside "
            "its own sandbox folder",
        )

    # -- the hook -------------------------------------------------------------------------
    def __call__(self, event: str, args: tuple) -> None:
        if self.busy:
            return
        self.busy = True
        try:
            self._dispatch(event, args)
        finally:
            self.busy = False

    def _dispatch(self, event: str, args: tuple) -> None:
        if event == "open":
            path, mode, flags = (tuple(args) + (None, None, None))[:3]
            real = self._real(path)
            if real is None:
                return
            writing = (isinstance(mode, str) and any(c in mode for c in "wax+")) or (
                isinstance(flags, int) and bool(flags & _WRITE_FLAGS)
            )
            self._check_read(path, real)
            if writing:
                self._check_write(path, real)
            return
        if event in _FORBIDDEN_EVENTS:
            self._violation(
                "forbidden_call",
                f"tried to {_FORBIDDEN_EVENTS[event]} ({event}) during {self.stage}",
            )
        if event == "os.kill":
            pid = args[0] if args else None
            if pid not in (0, self.pid):
                self._violation(
                    "forbidden_call", f"tried to signal process {pid} during {self.stage}"
                )
            return
        positions = _PATH_EVENTS.get(event)
        if positions:
            for i in positions:
                if i < len(args):
                    real = self._real(args[i])
                    if real is not None:
                        self._check_read(args[i], real)
                        self._check_write(args[i], real)


def _apply_limits(spec: dict) -> dict:
    """setrlimit + CPU affinity, before anything heavy is imported. Returns what was applied."""
    lim = spec["limits"]
    applied = {}

    def setlim(name: str, value: int, hard_extra: int = 0) -> None:
        kind = getattr(resource, name)
        soft_old, hard_old = resource.getrlimit(kind)
        hard = value + hard_extra
        if hard_old != resource.RLIM_INFINITY:
            hard = min(hard, hard_old)
        resource.setrlimit(kind, (min(value, hard), hard))
        applied[name] = min(value, hard)

    setlim("RLIMIT_AS", int(lim["memory_bytes"]))
    setlim("RLIMIT_CPU", max(1, int(lim["cpu_seconds"] + 0.999)), hard_extra=1)
    setlim("RLIMIT_FSIZE", int(lim["file_bytes"]))
    setlim("RLIMIT_NOFILE", int(lim["open_files"]))
    setlim("RLIMIT_CORE", 0)
    if lim.get("processes"):
        setlim("RLIMIT_NPROC", int(lim["processes"]))
    uid = spec.get("uid")
    if uid is not None:  # behind the boundary on a root host: become nobody (NPROC binds)
        os.setgroups([])
        os.setresgid(uid, uid, uid)
        os.setresuid(uid, uid, uid)
        applied["uid"] = uid
    cpu = spec.get("cpu")
    if cpu is not None and hasattr(os, "sched_setaffinity"):
        try:
            os.sched_setaffinity(0, {int(cpu)})
            applied["cpu"] = int(cpu)
        except OSError as exc:
            applied["cpu"] = f"not pinned: {exc}"
    return applied


def _submission_frames(tb, sandbox: str) -> str:
    """`file:line in func` of the traceback frames inside the sandbox (the team's code)."""
    frames = [
        f for f in traceback.extract_tb(tb) if os.path.realpath(f.filename).startswith(sandbox)
    ]
    shown = [
        f"{os.path.relpath(os.path.realpath(f.filename), sandbox)}:{f.lineno} in {f.name}"
        for f in frames[-3:]
    ]
    return (" (at " + " <- ".join(reversed(shown)) + ")") if shown else ""


def _load_entry(pkg_dir: str, entry: str | None, base):
    """Import pkg_dir/submission.py and return its CompetitionSubmission subclass."""
    import importlib.util

    path = os.path.join(pkg_dir, "submission.py")
    sys.path.insert(0, pkg_dir)  # helper modules next to submission.py
    spec = importlib.util.spec_from_file_location("submission", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules["submission"] = module
    spec.loader.exec_module(module)
    if entry:
        cls = getattr(module, entry, None)
        if not (isinstance(cls, type) and issubclass(cls, base)):
            raise _Malformed(
                f"submission.yaml names entry {entry!r}, but submission.py has no "
                f"CompetitionSubmission subclass of that name"
            )
        return cls
    found = [
        v
        for v in vars(module).values()
        if isinstance(v, type) and issubclass(v, base) and v is not base
        and v.__module__ == "submission"
    ]
    if len(found) != 1:
        names = ", ".join(sorted(c.__name__ for c in found)) or "none"
        raise _Malformed(
            f"submission.py must define exactly one CompetitionSubmission subclass (found: "
            f"{names}); or name one with 'entry' in submission.yaml"
        )
    return found[0]


class _Malformed(Exception):
    pass


class _Done(Exception):
    """The harness said EXIT: every request was answered."""


class _NullModel:
    """The null model the harness calibrates latency against: answers every query with zeros,
    through the same runner, protocol and sandbox as a team's model."""

    def load(self, folder) -> None:
        pass

    def predict(self, x):
        import numpy as np

        return np.zeros((len(x), 10), dtype=np.float32)


def _plain_scores(out):
    """The scores as a little-endian float16/32/64 array (what the harness accepts)."""
    import numpy as np

    out = np.asarray(out)
    if out.dtype.kind == "f" and out.dtype.itemsize in (2, 4, 8):
        return np.ascontiguousarray(out, dtype=out.dtype.newbyteorder("<"))
    return np.ascontiguousarray(out, dtype="<f8")


def _flush() -> None:
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except Exception:  # a stream the submission replaced or closed: its own output
            pass


def main(argv: list[str]) -> int:
    spec_path, request_fd, answer_fd = argv[0], int(argv[1]), int(argv[2])
    reporter = _Reporter(answer_fd)
    with open(spec_path, encoding="utf-8") as f:
        spec = json.load(f)
    sandbox = os.path.realpath(spec["sandbox"])
    applied = _apply_limits(spec)

    import numpy as np

    from tinytorch.competition import (
        CompetitionSubmission,
        PredictionError,
        check_scores,
    )

    phase = spec["phase"]
    train_x = train_y = None
    if phase == "train":
        train_x = np.load(os.path.join(sandbox, "train_x.npy"), allow_pickle=False)
        train_y = np.load(os.path.join(sandbox, "train_y.npy"), allow_pickle=False)
    guard = _Guard(sandbox, spec.get("forbidden_paths", []), reporter)
    sys.addaudithook(guard)
    pkg_dir = os.path.join(sandbox, "submission")

    def request(*expected: bytes) -> tuple[bytes, bytes]:
        kind, payload = protocol.read_frame(request_fd)
        if kind == protocol.EXIT:
            raise _Done
        if kind not in expected:
            raise protocol.ProtocolError(f"unexpected request {kind!r}")
        return kind, payload

    def answer(nonce: bytes, scores) -> None:
        reporter.send(protocol.ANSWER, nonce + protocol.encode_array(_plain_scores(scores)))

    try:
        if phase == "null":
            sub = _NullModel()
        else:
            guard.stage = "import"
            cls = _load_entry(pkg_dir, spec.get("entry"), CompetitionSubmission)
            guard.stage = "__init__"
            sub = cls()
        if phase in ("infer", "null"):
            guard.stage = "load"
            sub.load(os.path.join(pkg_dir, "weights"))
            guard.stage = "predict"
            _flush()  # what it printed so far reaches the harness before the inputs
            reporter.send(protocol.READY, b'{"stage": "load"}')
            query = 0
            while True:
                _, payload = request(protocol.QUERY)
                nonce = payload[: protocol.NONCE_BYTES]
                x = np.load(io.BytesIO(payload[protocol.NONCE_BYTES :]), allow_pickle=False)
                answer(nonce, check_scores(sub.predict(x), 1, query=query))
                query += 1
        else:
            _flush()  # what it printed so far reaches the harness before the inputs
            reporter.send(protocol.READY, b'{"stage": "__init__"}')
            _, nonce = request(protocol.TRAIN)
            guard.stage = "train"
            report = sub.train(train_x, train_y, float(spec["budget_seconds"]))
            stopped = json.dumps({"stopped": str(getattr(report, "stopped", ""))[:40]})
            _flush()  # what it printed so far reaches the harness before the inputs
            reporter.send(protocol.TRAINED, nonce + stopped.encode("utf-8"))
            _, payload = request(protocol.PREDICT)
            guard.stage = "predict"
            nonce = payload[: protocol.NONCE_BYTES]
            inputs = np.load(io.BytesIO(payload[protocol.NONCE_BYTES :]), allow_pickle=False)
            answer(nonce, check_scores(sub.predict(inputs), len(inputs)))
            request()  # only EXIT is expected now
    except _Done:
        guard.stage = "done"
        return 0
    except protocol.ProtocolError as exc:
        reporter.fail("crash", f"{guard.stage}: the request channel broke: {exc}", guard.stage)
        return 0
    except PredictionError as exc:
        reporter.fail(exc.kind, f"{guard.stage}: {exc}", guard.stage)
        return 0
    except _Malformed as exc:
        reporter.fail("malformed", str(exc), guard.stage)
        return 0
    except MemoryError as exc:
        limit = applied.get("RLIMIT_AS", 0) / 2**20
        reporter.fail(
            "memory",
            f"{guard.stage}: ran out of memory under the {limit:.0f} MiB limit "
            f"({type(exc).__name__}: {str(exc)[:200]})"
            f"{_submission_frames(exc.__traceback__, pkg_dir)}",
            guard.stage,
        )
        return 0
    except SystemExit as exc:
        reporter.fail("crash", f"{guard.stage}: called sys.exit({exc.code!r})", guard.stage)
        return 0
    except BaseException as exc:  # the submission's own bug: report it, do not re-raise
        if isinstance(exc, OSError) and exc.errno == errno.EFBIG:
            # Python ignores SIGXFSZ, so RLIMIT_FSIZE shows up as this error
            limit = applied.get("RLIMIT_FSIZE", 0)
            reporter.fail(
                "file_size",
                f"{guard.stage}: wrote a file larger than the {limit} byte limit (RLIMIT_FSIZE)"
                f"{_submission_frames(exc.__traceback__, pkg_dir)}",
                guard.stage,
            )
            return 0
        text = f"{type(exc).__name__}: {str(exc)[:300]}"
        where = _submission_frames(exc.__traceback__, pkg_dir)
        reporter.fail("crash", f"{guard.stage}: {text}{where}", guard.stage)
        return 0
    return 0


if __name__ == "__main__":
    code = main(sys.argv[1:])
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)  # skip atexit handlers a submission may have registered
