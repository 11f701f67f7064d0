"""The grading sandbox: a warm template that lives behind the OS boundary and forks per notebook.

A grading worker (tito/workers.py) starts one ``Zygote`` for a module: a Python process inside
bubblewrap (tinytorch/arena/boundary.py) that sees the interpreter, the installed dependencies
and the package directory read-only (the graded module's reference replaced by a stub, no
``__pycache__``), a size-capped tmpfs ``/box`` and nothing else: no ``course/``, no ``.git``, no
module sources, no network, its own PID namespace. The zygote is PID 1 of that namespace, so
nothing inside can kill it (the kernel drops SIGKILL/SIGSTOP sent to a namespace's init from
inside), and it is not dumpable, so nothing inside can ptrace it or open its memory or fds.

Per notebook the worker sends the plan (cells, policy, the submission's data files) and a fresh
pair of pipes (``SCM_RIGHTS``); the zygote forks a grading process from its warm template (the
same ``tito/sandbox.py`` child as before: limits, audit hook, restore-after-every-cell). The
worker then talks to that child directly, one nonce per cell. When it is done (or gives up) it
asks the zygote to *reap*: the zygote kills every other process of the namespace
(``kill(-1, SIGKILL)``: whatever the student started below the audit layer dies with the
notebook), wipes ``/box`` and ``/tmp`` and reports the child's exit status. Nothing of one
notebook survives into the next, and the worker never runs student code.

When the host runs this as root (CI, containers), bwrap keeps no capability but SETUID/SETGID
(the grading child drops to an unprivileged uid: RLIMIT_NPROC does not bind root), KILL (the
reap), DAC_OVERRIDE/FOWNER (wiping what that uid wrote).
"""

from __future__ import annotations

import base64
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, replace
from pathlib import Path

from . import sandbox

BOX = "/box"  # the zygote's tmpfs; each notebook works in BOX/nb
START_TIMEOUT = 600.0  # seconds for the zygote to import what the trusted cells import
REAP_TIMEOUT = 30.0
ROOT_CAPS = ("CAP_SETUID", "CAP_SETGID", "CAP_KILL", "CAP_DAC_OVERRIDE", "CAP_FOWNER")
MAX_INPUT_BYTES = 64 << 20  # data files of one submission sent into the sandbox


class ZygoteError(RuntimeError):
    """The sandbox could not be started or stopped answering."""


def grading_view(
    project_root: str,
    package_dir: str,
    hidden_modules: tuple[str, ...],
    work_mb: int,
    mpl_cache: str | None = None,
    student_build: bool = False,
) -> object:
    """What a grading process sees: runtime read-only, the package through the seam
    (``osb.package_view``), tito itself read-only (the child's code), the box writable."""
    from tinytorch.arena import boundary as osb
    tito_dir = str(Path(__file__).resolve().parent)
    mounts = osb.runtime_mounts(exclude=[project_root])
    for pkg in package_dirs(package_dir, include_installed=not student_build):
        mounts += osb.package_view(pkg, hidden_modules)
    mounts += osb.package_view(tito_dir)
    if mpl_cache and os.path.isdir(mpl_cache):
        mounts.append(osb.Mount("ro", mpl_cache, mpl_cache))
    return osb.View(work=BOX, work_mb=work_mb, mounts=tuple(mounts))


def package_dirs(package_dir: str, include_installed: bool = True) -> list[str]:
    """The package directories a grading process imports from: ``package_dir`` (the project's,
    or a student build) and, unless it is a student build (``include_installed`` False), the
    installed package the worker imports (its foundation, e.g. ``tinytorch.core``)."""
    import importlib.util

    dirs = [os.path.realpath(package_dir)] if package_dir and os.path.isdir(package_dir) else []
    if not include_installed:
        return dirs
    name = os.path.basename(os.path.realpath(package_dir)) if package_dir else "tinytorch"
    try:
        found = importlib.util.find_spec(name)
    except (ImportError, ValueError):
        found = None
    for loc in (found.submodule_search_locations or []) if found else []:
        real = os.path.realpath(loc)
        if real not in dirs and os.path.isdir(real):
            dirs.append(real)
    return dirs


def hidden_modules_for(
    blocked: tuple[str, ...], package: str, extra: tuple[str, ...] = ()
) -> tuple[str, ...]:
    """The package-relative modules whose files are stubbed: the graded module's reference and
    ``extra`` (``c.TitoAutograde.hidden_modules``: unpublished modules). A student build
    (``c.TitoAutograde.student_build``) already holds stubs for those; point at it instead."""
    out = list(extra)
    for b in blocked:
        if b.startswith(package + "."):
            out.append(b[len(package) + 1 :])
    return tuple(out)


def _mpl_cache() -> str | None:
    try:
        import matplotlib

        return matplotlib.get_cachedir()
    except Exception:
        return None


class Zygote:
    """The worker's handle on one sandboxed template (see the module docstring)."""

    def __init__(
        self,
        *,
        project_root: str,
        package_dir: str,
        preload: tuple[str, ...],
        blocked: tuple[str, ...],
        package: str,
        work_mb: int,
        hidden: tuple[str, ...] = (),
        student_build: bool = False,
    ):
        from tinytorch.arena import boundary as osb

        self.package_dir = package_dir
        mpl = _mpl_cache() if any(m.startswith("matplotlib") for m in preload) else None
        view = grading_view(
            project_root,
            package_dir,
            hidden_modules_for(blocked, package, hidden),
            work_mb,
            mpl,
            student_build=student_build,
        )
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock = ours
        privileged = os.geteuid() == 0
        # inside, the audit hook refuses the stubs by inode too (a clear "refused reading ...")
        self.deny_paths = [m.dest for m in view.mounts if m.kind == "stub"]
        view = osb.View(view.work, view.work_mb, view.mounts, extra=("--as-pid-1",))
        argv = osb.bwrap_argv(
            view,
            [sys.executable, "-B", "-s", "-m", "tito.boundary", str(theirs.fileno())],
            keep_caps=ROOT_CAPS if privileged else (),
        )
        env = {
            "PATH": "/usr/bin:/bin",
            "HOME": "/tmp",
            "TMPDIR": "/tmp",
            "LANG": "C.UTF-8",
            "PYTHONNOUSERSITE": "1",
            "PYTHONDONTWRITEBYTECODE": "1",
            "OPENBLAS_NUM_THREADS": "1",
            "OMP_NUM_THREADS": "1",
            "MKL_NUM_THREADS": "1",
            "MPLBACKEND": "Agg",
            "MPLCONFIGDIR": mpl or "/tmp",
        }
        if student_build:  # its package shadows the installed one (not mounted anyway)
            env["PYTHONPATH"] = os.path.dirname(os.path.realpath(package_dir))
        self.errors = tempfile.TemporaryFile()
        self.proc = subprocess.Popen(
            argv,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=self.errors,
            pass_fds=(theirs.fileno(),),
            start_new_session=True,
        )
        theirs.close()
        self.uid = (100000 + os.getpid() % 100000) if privileged else None
        self.busy = False
        try:
            sandbox.send_msg(
                self.sock.fileno(),
                {
                    "op": "init",
                    "preload": list(preload),
                    "blocked": list(blocked),
                    "package_dir": package_dir,
                    "deny_paths": self.deny_paths,
                },
            )
            hello = sandbox.recv_msg(self.sock.fileno(), time.monotonic() + START_TIMEOUT)
        except (EOFError, TimeoutError, sandbox.ProtocolError, OSError) as exc:
            self.kill()
            err = self._stderr()
            why = f"{type(exc).__name__}" + (f": {err}" if err else "")
            raise ZygoteError(f"the grading sandbox did not start ({why})") from None
        if hello.get("op") != "ready":
            self.kill()
            raise ZygoteError(f"the grading sandbox did not start: {hello.get('error')}")
        self.preload_errors = hello.get("preload_errors", {})

    def _stderr(self) -> str:
        try:
            self.errors.seek(0)
            lines = self.errors.read(1 << 16).decode("utf-8", "replace").strip().splitlines()
        except OSError:
            lines = []
        return lines[-1] if lines else ""

    def alive(self) -> bool:
        return self.proc.poll() is None

    def launch(self, specs, policy: sandbox.Policy, protected, files: dict[str, bytes]):
        """Fork a grading process for one notebook; the worker's ends (commands, replies)."""
        cmd_r, cmd_w = os.pipe()
        rep_r, rep_w = os.pipe()
        msg = {
            "op": "grade",
            "specs": [asdict(s) | {"binds": sorted(s.binds)} for s in specs],
            "policy": _policy_dict(policy),
            "protected": sorted(protected),
            "files": {k: base64.b64encode(v).decode("ascii") for k, v in files.items()},
            "uid": self.uid,
        }
        try:
            socket.send_fds(self.sock, [b"G"], [cmd_r, rep_w])
            sandbox.send_msg(self.sock.fileno(), msg)
            self.busy = True
        finally:
            os.close(cmd_r)
            os.close(rep_w)
        return cmd_w, rep_r

    def reap(self) -> int | None:
        """Kill everything the notebook started, wipe its files; the child's wait status."""
        if not self.busy:
            return None
        self.busy = False
        try:
            sandbox.send_msg(self.sock.fileno(), {"op": "reap"})
            msg = sandbox.recv_msg(self.sock.fileno(), time.monotonic() + REAP_TIMEOUT)
            if msg.get("op") != "reaped":
                raise sandbox.ProtocolError("bad reply")
            return msg.get("status")
        except (EOFError, TimeoutError, sandbox.ProtocolError, OSError):
            self.kill()
            return None

    def kill(self) -> None:
        """End the sandbox (its PID namespace, everything in it) now."""
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            pass
        try:
            self.sock.close()
        except OSError:
            pass


def _policy_dict(policy: sandbox.Policy) -> dict:
    d = asdict(policy)
    d["blocked_modules"] = list(policy.blocked_modules)
    d["deny_read"] = [list(k) for k in policy.deny_read]
    d["deny_dirs"] = [list(k) for k in policy.deny_dirs]
    return d


def _policy_from(d: dict) -> sandbox.Policy:
    d = dict(d)
    d["blocked_modules"] = tuple(d["blocked_modules"])
    d["deny_read"] = frozenset(tuple(k) for k in d["deny_read"])
    d["deny_dirs"] = frozenset(tuple(k) for k in d["deny_dirs"])
    return sandbox.Policy(**d)


# ---- inside the sandbox ------------------------------------------------------------------------
def _not_dumpable() -> None:
    """No ptrace, no /proc/<pid>/mem or fd/ of the zygote from inside (PR_SET_DUMPABLE 0)."""
    import ctypes

    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(4, 0, 0, 0, 0) != 0:  # PR_SET_DUMPABLE
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_DUMPABLE, 0) failed")


def _wipe(path: str) -> None:
    for name in os.listdir(path):
        p = os.path.join(path, name)
        if os.path.isdir(p) and not os.path.islink(p):
            shutil.rmtree(p, ignore_errors=True)
        else:
            try:
                os.unlink(p)
            except OSError:
                pass


def _reap_all(child: int | None) -> int | None:
    """Kill every process of this namespace but us; reap them; the child's wait status."""
    try:
        os.kill(-1, signal.SIGKILL)
    except ProcessLookupError:
        pass
    status = None
    while True:
        try:
            pid, st = os.waitpid(-1, 0)
        except ChildProcessError:
            break
        if pid == child:
            status = st
    return status


def _enter_child(uid: int | None, work: str, files: dict[str, str]) -> None:
    if uid is not None:  # the host runs us as root: the grading process becomes nobody
        os.setgroups([])
        os.setresgid(uid, uid, uid)
        os.setresuid(uid, uid, uid)
    os.makedirs(work, mode=0o700)
    for rel, data in files.items():
        dest = os.path.normpath(os.path.join(work, rel))
        if not dest.startswith(work + "/"):
            continue
        os.makedirs(os.path.dirname(dest), exist_ok=True)
        with open(dest, "wb") as f:
            f.write(base64.b64decode(data))


def main(ctl_fd: int) -> int:
    sock = socket.socket(fileno=ctl_fd)
    fd = sock.fileno()
    init = sandbox.recv_msg(fd)
    try:
        _not_dumpable()
        template = sandbox.Template(init["preload"], tuple(init["blocked"]), init["package_dir"])
    except BaseException as exc:
        sandbox.send_msg(fd, {"op": "fatal", "error": f"{type(exc).__name__}: {exc}"})
        return 1
    deny = set()
    for path in init.get("deny_paths", []):
        try:
            st = os.stat(path)
        except OSError:
            continue
        deny.add((st.st_dev, st.st_ino))
    sandbox.send_msg(fd, {"op": "ready", "preload_errors": template.preload_errors})
    n = 0
    while True:
        data, fds, _, _ = socket.recv_fds(sock, 1, 2)
        if not data or len(fds) != 2:
            return 0
        cmd_r, rep_w = fds
        msg = sandbox.recv_msg(fd)
        n += 1
        work = f"{BOX}/nb{n}"
        specs = [sandbox.CellSpec(**(s | {"binds": frozenset(s["binds"])})) for s in msg["specs"]]
        policy = _policy_from(msg["policy"])
        policy = replace(policy, deny_read=policy.deny_read | frozenset(deny))
        pid = os.fork()
        if pid == 0:
            try:
                sock.close()
                _enter_child(msg["uid"], work, msg["files"])
                sandbox.child_main(
                    cmd_r, rep_w, specs, policy, template, work, frozenset(msg["protected"])
                )
            finally:
                os._exit(70)
        os.close(cmd_r)
        os.close(rep_w)
        req = sandbox.recv_msg(fd)
        if req.get("op") != "reap":
            return 0
        status = _reap_all(pid)
        _wipe(BOX)
        _wipe("/tmp")
        sandbox.send_msg(fd, {"op": "reaped", "status": status})


if __name__ == "__main__":
    sys.exit(main(int(sys.argv[1])))
